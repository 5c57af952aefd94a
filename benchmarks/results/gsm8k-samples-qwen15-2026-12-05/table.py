"""The tables of gsm8k-samples-qwen15-cpu-2026-12-05.md, and one `etx eval`-style summary
per row for scripts/plot_eval.py, from the result files in this directory and in
../gsm8k-200-qwen15-2026-12-04.

usage: python3 table.py [--sc8 sc8.jsonl.xz] [--branch branch.jsonl.xz] [--points DIR]

- greedy, entropix (v1) and one sample at T 0.7: the 2026-12-04 runs (outputs.tar.xz),
  restricted to the problems the 8-sample file holds (the first 100 ids);
- 8 samples at T 0.7: majority, confidence-weighted and DeepConf offline (eta 0.5) votes
  as `etx eval` wrote them; pass@1 and pass@8;
- DeepConf online (warm-up 4; eta 0.9, 0.5, 0.1): replayed from the 8 samples' traces by
  benchmarks/deepconf_online_replay.py, which was checked against a real online run
  (README);
- entropy branching: greedy with `--branch 3 --branch-entropy 2.0 --lookahead 8
  --branch-budget 256`; its tokens include the branches it dropped.

Each row: correct (flexible scoring: the last number of the completion), accuracy with a
95 % Wilson interval, tokens generated (every sample and branch), and the exact two-sided
sign test of its per-problem outcomes against greedy's and against the 8-sample
majority vote's. Every file must cover the same problem ids, or the script says which
are missing.
"""
import argparse
import io
import json
import lzma
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", ".."))
from eval_stats import sign_p, wilson  # noqa: E402  (benchmarks/eval_stats.py)
from deepconf_online_replay import replay  # noqa: E402


def read_lines(path):
    """Result lines of a .jsonl or .jsonl.xz file, keyed by id."""
    opener = lzma.open if path.endswith(".xz") else open
    with opener(path, "rt") as f:
        return {json.dumps(r["id"]): r for r in map(json.loads, filter(str.strip, f))}


def read_200(name):
    """One of the 2026-12-04 runs, from its outputs.tar.xz, keyed by id."""
    tar = os.path.join(HERE, "..", "gsm8k-200-qwen15-2026-12-04", "outputs.tar.xz")
    with tarfile.open(tar) as t:
        data = t.extractfile(name + ".jsonl").read().decode()
    return {json.dumps(r["id"]): r for r in map(json.loads, io.StringIO(data)) if r}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sc8", default=os.path.join(HERE, "sc8.jsonl.xz"))
    ap.add_argument("--branch", default=os.path.join(HERE, "branch.jsonl.xz"))
    ap.add_argument("--points", default=None, help="write one summary JSON per row here")
    a = ap.parse_args()

    sc8 = read_lines(a.sc8)
    ids = sorted(sc8, key=json.loads)
    # rows: name -> (per-id correct, per-id tokens, policy, samples, vote)
    rows = {}

    def add(name, correct, tokens, policy, samples, vote):
        missing = [i for i in ids if i not in correct]
        if missing:
            raise SystemExit(f"table.py: {name} lacks {len(missing)} of the {len(ids)} ids, "
                             f"first {missing[0]}")
        rows[name] = ({i: bool(correct[i]) for i in ids}, {i: tokens[i] for i in ids},
                      policy, samples, vote)

    for name, label in (("greedy", "greedy"), ("entropix", "entropix (v1)"),
                        ("sample", "sample T 0.7 (one)")):
        R = read_200(name)
        add(label, {i: r["score"]["flexible"] for i, r in R.items()},
            {i: r["tokens"] for i, r in R.items()}, name, 1, "none")
    sc8_tokens = {i: r["tokens"] for i, r in sc8.items()}
    for vote in ("majority", "confidence", "deepconf"):
        label = {"majority": "8 samples, majority", "confidence": "8 samples, confidence-weighted",
                 "deepconf": "8 samples, DeepConf offline (eta 0.5)"}[vote]
        add(label, {i: r["votes"][vote]["correct"] for i, r in sc8.items()}, sc8_tokens,
            "sample", 8, vote)
    replays = {eta: {i: replay(r, 4, eta, 64, "bottom10") for i, r in sc8.items()} for eta in (0.9, 0.5, 0.1)}
    for eta, rep in replays.items():
        add(f"DeepConf online, eta {eta}", {i: x["correct"] for i, x in rep.items()},
            {i: x["tokens"] for i, x in rep.items()}, "sample", 8, "deepconf-online")
    have_branch = os.path.exists(a.branch)
    if have_branch:
        B = read_lines(a.branch)
        add("greedy + entropy branching (3 x 8, H > 2)",
            {i: r["score"]["flexible"] for i, r in B.items()},
            {i: r["tokens"] + r.get("branching", {}).get("dropped_tokens", 0) for i, r in B.items()},
            "greedy", 1, "branch")
    else:
        print(f"(no {os.path.basename(a.branch)}: branching left out)\n")

    n = len(ids)
    base = {"greedy": rows["greedy"][0], "majority": rows["8 samples, majority"][0]}
    print(f"First {n} GSM8K test problems (ids {json.loads(ids[0])}-{json.loads(ids[-1])}).\n")
    print("| run | correct | accuracy (95 % Wilson) | tokens generated | per problem "
          "| vs greedy: +/- (sign p) | vs majority@8: +/- (sign p) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (C, T, policy, samples, vote) in rows.items():
        c = sum(C.values())
        t = sum(T.values())
        lo, hi = wilson(c, n)
        cmp = []
        for b in ("greedy", "majority"):
            ref = base[b]
            if C is ref:
                cmp.append("-")
                continue
            up = sum(C[i] and not ref[i] for i in ids)
            down = sum(ref[i] and not C[i] for i in ids)
            cmp.append(f"+{up} / -{down} ({sign_p(up, down):.2f})")
        print(f"| {name} | {c}/{n} | {c / n:.3f} ({lo:.3f}-{hi:.3f}) | {t:,} | {t / n:.0f} | "
              f"{cmp[0]} | {cmp[1]} |")
        if a.points:
            os.makedirs(a.points, exist_ok=True)
            slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            with open(os.path.join(a.points, slug + ".json"), "w") as f:
                json.dump({"label": name, "policy": policy, "n": n, "correct": c, "accuracy": c / n,
                           "ci95": [lo, hi], "tokens_generated": t, "samples": samples,
                           "vote": vote}, f)
                f.write("\n")
    p1 = sum(r["pass"]["pass@1"] for r in sc8.values())
    pn = sum(r["pass"]["pass@n"] for r in sc8.values())
    print(f"\n8 samples: pass@1 (the mean over samples) {p1:.2f}/{n} = {p1 / n:.3f}; "
          f"pass@8 (any sample right) {pn}/{n} = {pn / n:.3f}.")
    for eta, rep in replays.items():
        rep = list(rep.values())
        print(f"DeepConf online eta {eta}: {sum(x['stopped'] for x in rep)} of {4 * n} later samples "
              f"stopped; {sum(x['uncertain'] for x in rep)} stops within 1e-6 of the threshold.")
    if have_branch:
        br = [B[i]["branching"] for i in ids]  # B: the branching run's lines
        print(f"Branching: {sum(x['forks'] for x in br)} forks in {sum(x['forks'] > 0 for x in br)} "
              f"problems; {sum(x['dropped_tokens'] for x in br):,} tokens in branches dropped.")


if __name__ == "__main__":
    main()
