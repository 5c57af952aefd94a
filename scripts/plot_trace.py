#!/usr/bin/env python3
"""plot_trace.py — turns an `etx generate --trace FILE.jsonl` trace into PNGs.

Usage:
    python3 scripts/plot_trace.py TRACE.jsonl [--out PREFIX] [--policy-file F.json]
                                  [--request ID]

Writes, for each request in the trace (or only --request ID):
    PREFIX_hv.png       logits entropy H (bits) vs varentropy V (bits^2), one point per
                        generated token coloured by the branch the entropix policy took, with
                        the decision-tree thresholds drawn (the reference defaults, or the
                        values of --policy-file) and the quadrants labelled;
    PREFIX_sequence.png H, V, attention entropy, attention varentropy, agreement and
                        interaction strength along the generated sequence, with the branch
                        of every step as a coloured tick strip underneath.
PREFIX defaults to the trace path without ".jsonl"; with several requests, "_r<ID>" is
appended to it. Needs python3 and matplotlib (pip install matplotlib).

The thresholds (docs/entropix.md §2): LELV H < low_ent_thresh and V < low_vent_thresh;
HELV H > high_ent_thresh and V < low_vent_thresh; LEHV H < high_ent_thresh and
V > high_vent_thresh; HEHV H > med_ent_thresh and V > high_vent_thresh (LEHV is tested
first, so HEHV is effectively H >= high_ent_thresh); everything else is adaptive.
"""
import argparse
import json
import sys
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DEFAULTS = {
    "low_ent_thresh": 0.1,
    "low_vent_thresh": 0.1,
    "med_ent_thresh": 3.0,
    "high_ent_thresh": 5.0,
    "high_vent_thresh": 5.0,
}

# one colour per branch name (etx_branch_name)
COLOURS = OrderedDict(
    [
        ("argmax", "#1f77b4"),
        ("pause", "#9467bd"),
        ("helv", "#e377c2"),
        ("lehv", "#ff7f0e"),
        ("hehv", "#d62728"),
        ("adaptive", "#2ca02c"),
        ("greedy", "#7f7f7f"),
        ("sample", "#17becf"),
    ]
)

METRICS = [
    ("entropy", "H (bits)"),
    ("varentropy", "V (bits²)"),
    ("attn_entropy", "attn entropy (bits)"),
    ("attn_varentropy", "attn varentropy"),
    ("agreement", "agreement"),
    ("interaction", "interaction"),
]


def read_trace(path):
    recs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"plot_trace: {path}:{n}: not JSON: {e}")
    if not recs:
        sys.exit(f"plot_trace: {path}: no records")
    return recs


def thresholds(policy_file):
    t = dict(DEFAULTS)
    if policy_file:
        with open(policy_file, encoding="utf-8") as f:
            p = json.load(f)
        for k in t:
            if k in p:
                t[k] = float(p[k])
    return t


def num(v):
    return float("nan") if v is None else float(v)


