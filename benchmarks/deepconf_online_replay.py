#!/usr/bin/env python3
"""DeepConf online, replayed from a full N-sample run.

`etx eval --samples N --trace` runs every sample to its end and records each token's
confidence. `etx eval --samples N --online W --eta E` runs the first W samples, sets a
threshold from them, and stops each later sample at the first token whose group
confidence falls below it. A sample's tokens depend only on (request, sample index), not
on whether it is stopped later, so the online run's samples are prefixes of the full
run's. This script applies the online rules to the full run's traces and reports what
the online run gives: which samples stop and where, the tokens generated, the vote.
One full run then yields DeepConf online at any (W, E) without rerunning the model.

The rules, as host/cli/batch_run.c (submit_online_rest), host/engine/engine.c
(accept_token) and host/cli/batch_samples.c apply them:

- threshold: numpy's linear percentile at 100 (1 - E) of the warm-up samples' lowest
  group confidence (a non-finite one counts as 0), E being --eta as a float32 (etx parses
  it into a float), then rounded to float32
  (etx_request.stop_confidence is a float);
- a later sample stops at the first token t >= window - 1 (a full group ends there), not
  its end-of-turn token, whose group confidence G_t = mean of c[t - window + 1 .. t]
  (summed in double, in order) is below the threshold; it has generated t + 1 tokens;
- voters: warm-up samples whose lowest group confidence is >= the threshold, and later
  samples that were not stopped; each votes its flexible answer weighted by --stat
  (bottom10 by default); the answer with the largest weight wins, ties to the earliest.

Exactness: the lowest group confidences (cJSON writes doubles exactly) and the answers
come from the result lines as the engine wrote them. The trace's per-token confidences
are written with 9 significant digits, which read back as the engine's floats, and G_t
is summed here in the engine's order, so the replay is exact; a later sample whose
smallest |G_t - threshold| is under 1e-6 relative is still counted as "uncertain" (a
trace written with fewer digits, by an older etx, could put its stop either way).
--check compares the replay with a real --online run's result lines, problem by problem.

usage: deepconf_online_replay.py FULL.jsonl [--warmup 4] [--eta 0.5] [--window 64]
                                 [--stat bottom10] [--summary OUT.json] [--check ONLINE.jsonl]
"""
import argparse
import json
import math
import sys

import numpy as np

from eval_stats import wilson  # benchmarks/eval_stats.py, beside this script


def percentile(values, pct):
    """numpy's linear percentile (host/eval/vote.c conf_percentile)."""
    s = sorted(values)
    n = len(s)
    pct = min(max(pct, 0.0), 100.0)
    h = (n - 1) * (pct / 100.0)
    lo = min(int(math.floor(h)), n - 1)
    hi = lo + 1 if lo + 1 < n else lo
    return s[lo] + (h - lo) * (s[hi] - s[lo])


def group_confidences(conf, window):
    """G_t for every token t, as etx_group_confidence: a double sum of the window, in order."""
    c = [float(np.float32(x)) for x in conf]
    out = []
    for t in range(len(c)):
        m = min(max(window, 1), t + 1)
        s = 0.0
        for j in range(t - m + 1, t + 1):
            s += c[j]
        out.append(s / m)
    return out


def vote_confidence(answers, weights):
    """host/eval/vote.c vote_aggregate(VOTE_CONFIDENCE): '' does not vote; ties to the earliest."""
    best, best_w = None, 0.0
    seen = set()
    for i, a in enumerate(answers):
        if not a or a in seen:
            continue
        seen.add(a)
        w = sum(weights[j] for j in range(i, len(answers)) if answers[j] == a)
        if best is None or w > best_w:
            best, best_w = a, w
    return best


