r"""Exact Euler–Lagrange minimizers of the matching loss, their Lagrange multiplier λ(α) and the matched order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.optimize
import sympy as sp

from ._budget import within
from ._errors import NotNormalizableError, NoUniqueMinimizerError, RenormError
from ._expand import expand, singular_points
from ._frame import distance_frame
from ._numeric import lambertw, numeric
from ._quadrature import endpoint_map, integrate_support
from ._spec import LIMITS, Problem

__all__ = [
    "LAMBDA", "ExactMinimizer", "Solution", "MatchedOrder",
    "exact_minimizer", "solve", "matched_order", "bulk_points",
]

#: The Lagrange multiplier's symbol in closed forms.
LAMBDA = sp.Symbol("lambda", real=True)

#: Bracket for the Lagrange multiplier's magnitude.
_LOG_LAMBDA_RANGE = (math.log(1e-300), math.log(1e300))
_BISECTIONS = 90
#: A λ beyond which q_λ = max(p - λC², 0) is cut off everywhere float64 resolves (p at x = e^-600 is ~1e260).
_DIVERGENT_LAMBDA = 1e100
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
    """
    p, c2, q = problem.density, problem.C_squared, problem.q
    if problem.f_kind == "linear":
        return sp.Max(p - LAMBDA * c2, 0)
    if problem.f_kind == "log":
        magnitude = p if p.is_positive else sp.Abs(p)
        return magnitude * sp.exp(-sp.LambertW(LAMBDA * c2 * magnitude))
    target, z = sp.Symbol("P", positive=True), sp.Symbol("Z", positive=True)
    condition = (problem.f - problem.f.subs(q, target)) * sp.diff(problem.f, q) + z
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


@dataclass(frozen=True)
class Solution:
    r"""The exact minimizer at one coupling.

    Attributes:
        alpha: The coupling.
        lagrange_multiplier: λ with :math:`\int q_\lambda = 1`.
        normalization: :math:`\int q_\lambda dx` at that λ (an independent quadrature).
        loss: :math:`L[q^*] = \int w |f(q^*) - f(p)|^2 dx` (``inf`` if it diverges).
    """

    alpha: float
    lagrange_multiplier: float
    normalization: float
    loss: float
    minimizer: "ExactMinimizer" = field(repr=False, compare=False)

    def q(self, x: np.ndarray) -> np.ndarray:
        r""":math:`q^*(x|\alpha)` at points of the support."""
        return self.minimizer.q(np.asarray(x, dtype=float), self.alpha, self.lagrange_multiplier)


