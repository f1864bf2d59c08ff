r"""Exact Euler–Lagrange minimizers of the matching loss, their Lagrange multiplier λ(α) and the matched order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from ._budget import within
from ._errors import NotNormalizableError, NoUniqueMinimizerError, RenormError
from ._expand import expand, singular_points
from ._frame import distance_frame
from ._matching import matching_function
from ._numeric import numeric
from ._maps import quadrature_map
from ._quadrature import integrate_support, support_quadratures
from ._spec import LIMITS, Problem
from ._uncertainty import MonteCarloError

__all__ = [
    "ExactMinimizer", "Solution", "MatchedOrder",
    "exact_minimizer", "solve", "matched_order", "bulk_points",
]

#: Bracket for the Lagrange multiplier's magnitude.
_LOG_LAMBDA_RANGE = (math.log(1e-300), math.log(1e300))
#: A λ beyond which q_λ = max(p - λC², 0) is cut off everywhere float64 resolves (p at x = e^-600 is ~1e260).
_DIVERGENT_LAMBDA = 1e100
#: Rounds of re-adapted quadrature nodes before the λ solve brackets the adaptive integral itself.
_SETTLE = 6
#: Relative deviations below this are float64 noise, not a measurement of δ.
_RESOLUTION = 1e-13


def exact_minimizer(problem: Problem) -> sp.Expr | None:
    r"""The closed-form minimizer :math:`q_\lambda(x|\alpha)` as a SymPy expression in :data:`LAMBDA`.

    The Euler–Lagrange condition of :math:`\int w |f(q) - f(p)|^2 + \lambda(\int q - 1)` is
    :math:`(f(q) - \mathrm{Re}\, f(p))\, f'(q) = -\lambda C^2` (the imaginary part of
    :math:`f(p)` only adds a :math:`q`-independent constant). Hence

    - ``linear``: :math:`q = \max(p - \lambda C^2, 0)` (the bound :math:`q \ge 0` is active where
      :math:`p < \lambda C^2`);
    - ``log``: with :math:`\mathrm{Re}\log p = \log|p|`, :math:`q = |p|\, e^{-W(\lambda C^2 |p|)}`;
      where :math:`p < 0` the minimizer mirrors :math:`|p|` and the phase contributes
      :math:`\pi^2 w` to the loss;
    - other :math:`f`: SymPy's ``solve`` of the condition for :math:`p > 0`, or ``None``.

    Each is the :meth:`MatchingFunction.minimizer` of the problem's kind.
    """
    return matching_function(problem).minimizer()


@dataclass(frozen=True)
class Solution:
    r"""The exact minimizer at one coupling.

    Attributes:
        alpha: The coupling.
        lagrange_multiplier: λ with :math:`\int q_\lambda = 1`.
        normalization: :math:`\int q_\lambda dx` at that λ (an independent quadrature).
    """

    alpha: float
    lagrange_multiplier: float
    normalization: float
    minimizer: "ExactMinimizer" = field(repr=False, compare=False)

    @cached_property
    def loss(self) -> float:
        r""":math:`L[q^*] = \int w |f(q^*) - f(p)|^2 dx` (``inf`` if it diverges), integrated when first read."""
        return self.minimizer.loss(self.alpha, lam=self.lagrange_multiplier)

    def q(self, x: np.ndarray) -> np.ndarray:
        r""":math:`q^*(x|\alpha)` at points of the support."""
        return self.minimizer.q(np.asarray(x, dtype=float), self.alpha, self.lagrange_multiplier)

    @property
    def lagrange_multiplier_error(self) -> float | None:
        r"""One standard deviation of λ from a numeric target's Monte Carlo errors (``None`` for a formula)."""
        uncertainty = self.minimizer.uncertainty
        return None if uncertainty is None else uncertainty.multiplier(self.alpha, self.lagrange_multiplier)

    def q_error(self, x: np.ndarray) -> np.ndarray | None:
        r"""One standard deviation of :math:`q^*(x|\alpha)` from a numeric target's Monte Carlo errors."""
        uncertainty = self.minimizer.uncertainty
        return None if uncertainty is None else uncertainty.q(np.asarray(x, dtype=float), self.alpha, self.lagrange_multiplier)


