r"""α-expansion, δ/plus coefficients and cumulants against closed forms."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from renorm.symbolic import coefficients, expand, load_spec, make_problem

from ..conftest import EXAMPLES

CF = sp.Rational(4, 3)


def test_angularity_coefficients(angularity):
    x = angularity.x
    p0, p1 = coefficients(angularity)
    assert p0.regular == 0 and p0.delta == 1 and p0.plus == 0
    expected = CF / sp.pi / x * (2 * sp.log((1 - x) / x) + 3 * x - sp.Rational(3, 2))
    assert sp.simplify(p1.regular - expected) == 0
    assert p1.delta == 0 and p1.plus == p1.regular and p1.integral == np.inf


def test_running_coupling_expands_into_logs():
    problem = load_spec(EXAMPLES / "angularity_running.toml")
    problem2 = make_problem(name="r2", density=problem.density, support=problem.support, order=2)
    x = problem.x
    beta0 = sp.Rational(23, 3)
    lo = CF / sp.pi / x * (2 * sp.log((1 - x) / x) + 3 * x - sp.Rational(3, 2))
    _, p1, p2 = expand(problem2)
    assert sp.simplify(p1 - lo) == 0
    assert sp.simplify(p2 + beta0 / (2 * sp.pi) * sp.log(x) * lo) == 0


@pytest.fixture(scope="module")
def leading_log():
    # q_LL = p_sc exp(-(α CF/π) log²(1/x)) is normalized on (0, 1): its cumulant is
    # exp(-(α CF/π) log²(1/x)), whose α-expansion is known in closed form
    density = "2*alpha*CF/pi*log(1/x)/x*exp(-alpha*CF/pi*log(1/x)**2)"
    return make_problem(name="ll", density=density, support=(0, 1), order=2, constants={"CF": "4/3"})


def test_leading_log_delta_and_plus_parts(leading_log):
    p0, p1, p2 = coefficients(leading_log)
    x = leading_log.x
    a = CF / sp.pi
    assert p0.regular == 0 and p0.delta == 1
    assert sp.simplify(p1.plus - 2 * a * sp.log(1 / x) / x) == 0 and p1.delta == 0
    assert sp.simplify(p2.plus + 2 * a**2 * sp.log(1 / x) ** 3 / x) == 0 and p2.delta == 0


@pytest.mark.parametrize("n", [0, 1, 2])
def test_leading_log_cumulants_match_expanded_closed_form(leading_log, n):
    mp.mp.dps = 30
    a = mp.mpf(4) / 3 / mp.pi
    xs = np.array([1e-6, 1e-3, 0.05, 0.3, 0.7, 0.999])
    # Σ(x|α) = exp(-α a L²): the coefficient of α^n is (-a L²)^n / n!
    expected = [float((-a * mp.log(1 / mp.mpf(x)) ** 2) ** n / mp.factorial(n)) for x in xs]
    got = coefficients(leading_log)[n].cumulant(xs)
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-13)


def test_plus_distribution_integrates_to_zero(angularity):
    p1 = coefficients(angularity)[1]
    # Σ^1(b) = ∫ [g]_+ = 0, and Σ^1 grows like -log² towards x -> 0
    assert abs(p1.cumulant([0.5 - 1e-12])[0]) < 1e-10
    assert p1.cumulant([1e-8])[0] < -50


def test_integrable_coefficient_gets_finite_delta():
    # p = 1 + α(1 - 2x) on (0, 1): p^1 integrates to 0, so no δ is needed; p = 2 + α needs δ weights
    ok = coefficients(make_problem(name="ok", density="2*x + alpha*(1 - 2*x)", support=(0, 1), singular="lower"))
    assert ok[0].delta == 0 and ok[1].delta == 0 and ok[0].plus == 0
    off = coefficients(make_problem(name="off", density="2 + alpha", support=(0, 1), singular="lower"))
    assert float(off[0].delta) == pytest.approx(-1, abs=1e-13) and float(off[1].delta) == pytest.approx(-1, abs=1e-13)


def test_non_analytic_target_is_one_clear_error():
    from renorm.symbolic import SpecError

    with pytest.raises(SpecError, match="power series"):
        expand(make_problem(name="sqrt", density="sqrt(alpha)/x", support=(0, 1)))
