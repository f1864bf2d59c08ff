r"""The matching functions :math:`f`: one object per kind, holding all that the kind changes in the exact minimizer and its loss."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, ClassVar

import numpy as np
import sympy as sp

from ._budget import within
from ._errors import RenormError
from ._functions import lambertw
from ._numeric import numeric
from ._spec import LIMITS, Problem

__all__ = ["LAMBDA", "LossKernel", "MatchingFunction", "MATCHING", "matching_function"]

#: The Lagrange multiplier's symbol in closed forms.
LAMBDA = sp.Symbol("lambda", real=True)

_BISECTIONS = 90

#: :math:`\log|p|` at the points being evaluated, computed only when called (it is costly where p overflows).
LogAbs = Callable[[], np.ndarray]


@dataclass(frozen=True)
class LossKernel:
    r"""What the generated ``loss_density(log_q, x, alpha)`` computes for one matching function.

    The generator prints :attr:`inputs` as one body (common subexpressions shared), binds
    ``w``, then writes :attr:`statements` with each ``{name}`` replaced by the printed input of
    that name; where there are :attr:`complex_inputs` it prints them as a second body in which
    the complex :math:`p` is the variable :attr:`complex_argument`, then writes
    :attr:`complex_statements`. Where w is not constant it sets :attr:`safe` and w to 0 where
    ``w == 0`` or :attr:`exact` holds (the double where, so no 0 · ∞ reaches a value or a
    gradient), writes :attr:`phase`, and returns ``w * squared``. Statements are torch code in
    the function's own names (``log_q``, ``x``, ``alpha``); they contain no braces but the
    placeholders.

    Attributes:
        inputs: ``(name, expression)`` pairs in the order they are printed, ``"w"`` the weight.
        statements: The statements after ``w = …``.
        exact: The torch condition under which :math:`f(q) = f(p)` exactly, or ``None`` where it never holds.
        safe: The variables zeroed with w there.
        squared: The torch expression of :math:`|f(q) - f(p)|^2`.
        phase: Statements after the zeroing.
        complex_inputs: ``(name, expression)`` pairs of the complex :math:`p`, checked to have complex torch lowerings.
        complex_argument: The variable the statements bind to the complex :math:`p`.
        complex_statements: The statements after the complex body.
    """

    inputs: tuple[tuple[str, sp.Basic], ...]
    statements: tuple[str, ...]
    exact: str | None
    safe: tuple[str, ...]
    squared: str
    phase: tuple[str, ...] = ()
    complex_inputs: tuple[tuple[str, sp.Basic], ...] = ()
    complex_argument: str | None = None
    complex_statements: tuple[str, ...] = ()


class MatchingFunction(ABC):
    r"""A matching function :math:`f` of a problem: its minimizer, pointwise pieces and loss kernel.

    The Euler–Lagrange condition of :math:`\int w |f(q) - f(p)|^2 + \lambda(\int q - 1)` is
    :math:`(f(q) - \mathrm{Re}\, f(p))\, f'(q) = -\lambda C^2` (the imaginary part of
    :math:`f(p)` only adds a :math:`q`-independent constant). A kind is a subclass entered in
    :data:`MATCHING` under :attr:`kind`; :func:`matching_function` picks it by the problem's
    ``f_kind``.

    The pointwise methods take NumPy arrays of :math:`p` and :math:`C^2` at the same points and
    ``log_abs``, a callable giving :math:`\log|p|` there.

    Arguments:
        problem: The matching problem.
    """

    #: The problem's ``f_kind`` this class implements.
    kind: ClassVar[str]
    #: Whether λ < 0 (∫q_0 < 1: probability to be added) can give a minimizer.
    negative_multiplier: ClassVar[bool] = False
    #: Whether :math:`f(p)` where :math:`p < 0` has a constant imaginary part, so that an unbounded
    #: tail with :math:`p < 0` and :math:`w > 0` makes every loss infinite.
    constant_phase: ClassVar[bool] = False
    #: Whether the loss with a magic kernel is :math:`-\tfrac{\lambda}{2}` times the KL divergence :math:`\int q\log(q/p)`.
    kl_identity: ClassVar[bool] = False
    #: The sentence on where the closed form :meth:`minimizer` holds (generated ``q_exact``).
    validity: ClassVar[str]

    @staticmethod
    def expression(q: sp.Symbol) -> sp.Expr | None:
        r""":math:`f(q)` of a named kind (a spec may write ``f = "<kind>"`` or this expression), or
        ``None`` for a kind that takes the spec's own expression."""
        return None

    def __init__(self, problem: Problem):
        self.problem = problem

    # text -------------------------------------------------------------------------
    @property
    def spec(self) -> str:
        r"""The spec's ``f = "…"``: the kind, or the expression of a custom f."""
        return self.kind

    @property
    def formula(self) -> str:
        r""":math:`f(q)` as written in docstrings."""
        return sp.sstr(self.problem.f)

    # symbolic ---------------------------------------------------------------------
    @abstractmethod
    def minimizer(self) -> sp.Expr | None:
        r"""The closed-form :math:`q_\lambda(x|\alpha)` in :data:`LAMBDA`, or ``None``."""

    def simplify_kernel(self, c_squared: sp.Expr) -> sp.Expr:
        r"""A magic :math:`C_q^2` in the form it is printed and evaluated in."""
        return c_squared

    @abstractmethod
    def loss_kernel(self, log_q: sp.Symbol, complex_p: sp.Symbol, log_abs: sp.Expr, negative: sp.Basic) -> LossKernel:
        r"""The generated loss integrand (see :class:`LossKernel`).

        Arguments:
            log_q: The symbol of the kernel's argument ``log_q``.
            complex_p: The symbol of the complex :math:`p` in :attr:`LossKernel.complex_inputs`.
            log_abs: :math:`\log|p|`, finite where :math:`p` overflows.
            negative: The condition :math:`p < 0`, possibly ``true`` or ``false``.
        """

    # pointwise --------------------------------------------------------------------
    @abstractmethod
    def q(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        r""":math:`q_\lambda`."""

    def deviation(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        r""":math:`q_\lambda - p`, without cancellation where the closed form allows it."""
        return self.q(p, c2, lam, log_abs) - p

    def log_q(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        r""":math:`\log q_\lambda`."""
        with np.errstate(all="ignore"):
            return np.log(self.q(p, c2, lam, log_abs))

    @abstractmethod
    def squared_residual(self, p: np.ndarray, log_q: np.ndarray, log_abs: LogAbs) -> np.ndarray:
        r""":math:`|f(q) - f(p)|^2` at :math:`q = e^{\log q}`, with the principal-branch :math:`f(p)` where :math:`p < 0`."""

    def loss_density(self, p: np.ndarray, w: np.ndarray, log_q: np.ndarray, log_abs: LogAbs) -> np.ndarray:
        r""":math:`w\,|f(q) - f(p)|^2` at :math:`q = e^{\log q}`, given the weight ``w`` at the same points."""
        with np.errstate(all="ignore"):
            squared = self.squared_residual(p, log_q, log_abs)
            # a zero weight, or an infinite one where q = p (a magic kernel), contributes nothing
            return np.where((squared == 0) | (w == 0), 0.0, w * squared)

    def no_negative_multiplier(self, alpha: float, normalization: float) -> str:
        r"""Why ∫q_0 = ``normalization`` < 1 has no minimizer (λ < 0 would be needed; see :attr:`negative_multiplier`)."""
        return f"no minimizer at α = {alpha:g}: ∫q_0 = {normalization:.6g} < 1 needs λ < 0, which f = {self.kind} does not admit"


class Linear(MatchingFunction):
    r""":math:`f(q) = q`: :math:`q = \max(p - \lambda C^2, 0)` (the bound :math:`q \ge 0` is active where :math:`p < \lambda C^2`)."""

    kind = "linear"
    negative_multiplier = True
    validity = "q = max(p - λC², 0)."

    @staticmethod
    def expression(q: sp.Symbol) -> sp.Expr:
        return q

    @property
    def formula(self) -> str:
        return "q"

    def minimizer(self) -> sp.Expr:
        return sp.Max(self.problem.density - LAMBDA * self.problem.C_squared, 0)

    def loss_kernel(self, log_q: sp.Symbol, complex_p: sp.Symbol, log_abs: sp.Expr, negative: sp.Basic) -> LossKernel:
        return LossKernel(
            inputs=(("density", self.problem.density), ("w", self.problem.weight)),
            statements=("density = {density}", "residual = torch.exp(log_q) - density"),
            exact="(residual == 0)", safe=("residual",), squared="torch.square(residual)")

    def q(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.maximum(p - lam * c2, 0.0) if lam != 0 else np.maximum(p, 0.0)

    def deviation(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        return np.where(p > lam * c2, -lam * c2, -p)

    def squared_residual(self, p: np.ndarray, log_q: np.ndarray, log_abs: LogAbs) -> np.ndarray:
        with np.errstate(all="ignore"):
            return (np.exp(log_q) - p) ** 2


class Log(MatchingFunction):
    r""":math:`f(q) = \log q`: with :math:`\mathrm{Re}\log p = \log|p|`, :math:`q = |p|\, e^{-W(\lambda C^2 |p|)}`.

    Where :math:`p < 0` the minimizer mirrors :math:`|p|` and the phase :math:`i\pi` contributes
    :math:`\pi^2 w` to the loss.
    """

    kind = "log"
    constant_phase = True
    kl_identity = True
    validity = "q = |p| exp(-W(λC²|p|)), W the principal branch of Lambert W (NaN where λC²|p| < -1/e)."

    @staticmethod
    def expression(q: sp.Symbol) -> sp.Expr:
        return sp.log(q)

    @property
    def formula(self) -> str:
        return "log q"

    def minimizer(self) -> sp.Expr:
        p, c2 = self.problem.density, self.problem.C_squared
        magnitude = p if p.is_positive else sp.Abs(p)
        return magnitude * sp.exp(-sp.LambertW(LAMBDA * c2 * magnitude))

    def simplify_kernel(self, c_squared: sp.Expr) -> sp.Expr:
        return sp.powsimp(sp.expand_log(c_squared, force=True))

    def loss_kernel(self, log_q: sp.Symbol, complex_p: sp.Symbol, log_abs: sp.Expr, negative: sp.Basic) -> LossKernel:
        fixed_sign = isinstance(negative, sp.logic.boolalg.BooleanAtom)
        statements = [
            "log_abs_p = {log_abs_p}",
            "# log q = log|p| is no deviation, also where both are -inf (q = p = 0)",
            "residual = torch.where(log_q == log_abs_p, 0.0, log_q - log_abs_p)",
        ]
        if not fixed_sign:
            statements.append("negative = {negative}")
        exact = {sp.true: None, sp.false: "(residual == 0)"}.get(negative, "((residual == 0) & ~negative)")
        squared, phase = "torch.square(residual)", ()
        if negative is sp.true:
            squared = f"(torch.square(residual) + {math.pi**2!r})"
        elif negative is not sp.false:
            phase = ("squared = torch.square(residual)", "# the imaginary part iπ of log p where p < 0",
                     f"squared = torch.where(negative, squared + {math.pi**2!r}, squared)")
            squared = "squared"
        inputs = (("log_abs_p", log_abs), ("w", self.problem.weight)) + (() if fixed_sign else (("negative", negative),))
        return LossKernel(inputs=inputs, statements=tuple(statements), exact=exact, safe=("residual",), squared=squared, phase=phase)

    def q(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        with np.errstate(all="ignore"):
            magnitude = np.abs(p)
            if lam == 0:
                return magnitude
            z = lam * c2 * magnitude
            q = np.where(magnitude > 0, magnitude * np.exp(-lambertw(z)), 0.0)
            if lam > 0 and not np.isfinite(z).all():
                # q = W(λC²|p|)/(λC²) stays finite where p overflows: take it through log|p|
                q = np.where(np.isfinite(z), q, np.exp(self._log_q_large(p, log_abs(), c2, lam)))
            return q

    def deviation(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        if lam == 0:
            return self.q(p, c2, lam, log_abs) - p
        with np.errstate(all="ignore"):
            z = lam * c2 * np.abs(p)
            return np.where(p > 0, p * np.expm1(-lambertw(z)), self.q(p, c2, lam, log_abs) - p)

    def log_q(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        r""":math:`\log|p| - W`, exact where :math:`q_\lambda` itself underflows."""
        log_abs_p = log_abs()
        if lam == 0:
            return log_abs_p
        if lam > 0:
            return self._log_q_large(p, log_abs_p, c2, lam)
        with np.errstate(all="ignore"):
            return log_abs_p - lambertw(lam * c2 * np.abs(p))

    def squared_residual(self, p: np.ndarray, log_q: np.ndarray, log_abs: LogAbs) -> np.ndarray:
        with np.errstate(all="ignore"):
            real = np.where(np.isneginf(log_q) & (p == 0), 0.0, log_q - log_abs())
            return real**2 + np.where(p < 0, np.pi**2, 0.0)

    def no_negative_multiplier(self, alpha: float, normalization: float) -> str:
        return (f"no minimizer at α = {alpha:g}: ∫|p| = {normalization:.6g} < 1, and with f = log the missing probability can be added as an "
                "ever narrower spike at ever smaller cost (w log²(q/p) grows more slowly than the spike's height), so the loss has no "
                "minimum among normalized q; the stationary point with λ < 0 is not one (w log²(q/p) + λq is unbounded below)")

    @staticmethod
    def _log_q_large(p: np.ndarray, log_abs: np.ndarray, c2: np.ndarray, lam: float) -> np.ndarray:
        r""":math:`\log q = \log|p| - W(\lambda C^2 |p|)` for λ > 0 and any size of :math:`\lambda C^2|p|`.

        Beyond float64, :math:`W(e^L)` with :math:`L = \log(\lambda C^2) + \log|p|` solves
        :math:`w + \log w = L` (Newton from :math:`L - \log L`, converged to rounding in 8 steps).
        """
        with np.errstate(all="ignore"):
            z = lam * c2 * np.abs(p)
            w = lambertw(z)
            huge = ~np.isfinite(z)
            if huge.any():
                log_z = np.log(lam * c2) + log_abs
                bounded = np.where(np.isfinite(log_z) & (log_z > 1.0), log_z, 1e300)
                v = bounded - np.log(bounded)
                for _ in range(8):
                    v = v - (v + np.log(v) - bounded) / (1.0 + 1.0 / v)
                # an infinite C² (a magic kernel where q << p) gives W = inf and q = 0
                w = np.where(huge, np.where(np.isfinite(log_z), v, np.inf), w)
        return log_abs - w


class Custom(MatchingFunction):
    r"""Any other strictly monotone :math:`f`: SymPy's ``solve`` of the condition for :math:`p > 0`
    where it finishes in time, else a vectorized bisection in :math:`\log q` at each point."""

    kind = "custom"
    validity = "The closed form SymPy derived for p > 0; where p < 0 it need not hold (use renorm.symbolic.solve)."

    @property
    def spec(self) -> str:
        return sp.sstr(self.problem.f)

    def minimizer(self) -> sp.Expr | None:
        p, c2, q = self.problem.density, self.problem.C_squared, self.problem.q
        target, z = sp.Symbol("P", positive=True), sp.Symbol("Z", positive=True)
        condition = (self.problem.f - self.problem.f.subs(q, target)) * sp.diff(self.problem.f, q) + z

        def closed_form() -> sp.Expr | None:
            try:
                roots = sp.solve(condition, q)
            except (NotImplementedError, ValueError):
                return None
            for root in roots:
                # the minimizer is the root that reduces to q = p without a constraint
                if sp.simplify(root.subs(z, 0) - target) == 0:
                    return root.subs({target: p, z: LAMBDA * c2})
            return None

        # where SymPy's solve takes too long, the condition is solved pointwise instead
        return within(LIMITS.seconds / 10, closed_form, None)

    def loss_kernel(self, log_q: sp.Symbol, complex_p: sp.Symbol, log_abs: sp.Expr, negative: sp.Basic) -> LossKernel:
        f, q = self.problem.f, self.problem.q
        return LossKernel(
            inputs=(("density", self.problem.density), ("w", self.problem.weight), ("f_q", f.subs(q, sp.exp(log_q)))),
            statements=("density = {density}", "# f(p) on the principal branch: f evaluated at the complex p + 0i",
                        "pc = torch.complex(density, torch.zeros_like(density))"),
            complex_inputs=(("f_p", f.subs(q, complex_p)),), complex_argument="pc",
            complex_statements=("f_p = {f_p}", "residual = {f_q} - f_p.real", "phase = f_p.imag"),
            exact="((residual == 0) & (phase == 0))", safe=("residual", "phase"),
            squared="(torch.square(residual) + torch.square(phase))")

    @cached_property
    def _sign(self) -> float:
        q = self.problem.q
        slope = numeric(sp.diff(self.problem.f, q), (q,))(np.array(1.0))
        # the loss is unchanged by f -> -f, so an increasing f is enough
        return 1.0 if float(np.real(slope)) > 0 else -1.0

    @cached_property
    def _f(self) -> Callable[[np.ndarray], np.ndarray]:
        return numeric(self._sign * self.problem.f, (self.problem.q,))

    @cached_property
    def _fprime(self) -> Callable[[np.ndarray], np.ndarray]:
        return numeric(self._sign * sp.diff(self.problem.f, self.problem.q), (self.problem.q,))

    def _real_target(self, p: np.ndarray) -> np.ndarray:
        r""":math:`\mathrm{Re}\, f(p)` on the principal branch."""
        with np.errstate(all="ignore"):
            return np.real(np.asarray(self._f(p.astype(complex)), dtype=complex))

    def q(self, p: np.ndarray, c2: np.ndarray, lam: float, log_abs: LogAbs) -> np.ndarray:
        if lam < 0:
            raise RenormError("a custom f with λ < 0 (∫p < 1 where p > 0) is not supported; use f = linear or log")
        target = self._real_target(p)
        f, fprime = self._f, self._fprime
        lo, hi = np.full(p.shape, -700.0), np.full(p.shape, 700.0)
        with np.errstate(all="ignore"):
            # q_F = f^{-1}(Re f(p)): the unconstrained optimum
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                below = np.real(f(np.exp(mid))) < target
                lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
            reachable = np.real(f(np.exp(np.full(p.shape, -700.0)))) < target
            q_target = np.where(reachable, np.exp(0.5 * (lo + hi)), 0.0)
            if lam == 0:
                return q_target
            condition = lambda q: (np.real(f(q)) - target) * np.real(fprime(q)) + lam * c2
            lo = np.log(np.maximum(q_target, 1e-300)) - 700.0
            hi = np.log(np.maximum(q_target, 1e-300))
            boundary = condition(np.exp(lo)) > 0
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                negative = condition(np.exp(mid)) < 0
                lo, hi = np.where(negative, mid, lo), np.where(negative, hi, mid)
            return np.where(reachable & ~boundary, np.exp(0.5 * (lo + hi)), 0.0)

    def squared_residual(self, p: np.ndarray, log_q: np.ndarray, log_abs: LogAbs) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.abs(np.real(self._f(np.exp(log_q))) - self._f(p.astype(complex))) ** 2

    def no_negative_multiplier(self, alpha: float, normalization: float) -> str:
        return f"∫q_0 < 1 needs λ < 0, which a custom f does not support (α = {alpha:g})"


#: The matching functions by kind (a problem's ``f_kind``).
MATCHING: dict[str, type[MatchingFunction]] = {cls.kind: cls for cls in (Linear, Log, Custom)}


def matching_function(problem: Problem) -> MatchingFunction:
    r"""The matching function of ``problem``, looked up in :data:`MATCHING` by its ``f_kind``.

    Raises:
        RenormError: If no matching function is registered for that kind.
    """
    try:
        cls = MATCHING[problem.f_kind]
    except (KeyError, TypeError):
        known = ", ".join(sorted(MATCHING))
        raise RenormError(problem.where("matching.f", f"unknown kind {problem.f_kind!r}: the matching functions are {known} (renorm.symbolic.MATCHING); "
                                        "write f = \"linear\", \"log\" or an expression in q")) from None
    return cls(problem)
