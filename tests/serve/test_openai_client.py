"""etx serve against the `openai` client and raw HTTP: the server contract, end to end.

Every test talks to a real `etx serve` (started with --port 0) on the default model. The
reference for greedy text is `etx generate`; for prompt log-probabilities, `etx logits`.
"""
import concurrent.futures as cf
import http.client
import json
import math
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import openai
import pytest

from conftest import (DEFAULT_NAME, DEVICE, ETX, MODEL, THREADS, Server, etx_generate, etx_tokenize,
                      run_etx)

ENTROPIX_BRANCHES = {"argmax", "pause", "helv", "lehv", "hehv", "adaptive"}
PROMPTS = ["The capital of France is", "Once upon a time, there was a little robot who",
           "def fibonacci(n):", "The three primary colors are"]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("policies")
    (d / "warm.json").write_text(json.dumps({"policy": "sample", "temperature": 0.7, "min_p": 0.05}))
    return d


@pytest.fixture(scope="module")
def server(etx_bin, policy_dir):
    s = Server("--batch", 8, "--max-tokens", 2048, "--policy-dir", policy_dir)
    yield s
    rc = s.stop()
    assert rc == 0, "main server exit status %s\n%s" % (rc, s.log_text())


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="unused", timeout=180, max_retries=0)


def d(obj):
    """A response object as a dict, extra (etx) fields included."""
    return obj.to_dict() if hasattr(obj, "to_dict") else obj


def complete(client, server, **kw):
    kw.setdefault("model", server.name)
    return client.completions.create(**kw)


def err_of(body):
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), "not an OpenAI error body: %r" % (body,)
    return body["error"]


# --------------------------------------------------------------------------- basics


def test_ready_line_and_model_name(server):
    assert server.name == DEFAULT_NAME, server.log_text()


def test_health_and_models(server, client):
    status, _, body = server.health()
    assert status == 200, body
    assert body["status"] == "ok"
    for k in ("running", "queued", "kv_blocks_used"):
        assert isinstance(body[k], int) and body[k] >= 0, body
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert ids == [server.name], ids
    m = d(models.data[0])
    assert m["object"] == "model" and m["owned_by"] == "etx", m


# --------------------------------------------------------------------------- completions


@pytest.mark.parametrize("prompt", PROMPTS[:2] + ["日本の首都は"])  # the last: characters split across tokens
def test_greedy_equals_etx_generate(server, client, prompt):
    n = 16
    r = complete(client, server, prompt=prompt, max_tokens=n, temperature=0)
    ref = etx_generate(prompt=prompt, n=n)
    c = r.choices[0]
    assert c.text == ref, "server %r\netx generate %r" % (c.text, ref)
    assert r.usage.prompt_tokens == len(etx_tokenize(prompt))
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert 1 <= r.usage.completion_tokens <= n
    assert c.finish_reason in ("stop", "length")
    if c.finish_reason == "length":
        assert r.usage.completion_tokens == n
    assert r.object == "text_completion" and r.model == server.name


def test_prompt_forms(server, client):
    """A prompt as a string, as token ids, and as lists of them give the same text."""
    p = PROMPTS[0]
    ids = etx_tokenize(p)
    base = complete(client, server, prompt=p, max_tokens=8, temperature=0).choices[0].text
    assert complete(client, server, prompt=ids, max_tokens=8, temperature=0).choices[0].text == base
    assert complete(client, server, prompt=[p], max_tokens=8, temperature=0).choices[0].text == base
    r = complete(client, server, prompt=[ids, etx_tokenize(PROMPTS[3])], max_tokens=8, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1]
    by = {c.index: c.text for c in r.choices}
    assert by[0] == base
    assert by[1] == complete(client, server, prompt=PROMPTS[3], max_tokens=8, temperature=0).choices[0].text
    # two prompts, n=2: OpenAI numbers the choices prompt-major (index = prompt * n + j)
    r = complete(client, server, prompt=[p, PROMPTS[3]], n=2, max_tokens=4, temperature=1, seed=3)
    assert sorted(c.index for c in r.choices) == [0, 1, 2, 3]