def plot_hv(recs, t, path, title):
    fig, ax = plt.subplots(figsize=(7.5, 6))
    hs = [num(r["entropy"]) for r in recs]
    vs = [num(r["varentropy"]) for r in recs]
    xmax = max([x for x in hs if x == x] + [t["high_ent_thresh"]]) * 1.1 + 0.1
    ymax = max([y for y in vs if y == y] + [t["high_vent_thresh"]]) * 1.1 + 0.1
    for b, c in COLOURS.items():
        pts = [(h, v) for h, v, r in zip(hs, vs, recs) if r["branch"] == b]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, c=c, label=f"{b} ({len(pts)})",
                       alpha=0.8, edgecolors="none")
    lo_e, lo_v, med_e, hi_e, hi_v = (t["low_ent_thresh"], t["low_vent_thresh"], t["med_ent_thresh"],
                                     t["high_ent_thresh"], t["high_vent_thresh"])
    kw = dict(color="black", lw=0.9, ls="--")
    # LELV box, HELV strip, LEHV / HEHV regions
    ax.plot([0, lo_e, lo_e], [lo_v, lo_v, 0], **kw)
    ax.plot([hi_e, xmax], [lo_v, lo_v], **kw)
    ax.plot([hi_e, hi_e], [0, ymax], **kw)
    ax.plot([0, xmax], [hi_v, hi_v], **kw)
    ax.plot([med_e, med_e], [hi_v, ymax], color="grey", lw=0.8, ls=":")
    ax.text(lo_e, lo_v, " LELV", fontsize=8, va="bottom")
    ax.text(hi_e, lo_v, " HELV", fontsize=8, va="bottom")
    ax.text(0.02 * xmax, hi_v, " LEHV", fontsize=8, va="bottom")
    ax.text(hi_e, hi_v, " HEHV", fontsize=8, va="bottom")
    ax.text(0.5 * (lo_e + hi_e), 0.5 * hi_v, "adaptive", fontsize=8, ha="center", color="grey")
    ax.text(med_e, ymax, f" med_ent_thresh={med_e:g}\n (HEHV after LEHV)", fontsize=7, va="top", color="grey")
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    ax.set_xlabel("entropy H (bits)")
    ax.set_ylabel("varentropy V (bits²)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sequence(recs, path, title):
    steps = [r["step"] for r in recs]
    fig, axes = plt.subplots(len(METRICS) + 1, 1, figsize=(10, 1.6 * (len(METRICS) + 1)), sharex=True,
                             gridspec_kw={"height_ratios": [3] * len(METRICS) + [1]})
    for ax, (key, label) in zip(axes, METRICS):
        ax.plot(steps, [num(r.get(key)) for r in recs], lw=1.0, marker=".", ms=3, color="#333333")
        ax.set_ylabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    strip = axes[-1]
    seen = OrderedDict()
    for s, r in zip(steps, recs):
        c = COLOURS.get(r["branch"], "black")
        strip.axvspan(s - 0.5, s + 0.5, color=c, lw=0)
        seen[r["branch"]] = c
    strip.set_yticks([])
    strip.set_ylabel("branch", fontsize=8)
    strip.set_xlabel("step (generated token)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in seen.values()]
    strip.legend(handles, list(seen.keys()), fontsize=7, ncol=len(seen), loc="upper center",
                 bbox_to_anchor=(0.5, -0.9), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--out", help="output prefix (default: the trace path without .jsonl)")
    ap.add_argument("--policy-file", help="JSON policy file whose thresholds to draw (default: reference values)")
    ap.add_argument("--request", type=int, help="plot only this request id")
    a = ap.parse_args()
    recs = read_trace(a.trace)
    t = thresholds(a.policy_file)
    prefix = a.out or (a.trace[:-6] if a.trace.endswith(".jsonl") else a.trace)
    by_req = OrderedDict()
    for r in recs:
        by_req.setdefault(r["request"], []).append(r)
    if a.request is not None:
        if a.request not in by_req:
            sys.exit(f"plot_trace: no request {a.request} in {a.trace} (it has {list(by_req)})")
        by_req = OrderedDict([(a.request, by_req[a.request])])
    for rid, rs in by_req.items():
        rs.sort(key=lambda r: r["step"])
        p = prefix if len(by_req) == 1 else f"{prefix}_r{rid}"
        counts = OrderedDict()
        for r in rs:
            counts[r["branch"]] = counts.get(r["branch"], 0) + 1
        mix = ", ".join(f"{b} {n}" for b, n in counts.items())
        title = f"request {rid}: {len(rs)} tokens ({mix})"
        plot_hv(rs, t, p + "_hv.png", title)
        plot_sequence(rs, p + "_sequence.png", title)
        print(f"{p}_hv.png {p}_sequence.png")


if __name__ == "__main__":
    main()
