r"""λ(α) for 32 couplings of the LO angularity: wall time and accuracy against mpmath.

Compares ``renorm solve`` (vectorized Gauss–Kronrod in u = log x, warm-started brackets)
with a baseline of SciPy's scalar ``quad`` + ``brentq`` on the same integrand, in one run.

    python benchmarks/solve.py [--count 32]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import mpmath as mp
import numpy as np
import scipy.integrate
import scipy.optimize
import scipy.special

from renorm.symbolic import load_spec, solve

SPEC = Path(__file__).resolve().parents[1] / "examples" / "angularity_lo.toml"
CF = 4.0 / 3.0


def reference(alpha: float, guess: float) -> float:
    r"""λ with ∫ W(λp)/λ = 1 at 30 digits (tanh-sinh in u = log x, secant root)."""
    mp.mp.dps = 30
    a = mp.mpf(alpha)
    p = lambda x: a * (mp.mpf(4) / 3) / mp.pi / x * (2 * mp.log((1 - x) / x) + 3 * x - mp.mpf(3) / 2)
    total = lambda lam: mp.quad(lambda u: mp.lambertw(lam * p(mp.exp(u))).real / lam * mp.exp(u),
                                [-mp.inf, -80, -40, -20, -10, -5, -2.5, mp.log(mp.mpf(1) / 2)])
    return float(mp.findroot(lambda lam: total(lam) - 1, mp.mpf(guess)))


def baseline(alpha: float) -> float:
    r"""The straightforward way: scalar adaptive quad in u = log x inside brentq on log λ."""
    def p(x):
        return alpha * CF / math.pi / x * (2 * math.log((1 - x) / x) + 3 * x - 1.5)

    def total(log_lam):
        lam = math.exp(log_lam)
        f = lambda u: scipy.special.lambertw(lam * p(math.exp(u))).real / lam * math.exp(u)
        return scipy.integrate.quad(f, -600, math.log(0.5), limit=500, epsabs=0, epsrel=1e-12)[0] - 1

    return math.exp(scipy.optimize.brentq(total, math.log(1e-12), math.log(1e3), xtol=1e-14))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=32)
    args = parser.parse_args()
    problem = load_spec(SPEC)
    alphas = np.linspace(0.05, 0.3, args.count)

    start = time.perf_counter()
    ours = [s.lagrange_multiplier for s in solve(problem, alphas)]
    ours_time = time.perf_counter() - start

    start = time.perf_counter()
    base = [baseline(a) for a in alphas]
    base_time = time.perf_counter() - start

    refs = [reference(a, lam) for a, lam in zip(alphas, ours)]
    ours_error = max(abs(o / r - 1) for o, r in zip(ours, refs))
    base_error = max(abs(b / r - 1) for b, r in zip(base, refs))

    print(f"LO angularity, f = log, C = 1, {args.count} couplings in [0.05, 0.3]; reference: mpmath at 30 digits\n")
    print("| method | wall time (s) | worst relative error of λ |")
    print("|---|---:|---:|")
    print(f"| renorm solve (vectorized G7-K15, warm start) | {ours_time:.3f} | {ours_error:.1e} |")
    print(f"| baseline: scipy quad + brentq | {base_time:.3f} | {base_error:.1e} |")
    print(f"\nspeed-up: {base_time / ours_time:.1f}x")


if __name__ == "__main__":
    main()