def test_stream_equals_nonstream(server, client):
    p = PROMPTS[1]
    ref = complete(client, server, prompt=p, max_tokens=20, temperature=0)
    chunks = list(complete(client, server, prompt=p, max_tokens=20, temperature=0, stream=True,
                           stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == ref.choices[0].text
    with_choice = [c for c in chunks if c.choices]
    assert with_choice[-1].choices[0].finish_reason == ref.choices[0].finish_reason, \
        [d(c) for c in with_choice[-2:]]
    assert all(c.choices[0].finish_reason is None for c in with_choice[:-1])
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and chunks[-1].usage is not None, "include_usage: one final usage chunk"
    assert not chunks[-1].choices
    assert usage[0].completion_tokens == ref.usage.completion_tokens
    assert usage[0].prompt_tokens == ref.usage.prompt_tokens


def test_stream_n2(server, client):
    """Two streamed choices interleave by index; each equals its non-streamed twin."""
    kw = dict(prompt=PROMPTS[1], max_tokens=10, temperature=1, seed=4, n=2)
    ref = {c.index: (c.text, c.finish_reason) for c in complete(client, server, **kw).choices}
    acc, fin = {}, {}
    for ch in complete(client, server, stream=True, **kw):
        for c in ch.choices:
            acc[c.index] = acc.get(c.index, "") + c.text
            if c.finish_reason:
                fin[c.index] = c.finish_reason
    assert {i: (acc.get(i), fin.get(i)) for i in ref} == ref and set(acc) == set(ref)


def test_default_max_tokens_and_routes(server):
    st, _, r = server.post("/v1/completions", {"model": server.name, "prompt": "Hello there", "temperature": 0,
                                               "ignore_eos": True})
    assert st == 200 and r["usage"]["completion_tokens"] == 16, r  # OpenAI's default max_tokens
    st, _, r = server.request("GET", "/no/such/route")
    assert st == 404, r
    err_of(r)


def test_n_and_seed(server, client):
    """Choice i of a seeded request is the same whatever n is; the same seed gives the same text."""
    differed = False
    for i, p in enumerate(PROMPTS[:2]):
        kw = dict(prompt=p, max_tokens=12, temperature=1, seed=100 + i)
        r3 = complete(client, server, n=3, **kw)
        r3b = complete(client, server, n=3, **kw)
        r1 = complete(client, server, n=1, **kw)
        r1b = complete(client, server, n=1, **kw)
        r2 = complete(client, server, n=2, **kw)
        t3 = [c.text for c in sorted(r3.choices, key=lambda c: c.index)]
        assert [c.index for c in sorted(r3.choices, key=lambda c: c.index)] == [0, 1, 2]
        assert [c.text for c in sorted(r3b.choices, key=lambda c: c.index)] == t3, "same seed, n=3, different text"
        assert r1.choices[0].text == r1b.choices[0].text, "same seed, n=1, different text"
        assert [c.text for c in sorted(r2.choices, key=lambda c: c.index)] == t3[:2]
        assert r3.usage.prompt_tokens == r1.usage.prompt_tokens
        differed |= len(set(t3)) > 1
    assert differed, "n=3 at temperature 1 gave identical choices for every prompt"


def test_seeded_sample_equals_etx_generate(server, client):
    """n=1 runs as etx generate does: same prompt, policy and seed, same tokens."""
    for i, p in enumerate(PROMPTS[:2]):
        r = complete(client, server, prompt=p, max_tokens=12, temperature=0.8, seed=21 + i)
        ref = run_etx("generate", "-m", MODEL, "-p", p, "-n", 12, "--policy", "sample", "--temperature", 0.8,
                      "--seed", 21 + i, "--threads", THREADS, "--device", DEVICE).decode()[:-1]
        assert r.choices[0].text == ref, "seed %d: server %r, etx generate %r" % (21 + i, r.choices[0].text, ref)
    r = complete(client, server, prompt=PROMPTS[1], max_tokens=12, seed=5, extra_body={"policy": "entropix"})
    ref = run_etx("generate", "-m", MODEL, "-p", PROMPTS[1], "-n", 12, "--policy", "entropix", "--seed", 5,
                  "--threads", THREADS, "--device", DEVICE).decode()[:-1]
    assert r.choices[0].text == ref, "entropix seed 5: server %r, etx generate %r" % (r.choices[0].text, ref)


def test_n_usage_counts_every_choice(server, client):
    r = complete(client, server, prompt=PROMPTS[2], n=3, max_tokens=10, temperature=1, seed=9, logprobs=0)
    total = sum(len(c.logprobs.tokens) for c in r.choices)
    assert r.usage.completion_tokens == total, d(r)["usage"]


def test_seed_independent_of_concurrency(server, client):
    """Same prompt, policy and seed: the same text alone and among concurrent requests."""
    jobs = [dict(prompt=PROMPTS[i % 4], max_tokens=12, temperature=0.9, seed=7 + i) for i in range(6)]
    alone = [complete(client, server, **j).choices[0].text for j in jobs]
    with cf.ThreadPoolExecutor(len(jobs)) as ex:
        together = list(ex.map(lambda j: complete(client, server, **j).choices[0].text, jobs))
    assert together == alone


def test_logprobs(server, client):
    p = PROMPTS[3]
    r = complete(client, server, prompt=p, max_tokens=8, temperature=0, logprobs=2)
    c = r.choices[0]
    lp = c.logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert "".join(lp.tokens) == c.text
    for tok, tlp, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert tlp is not None and math.isfinite(tlp) and tlp <= 0, tlp
        assert 1 <= len(top) <= 2, top
        assert all(math.isfinite(v) and v <= 0 for v in top.values()), top
        # greedy: the chosen token is the most likely one
        assert abs(max(top.values()) - tlp) < 1e-4, (tok, tlp, top)
        assert tok in top, (tok, top)
    for i in range(1, n):
        assert lp.text_offset[i] - lp.text_offset[i - 1] == len(lp.tokens[i - 1]), lp.text_offset


def _etx_logprobs(ids):
    """Natural log-probabilities of ids[1:] under etx logits --all (the independent reference)."""
    import numpy as np
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), "etx_serve_logits_%d.bin" % os.getpid())
    try:
        run_etx("logits", "-m", MODEL, "--ids", " ".join(map(str, ids)), "--all", "--out", out,
                "--threads", THREADS, "--device", DEVICE)
        x = np.fromfile(out, dtype="<f4")
    finally:
        if os.path.exists(out):
            os.unlink(out)
    x = x.reshape(len(ids), -1).astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lsm = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return [float(lsm[i - 1, ids[i]]) for i in range(1, len(ids))], [float(v) for v in lsm.max(axis=1)]


