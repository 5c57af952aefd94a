"""lm-evaluation-harness against `etx serve`, checked against `etx eval` on the same problems.

The task (tests/serve/lmeval_task/etx_serve_gsm8k*.yaml) is lm-eval's gsm8k scoring
(strict-match and flexible-extract regex filters, exact_match) on the six problems of
tests/serve/gsm8k_fixture.jsonl, zero-shot, with etx eval's gsm8k stop strings and
max_gen_toks = etx eval's -n. lm-eval runs once with local-completions (the
`Question: ...\nAnswer:` prompt) and once with local-chat-completions and
--apply_chat_template (the question and benchmarks/gsm8k_to_jsonl.py's chat instruction as
the user message); etx eval runs the same prompts (a "prompt" JSONL and a "messages" JSONL)
with --policy greedy. Each problem's completion must be identical and each filter's score
equal to etx eval's strict / flexible score. Nothing reaches the network (HF_*_OFFLINE).
"""
import glob
import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import DEVICE, MODEL, ROOT, THREADS, Server, run_etx

HERE = os.path.dirname(os.path.abspath(__file__))
TASK_DIR = os.path.join(HERE, "lmeval_task")
FIXTURE = os.path.join(HERE, "gsm8k_fixture.jsonl")
LM_EVAL_SEED = 1234  # lm-eval's own default, given explicitly: the etx-fields test repeats its requests
CHAT_INSTRUCTION = "\nSolve the problem step by step, then give the final answer on its own line as \"#### <number>\"."


def max_gen_toks():
    with open(os.path.join(TASK_DIR, "etx_serve_gsm8k.yaml")) as f:
        cfg = yaml.safe_load(f)
    assert cfg["generation_kwargs"]["until"] == ["Question:", "</s>", "<|im_end|>", "\n\n"]
    return int(cfg["generation_kwargs"]["max_gen_toks"])


def fixture_rows():
    with open(FIXTURE) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def server(etx_bin):
    s = Server("--batch", 8)
    yield s
    rc = s.stop()
    assert rc == 0, "exit status %s\n%s" % (rc, s.log_text())


def etx_eval(tmp_path, name, rows, n):
    data = tmp_path / (name + ".jsonl")
    out = tmp_path / (name + ".results.jsonl")
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    run_etx("eval", "-m", MODEL, "--data", data, "--out", out, "--task", "gsm8k", "-n", n, "--policy", "greedy",
            "--batch", 4, "--threads", THREADS, "--device", DEVICE, timeout=600)
    with open(out) as f:
        res = [json.loads(line) for line in f if line.strip()]
    assert len(res) == len(rows), res
    return {r["id"]: r for r in res}


def lm_eval(tmp_path, server, kind, task, gen="temperature=0", expect_ok=True, tag="", limit=None):
    outdir = tmp_path / ("lm-" + task + tag)
    endpoint = "/v1/completions" if kind == "local-completions" else "/v1/chat/completions"
    model_args = ("model=%s,base_url=%s%s,tokenizer_backend=None,tokenized_requests=False,num_concurrent=4,"
                  "max_retries=1,seed=%d" % (server.name, server.url, endpoint, LM_EVAL_SEED))
    cmd = [sys.executable, "-m", "lm_eval", "--model", kind, "--model_args", model_args,
           "--include_path", TASK_DIR, "--tasks", task, "--gen_kwargs", gen,
           "--log_samples", "--output_path", str(outdir)] + (["--limit", str(limit)] if limit else [])
    if kind == "local-chat-completions":
        cmd.append("--apply_chat_template")
    env = dict(os.environ, HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_EVALUATE_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "hf" / "ds"),
               TOKENIZERS_PARALLELISM="false")
    # the task's data_files path is relative to the repository root
    p = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    log = p.stdout.decode("utf-8", "replace")
    if not expect_ok:
        return None, None, (p.returncode, log)
    assert p.returncode == 0, "lm_eval exited %d:\n%s" % (p.returncode, log[-6000:])
    assert "Retrying" not in log and "API request failed" not in log, log[-6000:]
    samples = glob.glob(str(outdir / "*" / ("samples_%s_2*.jsonl" % task)))
    results = glob.glob(str(outdir / "*" / "results_*.json"))
    assert len(samples) == 1 and len(results) == 1, (samples, results, log[-3000:])
    with open(samples[0]) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    with open(results[0]) as f:
        agg = json.load(f)["results"][task]
    return recs, agg, log


