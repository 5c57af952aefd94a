#!/usr/bin/env python3
"""plot_eval.py — plots `etx eval` summaries: accuracy against the tokens it cost.

Usage:
    python3 scripts/plot_eval.py SUMMARY.json [SUMMARY.json ...] --out PLOT.png
                                 [--x generated|prefill+generated] [--logx] [--title T]

One point per summary file: x is "tokens_generated" (every sample and branch of every
problem), or with --x prefill+generated that plus "prefill_tokens"; y is "accuracy" with
its 95% interval "ci95" [lo, hi] as an error bar. Each point is labelled with the file's
"label" field, or else its file name without ".json"; policy, samples and vote go in the
table printed to stdout. Needs python3 and matplotlib (pip install matplotlib).
"""
import argparse
import json
import os
import sys
import textwrap

REQUIRED = ("accuracy", "ci95", "tokens_generated")


def load(path, x_mode):
    with open(path) as f:
        d = json.load(f)
    missing = [k for k in REQUIRED + (("prefill_tokens",) if x_mode == "prefill+generated" else ())
               if k not in d]
    if missing:
        sys.exit(f"plot_eval.py: {path}: no {', '.join(missing)} (is it an `etx eval` summary?)")
    label = d.get("label") or os.path.splitext(os.path.basename(path))[0]
    x = d["tokens_generated"] + (d["prefill_tokens"] if x_mode == "prefill+generated" else 0)
    acc = float(d["accuracy"])
    lo, hi = (float(v) for v in d["ci95"])
    return {"label": label, "x": x, "acc": acc, "err": (max(acc - lo, 0.0), max(hi - acc, 0.0)),
            "ci": (lo, hi), "policy": d.get("policy", "?"), "samples": d.get("samples", "?"),
            "vote": d.get("vote", "?"), "n": d.get("n", "?")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("summaries", nargs="+", help="`etx eval` summary JSON files")
    ap.add_argument("--out", required=True, help="the PNG to write")
    ap.add_argument("--x", choices=["generated", "prefill+generated"], default="generated",
                    help="tokens on the x axis (default: generated)")
    ap.add_argument("--logx", action="store_true", help="logarithmic x axis")
    ap.add_argument("--title", default="accuracy against tokens")
    args = ap.parse_args()

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        sys.exit("plot_eval.py needs matplotlib, which is not installed: pip install matplotlib")

    points = [load(p, args.x) for p in args.summaries]
    print(f"{'label':<24} {'policy':<12} {'samples':>7} {'vote':<10} {'n':>5} "
          f"{'accuracy':>8} {'ci95':>17} {'tokens':>12}")
    for p in points:
        ci = f"[{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]"
        print(f"{p['label']:<24} {p['policy']:<12} {p['samples']!s:>7} {p['vote']:<10} {p['n']!s:>5} "
              f"{p['acc']:>8.3f} {ci:>17} {p['x']:>12}")

    fig, ax = plt.subplots(figsize=(7, 5))
    for p in points:
        ax.errorbar([p["x"]], [p["acc"]], yerr=[[p["err"][0]], [p["err"][1]]], fmt="o", capsize=4)
        ax.annotate(p["label"], (p["x"], p["acc"]), textcoords="offset points", xytext=(6, 6),
                    fontsize=8)
    if args.logx:
        ax.set_xscale("log")
        # a tick at each point, skipping any within 30 % of the last one kept (their labels
        # would overlap): the default minor labels (2x10^5, ...) overlap too
        ticks = []
        for x in sorted({p["x"] for p in points}):
            if not ticks or x >= 1.3 * ticks[-1]:
                ticks.append(x)
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.12, y=0.08)  # room for the labels of the outermost points
    ax.set_xlabel("tokens generated" if args.x == "generated" else "tokens prefilled + generated")
    ax.set_ylabel("accuracy (error bar: 95% interval)")
    ax.set_title("\n".join(textwrap.wrap(args.title, 60)), fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
