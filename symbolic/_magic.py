r"""The magic kernel :math:`C_q` for which a chosen :math:`q` is the exact minimizer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import sympy as sp

from ._errors import RenormError
from ._matching import matching_function
from ._numeric import numeric
from ._solve import ExactMinimizer
from ._spec import Problem, parse_expression

__all__ = ["MagicC", "MagicCheck", "magic_c", "parse_target"]


@dataclass(frozen=True)
class MagicCheck:
    r"""Numbers that confirm :math:`C_q` at one coupling.

    Attributes:
        alpha: The coupling.
        normalization: :math:`\int q\,dx` (a target must be normalized).
        loss: :math:`L[q]` with the kernel :math:`C_q`.
        kl_divergence: :math:`D = \int q \log(q/p)` (``f = log`` only; then :math:`L = -\lambda D/2`).
        lagrange_multiplier: λ found by minimizing with :math:`C_q` (should be the sign convention's ±1).
        max_relative_error: :math:`\max |q^* - q|/q` over interior points for that minimizer.
    """

    alpha: float
    normalization: float
    loss: float
    kl_divergence: float | None
    lagrange_multiplier: float
    max_relative_error: float


@dataclass(frozen=True)
class MagicC:
    r"""The magic kernel of a target :math:`q`.

    Solving the Euler–Lagrange condition :math:`(f(q) - f(p)) f'(q) = -\lambda C^2` for
    :math:`C` with :math:`\lambda = \pm 1` (C is defined up to a constant) gives
    :math:`C_q^2 = \mp (f(q) - f(p)) f'(q)`, which must keep one sign on the support. For
    ``f = log``, :math:`1/(2C_q^2) = q / (2\log(p/q))` and :math:`L[q] = -\tfrac{\lambda}{2}\int q\log(q/p)`,
    the (generalized) KL divergence of the talk.

    Attributes:
        target: :math:`q(x|\alpha)`.
        C_squared: :math:`C_q^2`.
        weight: :math:`1/(2C_q^2)`.
        lagrange_multiplier: The sign convention, +1 (q below p) or -1 (q above p).
        problem: The original problem with its kernel replaced by :math:`C_q`.
    """

    target: sp.Expr
    C_squared: sp.Expr
    weight: sp.Expr
    lagrange_multiplier: int
    problem: Problem

    @property
    def C(self) -> sp.Expr:
        return sp.sqrt(self.C_squared)

    def check(self, alpha: float) -> MagicCheck:
        r"""Normalization, loss, KL identity and the round trip (minimizing with :math:`C_q`) at one α."""
        problem = self.problem
        minimizer = ExactMinimizer(problem)
        target = numeric(self.target, (problem.x, problem.coupling))
        log_target = numeric(sp.expand_log(sp.log(self.target)), (problem.x, problem.coupling))
        q = lambda x: np.asarray(target(x, alpha), dtype=float)
        log_q = lambda x: np.asarray(log_target(x, alpha), dtype=float)
        normalization = minimizer.integral(q)
        loss = minimizer.loss(alpha, log_q=log_q)
        kl = None
        if minimizer.matching.kl_identity:
            kl = minimizer.integral(lambda x: np.where(q(x) == 0, 0.0, q(x) * (log_q(x) - np.log(np.abs(minimizer.p(x, alpha))))))
        solution = minimizer.solve(alpha, guess=1.0)
        x = problem.interior_points(200)
        with np.errstate(all="ignore"):
            reference = q(x)
            error = np.abs(solution.q(x) - reference) / reference
        error = float(np.max(error[reference > 1e-280]))
        return MagicCheck(alpha, normalization, loss, kl, solution.lagrange_multiplier, error)


def parse_target(problem: Problem, text: str) -> sp.Expr:
    r"""Parses a target :math:`q(x|\alpha)` written with the problem's names and constants."""
    names = {**problem.constants, problem.x.name: problem.x, problem.coupling.name: problem.coupling}
    expr = parse_expression(text, names, "--q")
    extra = expr.free_symbols - {problem.x, problem.coupling}
    if extra:
        raise RenormError(f"--q: unknown name {sorted(map(str, extra))[0]!r} in {text!r}")
    return expr


def magic_c(problem: Problem, target: sp.Expr) -> MagicC:
    r"""The magic kernel :math:`C_q` for the target ``q`` (see :class:`MagicC`).

    Raises:
        RenormError: If :math:`(f(q) - f(p)) f'(q)` changes sign on the support at some α in the
            problem's range: then no real kernel makes ``q`` the minimizer.
    """
    q = problem.q
    condition = (problem.f.subs(q, target) - problem.f.subs(q, problem.density)) * sp.diff(problem.f, q).subs(q, target)
    # sign check on a grid of the support and coupling range, with the principal-branch real part
    x = problem.interior_points(200)[:, None]
    alphas = np.linspace(*problem.coupling_range, 7)[None, :]
    f = numeric(problem.f, (q,))
    fprime = numeric(sp.diff(problem.f, q), (q,))
    qv = np.asarray(numeric(target, (problem.x, problem.coupling))(x, alphas), dtype=complex)
    pv = np.asarray(numeric(problem.density, (problem.x, problem.coupling))(x, alphas), dtype=complex)
    with np.errstate(all="ignore"):
        values = np.real((f(qv) - f(pv)) * fprime(qv))
    name = problem.x.name
    bad = (np.real(qv) < 0) | ~np.isfinite(qv)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise RenormError(f"--q: the target is negative or not finite at {name}={x[i, 0]:.6g}, alpha={alphas[0, j]:.6g}")
    # where q underflows to 0 (far tails) the condition has no float64 value: those points say nothing
    resolved = np.isfinite(values) & (np.real(qv) > 0)
    negative, positive = (values < 0) & resolved, (values > 0) & resolved
    if negative.any() and positive.any():
        i, j = np.argwhere(negative)[0]
        k, m = np.argwhere(positive)[0]
        raise RenormError(
            f"--q cannot be reached with a real kernel: (f(q) - f(p)) f'(q) is negative at {name}={x[i, 0]:.6g}, alpha={alphas[0, j]:.6g} "
            f"but positive at {name}={x[k, 0]:.6g}, alpha={alphas[0, m]:.6g} (q crosses p)")
    minimizer = ExactMinimizer(problem)
    q_fn = numeric(target, (problem.x, problem.coupling))
    for alpha in sorted({*problem.coupling_range, float(np.sqrt(np.prod(problem.coupling_range)))}):
        total = minimizer.integral(lambda xs: np.asarray(q_fn(xs, alpha), dtype=float))
        if not abs(total - 1.0) <= 1e-8:
            raise RenormError(f"--q is not normalized: its integral over the support is {total:.10g} at alpha={alpha:g}; "
                              "a minimizer of the loss is a normalized density, so only a normalized q has a magic kernel")
    sign = 1 if negative.any() else -1
    matching = matching_function(problem)
    if sign < 0 and not matching.negative_multiplier:
        raise RenormError(
            f"--q lies above p wherever they differ, so its kernel would need λ < 0; with f = {matching.kind} the loss then has no "
            "minimizer (a narrow spike of probability costs arbitrarily little), so no kernel makes q the minimizer")
    c_squared = matching.simplify_kernel(-sign * condition)
    weight = 1 / (2 * c_squared)
    replaced = dataclasses.replace(problem, weight=weight)
    return MagicC(target, c_squared, weight, sign, replaced)
