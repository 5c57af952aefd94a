#!/usr/bin/env python3
"""cost_model_table.py — the summary of `etx bench --plan` (the CUDA cost model, a
prediction, not a measurement) for a model shape on every datasheet card, with and
without programmatic dependent launch (ETX_PDL=0), and on the first card with the
fusions undone (ETX_FUSE=0), greedy and entropix, as one markdown table; then the per-op
tables of the first card, entropix, as etx prints them.

    python3 benchmarks/cost_model_table.py [--etx build-dev/etx] [--shape llama-3.2-1b]

Regenerates the tables of benchmarks/results/cost-model-*.md.
"""
import argparse
import os
import re
import subprocess
import sys

LINE = re.compile(r"^batch (\d+), \d+ positions per row, (greedy|entropix)[^:]*: predicted ([\d.]+) ms per step "
                  r"\(([\d.]+) ms per token\), floor ([\d.]+) ms = (\d+)% of the floor, (\d+) kernel launches")


def plan(etx, shape, card, pdl, batches, fuse=1):
    env = dict(os.environ, ETX_PDL="1" if pdl else "0", ETX_FUSE="1" if fuse else "0")
    cmd = [etx, "bench", "--plan", "--shape", shape, "-l", "128", "-g", "64", "--policy", "greedy,entropix",
           "--card", card, "--batch", batches]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    rows = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            rows[(int(m.group(1)), m.group(2))] = (float(m.group(3)), float(m.group(5)), int(m.group(6)),
                                                  int(m.group(7)))
    return out, rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--etx", default="build-dev/etx")
    ap.add_argument("--shape", default="llama-3.2-1b")
    ap.add_argument("--cards", default="h100,h200")
    ap.add_argument("--batch", default="1,8,64,256")
    a = ap.parse_args()
    print("| card | PDL | fusions | batch | greedy ms/step | entropix ms/step | floor ms | entropix / floor | launches |")
    print("|---|---|---|---|---|---|---|---|---|")
    first = None
    cards = a.cards.split(",")
    runs = [(card, pdl, 1) for card in cards for pdl in (1, 0)] + [(cards[0], 1, 0)]
    for card, pdl, fuse in runs:
        out, rows = plan(a.etx, a.shape, card, pdl, a.batch, fuse)
        if first is None:
            first = out
        for b in [int(x) for x in a.batch.split(",")]:
            g, e = rows.get((b, "greedy")), rows.get((b, "entropix"))
            if not g or not e:
                sys.exit(f"cost_model_table: no prediction for batch {b} on {card}")
            print(f"| {card} | {'on' if pdl else 'off'} | {'on' if fuse else 'off'} | {b} | {g[0]:.3f} | {e[0]:.3f} | "
                  f"{e[1]:.3f} | {e[2]}% | {e[3]} |")
    print()
    print("Per op, first card, with PDL (etx bench --plan as printed):")
    print()
    keep = False
    for line in first.splitlines():
        if line.startswith("batch ") and "entropix" in line:
            keep = True
        elif line.startswith("batch "):
            keep = False
        if keep:
            print(line)


if __name__ == "__main__":
    main()
