#!/usr/bin/env python3
"""gen_metrics_fixtures.py — expected entropix metrics (host/policy/metrics.c) from an independent
numpy float64 brute force; writes tests/fixtures/metrics/metrics.json.

Logit cases: H = -sum p log2 p, V = sum p (log2 p + H)^2 over p = softmax(x), computed
with log_softmax in float64 on the float32 inputs.

Attention cases: for window 0 (etx's corrected definition) P = softmax over the n_pos
real scores and the entropy is exact (-P log2 P, 0 log 0 = 0); for window W > 0 (the
reference's compatibility definition) the scores are padded with W - n_pos literal zero
columns (materialised here, on purpose) and the entropy uses the reference's
log2(clip(P, 1e-10, 1)). Then attn_entropy = mean over heads, attn_varentropy =
population variance over heads, agreement = mean |P - mean_heads P|, interaction =
mean |s|, all over heads x (padded) positions.

Large inputs are not stored: they come from a generator the C test reimplements bit for
bit (gen_values below), so only its parameters go into the JSON.

Usage: python3 tests/scripts/gen_metrics_fixtures.py   (needs numpy only)
"""
import json
import math
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "metrics")
M64 = (1 << 64) - 1


def splitmix64(seed, n):
    """n outputs of splitmix64 started at state seed (vectorised: state_i = seed + (i+1) gamma)."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(seed & M64) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def gen_values(seed, n, scale, offset):
    """float32 values ~ N(offset, scale^2) (Irwin-Hall of 4 uniforms, variance matched):
    u = (r >> 40) / 2^24 (exact), x = float32(((u0+u1+u2+u3) - 2) * (sqrt(3) * scale) + offset),
    the four uniforms of value i being outputs 4i..4i+3. Every double operation here is a
    single IEEE rounding, so C computes the same float32 values."""
    r = splitmix64(seed, 4 * n)
    u = (r >> np.uint64(40)).astype(np.float64) / 16777216.0
    u = u.reshape(n, 4)
    t = ((u[:, 0] + u[:, 1]) + u[:, 2]) + u[:, 3]
    c = math.sqrt(3.0) * scale
    return ((t - 2.0) * c + offset).astype(np.float32)


def fnum(v):
    """JSON number for a float32 value (exact round trip); non-finite as a string."""
    v = float(v)
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


# ----------------------------------------------------------------------------
# logits


def logit_expect(x32):
    x = x32.astype(np.float64)
    m = np.max(x)
    with np.errstate(invalid="ignore", over="ignore"):
        lsum = math.log(np.sum(np.exp(x - m)))
        lse = m + lsum
        lp = (x - m) - lsum  # -inf stays -inf; not x - lse, which loses lsum next to a huge m
        p = np.exp(lp)
        lp2 = np.where(p > 0, lp / math.log(2), 0.0)
        h = -np.sum(np.where(p > 0, p * lp2, 0.0))
        v = np.sum(np.where(p > 0, p * (lp2 + h) ** 2, 0.0))
    return float(h), float(v), float(lse)


def logit_plain(x32):
    """The max and the population standard deviation of the finite logits (top-nσ's sigma)."""
    x = x32.astype(np.float64)
    fin = x[np.isfinite(x)]
    if fin.size == 0:
        return float("-inf"), 0.0
    return float(np.max(fin)), float(np.std(fin))


def logit_cases():
    cases = []

    def add_values(name, vals):
        x = np.array(vals, dtype=np.float32)
        h, v, lz = logit_expect(x)
        mx, sd = logit_plain(x)
        cases.append({"name": name, "values": [fnum(t) for t in x], "entropy": h, "varentropy": v, "log_z": lz,
                      "max": mx, "sigma": sd})

    def add_gen(name, seed, n, scale, offset=0.0, edits=None):
        x = gen_values(seed, n, scale, offset)
        case = {"name": name, "gen": {"seed": seed, "n": n, "scale": scale, "offset": offset}}
        if edits:  # (index, value) overrides after generation
            for i, val in edits:
                x[i] = np.float32(val)
            case["edits"] = [[i, fnum(np.float32(val))] for i, val in edits]
        h, v, lz = logit_expect(x)
        mx, sd = logit_plain(x)
        case.update({"entropy": h, "varentropy": v, "log_z": lz, "max": mx, "sigma": sd})
        cases.append(case)

    inf = float("inf")
    add_values("n1", [3.5])
    add_values("two_tokens", [1.0, 0.0])
    add_values("two_equal", [-7.25, -7.25])
    add_values("one_hot", [-inf] * 10 + [2.0] + [-inf] * 5)
    add_values("some_neg_inf", [1.0, -inf, 0.5, -inf, -2.0, 3.0, -inf])
    add_values("huge_1e30", [1e30, -1e30, 0.0, 1.0, -1e30])
    add_values("huge_1e30_tie", [1e30, -1e30, 1e30, 0.0])
    add_values("huge_3e38", [3e38, -3e38, 0.0, 3e38, -3e38, 1e38])
    add_values("flt_max", [3.4028234663852886e38, -3.4028234663852886e38, 0.0])
    add_values("all_neg_huge", [-3e38, -3e38, -3e38 * 0.5])
    add_values("mixed_small", [0.1, -0.3, 2.7, 2.69, -5.0, 0.0, 1e-3])
    add_gen("uniform_49152", 1, 49152, 0.0, offset=1.5)  # scale 0: every value 1.5
    add_gen("one_hot_big", 2, 49152, 1.0, offset=-1e30, edits=[(1234, 0.0)])
    for scale in (1.0, 5.0, 20.0):
        for n in (49152, 128256):
            add_gen("normal_s%g_n%d" % (scale, n), 100 + int(scale) * 7 + n % 97, n, scale)
    add_gen("normal_s3_offset1e4", 7, 49152, 3.0, offset=1e4)
    add_gen("peaked_128256", 9, 128256, 2.0, edits=[(77, 40.0), (90000, 38.5)])
    return cases


# ----------------------------------------------------------------------------
# attention


def attn_expect(s32, window):
    s = s32.astype(np.float64)
    H, n = s.shape
    compat = window > 0
    if compat and window > n:
        s = np.concatenate([s, np.zeros((H, window - n))], axis=1)  # the reference's empty cache slots
    m = s.max(axis=1, keepdims=True)
    e = np.exp(s - m)
    P = e / e.sum(axis=1, keepdims=True)
    if compat:
        ent = -np.sum(P * np.log2(np.clip(P, 1e-10, 1.0)), axis=1)
    else:
        with np.errstate(divide="ignore"):
            ent = -np.sum(np.where(P > 0, P * np.log2(np.where(P > 0, P, 1.0)), 0.0), axis=1)
    agree = np.mean(np.abs(P - P.mean(axis=0, keepdims=True)))
    inter = np.mean(np.abs(s))
    return {"window": window, "attn_entropy": float(ent.mean()), "attn_varentropy": float(ent.var(ddof=0)),
            "agreement": float(agree), "interaction": float(inter)}


def attn_cases():
    cases = []
    seed = 1000
    windows = (0, 4096)
    for n_heads in (1, 3, 9, 32):
        for n_pos in (1, 2, 17, 300):
            for scale, offset in ((1.0, 0.0), (4.0, 1.0), (0.25, -3.0)):
                seed += 1
                s = gen_values(seed, n_heads * n_pos, scale, offset).reshape(n_heads, n_pos)
                case = {"name": "h%d_n%d_s%g_o%g" % (n_heads, n_pos, scale, offset), "n_heads": n_heads,
                        "n_pos": n_pos, "gen": {"seed": seed, "n": n_heads * n_pos, "scale": scale, "offset": offset}}
                if n_heads > 1 and n_pos > 1 and scale == 4.0:  # one head peaked on one position
                    idx = (n_heads // 2) * n_pos + n_pos // 3
                    s.flat[idx] = np.float32(30.0)
                    case["edits"] = [[idx, 30.0]]
                case["expect"] = [attn_expect(s, w) for w in windows]
                cases.append(case)
    # small hand-made rows, the window at and below n_pos (compat without zeros), and
    # scores far below zero (the zero slots then dominate)
    hand = [
        ("one_pos_two_heads", [[0.5], [-2.0]], (0, 1, 8, 4096)),
        ("equal_scores", [[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]], (0, 4, 5, 4096)),
        ("very_negative", [[-150.0, -149.0, -160.0], [-90.0, -300.0, -95.0]], (0, 3, 16, 4096)),
        ("very_peaked", [[80.0, -10.0, 0.0, 2.0], [0.0, 0.0, 60.0, 0.0], [1.0, 2.0, 3.0, 4.0]], (0, 2, 4096)),
    ]
    for name, rows, wins in hand:
        s = np.array(rows, dtype=np.float32)
        cases.append({"name": name, "n_heads": s.shape[0], "n_pos": s.shape[1],
                      "values": [fnum(t) for t in s.flat], "expect": [attn_expect(s, w) for w in wins]})
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    doc = {
        "about": "expected entropix metrics from tests/scripts/gen_metrics_fixtures.py (numpy float64 brute force)",
        "generator": "splitmix64 Irwin-Hall-4, see gen_values in the script",
        "logits": logit_cases(),
        "attention": attn_cases(),
    }
    path = os.path.join(OUT, "metrics.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote %s: %d logit cases, %d attention cases" % (path, len(doc["logits"]), len(doc["attention"])))


if __name__ == "__main__":
    main()
