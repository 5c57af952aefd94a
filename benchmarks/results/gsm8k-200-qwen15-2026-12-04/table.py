"""The tables of gsm8k-200-qwen15-cpu-2026-12-04.md from the runs' etx eval result files.

usage: python3 table.py DIR   (DIR holds greedy.jsonl, entropix.jsonl, sample.jsonl,
       entropix_calibrated.jsonl and their *_summary.json; the ones present are tabulated)
Accuracy: flexible scoring (the last number of the completion) and strict ("#### N"),
95 % Wilson intervals; the comparison rows use the problems every run completed.
"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from eval_stats import sign_p, wilson  # noqa: E402  (benchmarks/eval_stats.py)


def main():
    d = sys.argv[1]
    runs = {}
    for name in ("greedy", "entropix", "sample", "entropix_calibrated"):
        p = os.path.join(d, name + ".jsonl")
        if os.path.exists(p):
            rows = {r["id"]: r for r in map(json.loads, open(p))}
            if rows:
                runs[name] = rows
    common = sorted(set.intersection(*(set(r) for r in runs.values())), key=str) if runs else []
    print("| run | problems | correct (flexible) | accuracy (95 % Wilson) | strict | tokens | per problem | finish stop / length | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    for name, R in runs.items():
        rows = list(R.values())
        n = len(rows)
        c = sum(r["score"]["flexible"] for r in rows)
        s = sum(r["score"]["strict"] for r in rows)
        t = sum(r["tokens"] for r in rows)
        lo, hi = wilson(c, n)
        fin = collections.Counter(r["finish"] for r in rows)
        sp = os.path.join(d, name + "_summary.json")
        secs = json.load(open(sp))["seconds"] if os.path.exists(sp) else float("nan")
        print(f"| {name} | {n} | {c} | {c / n:.3f} ({lo:.3f}-{hi:.3f}) | {s} | {t} | {t / n:.0f} | "
              f"{fin.get('stop', 0)} / {fin.get('length', 0)} | {secs:.0f} |")
    if len(runs) > 1:
        print()
        print(f"On the {len(common)} problems every run completed:")
        print()
        print("| run | correct (flexible) | accuracy (95 % Wilson) | tokens |")
        print("|---|---:|---:|---:|")
        for name, R in runs.items():
            c = sum(R[i]["score"]["flexible"] for i in common)
            t = sum(R[i]["tokens"] for i in common)
            lo, hi = wilson(c, len(common))
            print(f"| {name} | {c}/{len(common)} | {c / len(common):.3f} ({lo:.3f}-{hi:.3f}) | {t} |")
        names = list(runs)
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                a, b = runs[names[i]], runs[names[j]]
                only_a = sum(a[k]["score"]["flexible"] and not b[k]["score"]["flexible"] for k in common)
                only_b = sum(b[k]["score"]["flexible"] and not a[k]["score"]["flexible"] for k in common)
                print(f"\n{names[i]} right and {names[j]} wrong: {only_a}; the reverse: {only_b} "
                      f"(exact two-sided sign test p = {sign_p(only_a, only_b):.3f})")
    for name, R in runs.items():
        mix = collections.Counter()
        for r in R.values():
            for k, v in (r.get("branches") or {}).items():
                mix[k] += v
        tot = sum(mix.values())
        if name.startswith("entropix") and tot:
            print(f"\n{name} branch mix over {tot} tokens: " +
                  ", ".join(f"{k} {100 * v / tot:.1f} %" for k, v in mix.most_common()))


if __name__ == "__main__":
    main()
