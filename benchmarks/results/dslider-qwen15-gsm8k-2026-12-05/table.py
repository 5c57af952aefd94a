"""The table of dslider-qwen15-gsm8k-cpu-2026-12-05.md from etx eval result files.

usage: python3 table.py DSLIDER.jsonl DIR [DIR ...]
  DSLIDER.jsonl: the dslider run (possibly cut short: only the longest prefix of ids
  0, 1, 2, ... that it completed is tabulated, so that the problems still running when
  it stopped, the slower ones, do not bias the sample). Each DIR may hold greedy.jsonl,
  sample.jsonl, entropix.jsonl, entropix_calibrated.jsonl, learned.jsonl: the runs of
  ../gsm8k-200-qwen15-2026-12-04/outputs.tar.xz and
  ../learned-qwen15-gsm8k-2026-12-05/outputs.tar.xz (the same 200 problems, prompt, -n 320
  and scoring), tabulated on the same prefix.
Accuracy: flexible scoring, 95 % Wilson intervals; paired rows: exact two-sided sign test
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
    ds = {r["id"]: r for r in map(json.loads, open(sys.argv[1]))}
    k = 0
    while k in ds:
        k += 1
    ids = list(range(k))
    runs = {"dslider": ds}
    for name in NAMES:
        for d in sys.argv[2:]:
            p = os.path.join(d, name + ".jsonl")
            if os.path.exists(p):
                runs[name] = {r["id"]: r for r in map(json.loads, open(p))}
                break
    print(f"dslider completed {len(ds)} problems; tabulated: ids 0-{k - 1} ({k} problems), every run on the same ids\n")
    print("| run | correct (flexible) | accuracy (95 % Wilson) | tokens | per problem | finish stop / length |")
    print("|---|---:|---:|---:|---:|---|")
    for name, R in runs.items():
        c = sum(R[i]["score"]["flexible"] for i in ids)
        t = sum(R[i]["tokens"] for i in ids)
        fin = collections.Counter(R[i]["finish"] for i in ids)
        lo, hi = wilson(c, k)
        print(f"| {name} | {c}/{k} | {c / k:.3f} ({lo:.3f}-{hi:.3f}) | {t} | {t / k:.0f} | "
              f"{fin.get('stop', 0)} / {fin.get('length', 0)} |")
    print()
    a = runs["dslider"]
    for name, b in runs.items():
        if name == "dslider":
            continue
        only_a = sum(a[i]["score"]["flexible"] and not b[i]["score"]["flexible"] for i in ids)
        only_b = sum(b[i]["score"]["flexible"] and not a[i]["score"]["flexible"] for i in ids)
        print(f"- dslider right and {name} wrong: {only_a}; the reverse: {only_b} "
              f"(exact two-sided sign test p = {sign_p(only_a, only_b):.3f})")
    mix = collections.Counter()
    for i in ids:
        for key, v in (a[i].get("branches") or {}).items():
            mix[key] += v
    tot = sum(mix.values())
    print(f"\ndslider branch mix over {tot} tokens: " + ", ".join(f"{key} {100 * v / tot:.1f} %" for key, v in mix.most_common()))


if __name__ == "__main__":
    main()
