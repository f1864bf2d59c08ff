r"""Generated kernels in two variables, run and compared with mpmath and the NumPy minimizer."""

from __future__ import annotations

from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
import sympy as sp
import torch

from renorm import codegen
from renorm.symbolic import MultiMinimizer, load_spec, make_multi_problem

SPECS = sorted((Path(__file__).resolve().parents[2] / "examples" / "multi").glob("*.toml"))


def _points(problem) -> tuple[np.ndarray, np.ndarray]:
    r"""Points of the region from its bulk down to 1e-150 of the singular corner (where x1**2 is still a float64)."""
    x1 = np.concatenate([np.logspace(-150, -1, 12), [0.2, 0.5, 0.9]])
    lo, hi = problem.inner_interval(x1)
    t = np.array([1e-12, 1e-3, 0.3, 0.9])
    # geometric between the bounds where the lower one is positive, linear from 0 otherwise
    x2 = np.where(lo[:, None] > 0, lo[:, None] * (hi[:, None] / np.where(lo > 0, lo, 1)[:, None]) ** t[None, :], hi[:, None] * t[None, :])
    x1 = np.broadcast_to(x1[:, None], x2.shape)
    keep = problem.contains(x1, x2)
    return x1[keep], x2[keep]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_kernels_match_mpmath_and_the_numpy_minimizer(spec):
    problem = load_spec(spec)
    kernels = codegen.load(problem)
    assert kernels.VARIABLES == tuple(v.name for v in problem.variables) and kernels.SINGULAR == problem.singular
    x1, x2 = _points(problem)
    t1, t2 = torch.tensor(x1, dtype=torch.float64), torch.tensor(x2, dtype=torch.float64)
    alpha = 0.118
    exact = sp.lambdify((*problem.variables, problem.coupling), sp.log(problem.density), "mpmath")
    with mp.workdps(40):
        reference = np.array([float(mp.re(exact(mp.mpf(a), mp.mpf(b), mp.mpf(alpha)))) for a, b in zip(x1, x2)])
    log_p = kernels.log_p(t1, t2, alpha)
    assert np.allclose(log_p.real.numpy(), reference, rtol=1e-13, atol=1e-12) and (log_p.imag == 0).all()
    finite = np.abs(reference) < 700
    assert np.allclose(kernels.p(t1, t2, alpha).numpy()[finite], np.exp(reference[finite]), rtol=1e-12)
    minimizer = MultiMinimizer(problem)
    solution = minimizer.solve(alpha, loss=False)
    q = kernels.q_exact(t1, t2, alpha, solution.lagrange_multiplier).numpy()
    assert np.allclose(q[finite], solution.q(x1, x2)[finite], rtol=1e-12)
    log_q = torch.tensor(minimizer.log_q(x1, x2, alpha, solution.lagrange_multiplier))
    loss = kernels.loss_density(log_q, t1, t2, alpha).numpy()
    # (log q - log p)^2 where it is 1e-11 carries the rounding of log q - log p at |log p| ~ 10: atol 1e-19
    assert np.isfinite(loss).all()
    assert np.allclose(loss, minimizer.loss_density(x1, x2, alpha, log_q.numpy()), rtol=1e-11, atol=1e-19)
    lo, hi = kernels.inner_interval(t1)
    expected = problem.inner_interval(x1)
    assert np.array_equal(lo.numpy(), expected[0]) and np.array_equal(hi.numpy(), expected[1])
    coefficients = kernels.p_coefficients(t1, t2)
    first = sp.lambdify(problem.variables, sp.diff(problem.density, problem.coupling).subs(problem.coupling, 0))
    assert coefficients[0].shape == t1.shape and not coefficients[0].any()
    with np.errstate(all="ignore"):
        expected_first = first(x1, x2)
    assert np.allclose(coefficients[1].numpy()[finite], expected_first[finite], rtol=1e-12)


def test_float32_log_p_stays_finite_where_p_overflows():
    problem = load_spec(SPECS[0])
    assert problem.name == "angularity_pair"
    kernels = codegen.load(problem)
    # l2 = l1^1.5 between l1^2 and l1: p ~ 1/(l1 l2) overflows float32 at the second point
    x1 = torch.tensor([1e-15, 1e-18], dtype=torch.float32)
    x2 = x1**1.5
    log_p = kernels.log_p(x1, x2, 0.1)
    assert log_p.dtype == torch.complex64 and torch.isfinite(log_p.real).all() and torch.isinf(kernels.p(x1, x2, 0.1)).any()


def test_generation_is_deterministic_and_the_box_has_an_interval_kernel():
    problem = make_multi_problem(name="box", density="1 + alpha*u*v", x=["u", "v"], support=[["0", "2"], ["-1", "oo"]], singular="none", f="linear")
    text = codegen.generate(problem)
    assert text == codegen.generate(problem)
    kernels = codegen.load(problem)
    assert kernels.SUPPORT == ((0.0, 2.0), (-1.0, float("inf")))
    lo, hi = kernels.inner_interval(torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert lo.tolist() == [-1.0, -1.0] and hi.tolist() == [float("inf")] * 2
    assert kernels.q_exact(torch.tensor([1.0]), torch.tensor([2.0]), 0.2, 0.05).item() == pytest.approx(1 + 0.4 - 0.05)
