#!/usr/bin/env python3
"""Writes tests/policy/dslider_fixture.h: reference values for tests/policy/test_dslider.c,
which checks the numerical helpers of hostdev/policy_dslider.h against them.

Every reference value comes from mpmath at 50 significant digits (an implementation
independent of etx), rounded once to double and printed with %.17g. Inputs are rounded to
float32 first (the helpers take floats) and each reference is computed at that exact
float, so input rounding is not counted as the helpers' error.

    pip install mpmath
    python3 tests/policy/gen_dslider_fixture.py          # writes tests/policy/dslider_fixture.h

The output depends only on this script (fixed points, fixed seeds): rerunning it gives
the same file.
"""
import math
import os
import random
import struct
import sys

import mpmath

mpmath.mp.dps = 50


def f32(x):
    """x rounded to the nearest float32, as a Python float (exact)."""
    return struct.unpack("f", struct.pack("f", float(x)))[0]


def g(x):
    """An mpf (or float) as a C double literal."""
    return "%.17g" % float(x)


def c_array(name, values, per_line=4, ctype="double"):
    lines = ["static const %s %s[%d] = {" % (ctype, name, len(values))]
    for k in range(0, len(values), per_line):
        lines.append("    " + ", ".join(g(v) for v in values[k:k + per_line]) + ",")
    lines.append("};")
    return "\n".join(lines)


# -- special functions ---------------------------------------------------------------------

SPECIAL_X = sorted({f32(x) for x in [
    1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 0.9, 0.999, 1.0, 1.001,
    1.25, 1.4616321, 1.5, 1.75, 1.999, 2.0, 2.001, 2.5, 3.0, 4.0, 5.0, 5.5, 5.999, 6.0, 6.001,
    7.0, 10.0, 17.3, 30.0, 100.0, 1000.0, 1e4, 1e5, 1e6,
]})

COS_X = [f32(-2.0 + 4.0 * k / 19) for k in range(20)] + [0.0, f32(1e-3)]

# -- Dirichlet fixed point: t_i = psi(alpha_i) - psi(sum alpha) -------------------------


def dirichlet_cases():
    r = random.Random(20261205)
    cases = []
    cases.append(("moderate3", [0.5, 2.0, 7.5]))
    cases.append(("uniform8", [5.0 * (1.0 + 0.02 * r.uniform(-1.0, 1.0)) for _ in range(8)]))  # nearly uniform
    cases.append(("spread8", [0.05, 0.2, 0.8, 1.0, 3.0, 10.0, 25.0, 50.0]))
    # very peaked: one large concentration, the rest small
    cases.append(("peaked32", [50.0] + [0.05 + 0.25 * r.random() for _ in range(31)]))
    # log-uniform over [0.05, 50]
    cases.append(("loguniform32", [math.exp(r.uniform(math.log(0.05), math.log(50.0))) for _ in range(32)]))
    out = []
    for name, alpha in cases:
        a = [f32(v) for v in alpha]
        S = mpmath.fsum(mpmath.mpf(v) for v in a)
        psi_s = mpmath.digamma(S)
        t = [f32(mpmath.digamma(mpmath.mpf(v)) - psi_s) for v in a]
        out.append((name, a, t))
    return out


# -- Dirichlet log-density ---------------------------------------------------------------


def loglik_cases():
    r = random.Random(777)
    specs = [
        ("small3", [0.5, 2.0, 7.5], [0.1, 0.3, 0.6]),
        ("uniform8", [1.0] * 8, None),
        ("mixed8", [0.3, 1.7, 4.0, 12.0, 0.9, 2.2, 30.0, 0.05], None),
        ("peaked32", [40.0] + [0.1 + 0.4 * r.random() for _ in range(31)], None),
    ]
    out = []
    for name, alpha, p in specs:
        n = len(alpha)
        if p is None:
            w = [r.uniform(0.05, 1.0) ** 3 for _ in range(n)]
            p = [v / sum(w) for v in w]
        a = [f32(v) for v in alpha]
        lp = [f32(math.log(v)) for v in p]
        S = mpmath.fsum(mpmath.mpf(v) for v in a)
        ll = mpmath.loggamma(S) - mpmath.fsum(mpmath.loggamma(mpmath.mpf(v)) for v in a)
        ll += mpmath.fsum((mpmath.mpf(v) - 1) * mpmath.mpf(l) for v, l in zip(a, lp))
        out.append((name, a, lp, ll))
    return out


