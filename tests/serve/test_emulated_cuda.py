"""`etx serve` on the CUDA backend, run by the SIMT emulator (BUILD_DIR/etx_emu --device cuda):
the server adds no device code, but its log-probabilities and branch mix come from the
trace records the device's vocabulary pass fills, so one short run checks that path end to
end. Greedy text equals `etx_emu generate --device cuda`; logprobs are finite, <= 0, at
most the asked alternatives, the chosen token among them; a stream equals the whole
response; two seeded samples share the prompt (n=2). Skipped where the build has no
etx_emu (ETX_EMU_BIN unset or missing). Small on purpose: the emulator runs every kernel
on the CPU (a context of 64, 6 tokens)."""
import json
import math
import os

import pytest

from conftest import Server, etx_generate

EMU = os.environ.get("ETX_EMU_BIN", "")
pytestmark = pytest.mark.skipif(not (EMU and os.access(EMU, os.X_OK)), reason="no etx_emu in this build")
PROMPT = "The capital of France is"
N = 6


@pytest.fixture(scope="module")
def emu_server():
    s = Server("--batch", 4, "--ctx", 64, etx=EMU, device="cuda")
    yield s
    assert s.stop() == 0, s.log_text()


def post(server, body):
    status, _, data = server.post("/v1/completions", body, timeout=600)
    assert status == 200 and isinstance(data, dict), data
    return data


def test_emulated_cuda_greedy_logprobs_stream_and_n(emu_server):
    ref = etx_generate(prompt=PROMPT, n=N, extra=("--ctx", 64), etx=EMU, device="cuda", timeout=600)
    r = post(emu_server, {"prompt": PROMPT, "max_tokens": N, "temperature": 0, "logprobs": 2})
    c = r["choices"][0]
    assert c["text"] == ref, "serve %r, generate %r" % (c["text"], ref)
    lp = c["logprobs"]
    assert len(lp["tokens"]) == r["usage"]["completion_tokens"] == len(lp["token_logprobs"])
    for tok, v, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert math.isfinite(v) and v <= 0, lp
        assert 1 <= len(top) <= 2 and tok in top and abs(top[tok] - v) < 1e-6, lp
    assert c["etx"]["branches"] == {"greedy": r["usage"]["completion_tokens"]}
    status, _, data = emu_server.post("/v1/completions", {"prompt": PROMPT, "max_tokens": N, "temperature": 0,
                                                          "stream": True}, timeout=600)
    assert status == 200 and isinstance(data, str), data
    text = "".join(json.loads(line[6:])["choices"][0]["text"] for line in data.split("\n\n")
                   if line.startswith("data: {"))
    assert text == ref
    r2 = post(emu_server, {"prompt": PROMPT, "max_tokens": N, "temperature": 1, "n": 2, "seed": 3})
    assert [ch["index"] for ch in r2["choices"]] == [0, 1]
    assert all(ch["text"] for ch in r2["choices"]) and r2["usage"]["completion_tokens"] >= 2