def replay(line, warmup, eta, window, stat):
    samples = line["samples"]
    n = len(samples)
    if warmup < 1 or warmup >= n:
        raise SystemExit(f"--warmup must be in 1..{n - 1} for {n} samples")
    for s in samples:
        if "trace" not in s:
            raise SystemExit("the result lines carry no trace: run etx eval with --trace")
    lows = []
    for s in samples[:warmup]:
        v = s["confidence"]["lowest_group"]
        lows.append(v if v is not None and math.isfinite(v) else 0.0)
    # etx holds --eta as a float (EvalArgs.eta): 0.9 is 0.89999997..., which moves the
    # percentile's interpolation and so the threshold by an ulp against the double 0.9
    thr = float(np.float32(percentile(lows, 100.0 * (1.0 - float(np.float32(eta))))))
    answers, weights, tokens, stops, uncertain = [], [], [], [], 0
    for k, s in enumerate(samples):
        ans = s["extracted"]["flexible"] or ""
        w = s["confidence"][stat]
        w = -math.inf if w is None else w
        if k < warmup:
            low = s["confidence"]["lowest_group"]
            votes = low is not None and low >= thr
            answers.append(ans if votes else "")
            weights.append(w)
            tokens.append(s["tokens"])
            stops.append(None)
            continue
        g = group_confidences(s["trace"]["confidence"], window)
        # the end-of-turn token ends the sample before the confidence check
        checked = range(window - 1, len(g) - 1 if s["finish"] == "stop" else len(g))
        stop_at = next((t for t in checked if g[t] < thr), None)
        margin = min((abs(g[t] - thr) for t in checked), default=math.inf)
        if margin < 1e-6 * max(abs(thr), 1e-30):
            uncertain += 1
        stops.append(stop_at)
        if stop_at is None:
            answers.append(ans)
            tokens.append(s["tokens"])
        else:
            answers.append("")
            tokens.append(stop_at + 1)
        weights.append(w)
    winner = vote_confidence(answers, weights)
    ref = line["extracted"]["reference"]
    return {
        "id": line["id"],
        "threshold": thr,
        "stopped": sum(x is not None for x in stops),
        "stop_at": stops,
        "tokens": sum(tokens),
        "sample_tokens": tokens,
        "full_tokens": sum(s["tokens"] for s in samples),
        "answer": winner,
        "correct": winner is not None and winner == ref,
        "uncertain": uncertain,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("full")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--eta", type=float, default=0.5)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--stat", default="bottom10", choices=["mean", "lowest_group", "bottom10", "tail"])
    ap.add_argument("--limit", type=int, default=0, help="only the first N problems")
    ap.add_argument("--summary", help="write the totals as JSON (scripts/plot_eval.py reads it)")
    ap.add_argument("--label", default=None)
    ap.add_argument("--check", help="a real --online run's result lines to compare with")
    a = ap.parse_args()
    if not 0.0 < a.eta <= 1.0:
        raise SystemExit("--eta must be in (0, 1]")
    lines = [json.loads(x) for x in open(a.full) if x.strip()]
    if a.limit:
        lines = lines[: a.limit]
    res = [replay(x, a.warmup, a.eta, a.window, a.stat) for x in lines]
    n = len(res)
    correct = sum(r["correct"] for r in res)
    tokens = sum(r["tokens"] for r in res)
    full = sum(r["full_tokens"] for r in res)
    stopped = sum(r["stopped"] for r in res)
    uncertain = sum(r["uncertain"] for r in res)
    lo, hi = wilson(correct, n)
    n_samples = len(lines[0]["samples"]) if lines else 0
    print(f"DeepConf online replay: {n} problems, {n_samples} samples, warm-up {a.warmup}, eta {a.eta}, "
          f"window {a.window}, stat {a.stat}")
    print(f"  correct {correct}/{n} = {correct / max(n, 1):.3f} (95% Wilson {lo:.3f}-{hi:.3f})")
    print(f"  tokens {tokens} of the full run's {full} ({100.0 * (1 - tokens / max(full, 1)):.1f}% saved); "
          f"samples stopped {stopped} of {n * (n_samples - a.warmup)}; uncertain stops {uncertain}")
    if a.summary:
        label = a.label or f"DeepConf online (warm-up {a.warmup}, eta {a.eta})"
        with open(a.summary, "w") as f:
            json.dump({"label": label, "policy": "sample", "n": n, "correct": correct,
                       "accuracy": correct / max(n, 1), "ci95": [lo, hi], "tokens_generated": tokens,
                       "samples": n_samples, "vote": "deepconf-online", "replayed_from": a.full}, f)
            f.write("\n")
    if a.check:
        online = {json.dumps(x["id"]): x for x in map(json.loads, filter(str.strip, open(a.check)))}
        bad = 0
        compared = 0
        for r in res:
            o = online.get(json.dumps(r["id"]))
            if o is None:
                continue
            compared += 1
            o_tokens = [s["tokens"] for s in o["samples"]]
            o_stop = [s["finish"] == "low_confidence" for s in o["samples"]]
            r_stop = [x is not None for x in r["stop_at"]]
            o_thr = float(np.float32(o["vote"]["threshold"]))
            same = (o_tokens == r["sample_tokens"] and o_stop == r_stop and o_thr == r["threshold"]
                    and (o["extracted"]["flexible"] or None) == r["answer"])
            if not same:
                bad += 1
                print(f"  differs at id {r['id']}: online tokens {o_tokens} stops {o_stop} threshold {o_thr} "
                      f"answer {o['extracted']['flexible']}; replay {r['sample_tokens']} {r_stop} "
                      f"{r['threshold']} {r['answer']}")
        print(f"  check against {a.check}: {compared} problems compared, {bad} differ")
        if compared == 0 or bad:
            sys.exit(1)


if __name__ == "__main__":
    main()