class ExactMinimizer:
    r"""Numerical evaluation of :math:`q_\lambda(x|\alpha)` and the solution of :math:`\int q_\lambda = 1`.

    Arguments:
        problem: The matching problem; any :math:`f` (closed forms for ``linear`` and ``log``,
            vectorized bisection in :math:`\log q` otherwise: see :attr:`matching`).
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        self.map = quadrature_map(problem.support_floats, problem.singular)
        # refuses targets whose coefficients are not distributions; finds integrable singular points
        self._singular = self.map.to_latent(np.array(singular_points(problem)))
        x, a = problem.x, problem.coupling
        self._p = numeric(problem.density, (x, a))
        self._c2 = numeric(problem.C_squared, (x, a))
        self._w = numeric(problem.weight, (x, a))
        self._log_abs = None
        self._inner = _at_zero(problem)
        #: The matching function's pointwise pieces.
        self.matching = matching_function(problem)

    @cached_property
    def uncertainty(self) -> MonteCarloError | None:
        r"""The propagation of a numeric target's Monte Carlo errors (``None`` for a formula)."""
        return MonteCarloError(self) if self.problem.data else None

    # pointwise pieces -------------------------------------------------------------
    def p(self, x: np.ndarray, alpha: float) -> np.ndarray:
        return np.asarray(self._p(x, alpha), dtype=float)

    def C_squared(self, x: np.ndarray, alpha: float) -> np.ndarray:
        return np.asarray(self._c2(x, alpha), dtype=float)

    def log_abs_p(self, x: np.ndarray, alpha: float) -> np.ndarray:
        r""":math:`\log|p|`, finite where :math:`p` itself overflows (:math:`\alpha/x^2` at :math:`x < 10^{-154}`).

        There the logarithm of the expression with its products and powers expanded
        (:math:`\log\alpha - 2\log x`) takes over.
        """
        p = self.p(x, alpha)
        with np.errstate(all="ignore"):
            out = np.log(np.abs(p))
            overflow = np.isinf(p)
            if overflow.any():
                if self._log_abs is None:
                    self._log_abs = numeric(sp.expand_log(sp.log(self.problem.density), force=True), (self.problem.x, self.problem.coupling))
                # in complex arithmetic, where the real part of any branch of log p is log|p|
                # (SymPy writes log(log(1/x)) as log(log(x)) + iπ, NaN for real x < 1)
                points = np.asarray(x, dtype=complex)
                wide = np.broadcast_to(np.asarray(self._log_abs(points, alpha), dtype=complex), np.shape(p))
                out = np.where(overflow, np.real(wide), out)
        return out

    def weight(self, x: np.ndarray, alpha: float) -> np.ndarray:
        return np.asarray(self._w(x, alpha), dtype=float)

    def q(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r""":math:`q_\lambda(x|\alpha)`."""
        return self.matching.q(self.p(x, alpha), self.C_squared(x, alpha), lam, lambda: self.log_abs_p(x, alpha))

    def deviation(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r""":math:`q_\lambda - p`, without cancellation where the closed form allows it."""
        return self.matching.deviation(self.p(x, alpha), self.C_squared(x, alpha), lam, lambda: self.log_abs_p(x, alpha))

    def log_q(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r""":math:`\log q_\lambda`, exact where :math:`q_\lambda` itself underflows (``log``: :math:`\log|p| - W`)."""
        return self.matching.log_q(self.p(x, alpha), self.C_squared(x, alpha), lam, lambda: self.log_abs_p(x, alpha))

    def loss_density(self, x: np.ndarray, alpha: float, log_q: np.ndarray) -> np.ndarray:
        r""":math:`w\,|f(q) - f(p)|^2` from :math:`\log q`, with the principal-branch :math:`f(p)` where :math:`p < 0`."""
        return self.matching.loss_density(self.p(x, alpha), self.weight(x, alpha), log_q, lambda: self.log_abs_p(x, alpha))

    # integrals -------------------------------------------------------------------
    def breakpoints(self, alpha: float) -> np.ndarray:
        r"""Sign changes of :math:`p` (zeros and poles such as a Landau pole) in the map variable."""
        u = np.linspace(*self.map.latent_range(), 4001)[1:-1]
        sign = np.sign(self.p(self.map.from_latent(u), alpha))
        change = np.nonzero(sign[:-1] * sign[1:] < 0)[0]
        lo, hi = u[change], u[change + 1]
        s_lo = sign[change]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            same = np.sign(self.p(self.map.from_latent(mid), alpha)) == s_lo
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        return np.unique(np.concatenate([0.5 * (lo + hi), self._singular]))

    def integral(self, fn: Callable[[np.ndarray], np.ndarray], breakpoints: np.ndarray = np.empty(0), rtol: float = 1e-13, tails: bool = True) -> float:
        r""":math:`\int dx\, g(x)` over the support (see :func:`integrate_support`)."""
        return integrate_support(fn, self.map, breakpoints, rtol, tails)

    def normalization(self, alpha: float, lam: float, breakpoints: np.ndarray | None = None) -> float:
        r""":math:`\int q_\lambda(x|\alpha)\, dx` (in the distance to the singular endpoint where it is not 0)."""
        if self._inner is not None and breakpoints is None:
            return self._inner.normalization(alpha, lam)
        points = self.breakpoints(alpha) if breakpoints is None else breakpoints
        return self.integral(lambda x: self.q(x, alpha, lam), points)

    def loss(self, alpha: float, log_q: Callable[[np.ndarray], np.ndarray] | None = None, lam: float | None = None, rtol: float = 1e-11) -> float:
        r""":math:`L[q] = \int w|f(q) - f(p)|^2`, for a given :math:`\log q(x)` or for :math:`q_\lambda`.

        ``rtol`` should not ask for more than ``log_q`` resolves (a trained flow: about 1e-12).
        """
        if log_q is None and self._inner is not None:
            return self._inner.loss(alpha, lam=lam, rtol=rtol)
        if self._negative_tail(alpha):
            return math.inf
        fn = log_q if log_q is not None else (lambda x: self.log_q(x, alpha, lam))
        return self.integral(lambda x: self.loss_density(x, alpha, fn(x)), self.breakpoints(alpha), rtol=rtol)

    def _negative_tail(self, alpha: float) -> bool:
        r"""Whether p < 0 on an unbounded tail with w > 0 where f(p) has a constant phase there (``log``:
        iπ, see :attr:`MatchingFunction.constant_phase`): it then costs π²w per unit length forever,
        so every loss is infinite.

        The sign is read where p is last resolved: beyond that p underflows to 0 and float64 would
        see no phase at all (measured: the loss of e^-τ(1 + α(1 - τ)) on (0, ∞) came out 3.6e3, the
        length of the negative tail until e^-τ underflows, instead of ∞).
        """
        a, b = self.problem.support_floats
        if not self.matching.constant_phase or not (math.isinf(a) or math.isinf(b)):
            return False
        x = self.map.from_latent(np.linspace(*self.map.latent_range(), 4001))
        far = x[np.isfinite(x) & (x > a) & (x < b)]
        far = far[::-1] if math.isinf(b) else far
        with np.errstate(all="ignore"):
            p, w = self.p(far, alpha), self.weight(far, alpha)
        resolved = np.nonzero((p != 0) & np.isfinite(p))[0]
        if not resolved.size:
            return False
        last = resolved[0]
        return bool(p[last] < 0 and w[last] > 0)

    def solve(self, alpha: float, guess: float | None = None) -> Solution:
        r"""Solves :math:`\int q_\lambda = 1` for λ, bracketing in :math:`\log|\lambda|`.

        Raises:
            NotNormalizableError: If no λ normalizes :math:`q_\lambda` (e.g. ``f = linear`` with a
                non-integrable :math:`p`: every :math:`q_\lambda` diverges and the infimum of the
                loss collapses all probability into the singularity).
        """
        alpha = float(alpha)
        if self._inner is not None:
            inner = self._inner.solve(alpha, guess)
            return Solution(inner.alpha, inner.lagrange_multiplier, inner.normalization, self)
        try:
            return self._solve(alpha, guess)
        except NotNormalizableError as error:
            raise self._undetermined(alpha) or error from None

    def _undetermined(self, alpha: float) -> NotNormalizableError | None:
        r"""The reason when the weight vanishes on part of the support and the rest of p holds too little.

        Where w = 0 the loss does not constrain q; if ∫p over where w > 0 is below 1, the missing
        probability can lie anywhere in the zero-weight region at no cost: minimizers exist, but
        not a unique one, and the Euler–Lagrange closed form (C = ∞ there) has none.
        """
        x = self.map.from_latent(np.linspace(*self.map.latent_range(), 20001)[1:-1])
        with np.errstate(all="ignore"):
            free = self.weight(x, alpha) == 0
        if not free.any():
            return None
        constrained = self.integral(lambda xs: np.where(self.weight(xs, alpha) > 0, np.abs(self.p(xs, alpha)), 0.0), self.breakpoints(alpha))
        if not constrained < 1.0:
            return None
        a, b = self.problem.support_floats

        def edge(inside: float, outside: float) -> float:
            for _ in range(60):  # bisect to where the weight starts to vanish
                mid = 0.5 * (inside + outside)
                with np.errstate(all="ignore"):
                    zero = float(self.weight(np.array([mid]), alpha)[0]) == 0
                inside, outside = (mid, outside) if zero else (inside, mid)
            return 0.5 * (inside + outside)

        i, j = int(np.argmax(free)), len(free) - 1 - int(np.argmax(free[::-1]))
        lo = a if i == 0 else edge(x[i], x[i - 1])
        hi = b if j == len(free) - 1 else edge(x[j], x[j + 1])
        return NoUniqueMinimizerError(
            f"no unique minimizer at α = {alpha:g}: the weight vanishes for {self.problem.x} in [{lo:.4g}, {hi:.4g}], where the loss does not "
            f"constrain q, and |p| elsewhere integrates to {constrained:.4g} < 1, so the missing {1 - constrained:.4g} of probability can lie "
            "anywhere in that region at no cost")

    def _solve(self, alpha: float, guess: float | None) -> Solution:
        points = self.breakpoints(alpha)
        total = cache(lambda lam: self.normalization(alpha, lam, points))  # once per λ: the bracket and the final check revisit the root
        lam = self._multiplier(alpha, guess, points, total)
        normalization = total(lam)
        if not abs(normalization - 1.0) <= 1e-8 and abs(lam) > _DIVERGENT_LAMBDA:
            # ∫q_λ jumps over 1: from divergent straight to nothing, once λ cuts q_λ off everywhere float64 resolves
            raise NotNormalizableError(
                f"no normalized minimizer at α = {alpha:g}: with f = {self.matching.kind} and this C, ∫q_λ diverges for every λ "
                "(p is not integrable where q_λ follows it), so the loss pushes all probability into the singularity of p and q* = 0 at every interior x")
        if not abs(normalization - 1.0) <= 1e-8:
            # from unresolved to below 1 at a moderate λ: the tail, not the target, is the problem
            raise NotNormalizableError(
                f"no normalized minimizer found at α = {alpha:g}: ∫q_λ does not converge within float64's reach for λ below {lam:.3g} "
                f"(weight is left within e^-400 of the singular endpoint) and is {normalization:.4g} < 1 above it: p's probability "
                "near the endpoint lies beyond x - a = e^-600 (p ~ 1/(x log²x), for one, holds 1/600 of its integral there)")
        return Solution(alpha, lam, normalization, self)

    def _multiplier(self, alpha: float, guess: float | None, points: np.ndarray, total: Callable[[float], float]) -> float:
        r"""λ with :math:`\int q_\lambda = 1` (``total(λ)`` is the adaptive integral), or the reason there is none."""
        warm = bool(guess and guess > 0)
        if warm:
            # warm-started, ∫p (λ = 0) is not needed: it is the costliest integral where p has a pole (0.5 s at a Landau pole)
            lam = self._settled(alpha, 1.0, guess, points, None)
            if lam is not None:
                return lam
        at_zero, nodes = self._rule(alpha, 0.0, points)
        if math.isfinite(at_zero) and abs(at_zero - 1.0) <= 1e-14:
            return 0.0
        if at_zero < 1.0 and not self.matching.negative_multiplier:
            raise NotNormalizableError(self.matching.no_negative_multiplier(alpha, at_zero))
        sign = 1.0 if at_zero > 1.0 else -1.0
        start = guess if sign > 0 else None
        # without nodes of p the positive branch would only repeat the warm start's attempt, which failed
        lam = None if warm and sign > 0 and nodes is None else self._settled(alpha, sign, start, points, nodes)
        if lam is None:  # the nodes diverge or never agree: bracket the adaptive integral itself
            lam = sign * bracket(lambda t: total(sign * math.exp(t)) - 1.0, start, sign > 0, alpha, self.matching.kind)
        return lam

    def _rule(self, alpha: float, lam: float, points: np.ndarray) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
        r""":math:`\int q_\lambda` adapted to :math:`q_\lambda`, and the nodes and weights that reproduce it (``None`` where it diverges)."""
        batch = support_quadratures(lambda x, owner: self.q(x, alpha, lam), [self.map], points)
        value = float(batch.values[0])
        return value, batch.nodes(0) if math.isfinite(value) else None

    def _settled(self, alpha: float, sign: float, start: float | None, points: np.ndarray, nodes: tuple[np.ndarray, np.ndarray] | None) -> float | None:
        r"""λ of sign ``sign`` with :math:`\int q_\lambda = 1`, found on fixed quadrature nodes and settled by re-adapting them.

        The root of :math:`\sum_k w_k q_\lambda(x_k) = 1` is cheap (p and C² are fixed on the nodes);
        the nodes, first those of ``nodes`` (adapted to :math:`q_0 = p`) or else adapted at the guess
        ``start``, are then adapted to :math:`q_\lambda` at that root, until the root moves by less
        than 1e-11 of itself. ``None`` where the nodes diverge or do not settle in :data:`_SETTLE`
        rounds. Measured on 32 physical couplings, warm-started: 3.5 adaptive quadratures per
        coupling instead of 9.6 for brackets of the adaptive integral itself, and λ the same to
        1.4e-14 on the four examples from α = 1e-3 to α_max.
        """
        lam, adapted = start, 0.0  # the nodes are adapted to q_λ at λ = sign · adapted
        if nodes is None:  # ∫p diverges: begin at the guess
            lam = adapted = start or 1.0
            nodes = self._rule(alpha, sign * lam, points)[1]
        for _ in range(_SETTLE):
            if nodes is None:
                return None
            x, w = nodes
            p, c2 = self.p(x, alpha), self.C_squared(x, alpha)
            log_abs = self.log_abs_p(x, alpha)
            fixed = lambda t: float(w @ self.matching.q(p, c2, sign * math.exp(t), lambda: log_abs)) - 1.0
            try:
                lam = bracket(fixed, lam, sign > 0, alpha, self.matching.kind)
            except NotNormalizableError:
                return None
            if abs(lam - adapted) <= 1e-11 * lam:
                return sign * lam
            adapted, nodes = lam, self._rule(alpha, sign * lam, points)[1]
        return None



def bracket(g: Callable[[float], float], guess: float | None, decreasing: bool, alpha: float, kind: str) -> float:
    r"""The root in :math:`t = \log|\lambda|` of ``g`` (``∫q_λ - 1``, decreasing or increasing in ``t``), walked to
    from ``log guess`` in growing steps within 1e±300 and then found by Brent's method; returns :math:`|\lambda|`."""
    lo_t, hi_t = _LOG_LAMBDA_RANGE
    start = min(max(math.log(guess) if guess and guess > 0 else 0.0, lo_t), hi_t)
    clipped = cache(lambda t: min(g(t), 1e6))  # the walk and Brent's method revisit their ends
    value = clipped(start)
    step = math.log(10.0)
    # walk from the start towards the sign change in growing steps (1, 2, 4, ... decades)
    direction = (1.0 if value > 0 else -1.0) * (1.0 if decreasing else -1.0)
    t, previous = start, start
    while (value > 0) == ((clipped(t) > 0)):
        previous, t = t, t + direction * step
        step *= 2.0
        if not lo_t <= t <= hi_t:
            t = min(max(t, lo_t), hi_t)
            if (clipped(t) > 0) == (value > 0):
                if decreasing and value > 0:
                    raise NotNormalizableError(
                        f"no normalized minimizer at α = {alpha:g}: with f = {kind} and this C, ∫q_λ stays above 1 (or diverges) for every λ up to 1e300, "
                        "so the loss pushes all probability into the non-integrable singularity of p and q* = 0 at every interior x",
                        matched_order=None)
                raise NotNormalizableError(f"no normalized minimizer at α = {alpha:g}: ∫q_λ cannot reach 1 for any admissible λ with f = {kind} and this C")
            break
    a, b = sorted((previous, t))
    from scipy.optimize import brentq  # 0.2 s to import: only once a root is sought

    return math.exp(brentq(clipped, a, b, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=200))


def _at_zero(problem: Problem) -> ExactMinimizer | None:
    r"""The minimizer of the same problem in the distance to its singular endpoint, if that is not 0 (see :class:`Frame`).

    Measured before: the soft-collinear target mirrored to the upper end gave a matched order
    of 0 instead of 1, and took 70 s instead of 1 s, when solved in :math:`x`.
    """
    frame = distance_frame(problem)
    return None if frame.identity else ExactMinimizer(frame.problem)


def solve(problem: Problem, alphas: Sequence[float]) -> list[Solution]:
    r"""The exact minimizer at each coupling (warm-starting λ from the previous one)."""
    minimizer = ExactMinimizer(problem)
    out, guess = [], None
    for alpha in alphas:
        solution = minimizer.solve(alpha, guess)
        guess = solution.lagrange_multiplier if solution.lagrange_multiplier > 0 else None
        out.append(solution)
    return out


@dataclass(frozen=True)
class MatchedOrder:
    r"""Through which order the exact minimizer's α-expansion equals :math:`p^n`.

    Method: at interior points :math:`x_i` of the bulk and couplings :math:`\alpha_j = \alpha_{min} 2^{-j}`
    the deviation :math:`\delta = q^*(x|\alpha) - \sum_{n \le N} \alpha^n p^n(x)` is computed (without
    cancellation for the closed forms). If :math:`\delta \sim \alpha^s`, the coefficients agree for
    :math:`n < s`; the local exponent :math:`s` at the smallest couplings (median over :math:`x_i`)
    gives ``order = min(N, floor(s - 0.75))`` (the 0.25 margin absorbs :math:`\log\alpha` factors).
    A λ that vanishes faster than any power (as for the LO angularity with f = log, C = 1) gives
    growing exponents and ``order = N``; a degenerate problem (no normalized minimizer) has
    :math:`q^* = 0` in the bulk.

    Attributes:
        order: The matched order (``-1``: not even :math:`p^0`).
        exponent: The measured :math:`s` (``inf`` when δ vanishes identically).
        alphas: The couplings used.
        exponents: Local exponents between consecutive couplings (median over x).
        points: The interior points.
        degenerate: Whether no normalized minimizer existed (the bulk value is then 0).
    """

    order: int
    exponent: float
    alphas: tuple[float, ...]
    exponents: tuple[float, ...]
    points: tuple[float, ...]
    degenerate: bool
    reason: str = ""

    @property
    def matched(self) -> int | None:
        r"""The order in :math:`[0, N]`, or ``None`` where :math:`q^*` does not match even :math:`p^0`."""
        return self.order if self.order >= 0 else None

    def describe(self, order: int) -> str:
        r"""``"1 of 1"``, or why there is no matched order (the target's order is ``order``)."""
        if self.order >= 0:
            return f"{self.order} of {order}"
        if self.reason:
            return f"none: {self.reason}"
        if math.isnan(self.exponent):
            return "none (q* - p^N could not be measured as alpha -> 0)"
        return f"none: q* - p^N does not vanish as alpha -> 0 (~ alpha^{self.exponent:.2g}), so q* does not match even p^0"


def across(a: float, b: float, fractions: Sequence[float], singular: str, far: Sequence[float]) -> np.ndarray:
    r"""Points ``fractions`` of the way across ``(a, b)`` from its singular side, or at the distances
    ``far`` from the finite end of a half-line."""
    if math.isinf(b):
        return a + np.asarray(far)
    if math.isinf(a):
        return b - np.asarray(far)
    t = np.asarray(fractions)
    return a + (b - a) * t if singular != "upper" else b - (b - a) * t


def bulk_points(problem: Problem) -> np.ndarray:
    r"""Points of the bulk where the matched order is measured (and commands evaluate by default)."""
    return across(*problem.support_floats, (0.05, 0.1, 0.2, 0.35, 0.5), problem.singular, (0.1, 0.3, 1.0, 3.0))


def matched_order(problem: Problem, steps: int = 10) -> MatchedOrder:
    r"""Measures through which order :math:`q^*` matches :math:`p^N` (see :class:`MatchedOrder`)."""
    minimizer = ExactMinimizer(problem)
    x = bulk_points(problem)
    return measure_order(problem, (problem.x,), expand(problem), (x,), minimizer.solve,
                         lambda alpha, lam: minimizer.deviation(x, alpha, lam), steps)


def measure_order(problem: Any, variables: tuple[sp.Symbol, ...], terms: Sequence[sp.Expr], points: tuple[np.ndarray, ...],
                  solve: Callable[[float, float | None], Any], deviation: Callable[[float, float], np.ndarray], steps: int) -> MatchedOrder:
    r"""The method of :class:`MatchedOrder` in any number of variables.

    Arguments:
        problem: The problem (its density, coupling, order and range).
        variables: Its observables; ``points`` holds one array of coordinates per variable.
        terms: The pointwise coefficients :math:`p^n`, :math:`n \le N`.
        solve: ``solve(alpha, guess)``, the exact minimizer's solution at a coupling.
        deviation: ``deviation(alpha, lam)``, :math:`q^*` minus :math:`p` at the points, without cancellation.
    """
    truncated_expr = sum(problem.coupling**n * c for n, c in enumerate(terms))
    # p - p^N symbolically: evaluating the difference numerically would leave rounding noise ∝ α
    remainder_expr = within(LIMITS.seconds, lambda: sp.cancel(sp.together(problem.density - truncated_expr)), None)
    if remainder_expr is None:
        raise RenormError(problem.where("matched order", f"p - p^N did not simplify within {LIMITS.seconds:g} s (the limit), so its order in {problem.coupling} cannot be measured without rounding noise"))
    args = (*variables, problem.coupling)
    truncated_fn, remainder_fn = numeric(truncated_expr, args), numeric(remainder_expr, args)
    labels = tuple(points[0]) if len(points) == 1 else tuple(zip(*points))
    alphas, deviations, degenerate, guess = [], [], False, None
    for j in range(steps + 1):
        alpha = problem.coupling_range[0] * 2.0**-j
        truncated = np.asarray(truncated_fn(*points, alpha), dtype=float)
        try:
            solution = solve(alpha, guess)
        except NoUniqueMinimizerError:
            # no q* to follow towards α = 0: there is nothing to measure, not a degenerate limit
            return MatchedOrder(-1, math.nan, tuple(alphas + [alpha]), (), labels, False,
                                reason=f"the minimizer is not unique at alpha = {alpha:g} and below (the weight vanishes where probability is missing)")
        except NotNormalizableError:
            degenerate = True
            delta = -truncated
        else:
            lam = solution.lagrange_multiplier
            guess = lam if lam > 0 else None
            delta = deviation(alpha, lam) + np.asarray(remainder_fn(*points, alpha), dtype=float)
        alphas.append(alpha)
        deviations.append(np.abs(delta))
        if np.median(np.abs(delta) / np.maximum(np.abs(truncated), 1e-300)) < _RESOLUTION:
            break  # δ is below what float64 resolves: the smaller couplings add nothing
    return _orders_from_deviations(problem.order, alphas, deviations, labels, degenerate, steps)


def _orders_from_deviations(order: int, alphas: Sequence[float], deviations: Sequence[np.ndarray], points: tuple,
                           degenerate: bool, steps: int) -> MatchedOrder:
    r"""The :class:`MatchedOrder` from :math:`|q^* - p^N|` at the bulk points, one array per coupling of ``alphas``."""
    if len(deviations) == 1 and steps > 0:
        # q* = p^N to float64 resolution already at α_min (λ = 0: p^N is normalized as it stands)
        return MatchedOrder(order, math.inf, tuple(alphas), (), points, degenerate)
    exponents = []
    for d0, d1 in zip(deviations, deviations[1:]):
        with np.errstate(all="ignore"):
            local = np.log2(d0 / d1)
        local = np.where((d0 == 0) & (d1 == 0), np.inf, local)
        exponents.append(float(np.median(local)))
    s = exponents[-1] if exponents else math.nan
    if math.isnan(s):
        matched = -1
    else:
        matched = order if s == math.inf else int(min(order, max(-1, math.floor(s - 0.75))))
    return MatchedOrder(matched, s, tuple(alphas), tuple(exponents), points, degenerate)
