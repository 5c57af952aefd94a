"""Keeps only what this directory's tables and the DeepConf online replay read from an
`etx eval [--samples N] --trace` result file: every field of each line, but of each
trace (each sample's, or a single-sample line's own) only its "confidence" column (the
other columns are 90 % of the bytes).
The stripped lines still carry their "id", so `etx eval` resumes from them.

usage: python3 strip.py IN.jsonl OUT.jsonl
"""
import json
import sys

with open(sys.argv[1]) as f, open(sys.argv[2], "w") as out:
    for line in f:
        if not line.strip():
            continue
        r = json.loads(line)
        for s in r.get("samples", []) + [r]:  # each sample's trace, or a single line's
            if "trace" in s:
                s["trace"] = {"confidence": s["trace"]["confidence"]}
        out.write(json.dumps(r, separators=(",", ":")) + "\n")
