#!/usr/bin/env python3
"""gen_calibrate_fixtures.py — expected quantiles for host/policy/calibrate.c from numpy
(np.quantile, its default method "linear"), on float32 samples stored in the JSON itself;
writes tests/fixtures/calibrate/quantiles.json.

Cases: small and large samples, ties (many exact zeros, as a near-certain model's
entropy has), a single value, values spanning magnitudes. For each, the quantiles at a
fixed list of q, computed in float64 on the float32 values.

Usage: python3 tests/scripts/gen_calibrate_fixtures.py   (needs numpy only)
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "calibrate")
QS = [0.001, 0.01, 0.05, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999]


def case(name, values):
    v = np.asarray(values, dtype=np.float32)
    qs = [float(np.quantile(v.astype(np.float64), q)) for q in QS]
    # floats stored as their float32 bit patterns' decimal forms that read back exactly
    return {"name": name, "values": [float(x) for x in v], "q": QS, "expected": qs}


def main():
    rng = np.random.default_rng(20261204)
    cases = [
        case("one value", [2.5]),
        case("two values", [1.0, 3.0]),
        case("small unsorted", [5.0, 0.25, 3.5, 1.0, 7.75, 2.0, 0.5]),
        # entropy-like: 60 % exact zeros, the rest exponential
        case("zeros and a tail", np.concatenate([np.zeros(600), rng.exponential(1.5, 400)])),
        # varentropy-like: lognormal over several magnitudes
        case("lognormal", rng.lognormal(0.5, 1.5, 1000)),
        case("uniform 257", rng.uniform(-3, 3, 257)),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "quantiles.json"), "w") as f:
        json.dump({"generator": "tests/scripts/gen_calibrate_fixtures.py", "numpy": np.__version__, "cases": cases},
                  f, indent=0)
        f.write("\n")
    print("wrote", os.path.join(OUT, "quantiles.json"))


if __name__ == "__main__":
    main()
