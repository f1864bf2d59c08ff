r"""Verification of a density in two variables: its coefficients in α against :math:`p^n` point by
point across the bulk, the same for its marginal in :math:`x_1`, and its distance to :math:`q^*`.

As in one variable (:func:`~renorm.runtime.verify` over the physical coupling range), the
coefficients come from a least-squares fit in α at the Chebyshev nodes of the coupling range, and a
point is checked only where that fit can work: where :math:`q^*`'s own non-perturbative correction is
small against the :math:`\alpha^n` term at every node, and the same fit applied to :math:`q^*`
reproduces :math:`p^n`. Every check says on how much of the bulk it ran.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from renorm.symbolic import (
    ExactMinimizer, MultiProblem, RenormError, json_safe, marginal_problem, multi_coefficients, numeric,
)

from ._plane import PlaneFlow, PlaneMap, problem_interval
from ._plane_train import (
    PlaneCertificate, PlaneLogDensity, _certificate_grid, _latent_spans, _log_values, _solutions, density_certificate, latent_rule, latent_window,
)
from ._verify import (
    BULK_QUANTILES, GUARD, NODES, THRESHOLD_PER_TOLERANCE, _MIN_WIDTH, Check, _Coefficients, _certificate_alphas, chebyshev_nodes, fit_in_alpha, substitute_check, FIT_BIAS,
)

__all__ = ["PlaneOrderDeviation", "PlaneVerifyReport", "verify_plane"]

#: Points per latent coordinate of the bulk grid.
BULK_SIDE = 41
#: Points of the marginal's grid in :math:`x_1`.
MARGINAL_POINTS = 41


@dataclass(frozen=True)
class PlaneOrderDeviation:
    r"""How well the extracted :math:`q^n` (or its marginal) matches :math:`p^n` where it can be extracted.

    Attributes:
        n: The order.
        target: ``"p^n"`` (the density in both variables), ``"int p^n dx2"`` (its marginal in :math:`x_1`)
            or ``"int p^n dx1"`` (in :math:`x_2`), with the problem's variable names.
        median_relative_deviation, max_relative_deviation: Of :math:`|q^n - p^n| / s_n` over the checked points.
        scale: What :math:`s_n` is: :math:`|p^n|`, or where :math:`p^n` vanishes,
            :math:`\alpha_{max}^{m-n}|p^m|` with :math:`m` the leading order.
        extractable: Whether the order was compared (on at least 1% of the bulk).
        points: Checked points.
        coverage: The fraction of the bulk they stand for, measured in the flow's latent
            coordinates (the logarithm of the distance to a singular face, or the logit of the
            position between the region's bounds).
        bias: Median over the checked points of the same fit's deviation on :math:`q^*`.
        margin: ``1 - median / tolerance``; negative fails.
        box: Per variable, the span of the checked points.
        resolution: For the marginal in :math:`x_1`: the largest relative difference, on the checked points,
            between the latent rule the flow's marginal is computed with and :math:`q^*`'s
            adaptive marginal, both applied to :math:`q^*`.
        degrees: The lowest and highest degree in α of the fits at the checked points.
    """

    n: int
    target: str
    median_relative_deviation: float
    max_relative_deviation: float
    scale: str
    extractable: bool
    points: int = 0
    coverage: float = 0.0
    bias: float | None = None
    margin: float = math.nan
    box: list[list[float]] | None = None
    resolution: float | None = None
    degrees: tuple[int, int] | None = None


@dataclass(frozen=True)
class PlaneVerifyReport:
    r"""The verification of a density in two variables (schema ``verify-2d``).

    Attributes:
        passed: At least one order of the density was compared with :math:`p^n`, and every check that ran passed.
        variables: The names of :math:`x_1, x_2`.
        orders: One :class:`PlaneOrderDeviation` per :math:`n \le N`, in both variables.
        marginal_orders: The same for the marginal in :math:`x_1` (empty where the marginal target has no closed form).
        second_marginal_orders: The same for the marginal in :math:`x_2` (empty where :math:`\int p^n dx_1` is not finite,
            or the region's bounds cannot be inverted for :math:`x_1`).
        certificate: :class:`~renorm.runtime.PlaneCertificate` at :math:`\alpha_{min}`, the middle coupling and :math:`\alpha_{max}`.
        minimum_density: Smallest :math:`q` on the bulk grid at those couplings.
        tolerance, threshold, normalization_tolerance: As in :func:`verify_plane`.
        checks: Each :class:`~renorm.runtime.Check`, run or not.
        notes: What could not be checked and why.
    """

    passed: bool
    variables: list[str]
    orders: list[PlaneOrderDeviation]
    marginal_orders: list[PlaneOrderDeviation]
    certificate: list[PlaneCertificate]
    minimum_density: float
    tolerance: float
    threshold: float
    normalization_tolerance: float
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    second_marginal_orders: list[PlaneOrderDeviation] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return json_safe({
            "passed": self.passed, "variables": self.variables, "tolerance": self.tolerance, "threshold": self.threshold,
            "normalization_tolerance": self.normalization_tolerance, "orders": [asdict(o) for o in self.orders],
            "marginal": {"variable": self.variables[0], "orders": [asdict(o) for o in self.marginal_orders]},
            "marginal_2": {"variable": self.variables[1], "orders": [asdict(o) for o in self.second_marginal_orders]},
            "couplings": [row.to_json() for row in self.certificate], "minimum_density": self.minimum_density,
            "checks": [asdict(c) for c in self.checks], "notes": self.notes,
        })


@dataclass(frozen=True)
class _AtNodes:
    r"""A density, its target and :math:`q^*` at the fit's couplings on a set of points (arrays ``(J, M)``),
    the target's coefficients there (``(N + 1, M)``) and the share of the bulk each point stands for."""

    flow: np.ndarray
    exact: np.ndarray
    target: np.ndarray
    terms: np.ndarray
    vanishing: list[bool]
    share: np.ndarray
    points: np.ndarray


def _scale(at: _AtNodes, n: int, alpha_max: float) -> np.ndarray:
    r"""The scale of order ``n``'s deviation: :math:`|p^n|`, or where :math:`p^n` vanishes the leading term at ``alpha_max``."""
    leading = next((m for m, zero in enumerate(at.vanishing) if not zero), None)
    return np.abs(at.terms[n]) if not at.vanishing[n] else alpha_max ** (leading - n) * np.abs(at.terms[leading])


def _degrees(at: _AtNodes, alphas: np.ndarray, order: int) -> np.ndarray:
    r"""Each point's degree in α: the lowest from N to N + 2 at which the fit of :math:`q^*` reproduces
    every :math:`p^n` to ``FIT_BIAS`` (as in one variable, :class:`~renorm.runtime.SmallCouplingFit`), else N + 2."""
    chosen = np.full(at.share.shape, order + 2)
    if all(at.vanishing):
        return chosen
    with np.errstate(all="ignore"):
        for degree in range(order + 1, order - 1, -1):  # from the top, so that the lowest that fits is kept
            fitted = fit_in_alpha(at.exact, alphas, order, degree)
            bias = np.max([np.abs(fitted[n] - at.terms[n]) / _scale(at, n, float(alphas.max())) for n in range(order + 1)], axis=0)
            chosen = np.where(bias <= FIT_BIAS, degree, chosen)
    return chosen


def _fit(values: np.ndarray, alphas: np.ndarray, n: int, degrees: np.ndarray) -> np.ndarray:
    r"""Order ``n`` of the fit in α of ``values`` (``(J, M)``), each point at its own degree."""
    out = np.full(values.shape[1], np.nan)
    for degree in np.unique(degrees):
        where = degrees == degree
        out[where] = fit_in_alpha(values[:, where], alphas, n, int(degree))[n]
    return out


def _order(at: _AtNodes, n: int, alphas: np.ndarray, degrees: np.ndarray, threshold: float, tolerance: float, name: str) -> tuple[PlaneOrderDeviation, np.ndarray]:
    r"""Order ``n`` of ``at`` compared with :math:`p^n` where the fit (at each point's degree) can extract it, and the mask of those points."""
    vanishing = at.vanishing
    leading = next((m for m, zero in enumerate(vanishing) if not zero), None)
    alpha_max = float(alphas.max())
    scale_name = f"alpha_max^({leading}-n) p^{leading}" if vanishing[n] and leading is not None else "p^n"
    none = np.zeros(at.share.shape, dtype=bool)
    if leading is None:
        return PlaneOrderDeviation(n, name, math.nan, math.nan, scale_name, False), none
    reference = leading if vanishing[n] else n
    with np.errstate(all="ignore"):
        scale = _scale(at, n, alpha_max)
        correction = np.max(np.abs(at.exact - at.target) / (alphas[:, None] ** reference * np.abs(at.terms[reference])), axis=0)
        flow = np.abs(_fit(at.flow, alphas, n, degrees) - at.terms[n]) / scale
        bias = np.abs(_fit(at.exact, alphas, n, degrees) - at.terms[n]) / scale
        ok = (at.target > 0).all(0) & (correction <= threshold) & (bias <= GUARD * threshold) & np.isfinite(flow)
    coverage = float(at.share[ok].sum())
    if coverage < _MIN_WIDTH:
        return PlaneOrderDeviation(n, name, math.nan, math.nan, scale_name, False), none
    median = float(np.median(flow[ok]))
    box = [[float(at.points[ok, k].min()), float(at.points[ok, k].max())] for k in range(at.points.shape[1])]
    return PlaneOrderDeviation(n, name, median, float(np.max(flow[ok])), scale_name, True, int(ok.sum()), coverage,
                               float(np.median(bias[ok])), 1 - median / tolerance, box, degrees=(int(degrees[ok].min()), int(degrees[ok].max()))), ok


def _pointwise(problem: MultiProblem, log_density: PlaneLogDensity, plane_map: PlaneMap, spans, alphas: np.ndarray) -> _AtNodes:
    r"""The density, p, q* and the :math:`p^n` on a uniform latent grid over the bulk."""
    y1, y2 = (a.ravel() for a in np.meshgrid(*(np.linspace(lo, hi, BULK_SIDE) for lo, hi in spans), indexing="ij"))
    x1, x2, _ = plane_map.from_latent(y1, y2)
    keep = problem.contains(x1, x2)
    x1, x2 = x1[keep], x2[keep]
    points = np.stack([x1, x2], -1)
    solutions = _solutions(problem, tuple(float(a) for a in alphas))
    minimizer = solutions[0].minimizer
    terms = multi_coefficients(problem)
    with np.errstate(all="ignore"):
        values = np.stack([np.broadcast_to(numeric(term, problem.variables)(x1, x2), x1.shape) for term in terms]).astype(float)
        target = np.stack([minimizer.p(x1, x2, a) for a in alphas])
    return _AtNodes(np.exp(np.stack([_log_values(log_density, points, a) for a in alphas])), np.stack([s.q(x1, x2) for s in solutions]),
                    target, values, [bool(sp.simplify(term) == 0) for term in terms], np.full(x1.shape, 1.0 / x1.size), points)


def _marginal(problem: MultiProblem, log_density: PlaneLogDensity, plane_map: PlaneMap, flow: PlaneFlow | None, span: tuple[float, float],
              alphas: np.ndarray) -> tuple[_AtNodes | None, float | None, str]:
    r"""The marginals in :math:`x_1` of the density (by a Gauss–Legendre rule in the inner latent
    coordinate), of p and of q* (by adaptive quadrature), on a grid over the bulk in :math:`y_1`;
    with the largest relative difference of the two rules on q*. ``None`` and why where the
    marginal target has no closed form."""
    reduced, why = marginal_problem(problem)
    if reduced is None:
        return None, None, why
    coefficients = _Coefficients.of(reduced)
    x1 = plane_map.first.from_latent(np.linspace(*span, MARGINAL_POINTS))
    rule = marginal_rule(problem, plane_map, x1, flow)
    solutions = _solutions(problem, tuple(float(a) for a in alphas))
    exact = np.stack([s.marginal(0, x1) for s in solutions])
    with np.errstate(all="ignore"):
        resolution = np.abs(rule(lambda x, a: np.log(solutions[0].q(x[:, 0], x[:, 1])), alphas[0]) / exact[0] - 1)
        reduced_minimizer = ExactMinimizer(reduced)
        target = np.stack([reduced_minimizer.p(x1, a) for a in alphas])
    flow = np.stack([rule(log_density, a) for a in alphas])
    terms = np.stack([coefficients(n, x1) for n in range(problem.order + 1)])
    at = _AtNodes(flow, exact, target, terms, list(coefficients.vanishing), np.full(x1.shape, 1.0 / x1.size), x1[:, None])
    return at, resolution, ""


def _second_marginal(problem: MultiProblem, log_density: PlaneLogDensity, bulk: np.ndarray, alphas: np.ndarray) -> tuple[_AtNodes | None, str]:
    r"""The marginals in :math:`x_2` of the density, of p, of its :math:`p^n` and of q*, by adaptive quadrature
    over the :math:`x_1` intervals the region holds (:meth:`~renorm.symbolic.MultiProblem.outer_intervals`), at
    ``MARGINAL_POINTS`` points across the span in :math:`x_2` of the ``bulk`` points (spaced in the log distance to
    a singular face); ``None`` and why where an integral over :math:`x_1` is not finite or the region cannot be inverted."""
    (a2, b2) = problem.support_floats[1]
    singular = problem.singular[1]
    lo, hi = float(bulk.min()), float(bulk.max())
    if singular == "lower":
        x2 = a2 + np.geomspace(lo - a2, hi - a2, MARGINAL_POINTS)
    elif singular == "upper":
        x2 = b2 - np.geomspace(b2 - hi, b2 - lo, MARGINAL_POINTS)
    else:
        x2 = np.linspace(lo, hi, MARGINAL_POINTS)
    why = problem.second_marginal_refusal(x2)
    if why:
        return None, why
    solutions = _solutions(problem, tuple(float(a) for a in alphas))
    minimizer = solutions[0].minimizer
    terms = multi_coefficients(problem)
    first = problem.variables[0]
    with np.errstate(all="ignore"):
        coefficients = np.stack([minimizer.marginal(lambda a, b, term=numeric(term, problem.variables): np.broadcast_to(term(a, b), a.shape).astype(float), 1, x2)
                                 for term in terms])
        if not np.isfinite(coefficients).all():
            return None, f"the integral of p over {first} is not finite"
        target = np.stack([minimizer.marginal(lambda a, b, alpha=alpha: minimizer.p(a, b, alpha), 1, x2) for alpha in alphas])

        def flow(a: np.ndarray, b: np.ndarray, alpha: float) -> np.ndarray:
            return np.exp(_log_values(log_density, np.stack([a.ravel(), b.ravel()], -1), alpha)).reshape(a.shape)

        # the flow's marginal to 1e-8: far below the tolerance, and each round evaluates the flow
        density = np.stack([minimizer.marginal(lambda a, b, alpha=alpha: flow(a, b, alpha), 1, x2, rtol=1e-8) for alpha in alphas])
    exact = np.stack([s.marginal(1, x2) for s in solutions])
    vanishing = [bool(sp.simplify(term) == 0) for term in terms]
    return _AtNodes(density, exact, target, coefficients, vanishing, np.full(x2.shape, 1.0 / x2.size), x2[:, None]), ""


def marginal_rule(problem: MultiProblem, plane_map: PlaneMap, x1: np.ndarray, flow: PlaneFlow | None = None):
    r"""``rule(log_density, alpha)``: the marginal density in :math:`x_1` at the points ``x1`` of a
    density in two variables, by Gauss–Legendre quadrature (:func:`latent_rule`) in the inner
    latent coordinate of ``plane_map`` over its :func:`latent_window` (for ``flow``)."""
    y1 = plane_map.first.to_latent(x1)
    t, w = latent_rule(*latent_window(problem, plane_map, flow)[1])
    g1, g2 = (a.ravel() for a in np.meshgrid(y1, t, indexing="ij"))
    with np.errstate(all="ignore"):  # where the bounds round together there is no point
        n1, n2, log_jacobian = plane_map.from_latent(g1, g2)
        inner = np.where(problem.contains(n1, n2) & np.isfinite(log_jacobian), log_jacobian - plane_map.first.log_jacobian(g1), -np.inf)
    points = np.stack([n1, n2], -1)

    def rule(log_density: PlaneLogDensity, alpha: float) -> np.ndarray:
        with np.errstate(all="ignore"):
            return (np.exp(np.minimum(_log_values(log_density, points, alpha) + inner, 700.0)).reshape(y1.size, t.size) * w).sum(1)

    return rule


def verify_plane(problem: MultiProblem, log_density: PlaneLogDensity, *, tolerance: float = 0.02, threshold: float | None = None,
                 normalization_tolerance: float = 1e-3, nodes: int = NODES, flow: PlaneFlow | None = None) -> PlaneVerifyReport:
    r"""Checks a density in two variables order by order against :math:`p^n`, in its marginal, and against :math:`q^*`.

    The bulk is the box, in the latent coordinates of ``plane_map`` (default: the problem's
    :class:`~renorm.runtime.PlaneMap`), spanned per coordinate by the union of :math:`q^*`'s
    1%–99% quantiles at :math:`\alpha_{min}`, the middle coupling and :math:`\alpha_{max}`; it is
    sampled by a uniform 41 × 41 grid. At every point the density is fitted in α at the ``nodes``
    (12) Chebyshev nodes of the coupling range with a polynomial in α
    (:func:`~renorm.runtime.extract_coefficients`' fit), and so is :math:`q^*`; the degree is the
    lowest from N to N + 2 at which the fit of :math:`q^*` reproduces every :math:`p^n` to 1e-3,
    as in one variable (where :math:`q^* = p`, a fixed-order target takes N; measured on the
    smooth box :math:`2x_1(1 + \alpha(x_2 - 1/2))` trained at the defaults, q¹ deviates 6.8e-2 at
    N + 2 and 6.3e-3 at N). Order :math:`n`
    is checked at the points where, at every node, :math:`p > 0` and
    :math:`|q^* - p| \le` ``threshold`` :math:`\alpha^n |p^n|`, and where the fit of :math:`q^*`
    reproduces :math:`p^n` to ``GUARD * threshold``; its deviation is
    :math:`|q^n - p^n| / |p^n|` (or, for an order whose :math:`p^n` vanishes, against the leading
    term). The marginal in :math:`x_1` is checked the same way against the coefficients of
    :math:`\int p\, dx_2` (:func:`~renorm.symbolic.marginal_problem`) on 41 points over the bulk in
    :math:`y_1`, and the marginal in :math:`x_2` against :math:`\int p^n dx_1`, all by adaptive
    quadrature over the :math:`x_1` intervals the region holds, on 41 points across the bulk's span in
    :math:`x_2` (where an integral over :math:`x_1` is not finite, a note says so).

    ``passed`` requires at least one order of the density compared on at least 1% of the bulk,
    median deviation :math:`\le` ``tolerance`` for every compared order and marginal order,
    :math:`|\iint q - 1| \le` ``normalization_tolerance`` and :math:`q > 0` on the bulk at the three
    couplings, a finite certificate, and, for each order that cannot be extracted, median
    :math:`|q/q^* - 1| \le` ``tolerance`` at the three couplings (the substitute check, which does
    not compare it with :math:`p^n`; a note says so).

    Arguments:
        problem: The problem in two variables.
        log_density: :math:`\log q(x_1, x_2|\alpha)` at pairs of shape ``(n, 2)``.
        tolerance: Largest median relative deviation per order.
        threshold: Largest relative correction of :math:`q^*` at a checked point; default ``2.5 * tolerance``.
        normalization_tolerance: Largest :math:`|\iint q - 1|`.
        nodes: Chebyshev couplings of the fit in α.
        flow: A trained run's flow (:attr:`~renorm.runtime.Run.evaluator`): its latent plane and
            standardization set the certificate's grid and the marginal's rule (default: the problem's
            :class:`~renorm.runtime.PlaneMap` and the standardization a new flow would get).

    Raises:
        NotNormalizableError: Where :math:`q^*` does not exist at one of the couplings.
    """
    threshold = THRESHOLD_PER_TOLERANCE * tolerance if threshold is None else float(threshold)
    plane_map = flow.plane_map if flow is not None else PlaneMap.for_problem(problem, problem_interval(problem))
    checks_alphas = _certificate_alphas(problem)
    degree = problem.order + 2
    if nodes < degree + 1:
        raise RenormError(f"a fit of degree {degree} in α needs at least {degree + 1} couplings, got {nodes}")
    alphas = chebyshev_nodes(problem, nodes)
    rows = density_certificate(problem, log_density, tuple(checks_alphas), _certificate_grid(problem, plane_map, flow), plane_map)
    spans = _latent_spans(problem, plane_map, BULK_QUANTILES[0], checks_alphas)  # the union of q*'s 1%–99% quantile ranges
    at = _pointwise(problem, log_density, plane_map, spans, alphas)
    degrees = _degrees(at, alphas, problem.order)
    orders = [_order(at, n, alphas, degrees, threshold, tolerance, "p^n")[0] for n in range(problem.order + 1)]
    notes = []
    marginal, resolution, why = _marginal(problem, log_density, plane_map, flow, spans[0], alphas)
    marginal_orders = []
    if marginal is None:
        notes.append(f"the marginal in {problem.variables[0]} is not checked: {why}")
    else:
        marginal_degrees = _degrees(marginal, alphas, problem.order)
        for n in range(problem.order + 1):
            order, ok = _order(marginal, n, alphas, marginal_degrees, threshold, tolerance, f"int p^n d{problem.variables[1]}")
            worst = float(resolution[ok].max()) if ok.any() else None
            marginal_orders.append(PlaneOrderDeviation(**{**asdict(order), "resolution": worst}))
    second, why = _second_marginal(problem, log_density, at.points[:, 1], alphas)
    second_orders = []
    if second is None:
        notes.append(f"the marginal in {problem.variables[1]} is not checked: {why}")
    else:
        second_degrees = _degrees(second, alphas, problem.order)
        second_orders = [_order(second, n, alphas, second_degrees, threshold, tolerance, f"int p^n d{problem.variables[0]}")[0]
                         for n in range(problem.order + 1)]

    checks = [_order_check(o, tolerance, problem) for o in orders]
    checks += [_order_check(o, tolerance, problem, "marginal ") for o in marginal_orders + second_orders]
    minimum = float(min(np.exp(_log_values(log_density, at.points, a)).min() for a in checks_alphas))
    checks += [
        Check("normalization", True, all(abs(r.normalization - 1) <= normalization_tolerance for r in rows),
              "int q = " + ", ".join(f"{r.normalization:.6f}" for r in rows) + f" (tolerance {normalization_tolerance:g}; "
              f"the grid resolves q* to {max(abs(r.resolution) for r in rows):.1e})"),
        Check("positivity", True, bool(minimum > 0), f"minimum density on the bulk grid {minimum:.3e}"),
        Check("certificate finite", True, all(math.isfinite(v) for r in rows for v in (r.total_variation, r.median_relative_error, r.normalization)),
              "TV, median relative error and normalization against q* at every coupling"),
    ]
    missing = [o.n for o in orders if not o.extractable]
    if missing:
        check, note = substitute_check(missing, rows, tolerance, problem.coupling_range,
                                       f"the exact minimizer's non-perturbative correction exceeds {threshold:g} of the α^n term, "
                                       f"or the fit on q* misses p^n, on all but {_MIN_WIDTH:.0%} of the bulk")
        checks.append(check)
        notes.append(note)
    compared = [o for o in orders if o.extractable]
    if not compared:
        notes.append("no order of the density was compared with p^n: nothing perturbative was verified, so verification fails")
    passed = bool(compared) and all(c.passed for c in checks if c.ran)
    return PlaneVerifyReport(passed, [v.name for v in problem.variables], orders, marginal_orders, rows, minimum, float(tolerance),
                             threshold, float(normalization_tolerance), checks, notes, second_orders)


def _order_check(order: PlaneOrderDeviation, tolerance: float, problem: MultiProblem, kind: str = "") -> Check:
    name = f"{kind}q^{order.n} vs {order.target.replace('^n', f'^{order.n}')}"
    if not order.extractable:
        return Check(name, False, False, "not run: not extractable over the coupling range")
    boxes = " x ".join(f"{v.name} in [{lo:.4g}, {hi:.4g}]" for v, (lo, hi) in zip(problem.variables, order.box))
    finite = math.isfinite(order.median_relative_deviation) and math.isfinite(order.max_relative_deviation)
    return Check(name, True, finite and order.median_relative_deviation <= tolerance,
                 f"median {order.median_relative_deviation:.3e} (tolerance {tolerance:g}), max {order.max_relative_deviation:.3e}, "
                 f"on {order.coverage:.1%} of the bulk within {boxes}; margin {order.margin:+.2f}")