def compare(recs, agg, ref, prompts):
    filters = {"strict-match": "strict", "flexible-extract": "flexible"}
    seen = {f: set() for f in filters}
    mismatches, score_diffs = [], []
    for r in recs:
        doc_id = r["doc"]["id"]
        e = ref[doc_id]
        seen[r["filter"]].add(doc_id)
        sent = r["arguments"]["gen_args_0"]["arg_0"]
        assert sent == prompts[doc_id], "lm-eval sent %r, etx eval ran %r" % (sent, prompts[doc_id])
        got = r["resps"][0][0]
        if got != e["completion"]:
            mismatches.append("doc %d: serve %r\n       etx eval %r (finish %s)" % (doc_id, got, e["completion"], e["finish"]))
        want = float(e["score"][filters[r["filter"]]])
        if float(r["exact_match"]) != want:
            score_diffs.append("doc %d %s: lm-eval %s (%r), etx eval %s (%r)" % (
                doc_id, r["filter"], r["exact_match"], r["filtered_resps"], want, e["extracted"]))
    assert not mismatches, "completions differ:\n" + "\n".join(mismatches)
    assert not score_diffs, "same completions, different scores:\n" + "\n".join(score_diffs)
    for f, short in filters.items():
        assert seen[f] == set(ref), (f, seen[f])
        mean = sum(ref[i]["score"][short] for i in ref) / len(ref)
        assert abs(agg["exact_match,%s" % f] - mean) < 1e-9, (f, agg, mean)


def test_lm_eval_completions_equals_etx_eval(server, tmp_path):
    n = max_gen_toks()
    rows = fixture_rows()
    prompts = {r["id"]: "Question: %s\nAnswer:" % r["question"] for r in rows}
    ref = etx_eval(tmp_path, "prompts", [{"id": r["id"], "prompt": prompts[r["id"]], "answer": r["answer"]}
                                         for r in rows], n)
    recs, agg, _ = lm_eval(tmp_path, server, "local-completions", "etx_serve_gsm8k")
    compare(recs, agg, ref, prompts)


def test_lm_eval_chat_equals_etx_eval(server, tmp_path):
    n = max_gen_toks()
    rows = fixture_rows()
    msgs = {r["id"]: [{"role": "user", "content": r["question"] + CHAT_INSTRUCTION}] for r in rows}
    ref = etx_eval(tmp_path, "chat", [{"id": r["id"], "messages": msgs[r["id"]], "answer": r["answer"]}
                                      for r in rows], n)
    recs, agg, _ = lm_eval(tmp_path, server, "local-chat-completions", "etx_serve_gsm8k_chat")
    # lm-eval logs the chat request as its JSON string (inside a one-element list: a JsonChatStr)
    prompts = {i: json.dumps(m, ensure_ascii=False) for i, m in msgs.items()}
    for r in recs:
        arg = r["arguments"]["gen_args_0"]["arg_0"]
        arg = arg[0] if isinstance(arg, list) else arg
        r["arguments"]["gen_args_0"]["arg_0"] = json.dumps(json.loads(arg), ensure_ascii=False)
    compare(recs, agg, ref, prompts)


def test_lm_eval_passes_etx_fields(server, tmp_path):
    """--gen_kwargs fields lm-eval does not know go into the request body (docs/serve.md,
    the README's lm-eval line): an unknown policy makes every request fail with the
    server's 400 naming 'policy'; with policy=entropix each completion is exactly what the
    same request sent directly with "policy": "entropix" returns, and at least one differs
    from greedy (so the policy was applied, not dropped)."""
    rc, log = lm_eval(tmp_path, server, "local-completions", "etx_serve_gsm8k", gen="temperature=0,policy=bogus",
                      expect_ok=False, tag="-bogus", limit=1)[2]
    assert rc != 0, "lm-eval with policy=bogus succeeded:\n" + log[-3000:]
    assert "policy" in log and "400" in log, log[-3000:]
    recs, _, _ = lm_eval(tmp_path, server, "local-completions", "etx_serve_gsm8k", gen="temperature=0,policy=entropix",
                         tag="-entropix", limit=3)
    n = max_gen_toks()
    with open(os.path.join(TASK_DIR, "etx_serve_gsm8k.yaml")) as f:
        until = yaml.safe_load(f)["generation_kwargs"]["until"]
    import urllib.request

    def direct(prompt, **extra):
        body = dict(model=server.name, prompt=prompt, max_tokens=n, temperature=0, stop=until, seed=LM_EVAL_SEED, **extra)
        req = urllib.request.Request(server.url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())["choices"][0]["text"]

    differs = 0
    seen = set()
    for r in recs:
        if r["doc_id"] in seen:  # one record per filter
            continue
        seen.add(r["doc_id"])
        prompt = r["arguments"]["gen_args_0"]["arg_0"]
        want = direct(prompt, policy="entropix")
        assert r["resps"][0][0] == want, "doc %d: lm-eval %r, direct entropix request %r" % (r["doc_id"], r["resps"][0][0], want)
        differs += want != direct(prompt)
    assert seen and differs > 0, "entropix gave the greedy text on every problem: the policy may not have been applied"
