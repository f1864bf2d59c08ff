r"""The matching-function objects: each kind's pointwise minimizer against mpmath, its closed form, its loss kernel's recipe, and the lookup."""

from __future__ import annotations

import dataclasses
import re

import mpmath as mp
import numpy as np
import pytest
import sympy as sp

from renorm.symbolic import (
    LAMBDA, MATCHING, LossKernel, MatchingFunction, RenormError, make_problem, matching_function, numeric,
)

#: Negative near x = 0 (x < α/(2 + 3α)), so the principal branch of f(p) is exercised.
DENSITY = "2*x + alpha*(3*x - 1)"
#: One matching function per kind, and a decreasing custom f (the loss cannot tell f from -f).
MATCHINGS = {"linear": "linear", "log": "log", "sqrt": "sqrt(q)", "decreasing": "-q**3 - q"}


def _problem(f: str):
    return make_problem(name="m", density=DENSITY, support=(0, 1), singular="none", f=f, C="1 + x")


@pytest.fixture(scope="module", params=sorted(MATCHINGS), ids=sorted(MATCHINGS))
def problem(request):
    return _problem(MATCHINGS[request.param])


def _points(problem, seed: int = 5, n: int = 40):
    r"""Random (x, α) inside the support and coupling range, and :math:`p`, :math:`C^2` there."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(1e-3, 1 - 1e-3, n)
    alpha = rng.uniform(*problem.coupling_range, n)
    p = np.asarray(numeric(problem.density, (problem.x, problem.coupling))(x, alpha), dtype=float)
    c2 = np.asarray(numeric(problem.C_squared, (problem.x, problem.coupling))(x, alpha), dtype=float)
    assert (p < 0).any() and (p > 0).any()
    return x, alpha, p, c2


def _mp_condition(problem):
    r""":math:`g(q) = (f(q) - \mathrm{Re} f(p)) f'(q) + \lambda C^2` in mpmath (principal branch at complex p)."""
    f = sp.lambdify(problem.q, problem.f, modules="mpmath")
    fprime = sp.lambdify(problem.q, sp.diff(problem.f, problem.q), modules="mpmath")
    return lambda q, p, lam_c2: (f(q) - mp.re(f(mp.mpc(p)))) * fprime(q) + lam_c2


def _lambdas(problem):
    matching = matching_function(problem)
    return (1e-3, 0.4, 7.0) + ((-1e-3, -0.02) if matching.kind != "custom" else ())


def test_every_kind_is_registered_under_its_name():
    assert set(MATCHING) == {"linear", "log", "custom"}
    for kind, cls in MATCHING.items():
        assert issubclass(cls, MatchingFunction) and cls.kind == kind
    for f in MATCHINGS.values():
        problem = _problem(f)
        matching = matching_function(problem)
        assert type(matching) is MATCHING[problem.f_kind] and matching.problem is problem


def test_unknown_kind_is_refused():
    problem = dataclasses.replace(_problem("log"), f_kind="cubic")
    with pytest.raises(RenormError, match=r"unknown kind 'cubic'.*custom, linear, log") as error:
        matching_function(problem)
    assert "\n" not in str(error.value)


def test_pointwise_minimizer_satisfies_euler_lagrange(problem):
    r"""Where q > 0, :math:`q_\lambda` is the root of the condition (found again by mpmath from it);
    where the bound q ≥ 0 is active, the condition is positive at q → 0 (the loss rises into q > 0)."""
    mp.mp.dps = 30
    matching = matching_function(problem)
    _, _, p, c2 = _points(problem)
    condition = _mp_condition(problem)
    log_abs = lambda: np.log(np.abs(p))
    for lam in _lambdas(problem):
        q = matching.q(p, c2, lam, log_abs)
        assert np.isfinite(q).all() and (q >= 0).all()
        for qi, pi, ci in zip(q, p, c2):
            g = lambda t: condition(t, mp.mpf(pi), mp.mpf(lam) * mp.mpf(ci))
            if qi > 0:
                root = mp.findroot(g, mp.mpf(qi))
                # float64 rounds p - λC² (linear) and Re f(p) at the level of their terms
                assert abs(root - qi) <= 1e-12 * root + 1e-15 * (abs(pi) + abs(lam) * ci), (matching.kind, lam, pi)
            else:
                assert g(mp.mpf("1e-300")) > 0, (matching.kind, lam, pi)


def test_negative_multiplier_is_admitted_or_refused_in_one_line(problem):
    matching = matching_function(problem)
    _, _, p, c2 = _points(problem)
    assert matching.negative_multiplier == (matching.kind == "linear")
    if not matching.negative_multiplier:
        reason = matching.no_negative_multiplier(0.1, 0.9)
        assert reason and "\n" not in reason and "0.1" in reason
    if matching.kind == "custom":
        with pytest.raises(RenormError, match="λ < 0"):
            matching.q(p, c2, -0.1, lambda: np.log(np.abs(p)))


def test_deviation_log_q_and_residual_against_mpmath(problem):
    r""":math:`q - p`, :math:`\log q` and :math:`|f(q) - f(p)|^2` (principal branch) agree with mpmath at the
    pointwise :math:`q_\lambda`, also at a λ so small that q - p would cancel."""
    mp.mp.dps = 30
    matching = matching_function(problem)
    _, _, p, c2 = _points(problem)
    f = sp.lambdify(problem.q, problem.f, modules="mpmath")
    condition = _mp_condition(problem)
    log_abs = lambda: np.log(np.abs(p))
    for lam in (1e-9,) + _lambdas(problem):
        q = matching.q(p, c2, lam, log_abs)
        deviation = matching.deviation(p, c2, lam, log_abs)
        log_q = matching.log_q(p, c2, lam, log_abs)
        squared = matching.squared_residual(p, log_q, log_abs)
        for i in np.nonzero(q > 0)[0]:
            pi, terms = mp.mpf(p[i]), abs(p[i]) + abs(lam) * c2[i]
            reference = mp.findroot(lambda t: condition(t, pi, mp.mpf(lam) * mp.mpf(c2[i])), mp.mpf(q[i]))
            assert abs(log_q[i] - mp.log(reference)) <= 1e-13 * max(1, abs(mp.log(reference))) + 1e-15 * terms / reference
            # a deviation without cancellation is accurate relative to itself (linear, log: closed forms)
            scale = abs(reference - pi) if matching.kind != "custom" else abs(reference) + abs(pi)
            assert abs(deviation[i] - (reference - pi)) <= 1e-11 * scale, (matching.kind, lam, p[i])
            # |f(q) - f(p)| from log q: float64 resolves it to the size of f's values
            residual = abs(f(reference) - f(mp.mpc(pi)))
            size = abs(f(reference)) + abs(f(mp.mpc(pi))) + 1
            assert abs(mp.sqrt(squared[i]) - residual) <= 1e-12 * residual + 1e-14 * size, (matching.kind, lam, p[i])


def test_log_phase_costs_pi_squared_where_p_is_negative():
    matching = matching_function(_problem("log"))
    p = np.array([-2.0, -0.5, 0.5])
    log_q = np.log(np.abs(p))
    np.testing.assert_allclose(matching.squared_residual(p, log_q, lambda: np.log(np.abs(p))), [np.pi**2, np.pi**2, 0.0], rtol=1e-15)
    assert matching.constant_phase and matching.kl_identity


def test_log_q_where_p_overflows():
    r"""With p = α/x² beyond float64 (x = 1e-200), :math:`\log q = \log|p| - W(\lambda C^2|p|)` stays exact."""
    mp.mp.dps = 40
    matching = matching_function(make_problem(name="o", density="alpha/x**2", support=(0, 1), singular="lower"))
    x, alpha, lam = np.array([1e-200, 1e-170]), 0.1, 0.3
    with np.errstate(all="ignore"):
        p = alpha / x**2
    assert np.isinf(p).all()
    log_abs = lambda: np.log(alpha) - 2 * np.log(x)
    log_q = matching.log_q(p, np.ones_like(p), lam, log_abs)
    q = matching.q(p, np.ones_like(p), lam, log_abs)
    for i in range(len(x)):
        big = mp.mpf(alpha) / mp.mpf(x[i]) ** 2
        reference = mp.log(big) - mp.lambertw(lam * big).real
        assert abs(log_q[i] - reference) < 1e-13 * abs(reference)
        assert abs(q[i] / mp.exp(reference) - 1) < 1e-12


@pytest.mark.parametrize("f", ["linear", "log", "sqrt(q)"])
def test_closed_form_agrees_with_the_pointwise_minimizer(f):
    problem = _problem(f)
    matching = matching_function(problem)
    closed = matching.minimizer()
    assert closed is not None and closed.free_symbols <= {problem.x, problem.coupling, LAMBDA}
    x, alpha, p, c2 = _points(problem)
    fn = sp.lambdify((problem.x, problem.coupling, LAMBDA), closed, modules="mpmath")
    for lam in (1e-3, 0.4, 7.0):
        q = matching.q(p, c2, lam, lambda: np.log(np.abs(p)))
        for i in np.nonzero(p > 0)[0]:
            expected = mp.re(fn(mp.mpf(x[i]), mp.mpf(alpha[i]), mp.mpf(lam)))
            assert abs(q[i] - expected) <= 1e-12 * abs(expected) + 1e-15 * (p[i] + lam * c2[i])


def test_loss_kernel_recipe_names_only_its_inputs(problem):
    r"""Every ``{name}`` of the statements is a printed input, the weight is among them, and complex
    inputs come with the variable their statements bind the complex p to."""
    matching = matching_function(problem)
    log_q, complex_p = sp.Symbol("_log_q", real=True), sp.Symbol("_pc")
    for negative in (sp.true, sp.false, sp.Lt(problem.density, 0)):
        kernel = matching.loss_kernel(log_q, complex_p, sp.log(sp.Abs(problem.density)), negative)
        assert isinstance(kernel, LossKernel)
        names = [name for name, _ in kernel.inputs]
        assert "w" in names and len(set(names)) == len(names)
        placeholders = lambda lines: {m for line in lines for m in re.findall(r"\{(\w+)\}", line)}
        assert placeholders(kernel.statements) <= set(names)
        complex_names = {name for name, _ in kernel.complex_inputs}
        assert placeholders(kernel.complex_statements) <= set(names) | complex_names
        assert bool(kernel.complex_inputs) == (kernel.complex_argument is not None)
        if kernel.complex_argument:
            assert any(line.startswith(f"{kernel.complex_argument} = ") for line in kernel.statements)
        assert all(expr.free_symbols <= {problem.x, problem.coupling, log_q} for _, expr in kernel.inputs)
        assert all(expr.free_symbols <= {complex_p} for _, expr in kernel.complex_inputs)
