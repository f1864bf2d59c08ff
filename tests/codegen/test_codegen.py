r"""Tests of renorm.codegen: generated kernels against mpmath, the NumPy reference, autograd and the CLI."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from renorm import codegen
from renorm.codegen._cli import main
from renorm.symbolic import (
    LAMBDA,
    ExactMinimizer,
    Problem,
    SpecError,
    SpecialFunction,
    exact_minimizer,
    expand,
    integrate,
    load_spec,
    make_problem,
    quadrature_map,
    register_function,
    solve,
    unregister_function,
)

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted([*ROOT.glob("examples/*.toml"), *ROOT.glob("examples/*.py")])

#: Problems beyond the examples, each exercising one part of the printer.
EXTRA = {
    # a custom monotone f, evaluated on the principal branch
    "custom_sqrt": dict(name="custom_sqrt", density="2*x + alpha*(1 - x)", f="sqrt(q)"),
    # f = linear with a hard cutoff: w = 0 below x = 1/10
    "cutoff": dict(name="cutoff", density="2*alpha*CF/pi*log(1/x)/x + 3", constants={"CF": "4/3"}, f="linear",
                   weight="Heaviside(x - 1/10)/2"),
    # Piecewise whose untaken branches are outside their domain (sqrt of a negative number, log)
    "piecewise": dict(name="piecewise", density="Piecewise((alpha*sqrt(x - 1/5), x > 1/5), (alpha*log(x), True)) + 1 + alpha"),
    # the runtime's special functions and constants printed as literals
    "specials": dict(name="specials", support=("0", "1"), singular="none",
                     density="1 + alpha*(LambertW(x) - polylog(2, x)/pi + gamma(1 + x)*EulerGamma*E - Heaviside(x - 1/3)*x**(1/3))"),
}
CASES = [spec.name for spec in SPECS] + list(EXTRA)

DPS = 30
EPS = float(np.finfo(np.float64).eps)
#: Rounding errors of one float64 evaluation, in units of EPS times the condition number below:
#: a few operations per level, library functions good to a couple of ulps.
ROUNDING = 8.0
#: The accuracy asked of every generated function where the evaluation is well conditioned.
RTOL = 1e-12
POINTS = 240


@pytest.fixture(scope="session", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RENORM_CACHE", str(tmp_path_factory.mktemp("renorm-cache")))
        yield


@functools.cache
def problem_for(case: str) -> Problem:
    return make_problem(**EXTRA[case]) if case in EXTRA else load_spec(ROOT / "examples" / case)


# independent high-precision references ------------------------------------------------------
def _mp_heaviside(x: mpmath.mpf, h0: mpmath.mpf = mpmath.mpf(0.5)) -> mpmath.mpf:
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(h0) if x == 0 else mpmath.mpf(0))


MP_MODULES = [{"Heaviside": _mp_heaviside}, "mpmath"]


def condition(expr: sp.Expr) -> sp.Expr:
    r"""A first-order rounding model: float64 evaluation of ``expr`` errs by about EPS·κ·|expr|.

    Sums amplify the rounding of their terms by :math:`\sum|a_i| / |\sum a_i|` (cancellation),
    products add relative errors, and a function :math:`g(u)` multiplies the relative error of
    :math:`u` by :math:`|u g'(u) / g(u)|`. Each operation adds one rounding.

    Arguments:
        expr: A real SymPy expression.

    Returns:
        :math:`\kappa` as a SymPy expression of the same symbols.
    """
    if expr.is_Symbol or expr.is_Integer:
        return sp.Integer(0)
    if expr.is_number:
        return sp.Integer(1)
    if isinstance(expr, sp.Add):
        return sp.Add(*[sp.Abs(a) * (condition(a) + 1) for a in expr.args]) / sp.Abs(expr)
    if isinstance(expr, sp.Mul):
        return sp.Add(*[condition(a) for a in expr.args]) + len(expr.args) - 1
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        if exponent.is_number:
            return sp.Abs(exponent) * condition(base) + 1
        return sp.Abs(exponent * sp.log(base)) * condition(exponent) + sp.Abs(exponent) * condition(base) + 1
    if isinstance(expr, sp.Piecewise):
        return sp.Piecewise(*[(condition(value), cond) for value, cond in expr.args])
    if isinstance(expr, (sp.Heaviside, sp.sign)):
        return sp.Integer(0)
    total = sp.Integer(1)
    for i, u in enumerate(expr.args):
        if u.free_symbols:
            s = sp.Dummy("s", real=True)
            shifted = expr.func(*[s if j == i else a for j, a in enumerate(expr.args)])
            total += sp.Abs(u * sp.diff(shifted, s).subs(s, u) / expr) * condition(u)
    return total


def mp_function(args: tuple[sp.Symbol, ...], expr: sp.Expr) -> Callable[..., list]:
    r"""``expr`` at float points, evaluated in mpmath at 30 digits (the inputs are exact floats)."""
    fn = sp.lambdify(args, expr, modules=MP_MODULES, cse=True)

    def value(*row: mpmath.mpf) -> mpmath.mpf:
        try:
            return fn(*row)
        except ZeroDivisionError:  # e.g. C² = 1/w where w = 0: no finite value
            return mpmath.nan

    def evaluate(*columns: np.ndarray) -> list:
        with mpmath.workdps(DPS):
            return [value(*(mpmath.mpf(float(v)) for v in row)) for row in zip(*columns)]

    return evaluate


def sample(problem: Problem, n: int = POINTS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Random points: half uniform in the endpoint map (x down to e^-600 at a singular end), half uniform in x."""
    rng = np.random.default_rng(seed)
    m = quadrature_map(problem.support_floats, problem.singular)
    a, b = problem.support_floats
    mapped = m.from_latent(rng.uniform(*m.latent_range(), n))
    plain = rng.uniform(a, b, n) if math.isfinite(a) and math.isfinite(b) else m.from_latent(rng.uniform(-20.0, 20.0, n))
    x = np.concatenate([mapped[: n // 2], plain[: n - n // 2]])
    x = x[(x > a) & (x < b)]
    alpha = rng.uniform(*problem.coupling_range, x.size)
    return x, alpha


def tensor(values: np.ndarray | list, dtype: torch.dtype = torch.float64, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(values, dtype=float), dtype=dtype, requires_grad=grad)


def assert_within(value: np.ndarray, exact: np.ndarray, tolerance: np.ndarray, what: str, x: np.ndarray) -> None:
    value, exact = np.asarray(value, dtype=float), np.asarray(exact, dtype=float)
    error = np.abs(value - exact)
    bad = ~(error <= tolerance) & ~((value == exact) | (np.isnan(value) & np.isnan(exact)))
    if bad.any():
        i = int(np.argmax(np.where(bad, error / np.maximum(tolerance, 1e-300), 0.0)))
        raise AssertionError(f"{what}: {bad.sum()} of {value.size} points off, worst at x={x[i]!r}: {value[i]!r} vs {exact[i]!r} (tolerance {tolerance[i]:.3g})")


class Reference:
    r"""mpmath values of the problem's SymPy expressions and their rounding scales at sample points."""

    def __init__(self, problem: Problem, x: np.ndarray, alpha: np.ndarray):
        self.problem, self.x, self.alpha = problem, x, alpha
        args = (problem.x, problem.coupling)
        self.p = mp_function(args, problem.density)(x, alpha)
        kappa = mp_function(args, condition(problem.density))(x, alpha)
        # absolute error of a float64 evaluation of p
        self.dp = [ROUNDING * EPS * k * abs(v) for k, v in zip(kappa, self.p)]
        self.w = mp_function(args, problem.weight)(x, alpha)
        self.kappa_w = mp_function(args, condition(problem.weight))(x, alpha)

    def floats(self, values: list) -> np.ndarray:
        return np.array([float(v) for v in values])


# the generated functions against mpmath ----------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_functions_match_mpmath(case: str):
    problem = problem_for(case)
    kernels = codegen.load(problem)
    x, alpha = sample(problem)
    assert x.size >= 200
    ref = Reference(problem, x, alpha)
    xt, at = tensor(x), tensor(alpha)

    p_ref = ref.floats(ref.p)
    dp = ref.floats(ref.dp)
    assert_within(kernels.p(xt, at).numpy(), p_ref, RTOL * np.abs(p_ref) + dp, "p", x)

    # log p: the absolute error of log|p| is the relative error of p (hence the floor of 1)
    log_p = kernels.log_p(xt, at)
    assert log_p.dtype == torch.complex128
    with mpmath.workdps(DPS):
        exact_log = [mpmath.log(mpmath.mpc(v)) for v in ref.p]
    real = ref.floats([v.real for v in exact_log])
    assert_within(log_p.real.numpy(), real, RTOL * np.maximum(1.0, np.abs(real)) + dp / np.abs(p_ref), "Re log p", x)
    # the phase is exact wherever the sign of p is resolved by float64
    resolved = np.abs(p_ref) > 10 * dp
    assert resolved.mean() > 0.9
    assert np.array_equal(log_p.imag.numpy()[resolved], np.where(p_ref < 0, math.pi, 0.0)[resolved])

    w_ref = ref.floats(ref.w)
    kappa_w = ref.floats(ref.kappa_w)
    assert_within(kernels.weight(xt, at).numpy(), w_ref, np.abs(w_ref) * (RTOL + ROUNDING * EPS * kappa_w), "weight", x)

    coefficients = kernels.p_coefficients(xt)
    assert len(coefficients) == problem.order + 1
    for n, expr in enumerate(expand(problem)):
        exact = ref.floats(mp_function((problem.x,), expr)(x))
        kappa = ref.floats(mp_function((problem.x,), condition(expr))(x))
        assert coefficients[n].shape == xt.shape
        assert_within(coefficients[n].numpy(), exact, np.abs(exact) * (RTOL + ROUNDING * EPS * kappa), f"p^{n}", x)

    # q_exact at a λ of the size solve() finds
    q = exact_minimizer(problem)
    assert q is not None, "every tested problem has a closed-form minimizer"
    lam = 0.1
    q_lam = q.subs(LAMBDA, lam)
    q_ref = ref.floats(mp_function((problem.x, problem.coupling), q_lam)(x, alpha))
    kappa_q = ref.floats(mp_function((problem.x, problem.coupling), condition(q_lam))(x, alpha))
    generated = kernels.q_exact(xt, at, lam).numpy()
    # where C² = 1/(2w) is infinite mpmath has no value; the limit is the NumPy reference's
    finite = np.isfinite(q_ref)
    assert finite.mean() > 0.3
    assert_within(generated[finite], q_ref[finite], (np.abs(q_ref) * (RTOL + ROUNDING * EPS * kappa_q))[finite], "q_exact", x[finite])
    assert np.array_equal(generated[~finite], ExactMinimizer(problem).q(x[~finite], alpha[~finite], lam))


#: Problems whose p overflows at the smallest x that float64 and float32 represent, and the
#: smallest x, in units of the smallest normal number, where each of their factors is finite.
OVERFLOW = {
    # a power of x at the singular endpoint
    "soft_collinear.toml": (None, 1e-3),
    # its factor log((1 - x)/x) overflows itself with 1/x below the smallest normal x
    "angularity_lo.toml": (None, 1.0),
    # a factor that is not a power of x leaves the range too: sinh(x)**-2 overflows below x = 1e-154
    "sinh": (dict(name="sinh", density="alpha*(1 + x)/sinh(x)**2"), 1e-3),
}


@pytest.mark.parametrize("case", OVERFLOW)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_p_is_finite_where_p_overflows(case: str, dtype: torch.dtype):
    built, lowest = OVERFLOW[case]
    problem = load_spec(ROOT / "examples" / case) if built is None else make_problem(**built)
    kernels = codegen.load(problem)
    smallest = float(torch.finfo(dtype).smallest_normal)
    x = torch.tensor([smallest * lowest, smallest * 1e3, 1e-3], dtype=dtype)
    alpha = 0.118
    assert not torch.isfinite(kernels.p(x, alpha)).all(), "p itself should overflow at the smallest x"
    # the exact floats of x (and of alpha in this dtype), in mpmath
    exact_alpha = np.full(x.shape, float(torch.tensor(alpha, dtype=dtype)))
    exact = np.array([float(mpmath.log(abs(v))) for v in mp_function((problem.x, problem.coupling), problem.density)(x.double().numpy(), exact_alpha)])
    rtol = 1e-14 if dtype == torch.float64 else 1e-6
    np.testing.assert_allclose(kernels.log_p(x, alpha).real.double().numpy(), exact, rtol=rtol)
    # the loss at q = 1: w (log p)² with w = 1/2
    np.testing.assert_allclose(kernels.loss_density(torch.zeros_like(x), x, alpha).double().numpy(), exact**2 / 2, rtol=4 * rtol)


@pytest.mark.parametrize("case", CASES)
def test_loss_density_matches_mpmath_and_numpy(case: str):
    problem = problem_for(case)
    kernels = codegen.load(problem)
    x, alpha = sample(problem, seed=1)
    rng = np.random.default_rng(2)
    # around the magnitude of log p, so f(q) - f(p) is of every size
    with np.errstate(all="ignore"):
        center = np.nan_to_num(np.log(np.abs(ExactMinimizer(problem).p(x, alpha))), posinf=0.0, neginf=0.0)
    log_q = center + rng.normal(0.0, 2.0, x.size)
    ref = Reference(problem, x, alpha)
    f = sp.lambdify(problem.q, problem.f, modules="mpmath")

    exact, tolerance = [], []
    with mpmath.workdps(DPS):
        for p, dp, w, kappa_w, lq in zip(ref.p, ref.dp, ref.w, ref.kappa_w, log_q):
            f_q = f(mpmath.exp(mpmath.mpf(float(lq))))

            def loss(p_value: mpmath.mpf) -> mpmath.mpf:
                return w * abs(f_q - f(mpmath.mpc(p_value))) ** 2

            value = loss(p)
            # the propagated error of p, of w, and of the difference f(q) - f(p) itself
            slope = abs(mpmath.diff(loss, p)) if w != 0 else 0
            f_p = f(mpmath.mpc(p))
            difference = 2 * w * abs(f_q - f_p) * ROUNDING * EPS * (abs(f_q) + abs(f_p))
            exact.append(float(value))
            tolerance.append(float(RTOL * value + slope * dp + value * ROUNDING * EPS * (kappa_w + 4) + difference))
    exact, tolerance = np.array(exact), np.array(tolerance)

    generated = kernels.loss_density(tensor(log_q), tensor(x), tensor(alpha)).numpy()
    assert_within(generated, exact, tolerance, "loss_density vs mpmath", x)
    reference = ExactMinimizer(problem).loss_density(x, alpha, log_q)
    assert_within(generated, reference, 2 * tolerance, "loss_density vs ExactMinimizer.loss_density", x)
    # where the reference is exactly 0 (w = 0), so is the generated integrand
    assert np.array_equal(generated[reference == 0], reference[reference == 0])


def test_custom_f_with_negative_p():
    # f = sqrt: where p < 0, f(p) = i sqrt|p| and the integrand is w (f(q)² + |p|)
    problem = make_problem(name="custom_negative", density="2*x + alpha*(3*x - 1)", f="sqrt(q)")
    kernels = codegen.load(problem)
    x = np.linspace(0.001, 0.999, 201)
    alpha = np.full_like(x, 0.3)
    log_q = np.linspace(-3.0, 1.0, x.size)
    p = (2 * x + 0.3 * (3 * x - 1))
    assert (p < 0).any() and (p > 0).any()
    generated = kernels.loss_density(tensor(log_q), tensor(x), tensor(alpha)).numpy()
    with mpmath.workdps(DPS):
        exact = np.array([float(0.5 * abs(mpmath.sqrt(mpmath.exp(mpmath.mpf(lq))) - mpmath.sqrt(mpmath.mpc(2 * mpmath.mpf(xi) + mpmath.mpf(0.3) * (3 * mpmath.mpf(xi) - 1)))) ** 2)
                          for xi, lq in zip(x, log_q)])
    np.testing.assert_allclose(generated, exact, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(generated, ExactMinimizer(problem).loss_density(x, alpha, log_q), rtol=1e-12, atol=1e-15)


# the exact minimizer: λ from solve() ---------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_q_exact_matches_solution_and_is_normalized(case: str):
    problem = problem_for(case)
    kernels = codegen.load(problem)
    minimizer = ExactMinimizer(problem)
    mapping = quadrature_map(problem.support_floats, problem.singular)
    x, _ = sample(problem, seed=3)
    q_expr = exact_minimizer(problem)
    for solution in solve(problem, problem.coupling_range):
        alpha, lam = solution.alpha, solution.lagrange_multiplier
        generated = kernels.q_exact(tensor(x), alpha, lam).numpy()
        expected = solution.q(x)
        q_lam = q_expr.subs(LAMBDA, lam)
        kappa = np.array([float(v) for v in mp_function((problem.x, problem.coupling), condition(q_lam))(x, np.full_like(x, alpha))])
        # where C is infinite (w = 0) the rounding model has no value: q = 0 exactly there
        kappa = np.where(np.isnan(kappa), 0.0, kappa)
        assert_within(generated, expected, 2 * np.abs(expected) * (RTOL + ROUNDING * EPS * kappa), f"q_exact at alpha={alpha}", x)

        def integrand(u: np.ndarray) -> np.ndarray:
            values = kernels.q_exact(torch.from_numpy(np.ascontiguousarray(mapping.from_latent(u))), alpha, lam).numpy()
            return values * mapping.jacobian(u)

        total = integrate(integrand, *mapping.latent_range(), breakpoints=minimizer.breakpoints(alpha), rtol=1e-12)
        assert abs(total.value - 1.0) <= 1e-8, f"∫q_exact = {total.value} at alpha={alpha}"


# gradients ---------------------------------------------------------------------------------
def _bulk(problem: Problem, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    a, b = problem.support_floats
    x = a + (b - a) * np.linspace(0.02, 0.95, n) if math.isfinite(b) else a + np.logspace(-2, 2, n)
    return x, np.linspace(*problem.coupling_range, n)


def _check_gradients(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: np.ndarray, alpha: np.ndarray, what: str) -> None:
    r"""autograd against central differences, at the points where the differences converge."""
    xt, at = tensor(x, grad=True), tensor(alpha, grad=True)
    out = fn(xt, at)
    if out.requires_grad:
        grads = torch.autograd.grad(out.sum(), [xt, at], allow_unused=True, materialize_grads=True)
    else:  # a constant (e.g. w = 1/2) is not connected to its arguments
        grads = (torch.zeros_like(xt), torch.zeros_like(at))
    for k, (grad, point) in enumerate(zip(grads, (x, alpha))):

        def central(h: np.ndarray) -> np.ndarray:
            up, down = point + h, point - h
            args_up = (up, alpha) if k == 0 else (x, up)
            args_down = (down, alpha) if k == 0 else (x, down)
            return ((fn(tensor(args_up[0]), tensor(args_up[1])) - fn(tensor(args_down[0]), tensor(args_down[1]))).detach().numpy()) / (2 * h)

        h = 1e-5 * np.abs(point)
        coarse, fine = central(h), central(h / 2)
        # a kink (Piecewise, a zero of p) between the evaluation points shows as disagreement
        smooth = np.abs(coarse - fine) <= 1e-7 * np.maximum(np.abs(fine), 1e-8)
        assert smooth.mean() >= 0.75, f"{what}: finite differences did not converge"
        np.testing.assert_allclose(grad.numpy()[smooth], fine[smooth], rtol=1e-6, atol=1e-9, err_msg=f"d{what}/d{'x' if k == 0 else 'alpha'}")


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_finite_differences(case: str):
    problem = problem_for(case)
    kernels = codegen.load(problem)
    x, alpha = _bulk(problem)
    log_q = np.linspace(-2.0, 2.0, x.size)
    _check_gradients(kernels.p, x, alpha, "p")
    _check_gradients(kernels.weight, x, alpha, "weight")
    _check_gradients(lambda xt, at: kernels.loss_density(tensor(log_q), xt, at), x, alpha, "loss_density")

    # d/dlog_q of the integrand, against its closed form where f = log: 2 w (log q - log|p|)
    if problem.f_kind == "log":
        lq = tensor(log_q, grad=True)
        (grad,) = torch.autograd.grad(kernels.loss_density(lq, tensor(x), tensor(alpha)).sum(), [lq])
        p = ExactMinimizer(problem).p(x, alpha)
        w = ExactMinimizer(problem).weight(x, alpha)
        np.testing.assert_allclose(grad.numpy(), 2 * w * (log_q - np.log(np.abs(p))), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_log_q_gradient_is_finite_everywhere(case: str):
    problem = problem_for(case)
    kernels = codegen.load(problem)
    x = np.concatenate([problem.interior_points(200), sample(problem, 200, seed=4)[0]])
    xs = np.repeat(x, 6)
    alpha = np.full_like(xs, problem.coupling_range[1])
    p = ExactMinimizer(problem).p(xs, alpha)
    with np.errstate(divide="ignore"):
        log_abs = np.log(np.abs(p))
    # far below, at, and above log|p|; where w = 0 or p < 0 too
    log_q = np.stack([np.full_like(x, -60.0), np.full_like(x, 60.0), np.full_like(x, 0.0),
                      log_abs[::6], log_abs[::6] + 1e-3, log_abs[::6] - 1e-3], axis=1).ravel()
    log_q = np.nan_to_num(log_q, neginf=-700.0)
    lq = tensor(log_q, grad=True)
    xt, at = tensor(xs, grad=True), tensor(alpha, grad=True)
    loss = kernels.loss_density(lq, xt, at)
    (grad,) = torch.autograd.grad(loss.sum(), [lq])
    assert torch.isfinite(grad).all(), f"non-finite d/dlog_q at x={xs[~torch.isfinite(grad).numpy()][:3]}"
    weight = ExactMinimizer(problem).weight(xs, alpha)
    assert np.all(grad.numpy()[weight == 0] == 0)
    if case in ("angularity_running.toml", "soft_collinear_nlo.toml"):
        assert (p < 0).any(), "the test points reach the region where p < 0"
    if case == "cutoff":
        assert (weight == 0).any(), "the test points reach the region where w = 0"


@pytest.mark.parametrize("f", ["log", "linear", "sqrt(q)"])
def test_zero_weight_hides_singular_points(f: str):
    # where w = 0 the integrand is 0 even if f(p) is infinite there (p = 0 for log, p = ∞ at
    # x = 0): the double where keeps 0·∞ out of the value and of the gradient
    problem = make_problem(name="cut_" + f[:4], density="4*(x - 1/4)*(1 + alpha) + alpha/x", f=f, weight="Heaviside(x - 1/2)/2")
    kernels = codegen.load(problem)
    x = np.array([0.0, 0.25, 0.3, 0.6, 0.9])
    alpha = np.full_like(x, 0.2)
    p = ExactMinimizer(problem).p(x, alpha)
    assert np.isinf(p[0])
    log_q = np.array([0.0, -1.0, 0.5, float(np.log(p[3])), 0.3])
    lq = tensor(log_q, grad=True)
    loss = kernels.loss_density(lq, tensor(x), tensor(alpha))
    np.testing.assert_array_equal(loss.detach().numpy()[:3], 0.0)
    np.testing.assert_allclose(loss.detach().numpy(), ExactMinimizer(problem).loss_density(x, alpha, log_q), rtol=1e-13)
    (grad,) = torch.autograd.grad(loss.sum(), [lq])
    assert torch.isfinite(grad).all() and (grad[:3] == 0).all(), grad


def test_piecewise_gradients_are_not_nan():
    # SymPy's own printer gives NaN here: the untaken sqrt(x - 1/5) at x < 1/5
    kernels = codegen.load(problem_for("piecewise"))
    x = tensor([0.05, 0.1, 0.19, 0.21, 0.5, 0.9], grad=True)
    (grad,) = torch.autograd.grad(kernels.p(x, 0.2).sum(), [x])
    expected = [0.2 / v if v < 0.2 else 0.2 * 0.5 / math.sqrt(v - 0.2) for v in x.tolist()]
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-14)


# dtype, device and shapes -------------------------------------------------------------------
class _Dtypes(TorchDispatchMode):
    r"""Records the dtypes of every tensor that torch operations create."""

    def __init__(self):
        super().__init__()
        self.seen: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.seen.add(t.dtype)
        return out


@pytest.mark.parametrize("case", CASES)
def test_float32_and_broadcasting(case: str):
    problem = problem_for(case)
    kernels = codegen.load(problem)
    x64, alpha64 = _bulk(problem, 8)
    x = torch.tensor(x64, dtype=torch.float32).reshape(-1, 1)
    alpha = torch.tensor(alpha64[:5], dtype=torch.float32).reshape(1, -1)
    log_q = torch.zeros(1, 1, dtype=torch.float32)
    calls = {
        "p": lambda *t: kernels.p(t[0], t[1]),
        "weight": lambda *t: kernels.weight(t[0], t[1]),
        "q_exact": lambda *t: kernels.q_exact(t[0], t[1], 0.1),
        "loss_density": lambda *t: kernels.loss_density(t[2], t[0], t[1]),
    }
    for name, call in calls.items():
        single, double = call(x, alpha, log_q), call(x.double(), alpha.double(), log_q.double())
        assert single.dtype == torch.float32 and single.shape == (8, 5), name
        assert double.dtype == torch.float64 and double.shape == (8, 5), name
        np.testing.assert_allclose(single.numpy(), double.numpy(), rtol=2e-4, atol=1e-6, err_msg=name)
    log_p = kernels.log_p(x, alpha)
    assert log_p.dtype == torch.complex64 and log_p.shape == (8, 5)
    assert all(c.dtype == torch.float32 and c.shape == x.shape for c in kernels.p_coefficients(x))

    # the kernels' own arithmetic never creates float64 (renorm.runtime.special computes in
    # float64 on purpose and rounds once, so problems that call it are left out)
    with _Dtypes() as mode:
        kernels.p(x, alpha), kernels.log_p(x, alpha), kernels.weight(x, alpha), kernels.p_coefficients(x), kernels.loss_density(log_q, x, alpha)
    if not (problem.density.has(sp.LambertW, sp.polylog, sp.gamma) or problem.weight.has(sp.LambertW, sp.polylog, sp.gamma)):
        assert torch.float64 not in mode.seen and torch.float32 in mode.seen, mode.seen


def test_device_is_kept():
    kernels = codegen.load(problem_for("angularity_running.toml"))
    x = torch.rand(4, 1, device="meta", dtype=torch.float64)
    alpha = torch.rand(1, 3, device="meta", dtype=torch.float64)
    for value in (kernels.p(x, alpha), kernels.weight(x, alpha), kernels.log_p(x, alpha), kernels.loss_density(x, x, alpha)):
        assert value.device.type == "meta" and value.shape == (4, 3)


def test_module_constants():
    problem = problem_for("angularity_lo.toml")
    kernels = codegen.load(problem)
    assert kernels.ORDER == 1 and kernels.SUPPORT == (0.0, 0.5) and kernels.F == "log"
    assert kernels.SPEC_SHA256 == problem.sha256 and kernels.NAME == "angularity_lo"
    custom = codegen.load(problem_for("custom_sqrt"))
    assert custom.F == "sqrt(q)"
    infinite = codegen.load(make_problem(name="tail", density="exp(-x)*(1 + alpha*(x - 1))", support=("0", "oo"), singular="none"))
    assert infinite.SUPPORT == (0.0, math.inf)


def test_q_exact_is_none_without_closed_form():
    # f = q + log q: sympy solves (f(q) - f(p)) f'(q) = -λC² only implicitly
    problem = make_problem(name="implicit", density="2*x + alpha*(1 - x)", f="q + log(q)")
    if exact_minimizer(problem) is not None:
        pytest.skip("SymPy found a closed form for this f")
    kernels = codegen.load(problem)
    assert kernels.q_exact is None
    x = np.linspace(0.01, 0.99, 50)
    log_q = np.linspace(-2.0, 1.0, 50)
    np.testing.assert_allclose(kernels.loss_density(tensor(log_q), tensor(x), 0.2).numpy(),
                               ExactMinimizer(problem).loss_density(x, 0.2, log_q), rtol=1e-12, atol=1e-15)


# determinism, caching, the function table -----------------------------------------------------
def test_generation_is_byte_identical_across_hash_seeds():
    sources = {spec.name: codegen.generate(load_spec(spec)) for spec in SPECS}
    assert sources == {spec.name: codegen.generate(load_spec(spec)) for spec in SPECS}
    seed = "2" if os.environ.get("PYTHONHASHSEED") == "1" else "1"
    script = ("import hashlib, json, sys; from pathlib import Path; from renorm.codegen import generate; "
              "from renorm.symbolic import load_spec; "
              "print(json.dumps({Path(s).name: hashlib.sha256(generate(load_spec(s)).encode()).hexdigest() for s in sys.argv[1:]}))")
    result = subprocess.run([sys.executable, "-c", script, *map(str, SPECS)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONHASHSEED": seed}, check=True)
    assert json.loads(result.stdout) == {name: hashlib.sha256(text.encode()).hexdigest() for name, text in sources.items()}


def test_load_caches_in_memory_and_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RENORM_CACHE", str(tmp_path))
    problem = make_problem(name="cache-me", density="2*x + alpha*(1 - 2*x)", f="linear")
    first = codegen.load(problem)
    assert codegen.load(problem) is first
    files = list((tmp_path / "codegen").glob("*.py"))
    assert len(files) == 1 and files[0].read_text() == codegen.generate(problem)
    assert not [f for f in (tmp_path / "codegen").iterdir() if f.suffix != ".py"], "no temporary files left"


def test_register_function_extends_the_table(tmp_path: Path):
    mystery = sp.Function("mystery")
    x, alpha = sp.symbols("x alpha", positive=True)
    problem = make_problem(name="registered", density=1 + alpha * mystery(x), support=(0, 1))
    with pytest.raises(codegen.CodegenError, match=r"unsupported function 'mystery' \(sympy class mystery\).*renorm\.symbolic\.register_function"):
        codegen.generate(problem)
    try:
        register_function(SpecialFunction("mystery", mystery, torch="torch.special.i0"))
        kernels = codegen.load(problem)
        xt = tensor([0.1, 0.5, 0.9])
        np.testing.assert_allclose(kernels.p(xt, 0.2).numpy(), [1 + 0.2 * float(mpmath.besseli(0, v)) for v in (0.1, 0.5, 0.9)], rtol=1e-12)
    finally:
        unregister_function("mystery")
    with pytest.raises(codegen.CodegenError, match="unsupported function 'mystery'"):
        codegen.generate(problem)
    with pytest.raises(SpecError, match="dotted path"):
        register_function(SpecialFunction("mystery", mystery, torch="torch.no such function"))


def test_unsupported_structures_fail_with_their_class():
    x = sp.Symbol("x", positive=True)
    for density, name in [("alpha*DiracDelta(x - 1/2) + 1", "DiracDelta"), ("alpha*zeta(x + 2) + 1", "zeta"), ("alpha*polylog(3, x) + 1", "polylog")]:
        namespace = {"DiracDelta": sp.DiracDelta, "zeta": sp.zeta, "polylog": sp.polylog, "x": x, "alpha": sp.Symbol("alpha", positive=True)}
        problem = make_problem(name="bad", density=sp.sympify(density, locals=namespace), support=(0, 1))
        with pytest.raises(codegen.CodegenError, match=name) as error:
            codegen.generate(problem)
        assert "\n" not in str(error.value)


# the command line ---------------------------------------------------------------------------
MYSTERY_SPEC = '''
import sympy
from renorm.symbolic import make_problem

x, alpha = sympy.symbols("x alpha", positive=True)
mystery = sympy.Function("mystery")
problem = make_problem(name="m", density=alpha * mystery(x) / x, support=(0, 1))
'''


def test_cli_unsupported_function(tmp_path: Path, capsys: pytest.CaptureFixture):
    spec = tmp_path / "mystery.py"
    spec.write_text(MYSTERY_SPEC)
    out = tmp_path / "out.py"
    assert main([str(spec), "-o", str(out)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("renorm-codegen: error:") and "'mystery'" in lines[0]
    assert captured.out == ""
    assert list(tmp_path.iterdir()) == [spec], "nothing written"


def test_cli_process_reports_one_line(tmp_path: Path):
    # the real process: nothing else (warnings, tracebacks) may reach stderr
    spec = tmp_path / "mystery.py"
    spec.write_text(MYSTERY_SPEC)
    out = tmp_path / "out.py"
    result = subprocess.run([sys.executable, "-m", "renorm.codegen._cli", str(spec), "-o", str(out)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("renorm-codegen: error: unsupported function 'mystery'")
    assert result.stdout == "" and not out.exists()


def test_cli_writes_checks_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture):
    spec = ROOT / "examples" / "angularity_lo.toml"
    out = tmp_path / "kernels.py"
    assert main([str(spec)]) == 0
    printed = capsys.readouterr().out
    assert main([str(spec), "-o", str(out)]) == 0
    assert out.read_text() == printed == codegen.generate(load_spec(spec))
    assert list(tmp_path.iterdir()) == [out]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask, "the atomic write keeps the usual permissions"

    assert main([str(spec), "-o", str(out), "--check"]) == 0
    out.write_text(printed.replace("ORDER = 1", "ORDER = 2"))
    capsys.readouterr()
    assert main([str(spec), "-o", str(out), "--check"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stale" in err[0]
    assert main([str(spec), "-o", str(tmp_path / "missing.py"), "--check"]) == 1

    for argv in ([str(tmp_path / "nope.toml")], [str(spec), "--check"], [], [str(spec), "-o", str(tmp_path / "no" / "dir.py")]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("renorm-codegen: error:"), (argv, err)
    bad = tmp_path / "bad.toml"
    bad.write_text('[target]\ndensity = "alpha*unknown(x)"\n')
    assert main([str(bad), "-o", str(tmp_path / "never.py")]) == 2
    assert "unknown" in capsys.readouterr().err
    assert not (tmp_path / "never.py").exists()


def test_generated_file_imports_standalone(tmp_path: Path):
    # the file the CLI writes is an ordinary module: import it by path and run it
    out = tmp_path / "angularity.py"
    assert main([str(ROOT / "examples" / "angularity_lo.toml"), "-o", str(out)]) == 0
    import importlib.util

    spec = importlib.util.spec_from_file_location("angularity_kernels", out)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = tensor([0.01, 0.1, 0.3])
    np.testing.assert_allclose(module.p(x, 0.1).numpy(), ExactMinimizer(load_spec(ROOT / "examples" / "angularity_lo.toml")).p(x.numpy(), 0.1), rtol=1e-14)


# torch.compile and SymPy's own torch printer ----------------------------------------------------
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_compiled_loss_agrees_with_eager():
    kernels = codegen.load(problem_for("angularity_running.toml"))
    compiled = codegen.compile_loss(kernels)
    rng = np.random.default_rng(5)
    x = tensor(rng.uniform(1e-6, 0.5, 512))
    alpha = tensor(rng.uniform(0.05, 0.3, 512))
    log_q = tensor(rng.normal(0.0, 2.0, 512))
    eager = kernels.loss_density(log_q, x, alpha)
    torch.testing.assert_close(compiled(log_q, x, alpha), eager, rtol=1e-12, atol=1e-14)


def test_sympy_lambdify_torch_cannot_print_the_loss():
    # the reason this package exists (DESIGN §3): SymPy 1.14's torch printer refuses LambertW,
    # and its Piecewise has NaN gradients in the untaken branch
    problem = problem_for("angularity_lo.toml")
    q = exact_minimizer(problem)
    try:
        sp.lambdify((problem.x, problem.coupling, LAMBDA), q, modules="torch")
    except Exception as error:  # SymPy's strict printer refuses what it cannot print
        assert "LambertW" in str(error)
    else:
        pytest.skip("this SymPy version prints LambertW for torch")

    x = sp.Symbol("x", positive=True)
    naive = sp.lambdify(x, sp.Piecewise((sp.sqrt(x - sp.Rational(1, 5)), x > sp.Rational(1, 5)), (0, True)), modules="torch")
    point = tensor([0.1], grad=True)
    (grad,) = torch.autograd.grad(naive(point).sum(), [point])
    assert torch.isnan(grad).all()
