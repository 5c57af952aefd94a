#!/usr/bin/env python3
"""plot_sweep.py — plots an `etx sweep` results.csv: accuracy and tokens/s against each
grid parameter.

Usage:
    python3 scripts/plot_sweep.py DIR/results.csv [--out PREFIX] [--max-lines N]

Writes PREFIX_<parameter>.png for every grid parameter (the columns between "combo" and
"n"): on the left the accuracy (flexible solid, strict dashed; only when the sweep was
scored with --task gsm8k), on the right tokens/s, both against that parameter's values.
Each setting of the other parameters is its own line, labelled with their values; when
that would be more than --max-lines lines (default 8), the other parameters are averaged
instead and one line is drawn. PREFIX defaults to the CSV's path without ".csv". Needs
python3 and matplotlib (pip install matplotlib).
"""
import argparse
import csv
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402



def num(s):
    return float(s) if s != "" else None


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--out")
    ap.add_argument("--max-lines", type=int, default=8)
    args = ap.parse_args()
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
        header = rows and list(rows[0].keys())
    if not rows:
        sys.exit("plot_sweep.py: %s has no rows" % args.csv)
    params = header[1:header.index("n")]
    prefix = args.out or (args.csv[:-4] if args.csv.endswith(".csv") else args.csv)
    scored = any(r["accuracy_flexible"] != "" for r in rows)
    for p in params:
        others = [q for q in params if q != p]
        groups = OrderedDict()  # setting of the others -> {value of p: [rows]}
        for r in rows:
            key = tuple((q, r[q]) for q in others)
            groups.setdefault(key, OrderedDict()).setdefault(float(r[p]), []).append(r)
        if len(groups) > args.max_lines:
            merged = OrderedDict()
            for g in groups.values():
                for x, rs in g.items():
                    merged.setdefault(x, []).extend(rs)
            groups = OrderedDict([((("mean over", ", ".join(others)),), merged)])
        fig, axes = plt.subplots(1, 2 if scored else 1, figsize=(11 if scored else 6, 4.2), squeeze=False)
        ax_acc = axes[0][0] if scored else None
        ax_tps = axes[0][1] if scored else axes[0][0]
        for i, (key, g) in enumerate(groups.items()):
            xs = sorted(g)
            label = ", ".join("%s=%s" % kv for kv in key) or "all"
            color = "C%d" % (i % 10)
            if scored:
                flex = [mean([num(r["accuracy_flexible"]) for r in g[x]]) for x in xs]
                strict = [mean([num(r["accuracy_strict"]) for r in g[x]]) for x in xs]
                ax_acc.plot(xs, flex, "o-", color=color, label=label + " (flexible)")
                ax_acc.plot(xs, strict, "s--", color=color, alpha=0.6, label=label + " (strict)")
            tps = [mean([num(r["tokens_per_s"]) for r in g[x]]) for x in xs]
            ax_tps.plot(xs, tps, "o-", color=color, label=label)
        if scored:
            ax_acc.set_xlabel(p)
            ax_acc.set_ylabel("accuracy")
            ax_acc.set_ylim(-0.02, 1.02)
            ax_acc.set_title("accuracy vs %s" % p)
            ax_acc.grid(alpha=0.3)
            ax_acc.legend(fontsize=7)
        ax_tps.set_xlabel(p)
        ax_tps.set_ylabel("tokens/s")
        ax_tps.set_title("tokens/s vs %s" % p)
        ax_tps.grid(alpha=0.3)
        ax_tps.legend(fontsize=7)
        fig.suptitle("etx sweep: %s (%d combinations, n=%s per combination)" % (p, len(rows), rows[0]["n"]))
        fig.tight_layout()
        path = "%s_%s.png" % (prefix, p)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(path)


if __name__ == "__main__":
    main()
