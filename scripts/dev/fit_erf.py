#!/usr/bin/env python3
"""Derives the rational erf approximation of the CPU GELU kernel
(runtime/cpu/IsaKernels.inc, gelu): erf(z) ~ z * P(z^2) / Q(z^2) on [0, 4]
with Q(0) = 1, by linearized least squares reweighted toward the largest
errors (Lawson's iteration), then reports the maximum error of the float32
coefficients evaluated in float32 over [-6, 6] (clamped to +-4, where erf is
+-1 in float). Degrees 5/5 give 3.4e-7. Run with the venv python (numpy):

    .venv/bin/python scripts/dev/fit_erf.py
"""
from math import erf

import numpy as np


def fit(p, q, iterations=30):
    xs = np.linspace(1e-4, 4, 20000)
    f = np.array([erf(x) / x for x in xs])
    exact = np.array([erf(x) for x in xs])
    t = xs ** 2
    weights = np.ones_like(xs)
    best = None
    for _ in range(iterations):
        # f·Q(t) − P(t) = 0, Q(0) = 1: unknowns a_0..a_p, b_1..b_q
        a_cols = np.vstack([t ** i for i in range(p + 1)]).T
        b_cols = -(f[:, None] * np.vstack([t ** j for j in range(1, q + 1)]).T)
        coef, *_ = np.linalg.lstsq(np.hstack([a_cols, b_cols]) * weights[:, None], f * weights, rcond=None)
        a, b = coef[:p + 1], np.concatenate([[1.0], coef[p + 1:]])
        err = np.polyval(a[::-1], t) / np.polyval(b[::-1], t) * xs - exact
        worst = np.max(np.abs(err))
        if best is None or worst < best[0]:
            best = (worst, a, b)
        weights = weights * (1 + 50 * np.abs(err) / worst)
        weights /= weights.mean()
    return best


def float32_error(a, b):
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    xx = np.linspace(-6, 6, 200001).astype(np.float32)
    x = np.clip(xx, -4, 4)
    t = x * x
    num = np.zeros_like(t)
    for c in a32[::-1]:
        num = num * t + c
    den = np.zeros_like(t)
    for c in b32[::-1]:
        den = den * t + c
    return np.max(np.abs(x * num / den - np.array([erf(float(v)) for v in xx]))), a32, b32


def main():
    for p, q in [(4, 4), (5, 4), (5, 5)]:
        worst, a, b = fit(p, q)
        err32, a32, b32 = float32_error(a, b)
        print(f"P degree {p}, Q degree {q}: fit {worst:.3g}, float32 {err32:.3g}")
        print("  P:", ", ".join(f"{c:.8g}" for c in a32))
        print("  Q:", ", ".join(f"{c:.8g}" for c in b32))


if __name__ == "__main__":
    main()
