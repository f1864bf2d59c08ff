r"""Why the fit of a numeric p^n has the logarithms built in: a measured comparison on the LO angularity.

Fits the committed histogram ``examples/mc/angularity_histogram.csv`` (40 bins from 10^6 events,
x from e^-12 to 1/2) two ways, each with the degree chosen by Akaike's criterion:

- ours: d p^1 = P_0(t) + log(1/t) P_1(t), Chebyshev series in t = x/(b - a) (``renorm.symbolic``);
- baseline: d p^1 = a Chebyshev series in log t over the data's range (a smooth fit in log x),

and compares both with the formula p^1 = C_F/(π x) (2 log((1 - x)/x) + 3x - 3/2), inside the
data and below it (extrapolated), where the exact minimizer's normalization still reaches.

    python benchmarks/fit.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from renorm.symbolic._data import read_histogram
from renorm.symbolic._fit import _solve, fit_order

HISTOGRAM = Path(__file__).resolve().parents[1] / "examples" / "mc" / "angularity_histogram.csv"
CF = 4.0 / 3.0
NODES, WEIGHTS = np.polynomial.legendre.leggauss(24)


def formula(x: np.ndarray) -> np.ndarray:
    return CF / math.pi / x * (2 * np.log((1 - x) / x) + 3 * x - 1.5)


def log_series(histogram, width: float):
    r"""The baseline: x p = Chebyshev series in u = log t over the data, bin averages by Gauss–Legendre in u."""
    start = math.log(histogram.lo[0] / width)
    u0, u1 = np.log(histogram.lo / width), np.log(histogram.hi / width)
    half, mid = (u1 - u0) / 2, (u1 + u0) / 2
    u = mid[:, None] + half[:, None] * NODES
    best = None
    for degree in range(30):
        if histogram.lo.size - (degree + 1) < 2:
            break
        basis = np.polynomial.chebyshev.chebvander(2 * (u - start) / (0.0 - start) - 1, degree)
        design = np.einsum("n,bnk->bk", WEIGHTS, basis) * half[:, None] / (histogram.hi - histogram.lo)[:, None]
        coefficients, covariance, chi2 = _solve(design, histogram.values[1], histogram.errors[1])
        if best is None or chi2 + 2 * (degree + 1) < best[0]:
            best = (chi2 + 2 * (degree + 1), degree, coefficients, covariance, chi2)
    _, degree, coefficients, covariance, chi2 = best
    basis = lambda x: np.polynomial.chebyshev.chebvander(2 * (np.log(x / width) - start) / (0.0 - start) - 1, degree) / x[:, None]
    value = lambda x: basis(x) @ coefficients
    error = lambda x: np.sqrt(np.einsum("ik,kl,il->i", basis(x), covariance, basis(x)))
    return value, error, degree + 1, chi2, histogram.lo.size - degree - 1


def main() -> None:
    histogram = read_histogram(HISTOGRAM, (0.0, 0.5))
    ours = fit_order(histogram, 1, (0.0, 0.5), "lower")
    value, error, parameters, chi2, ndf = log_series(histogram, 0.5)
    inside = np.geomspace(histogram.lo[0], 0.4, 400)
    below = np.array([1e-8, 1e-12, 1e-30])
    print(f"data: {HISTOGRAM.name}, {histogram.lo.size} bins, x in [{histogram.lo[0]:.3g}, {histogram.hi[-1]:.3g}]")
    print("deviation from the formula, fit/p - 1, and in units of the fit's own 1-sigma error\n")
    print("| fit | parameters | chi2/ndf | max pull, x in [6e-6, 0.4] | at x = 1e-8 | at x = 1e-12 | at x = 1e-30 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [("logs built in (renorm)", ours, ours.error, ours.coefficients.size, ours.chi2, ours.ndf),
            ("series in log x (baseline)", value, error, parameters, chi2, ndf)]
    for name, fit, sigma, count, c2, dof in rows:
        pull = lambda x: (fit(x) - formula(x)) / sigma(x)
        cells = " | ".join(f"{d:+.1e} ({z:+.1f} sigma)" for d, z in zip(fit(below) / formula(below) - 1, pull(below)))
        print(f"| {name} | {count} | {c2:.1f}/{dof} | {np.max(np.abs(pull(inside))):.1f} | {cells} |")

if __name__ == "__main__":
    main()
