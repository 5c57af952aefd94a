"""peers_common.py — what hf_generate.py and entropix_ref.py share: the command line, the
prompt ids (the ones `etx bench` builds), model loading across transformers versions,
timing helpers, running `etx bench` and reading its JSON, and the markdown table.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args(doc, policy, extra=None):
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if extra:
        extra(ap)
    ap.add_argument("--model", required=True, help="model dir (gpu_llama1b.py make DIR)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "f32"))
    ap.add_argument("-l", type=int, default=128, help="prompt length L")
    ap.add_argument("-g", type=int, default=64, help="tokens generated G (the first comes from prefill)")
    ap.add_argument("-r", type=int, default=3, help="timed repeats R (after one warm-up)")
    ap.add_argument("--batch-n", type=int, default=64, help="the second batch size N (the first is 1)")
    ap.add_argument("--etx", help="etx binary: also run `etx bench --policy %s` on the same work" % policy)
    ap.add_argument("--md", help="also write the markdown table to this file")
    ap.add_argument("--etx-json", help="compare with this `etx bench --json` file (same model and work) instead "
                                       "of running etx")
    a = ap.parse_args()
    if a.l < 1 or a.g < 2 or a.r < 1 or a.batch_n < 1:
        ap.error("need -l >= 1, -g >= 2, -r >= 1, --batch-n >= 1")
    return a


def batches(a):
    return [1] if a.batch_n == 1 else [1, a.batch_n]


def prompt_ids(batch, length, vocab):
    """Prompt b, position i: 1000 + (37 i + 101 b) mod (V - 1000), as etx bench builds them."""
    return [[1000 + (37 * i + 101 * b) % (vocab - 1000) for i in range(length)] for b in range(batch)]


def torch_dtype(name):
    import torch
    return {"bf16": torch.bfloat16, "f32": torch.float32}[name]


def load_model(a, attn_implementation=None):
    import torch
    from transformers import AutoModelForCausalLM
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:  # transformers >= 4.56 names it dtype, older ones torch_dtype
        model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch_dtype(a.dtype), **kw)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch_dtype(a.dtype), **kw)
    return model.to(a.device).eval()


def sync(device):
    if device == "cuda":
        import torch
        torch.cuda.synchronize()


def timed(device, fn):
    """(seconds, result) of fn(), with the device synchronised before and after."""
    sync(device)
    t0 = time.perf_counter()
    r = fn()
    sync(device)
    return time.perf_counter() - t0, r


def rates(batch, l, g, t1, t):
    """prefill tok/s, decode tok/s, ms/step from T1 (prefill + first token) and T (G tokens)."""
    return batch * l / t1, batch * (g - 1) / (t - t1), (t - t1) / (g - 1) * 1000.0


def median_row(engine, batch, samples):
    """samples: [(prefill, decode, ms_step)] per repeat -> a table row of medians."""
    return {"engine": engine, "batch": batch,
            "prefill_tok_s": statistics.median(s[0] for s in samples),
            "decode_tok_s": statistics.median(s[1] for s in samples),
            "ms_step": statistics.median(s[2] for s in samples)}


def device_name(device):
    if device == "cuda":
        import torch
        return torch.cuda.get_device_name(0)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return "%s (%d CPUs)" % (line.split(":", 1)[1].strip(), os.cpu_count() or 0)
    except OSError:
        pass
    return platform.processor() or "cpu"


def header_line(a):
    import torch
    import transformers
    return ("torch %s, transformers %s, device %s, dtype %s, L %d, G %d, R %d"
            % (torch.__version__, transformers.__version__, device_name(a.device), a.dtype, a.l, a.g, a.r))


def read_etx_json(path):
    """An `etx bench --json` file, checked to be one."""
    with open(path) as f:
        js = json.load(f)
    if js.get("etx_bench") != 1:
        sys.exit("%s: not an etx bench JSON (no \"etx_bench\": 1)" % path)
    return js


def run_etx_bench(etx, model, device, batch_list, l, g, r, policy, extra=(), quiet=False):
    """Runs `ETX bench` on this work and returns its JSON (a temporary file, removed)."""
    fd, path = tempfile.mkstemp(prefix="etx_bench_", suffix=".json")
    os.close(fd)
    cmd = [etx, "bench", "-m", model, "--device", device, "--batch", ",".join(map(str, batch_list)),
           "--prompt-len", str(l), "--gen-len", str(g), "--repeats", str(r), "--policy", policy,
           "--json", path] + list(extra)
    if not quiet:
        print("running:", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if quiet else None)
        return read_etx_json(path)
    finally:
        if os.path.exists(path):
            os.remove(path)


def etx_rows(a, policy):
    """Run `etx bench` on the same model and work (or read --etx-json); table rows for etx."""
    if a.etx_json:
        js = read_etx_json(a.etx_json)
    elif a.etx:
        js = run_etx_bench(a.etx, a.model, a.device, batches(a), a.l, a.g, a.r, policy)
    else:
        return []
    for key, want in (("prompt_len", a.l), ("gen_len", a.g)):
        if key in js and js[key] != want:
            print("warning: etx bench %s %s, the peer ran %s" % (key, js[key], want), file=sys.stderr)
    rows = []
    for b in batches(a):
        hit = [r for r in js.get("results", []) if r.get("batch") == b and r.get("policy", policy) == policy]
        if not hit:
            print("warning: etx bench JSON has no result for batch %d, policy %s" % (b, policy), file=sys.stderr)
            continue
        r = hit[0]
        # etx's ms_per_token is per decode step (every row one token, host/cli/bench.c); without
        # it, from the decode rate
        ms = r.get("ms_per_token", b * 1000.0 / r["decode_tok_s"] if r.get("decode_tok_s") else float("nan"))
        row = {"engine": "etx (%s)" % policy, "batch": b, "prefill_tok_s": r["prefill_tok_s"],
               "decode_tok_s": r["decode_tok_s"], "ms_step": ms}
        notes = ["steps_per_sync %s" % js["steps_per_sync"]] if "steps_per_sync" in js else []
        if r.get("policy_share") is not None and policy != "greedy":
            notes.append("policy share %.1f%%" % (100.0 * r["policy_share"]))
        if r.get("decode_floor_fraction") is not None:
            notes.append("decode at %.1f%% of the bandwidth floor" % (100.0 * r["decode_floor_fraction"]))
        for extra in ("branches", "branch_counts"):
            if extra in r:
                notes.append("%s %s" % (extra, json.dumps(r[extra], sort_keys=True)))
        if notes:
            row["note"] = ", ".join(notes)
        rows.append(row)
    return rows


def table(a, peer_rows, etx_rows_, peer_name):
    lines = [header_line(a), "",
             "| engine | batch | prefill tok/s | decode tok/s | ms/step |",
             "|---|---:|---:|---:|---:|"]
    for r in peer_rows + etx_rows_:
        lines.append("| %s | %d | %.1f | %.1f | %.2f |"
                     % (r["engine"], r["batch"], r["prefill_tok_s"], r["decode_tok_s"], r["ms_step"]))
    for e in etx_rows_:
        p = [r for r in peer_rows if r["batch"] == e["batch"]]
        if p:
            p = p[0]
            lines.append("| etx / %s | %d | %.2fx | %.2fx | |"
                         % (peer_name, e["batch"], e["prefill_tok_s"] / p["prefill_tok_s"],
                            e["decode_tok_s"] / p["decode_tok_s"]))
    notes = [r["engine"] + " batch %d: " % r["batch"] + r["note"] for r in peer_rows + etx_rows_ if r.get("note")]
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def report(a, peer_rows, policy, peer_name):
    text = table(a, peer_rows, etx_rows(a, policy), peer_name)
    print()
    print(text, end="")
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)
