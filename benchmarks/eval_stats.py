"""The statistics every GSM8K table here reports, in one place: the 95 % Wilson interval
of an accuracy and the exact two-sided sign test of two runs' discordant problems.
benchmarks/deepconf_online_replay.py and the results directories' table.py scripts
import it (a results script adds ../.. to its path first).
"""
import math


def wilson(k, n, z=1.959964):
    """95 % Wilson score interval (lo, hi) of k successes in n trials; (0, 0) for n = 0."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    m = (p + z * z / (2 * n)) / d
    h = z / d * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, m - h), min(1.0, m + h)


def sign_p(a, b):
    """Two-sided exact binomial (sign) test of a vs b discordant pairs."""
    n = a + b
    if n == 0:
        return 1.0
    k = min(a, b)
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * p)
