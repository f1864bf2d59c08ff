r"""Exact minimizers, λ(α) against mpmath, the matched order, general f and negative p."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import scipy.optimize
import sympy as sp

from renorm.symbolic import (
    LAMBDA, ExactMinimizer, NotNormalizableError, exact_minimizer, load_spec, make_problem,
    matched_order, solve,
)

from ..conftest import EXAMPLES

ALPHAS = (0.05, 0.118, 0.3)


def _mp_angularity(x, alpha):
    cf = mp.mpf(4) / 3
    return alpha * cf / mp.pi / x * (2 * mp.log((1 - x) / x) + 3 * x - mp.mpf(3) / 2)


def _mp_normalization(lam, alpha):
    r"""∫ W(λ p)/λ dx over (0, 1/2) with tanh-sinh in u = log x, at 30 digits."""
    f = lambda u: mp.lambertw(lam * _mp_angularity(mp.exp(u), alpha)).real / lam * mp.exp(u)
    return mp.quad(f, [-mp.inf, -80, -40, -20, -10, -5, -2.5, mp.log(mp.mpf(1) / 2)])


@pytest.fixture(scope="module")
def angularity_solutions(angularity):
    return solve(angularity, ALPHAS)


@pytest.mark.parametrize("index", range(3))
def test_lambda_against_mpmath(angularity_solutions, index):
    mp.mp.dps = 30
    solution = angularity_solutions[index]
    alpha = mp.mpf(ALPHAS[index])
    reference = mp.findroot(lambda lam: _mp_normalization(lam, alpha) - 1, mp.mpf(solution.lagrange_multiplier) * (1 + mp.mpf("1e-6")))
    assert abs(solution.lagrange_multiplier / float(reference) - 1) < 1e-8
    # the tool's q* at its λ, integrated independently, is normalized
    assert abs(_mp_normalization(mp.mpf(solution.lagrange_multiplier), alpha) - 1) < 1e-10
    assert abs(solution.normalization - 1) < 1e-12


def test_log_minimizer_closed_form(angularity, angularity_solutions):
    q = exact_minimizer(angularity)
    assert q.has(sp.LambertW)
    solution = angularity_solutions[1]
    fn = sp.lambdify((angularity.x, angularity.coupling, LAMBDA), q, modules="mpmath")
    x = np.array([1e-5, 0.01, 0.1, 0.3, 0.49])
    expected = [float(fn(mp.mpf(xi), mp.mpf(0.118), mp.mpf(solution.lagrange_multiplier)).real) for xi in x]
    np.testing.assert_allclose(solution.q(x), expected, rtol=1e-13)


def test_loss_matches_closed_form(angularity_solutions):
    # f = log, C = 1: log(q*/p) = -W(λp), so L = ∫ W(λp)²/2
    mp.mp.dps = 20
    for solution in angularity_solutions:
        alpha, lam = mp.mpf(solution.alpha), mp.mpf(solution.lagrange_multiplier)
        f = lambda u: mp.lambertw(lam * _mp_angularity(mp.exp(u), alpha)).real ** 2 / 2 * mp.exp(u)
        reference = mp.quad(f, [-mp.inf, -40, -20, -10, -5, -2.5, mp.log(mp.mpf(1) / 2)])
        assert solution.loss == pytest.approx(float(reference), rel=1e-9)


def test_euler_lagrange_pointwise(angularity, angularity_solutions):
    # q* minimizes w|log q - log p|² + λq at every x: a scalar minimization agrees
    solution = angularity_solutions[2]
    minimizer = ExactMinimizer(angularity)
    for x in (0.001, 0.05, 0.3):
        p = float(minimizer.p(np.array(x), solution.alpha))
        lagrangian = lambda t: 0.5 * (t - math.log(p)) ** 2 + solution.lagrange_multiplier * math.exp(t)
        best = scipy.optimize.minimize_scalar(lagrangian, bracket=(math.log(p) - 5, math.log(p)), tol=1e-14).x
        assert math.exp(best) == pytest.approx(float(solution.q(np.array(x))), rel=1e-7)


def test_matched_order_log_keeps_order_alpha(angularity):
    result = matched_order(angularity)
    assert result.order == 1 and not result.degenerate
    # λ vanishes faster than any power: the local exponents keep growing
    assert all(b > a for a, b in zip(result.exponents, result.exponents[1:]))


def test_linear_is_not_normalizable_and_loses_order_alpha():
    problem = load_spec(EXAMPLES / "refused" / "angularity_lo_linear.toml")
    with pytest.raises(NotNormalizableError, match="no normalized minimizer"):
        solve(problem, [0.1])
    result = matched_order(problem)
    assert result.degenerate and result.order == 0
    assert result.exponent == pytest.approx(1.0, abs=1e-9)


def test_linear_with_regulating_kernel_keeps_order_alpha(angularity):
    # C = p makes q = max(p - λp², 0) integrable: a normalized minimizer exists and keeps O(α)
    problem = make_problem(name="lin", density=angularity.density, support=angularity.support, f="linear", C=angularity.density)
    (solution,) = solve(problem, [0.118])
    assert solution.normalization == pytest.approx(1, abs=1e-12)
    assert matched_order(problem).order == 1


@pytest.mark.parametrize("name, order", [("angularity_running.toml", 1), ("soft_collinear_nlo.toml", 2), ("soft_collinear.toml", 1)])
def test_matched_order_examples(name, order):
    assert matched_order(load_spec(EXAMPLES / name)).order == order


# α = 0.267: the subdivision closing in on the pole lands a node on it (p = inf, q = nan there)
@pytest.mark.parametrize("alpha", [0.118, 0.267])
def test_running_coupling_landau_pole_is_integrated(alpha):
    problem = load_spec(EXAMPLES / "angularity_running.toml")
    minimizer = ExactMinimizer(problem)
    (solution,) = solve(problem, [alpha])
    # the pole x_L = exp(-2π/(α β0)) is found as a break point
    pole = math.exp(-2 * math.pi / (alpha * 23 / 3))
    assert np.exp(minimizer.breakpoints(alpha)) == pytest.approx([pole], rel=1e-12)
    # mpmath across the pole (log singularity of q*), at the tool's λ
    mp.mp.dps = 20
    lam, a, b0 = mp.mpf(solution.lagrange_multiplier), mp.mpf(alpha), mp.mpf(23) / 3
    p = lambda x: a / (1 + a * b0 / (2 * mp.pi) * mp.log(x)) * _mp_angularity(x, 1)
    f = lambda u: mp.lambertw(lam * abs(p(mp.exp(u)))).real / lam * mp.exp(u)
    upole = mp.log(pole)
    total = mp.quad(f, [-mp.inf, -40, upole - 1, upole, upole + 1, -2, mp.log(mp.mpf(1) / 2)])
    assert abs(total - 1) < 1e-9


def test_general_f_matches_lambert_w(angularity):
    # f = log(2q) differs from log q by a constant, which the loss cannot see: the general
    # (bisection) solver must reproduce the Lambert-W closed form
    custom = make_problem(name="c", density=angularity.density, support=angularity.support, f="log(2*q)")
    assert custom.f_kind == "custom"
    (reference,) = solve(angularity, [0.118])
    (general,) = solve(custom, [0.118])
    assert general.lagrange_multiplier == pytest.approx(reference.lagrange_multiplier, rel=1e-10)
    x = np.array([1e-6, 1e-3, 0.1, 0.4])
    np.testing.assert_allclose(general.q(x), reference.q(x), rtol=1e-12)


def test_talks_general_formula_is_only_first_order(angularity):
    # the talk writes f^{-1}(f(p) - λC²/f'(p)); the exact condition has f'(q). For f = log that
    # formula gives p exp(-λp), which is not the minimizer
    (solution,) = solve(angularity, [0.3])
    x = np.array([1e-4, 1e-3])
    p = ExactMinimizer(angularity).p(x, 0.3)
    talk = p * np.exp(-solution.lagrange_multiplier * p)
    assert np.all(np.abs(talk / solution.q(x) - 1) > 0.1)


def test_sqrt_f_closed_form_and_numeric_agree(soft_collinear):
    # with a constant C, q = p/(1 + 2λC²)² keeps p's non-integrable 1/x; C² = p regulates it
    problem = make_problem(name="s", density=soft_collinear.density, support=soft_collinear.support, f="sqrt(q)", weight=1 / (2 * soft_collinear.density))
    closed = exact_minimizer(problem)
    p, c2 = problem.density, problem.C_squared
    assert sp.simplify(closed - p / (1 + 2 * LAMBDA * c2) ** 2) == 0
    (solution,) = solve(problem, [0.2])
    fn = sp.lambdify((problem.x, problem.coupling, LAMBDA), closed)
    x = np.array([1e-3, 0.1, 0.7])
    np.testing.assert_allclose(solution.q(x), fn(x, 0.2, solution.lagrange_multiplier), rtol=1e-12)


@pytest.mark.parametrize("p", [-1.0, -0.2, -30.0])
def test_complex_log_minimizer_where_p_is_negative(p):
    # |log q - log p|² with the principal branch is (log q - log|p|)² + π²: the phase is a
    # constant, so the pointwise minimizer of w|...|² + λq is |p| exp(-W(λ C² |p|))
    lam, w = 0.7, 0.5
    lagrangian = lambda t: w * abs(t - np.log(complex(p))) ** 2 + lam * math.exp(t)
    best = scipy.optimize.minimize_scalar(lagrangian, bracket=(-5.0, 5.0), tol=1e-14).x
    problem = make_problem(name="neg", density="alpha*(1 - 3*x)", support=(0, 1), singular="none")
    minimizer = ExactMinimizer(problem)
    alpha = p / (1 - 3 * 0.5)
    q = float(minimizer.q(np.array(0.5), alpha, lam))
    assert q == pytest.approx(math.exp(best), rel=1e-7)
    assert q == pytest.approx(abs(p) * math.exp(-float(mp.lambertw(lam * abs(p)).real)), rel=1e-13)
    # the loss density carries the phase's π² w
    assert float(minimizer.loss_density(np.array(0.5), alpha, np.log(q))) == pytest.approx(w * ((math.log(q / abs(p))) ** 2 + math.pi**2), rel=1e-13)