def test_echo_prompt_logprobs(server, client):
    p = "The quick brown fox jumps over the lazy dog. The quick brown"
    ids = etx_tokenize(p)
    r = complete(client, server, prompt=p, max_tokens=0, echo=True, logprobs=1, temperature=0)
    c = r.choices[0]
    lp = c.logprobs
    assert c.text == p
    assert len(lp.tokens) == len(lp.token_logprobs) == len(ids), (len(lp.tokens), len(ids))
    assert "".join(lp.tokens) == p
    assert lp.token_logprobs[0] is None
    assert all(v is not None and math.isfinite(v) and v <= 0 for v in lp.token_logprobs[1:]), lp.token_logprobs
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == len(ids)
    ref, ref_max = _etx_logprobs(ids)
    for i, (got, want) in enumerate(zip(lp.token_logprobs[1:], ref), start=1):
        assert abs(got - want) < 2e-3, "prompt token %d (%r): server %.6f, etx logits %.6f" % (i, lp.tokens[i], got, want)
    for i in range(1, len(ids)):
        top = lp.top_logprobs[i]
        assert top is not None and len(top) == 1, top
        assert abs(list(top.values())[0] - ref_max[i - 1]) < 2e-3, (i, top, ref_max[i - 1])
    # echo without logprobs: the prompt, then the completion
    g = complete(client, server, prompt=p, max_tokens=4, temperature=0).choices[0].text
    assert complete(client, server, prompt=p, max_tokens=4, temperature=0, echo=True).choices[0].text == p + g
    # what lm-eval's loglikelihood sends: echo + 1 token + logprobs 1
    r = complete(client, server, prompt=p, max_tokens=1, echo=True, logprobs=1, temperature=0)
    lp1 = r.choices[0].logprobs
    assert len(lp1.tokens) == len(ids) + 1
    assert r.choices[0].text.startswith(p)
    assert all(abs(a - b) < 1e-4 for a, b in zip(lp1.token_logprobs[1:len(ids)], lp.token_logprobs[1:]))


# --------------------------------------------------------------------------- chat

SYSTEM = "You are a concise assistant."
USER = "Name three fruits."


