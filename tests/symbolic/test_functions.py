r"""Every function a spec may call evaluates in every layer it reaches, or is refused when parsed.

For each name in :data:`renorm.symbolic.SPECIAL_FUNCTIONS` a target uses it with the variable in its
argument; its NumPy evaluation (``renorm.symbolic.numeric``, used by the exact solutions) and its
generated torch kernel (``renorm.codegen.load``, used in training) are compared with mpmath at
30 digits. A function registered with :func:`renorm.symbolic.register_function` reaches every
layer from that one record.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special
import sympy as sp
import torch

from renorm import codegen
from renorm.codegen._printer import fingerprint
from renorm.symbolic import (
    SPECIAL_FUNCTIONS, SpecError, SpecialFunction, make_problem, numeric, register_function, solve, unregister_function,
)

#: One use of every admitted function, with the variable in its argument, on x in (0, 1).
USES = {
    "log": "log(1 + x)", "ln": "ln(2 + x, 3)", "exp": "exp(-x)", "sqrt": "sqrt(1 + x)", "cbrt": "cbrt(1 + x)",
    "root": "root(1 + x, 5)", "sin": "sin(3*x)", "cos": "cos(3*x)", "tan": "tan(x)", "asin": "asin(x/2)",
    "acos": "acos(x/2)", "atan": "atan(2*x)", "atan2": "atan2(x, 1 - x)", "sinh": "sinh(x)", "cosh": "cosh(x)",
    "tanh": "tanh(2*x)", "asinh": "asinh(x)", "acosh": "acosh(1 + x)", "atanh": "atanh(x/2)",
    "Abs": "Abs(x - 1/2)", "abs": "abs(1/3 - x)", "sign": "sign(x - 1/2)", "Max": "Max(x, 1/2, x**2)",
    "Min": "Min(x, 1/2)", "Heaviside": "Heaviside(x - 1/2) + Heaviside(x - 1/4, 1)",
    "Piecewise": "Piecewise((x, x < 1/2), (1 - x, True))", "LambertW": "LambertW(3*x) + LambertW(-x/4, 0)",
    "polylog": "polylog(2, x) + polylog(1, x/2)", "zeta": "zeta(3)*x", "gamma": "gamma(1/2 + x)",
    "loggamma": "loggamma(1/2 + x)", "erf": "erf(x)", "erfc": "erfc(2*x)",
}
#: Forms the layers do not implement: refused when the spec is read, naming the reason.
REFUSED = {
    "polylog(3, x)": "implemented for s = 1 and 2 only",
    "polylog(x, 1/2)": "must be a number",
    "zeta(1 + x)": "zeta takes a number",
    "LambertW(-x/4, -1)": "principal branch",
    "Heaviside(x - 1/2, x)": "value at zero",
    "root(x, 3, 1)": "takes 2 argument",
    "exp(x, 2)": "takes 1 argument",
}
POINTS = np.array([0.013, 0.1, 0.27, 0.4, 0.6, 0.75, 0.91, 0.997])


def _mp_heaviside(x, h0=mpmath.mpf(0.5)):
    return mpmath.mpf(1) if x > 0 else (mpmath.mpf(h0) if x == 0 else mpmath.mpf(0))


def test_every_function_has_a_case():
    assert set(USES) == set(SPECIAL_FUNCTIONS)


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RENORM_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("name", sorted(USES))
def test_function_evaluates_in_numpy_torch_and_mpmath(name: str):
    problem = make_problem(name=f"fn-{name}", density=f"1 + alpha*({USES[name]})", support=("0", "1"), singular="none")
    x, alpha = problem.x, problem.coupling
    reference = sp.lambdify((x, alpha), problem.density, modules=[{"Heaviside": _mp_heaviside}, "mpmath"])
    with mpmath.workdps(30):
        expected = np.array([float(mpmath.re(reference(mpmath.mpf(float(v)), mpmath.mpf("0.25")))) for v in POINTS])
    assert np.isfinite(expected).all()
    values = np.asarray(numeric(problem.density, (x, alpha))(POINTS, 0.25), dtype=float)
    np.testing.assert_allclose(values, expected, rtol=1e-12, atol=0)
    kernels = codegen.load(problem)
    torch_values = kernels.p(torch.tensor(POINTS, dtype=torch.float64), 0.25).numpy()
    np.testing.assert_allclose(torch_values, expected, rtol=1e-12, atol=0)
    float32 = kernels.p(torch.tensor(POINTS, dtype=torch.float32), 0.25)
    assert float32.dtype == torch.float32
    np.testing.assert_allclose(float32.numpy(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("use", sorted(REFUSED))
def test_unimplemented_forms_are_refused_when_parsed(use: str):
    with pytest.raises(SpecError, match=REFUSED[use].replace("(", r"\(")):
        make_problem(name="refused", density=f"1 + alpha*({use})", support=("0", "1"), singular="none")


def _besseli_check(order: sp.Expr, z: sp.Expr) -> str | None:
    return None if order == 0 else "besseli(n, z) is implemented for n = 0 only"


def _besseli_torch(order: sp.Expr, z: sp.Expr) -> tuple[sp.Expr]:
    return (z,)  # torch.special.i0 takes z alone; the check admitted n = 0 only


#: A function no layer knows until it is registered: I_0 through SymPy's besseli(n, z).
BESSELI = SpecialFunction("besseli", sp.besseli, arity=(2,), numpy=scipy.special.iv, torch="torch.special.i0",
                          check=_besseli_check, torch_arguments=_besseli_torch)


@pytest.fixture
def besseli():
    register_function(BESSELI)
    try:
        yield BESSELI
    finally:
        unregister_function("besseli")
    assert "besseli" not in SPECIAL_FUNCTIONS


def test_a_registered_function_works_in_specs_solve_and_the_kernels(besseli):
    density = "1 + alpha*(besseli(0, 2*x) - 1)"
    problem = make_problem(name="fn-registered", density=density, support=("0", "1"), singular="none", f="linear")
    x, alpha = problem.x, problem.coupling
    assert problem.density == 1 + alpha * (sp.besseli(0, 2 * x) - 1)
    with mpmath.workdps(30):
        g = lambda v: mpmath.besseli(0, 2 * v) - 1
        lam = 0.25 * mpmath.quad(g, [0, 1])  # f = linear, C = 1: q = p - λ with ∫q = 1
        expected = np.array([float(1 + mpmath.mpf("0.25") * g(mpmath.mpf(float(v)))) for v in POINTS])
        lam = float(lam)
    # NumPy (the exact solutions)
    np.testing.assert_allclose(numeric(problem.density, (x, alpha))(POINTS, 0.25), expected, rtol=1e-13, atol=0)
    (solution,) = solve(problem, [0.25])
    assert solution.lagrange_multiplier == pytest.approx(lam, rel=1e-10)
    np.testing.assert_allclose(solution.q(POINTS), expected - lam, rtol=1e-10, atol=0)
    # the generated torch kernels (training), with a gradient through the loss
    kernels = codegen.load(problem)
    xt = torch.tensor(POINTS, dtype=torch.float64)
    np.testing.assert_allclose(kernels.p(xt, 0.25).numpy(), expected, rtol=1e-13, atol=0)
    np.testing.assert_allclose(kernels.q_exact(xt, 0.25, lam).numpy(), expected - lam, rtol=1e-13, atol=0)
    log_q = torch.log(torch.tensor(expected - lam)).requires_grad_()
    loss = kernels.loss_density(log_q, xt, 0.25)  # w |q - p|² with w = 1/2 and q - p = -λ
    loss.sum().backward()
    np.testing.assert_allclose(loss.detach().numpy(), np.full(POINTS.shape, lam**2 / 2), rtol=1e-10, atol=0)
    np.testing.assert_allclose(log_q.grad.numpy(), -lam * (expected - lam), rtol=1e-10, atol=0)
    # the record's constraints are the parser's
    with pytest.raises(SpecError, match="n = 0 only"):
        make_problem(name="refused", density="1 + alpha*besseli(1, x)", support=("0", "1"), singular="none")
    with pytest.raises(SpecError, match="takes 2 argument"):
        make_problem(name="refused", density="1 + alpha*besseli(x)", support=("0", "1"), singular="none")


def test_the_kernel_cache_key_follows_the_table():
    before = fingerprint()
    register_function(BESSELI)
    try:
        assert fingerprint() != before
    finally:
        unregister_function("besseli")
    assert fingerprint() == before


def test_unregistered_functions_are_unknown_again(besseli):
    unregister_function("besseli")
    with pytest.raises(SpecError, match="unknown function 'besseli'"):
        make_problem(name="gone", density="1 + alpha*besseli(0, x)", support=("0", "1"), singular="none")
    register_function(BESSELI)  # for the fixture to remove


@pytest.mark.parametrize("record, message", [
    (SpecialFunction("log", sp.log), "registered already"),
    (SpecialFunction("pi", sp.besseli, arity=(2,)), "not a usable function name"),
    (SpecialFunction("_hidden", sp.besseli, arity=(2,)), "not a usable function name"),
    (SpecialFunction("besseli", sp.besseli, arity=()), "arity"),
    (SpecialFunction("besseli", sp.besseli, torch="torch special i0"), "dotted path"),
    (SpecialFunction("besseli", sp.besseli, torch="torch.special.i0", safe=float("nan")), "finite number"),
    (SpecialFunction("besselj", lambda n, z: sp.besselj(n, z), numpy=scipy.special.jv), "SymPy function class"),
    (SpecialFunction("logarithm", sp.log, torch="torch.log"), "evaluated by 'log' already"),
])
def test_malformed_records_are_refused(record: SpecialFunction, message: str):
    before = dict(SPECIAL_FUNCTIONS)
    with pytest.raises(SpecError, match=message):
        register_function(record)
    assert dict(SPECIAL_FUNCTIONS) == before


def test_built_in_functions_cannot_be_removed():
    with pytest.raises(SpecError, match="built in"):
        unregister_function("log")
    with pytest.raises(SpecError, match="no function named 'ln'"):
        unregister_function("ln")


def test_a_misspelt_torch_target_is_refused_in_one_line_when_loaded():
    import sympy

    from renorm.codegen import CodegenError, load
    from renorm.symbolic import SpecialFunction, make_problem, register_function, unregister_function

    register_function(SpecialFunction("erfinv", sympy.erfinv, numpy=scipy.special.erfinv, torch="torch.special.erfinvv"))
    try:
        problem = make_problem(name="misspelt", density="1 + alpha*erfinv(x/2)", support=("0", "1"), singular="none")
        with pytest.raises(CodegenError, match="the torch target 'torch.special.erfinvv' does not exist"):
            load(problem)
    finally:
        unregister_function("erfinv")
