r"""Verification of a learned density: distance to the exact minimizer and its coefficients in α.

Everything here takes the density under test as a plain callable
``log_density(x, alpha) -> log q(x|alpha)`` (float64 NumPy, interior points of the support), so
that a trained flow, the exact minimizer :math:`q^*` (see :func:`exact_log_density`) and any
hand-made density are checked by the same code.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from renorm.symbolic import (
    ExactMinimizer, Frame, NotNormalizableError, Problem, RenormError, distance_frame, expand, integrate, json_safe, numeric,
)
from renorm.symbolic import coefficients as distributions

from ._config import auto_floor

__all__ = ["LogDensity", "CertificateRow", "OrderDeviation", "Check", "VerifyReport", "exact_log_density", "certificate", "extract_coefficients", "extractable_range",
           "SmallCouplingFit", "small_coupling_fit", "verify"]

#: ``log_density(x, alpha)``: :math:`\log q(x|\alpha)` at interior points, any array shape.
LogDensity = Callable[[np.ndarray, float], np.ndarray]

#: Quantiles of :math:`q^*` that bound the bulk.
BULK_QUANTILES = (0.01, 0.99)
#: Default number of Chebyshev nodes of the fit in α.
NODES = 12
#: Default threshold of :func:`extractable_range`, as a multiple of the verification tolerance.
#: Measured on the examples with :math:`K = N + 2` and 12 nodes: the fit's own bias on
#: :math:`q^*` is about 0.1–0.3 times the non-perturbative correction it has to extrapolate
#: through, so a correction of at most :math:`2.5 \times` tolerance leaves :math:`q^*` a median
#: bias of about tolerance / 4 (LO angularity: 5.0e-3 at tolerance 0.02) and the rest to the flow.
THRESHOLD_PER_TOLERANCE = 2.5
#: The fit applied to :math:`q^*` must reproduce :math:`p^n` to ``GUARD * threshold`` where
#: :func:`extractable_range` admits a point: the extrapolation's gain grows with :math:`n`, so a
#: small correction alone does not guarantee a small bias at :math:`n \ge 2`.
GUARD = 0.2
#: Relative accuracy of the integrals (normalization, total variation, loss).
_RTOL = 1e-9  # a trained flow's log-density is good to ~1e-12: tighter targets only chase noise
#: Absolute accuracy of the total variation: below this, |q - q*| is float64 round-off of q.
_TV_ATOL = 1e-15
#: Points of the dense grids in the bulk (relative errors, minimum density).
_GRID = 2001
#: Narrowest extractable range, as a fraction of the bulk in the endpoint map's variable: a
#: sliver where the fit's bias on q* happens to cross zero is luck, not extractability.
_MIN_WIDTH = 0.01


def _log_q(log_density: LogDensity, x: np.ndarray, alpha: float) -> np.ndarray:
    r""":math:`\log q` at any array of points, returned in their shape as float64."""
    x = np.asarray(x, dtype=float)
    flat = np.ascontiguousarray(x.ravel())
    with np.errstate(all="ignore"):
        values = np.asarray(log_density(flat, float(alpha)), dtype=float)
    if values.size != flat.size:
        raise RenormError(f"log_density returned {values.size} values for {flat.size} points at α = {alpha:g}; it must return one log q per x")
    return values.reshape(x.shape)


def _q(log_density: LogDensity, x: np.ndarray, alpha: float) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.exp(_log_q(log_density, x, alpha))



def _middle(problem: Problem) -> float:
    lo, hi = problem.coupling_range
    return 0.118 if lo < 0.118 < hi else 0.5 * (lo + hi)


def _certificate_alphas(problem: Problem) -> list[float]:
    lo, hi = problem.coupling_range
    return [float(lo), _middle(problem), float(hi)]


def chebyshev_nodes(problem: Problem, count: int = NODES) -> np.ndarray:
    r"""The ``count`` Chebyshev nodes (first kind) of the coupling range, in increasing order."""
    lo, hi = problem.coupling_range
    k = np.arange(count)
    return np.sort(0.5 * (lo + hi) + 0.5 * (hi - lo) * np.cos((2 * k + 1) * np.pi / (2 * count)))


def _nodes(problem: Problem, nodes: int | Sequence[float] | None) -> np.ndarray:
    if nodes is None:
        return chebyshev_nodes(problem)
    if isinstance(nodes, (int, np.integer)):
        return chebyshev_nodes(problem, int(nodes))
    values = np.asarray(nodes, dtype=float).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise RenormError("the couplings of the fit in α must be finite and positive")
    return np.sort(values)


def _framed(problem: Problem, log_density: LogDensity | None, distance: bool) -> tuple[Frame, LogDensity | None]:
    r"""The problem in the distance to its singular endpoint, and :math:`\log q` as a function of it.

    ``distance`` says that ``log_density`` already takes the distance (a trained run's
    :meth:`~renorm.runtime.Run.log_density_distance`); otherwise it is composed with
    :math:`x(d)`, which rounds within :math:`\epsilon|x|` of a nonzero endpoint.
    """
    frame = distance_frame(problem)
    if distance or frame.identity or log_density is None:
        return frame, log_density
    return frame, lambda d, alpha: log_density(frame.x(d), alpha)


class _Exact:
    r"""The exact minimizer with λ(α), break points and bulks cached; ``available`` is False where it does not exist.

    Instances are shared per problem (by its hash and its data files', a few at a time): solving
    for λ(α) is the expensive part of a verification, and the same couplings recur in every check.
    A numeric target and its fitted density as a formula share the hash but not the Monte Carlo errors.
    """

    _shared: dict[tuple[str, ...], "_Exact"] = {}

    @classmethod
    def of(cls, problem: Problem) -> "_Exact":
        key = (problem.sha256, *(source.sha256 for source in problem.data))
        if key not in cls._shared:
            if len(cls._shared) >= 8:
                cls._shared.pop(next(iter(cls._shared)))
            cls._shared[key] = cls(problem)
        return cls._shared[key]

    def __init__(self, problem: Problem):
        self.problem = problem
        self.minimizer = ExactMinimizer(problem)
        # a coupling without a minimizer keeps its error: it is asked about again by every check and plot
        self._solutions: dict[float, Any] = {}
        self._breakpoints: dict[float, np.ndarray] = {}
        self._bulks: dict[float, tuple[float, float]] = {}
        self.reason: str | None = None

    @cached_property
    def coefficients(self) -> "_Coefficients":
        r"""The problem's :math:`p^n` (see :class:`_Coefficients`), derived once."""
        return _Coefficients.of(self.problem)

    def solution(self, alpha: float):
        alpha = float(alpha)
        if alpha not in self._solutions:
            try:
                self._solutions[alpha] = self.minimizer.solve(alpha, self._guess(alpha))
            except NotNormalizableError as error:
                self._solutions[alpha] = error
        found = self._solutions[alpha]
        if isinstance(found, NotNormalizableError):
            raise found.with_traceback(None)
        return found

    def breakpoints(self, alpha: float) -> np.ndarray:
        alpha = float(alpha)
        if alpha not in self._breakpoints:
            self._breakpoints[alpha] = self.minimizer.breakpoints(alpha)
        return self._breakpoints[alpha]

    def bulk(self, alpha: float) -> tuple[float, float]:
        r"""The 1%–99% quantile range of :math:`q^*` at ``alpha``."""
        alpha = float(alpha)
        if alpha not in self._bulks:
            self._bulks[alpha] = _bulk(self.minimizer, self.solution(alpha).q)
        return self._bulks[alpha]

    def _guess(self, alpha: float) -> float | None:
        r"""A warm start for λ at ``alpha``: that of the nearest solved coupling above it, else below it.

        From above, because λ grows with α and walking up to a much larger λ is the slow direction
        (measured: adapting to q ≈ |p| at a Landau pole); a cold solve there took 0.29 s a coupling.
        """
        solved = [(a, s.lagrange_multiplier) for a, s in self._solutions.items() if not isinstance(s, NotNormalizableError) and s.lagrange_multiplier > 0]
        above = [item for item in solved if item[0] > alpha]
        pool = above or solved
        return min(pool, key=lambda item: abs(math.log(item[0] / alpha)))[1] if pool else None

    def available(self, alphas: Sequence[float]) -> bool:
        try:
            for alpha in sorted(alphas, reverse=True):  # downwards: each warm-starts from the one above (see _guess)
                self.solution(alpha)
        except NotNormalizableError as error:
            self.reason = str(error)
            return False
        return True

    def at(self, alpha: float):
        r"""The solution at ``alpha``, or ``None`` where no (unique) minimizer exists there."""
        try:
            return self.solution(alpha)
        except NotNormalizableError:
            return None

    def log_q(self, x: np.ndarray, alpha: float) -> np.ndarray:
        solution = self.solution(alpha)
        return self.minimizer.log_q(np.asarray(x, dtype=float), solution.alpha, solution.lagrange_multiplier)


def exact_log_density(problem: Problem) -> LogDensity:
    r"""The exact minimizer as a log-density callable, :math:`\log q^*(x|\alpha)`, with λ(α) cached.

    Arguments:
        problem: The matching problem.

    Returns:
        ``log_density(x, alpha)``. Evaluating it at a coupling where no normalized minimizer
        exists raises :class:`~renorm.symbolic.NotNormalizableError`.
    """
    exact = _Exact.of(problem)
    return exact.log_q


# --- bulk and grids ------------------------------------------------------------------------

def _quantiles(minimizer: ExactMinimizer, density: Callable[[np.ndarray], np.ndarray], probabilities: Sequence[float]) -> np.ndarray:
    r"""Quantiles of a density on the support, by a cumulative trapezoid in the endpoint map's variable.

    A coarse pass over the whole map range finds where the probability lies; a fine pass there
    resolves the quantiles (to far better than the 1% that bounds the bulk).
    """
    mapping = minimizer.map

    def cumulative(u: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            weight = np.nan_to_num(density(mapping.from_latent(u)) * mapping.jacobian(u), nan=0.0, posinf=0.0, neginf=0.0)
        weight = np.maximum(weight, 0.0)
        return np.concatenate([[0.0], np.cumsum(0.5 * (weight[1:] + weight[:-1]) * np.diff(u))])

    u = np.linspace(*mapping.latent_range(), 12001)
    c = cumulative(u)
    if not c[-1] > 0:
        raise RenormError("the density vanishes everywhere on the support: no bulk to verify on")
    c = c / c[-1]
    first = max(int(np.searchsorted(c, 1e-9)) - 2, 0)
    last = min(int(np.searchsorted(c, 1 - 1e-9)) + 2, u.size - 1)
    fine = np.linspace(u[first], u[last], 20001)
    c = cumulative(fine)
    c = c / c[-1]
    # the cumulative is non-decreasing; strictly increasing pieces suffice for interpolation
    keep = np.concatenate([[True], np.diff(c) > 0])
    return mapping.from_latent(np.interp(np.asarray(probabilities, dtype=float), c[keep], fine[keep]))


def _bulk(minimizer: ExactMinimizer, density: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
    lo, hi = np.sort(_quantiles(minimizer, density, BULK_QUANTILES))
    return float(lo), float(hi)


def _grid(minimizer: ExactMinimizer, lo: float, hi: float, count: int) -> np.ndarray:
    r"""``count`` points from ``lo`` to ``hi``, uniform in the endpoint map's variable (log-spaced near a singular endpoint)."""
    mapping = minimizer.map
    ends = np.sort(mapping.to_latent(np.array([lo, hi])))
    return np.sort(mapping.from_latent(np.linspace(ends[0], ends[1], count)))


# --- certificate ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CertificateRow:
    r"""How close a density is to the exact minimizer :math:`q^*` at one coupling.

    Attributes:
        alpha: The coupling.
        lagrange_multiplier: λ of :math:`q^*`.
        lagrange_multiplier_error: Its Monte Carlo error for a numeric target (``None`` for a formula).
        total_variation: :math:`\frac12 \int |q - q^*|\, dx`.
        median_relative_error: Median of :math:`|q/q^* - 1|` over the bulk.
        max_relative_error: Maximum of :math:`|q/q^* - 1|` over the bulk.
        loss: :math:`L[q]` (``inf`` if it diverges).
        optimal_loss: :math:`L[q^*]`.
        excess_loss: :math:`L[q] - L[q^*]`; :math:`\ge 0` up to quadrature error for any
            normalized :math:`q`, because :math:`q^*` is the minimum.
        normalization: :math:`\int q\, dx`.
        minimum_density: Minimum of :math:`q` on a dense grid in the bulk.
        median_mc_pull: For a numeric target, the median over the bulk of :math:`|q - q^*|/\sigma(q^*)`:
            the density's distance from :math:`q^*` in units of the Monte Carlo error that :math:`q^*`
            inherits from the data (below 1: training is more precise than the data); ``None`` for a formula.
        bulk: The bulk :math:`(x_{1\%}, x_{99\%})`: the quantiles of :math:`q^*` at this coupling.
    """

    alpha: float
    lagrange_multiplier: float
    lagrange_multiplier_error: float | None
    total_variation: float
    median_relative_error: float
    max_relative_error: float
    loss: float
    optimal_loss: float
    excess_loss: float
    normalization: float
    minimum_density: float
    median_mc_pull: float | None
    bulk: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        r"""The row as a JSON-safe dict (non-finite numbers become ``None``)."""
        return json_safe(asdict(self))


def _require_exact(exact: _Exact, alphas: Sequence[float]) -> None:
    if not exact.available(alphas):
        raise RenormError(f"{exact.problem.name}: no certificate, because the problem has no exact minimizer ({exact.reason})")


def _normalization(exact: _Exact, log_density: LogDensity, alpha: float) -> float:
    # a flow is normalized by construction, and its tail in log x may hold mass below e^-400
    return exact.minimizer.integral(lambda x: _q(log_density, x, alpha), exact.breakpoints(alpha), rtol=_RTOL, tails=False)


def _minimum_density(exact: _Exact, log_density: LogDensity, alpha: float, bulk: tuple[float, float]) -> float:
    values = _q(log_density, _grid(exact.minimizer, *bulk, _GRID), alpha)
    return float(np.min(np.where(np.isnan(values), -np.inf, values)))


def _certificate_row(exact: _Exact, log_density: LogDensity, alpha: float) -> CertificateRow:
    alpha = float(alpha)
    solution = exact.solution(alpha)
    minimizer = exact.minimizer
    q_star = lambda x: solution.q(x)
    bulk = exact.bulk(alpha)
    mapping = minimizer.map

    def difference(u: np.ndarray) -> np.ndarray:
        x = mapping.from_latent(u)
        with np.errstate(all="ignore"):
            return np.abs(_q(log_density, x, alpha) - q_star(x)) * mapping.jacobian(u)

    # an absolute floor: where q = q* up to round-off, a relative target would chase the noise
    distance = integrate(difference, *mapping.latent_range(), exact.breakpoints(alpha), rtol=_RTOL, atol=_TV_ATOL).value
    x = _grid(minimizer, *bulk, _GRID)
    log_q = _log_q(log_density, x, alpha)
    with np.errstate(all="ignore"):
        relative = np.abs(np.expm1(log_q - exact.log_q(x, alpha)))
    relative = np.where(np.isnan(relative), np.inf, relative)
    band = solution.q_error(x)
    with np.errstate(all="ignore"):
        pull = None if band is None else float(np.median(np.abs(np.exp(log_q) - q_star(x)) / band))
    loss = minimizer.loss(alpha, log_q=lambda x: _log_q(log_density, x, alpha), rtol=_RTOL)
    return CertificateRow(
        alpha=alpha,
        lagrange_multiplier=float(solution.lagrange_multiplier),
        lagrange_multiplier_error=solution.lagrange_multiplier_error,
        total_variation=0.5 * distance,
        median_relative_error=float(np.median(relative)),
        max_relative_error=float(np.max(relative)),
        loss=float(loss),
        optimal_loss=float(solution.loss),
        excess_loss=float(loss - solution.loss),
        normalization=_normalization(exact, log_density, alpha),
        minimum_density=_minimum_density(exact, log_density, alpha, bulk),
        median_mc_pull=pull,
        bulk=bulk,
    )


def certificate(problem: Problem, log_density: LogDensity, alphas: Sequence[float], *, distance: bool = False) -> list[CertificateRow]:
    r"""Distance of :math:`q` to the exact minimizer :math:`q^*` and its excess loss, per coupling.

    The bulk is the :math:`x` range between the 1% and 99% quantiles of :math:`q^*` at each
    coupling; relative errors and the minimum density are taken on a dense grid there (uniform
    in the endpoint map's variable, so logarithmic near a singular endpoint). Integrals run over
    the whole support in that variable, resolving the singular endpoint.

    Arguments:
        problem: The matching problem.
        log_density: :math:`\log q(x|\alpha)` as a callable of an array ``x`` and a float ``alpha``.
        alphas: The couplings.
        distance: ``log_density`` takes the distance to the singular endpoint, not :math:`x`
            (see :class:`~renorm.symbolic.Frame`); the bulk is then given in that distance.

    Returns:
        One :class:`CertificateRow` per coupling.

    Raises:
        RenormError: If the problem has no normalized exact minimizer at one of the couplings.
    """
    frame, log_density = _framed(problem, log_density, distance)
    exact = _Exact.of(frame.problem)
    _require_exact(exact, alphas)
    return [_certificate_row(exact, log_density, alpha) for alpha in alphas]


# --- coefficients --------------------------------------------------------------------------

def extract_coefficients(
    problem: Problem,
    log_density: LogDensity,
    x: np.ndarray,
    degree: int | None = None,
    nodes: int | Sequence[float] | None = None,
) -> np.ndarray:
    r"""The coefficients :math:`q^n(x)`, :math:`n \le N`, of :math:`q(x|\alpha) = \sum_n \alpha^n q^n(x)`, by a fit in α.

    Method: :math:`q(x|\alpha_j)` is evaluated at the Chebyshev nodes :math:`\alpha_j` of the
    coupling range (12 by default) and fitted, for every :math:`x` at once, by least squares with
    a polynomial of degree :math:`K` (default :math:`N + 2`) in the scaled coupling
    :math:`\alpha/\alpha_{max}` (a Vandermonde matrix on :math:`[\alpha_{min}/\alpha_{max}, 1]`,
    condition number ~200 for :math:`K = 3`). The coefficient of :math:`(\alpha/\alpha_{max})^n`
    divided by :math:`\alpha_{max}^n` is :math:`q^n(x)`.

    Limitations: the coupling range does not reach :math:`\alpha = 0`, so :math:`q^n` is an
    extrapolation. It is trustworthy only where the part of :math:`q` that is not a polynomial
    of degree :math:`K` in α (for the exact minimizer: its non-perturbative correction, e.g.
    :math:`e^{-W(\lambda p)}` with λ(α) vanishing faster than any power) is small across the
    range; :func:`extractable_range` finds where. Independent noise of relative size σ in
    :math:`q(x|\alpha_j)` becomes an error of about :math:`11\sigma` in :math:`q^1/p^1` for the
    LO defaults (:math:`K = 3`, 12 nodes on [0.05, 0.3]), and grows about threefold per extra degree.

    Arguments:
        problem: The matching problem (its order :math:`N` and coupling range).
        log_density: :math:`\log q(x|\alpha)`.
        x: Interior points, shape ``(M,)``.
        degree: :math:`K \ge N`; default :math:`N + 2`.
        nodes: The number of Chebyshev nodes, or the couplings themselves.

    Returns:
        Array of shape ``(N + 1, M)``: row :math:`n` is :math:`q^n(x)`.

    Examples:
        >>> import numpy as np
        >>> from renorm.symbolic import make_problem
        >>> problem = make_problem(name="toy", density="alpha*2", support=["0", "1"], order=1)
        >>> toy = lambda x, a: np.log((1 - a) + 2 * a * x)
        >>> extract_coefficients(problem, toy, np.array([0.25, 0.75])).round(12)
        array([[ 1. ,  1. ],
               [-0.5,  0.5]])
    """
    x = np.asarray(x, dtype=float).ravel()
    order = problem.order
    K = order + 2 if degree is None else int(degree)
    alphas = _nodes(problem, nodes)
    if K < order:
        raise RenormError(f"the fit in α needs degree ≥ N = {order}, got {K}")
    if alphas.size < K + 1:
        raise RenormError(f"a fit of degree {K} in α needs at least {K + 1} couplings, got {alphas.size}")
    return fit_in_alpha(np.stack([_q(log_density, x, alpha) for alpha in alphas]), alphas, order, K)


def fit_in_alpha(values: np.ndarray, alphas: np.ndarray, order: int, degree: int) -> np.ndarray:
    r"""Rows :math:`n \le` ``order`` of the least-squares fit of ``values`` (shape ``(J, M)``, at the
    couplings ``alphas``) by a polynomial of ``degree`` in :math:`\alpha/\alpha_{max}`, rescaled to
    the coefficients of :math:`\alpha^n` (see :func:`extract_coefficients`)."""
    scale = float(alphas.max())
    design = np.vander(alphas / scale, degree + 1, increasing=True)
    fitted, *_ = np.linalg.lstsq(design, values, rcond=None)
    return fitted[: order + 1] / scale ** np.arange(order + 1)[:, None]


@dataclass(frozen=True)
class _Coefficients:
    r"""The symbolic coefficients :math:`p^n` of a problem as NumPy functions, and which vanish."""

    values: list[Callable[[np.ndarray], np.ndarray]]
    vanishing: list[bool]
    leading: int | None
    problem: Problem
    #: Whether :math:`p` is a polynomial of degree at most N in α, so that :meth:`beyond` vanishes.
    polynomial: bool

    @classmethod
    def of(cls, problem: Problem) -> "_Coefficients":
        r"""The coefficients of ``problem`` (kept per problem by :attr:`_Exact.coefficients`)."""
        terms = expand(problem)
        vanishing = [bool(sp.simplify(term) == 0) for term in terms]
        functions = [numeric(term, (problem.x,)) for term in terms]
        leading = next((n for n, zero in enumerate(vanishing) if not zero), None)
        polynomial = bool(sp.simplify(sp.diff(problem.density, problem.coupling, problem.order + 1)) == 0)
        return cls(functions, vanishing, leading, problem, polynomial)

    def beyond(self, p: Callable[[np.ndarray, float], np.ndarray], x: np.ndarray, alpha: float) -> np.ndarray:
        r""":math:`p(x|\alpha) - \sum_{n \le N} \alpha^n p^n(x)`, the target's orders beyond N (zero for a polynomial target)."""
        if self.polynomial:
            return np.zeros(x.shape)
        with np.errstate(all="ignore"):
            return p(x, alpha) - sum(alpha**n * self(n, x) for n in range(self.problem.order + 1))

    @cached_property
    def _distributions(self):
        return distributions(self.problem)

    def cumulant(self, n: int, x: np.ndarray) -> np.ndarray:
        r""":math:`\Sigma^n(x) = \int_a^x p^n` with the δ and plus parts (:meth:`~renorm.symbolic.Coefficient.cumulant`)."""
        return self._distributions[n].cumulant(x)

    def __call__(self, n: int, x: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(self.values[n](x), dtype=float), x.shape).copy()

    def scale(self, n: int, x: np.ndarray, alpha_max: float) -> np.ndarray:
        r"""The scale :math:`s_n` of order :math:`n`'s deviation (see :class:`OrderDeviation`)."""
        if not self.vanishing[n]:
            return np.abs(self(n, x))
        m = self.leading
        return np.full(x.shape, np.nan) if m is None else alpha_max ** (m - n) * np.abs(self(m, x))

    def deviation(self, n: int, extracted: np.ndarray, x: np.ndarray, alpha_max: float) -> np.ndarray:
        r""":math:`|q^n - p^n| / s_n` (see :class:`OrderDeviation`); ``inf`` where undefined."""
        with np.errstate(all="ignore"):
            relative = np.abs(extracted - self(n, x)) / self.scale(n, x, alpha_max)
        return np.where(np.isnan(relative), np.inf, relative)


def _longest_run(mask: np.ndarray) -> tuple[int, int] | None:
    r"""First and last index of the longest run of ``True``."""
    best, start = None, None
    for i, flag in enumerate(np.append(mask, False)):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if best is None or i - start > best[1] - best[0] + 1:
                best = (start, i - 1)
            start = None
    return best


def _range(
    exact: _Exact,
    coefficients: _Coefficients,
    bulk: tuple[float, float],
    orders: Sequence[int],
    threshold: float,
    alphas: np.ndarray,
    use_exact: bool,
    degree: int | None = None,
) -> tuple[float, float] | None:
    r"""The largest interval of the bulk where every order in ``orders`` is extractable (see :func:`extractable_range`)."""
    minimizer = exact.minimizer
    x = _grid(minimizer, *bulk, _GRID)
    ok = np.ones(x.shape, dtype=bool)
    for alpha in alphas:
        with np.errstate(all="ignore"):
            ok &= minimizer.p(x, alpha) > 0
    if use_exact:
        corrections = []
        for alpha in alphas:
            solution = exact.solution(alpha)
            corrections.append((alpha, np.abs(minimizer.deviation(x, alpha, solution.lagrange_multiplier))))
        for n in orders:
            reference = coefficients.leading if coefficients.vanishing[n] else n
            if reference is None:
                return None
            term = np.abs(coefficients(reference, x))
            with np.errstate(all="ignore"):
                ratio = np.max([d / (alpha**reference * term) for alpha, d in corrections], axis=0)
            ok &= ratio <= threshold
        # the guard: the fit applied to q* itself must reproduce p^n
        star = extract_coefficients(exact.problem, exact.log_q, x, degree=degree, nodes=alphas)
        for n in orders:
            ok &= coefficients.deviation(n, star[n], x, float(exact.problem.coupling_range[1])) <= GUARD * threshold
    run = _longest_run(ok)
    if run is None or run[1] - run[0] < _MIN_WIDTH * (x.size - 1):
        return None
    return float(x[run[0]]), float(x[run[1]])


def _union_bulk(exact: _Exact, density: Callable[[float], Callable[[np.ndarray], np.ndarray]] | None, alphas: Sequence[float]) -> tuple[float, float]:
    r"""The union of the bulks at ``alphas``: of :math:`q^*` when ``density`` is ``None``, else of ``density(alpha)``."""
    bulks = [exact.bulk(alpha) if density is None else _bulk(exact.minimizer, density(alpha)) for alpha in alphas]
    return min(b[0] for b in bulks), max(b[1] for b in bulks)


def extractable_range(
    problem: Problem,
    log_density: LogDensity | None = None,
    *,
    order: int | None = None,
    threshold: float = THRESHOLD_PER_TOLERANCE * 0.02,
    degree: int | None = None,
    nodes: int | Sequence[float] | None = None,
    distance: bool = False,
) -> tuple[float, float] | None:
    r"""The :math:`x` interval where the coefficients :math:`q^n` can be extracted by :func:`extract_coefficients`.

    Defined from the exact minimizer :math:`q^*`: the fit in α is biased by whatever part of
    :math:`q` is not a low-degree polynomial in α, and for :math:`q^*` that is its
    non-perturbative correction :math:`\delta = q^* - p`. A point :math:`x` is extractable for
    order :math:`n` when, at every node :math:`\alpha_j` of the fit,

    .. math:: |q^*(x|\alpha_j) - p(x|\alpha_j)| \le \text{threshold} \cdot \alpha_j^n |p^n(x)|,

    i.e. the correction is small against the :math:`\alpha^n` term itself (for the LO angularity,
    :math:`n = 1`, this is :math:`|q^*/p - 1| \le` threshold, largest at :math:`\alpha_{max}`;
    measuring against :math:`\alpha^n p^n` rather than :math:`p` matters for :math:`N \ge 2`,
    where the :math:`\alpha^2` term is small). An order whose :math:`p^n` vanishes in the bulk
    (e.g. :math:`n = 0` when :math:`p^0` is a pure δ) uses the leading non-vanishing order's
    criterion. Two guards follow: the fit applied to :math:`q^*` itself must reproduce
    :math:`p^n` to ``GUARD * threshold`` (= tolerance / 2 by default) at the point — the
    extrapolation's gain grows with :math:`n`, and for the NLO example a threshold of 0.1 alone
    admits x ∈ [0.061, 0.075] for :math:`n = 2`, where that bias is 126% — and the interval must
    cover at least 1% of the bulk in the endpoint map's variable. The points must also have
    :math:`p(x|\alpha_j) > 0` at every node and lie in the bulk (the union over
    :math:`\alpha_{min}`, the middle coupling and :math:`\alpha_{max}` of the 1%–99% quantile
    ranges of :math:`q^*`); the answer is the longest interval of such points.

    The default threshold 0.05 is measured: with :math:`K = N + 2` and 12 nodes the fit's bias
    on :math:`q^*` is about 0.1–0.3 times the correction. For :math:`q^1` of the LO angularity
    the range is x ∈ [0.322, 0.385] with a median bias of 5.0e-3 (max 8.3e-3), a quarter of
    the default tolerance 0.02; a threshold of 0.2 would, without the guard, give a median of
    2.8e-2 on [0.154, 0.385], above the tolerance. The soft-collinear example is alike
    (5.2e-3 on [0.627, 0.754]); for the running coupling no x qualifies (the correction is at
    least 15% of :math:`\alpha p^1` everywhere at :math:`\alpha_{max}` = 0.3), nor for
    :math:`n = 2` of the NLO example.

    Without an exact minimizer (no normalized :math:`q^*`), the bias cannot be estimated: the
    range falls back to the bulk of ``log_density`` itself (where :math:`p > 0` at the nodes),
    which :func:`verify` reports as such.

    Arguments:
        problem: The matching problem.
        log_density: :math:`\log q`, needed only for the fallback.
        order: The order :math:`n` to extract; default: all :math:`n \le N` at once.
        threshold: The largest relative correction allowed.
        degree: Of the fit in α, as in :func:`extract_coefficients`.
        nodes: The couplings of the fit (count or values), as in :func:`extract_coefficients`.
        distance: ``log_density`` takes the distance to the singular endpoint, not :math:`x`.

    Returns:
        ``(lo, hi)`` in the distance to the singular endpoint (in :math:`x` where that is 0 or
        there is none; see :class:`~renorm.symbolic.Frame`), or ``None`` where no interval
        qualifies (the coupling range is too large for the exact minimizer's correction to be
        small anywhere).
    """
    frame, log_density = _framed(problem, log_density, distance)
    problem = frame.problem
    exact = _Exact.of(problem)
    alphas = _nodes(problem, nodes)
    certificate_alphas = _certificate_alphas(problem)
    use_exact = exact.available(list(alphas) + certificate_alphas)
    if use_exact:
        bulk = _union_bulk(exact, None, certificate_alphas)
    elif log_density is not None:
        bulk = _union_bulk(exact, lambda a: (lambda x: _q(log_density, x, a)), certificate_alphas)
    else:
        raise RenormError(f"{problem.name}: no exact minimizer ({exact.reason}); pass log_density to use its bulk instead")
    orders = range(problem.order + 1) if order is None else [int(order)]
    return _range(exact, exact.coefficients, bulk, list(orders), threshold, alphas, use_exact, degree)


# --- coefficients at small couplings -------------------------------------------------------

#: A point is checked with couplings up to the largest α at which, for every order n and every
#: coupling below it, :math:`|q^* - p| \le` ``CORRECTION`` :math:`\alpha^n |p^n|`.
CORRECTION = 1e-3
#: A point's fit spans at least this factor in α (from the lowest coupling to its top).
LEVER = 4.0
#: The same fit applied to :math:`q^*` must reproduce :math:`p^n` to ``WINDOW_GUARD * tolerance`` at a point.
WINDOW_GUARD = 0.5
#: Each point's fit has the lowest degree in α, from N to N + 2, whose fit of :math:`q^*` reproduces
#: every :math:`p^n` to this (relative to the order's scale); N + 2 where none does, or without :math:`q^*`.
FIT_BIAS = 1e-3
#: Couplings of the fits, log-spaced over the couplings checked: each point's fit uses those up to its top.
LEVELS = 24
#: Points of the bulk grid, uniform in log distance to the singular endpoint.
BULK_POINTS = 241


def _levels(couplings: tuple[float, float]) -> np.ndarray:
    r"""The fits' couplings: ``LEVELS`` log-spaced from the lowest to the highest."""
    return np.geomspace(*couplings, LEVELS)


def _logarithmic(problem: Problem, bulk: tuple[float, float]) -> bool:
    r"""Whether the bulk is measured in log distance to a singular endpoint (the distance frame puts it at 0), else in x."""
    return problem.singular != "none" and bulk[0] > 0


def _bulk_grid(problem: Problem, bulk: tuple[float, float], count: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Points of the bulk and the share of it each stands for: uniform in log distance to a singular
    endpoint (the distance frame puts it at 0), uniform in x without one."""
    lo, hi = bulk
    logarithmic = _logarithmic(problem, bulk)
    x = np.geomspace(lo, hi, count) if logarithmic else np.linspace(lo, hi, count)
    t = np.log(x) if logarithmic else x
    edges = np.concatenate([[t[0]], 0.5 * (t[1:] + t[:-1]), [t[-1]]])
    return x, np.diff(edges) / (t[-1] - t[0])


@dataclass(frozen=True)
class SmallCouplingFit:
    r"""The coefficients of a density in α, extracted at small couplings, point by point across the bulk.

    At each point :math:`x` of the bulk grid :math:`q(x|\alpha) - p_{>N}(x|\alpha)` is evaluated at
    the ``LEVELS`` log-spaced couplings from the lowest to the point's own top coupling, and fitted
    by least squares, each residual relative to q* there, with a polynomial in α; the coefficient of
    :math:`\alpha^n` is :math:`q^n(x)`. Here :math:`p_{>N} = p - \sum_{n \le N} \alpha^n p^n` are
    the target's own orders beyond N: they are :math:`O(\alpha^{N+1})`, so taking them off leaves
    the coefficients through N as they are, and :math:`q^* - p_{>N}` is a polynomial of degree N
    where :math:`q^*` is :math:`p` (zero for a fixed-order target; for the running coupling it took
    the flow's q¹ from 5.6% to 0.24% median off p¹, its fit from degree 2–3 to 1 and the gain on
    the flow's errors from 9.8 to 1.6). The degree K is the lowest from N to N + 2 at which the
    same fit of :math:`q^*` reproduces every :math:`p^n` to ``FIT_BIAS``: each extra degree
    multiplies the density's own errors (measured on three windowed flows of the angularity: the
    median of :math:`|q^1 - p^1|/p^1` 1.2%, 0.74%, 0.29% at K = N + 2, 0.19%, 0.15%, 0.05% at
    K = N). The top is the largest of those couplings below which the exact minimizer's non-perturbative correction is at most
    ``CORRECTION`` times every :math:`\alpha^n p^n` and :math:`p > 0`: for the LO angularity
    :math:`q^*/p - 1` is -0.43 at x = 1e-3 and α = 0.05, but -1.2e-10 at α = 0.003, so the
    coefficients are read where :math:`q^*` is :math:`p`. A point is checked for order :math:`n`
    where its couplings span at least a factor ``LEVER`` and the same fit applied to :math:`q^*`
    reproduces :math:`p^n` to ``WINDOW_GUARD * tolerance``. The cumulants
    :math:`\Sigma^n(x) = \int_a^x q^n = \delta_{n0} - T^n(x)` come from the same fit of the tail
    :math:`T(x|\alpha) = \int_x^b (q - p_{>N})`, so they carry the δ coefficient that the pointwise
    :math:`q^n` cannot.

    **Error estimate.** The fit is linear in :math:`q`, so at every point

    .. math:: |q^n - p^n| \le |q^{*n} - p^n| + G_n \max_j |q(\alpha_j)/q^*(\alpha_j) - 1|,
              \qquad G_n = \sum_j |A^+_{nj}|\, q^*(\alpha_j) / s_n,

    with :math:`A^+` the fit's pseudo-inverse: the method's bias on :math:`q^*` (``bias``) plus the
    density's own relative error at the fit's couplings, amplified by the gain :math:`G_n`.

    Attributes:
        x: The bulk grid; ``share``: the fraction of the bulk (in log distance) each point stands for.
        top: Each point's top coupling (NaN where no coupling qualifies); ``degree``: its fit's degree K (NaN there too).
        lowest: The lowest coupling.
        extracted, exact: :math:`q^n` of the density and of :math:`q^*` (shape ``(N + 1, M)``; NaN where not fitted).
        gain: :math:`G_n` per point; ``error``: the density's largest relative error to :math:`q^*` at the point's couplings.
        cumulant, exact_cumulant: :math:`\Sigma^n` of the density's and of :math:`q^*`'s fit.
    """

    x: np.ndarray
    share: np.ndarray
    top: np.ndarray
    degree: np.ndarray
    lowest: float
    extracted: np.ndarray
    exact: np.ndarray | None
    gain: np.ndarray | None
    error: np.ndarray | None
    cumulant: np.ndarray
    exact_cumulant: np.ndarray | None


def _tails(exact: _Exact, function: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    r""":math:`\int_x^b` ``function`` at sorted points ``x``: Gauss–Legendre panels between them in the
    endpoint map's variable, and an adaptive integral from the last one to the end."""
    mapping = exact.minimizer.map
    u = mapping.to_latent(x)
    start, end = mapping.latent_range()
    density = lambda t: function(mapping.from_latent(t)) * mapping.jacobian(t)
    nodes, weights = np.polynomial.legendre.leggauss(8)
    if mapping.increasing:
        lo, hi, last = u[:-1], u[1:], integrate(density, u[-1], end, rtol=1e-10, atol=1e-300).value
    else:
        lo, hi, last = u[1:], u[:-1], integrate(density, start, u[-1], rtol=1e-10, atol=1e-300).value
    half = 0.5 * (hi - lo)
    t = 0.5 * (hi + lo)[:, None] + half[:, None] * nodes[None, :]
    with np.errstate(all="ignore"):
        panels = np.nan_to_num((density(t) * weights[None, :]).sum(1) * half, nan=np.inf)
    return last + np.concatenate([np.cumsum(panels[::-1])[::-1], [0.0]])


def _tops(exact: _Exact, coefficients: "_Coefficients", x: np.ndarray, couplings: tuple[float, float], use_exact: bool) -> np.ndarray:
    r"""Each point's top coupling (see :class:`SmallCouplingFit`); NaN where none spans ``LEVER``."""
    lo, hi = couplings
    levels = _levels(couplings)
    problem, minimizer = exact.problem, exact.minimizer
    if not use_exact:
        # without q* nothing measures the correction: the couplings below the physical range, if trained
        top = min(hi, float(problem.coupling_range[0])) if lo < problem.coupling_range[0] else hi
        return np.full(x.shape, top if top >= LEVER * lo else np.nan)
    references = sorted({coefficients.leading if coefficients.vanishing[n] else n for n in range(problem.order + 1)} - {None})
    ok = np.ones(x.shape, dtype=bool)
    top = np.full(x.shape, np.nan)
    for alpha in levels:
        solution = exact.solution(alpha)
        with np.errstate(all="ignore"):
            correction = np.abs(minimizer.deviation(x, alpha, solution.lagrange_multiplier))
            ok &= minimizer.p(x, alpha) > 0
            for n in references:
                ok &= correction <= CORRECTION * alpha**n * np.abs(coefficients(n, x))
        if not ok.any():
            break
        top = np.where(ok, alpha, top)
    return np.where(top >= LEVER * lo * (1 - 1e-12), top, np.nan)


def small_coupling_fit(
    problem: Problem,
    log_density: LogDensity,
    couplings: tuple[float, float] | None = None,
    *,
    bulk: tuple[float, float] | None = None,
    points: int = BULK_POINTS,
    distance: bool = False,
) -> SmallCouplingFit:
    r"""The coefficients of ``log_density`` at small couplings across the bulk (:class:`SmallCouplingFit`).

    Arguments:
        problem: The matching problem.
        log_density: :math:`\log q(x|\alpha)`; it must be defined on ``couplings``.
        couplings: The couplings the density may be evaluated at (a trained flow's
            :attr:`~renorm.runtime.Run.couplings`); default from the floor of ``alpha_floor = auto`` (:func:`~renorm.runtime._config.auto_floor`; α_min where that is none) to α_max.
        bulk: The range of points; default the union of the 1%–99% quantile ranges of :math:`q^*`
            at α_min, the middle coupling and α_max (without :math:`q^*`: of the density).
        points: Points of the grid, uniform in log distance to the singular endpoint.
        distance: ``log_density`` takes the distance to the singular endpoint, not :math:`x`.
    """
    frame, log_density = _framed(problem, log_density, distance)
    problem = frame.problem
    couplings = _checked_couplings(problem, couplings)
    exact = _Exact.of(problem)
    use_exact = exact.available(list(_levels(couplings)) + _certificate_alphas(problem))
    if bulk is None:
        flow = None if use_exact else (lambda a: (lambda x: _q(log_density, x, a)))
        bulk = _union_bulk(exact, flow, _certificate_alphas(problem))
    return _small_coupling_fit(exact, log_density, couplings, bulk, points, use_exact)


def _checked_couplings(problem: Problem, couplings: tuple[float, float] | None) -> tuple[float, float]:
    lo, hi = problem.coupling_range
    if couplings is None:
        return (auto_floor(float(lo)) or float(lo), float(hi))
    a, b = (float(c) for c in couplings)
    if not (0 < a < b and math.isfinite(b)):
        raise RenormError(f"the couplings to check must satisfy 0 < lowest < highest, got [{a:g}, {b:g}]")
    return a, b


def _small_coupling_fit(exact: _Exact, log_density: LogDensity, couplings: tuple[float, float], bulk: tuple[float, float],
                        points: int, use_exact: bool) -> SmallCouplingFit:
    problem = exact.problem
    coefficients = exact.coefficients
    order = problem.order
    degrees = range(order, order + 3) if use_exact else (order + 2,)
    x, share = _bulk_grid(problem, bulk, points)
    levels = _levels(couplings)
    top = _tops(exact, coefficients, x, couplings, use_exact)
    shape = (order + 1, x.size)
    extracted, cumulant = np.full(shape, np.nan), np.full(shape, np.nan)
    star, star_cumulant, gain = (np.full(shape, np.nan) if use_exact else None for _ in range(3))
    error = np.full(x.size, np.nan) if use_exact else None
    degree = np.full(x.size, np.nan)
    used = levels[: int(np.searchsorted(levels, np.nanmax(top), side="right"))] if np.isfinite(top).any() else levels[:0]
    # every point's fit uses the candidate tops up to its own: one evaluation (and one λ) per coupling
    values = np.stack([_q(log_density, x, a) for a in used]) if used.size else np.empty((0, x.size))
    tails = np.stack([_tails(exact, lambda t, a=a: _q(log_density, t, a), x) for a in used]) if used.size else values
    if use_exact and used.size:
        reference = np.stack([np.exp(exact.log_q(x, a)) for a in used])
        reference_tails = np.stack([_tails(exact, lambda t, a=a: np.exp(exact.log_q(t, a)), x) for a in used])
    # the fits take the target's orders beyond N off q first: that leaves the Taylor coefficients
    # through N as they are and q* - beyond a polynomial of degree N, so K = N fits it
    beyond = beyond_tails = np.zeros_like(values)
    if not coefficients.polynomial and used.size:
        beyond = np.stack([coefficients.beyond(exact.minimizer.p, x, a) for a in used])
        beyond_tails = np.stack([_tails(exact, lambda t, a=a: coefficients.beyond(exact.minimizer.p, t, a), x) for a in used])
    delta = (np.arange(order + 1) == 0).astype(float)[:, None]
    for level in np.unique(top[np.isfinite(top)]):
        where = top == level
        count = int(np.searchsorted(used, level * (1 + 1e-12), side="right"))
        pointwise, tail = (v[:count][:, where] for v in (values - beyond, tails - beyond_tails))
        sizes, tail_sizes = (v[:count][:, where] for v in ((reference, reference_tails) if use_exact else (values, tails)))
        fitted, tail_fitted = sizes - beyond[:count][:, where], tail_sizes - beyond_tails[:count][:, where]
        scale = np.stack([coefficients.scale(n, x[where], level) for n in range(order + 1)])
        # one fit per candidate degree, then at each point the lowest degree that fits q*
        fits = [[_relative_fit(np.vander(used[:count] / level, k + 1, increasing=True), order, level, size) for size in (sizes, tail_sizes)]
                for k in degrees]
        pick = np.full(int(where.sum()), len(fits) - 1)
        if use_exact:
            target = np.stack([coefficients(n, x[where]) for n in range(order + 1)])
            with np.errstate(all="ignore"):
                biases = np.stack([np.max(np.abs(np.einsum("pnc,cp->np", inverse, fitted) - target) / scale, axis=0) for inverse, _ in fits])
            fitting = biases <= FIT_BIAS
            pick = np.where(fitting.any(axis=0), np.argmax(fitting, axis=0), pick)
        rows = np.arange(pick.size)
        inverse, tail_inverse = (np.stack([f[side] for f in fits])[pick, rows] for side in (0, 1))
        degree[where] = np.asarray(degrees)[pick]
        extracted[:, where] = np.einsum("pnc,cp->np", inverse, pointwise)
        cumulant[:, where] = delta - np.einsum("pnc,cp->np", tail_inverse, tail)
        if use_exact:
            star[:, where] = np.einsum("pnc,cp->np", inverse, fitted)
            star_cumulant[:, where] = delta - np.einsum("pnc,cp->np", tail_inverse, tail_fitted)
            with np.errstate(all="ignore"):
                gain[:, where] = np.einsum("pnc,cp->np", np.abs(inverse), sizes) / scale
                error[where] = np.max(np.abs((pointwise - fitted) / sizes), axis=0)
    return SmallCouplingFit(x, share, top, degree, couplings[0], extracted, star, gain, error, cumulant, star_cumulant)


def _relative_fit(design: np.ndarray, order: int, level: float, sizes: np.ndarray) -> np.ndarray:
    r"""Per point, the weighted least-squares operator that takes the values at the couplings to
    the coefficients of :math:`\alpha^0 \dots \alpha^N`, shape ``(points, N + 1, couplings)``.

    Each residual is weighted by 1 / ``sizes`` (q* there, or the values themselves): the
    relative errors of a density are what is comparable across couplings, and an unweighted fit
    lets the largest couplings, whose values are largest, decide the low coefficients (measured on
    a trained flow with 0.2% relative errors at the couplings: q¹ 1.1% off unweighted, 0.26% weighted).
    """
    with np.errstate(all="ignore"):
        weight = np.where(np.isfinite(sizes) & (sizes > 0), 1 / sizes, 0.0).T[:, :, None]
    inverse = np.linalg.pinv(design[None] * weight) * weight.transpose(0, 2, 1)
    return inverse[:, : order + 1] / level ** np.arange(order + 1)[None, :, None]


def _relative(coefficients: "_Coefficients", n: int, values: np.ndarray, fit: SmallCouplingFit) -> np.ndarray:
    r""":math:`|q^n - p^n| / s_n` at the fit's points, with :math:`s_n` taken at each point's top coupling."""
    with np.errstate(all="ignore"):
        scale = coefficients.scale(n, fit.x, 1.0) * (np.where(np.isfinite(fit.top), fit.top, np.nan) ** (
            (coefficients.leading - n) if coefficients.vanishing[n] and coefficients.leading is not None else 0))
        relative = np.abs(values - coefficients(n, fit.x)) / scale
    return np.where(np.isnan(relative), np.inf, relative)


# --- the report ----------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderDeviation:
    r"""How well the extracted :math:`q^n` matches :math:`p^n` across the bulk (see :class:`SmallCouplingFit`).

    Attributes:
        n: The order.
        median_relative_deviation: Median over the checked points of :math:`|q^n - p^n| / s_n`
            (``nan`` where no point is checked).
        max_relative_deviation: Its maximum.
        scale: What :math:`s_n` is: ``"p^n"`` (:math:`|p^n|`), or, where :math:`p^n` vanishes in
            the bulk, ``"alpha_top^(m-n) p^m"``: the :math:`\alpha^n` term against the leading
            term :math:`\alpha^m p^m` at the point's top coupling.
        extractable: Whether any point was checked.
        x_range: The span of the checked points (``None`` if none).
        points: Number of points checked.
        mc_error: For an order fitted from Monte Carlo data, the median over the same points of its
            fit's one-sigma error in the same units (``None`` for a formula).
        coverage: The fraction of the bulk, in log distance to the singular endpoint (in x
            without one), where the order was checked.
        couplings: The lowest coupling of the fits and the highest top coupling used.
        bias: Median over the checked points of the same fit's deviation on :math:`q^*` (the
            method's own error; ``None`` without :math:`q^*`).
        error_estimate: Median of the bound ``bias + G_n × (relative error at the couplings)``
            (:class:`SmallCouplingFit`; ``None`` without :math:`q^*`).
        cumulant_median, cumulant_max: Of :math:`|\Sigma^n - \Sigma^n_p| / |\Sigma^n_p|`, the
            cumulants with their δ coefficient, on the same points (``nan`` for :math:`n = 0`, not compared).
        degrees: The lowest and highest degree in α of the fits at the checked points (``None`` for the
            physical-range fit, whose degree is always N + 2).
        margin: How far the order is from failing: the smallest of
            1 - median/tolerance, 1 - max/max_tolerance, 1 - cumulant_median/tolerance and
            (coverage - min_coverage)/(1 - min_coverage) where that is defined; negative fails.
    """

    n: int
    median_relative_deviation: float
    max_relative_deviation: float
    scale: str
    extractable: bool
    x_range: tuple[float, float] | None
    points: int
    mc_error: float | None = None
    coverage: float = 0.0
    couplings: tuple[float, float] | None = None
    bias: float | None = None
    error_estimate: float | None = None
    cumulant_median: float = math.nan
    cumulant_max: float = math.nan
    margin: float = math.nan
    degrees: tuple[int, int] | None = None


@dataclass(frozen=True)
class Check:
    r"""One check of a verification.

    Attributes:
        name: What was checked, e.g. ``q^1 vs p^1``.
        ran: Whether it could be computed (an order that is not extractable is not compared).
        passed: Whether it passed (``False`` when it did not run).
        detail: The numbers behind it, or why it did not run.
    """

    name: str
    ran: bool
    passed: bool
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    r"""The verification of a density against the symbolic expansion and the exact minimizer.

    Attributes:
        orders: One :class:`OrderDeviation` per :math:`n \le N`.
        certificate: :class:`CertificateRow` per coupling (empty without an exact minimizer).
        alphas: The couplings of the normalization and positivity checks.
        normalization: :math:`\int q\,dx` per coupling in :attr:`alphas`.
        minimum_density: Smallest :math:`q` on the bulk grids over all :attr:`alphas`.
        x_range: The range of the leading order (``None`` if it is not extractable).
        x_range_source: ``"exact minimizer"`` or ``"flow bulk (no exact minimizer)"``.
        tolerance: Largest median relative deviation allowed per order.
        threshold: The extractable-range threshold used.
        normalization_tolerance: Largest :math:`|\int q - 1|` allowed.
        passed: Whether every check that ran passed, at least one order was compared with
            :math:`p^n`, and every number is finite (see :func:`verify`).
        checks: Each :class:`Check`, run or not.
        notes: Plain sentences on what could not be checked and why.
        variable: What the ranges and bulks are given in: :math:`x`, or the distance to a
            nonzero singular endpoint such as ``1 - x``.
        max_tolerance: Largest maximum relative deviation allowed per order (``None``: not checked).
        min_coverage: Smallest fraction of the bulk each order must be checked on (``None``: not checked).
        couplings: The couplings the density was evaluated at for the coefficients.
    """

    orders: list[OrderDeviation]
    certificate: list[CertificateRow]
    alphas: list[float]
    normalization: list[float]
    minimum_density: float
    x_range: tuple[float, float] | None
    x_range_source: str
    tolerance: float
    threshold: float
    normalization_tolerance: float
    passed: bool
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    variable: str = "x"
    max_tolerance: float | None = None
    min_coverage: float | None = None
    couplings: tuple[float, float] | None = None

    def to_json(self) -> dict[str, Any]:
        r"""The report as one JSON-safe object (schema ``verify`` in ``runtime/schemas/renorm.schema.json``).

        ``couplings`` has one entry per coupling of :attr:`alphas`: ``alpha`` and ``normalization``,
        and the :class:`CertificateRow` fields where :math:`q^*` exists there (``null`` where it
        does not); non-finite numbers become ``null``.
        """
        rows = {row.alpha: row for row in self.certificate}
        empty = {f.name: None for f in fields(CertificateRow)}
        couplings = [{**empty, **(asdict(rows[a]) if a in rows else {}), "alpha": a, "normalization": v}
                     for a, v in zip(self.alphas, self.normalization)]
        return json_safe({
            "passed": self.passed,
            "variable": self.variable,
            "tolerance": self.tolerance,
            "max_tolerance": self.max_tolerance,
            "min_coverage": self.min_coverage,
            "couplings_checked": self.couplings,
            "threshold": self.threshold,
            "normalization_tolerance": self.normalization_tolerance,
            "orders": [asdict(o) for o in self.orders],
            "x_range": self.x_range,
            "x_range_source": self.x_range_source,
            "minimum_density": self.minimum_density,
            "couplings": couplings,
            "checks": [asdict(c) for c in self.checks],
            "notes": self.notes,
        })


def _order_deviation(
    problem: Problem,
    exact: _Exact,
    coefficients: _Coefficients,
    log_density: LogDensity,
    n: int,
    x_range: tuple[float, float] | None,
    degree: int | None,
    alphas: np.ndarray,
    points: int,
) -> OrderDeviation:
    vanishing = coefficients.vanishing[n]
    scale_name = "p^n"
    if vanishing and coefficients.leading is not None:
        scale_name = f"alpha_max^({coefficients.leading}-n) p^{coefficients.leading}"
    if x_range is None or (vanishing and coefficients.leading is None):
        return OrderDeviation(n, math.nan, math.nan, scale_name, False, None, 0)
    x = _grid(exact.minimizer, *x_range, points)
    extracted = extract_coefficients(problem, log_density, x, degree=degree, nodes=alphas)[n]
    alpha_max = float(problem.coupling_range[1])
    relative = coefficients.deviation(n, extracted, x, alpha_max)
    data = _data_fit(problem, n)
    # p^n moved by its one-sigma error, in the deviation's own units
    mc = float(np.median(coefficients.deviation(n, data(x) + data.error(x), x, alpha_max))) if data is not None else None
    return OrderDeviation(n, float(np.median(relative)), float(np.max(relative)), scale_name, True, x_range, int(x.size), mc)


def _data_fit(problem: Problem, n: int):
    r"""The fit of order ``n`` to a numeric target's data (``None`` for a formula)."""
    return next((fit for source in problem.data for fit in source.fits if fit.n == n), None)


def window_checked(coefficients: _Coefficients, fit: SmallCouplingFit, n: int, tolerance: float) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Where order ``n`` of a :class:`SmallCouplingFit` is checked: where it was fitted and (with
    :math:`q^*`) where the same fit's bias on :math:`q^*` is within ``WINDOW_GUARD * tolerance``;
    and that bias (``None`` without :math:`q^*`)."""
    checked = np.isfinite(fit.top) & np.isfinite(fit.extracted[n])
    bias = None
    if fit.exact is not None:
        bias = _relative(coefficients, n, fit.exact[n], fit)
        checked &= bias <= WINDOW_GUARD * tolerance
    return checked, bias


def _window_order_deviation(problem: Problem, coefficients: _Coefficients, fit: SmallCouplingFit, n: int, tolerance: float,
                     max_tolerance: float, min_coverage: float) -> OrderDeviation:
    vanishing = coefficients.vanishing[n]
    scale_name = f"alpha_top^({coefficients.leading}-n) p^{coefficients.leading}" if vanishing and coefficients.leading is not None else "p^n"
    checked, bias_values = window_checked(coefficients, fit, n, tolerance)
    if not checked.any() or (vanishing and coefficients.leading is None):
        return OrderDeviation(n, math.nan, math.nan, scale_name, False, None, 0)
    x = fit.x[checked]
    relative = _relative(coefficients, n, fit.extracted[n], fit)[checked]
    coverage = float(fit.share[checked].sum())
    median, largest = float(np.median(relative)), float(np.max(relative))
    bias = estimate = None
    if fit.exact is not None:
        bias_values = bias_values[checked]
        bias = float(np.median(bias_values))
        estimate = float(np.median(bias_values + fit.gain[n][checked] * fit.error[checked]))
    margins = [1 - median / tolerance, 1 - largest / max_tolerance]
    if min_coverage < 1:
        margins.append((coverage - min_coverage) / (1 - min_coverage))
    cumulant_median = cumulant_max = math.nan
    if n >= 1:
        target = coefficients.cumulant(n, x)
        with np.errstate(all="ignore"):
            cumulant = np.abs(fit.cumulant[n][checked] - target) / np.abs(target)
        cumulant = np.where(np.isnan(cumulant), np.inf, cumulant)
        cumulant_median, cumulant_max = float(np.median(cumulant)), float(np.max(cumulant))
        margins.append(1 - cumulant_median / tolerance)
    data = _data_fit(problem, n)
    mc = float(np.median(_relative(coefficients, n, data(fit.x) + data.error(fit.x), fit)[checked])) if data is not None else None
    return OrderDeviation(n, median, largest, scale_name, True, (float(x.min()), float(x.max())), int(x.size), mc, coverage,
                          (fit.lowest, float(np.nanmax(fit.top[checked]))), bias, estimate, cumulant_median, cumulant_max,
                          float(min(margins)), (int(fit.degree[checked].min()), int(fit.degree[checked].max())))


def _resolution_note(coefficients: _Coefficients, fit: SmallCouplingFit, order: OrderDeviation, tolerance: float, max_tolerance: float,
                     variable: str) -> str:
    r"""Why a failed order failed, in the flow's terms: how far it is from q* at the fit's couplings,
    the gain :math:`G_n` that turns that into a deviation of :math:`q^n`, and how close to q* the
    tolerances need it (the gain depends on the fit and on p alone, not on the flow)."""
    checked, _ = window_checked(coefficients, fit, order.n, tolerance)
    gain, error, x = fit.gain[order.n][checked], fit.error[checked], fit.x[checked]
    worst = int(np.argmax(gain))
    return (f"q^{order.n}: the flow is too far from q* to resolve p^{order.n}. Its largest |q/q* - 1| at the fit's couplings has a median "
            f"of {np.median(error):.1e} over the checked points, and the fit amplifies it by G_{order.n} (median {np.median(gain):.3g}, "
            f"at most {gain[worst]:.3g}, at {variable} = {x[worst]:.4g}): the median tolerance {tolerance:g} needs a flow within about "
            f"{tolerance / np.median(gain):.1e} of q*, the maximum {max_tolerance:g} within {max_tolerance / gain[worst]:.1e} where G_{order.n} is largest")


def _window_order_check(order: OrderDeviation, tolerance: float, max_tolerance: float, min_coverage: float, variable: str) -> Check:
    r"""The comparison of one order with :math:`p^n` across the bulk, or why it did not run."""
    name = f"q^{order.n} vs p^{order.n}"
    if not order.extractable:
        return Check(name, False, False, "not run: no point of the bulk where the coefficient can be extracted at small couplings")
    numbers = [order.median_relative_deviation, order.max_relative_deviation, order.margin]
    cumulant = ""
    if order.n >= 1:
        numbers.append(order.cumulant_median)
        cumulant = f", cumulant median {order.cumulant_median:.3e}"
    finite = all(math.isfinite(v) for v in numbers)
    passed = finite and order.margin >= 0 and order.coverage >= min_coverage
    lo, hi = order.x_range
    return Check(name, True, passed,
                 f"median {order.median_relative_deviation:.3e} (tolerance {tolerance:g}), max {order.max_relative_deviation:.3e} "
                 f"({max_tolerance:g}){cumulant}; on {variable} in [{lo:.4g}, {hi:.4g}], {order.coverage:.1%} of the bulk "
                 f"(needs {min_coverage:.0%}); margin {order.margin:+.2f}")


def verify(
    problem: Problem,
    log_density: LogDensity,
    *,
    tolerance: float | None = None,
    threshold: float | None = None,
    normalization_tolerance: float = 1e-3,
    alphas: Sequence[float] | None = None,
    degree: int | None = None,
    nodes: int | Sequence[float] | None = None,
    points: int = 64,
    distance: bool = False,
    couplings: tuple[float, float] | None = None,
    max_tolerance: float = 0.05,
    min_coverage: float = 0.9,
) -> VerifyReport:
    r"""Checks a density order by order against :math:`p^n` and against the exact minimizer.

    Per order :math:`n \le N` the coefficients are extracted by :func:`extract_coefficients` on
    ``points`` points of the order's :func:`extractable_range` and compared with the symbolic
    :math:`p^n(x)` (regular part, from :func:`~renorm.symbolic.expand`): relative to
    :math:`|p^n|`, or, where :math:`p^n` vanishes identically in the bulk (:math:`n = 0` for a
    target whose :math:`p^0` is a pure δ), relative to the leading term at the top of the range,
    :math:`|q^n - p^n| / (\alpha_{max}^{m-n} |p^m|)` with :math:`m` the leading order: the size of a
    spurious :math:`\alpha^n` term against the physical one. At :math:`\alpha_{min}`, the middle
    coupling (0.118 when inside the range) and :math:`\alpha_{max}` it also computes the
    normalization, the minimum of :math:`q` on the bulk and, where :math:`q^*` exists, the
    :func:`certificate`.

    ``passed`` requires

    - at least one order compared with :math:`p^n` on a stated x range: without that nothing
      perturbative was verified, whatever else holds;
    - every number of the report finite (a NaN anywhere fails);
    - median relative deviation :math:`\le` ``tolerance`` for every extractable order (those whose
      :math:`p^n` vanishes included, in the scaled form above);
    - :math:`|\int q - 1| \le` ``normalization_tolerance`` and minimum density :math:`> 0` at every
      coupling;
    - where an order is not extractable (the exact minimizer's own correction is too large in
      the whole bulk, as for the running-coupling angularity on [0.05, 0.3]) and :math:`q^*`
      exists: median relative error to :math:`q^*` :math:`\le` ``tolerance`` at every coupling —
      :math:`q^*` is known to match :math:`p^N` (see :func:`~renorm.symbolic.matched_order`), so
      closeness to it is the substitute check; ``notes`` says so. Without :math:`q^*`,
      and with no order extractable, ``passed`` is False.

    Arguments:
        problem: The matching problem.
        log_density: :math:`\log q(x|\alpha)`.
        tolerance: Largest median relative deviation per order.
        threshold: Of :func:`extractable_range`; default ``2.5 * tolerance``.
        normalization_tolerance: Largest :math:`|\int q - 1|`.
        alphas: Couplings of the certificate and normalization checks; default
            :math:`\alpha_{min}`, middle, :math:`\alpha_{max}`.
        degree: Of the fit in α (default :math:`N + 2`).
        nodes: Couplings of the fit (default 12 Chebyshev nodes of the range).
        points: Points per order in its range.
        distance: ``log_density`` takes the distance to the singular endpoint instead of
            :math:`x` (:meth:`~renorm.runtime.Run.log_density_distance`).

    Where the singular endpoint is not 0 the whole verification runs in the distance :math:`d`
    to it (:class:`~renorm.symbolic.Frame`): :math:`x` itself cannot resolve that endpoint.
    Ranges and bulks are then given in :math:`d` (:attr:`VerifyReport.variable`, e.g. ``1 - x``).

    Returns:
        A :class:`VerifyReport`.
    """
    frame, log_density = _framed(problem, log_density, distance)
    problem = frame.problem
    if couplings is not None and float(couplings[0]) < problem.coupling_range[0]:
        return _verify_window(frame, log_density, 0.01 if tolerance is None else float(tolerance), max_tolerance, min_coverage,
                              normalization_tolerance, alphas, _checked_couplings(problem, couplings))
    tolerance = 0.02 if tolerance is None else float(tolerance)
    threshold = THRESHOLD_PER_TOLERANCE * tolerance if threshold is None else float(threshold)
    checks = [float(a) for a in (_certificate_alphas(problem) if alphas is None else alphas)]
    fit_alphas = _nodes(problem, nodes)
    exact = _Exact.of(problem)
    coefficients = exact.coefficients
    use_exact = exact.available(list(fit_alphas) + checks + _certificate_alphas(problem))
    found = _at_couplings(exact, log_density, checks, use_exact)
    notes = list(found.notes)

    orders = []
    for n in range(problem.order + 1):
        x_range = _range(exact, coefficients, found.bulk, [n], threshold, fit_alphas, use_exact, degree)
        orders.append(_order_deviation(problem, exact, coefficients, log_density, n, x_range, degree, fit_alphas, points))
    leading = coefficients.leading if coefficients.leading is not None else 0

    orders = [_with_coverage(o, found.bulk, problem, tolerance) for o in orders]
    report = [_order_check(o, tolerance, frame.label) for o in orders]
    report += _density_checks(found, normalization_tolerance)
    rows = found.rows
    notes += _divergence_notes(rows)
    missing = [o.n for o in orders if not o.extractable]
    if missing and use_exact:
        check, note = substitute_check(missing, rows, tolerance, problem.coupling_range,
                                       f"the exact minimizer's non-perturbative correction exceeds {threshold:g} of the α^n term everywhere in the bulk")
        report.append(check)
        notes.append(note)
    compared = [c for c in report[:len(orders)] if c.ran]
    if not compared:
        notes.append("no order was compared with p^n: nothing perturbative was verified, so verification fails")
    passed = bool(compared) and all(c.passed for c in report if c.ran)
    return VerifyReport(
        orders=orders, certificate=rows, alphas=checks, normalization=[float(v) for v in found.normalization],
        minimum_density=float(found.minimum), x_range=orders[leading].x_range, x_range_source=found.source, tolerance=float(tolerance),
        threshold=threshold, normalization_tolerance=float(normalization_tolerance), passed=passed, checks=report, notes=notes,
        variable=frame.label,
    )


def substitute_check(missing: Sequence[int], rows: Sequence[Any], tolerance: float, couplings: tuple[float, float], reason: str) -> tuple[Check, str]:
    r"""The check that stands in for orders that cannot be extracted over ``couplings`` (``reason`` says
    why): the largest median :math:`|q/q^* - 1|` of the certificate ``rows`` within ``tolerance``;
    and the note that says it compares nothing with :math:`p^n`."""
    names = ", ".join(map(str, missing))
    worst = max(row.median_relative_error for row in rows)
    lo, hi = couplings
    passed = all(row.median_relative_error <= tolerance for row in rows)  # a NaN anywhere fails
    return (Check(f"distance to q* for order(s) {names}", True, passed, f"largest median |q/q* - 1| {worst:.3e} (tolerance {tolerance:g})"),
            f"order(s) {names} not extractable in α ∈ [{lo:g}, {hi:g}]: {reason}; the distance to q* (≤ {tolerance:g}) is checked "
            "in their place, but it does not compare them with p^n")


def _verify_window(frame: Frame, log_density: LogDensity, tolerance: float, max_tolerance: float, min_coverage: float,
                   normalization_tolerance: float, alphas: Sequence[float] | None, couplings: tuple[float, float]) -> VerifyReport:
    r""":func:`verify` of a density defined below the physical range: its orders across the bulk (:class:`SmallCouplingFit`)."""
    problem = frame.problem
    checks = [float(a) for a in (_certificate_alphas(problem) if alphas is None else alphas)]
    exact = _Exact.of(problem)
    coefficients = exact.coefficients
    use_exact = exact.available(list(_levels(couplings)) + checks + _certificate_alphas(problem))
    found = _at_couplings(exact, log_density, checks, use_exact)
    notes = list(found.notes)
    fit = _small_coupling_fit(exact, log_density, couplings, found.bulk, BULK_POINTS, use_exact)
    orders = [_window_order_deviation(problem, coefficients, fit, n, tolerance, max_tolerance, min_coverage) for n in range(problem.order + 1)]
    leading = coefficients.leading if coefficients.leading is not None else 0

    report = [_window_order_check(o, tolerance, max_tolerance, min_coverage, frame.label) for o in orders]
    report += _density_checks(found, normalization_tolerance)
    rows = found.rows
    notes += _divergence_notes(rows)
    short = [o.n for o in orders if o.coverage < min_coverage]
    if short:
        lo, hi = couplings
        notes.append(f"order(s) {', '.join(map(str, short))} checked on less than {min_coverage:.0%} of the bulk with couplings in "
                     f"[{lo:g}, {hi:g}]: below the bulk's small-x end the exact minimizer differs from p by more than "
                     f"{CORRECTION:g} of the α^n term at every coupling a fit can use (train a lower alpha_floor)")
    deviating = [o for o in orders if o.extractable and (o.median_relative_deviation > tolerance or o.max_relative_deviation > max_tolerance
                                                         or o.cumulant_median > tolerance)]  # not a shortfall of coverage alone
    notes += [_resolution_note(coefficients, fit, o, tolerance, max_tolerance, frame.label) for o in deviating if fit.gain is not None]
    passed = all(c.passed for c in report if c.ran) and all(c.ran for c in report[:len(orders)])
    return VerifyReport(
        orders=orders, certificate=rows, alphas=checks, normalization=[float(v) for v in found.normalization],
        minimum_density=float(found.minimum), x_range=orders[leading].x_range, x_range_source=found.source, tolerance=float(tolerance),
        threshold=CORRECTION, normalization_tolerance=float(normalization_tolerance), passed=passed, checks=report, notes=notes,
        variable=frame.label, max_tolerance=float(max_tolerance), min_coverage=float(min_coverage), couplings=couplings,
    )


@dataclass(frozen=True)
class _Found:
    r"""What :func:`verify` measures at the couplings of its checks, before the orders."""

    rows: list[CertificateRow]
    normalization: list[float]
    minimum: float
    bulk: tuple[float, float]
    source: str
    notes: list[str]


def _at_couplings(exact: _Exact, log_density: LogDensity, checks: list[float], use_exact: bool) -> _Found:
    r"""The certificate, normalization and minimum density at each coupling of ``checks``, and the bulk
    the orders are compared on: :math:`q^*`'s where it exists over the whole range, else the flow's
    (with the certificate where :math:`q^*` exists: one coupling without it does not void the others)."""
    problem = exact.problem
    if use_exact:
        rows = [_certificate_row(exact, log_density, alpha) for alpha in checks]
        return _Found(rows, [row.normalization for row in rows], min(row.minimum_density for row in rows),
                      _union_bulk(exact, None, _certificate_alphas(problem)), "exact minimizer", [])
    notes = []
    where = [a for a in checks if exact.at(a) is not None]
    rows = [_certificate_row(exact, log_density, alpha) for alpha in where]
    missing = [a for a in checks if a not in where]
    if where:
        notes.append(f"the exact minimizer exists at α = {', '.join(f'{a:g}' for a in where)} (certificate there) "
                     f"but not at α = {', '.join(f'{a:g}' for a in missing)}")
    flow = lambda a: (lambda x: _q(log_density, x, a))
    bulk = _union_bulk(exact, flow, _certificate_alphas(problem))
    normalization = [_normalization(exact, log_density, a) for a in checks]
    minimum = min(_minimum_density(exact, log_density, a, _bulk(exact.minimizer, flow(a))) for a in checks)
    certificate = "a certificate only where it exists" if rows else "no certificate"
    notes.append(f"no exact minimizer over the whole range ({exact.reason}): {certificate}, and the coefficients are compared "
                 "on the flow's own bulk, where the fit's bias cannot be estimated")
    return _Found(rows, normalization, minimum, bulk, "flow bulk (no exact minimizer)", notes)


def _with_coverage(order: OrderDeviation, bulk: tuple[float, float], problem: Problem, tolerance: float) -> OrderDeviation:
    r"""An order checked in the physical range, with the fraction of the bulk its range covers and its margin."""
    if not order.extractable:
        return order
    t = np.log if _logarithmic(problem, bulk) else (lambda v: v)
    coverage = float((t(order.x_range[1]) - t(order.x_range[0])) / (t(bulk[1]) - t(bulk[0])))
    return dataclasses.replace(order, coverage=coverage, margin=1 - order.median_relative_deviation / tolerance)


def _order_check(order: OrderDeviation, tolerance: float, variable: str) -> Check:
    r"""The comparison of one order with :math:`p^n`, or why it did not run."""
    name = f"q^{order.n} vs p^{order.n}"
    if not order.extractable:
        return Check(name, False, False, "not run: not extractable over the coupling range")
    finite = math.isfinite(order.median_relative_deviation) and math.isfinite(order.max_relative_deviation)
    return Check(name, True, finite and order.median_relative_deviation <= tolerance,
                 f"median {order.median_relative_deviation:.3e} (tolerance {tolerance:g}) on {variable} in [{order.x_range[0]:.4g}, {order.x_range[1]:.4g}]")


def _divergence_notes(rows: list[CertificateRow]) -> list[str]:
    r"""A note where L[q] diverges while L[q*] does not."""
    diverging = [row.alpha for row in rows if math.isinf(row.loss) and math.isfinite(row.optimal_loss)]
    if not diverging:
        return []
    return [f"L[q] diverges at α = {', '.join(f'{a:g}' for a in diverging)} while L[q*] is finite: the flow's far tail "
            "(beyond the bulk) falls off unlike p's, and w |f(q) - f(p)|² grows there without bound; the bulk checks are unaffected"]


def _density_checks(found: _Found, normalization_tolerance: float) -> list[Check]:
    r"""Normalization and positivity at every coupling, and (where :math:`q^*` exists) a certificate with no NaN in it."""
    values = ", ".join(f"{v:.10f}" for v in found.normalization)
    report = [
        Check("normalization", True, all(abs(v - 1.0) <= normalization_tolerance for v in found.normalization),
              f"int q dx = {values} (tolerance {normalization_tolerance:g})"),
        Check("positivity", True, bool(found.minimum > 0), f"minimum density on the bulk {found.minimum:.3e}"),
    ]
    if found.rows:
        # losses may diverge (inf); nothing may be NaN
        values = [(f.name, float(getattr(row, f.name))) for row in found.rows for f in fields(row)
                  if f.name != "bulk" and getattr(row, f.name) is not None]
        bad = [name for name, v in values if math.isnan(v) or (math.isinf(v) and "loss" not in name)]
        report.append(Check("certificate finite", True, not bad,
                            f"{bad[0]} is not finite" if bad else "TV, relative errors, losses and normalization against q* at every coupling"))
    return report
