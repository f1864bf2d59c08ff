r"""λ(α) for 32 couplings of the LO angularity, and the nested integral of the angularity pair in two variables.

Compares ``renorm solve`` (vectorized Gauss–Kronrod in u = log x, warm-started brackets)
with a baseline of SciPy's scalar ``quad`` + ``brentq`` on the same integrand, in one run;
then, in two variables, the nested quadrature with the inner integrals of each outer round
adapted together against the same rule with one inner integral per outer node, both checked
against a one-dimensional mpmath reference of ∫∫q*.

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

from renorm.symbolic import MultiMinimizer, integrate, load_spec, quadrature_map, solve

SPEC = Path(__file__).resolve().parents[1] / "examples" / "angularity_lo.toml"
PAIR = Path(__file__).resolve().parents[1] / "examples" / "multi" / "angularity_pair.toml"
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


def pair_reference(alpha: float, lam: float) -> float:
    r"""∫∫q* of the angularity pair at 30 digits: in (θ, z) the θ integral is (z k/3)(e^{-w₀} + E₁(w₀)),
    w₀ = W(λk), k = (α C_F/π)(1 + (1 - z)²)/z² (the reference of tests/symbolic/test_multi.py)."""
    mp.mp.dps = 30
    a, lam = mp.mpf(alpha) * mp.mpf(4) / 3 / mp.pi, mp.mpf(lam)

    def inner(z):
        k = a * (1 + (1 - z) ** 2) / z**2
        w0 = mp.lambertw(lam * k).real
        return z / 3 * k * (mp.exp(-w0) + mp.e1(w0))

    return float(mp.quad(inner, [0, mp.mpf(10) ** -8, 1e-4, 0.01, 1]))


def per_node(minimizer: MultiMinimizer, alpha: float, lam: float) -> float:
    r"""The same nested G7-K15 rule with one adaptive inner integral per outer node (the way before the batching)."""
    problem = minimizer.problem
    outer = quadrature_map(problem.support_floats[0], problem.singular[0])

    def along(u1: np.ndarray) -> np.ndarray:
        values = np.empty(u1.shape)
        for i, u in np.ndenumerate(u1):
            x1 = float(outer.from_latent(u))
            lo, hi = (float(v[0]) for v in problem.inner_interval(np.array([x1])))
            if not lo < hi:
                values[i] = 0.0
                continue
            inner = quadrature_map((lo, hi), problem.singular[1])
            with np.errstate(all="ignore"):
                def fn(u2):
                    x2 = inner.from_latent(u2)
                    q = minimizer.q(np.full(x2.shape, x1), x2, alpha, lam) * inner.jacobian(u2)
                    return np.where((x2 > lo) & (x2 < hi), q, 0.0)
                values[i] = integrate(fn, *inner.latent_range(), rtol=1e-12, atol=1e-14).value * float(outer.jacobian(u))
        return values

    return integrate(along, *outer.latent_range(), rtol=1e-12, atol=1e-14).value


def two_variables() -> None:
    pair = load_spec(PAIR)
    minimizer = MultiMinimizer(pair)
    alpha = 0.118
    start = time.perf_counter()
    solution = minimizer.solve(alpha, loss=False)
    solve_time = time.perf_counter() - start
    lam = solution.lagrange_multiplier
    start = time.perf_counter()
    batched = minimizer.normalization(alpha, lam)
    batched_time = time.perf_counter() - start
    start = time.perf_counter()
    looped = per_node(minimizer, alpha, lam)
    looped_time = time.perf_counter() - start
    reference_value = pair_reference(alpha, lam)
    print(f"\nangularity pair (two variables), alpha = {alpha}: one nested integral of q* at its lambda = {lam:.8g}; "
          "reference: mpmath at 30 digits\n")
    print("| nested quadrature | wall time (s) | relative error of the integral |")
    print("|---|---:|---:|")
    print(f"| inner integrals of each outer round adapted together | {batched_time:.3f} | {abs(batched / reference_value - 1):.1e} |")
    print(f"| baseline: one adaptive inner integral per outer node | {looped_time:.3f} | {abs(looped / reference_value - 1):.1e} |")
    print(f"\nspeed-up: {looped_time / batched_time:.1f}x; the whole solve (lambda, re-adapting the nodes until it settles): {solve_time:.2f} s")


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
    two_variables()


if __name__ == "__main__":
    main()