# -- temperature tuning ------------------------------------------------------------------


def softmax_entropy(x, T):
    """Entropy (nats) of softmax(x / T), in mpmath."""
    z = [mpmath.mpf(v) / T for v in x]
    m = max(z)
    e = [mpmath.exp(v - m) for v in z]
    s = mpmath.fsum(e)
    lse = m + mpmath.log(s)
    return -mpmath.fsum((ei / s) * (v - lse) for ei, v in zip(e, z))


def halley_reaches(x, target, T_star):
    """Whether the header's schedule (T = 1, 10 Halley steps with its clips) reaches T_star
    in double: a sanity check that each case is within reach, not a reference value."""
    m = max(x)
    T = 1.0
    for _ in range(10):
        lp0 = [(v - m) / T for v in x]
        mm = max(lp0)
        lse = mm + math.log(sum(math.exp(v - mm) for v in lp0))
        lp = [v - lse for v in lp0]
        p = [math.exp(v) for v in lp]
        mu1 = sum(pi * li for pi, li in zip(p, lp))
        mu2 = sum(pi * (li - mu1) ** 2 for pi, li in zip(p, lp))
        mu3 = sum(pi * (li - mu1) ** 3 for pi, li in zip(p, lp))
        H, gr, h = -mu1, mu2 / T, -(2 * mu3 + 3 * mu2) / (T * T)
        err = H - target
        if abs(err) < 1e-6:
            break
        den = 2 * gr * gr - err * h
        step = 2 * err * gr / den if abs(den) >= 1e-8 else err / gr
        step = min(max(step, -0.5 * T), 0.5 * T)
        T = max(T - step, 0.5 * T)
    return abs(T - T_star) / T_star < 1e-4


