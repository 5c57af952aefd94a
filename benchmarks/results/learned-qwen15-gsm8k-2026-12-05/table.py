"""The tables of learned-qwen15-gsm8k-cpu-2026-12-05.md from etx eval result files.

usage: python3 table.py DIR [DIR ...]
  Each DIR may hold greedy.jsonl, entropix.jsonl, sample.jsonl, entropix_calibrated.jsonl,
  learned.jsonl (and their *_summary.json); every run found is tabulated (the first DIR
  that has it wins). The older runs come from
  ../gsm8k-200-qwen15-2026-12-04/outputs.tar.xz, the learned one from outputs.tar.xz here.
Accuracy: flexible scoring (the last number of the completion), 95 % Wilson intervals;
the paired rows use the problems every run completed, with an exact two-sided sign test
on the problems where exactly one of the two runs is right.
"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from eval_stats import sign_p, wilson  # noqa: E402  (benchmarks/eval_stats.py)

NAMES = ("greedy", "sample", "entropix", "entropix_calibrated", "learned")


def main():
    runs, secs = {}, {}
    for name in NAMES:
        for d in sys.argv[1:]:
            p = os.path.join(d, name + ".jsonl")
            if os.path.exists(p):
                runs[name] = {r["id"]: r for r in map(json.loads, open(p))}
                sp = os.path.join(d, name + "_summary.json")
                secs[name] = json.load(open(sp))["seconds"] if os.path.exists(sp) else float("nan")
                break
    common = sorted(set.intersection(*(set(r) for r in runs.values())), key=str)
    print(f"On the {len(common)} problems every run completed:\n")
    print("| run | correct (flexible) | accuracy (95 % Wilson) | tokens | per problem | finish stop / length | wall s |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for name, R in runs.items():
        c = sum(R[i]["score"]["flexible"] for i in common)
        t = sum(R[i]["tokens"] for i in common)
        fin = collections.Counter(R[i]["finish"] for i in common)
        lo, hi = wilson(c, len(common))
        print(f"| {name} | {c}/{len(common)} | {c / len(common):.3f} ({lo:.3f}-{hi:.3f}) | {t} | "
              f"{t / len(common):.0f} | {fin.get('stop', 0)} / {fin.get('length', 0)} | {secs[name]:.0f} |")
    if "learned" in runs:
        print()
        for name in runs:
            if name == "learned":
                continue
            a, b = runs["learned"], runs[name]
            only_a = sum(a[k]["score"]["flexible"] and not b[k]["score"]["flexible"] for k in common)
            only_b = sum(b[k]["score"]["flexible"] and not a[k]["score"]["flexible"] for k in common)
            print(f"- learned right and {name} wrong: {only_a}; the reverse: {only_b} "
                  f"(exact two-sided sign test p = {sign_p(only_a, only_b):.3f})")
    for name, R in runs.items():
        mix = collections.Counter()
        for r in R.values():
            for k, v in (r.get("branches") or {}).items():
                mix[k] += v
        tot = sum(mix.values())
        if name in ("entropix", "entropix_calibrated", "learned") and tot:
            print(f"\n{name} branch mix over {tot} tokens: " +
                  ", ".join(f"{k} {100 * v / tot:.1f} %" for k, v in mix.most_common()))


if __name__ == "__main__":
    main()