def test_chat_greedy_stream_and_generate(server, client):
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": USER}]
    r = client.chat.completions.create(model=server.name, messages=msgs, max_tokens=24, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert r.object == "chat.completion"
    ref = etx_generate(chat=USER, system=SYSTEM, n=24)
    assert c.message.content == ref, "server %r\netx generate --chat %r" % (c.message.content, ref)
    stream = list(client.chat.completions.create(model=server.name, messages=msgs, max_tokens=24,
                                                 temperature=0, stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text == c.message.content
    assert stream[-1].usage is not None and stream[-1].usage.completion_tokens == r.usage.completion_tokens
    assert all(ch.object == "chat.completion.chunk" for ch in stream)
    with_choice = [ch for ch in stream if ch.choices]
    assert with_choice[0].choices[0].delta.role == "assistant"
    assert with_choice[-1].choices[0].finish_reason == c.finish_reason
    # content as a list of text parts, and max_completion_tokens, give the same answer
    parts = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
             {"role": "user", "content": [{"type": "text", "text": "Name three "}, {"type": "text", "text": "fruits."}]}]
    r2 = client.chat.completions.create(model=server.name, messages=parts, max_completion_tokens=24, temperature=0)
    assert r2.choices[0].message.content == c.message.content
    assert r2.usage.prompt_tokens == r.usage.prompt_tokens


def test_chat_logprobs(server, client):
    r = client.chat.completions.create(model=server.name, messages=[{"role": "user", "content": USER}],
                                       max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert math.isfinite(t.logprob) and t.logprob <= 0
        assert 1 <= len(t.top_logprobs) <= 2
        assert abs(max(x.logprob for x in t.top_logprobs) - t.logprob) < 1e-4


def test_chat_multiturn_assistant(server, client):
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": USER}]
    r = client.chat.completions.create(model=server.name, messages=msgs, max_tokens=8, temperature=0, seed=1)
    assert r.choices[0].message.content and r.usage.completion_tokens >= 1


# --------------------------------------------------------------------------- etx extensions


def test_entropix_branch_mix(server, client):
    r = complete(client, server, prompt=PROMPTS[1], max_tokens=16, seed=5,
                 extra_body={"policy": "entropix", "ignore_eos": True})
    c = d(r.choices[0])
    br = c["etx"]["branches"]
    assert set(br) <= ENTROPIX_BRANCHES, br
    assert sum(br.values()) == r.usage.completion_tokens == 16, (br, d(r)["usage"])
    again = complete(client, server, prompt=PROMPTS[1], max_tokens=16, seed=5,
                     extra_body={"policy": "entropix", "ignore_eos": True})
    assert again.choices[0].text == r.choices[0].text


def test_every_choice_has_branches(server, client):
    for kw in (dict(temperature=0), dict(temperature=0.8, seed=2), dict()):
        r = complete(client, server, prompt=PROMPTS[0], max_tokens=6, n=2, **kw)
        for c in r.choices:
            br = d(c)["etx"]["branches"]
            assert isinstance(br, dict) and all(isinstance(v, int) for v in br.values()), br
        assert sum(sum(d(c)["etx"]["branches"].values()) for c in r.choices) == r.usage.completion_tokens
    r = client.chat.completions.create(model=server.name, messages=[{"role": "user", "content": USER}],
                                       max_tokens=6, temperature=0)
    assert sum(d(r.choices[0])["etx"]["branches"].values()) == r.usage.completion_tokens


def test_trace(server, client):
    r = complete(client, server, prompt=PROMPTS[2], max_tokens=10, temperature=0,
                 logprobs=0, extra_body={"trace": True, "ignore_eos": True})
    c = d(r.choices[0])
    # the records: under the choice's "etx" object (beside "branches"), or on the choice itself
    tr = c["etx"].get("trace", c.get("trace"))
    assert tr is not None, c
    assert len(tr) == r.usage.completion_tokens == 10, (len(tr), d(r)["usage"])
    for rec in tr:
        for k in ("token", "branch", "entropy", "varentropy", "logprob"):
            assert k in rec, rec
    assert "".join(rec["text"] for rec in tr) == c["text"]
    # greedy: the trace's log-probability (model at temperature 1) is the one logprobs reports
    for rec, tlp in zip(tr, c["logprobs"]["token_logprobs"]):
        assert abs(rec["logprob"] - tlp) < 1e-3, (rec, tlp)


def test_ignore_eos(server, client):
    msgs = [{"role": "user", "content": "Say OK."}]
    r = client.chat.completions.create(model=server.name, messages=msgs, max_tokens=40, temperature=0)
    assert r.choices[0].finish_reason == "stop" and r.usage.completion_tokens < 40, d(r)
    r = client.chat.completions.create(model=server.name, messages=msgs, max_tokens=40, temperature=0,
                                       extra_body={"ignore_eos": True})
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 40, d(r)


def test_policy_fields(server, client):
    p = PROMPTS[1]
    greedy = complete(client, server, prompt=p, max_tokens=10, temperature=0).choices[0].text
    # an explicit policy: temperature 0 (lm-eval always sends it) counts as not given
    assert complete(client, server, prompt=p, max_tokens=10, temperature=0,
                    extra_body={"policy": "greedy"}).choices[0].text == greedy
    kw = dict(prompt=p, max_tokens=10, seed=11)
    a = complete(client, server, **kw, extra_body={"policy": "sample",
                                                   "policy_params": {"temperature": 0.7, "min_p": 0.05}})
    b = complete(client, server, **kw, extra_body={"policy_file": "warm"})
    c = complete(client, server, **kw, temperature=0,
                 extra_body={"policy": "sample", "policy_params": {"temperature": 0.7, "min_p": 0.05}})
    assert a.choices[0].text == b.choices[0].text == c.choices[0].text
    # temperature > 0 without a policy: sampling at that temperature, seeded
    s1 = complete(client, server, **kw, temperature=0.7).choices[0].text
    s2 = complete(client, server, **kw, temperature=0.7).choices[0].text
    assert s1 == s2


def test_policy_errors(server):
    base = {"model": server.name, "prompt": "x", "max_tokens": 2}
    for extra, param in [({"policy": "nonsense"}, "policy"),
                         ({"policy": "sample", "policy_params": {"no_such_param": 1}}, "policy_params"),
                         ({"policy": "sample", "policy_params": {"temperature": "hot"}}, "policy_params"),
                         ({"policy_file": "missing"}, "policy_file"),
                         ({"policy_file": "../warm"}, "policy_file")]:
        st, _, body = server.post("/v1/completions", {**base, **extra})
        assert st in (400, 404) and st != 200, (extra, st, body)
        e = err_of(body)
        assert e["param"] == param or param in (e.get("param") or ""), (extra, body)


# --------------------------------------------------------------------------- bad input


def _bad(server, body, param, status=400, path="/v1/completions", raw=None, failures=None, also=()):
    """One bad request: its status, an OpenAI error body, the field named in param and message.
    With failures (a list), a mismatch is appended there instead of failing at once."""
    st, _, resp = server.post(path, body, raw=raw)
    req = "POST %s %s" % (path, raw.decode("utf-8", "replace") if raw is not None else json.dumps(body)[:300])
    try:
        assert st == status or st in also, "%s -> %s, want %s: %s" % (req, st, status, json.dumps(resp)[:400])
        e = err_of(resp)
        assert e["type"] == "invalid_request_error" or st != 400, "%s -> %s" % (req, resp)
        if param is not None and st == 400:
            assert e.get("param") == param, "%s: param %r, want %r: %s" % (req, e.get("param"), param, resp)
            assert param in e["message"], "%s: message does not name %s: %s" % (req, param, resp)
    except AssertionError as x:
        if failures is None:
            raise
        failures.append(str(x))
    return resp


def test_bad_requests(server):
    M = server.name
    fails = []
    _bad = lambda *a, **k: globals()["_bad"](*a, failures=fails, **k)  # noqa: E731 - report every mismatch
    ok = {"model": M, "prompt": "Hello", "max_tokens": 2}
    _bad(server, None, None, raw=b'{"model": "x", "prompt": ')
    _bad(server, None, None, raw=b"not json at all")
    _bad(server, None, None, raw=b'["a", "list"]')
    _bad(server, {**ok, "frobnicate": 1}, "frobnicate")
    _bad(server, {**ok, "n": 0}, "n")
    _bad(server, {**ok, "n": 17, "temperature": 1}, "n")  # above --max-n (default 16)
    _bad(server, {**ok, "temperature": -1}, "temperature")
    _bad(server, {**ok, "top_p": 1.5}, "top_p")
    _bad(server, {**ok, "logprobs": 9}, "logprobs")
    _bad(server, {**ok, "max_tokens": 0}, "max_tokens")
    _bad(server, {**ok, "max_tokens": 5000}, "max_tokens")
    _bad(server, {**ok, "max_tokens": "3"}, "max_tokens")
    _bad(server, {**ok, "stop": ["s%d" % i for i in range(17)]}, "stop")  # docs/serve.md: at most 16
    _bad(server, {**ok, "presence_penalty": 0.5}, "presence_penalty")
    _bad(server, {**ok, "best_of": 2}, "best_of")
    _bad(server, {"model": M, "max_tokens": 2}, "prompt")
    _bad(server, {**ok, "prompt": [1, "a"]}, "prompt")
    _bad(server, {**ok, "prompt": [10 ** 9]}, "prompt")
    _bad(server, {**ok, "model": "no-such-model"}, None, status=404)
    # prompt longer than the context (token ids: nothing to tokenize), and prompt + max_tokens over it
    _bad(server, {**ok, "prompt": [198] * 9000}, None)
    _bad(server, {**ok, "prompt": [198] * 4090, "max_tokens": 16}, None)
    long_text = "hello " * 9000
    _bad(server, {**ok, "prompt": long_text}, None)
    # chat
    C = "/v1/chat/completions"
    okc = {"model": M, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    _bad(server, {**okc, "messages": []}, "messages", path=C)
    _bad(server, {**okc, "messages": [{"role": "robot", "content": "Hi"}]}, "messages", path=C)
    _bad(server, {**okc, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         "messages", path=C)
    _bad(server, {**okc, "top_logprobs": 5, "logprobs": True}, "top_logprobs", path=C)
    _bad(server, {**okc, "frobnicate": True}, "frobnicate", path=C)
    _bad(server, {**okc, "model": "nope"}, None, status=404, path=C)
    # the server still works
    st, _, body = server.post("/v1/completions", ok)
    assert st == 200, body
    assert not fails, "%d bad requests answered wrongly:\n" % len(fails) + "\n".join(fails)


def test_optional_model_and_long_stop_list(server):
    """docs/serve.md: model may be left out; stop takes up to 16 strings (lm-eval adds EOS to 4)."""
    st, _, r = server.post("/v1/completions", {"prompt": "Hello", "max_tokens": 2})
    assert st == 200, r
    st, _, r = server.post("/v1/completions", {"model": server.name, "prompt": "Hello", "max_tokens": 2,
                                               "stop": ["s%d" % i for i in range(16)]})
    assert st == 200, r


def test_neutral_unsupported_fields_accepted(server):
    body = {"model": server.name, "prompt": "Hello", "max_tokens": 2, "presence_penalty": 0,
            "frequency_penalty": 0, "logit_bias": {}, "best_of": 1, "n": 1, "suffix": None, "user": "u1"}
    st, _, r = server.post("/v1/completions", body)
    assert st == 200, r
    st, _, r = server.post("/v1/completions", {**body, "logit_bias": None, "best_of": 2, "n": 2,
                                               "temperature": 0.5, "seed": 1})
    assert st == 200 and len(r["choices"]) == 2, r
    st, _, r = server.post("/v1/chat/completions", {"model": server.name, "max_tokens": 2, "user": "u",
                                                    "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": None,
                                                    "messages": [{"role": "user", "content": "Hi"}]})
    assert st == 200, r


def test_stop_strings(server, client):
    p = PROMPTS[1]
    full = complete(client, server, prompt=p, max_tokens=24, temperature=0, extra_body={"ignore_eos": True}).choices[0].text
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[2]
    cut = full[:full.index(stop)]
    r = complete(client, server, prompt=p, max_tokens=24, temperature=0, stop=stop, extra_body={"ignore_eos": True})
    assert r.choices[0].text == cut and r.choices[0].finish_reason == "stop", (full, stop, d(r))
    r = complete(client, server, prompt=p, max_tokens=24, temperature=0, stop=["zzzz", stop],
                 stream=True, extra_body={"ignore_eos": True})
    chunks = [c for c in r if c.choices]
    assert "".join(c.choices[0].text for c in chunks) == cut
    assert chunks[-1].choices[0].finish_reason == "stop"


# --------------------------------------------------------------------------- limits and lifecycle


def test_body_limit(etx_bin):
    s = Server("--batch", 2, "--max-body", 4096)
    try:
        st, _, body = s.post("/v1/completions", {"model": s.name, "prompt": "x" * 8000, "max_tokens": 1})
        assert st == 413, (st, body)
        st, _, body = s.post("/v1/completions", {"model": s.name, "prompt": "Hello", "max_tokens": 1})
        assert st == 200, body
    finally:
        assert s.stop() == 0, s.log_text()


def test_api_key(etx_bin):
    s = Server("--batch", 2, "--api-key", "sekret-123")
    try:
        body = {"model": s.name, "prompt": "Hello", "max_tokens": 1}
        st, _, r = s.post("/v1/completions", body)
        assert st == 401, (st, r)
        err_of(r)
        st, _, r = s.post("/v1/completions", body, headers={"Authorization": "Bearer wrong"})
        assert st == 401, (st, r)
        st, _, r = s.request("GET", "/v1/models")
        assert st == 401, (st, r)
        good = openai.OpenAI(base_url=s.base_url, api_key="sekret-123", max_retries=0, timeout=60)
        assert good.completions.create(model=s.name, prompt="Hello", max_tokens=1).usage.completion_tokens == 1
        assert [m.id for m in good.models.list().data] == [s.name]
        bad = openai.OpenAI(base_url=s.base_url, api_key="nope", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model=s.name, prompt="Hello", max_tokens=1)
    finally:
        assert s.stop() == 0, s.log_text()


def test_queue_full_429(etx_bin):
    s = Server("--batch", 1, "--max-queue", 1)
    try:
        body = {"model": s.name, "prompt": "Tell me a story.", "max_tokens": 64, "temperature": 0,
                "ignore_eos": True}
        barrier = threading.Barrier(6)

        def one(_):
            barrier.wait()
            return s.post("/v1/completions", body, timeout=300)

        with cf.ThreadPoolExecutor(6) as ex:
            results = list(ex.map(one, range(6)))
        statuses = [r[0] for r in results]
        assert statuses.count(429) >= 1, statuses
        assert all(st in (200, 429) for st in statuses), results
        for st, hdrs, r in results:
            if st == 429:
                assert any(k.lower() == "retry-after" for k in hdrs), hdrs
                err_of(r)
            else:
                assert r["usage"]["completion_tokens"] == 64, r
        assert statuses.count(200) >= 2, statuses  # batch 1 + queue 1 both served
        st, _, h = s.health()
        assert st == 200 and h["running"] == 0 and h["queued"] == 0, h
    finally:
        assert s.stop() == 0, s.log_text()


def test_health_counts(etx_bin):
    """/health: running counts requests in the batch (at most --batch), queued those waiting."""
    s = Server("--batch", 2)
    try:
        body = {"model": s.name, "prompt": "Tell me a story.", "max_tokens": 40, "temperature": 0, "ignore_eos": True}
        samples = []
        with cf.ThreadPoolExecutor(4) as ex:
            futs = [ex.submit(s.post, "/v1/completions", body, timeout=300) for _ in range(4)]
            while not all(f.done() for f in futs):
                st, _, h = s.health()
                if st == 200:
                    samples.append((h["running"], h["queued"], h["kv_blocks_used"]))
                time.sleep(0.1)
            assert all(f.result()[0] == 200 for f in futs)
        assert samples, "no /health sample while 4 requests ran"
        assert max(r for r, _, _ in samples) <= 2, "running above --batch 2: (running, queued, kv_blocks_used) %s" % samples
        assert max(r + q for r, q, _ in samples) == 4, "running + queued never 4 with 4 requests in flight: %s" % samples
        _, _, h = s.health()
        assert h["running"] == 0 and h["queued"] == 0, h
    finally:
        assert s.stop() == 0, s.log_text()


def _wait_idle(server, limit=10.0):
    t0 = time.time()
    h = None
    while time.time() - t0 < limit:
        st, _, h = server.health()
        if st == 200 and h["running"] == 0 and h["queued"] == 0:
            return h, time.time() - t0
        time.sleep(0.2)
    raise AssertionError("server still busy %.0f s after the client went away: %r" % (limit, h))


def test_disconnect_stream_cancels(server):
    _, _, before = server.health()
    body = json.dumps({"model": server.name, "prompt": "Write a very long essay about the ocean.",
                       "max_tokens": 2000, "stream": True, "ignore_eos": True, "temperature": 0})
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    events = 0
    while events < 2:
        line = resp.readline()
        assert line, "stream ended early"
        if line.startswith(b"data: "):
            events += 1
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    h, took = _wait_idle(server)
    assert h["kv_blocks_used"] <= before["kv_blocks_used"] + 1, (before, h)
    # the server is fine afterwards
    st, _, r = server.post("/v1/completions", {"model": server.name, "prompt": "Hi", "max_tokens": 2})
    assert st == 200, r


def test_disconnect_nonstream_cancels(server):
    _, _, before = server.health()
    body = json.dumps({"model": server.name, "prompt": "Write a very long essay about the sky.",
                       "max_tokens": 2000, "ignore_eos": True, "temperature": 0}).encode()
    sock = socket.create_connection((server.host, server.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    # wait until it runs, then hang up without reading
    t0 = time.time()
    while time.time() - t0 < 10:
        _, _, h = server.health()
        if h["running"] >= 1:
            break
        time.sleep(0.1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    sock.close()
    h, took = _wait_idle(server)
    assert h["kv_blocks_used"] <= before["kv_blocks_used"] + 1, (before, h)


def test_disconnect_while_queued(etx_bin):
    """A waiting request whose client hangs up leaves the queue at once, not when its turn comes."""
    s = Server("--batch", 1)
    try:
        def send(prompt):
            body = json.dumps({"model": s.name, "prompt": prompt, "max_tokens": 2000, "temperature": 0,
                               "ignore_eos": True}).encode()
            sock = socket.create_connection((s.host, s.port))
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            return sock

        def hang_up(sock):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            sock.close()

        a = send("Tell me a story.")  # runs (batch 1)
        b = send("Another story.")    # waits
        t0 = time.time()
        h = None
        while time.time() - t0 < 20:
            _, _, h = s.health()
            if h["running"] + h["queued"] >= 2:
                break
            time.sleep(0.05)
        assert h["running"] + h["queued"] >= 2, h
        hang_up(b)
        t1 = time.time()
        samples = []
        while time.time() - t1 < 5:
            _, _, h = s.health()
            samples.append((round(time.time() - t1, 2), h["running"], h["queued"]))
            if h["running"] + h["queued"] <= 1:
                break
            time.sleep(0.1)
        a_running = samples[-1][1] + samples[-1][2] >= 1
        hang_up(a)
        assert samples[-1][1] + samples[-1][2] <= 1, \
            "the hung-up waiting request still counted 5 s later (t, running, queued): %s" % samples
        assert a_running, "the running request (2000 tokens) ended before the check: %s" % samples
        _wait_idle(s)
    finally:
        assert s.stop() == 0, s.log_text()


def test_drain_on_sigterm(etx_bin):
    s = Server("--batch", 2)
    try:
        body = {"model": s.name, "prompt": "Count slowly.", "max_tokens": 120, "temperature": 0,
                "ignore_eos": True}
        def streamed():
            conn = http.client.HTTPConnection(s.host, s.port, timeout=300)
            conn.request("POST", "/v1/completions", json.dumps(dict(body, stream=True, max_tokens=60)),
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            text, done, finish = [], False, None
            while True:
                line = resp.readline()
                if not line:
                    break
                if line.startswith(b"data: "):
                    if line[6:].strip() == b"[DONE]":
                        done = True
                        continue
                    ev = json.loads(line[6:])
                    for c in ev.get("choices") or []:
                        text.append(c["text"])
                        finish = c.get("finish_reason") or finish
            conn.close()
            return resp.status, "".join(text), done, finish

        with cf.ThreadPoolExecutor(2) as ex:
            fut = ex.submit(s.post, "/v1/completions", body, timeout=300)
            sfut = ex.submit(streamed)
            t0 = time.time()
            while time.time() - t0 < 20:
                st, _, h = s.health()
                if st == 200 and h["running"] >= 2:
                    break
                time.sleep(0.05)
            assert h["running"] >= 2, h
            s.signal(signal.SIGTERM)
            time.sleep(0.2)
            if s.proc.poll() is None and not fut.done():
                try:
                    st, _, h = s.health()
                    assert st == 503 and h.get("status") == "draining", (st, h)
                    st, _, r = s.post("/v1/completions", {"model": s.name, "prompt": "late", "max_tokens": 1})
                    assert st == 503, ("a new request while draining", st, r)
                except (ConnectionError, OSError):
                    pass  # stopped listening: allowed
            st, _, r = fut.result(timeout=300)
            sst, stext, sdone, sfinish = sfut.result(timeout=300)
        assert st == 200, (st, r)
        assert r["usage"]["completion_tokens"] == 120 and r["choices"][0]["finish_reason"] == "length", r
        assert sst == 200 and sdone and sfinish == "length" and stext, (sst, sdone, sfinish, stext)
        rc = s.wait(60)
        assert rc == 0, "exit status %s after SIGTERM\n%s" % (rc, s.log_text())
    finally:
        s.kill()


def test_sigint_idle_exits_0(etx_bin):
    s = Server("--batch", 1)
    s.signal(signal.SIGINT)
    rc = s.wait(30)
    s.kill()
    assert rc == 0, "exit status %s after SIGINT\n%s" % (rc, s.log_text())


def test_server_policy_default(etx_bin):
    """No policy and no temperature: the server's --policy (here greedy) decides."""
    s = Server("--batch", 2, "--policy", "greedy")
    try:
        st, _, r = s.post("/v1/completions", {"model": s.name, "prompt": PROMPTS[0], "max_tokens": 8})
        assert st == 200, r
        assert r["choices"][0]["text"] == etx_generate(prompt=PROMPTS[0], n=8)
    finally:
        assert s.stop() == 0, s.log_text()


def test_model_name_option(etx_bin):
    s = Server("--batch", 1, name="smol")
    try:
        assert s.name == "smol"
        st, _, r = s.request("GET", "/v1/models")
        assert st == 200 and r["data"][0]["id"] == "smol", r
        st, _, r = s.post("/v1/completions", {"model": "smol", "prompt": "Hi", "max_tokens": 1})
        assert st == 200, r
        st, _, r = s.post("/v1/completions", {"model": DEFAULT_NAME, "prompt": "Hi", "max_tokens": 1})
        assert st == 404, r
    finally:
        assert s.stop() == 0, s.log_text()