def temp_cases():
    r = random.Random(4242)
    vectors = [
        ("n6", [r.gauss(0.0, 1.5) for _ in range(6)]),
        ("n50", [r.gauss(0.0, 2.0) for _ in range(50)]),
        ("n128", [r.gauss(0.0, 2.5) for _ in range(128)]),
    ]
    out = []
    for name, x in vectors:
        x = [f32(v) for v in x]
        for T_star in (0.5, 0.8, 1.5):
            target = f32(softmax_entropy(x, mpmath.mpf(T_star)))
            # T* for the float-rounded target (the input ds_temp_tune gets)
            T_exact = mpmath.findroot(lambda T: softmax_entropy(x, T) - target, mpmath.mpf(T_star))
            if not halley_reaches(x, target, float(T_exact)):
                sys.exit("gen_dslider_fixture: %s T*=%g is not reached in 10 steps; pick another" % (name, T_star))
            out.append((name, x, target, T_exact))
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "dslider_fixture.h")
    parts = []
    parts.append("""/*
 * dslider_fixture.h — GENERATED by tests/policy/gen_dslider_fixture.py; do not edit.
 * Regenerate with:  python3 tests/policy/gen_dslider_fixture.py   (needs mpmath: pip install mpmath)
 *
 * Reference values for tests/policy/test_dslider.c from mpmath %s at 50 digits, rounded
 * to double. Inputs are float32 values (exact in double); each reference is computed at
 * that exact input.
 */
#ifndef ETX_TESTS_DSLIDER_FIXTURE_H
#define ETX_TESTS_DSLIDER_FIXTURE_H
""" % mpmath.__version__)

    # special functions
    xs = SPECIAL_X
    parts.append("// ψ, ψ1, ψ2, lnΓ at x (float32 values)")
    parts.append("#define FIX_SPECIAL_N %d" % len(xs))
    parts.append(c_array("fix_special_x", xs))
    parts.append(c_array("fix_digamma", [mpmath.digamma(mpmath.mpf(x)) for x in xs]))
    parts.append(c_array("fix_trigamma", [mpmath.polygamma(1, mpmath.mpf(x)) for x in xs]))
    parts.append(c_array("fix_tetragamma", [mpmath.polygamma(2, mpmath.mpf(x)) for x in xs]))
    parts.append(c_array("fix_lgamma", [mpmath.loggamma(mpmath.mpf(x)) for x in xs]))

    parts.append("\n// cos x on [-2, 2]")
    parts.append("#define FIX_COS_N %d" % len(COS_X))
    parts.append(c_array("fix_cos_x", COS_X))
    parts.append(c_array("fix_cos", [mpmath.cos(mpmath.mpf(x)) for x in COS_X]))

    # Dirichlet fixed point
    parts.append("\n// Dirichlet fixed point: t_i = ψ(α_i) - ψ(Σα) (rounded to float); the fit should give α")
    dc = dirichlet_cases()
    for k, (name, a, t) in enumerate(dc):
        parts.append("// case %d: %s" % (k, name))
        parts.append(c_array("fix_fit_alpha_%d" % k, a, ctype="float"))
        parts.append(c_array("fix_fit_t_%d" % k, t, ctype="float"))
    parts.append("typedef struct {\n    const char* name;\n    int n;\n    const float* alpha;\n"
                 "    const float* t;\n} FixFitCase;")
    parts.append("static const FixFitCase fix_fit_cases[] = {")
    for k, (name, a, t) in enumerate(dc):
        parts.append('    {"%s", %d, fix_fit_alpha_%d, fix_fit_t_%d},' % (name, len(a), k, k))
    parts.append("};\n#define FIX_FIT_N %d" % len(dc))

    # Dirichlet log-density
    parts.append("\n// ln Dir(p; α) = lnΓ(Σα) - Σ lnΓ(α_i) + Σ (α_i - 1) lp_i, lp_i = ln p_i (float)")
    lc = loglik_cases()
    for k, (name, a, lp, ll) in enumerate(lc):
        parts.append("// case %d: %s" % (k, name))
        parts.append(c_array("fix_ll_alpha_%d" % k, a, ctype="float"))
        parts.append(c_array("fix_ll_lp_%d" % k, lp, ctype="float"))
    parts.append("typedef struct {\n    const char* name;\n    int n;\n    const float* alpha;\n"
                 "    const float* lp;\n    double loglik;\n} FixLoglikCase;")
    parts.append("static const FixLoglikCase fix_ll_cases[] = {")
    for k, (name, a, lp, ll) in enumerate(lc):
        parts.append('    {"%s", %d, fix_ll_alpha_%d, fix_ll_lp_%d, %s},' % (name, len(a), k, k, g(ll)))
    parts.append("};\n#define FIX_LL_N %d" % len(lc))

    # temperature tuning
    parts.append("\n// temperature tuning: target = entropy (nats) of softmax(x / T*), rounded to float;"
                 "\n// T* solves it exactly for that float target")
    tc = temp_cases()
    vec_names = []
    for name, x, _, _ in tc:
        if name not in vec_names:
            vec_names.append(name)
            parts.append(c_array("fix_tt_x_%s" % name, x, ctype="float"))
    parts.append("typedef struct {\n    const char* name;\n    int n;\n    const float* x;\n"
                 "    float target;\n    double T;\n} FixTempCase;")
    parts.append("static const FixTempCase fix_tt_cases[] = {")
    for name, x, target, T in tc:
        parts.append('    {"%s", %d, fix_tt_x_%s, %sf, %s},' % (name, len(x), name, "%.9g" % target, g(T)))
    parts.append("};\n#define FIX_TT_N %d" % len(tc))

    parts.append("\n#endif // ETX_TESTS_DSLIDER_FIXTURE_H\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    print("wrote %s" % path)


if __name__ == "__main__":
    main()
