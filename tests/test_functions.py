r"""Every function a spec may call evaluates in every layer it reaches, or is refused when parsed.

For each name in :data:`renorm.symbolic.FUNCTIONS` a target uses it with the variable in its
argument; its NumPy evaluation (``renorm.symbolic.numeric``, used by the exact solutions) and its
generated torch kernel (``renorm.codegen.load``, used in training) are compared with mpmath at
30 digits.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp
import torch

from renorm import codegen
from renorm.symbolic import FUNCTIONS, SpecError, make_problem, numeric

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
    assert set(USES) == set(FUNCTIONS)


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
