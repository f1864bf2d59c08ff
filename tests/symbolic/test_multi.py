r"""Targets in two variables: specs and regions, λ(α) by nested quadrature against mpmath, marginals, matched order."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from renorm.symbolic import (ExactMinimizer, MultiMinimizer, MultiProblem, NotNormalizableError, RenormError, SpecError, load_spec,
                             make_multi_problem, marginal_problem, multi_coefficients, multi_matched_order)

from ..conftest import EXAMPLES

CF = mp.mpf(4) / 3
EMISSION = "alpha*CF/pi*(1 + (1 - z)**2)/z/theta"


def _problem(density: str, x=("theta", "z"), support=(("0", "1"), ("0", "1")), **fields) -> MultiProblem:
    return make_multi_problem(name="t", density=density, x=list(x), support=[list(s) for s in support], constants={"CF": "4/3"}, **fields)


def _inner(c: mp.mpf, lam: mp.mpf) -> mp.mpf:
    r""":math:`\int_0^1 d\theta\, q` for :math:`p = c/\theta` and f = log: :math:`c\,(e^{-w_0} + E_1(w_0))`, :math:`w_0 = W(\lambda c)`."""
    w0 = mp.lambertw(lam * c).real
    return c * (mp.exp(-w0) + mp.e1(w0))


def _reference_lambda(total, guess: float) -> float:
    mp.mp.dps = 30
    try:
        return float(mp.exp(mp.findroot(lambda t: total(mp.exp(t)) - 1, mp.log(guess))))
    finally:
        mp.mp.dps = 15


def _emission_total(alpha: float, lam):
    a = mp.mpf(alpha) * CF / mp.pi
    return mp.quad(lambda z: _inner(a * (1 + (1 - z)**2) / z, lam), [0, mp.mpf(10)**-8, 1e-4, 0.01, 1])


def _pair_total(alpha: float, lam):
    # in (theta, z): p(l1, l2) = k(z)/theta^3 with Jacobian z theta^2, so the theta integral is (z k/3)(e^-w0 + E1(w0))
    a = mp.mpf(alpha) * CF / mp.pi
    return mp.quad(lambda z: z / 3 * _inner(a * (1 + (1 - z)**2) / z**2, lam), [0, mp.mpf(10)**-8, 1e-4, 0.01, 1])


@pytest.mark.parametrize("alpha", [0.05, 0.118, 0.3])
@pytest.mark.parametrize("case", ["emission", "pair"])
def test_lagrange_multiplier_against_a_one_dimensional_mpmath_reference(case, alpha):
    spec, total = {"emission": ("emission_theta_z", _emission_total), "pair": ("angularity_pair", _pair_total)}[case]
    solution = MultiMinimizer(load_spec(EXAMPLES / "multi" / f"{spec}.toml")).solve(alpha, loss=False)
    reference = _reference_lambda(lambda lam: total(alpha, lam), solution.lagrange_multiplier)
    assert solution.lagrange_multiplier == pytest.approx(reference, rel=1e-10)
    assert solution.normalization == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("variant", ["swapped", "upper", "half_line"])
def test_lambda_in_other_members_of_the_class(variant):
    # the emission with its variables swapped or theta mirrored to the upper end (the same lambda), and a
    # density that decays on an infinite outer support, (alpha CF/pi) e^-y/theta on (0, oo) x (0, 1)
    alpha = 0.118
    if variant == "swapped":
        problem = _problem(EMISSION, x=("z", "theta"))
    elif variant == "upper":
        problem = _problem("alpha*CF/pi*(1 + (1 - z)**2)/z/(1 - t)", x=("t", "z"), singular=["upper", "lower"])
    else:
        problem = _problem("alpha*CF/pi*exp(-y)/theta", x=("y", "theta"), support=(("0", "oo"), ("0", "1")), singular=["none", "lower"])
    solution = MultiMinimizer(problem).solve(alpha, loss=False)
    if variant == "half_line":
        a = mp.mpf(alpha) * CF / mp.pi
        total = lambda lam: mp.quad(lambda y: _inner(a * mp.exp(-y), lam), [0, 1, 10, 40, mp.inf])
    else:
        total = lambda lam: _emission_total(alpha, lam)
    assert solution.lagrange_multiplier == pytest.approx(_reference_lambda(total, solution.lagrange_multiplier), rel=1e-10)


def test_in_the_lund_plane_the_emission_has_no_normalized_minimizer():
    # in (log 1/theta, log 1/z) the emission density p theta z tends to the constant 2 alpha CF/pi on an infinite
    # quadrant: with f = log every q_lambda follows it there, so no lambda normalizes it (DESIGN: f = log is pointwise)
    problem = _problem("alpha*CF/pi*(1 + (1 - exp(-v))**2)", x=("u", "v"), support=(("0", "oo"), ("0", "oo")), singular="none")
    with pytest.raises(NotNormalizableError, match="diverges for every"):
        MultiMinimizer(problem).solve(0.118)


def test_linear_matching_on_a_smooth_box_target_has_the_closed_form_multiplier():
    # p = 1 + alpha x1 x2 on the unit square: int p = 1 + alpha/4, and q = p - lambda stays positive, so lambda = alpha/4
    problem = _problem("1 + alpha*x1*x2", x=("x1", "x2"), singular="none", f="linear")
    for alpha in (0.05, 0.3):
        solution = MultiMinimizer(problem).solve(alpha)
        assert solution.lagrange_multiplier == pytest.approx(alpha / 4, rel=1e-12)
        assert solution.q(np.array([0.5]), np.array([0.5])) == pytest.approx(1 + alpha / 4 - alpha / 4, rel=1e-12)


def test_the_ll_reference_is_normalized_and_its_first_order_is_the_emission():
    problem = load_spec(EXAMPLES / "multi" / "emission_ll.toml")
    minimizer = MultiMinimizer(problem)
    for alpha in (0.05, 0.3):
        assert minimizer.normalization(alpha, 0.0) == pytest.approx(1.0, abs=1e-10)
        assert minimizer.solve(alpha, loss=False).lagrange_multiplier == 0.0
    emission = load_spec(EXAMPLES / "multi" / "emission_theta_z.toml")
    terms, expected = multi_coefficients(problem), multi_coefficients(emission)
    assert terms[0] == 0 and sp.simplify(terms[1] - expected[1]) == 0
    # a truncation of it is not normalized: its q* needs lambda > 0
    assert MultiMinimizer(emission).solve(0.118).lagrange_multiplier > 0


def test_a_non_integrable_linear_target_is_refused():
    problem = _problem(EMISSION, f="linear")
    with pytest.raises(NotNormalizableError, match="diverges for every"):
        MultiMinimizer(problem).solve(0.118)


def test_marginals_of_q_star_and_the_marginal_targets_q_star_differ():
    problem = load_spec(EXAMPLES / "multi" / "angularity_pair.toml")
    solution = MultiMinimizer(problem).solve(0.118)
    reduced, reason = marginal_problem(problem)
    assert reason == ""
    l1 = reduced.x
    # the beta = 1 marginal of the emission: (alpha CF/pi)(1/l1) int_{l1}^1 P(z) dz
    expected = problem.coupling * sp.Rational(4, 3) / sp.pi / l1 * (-2 * sp.log(l1) - sp.Rational(3, 2) + 2 * l1 - l1**2 / 2)
    assert sp.simplify(reduced.density - expected) == 0
    # the marginal of q* is normalized, and it is not the 1D q* of the marginal target
    total = mp.quad(lambda u: float(solution.marginal(0, np.array([math.exp(u)]))[0]) * mp.exp(u), [-60, -20, -5, 0])
    assert float(total) == pytest.approx(1.0, abs=1e-7)
    x = np.array([1e-3, 0.1])
    one_d = ExactMinimizer(reduced).solve(0.118).q(x)
    two_d = solution.marginal(0, x)
    assert abs(two_d[0] / one_d[0] - 1) > 0.5 and abs(two_d[1] / one_d[1] - 1) > 0.01


def test_marginal_in_the_second_variable_of_a_box():
    problem = _problem("1 + alpha*x1*x2", x=("x1", "x2"), singular="none", f="linear")
    solution = MultiMinimizer(problem).solve(0.2)
    # q = 1 + alpha x1 x2 - alpha/4: the x2 marginal is 1 + alpha x2/2 - alpha/4
    assert solution.marginal(1, np.array([0.3])) == pytest.approx(1 + 0.2 * 0.3 / 2 - 0.05, rel=1e-10)


@pytest.mark.parametrize("alpha", [0.05, 0.3])
def test_marginal_in_the_second_variable_of_the_pair_against_mpmath(alpha):
    # l1^2 <= l2 <= l1: at fixed l2 the region holds l1 in [l2, sqrt(l2)], found from the bounds' inverses
    problem = load_spec(EXAMPLES / "multi" / "angularity_pair.toml")
    assert problem.outer_intervals(1e-4) == [(1e-4, pytest.approx(1e-2, rel=1e-15))]
    solution = MultiMinimizer(problem).solve(alpha, loss=False)
    l2 = np.array([1e-8, 1e-4, 1e-2, 0.1, 0.5, 0.95])
    marginal = solution.marginal(1, l2)
    mp.mp.dps = 30
    try:
        lam, a = mp.mpf(solution.lagrange_multiplier), mp.mpf(alpha) * CF / mp.pi

        def q(l1, v):
            p = a * (1 + (1 - l1**2 / v) ** 2) / (l1 * v)
            return p * mp.exp(-mp.lambertw(lam * p).real)

        for v, value in zip(l2, marginal):
            v = mp.mpf(v)
            assert value == pytest.approx(float(mp.quad(lambda l1: q(l1, v), [v, mp.sqrt(v)])), rel=1e-12)
    finally:
        mp.mp.dps = 15
    # and it is normalized over l2
    total = mp.quad(lambda u: float(solution.marginal(1, np.array([math.exp(u)]))[0]) * mp.exp(u), [-80, -20, -5, 0])
    assert float(total) == pytest.approx(1.0, abs=1e-9)


def test_the_marginal_target_in_the_second_variable_and_its_1d_q_star():
    # beta = 2: int p dl1 over [l2, sqrt(l2)], limits from the bounds' inverse branches; checked by mpmath,
    # and, as for beta = 1, the 1D q* of that marginal target is not the marginal of the 2D q*
    problem = load_spec(EXAMPLES / "multi" / "angularity_pair.toml")
    reduced, reason = marginal_problem(problem, 1)
    assert reason == "" and reduced.x.name == "l2" and reduced.singular == "lower"
    density = ExactMinimizer(reduced).p
    for v in (1e-6, 1e-3, 0.2, 0.9):
        v = mp.mpf(v)
        reference = mp.quad(lambda l1: mp.mpf("0.118") * CF / mp.pi * (1 + (1 - l1**2 / v) ** 2) / (l1 * v), [v, mp.sqrt(v)])
        assert float(density(np.array([float(v)]), 0.118)[0]) == pytest.approx(float(reference), rel=1e-12)
    solution = MultiMinimizer(problem).solve(0.118)
    l2 = np.array([1e-4, 0.05])
    two_d, one_d = solution.marginal(1, l2), ExactMinimizer(reduced).solve(0.118).q(l2)
    assert abs(two_d[0] / one_d[0] - 1) > 0.3 and abs(two_d[1] / one_d[1] - 1) > 0.005
    # a region whose x1 interval is not one branch of a bound at every x2 has no such target
    wedge = _problem("1 + alpha*x1", x=("x1", "x2"), singular="none", region="x2 <= 4*x1*(1 - x1)", f="linear")
    reduced, reason = marginal_problem(wedge, 1)
    # int (1 + alpha x1) over the two roots (1 -+ sqrt(1 - x2))/2 is sqrt(1 - x2) (1 + alpha/2)
    x2 = np.array([1e-9, 0.3, 0.99])
    assert reason == "" and ExactMinimizer(reduced).p(x2, 0.2) == pytest.approx(np.sqrt(1 - x2) * 1.1, rel=1e-13)
    # near the corner the root (1 - sqrt(1 - x2))/2 loses digits in float64; the interval's ends do not
    ((lo, hi),) = wedge.outer_intervals(3e-13)
    assert lo == pytest.approx(float((1 - mp.sqrt(1 - mp.mpf(3e-13))) / 2), rel=1e-12)
    loop = _problem("1 + alpha*x1", x=("x1", "x2"), singular="none", region="x2 <= -E*x1*log(x1)", f="linear")
    assert "none of the solutions SymPy found" in marginal_problem(loop, 1)[1]


def test_marginal_in_the_second_variable_where_the_bound_has_two_branches():
    # x2 <= 4 x1 (1 - x1): at fixed x2, x1 runs between the two roots (1 -+ sqrt(1 - x2))/2, and
    # q* = p = (3/2)(1 + alpha (x1 - 1/2)) integrates to (3/2) sqrt(1 - x2) there
    problem = _problem("3/2*(1 + alpha*(x1 - 1/2))", x=("x1", "x2"), singular="none", region="x2 <= 4*x1*(1 - x1)", f="linear")
    solution = MultiMinimizer(problem).solve(0.2)
    assert solution.lagrange_multiplier == 0.0
    x2 = np.array([1e-6, 0.3, 0.75, 0.99])
    np.testing.assert_allclose(solution.marginal(1, x2), 1.5 * np.sqrt(1 - x2), rtol=1e-11)
    ((lo, hi),) = problem.outer_intervals(0.75)
    assert (lo, hi) == (pytest.approx(0.25, rel=1e-14), pytest.approx(0.75, rel=1e-14))


def test_marginal_in_the_second_variable_refuses_a_bound_sympy_cannot_invert():
    problem = _problem("1 + alpha*x1", x=("x1", "x2"), singular="none", region="x2 <= x1 + sin(x1)/10 + log(1 + x1)/10", f="linear")
    with pytest.raises(RenormError, match="cannot solve the region's bound"):
        problem.outer_intervals(0.5)
    # -e x1 log x1 = x2 has two roots in (0, 1); SymPy finds only the principal branch of Lambert W,
    # and the scan finds the crossing it misses
    problem = _problem("1 + alpha*x1", x=("x1", "x2"), singular="none", region="x2 <= -E*x1*log(x1)", f="linear")
    with pytest.raises(RenormError, match="none of the solutions SymPy found"):
        problem.outer_intervals(0.5)


def test_matched_order_of_the_emission():
    order = multi_matched_order(load_spec(EXAMPLES / "multi" / "emission_theta_z.toml"), steps=4)
    assert order.matched == 1 and order.exponents[-1] > 2


def test_the_region_is_read_as_bounds_on_the_second_variable():
    problem = load_spec(EXAMPLES / "multi" / "angularity_pair.toml")
    sides = {(b.side, sp.sstr(b.expr)) for b in problem.region}
    assert sides == {("lower", "l1**2"), ("upper", "l1")}
    lo, hi = problem.inner_interval(np.array([0.5]))
    assert (lo[0], hi[0]) == (0.25, 0.5)
    assert problem.contains(np.array([0.5, 0.5]), np.array([0.3, 0.6])).tolist() == [True, False]
    # written the other way round, the same region
    again = _problem("alpha/(l1*l2)", x=("l1", "l2"), region=["l1 >= l2", "l2 >= l1**2"])
    assert {(b.side, sp.sstr(b.expr)) for b in again.region} == sides


@pytest.mark.parametrize("fields, message", [
    ({"region": "x1 <= 1/2"}, "does not bound x2"),
    ({"region": "x2 == x1"}, "not a chain of inequalities"),
    ({"region": "x2 <= x1 - 2"}, "region is empty"),
    ({"region": "(x2 - 1/2)**2 <= x1/4"}, "one bound"),
    ({"region": 3}, "expected an inequality"),
    ({"region": "x2 <= y"}, "unknown name 'y'"),
    ({"x": ["x1", "x2", "x3"], "support": [["0", "1"]] * 3}, "3 variables are not supported yet"),
    ({"x": ["x1", "x1"]}, "two variables are called the same"),
    ({"x": ["x1", "alpha"]}, "both called 'alpha'"),
    ({"support": [["0", "1"]]}, "one pair of endpoints per variable"),
    ({"support": [["0", "1"], ["1", "0"]]}, r"target.support\[1\]: empty or reversed"),
    ({"singular": ["lower"]}, "per variable"),
    ({"singular": ["lower", "sideways"]}, "expected one of"),
])
def test_bad_fields_are_refused_in_one_line(fields, message):
    base = {"name": "t", "density": "alpha/(x1*x2)", "x": ["x1", "x2"], "support": [["0", "1"], ["0", "1"]]}
    with pytest.raises(SpecError, match=message) as error:
        make_multi_problem(**{**base, **fields})
    assert "\n" not in str(error.value)


def test_toml_fields_of_one_variable_stay_one_dimensional(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('[target]\ndensity = "alpha/x"\nregion = "x <= 1/2"\n')
    with pytest.raises(SpecError, match="a region needs several variables"):
        load_spec(spec)
    spec.write_text('[target]\nx = ["a", "b"]\nevents = "e.npz"\n')
    with pytest.raises(SpecError, match="numeric targets in several variables are not supported yet"):
        load_spec(spec)


def test_the_hash_depends_on_the_region():
    a = _problem("alpha/(l1*l2)", x=("l1", "l2"), region="l2 <= l1")
    b = _problem("alpha/(l1*l2)", x=("l1", "l2"), region="l1**2 <= l2")
    assert a.sha256 != b.sha256 and a.sha256 == _problem("alpha/(l1*l2)", x=("l1", "l2"), region="l2 <= l1").sha256


@pytest.mark.parametrize("build", [
    lambda: load_spec(EXAMPLES / "multi" / "angularity_pair.toml"),
    lambda: load_spec(EXAMPLES / "multi" / "emission_theta_z.toml"),
    lambda: load_spec(EXAMPLES / "multi" / "emission_ll.toml"),
    # built in Python: constants in the density and in the region, an upper face, a half-line
    lambda: make_multi_problem(name="built", x=["u", "v"], support=[["0", "1"], ["-oo", "2"]], singular=["upper", "none"],
                               density="c*alpha*exp(v - 2)/(1 - u)**(1/2)", region=["v <= 2 - k*u", "v >= -9"],
                               constants={"c": "3/7", "k": "1/4"}, f="linear", training={"epochs": 7}),
])
def test_a_problem_in_two_variables_is_written_as_toml_that_reads_back_to_it(build, tmp_path):
    from renorm.symbolic import to_toml

    problem = build()
    path = tmp_path / "again.toml"
    path.write_text(to_toml(problem))
    again = load_spec(path)
    assert isinstance(again, MultiProblem) and again.sha256 == problem.sha256 and again.training == problem.training
    assert [(b.side, b.expr) for b in again.region] == [(b.side, b.expr) for b in problem.region]