class ExactMinimizer:
    r"""Numerical evaluation of :math:`q_\lambda(x|\alpha)` and the solution of :math:`\int q_\lambda = 1`.

    Arguments:
        problem: The matching problem; any :math:`f` (closed forms for ``linear`` and ``log``,
            vectorized bisection in :math:`\log q` otherwise).
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        # refuses targets whose coefficients are not distributions; finds integrable singular points
        self._singular = endpoint_map(problem.support_floats, problem.singular).u(np.array(singular_points(problem)))
        x, a = problem.x, problem.coupling
        self._p = numeric(problem.density, (x, a))
        self._c2 = numeric(problem.C_squared, (x, a))
        self._w = numeric(problem.weight, (x, a))
        self.map = endpoint_map(problem.support_floats, problem.singular)
        self._log_abs = None
        self._inner = _at_zero(problem)
        if problem.f_kind == "custom":
            q = problem.q
            slope = numeric(sp.diff(problem.f, q), (q,))(np.array(1.0))
            sign = 1.0 if float(np.real(slope)) > 0 else -1.0
            # the loss is unchanged by f -> -f, so an increasing f is enough
            self._f = numeric(sign * problem.f, (q,))
            self._fprime = numeric(sign * sp.diff(problem.f, q), (q,))

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

    def _log_q_large(self, p: np.ndarray, log_abs: np.ndarray, c2: np.ndarray, lam: float) -> np.ndarray:
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

    def weight(self, x: np.ndarray, alpha: float) -> np.ndarray:
        return np.asarray(self._w(x, alpha), dtype=float)

    def _real_target(self, p: np.ndarray) -> np.ndarray:
        r""":math:`\mathrm{Re}\, f(p)` on the principal branch (custom :math:`f`)."""
        with np.errstate(all="ignore"):
            return np.real(np.asarray(self._f(p.astype(complex)), dtype=complex))

    def _custom_q(self, p: np.ndarray, c2: np.ndarray, lam: float) -> np.ndarray:
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

    def q(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r""":math:`q_\lambda(x|\alpha)`."""
        p, c2 = self.p(x, alpha), self.C_squared(x, alpha)
        kind = self.problem.f_kind
        with np.errstate(all="ignore"):
            if kind == "linear":
                return np.maximum(p - lam * c2, 0.0) if lam != 0 else np.maximum(p, 0.0)
            if kind == "log":
                magnitude = np.abs(p)
                if lam == 0:
                    return magnitude
                z = lam * c2 * magnitude
                q = np.where(magnitude > 0, magnitude * np.exp(-lambertw(z)), 0.0)
                if lam > 0 and not np.isfinite(z).all():
                    # q = W(λC²|p|)/(λC²) stays finite where p overflows: take it through log|p|
                    q = np.where(np.isfinite(z), q, np.exp(self._log_q_large(p, self.log_abs_p(x, alpha), c2, lam)))
                return q
        return self._custom_q(p, c2, lam)

    def deviation(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r""":math:`q_\lambda - p`, without cancellation where the closed form allows it."""
        p = self.p(x, alpha)
        if self.problem.f_kind == "log" and lam != 0:
            with np.errstate(all="ignore"):
                z = lam * self.C_squared(x, alpha) * np.abs(p)
                return np.where(p > 0, p * np.expm1(-lambertw(z)), self.q(x, alpha, lam) - p)
        if self.problem.f_kind == "linear":
            c2 = self.C_squared(x, alpha)
            return np.where(p > lam * c2, -lam * c2, -p)
        return self.q(x, alpha, lam) - p

    def log_q(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r""":math:`\log q_\lambda`, exact where :math:`q_\lambda` itself underflows (``log``: :math:`\log|p| - W`)."""
        if self.problem.f_kind == "log" and lam != 0:
            p, c2 = self.p(x, alpha), self.C_squared(x, alpha)
            log_abs = self.log_abs_p(x, alpha)
            if lam > 0:
                return self._log_q_large(p, log_abs, c2, lam)
            with np.errstate(all="ignore"):
                return log_abs - lambertw(lam * c2 * np.abs(p))
        with np.errstate(all="ignore"):
            return np.log(self.q(x, alpha, lam))

    def loss_density(self, x: np.ndarray, alpha: float, log_q: np.ndarray) -> np.ndarray:
        r""":math:`w\,|f(q) - f(p)|^2` from :math:`\log q`, with the principal-branch :math:`f(p)` where :math:`p < 0`."""
        p, w = self.p(x, alpha), self.weight(x, alpha)
        kind = self.problem.f_kind
        with np.errstate(all="ignore"):
            if kind == "linear":
                squared = (np.exp(log_q) - p) ** 2
            elif kind == "log":
                real = np.where(np.isneginf(log_q) & (p == 0), 0.0, log_q - self.log_abs_p(x, alpha))
                squared = real**2 + np.where(p < 0, np.pi**2, 0.0)
            else:
                squared = np.abs(np.real(self._f(np.exp(log_q))) - self._f(p.astype(complex))) ** 2
            # a zero weight, or an infinite one where q = p (a magic kernel), contributes nothing
            return np.where((squared == 0) | (w == 0), 0.0, w * squared)

    # integrals -------------------------------------------------------------------
    def breakpoints(self, alpha: float) -> np.ndarray:
        r"""Sign changes of :math:`p` (zeros and poles such as a Landau pole) in the map variable."""
        u = np.linspace(self.map.lo, self.map.hi, 4001)[1:-1]
        sign = np.sign(self.p(self.map.x(u), alpha))
        change = np.nonzero(sign[:-1] * sign[1:] < 0)[0]
        lo, hi = u[change], u[change + 1]
        s_lo = sign[change]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            same = np.sign(self.p(self.map.x(mid), alpha)) == s_lo
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
        r"""Whether p < 0 on an unbounded tail with w > 0 (``log``): the phase iπ of log p then costs
        π²w per unit length forever, so every loss is infinite.

        The sign is read where p is last resolved: beyond that p underflows to 0 and float64 would
        see no phase at all (measured: the loss of e^-τ(1 + α(1 - τ)) on (0, ∞) came out 3.6e3, the
        length of the negative tail until e^-τ underflows, instead of ∞).
        """
        a, b = self.problem.support_floats
        if self.problem.f_kind != "log" or not (math.isinf(a) or math.isinf(b)):
            return False
        u = np.linspace(self.map.lo, self.map.hi, 4001)
        x = self.map.x(u)
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
            return Solution(inner.alpha, inner.lagrange_multiplier, inner.normalization, inner.loss, self)
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
        u = np.linspace(self.map.lo, self.map.hi, 20001)[1:-1]
        x = self.map.x(u)
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
        total = lambda lam: self.normalization(alpha, lam, points)
        at_zero = total(0.0)
        if math.isfinite(at_zero) and abs(at_zero - 1.0) <= 1e-14:
            lam = 0.0
        elif at_zero > 1.0:
            lam = self._bracket(lambda t: total(math.exp(t)) - 1.0, guess, decreasing=True, alpha=alpha)
        elif self.problem.f_kind == "log":
            raise NotNormalizableError(
                f"no minimizer at α = {alpha:g}: ∫|p| = {at_zero:.6g} < 1, and with f = log the missing probability can be added as an "
                "ever narrower spike at ever smaller cost (w log²(q/p) grows more slowly than the spike's height), so the loss has no "
                "minimum among normalized q; the stationary point with λ < 0 is not one (w log²(q/p) + λq is unbounded below)")
        else:
            lam = -self._bracket(lambda t: total(-math.exp(t)) - 1.0, None, decreasing=False, alpha=alpha, upper=self._negative_limit(alpha))
        normalization = total(lam)
        if not abs(normalization - 1.0) <= 1e-8 and abs(lam) > _DIVERGENT_LAMBDA:
            # ∫q_λ jumps over 1: from divergent straight to nothing, once λ cuts q_λ off everywhere float64 resolves
            raise NotNormalizableError(
                f"no normalized minimizer at α = {alpha:g}: with f = {self.problem.f_kind} and this C, ∫q_λ diverges for every λ "
                "(p is not integrable where q_λ follows it), so the loss pushes all probability into the singularity of p and q* = 0 at every interior x")
        if not abs(normalization - 1.0) <= 1e-8:
            # from unresolved to below 1 at a moderate λ: the tail, not the target, is the problem
            raise NotNormalizableError(
                f"no normalized minimizer found at α = {alpha:g}: ∫q_λ does not converge within float64's reach for λ below {lam:.3g} "
                f"(weight is left within e^-400 of the singular endpoint) and is {normalization:.4g} < 1 above it: p's probability "
                "near the endpoint lies beyond x - a = e^-600 (p ~ 1/(x log²x), for one, holds 1/600 of its integral there)")
        return Solution(alpha, lam, normalization, self.loss(alpha, lam=lam), self)

    def _negative_limit(self, alpha: float) -> float:
        r"""Largest :math:`\log|\lambda|` for λ < 0 (``linear``: any; a custom f is not supported there)."""
        if self.problem.f_kind != "linear":
            raise NotNormalizableError(f"∫q_0 < 1 needs λ < 0, which a custom f does not support (α = {alpha:g})")
        return _LOG_LAMBDA_RANGE[1]

    def _bracket(self, g: Callable[[float], float], guess: float | None, decreasing: bool, alpha: float, upper: float | None = None) -> float:
        lo_t, hi_t = _LOG_LAMBDA_RANGE[0], upper if upper is not None else _LOG_LAMBDA_RANGE[1]
        start = min(max(math.log(guess) if guess and guess > 0 else 0.0, lo_t), hi_t)
        clipped = lambda t: min(g(t), 1e6)
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
                    kind = self.problem.f_kind
                    if decreasing and value > 0:
                        raise NotNormalizableError(
                            f"no normalized minimizer at α = {alpha:g}: with f = {kind} and this C, ∫q_λ stays above 1 (or diverges) for every λ up to 1e300, "
                            "so the loss pushes all probability into the non-integrable singularity of p and q* = 0 at every interior x",
                            matched_order=None)
                    raise NotNormalizableError(f"no normalized minimizer at α = {alpha:g}: ∫q_λ cannot reach 1 for any admissible λ with f = {kind} and this C")
                break
        a, b = sorted((previous, t))
        return math.exp(scipy.optimize.brentq(clipped, a, b, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=200))


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


def bulk_points(problem: Problem) -> np.ndarray:
    r"""Points of the bulk where the matched order is measured (and commands evaluate by default)."""
    a, b = problem.support_floats
    if math.isinf(b):
        return a + np.array([0.1, 0.3, 1.0, 3.0])
    if math.isinf(a):
        return b - np.array([0.1, 0.3, 1.0, 3.0])
    t = np.array([0.05, 0.1, 0.2, 0.35, 0.5])
    return a + (b - a) * t if problem.singular != "upper" else b - (b - a) * t


def matched_order(problem: Problem, steps: int = 10) -> MatchedOrder:
    r"""Measures through which order :math:`q^*` matches :math:`p^N` (see :class:`MatchedOrder`)."""
    minimizer = ExactMinimizer(problem)
    x = bulk_points(problem)
    terms = expand(problem)
    truncated_expr = sum(problem.coupling**n * c for n, c in enumerate(terms))
    # p - p^N symbolically: evaluating the difference numerically would leave rounding noise ∝ α
    remainder_expr = within(LIMITS.seconds, lambda: sp.cancel(sp.together(problem.density - truncated_expr)), None)
    if remainder_expr is None:
        raise RenormError(problem.where("matched order", f"p - p^N did not simplify within {LIMITS.seconds:g} s (the limit), so its order in {problem.coupling} cannot be measured without rounding noise"))
    truncated_fn = numeric(truncated_expr, (problem.x, problem.coupling))
    remainder_fn = numeric(remainder_expr, (problem.x, problem.coupling))
    alphas, deviations, degenerate, guess = [], [], False, None
    for j in range(steps + 1):
        alpha = problem.coupling_range[0] * 2.0**-j
        truncated = np.asarray(truncated_fn(x, alpha), dtype=float)
        try:
            solution = minimizer.solve(alpha, guess)
        except NoUniqueMinimizerError:
            # no q* to follow towards α = 0: there is nothing to measure, not a degenerate limit
            return MatchedOrder(-1, math.nan, tuple(alphas + [alpha]), (), tuple(x), False,
                                reason=f"the minimizer is not unique at alpha = {alpha:g} and below (the weight vanishes where probability is missing)")
        except NotNormalizableError:
            degenerate = True
            deviation = -truncated
        else:
            lam = solution.lagrange_multiplier
            guess = lam if lam > 0 else None
            deviation = minimizer.deviation(x, alpha, lam) + np.asarray(remainder_fn(x, alpha), dtype=float)
        alphas.append(alpha)
        deviations.append(np.abs(deviation))
        if np.median(np.abs(deviation) / np.maximum(np.abs(truncated), 1e-300)) < _RESOLUTION:
            break  # δ is below what float64 resolves: the smaller couplings add nothing
    if len(deviations) == 1 and steps > 0:
        # q* = p^N to float64 resolution already at α_min (λ = 0: p^N is normalized as it stands)
        return MatchedOrder(problem.order, math.inf, tuple(alphas), (), tuple(x), degenerate)
    exponents = []
    for d0, d1 in zip(deviations, deviations[1:]):
        with np.errstate(all="ignore"):
            local = np.log2(d0 / d1)
        local = np.where((d0 == 0) & (d1 == 0), np.inf, local)
        exponents.append(float(np.median(local)))
    s = exponents[-1] if exponents else math.nan
    if math.isnan(s):
        order = -1
    else:
        order = problem.order if s == math.inf else int(min(problem.order, max(-1, math.floor(s - 0.75))))
    return MatchedOrder(order, s, tuple(alphas), tuple(exponents), tuple(x), degenerate)
