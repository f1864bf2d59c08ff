r"""Targets in two observables: specs with a region, pointwise minimizers, λ(α) by nested quadrature, marginals.

For a real diagonal :math:`C` the Euler–Lagrange condition of the matching loss is pointwise,
so :math:`q^*(x_1, x_2|\alpha)` has the closed forms of one dimension; what changes is the
normalization integral, here an adaptive integral over :math:`x_2` inside an adaptive integral
over :math:`x_1`, each in the variable that resolves its singular end
(:func:`~renorm.symbolic.quadrature_map`). The region is a box, cut by bounds on
:math:`x_2` that are functions of :math:`x_1` (``region = "x1**2 <= x2 <= x1"``).

``f = log`` compares densities pointwise, and a density changes with the variables by the
Jacobian: :math:`q^*` in :math:`(\theta, z)` and :math:`q^*` in :math:`(\lambda_1, \lambda_2)` are
different distributions even where the two targets are the same physics. The tool takes the
variables the spec writes, and says so.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import sympy as sp

from ._budget import within
from ._errors import NotNormalizableError, RenormError, SpecError
from ._maps import quadrature_map
from ._matching import matching_function
from ._numeric import numeric
from ._quadrature import SupportBatch, support_quadratures
from ._solve import MatchedOrder, across, bracket, measure_order
from ._spec import (LIMITS, Problem, _as_expr, _check_free, _check_shape, _constants, _coupling_range, _matching_function,
                    _NAME, _short, _support, _symbol_for, _training, _variable_names, _weight, make_problem)

__all__ = ["Bound", "MultiProblem", "make_multi_problem", "multi_coefficients", "MultiMinimizer", "MultiSolution",
           "multi_matched_order", "marginal_problem"]

#: Relative accuracy of each level of the nested quadrature.
_RTOL = 1e-12
#: Absolute accuracy of each level of a normalization integral (whose value is about 1).
_ATOL = 1e-14
#: How far ∫q* may miss 1 before the solution is refused.
_NORMALIZATION_TOLERANCE = 1e-9
_COMPARISON = re.compile(r"(<=|>=|<|>)")
#: Bulk points on a half-line: distances from its finite end.
_FAR = (0.1, 0.3, 1.0)


@dataclass(frozen=True)
class Bound:
    r"""One side of the region: :math:`x_2 \ge h(x_1)` (``side = "lower"``) or :math:`x_2 \le h(x_1)`."""

    side: str
    expr: sp.Expr
    text: str


@dataclass(frozen=True)
class MultiProblem:
    r"""A matching problem in two observables :math:`(x_1, x_2)` (see :class:`~renorm.symbolic.Problem`).

    Attributes:
        variables: The observables, SymPy symbols (positive where their support is).
        support: The box, one :math:`(a_i, b_i)` per variable (an end may be ``oo``).
        singular: Per variable, ``lower``, ``upper`` or ``none``: where the quadrature and the
            flow resolve a singular face.
        region: Bounds :math:`x_2 \gtrless h(x_1)` that cut the box (empty: the whole box).
        Other attributes as in :class:`~renorm.symbolic.Problem`.
    """

    name: str
    variables: tuple[sp.Symbol, ...]
    coupling: sp.Symbol
    support: tuple[tuple[sp.Expr, sp.Expr], ...]
    singular: tuple[str, ...]
    region: tuple[Bound, ...]
    order: int
    density: sp.Expr
    f: sp.Expr
    f_kind: str
    weight: sp.Expr
    coupling_range: tuple[float, float]
    constants: dict[str, sp.Expr] = field(default_factory=dict)
    source: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    data: tuple[Any, ...] = ()

    q = Problem.q

    @property
    def dimension(self) -> int:
        return len(self.variables)

    @property
    def C_squared(self) -> sp.Expr:
        return 1 / (2 * self.weight)

    def where(self, field_name: str, message: str) -> str:
        return Problem.where(self, field_name, message)  # type: ignore[arg-type]

    @property
    def support_floats(self) -> tuple[tuple[float, float], ...]:
        return tuple((float(a), float(b)) for a, b in self.support)

    @cached_property
    def sha256(self) -> str:
        r"""Hash of the canonical problem; computed once."""
        canonical = {
            "name": self.name, "x": [v.name for v in self.variables], "coupling": self.coupling.name,
            "support": [[sp.srepr(e) for e in ends] for ends in self.support], "singular": list(self.singular),
            "region": [[b.side, sp.srepr(b.expr)] for b in self.region],
            "order": self.order, "density": sp.srepr(self.density), "f": sp.srepr(self.f),
            "weight": sp.srepr(self.weight), "coupling_range": list(self.coupling_range),
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    @cached_property
    def _bounds(self) -> tuple[list[Callable], list[Callable]]:
        x1 = self.variables[0]
        lower = [numeric(b.expr, (x1,)) for b in self.region if b.side == "lower"]
        upper = [numeric(b.expr, (x1,)) for b in self.region if b.side == "upper"]
        return lower, upper

    def inner_interval(self, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""The interval :math:`[l(x_1), u(x_1)]` of :math:`x_2` inside the region (empty where :math:`l \ge u`)."""
        x1 = np.asarray(x1, dtype=float)
        (a2, b2) = self.support_floats[1]
        lower, upper = self._bounds
        lo = np.full(x1.shape, a2)
        hi = np.full(x1.shape, b2)
        for h in lower:
            lo = np.maximum(lo, np.asarray(h(x1), dtype=float))
        for h in upper:
            hi = np.minimum(hi, np.asarray(h(x1), dtype=float))
        return lo, hi

    @cached_property
    def _inverses(self) -> tuple[list[tuple[Callable, list[Callable]]], str]:
        r"""Per bound :math:`x_2 = h(x_1)` of the region, :math:`h` and the branches :math:`x_1 = h^{-1}(t)`
        SymPy solves for; or, if it cannot solve one, ``([], why)``."""
        x1, t = self.variables[0], sp.Dummy("t", real=True)
        out = []
        for bound in self.region:
            branches = within(LIMITS.seconds, lambda bound=bound: _solutions(bound.expr, x1, t), None)
            if branches is None:
                return [], f"SymPy cannot solve the region's bound {bound.text!r} for {x1}"
            out.append((numeric(bound.expr, (x1,)), [numeric(branch, (t,)) for branch in branches]))
        return out, ""

    def outer_intervals(self, x2: float) -> list[tuple[float, float]]:
        r"""The intervals of :math:`x_1` where the region holds the point :math:`x_2`: the box's
        :math:`x_1` range cut where a bound crosses :math:`x_2`. The crossings come from a scan in the
        quadrature variable of :math:`x_1`, refined to full precision, each confirmed by one of the
        bound's inverse branches (which also supply crossings too close together for the scan).

        Raises:
            RenormError: If a bound cannot be inverted, or crosses :math:`x_2` where no branch says so.
        """
        inverses, why = self._inverses
        if why:
            raise RenormError(f"the marginal in {self.variables[1]} needs the {self.variables[0]} interval at each {self.variables[1]}: {why}")
        (a1, b1), _ = self.support_floats
        mapping = quadrature_map((a1, b1), self.singular[0])
        scan = np.sort(mapping.from_latent(np.linspace(*mapping.latent_range(), 4001)))
        scan = scan[(scan > a1) & (scan < b1)]
        cuts = [a1, b1]
        from scipy.optimize import brentq  # imported at the first use, as everywhere on the command line's path

        with np.errstate(all="ignore"):
            for h, branches in inverses:
                gap = lambda v, h=h: float(h(np.float64(v))) - x2
                side = np.sign(np.asarray(h(scan), dtype=float) - x2)
                # the crossings the scan sees, to full precision (a branch can lose digits, as 1 - sqrt(1 - t) does)
                crossings = [brentq(gap, scan[i], scan[i + 1], xtol=1e-300, rtol=8 * np.finfo(float).eps) for i in np.flatnonzero(side[:-1] * side[1:] < 0)]
                values = [r for r in (_real(branch(np.float64(x2))) for branch in branches) if a1 < r < b1]
                near = lambda r, c: abs(r - c) <= 1e-2 * max(abs(r), abs(c))
                for c in crossings:
                    if not any(near(r, c) for r in values):
                        raise RenormError(f"the region's bound of {self.variables[1]} crosses {self.variables[1]} = {x2:g} near {self.variables[0]} = {c:.6g}, "
                                          "where none of the solutions SymPy found for it lies")
                # and the crossings only a branch sees (two within one cell of the scan)
                cuts += crossings + [r for r in values if not any(near(r, c) for c in crossings)
                                     and math.isclose(gap(r) + x2, x2, rel_tol=1e-9, abs_tol=1e-300)]
        cuts = sorted(set(cuts))
        out: list[tuple[float, float]] = []
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            middle = 0.5 * (lo + hi) if math.isfinite(lo) and math.isfinite(hi) else (lo + 1 + abs(lo) if math.isfinite(lo) else hi - 1 - abs(hi))
            if self.contains(np.array([middle]), np.array([x2]))[0]:
                if out and out[-1][1] == lo:
                    out[-1] = (out[-1][0], hi)
                else:
                    out.append((lo, hi))
        return out

    def second_marginal_refusal(self, x2: np.ndarray) -> str:
        r"""Why the marginal in :math:`x_2` cannot be taken at the points ``x2`` (:meth:`outer_intervals`
        refuses one of them), or ``""``."""
        try:
            for v in np.asarray(x2, dtype=float).ravel():
                self.outer_intervals(float(v))
        except RenormError as error:
            return str(error)
        return ""

    def contains(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        r"""Whether points lie strictly inside the box and the region."""
        x1, x2 = np.asarray(x1, dtype=float), np.asarray(x2, dtype=float)
        (a1, b1), _ = self.support_floats
        lo, hi = self.inner_interval(x1)
        with np.errstate(invalid="ignore"):
            return (x1 > a1) & (x1 < b1) & (x2 > lo) & (x2 < hi)

    def bulk_points(self) -> np.ndarray:
        r"""Points of the bulk, shape ``(n, 2)``: fractions 0.05, 0.2 and 0.5 of the way across
        :math:`x_1`'s support and of :math:`x_2`'s interval there, from the singular side."""
        t = np.array([0.05, 0.2, 0.5])
        (a1, b1), (a2, b2) = self.support_floats
        x1 = across(a1, b1, t, self.singular[0], _FAR)
        points = []
        for value in x1:
            lo, hi = (float(v[0]) for v in self.inner_interval(np.array([value])))
            if lo < hi:
                points += [(value, x2) for x2 in across(lo, hi, t, self.singular[1], _FAR)]
        return np.array(points)


def make_multi_problem(
    *,
    name: str,
    density: Any,
    x: Sequence[Any],
    coupling: Any = "alpha",
    support: Sequence[Any] = (("0", "1"), ("0", "1")),
    singular: Any = "lower",
    region: Any = None,
    order: int = 1,
    f: Any = "log",
    C: Any = None,
    weight: Any = None,
    coupling_range: tuple[float, float] = (0.05, 0.3),
    constants: Mapping[str, Any] | None = None,
    source: str | None = None,
    training: Mapping[str, Any] | None = None,
) -> MultiProblem:
    r"""Builds and validates a :class:`MultiProblem` (the fields of :func:`~renorm.symbolic.make_problem`, and):

    Arguments:
        x: The observables' names, two of them.
        support: One pair of endpoints per observable (a box); ``"oo"`` allowed.
        singular: ``lower``, ``upper`` or ``none``, one per observable or one for both.
        region: Inequalities that cut the box, a string or a list of strings, each a chain such as
            ``"x1**2 <= x2 <= x1"``; every comparison must bound :math:`x_2` by a function of
            :math:`x_1` (SymPy must solve it for :math:`x_2`).
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"name: {_short(name)} is not a usable name: 1 to 64 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit")
    if not isinstance(x, (list, tuple)) or len(x) != 2:
        size = len(x) if isinstance(x, (list, tuple)) else None
        more = f"{size} variables are not supported yet (two at most)" if size and size > 2 else f"expected two variable names, got {_short(x)}"
        raise SpecError(f"target.x: {more}")
    names, a_name = _variable_names(list(x), coupling)
    values = _constants(constants or {}, (*names, a_name))
    if not isinstance(support, (list, tuple)) or len(support) != len(names) or not all(isinstance(s, (list, tuple)) for s in support):
        raise SpecError(f"target.support: expected one pair of endpoints per variable, like [[\"0\", \"1\"], [\"0\", \"1\"]], got {_short(support)}")
    ends = tuple(_support(s, values, f"target.support[{i}]") for i, s in enumerate(support))
    sides = tuple(singular) if isinstance(singular, (list, tuple)) else (singular,) * len(names)
    if len(sides) != len(names):
        raise SpecError(f"target.singular: expected one of lower, upper, none per variable, got {_short(singular)}")
    for side, (lo, hi) in zip(sides, ends):
        _check_shape(side, order, float(lo), float(hi))
    symbols = tuple(_symbol_for(n, positive=float(lo) >= 0) for n, (lo, _) in zip(names, ends))
    alpha = sp.Symbol(a_name, positive=True)
    namespace = {**values, **dict(zip(names, symbols)), a_name: alpha}
    plain = {sp.Symbol(n): s for n, s in zip(names, symbols)} | {sp.Symbol(n, real=True): s for n, s in zip(names, symbols)}

    def physics_expr(value: Any, where: str, allowed: set[sp.Symbol] | None = None) -> sp.Expr:
        expr = _as_expr(value, namespace, where)
        expr = expr.subs({**plain, sp.Symbol(a_name): alpha, sp.Symbol(a_name, real=True): alpha})
        expr = expr.subs({sp.Symbol(k): v for k, v in values.items()})
        _check_free(expr, {*symbols, alpha} if allowed is None else allowed, where)
        return expr

    if density is None:
        raise SpecError("target.density: missing (a target in several variables needs a density formula; events and histograms are one-dimensional)")
    p = physics_expr(density, "target.density")
    if alpha not in p.free_symbols:
        raise SpecError(f"target.density: {_short(sp.sstr(p))} does not depend on the coupling {a_name!r}")
    bounds = _region(region, symbols, ends, physics_expr)
    f_expr, f_kind = _matching_function(f, MultiProblem.q)
    problem = MultiProblem(
        name=name, variables=symbols, coupling=alpha, support=ends, singular=sides, region=bounds, order=order,
        density=p, f=f_expr, f_kind=f_kind, weight=_weight(C, weight, physics_expr), coupling_range=_coupling_range(coupling_range),
        constants=values, source=source, training=_training(training or {}),
    )
    _check_region(problem)
    _check_weight(problem)
    return problem


def _region(region: Any, symbols: tuple[sp.Symbol, ...], ends: tuple, physics_expr: Callable) -> tuple[Bound, ...]:
    r"""The region's inequalities as bounds on :math:`x_2`."""
    if region is None:
        return ()
    texts = [region] if isinstance(region, str) else region
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise SpecError(f"target.region: expected an inequality or a list of them, like \"x2 <= x1\", got {_short(region)}")
    x1, x2 = symbols
    bounds = []
    for text in texts:
        parts = _COMPARISON.split(text)
        if len(parts) < 3 or "=" in "".join(parts[::2]) or "!" in text:
            raise SpecError(f"target.region: {_short(text)} is not a chain of inequalities (<, <=, >, >=)")
        sides = [physics_expr(part, "target.region", {x1, x2}) for part in parts[::2]]
        for left, op, right in zip(sides, parts[1::2], sides[1:]):
            g = right - left if op.startswith("<") else left - right  # the region is g >= 0
            bounds.append(_bound(g, x1, x2, ends, text))
    return tuple(bounds)


def _bound(g: sp.Expr, x1: sp.Symbol, x2: sp.Symbol, ends: tuple, text: str) -> Bound:
    r"""``g(x1, x2) >= 0`` as :math:`x_2 \ge h(x_1)` or :math:`x_2 \le h(x_1)`, refused unless SymPy finds one such :math:`h`."""
    if x2 not in g.free_symbols:
        raise SpecError(f"target.region: {_short(text)} does not bound {x2}; bound {x1} alone with target.support instead")
    solutions = within(LIMITS.seconds / 10, lambda: sp.solve(sp.Eq(g, 0), x2), None)
    if solutions is None or len(solutions) != 1 or x2 in solutions[0].free_symbols:
        raise SpecError(f"target.region: cannot write {_short(text)} as one bound x2 <= h(x1) or x2 >= h(x1) (SymPy's solve found {'no unique' if solutions else 'no'} h)")
    # the side follows from the sign of dg/dx2, which must not change inside the box
    slope = numeric(sp.diff(g, x2), (x1, x2))
    (a1, b1), (a2, b2) = ((float(a), float(b)) for a, b in ends)
    grid = [_inside(a1, b1), _inside(a2, b2)]
    s = np.asarray(slope(grid[0][:, None], grid[1][None, :]), dtype=float)
    s = s[np.isfinite(s)]
    if not s.size or not ((s > 0).all() or (s < 0).all()):
        raise SpecError(f"target.region: {_short(text)} does not bound {x2} from one side everywhere in the box (d/d{x2} changes sign)")
    return Bound("lower" if s[0] > 0 else "upper", solutions[0], text)


def _inside(a: float, b: float, n: int = 17) -> np.ndarray:
    if math.isinf(b):
        return a + np.logspace(-6, 3, n)
    if math.isinf(a):
        return b - np.logspace(-6, 3, n)
    return a + (b - a) * np.linspace(0, 1, n + 2)[1:-1]


def _check_region(problem: MultiProblem) -> None:
    x1 = _inside(*problem.support_floats[0], n=201)
    lo, hi = problem.inner_interval(x1)
    if np.isnan(lo).any() or np.isnan(hi).any():
        i = int(np.argmax(np.isnan(lo) | np.isnan(hi)))
        raise SpecError(f"target.region: a bound on {problem.variables[1]} is not a real number at {problem.variables[0]} = {x1[i]:.6g}")
    if not (lo < hi).any():
        raise SpecError("target.region: the region is empty inside the support box")


def _check_weight(problem: MultiProblem) -> None:
    weight = numeric(problem.weight, (*problem.variables, problem.coupling))
    points = problem.bulk_points()
    alphas = np.linspace(*problem.coupling_range, 5)
    with np.errstate(all="ignore"):
        values = np.asarray(weight(points[:, :1], points[:, 1:], alphas[None, :]), dtype=complex)
    bad = ~np.isfinite(values) | (np.abs(values.imag) > 0) | (values.real < 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise SpecError(f"matching: the weight 1/(2C^2) = {_short(sp.sstr(problem.weight))} is {values[i, j]} at {tuple(points[i])}, alpha={alphas[j]:.6g}; it must be real, finite and >= 0")


def multi_coefficients(problem: MultiProblem) -> list[sp.Expr]:
    r"""The pointwise coefficients :math:`p^n(x_1, x_2) = \frac{1}{n!}\partial_\alpha^n p|_{\alpha=0}`, :math:`n \le N`.

    These are the regular parts inside the region; the distributional parts on the singular
    faces and corner are not derived in two dimensions.
    """
    alpha = problem.coupling

    def expand() -> list[sp.Expr]:
        out, term = [], problem.density
        for n in range(problem.order + 1):
            value = term.subs(alpha, 0)
            if value.has(sp.nan, sp.zoo, sp.oo, -sp.oo):
                value = sp.limit(term, alpha, 0, "+")
            # as the derivative gives it: simplify would put p^1 of the angularity pair over l1 l2^3,
            # which overflows where the target itself (over l1 l2) does not
            out.append(value / sp.factorial(n))
            term = sp.diff(term, alpha)
        return out

    terms = within(LIMITS.seconds, expand, None)
    if terms is None:
        raise RenormError(problem.where("target.density", f"the alpha-expansion did not finish within {LIMITS.seconds:g} s (the limit)"))
    for n, term in enumerate(terms):
        if term.has(sp.nan, sp.zoo, sp.oo, -sp.oo, sp.Limit):
            raise RenormError(problem.where("target.density", f"p^{n} is not a finite function at alpha = 0: {_short(sp.sstr(term))}"))
    return terms


@dataclass(frozen=True)
class MultiSolution:
    r"""The exact minimizer at one coupling (see :class:`~renorm.symbolic.Solution`)."""

    alpha: float
    lagrange_multiplier: float
    normalization: float
    loss: float
    minimizer: "MultiMinimizer" = field(repr=False, compare=False)

    def q(self, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        r""":math:`q^*(x_1, x_2|\alpha)`, 0 outside the region."""
        return self.minimizer.q(x1, x2, self.alpha, self.lagrange_multiplier)

    @cached_property
    def nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""The nodes :math:`(x_1, x_2)` and weights of the nested quadrature adapted to :math:`q^*`
        (computed once: training, its grid and its certificate all read them)."""
        return self.minimizer.rule(self.q)[1:]

    def marginal(self, axis: int, points: np.ndarray) -> np.ndarray:
        r"""The marginal density of :math:`q^*` in variable ``axis`` (0 or 1) at ``points``."""
        return self.minimizer.marginal(lambda x1, x2: self.q(x1, x2), axis, points)


def _outer_limits(problem: MultiProblem) -> tuple[tuple[sp.Expr, sp.Expr] | None, str]:
    r"""The :math:`x_1` interval the region holds at each :math:`x_2`, as two expressions in :math:`x_2`:
    per side, the box's end or the one inverse branch of a bound that matches
    :meth:`MultiProblem.outer_intervals` at 9 points across the support of :math:`x_2` (``None`` and why otherwise)."""
    x1, x2 = problem.variables
    (a1, b1), (a2, b2) = problem.support
    t = sp.Dummy("t", real=True)
    candidates = [a1, b1]
    for bound in problem.region:
        branches = within(LIMITS.seconds, lambda bound=bound: _solutions(bound.expr, x1, t), None)
        if branches is None:
            return None, f"SymPy cannot solve the region's bound {bound.text!r} for {x1}"
        candidates += [branch.subs(t, x2) for branch in branches]
    lo2, hi2 = problem.support_floats[1]
    mapping = quadrature_map((lo2, hi2), problem.singular[1])
    u_lo, u_hi = mapping.latent_range()
    probes = np.sort(mapping.from_latent(np.linspace(max(u_lo, -40.0), min(u_hi, 40.0), 11)[1:-1]))
    try:
        intervals = [problem.outer_intervals(float(v)) for v in probes]
    except RenormError as error:
        return None, str(error)
    if any(len(found) != 1 for found in intervals):
        return None, f"the region holds more or fewer than one {x1} interval at some {x2}"
    numeric_candidates = [(c, numeric(sp.sympify(c), (x2,))) for c in candidates]
    limits = []
    for side in range(2):
        ends = np.array([found[0][side] for found in intervals])
        match = None
        for expr, fn in numeric_candidates:
            with np.errstate(all="ignore"):
                values = np.broadcast_to(np.asarray(fn(probes), dtype=complex), probes.shape)
            # identification only (the limit used is the exact expression): a branch may lose digits in float64
            if np.allclose(values.real, ends, rtol=1e-3, atol=0) and np.allclose(values.imag, 0, atol=1e-12):
                match = sp.sympify(expr)
                break
        if match is None:
            return None, f"the {'lower' if side == 0 else 'upper'} end of the {x1} interval is not one expression in {x2}"
        limits.append(match)
    return (limits[0], limits[1]), ""


def _solutions(expr: sp.Expr, x: sp.Symbol, t: sp.Symbol) -> list[sp.Expr] | None:
    r"""SymPy's solutions of ``expr = t`` for ``x`` (``None`` where it cannot solve)."""
    try:
        return sp.solve(sp.Eq(expr, t), x)
    except NotImplementedError:
        return None


def _real(value: Any) -> float:
    r"""A branch's value as a real number (NaN where it is complex or not finite)."""
    value = complex(np.asarray(value).item())
    return value.real if value.imag == 0 or abs(value.imag) <= 1e-12 * abs(value.real) else math.nan


def _columns(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    r"""``values[i]`` along row ``i`` of an array of ``shape``: the fixed coordinate of a batch of inner integrals."""
    return np.repeat(values[:, None], shape[1], axis=1)


class MultiMinimizer:
    r"""Numerical evaluation of :math:`q_\lambda(x_1, x_2|\alpha)` and the solution of :math:`\iint q_\lambda = 1`.

    Arguments:
        problem: The two-dimensional matching problem.
    """

    def __init__(self, problem: MultiProblem):
        self.problem = problem
        args = (*problem.variables, problem.coupling)
        self._p = numeric(problem.density, args)
        self._c2 = numeric(problem.C_squared, args)
        self._w = numeric(problem.weight, args)
        self._log_abs = None
        self.matching = matching_function(problem)  # type: ignore[arg-type]
        self.outer = quadrature_map(problem.support_floats[0], problem.singular[0])

    # pointwise pieces -------------------------------------------------------------
    def p(self, x1, x2, alpha: float) -> np.ndarray:
        r""":math:`p`; where the formula gives NaN (:math:`\infty \cdot 0`: :math:`1/(x_1 x_2)` overflows at
        the corner while a Sudakov factor underflows), the exponential of its expanded logarithm."""
        out = np.asarray(self._p(x1, x2, alpha), dtype=float)
        bad = np.isnan(out)
        if bad.any():
            out = out.copy()
            with np.errstate(all="ignore"):
                out[bad] = np.real(np.exp(self._expanded_log(x1, x2, alpha, bad)))
        return out

    def C_squared(self, x1, x2, alpha: float) -> np.ndarray:
        return np.asarray(self._c2(x1, x2, alpha), dtype=float)

    def weight(self, x1, x2, alpha: float) -> np.ndarray:
        return np.asarray(self._w(x1, x2, alpha), dtype=float)

    def _expanded_log(self, x1, x2, alpha: float, where: np.ndarray) -> np.ndarray:
        r""":math:`\log p` with products and powers expanded, in complex arithmetic (real part :math:`\log|p|` on any branch),
        at the points ``where`` selects (a boolean mask of the broadcast shape): the formula is slow and needed only there."""
        if self._log_abs is None:
            self._log_abs = numeric(sp.expand_log(sp.log(self.problem.density), force=True), (*self.problem.variables, self.problem.coupling))
        x1, x2 = (np.broadcast_to(np.asarray(v, dtype=complex), where.shape)[where] for v in (x1, x2))
        return np.asarray(self._log_abs(x1, x2, alpha), dtype=complex)

    def log_abs_p(self, x1, x2, alpha: float) -> np.ndarray:
        r""":math:`\log|p|`, finite where :math:`p` overflows (from the expanded logarithm there)."""
        p = self.p(x1, x2, alpha)
        with np.errstate(all="ignore"):
            out = np.log(np.abs(p))
            overflow = np.isinf(p) | (p == 0)
            if overflow.any():
                out = np.array(out, dtype=float)
                out[overflow] = np.real(self._expanded_log(x1, x2, alpha, overflow))
        return out

    def _pointwise(self, method: Callable, x1, x2, alpha: float, lam: float) -> np.ndarray:
        r"""A pointwise method of the matching function at :math:`(x_1, x_2)`."""
        return method(self.p(x1, x2, alpha), self.C_squared(x1, x2, alpha), lam, lambda: self.log_abs_p(x1, x2, alpha))

    def q(self, x1, x2, alpha: float, lam: float) -> np.ndarray:
        r""":math:`q_\lambda(x_1, x_2|\alpha)`, 0 outside the region."""
        inside = self.problem.contains(x1, x2)
        return np.where(inside, self._pointwise(self.matching.q, x1, x2, alpha, lam), 0.0)

    def log_q(self, x1, x2, alpha: float, lam: float) -> np.ndarray:
        return self._pointwise(self.matching.log_q, x1, x2, alpha, lam)

    def deviation(self, x1, x2, alpha: float, lam: float) -> np.ndarray:
        return self._pointwise(self.matching.deviation, x1, x2, alpha, lam)

    def loss_density(self, x1, x2, alpha: float, log_q: np.ndarray) -> np.ndarray:
        return self.matching.loss_density(self.p(x1, x2, alpha), self.weight(x1, x2, alpha), log_q, lambda: self.log_abs_p(x1, x2, alpha))

    # integrals -------------------------------------------------------------------
    def inner_integrals(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], x1: np.ndarray, rtol: float = _RTOL, atol: float = 0.0) -> SupportBatch:
        r""":math:`\int g(x_1, x_2)\, dx_2` over the region at each of the points ``x1``, adapted together
        (an empty interval gives 0 and no nodes)."""
        lo, hi = self.problem.inner_interval(x1)
        maps = [quadrature_map((float(a), float(b)), self.problem.singular[1]) for a, b in zip(lo, hi)]
        inside = np.flatnonzero(lo < hi)
        values = np.zeros(x1.size)
        if not inside.size:
            return SupportBatch(values, np.empty(0), np.empty(0), np.zeros(x1.size + 1, dtype=int))
        batch = support_quadratures(lambda x2, owner: fn(_columns(x1[inside][owner], x2.shape), x2), [maps[k] for k in inside], rtol=rtol, atol=atol)
        values[inside] = batch.values
        counts = np.zeros(x1.size, dtype=int)
        counts[inside] = np.diff(batch.starts)
        return SupportBatch(values, batch.x, batch.weights, np.concatenate([[0], np.cumsum(counts)]))

    def rule(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], rtol: float = _RTOL, atol: float = 0.0) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        r""":math:`\iint g` by nested adaptive quadrature, and the nodes and weights that reproduce it.

        Each round of the outer level adapts the inner integrals at all its new nodes at once
        (:meth:`inner_integrals`). ``atol`` bounds each level's absolute error too: a
        normalization integral needs no inner integral to better than 1e-14 of 1, and one that
        cancels (:math:`p - \lambda C^2` where both are near 1) cannot reach ``rtol`` of its own small value.

        Returns:
            ``(value, x1, x2, weights)``; ``value`` is ``inf`` (and the arrays empty) if either
            level does not converge (an integrand not integrable at a face or corner).
        """
        inner: dict[float, tuple[SupportBatch, int]] = {}

        def outer(x1: np.ndarray, owner: np.ndarray) -> np.ndarray:
            new = np.array([v for v in np.unique(x1) if float(v) not in inner])
            if new.size:
                batch = self.inner_integrals(fn, new, rtol, atol)
                inner.update((float(v), (batch, k)) for k, v in enumerate(new))
            return np.array([inner[float(v)][0].values[inner[float(v)][1]] for v in x1.ravel()]).reshape(x1.shape)

        outer_level = support_quadratures(outer, [self.outer], rtol=rtol, atol=atol)
        empty = np.empty(0)
        if not math.isfinite(outer_level.values[0]):
            return math.inf, empty, empty, empty
        columns = [], [], []
        for x1, w1 in zip(*outer_level.nodes(0)):
            batch, k = inner[float(x1)]
            x2, w2 = batch.nodes(k)
            columns[0].append(np.full(x2.shape, x1))
            columns[1].append(x2)
            columns[2].append(w1 * w2)
        return float(outer_level.values[0]), *(np.concatenate(c) if c else empty for c in columns)

    def normalization(self, alpha: float, lam: float) -> float:
        r""":math:`\iint q_\lambda\, dx_1 dx_2` over the region."""
        return self.rule(lambda x1, x2: self.q(x1, x2, alpha, lam), atol=_ATOL)[0]

    def loss(self, alpha: float, lam: float) -> float:
        r""":math:`L[q_\lambda] = \iint w|f(q_\lambda) - f(p)|^2` (``inf`` if it diverges)."""
        return self.rule(lambda x1, x2: self.loss_density(x1, x2, alpha, self.log_q(x1, x2, alpha, lam)), rtol=1e-8)[0]

    def marginal(self, density: Callable[[np.ndarray, np.ndarray], np.ndarray], axis: int, points: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
        r"""The marginal of ``density`` in variable ``axis`` at ``points``, each integral adapted to ``rtol``.

        The marginal in :math:`x_2` integrates over the :math:`x_1` intervals the region holds at
        each point (:meth:`MultiProblem.outer_intervals`), resolving the singular face of :math:`x_1`
        where an interval reaches it.
        """
        points = np.asarray(points, dtype=float)
        if axis == 0:
            return self.inner_integrals(density, points.ravel(), rtol=rtol).values.reshape(points.shape)
        flat = points.ravel()
        (a1, b1), _ = self.problem.support_floats
        singular = self.problem.singular[0]
        pieces = [(k, lo, hi) for k, v in enumerate(flat) for lo, hi in self.problem.outer_intervals(float(v))]
        if not pieces:
            return np.zeros(points.shape)
        owner = np.array([k for k, _, _ in pieces])
        maps = [quadrature_map((lo, hi), "lower" if singular == "lower" and lo == a1 else "upper" if singular == "upper" and hi == b1 else "none")
                for _, lo, hi in pieces]
        batch = support_quadratures(lambda x1, piece: density(x1, _columns(flat[owner[piece]], x1.shape)), maps, rtol=rtol)
        return np.bincount(owner, batch.values, flat.size).reshape(points.shape)

    def solve(self, alpha: float, guess: float | None = None, loss: bool = True) -> MultiSolution:
        r"""Solves :math:`\iint q_\lambda = 1` for λ.

        The root is found on the nodes of a nested quadrature adapted to :math:`q_\lambda` at the
        current λ (cheap: :math:`p` and :math:`C^2` are fixed there), and the nodes re-adapted at the
        new λ until λ settles: the last nodes are then adapted to the λ they give (to 1e-11), and
        the normalization is read on them; a λ that does not settle is checked by a fresh nested quadrature.

        Arguments:
            loss: Whether to compute :math:`L[q^*]` (else NaN), the costliest integral at small α.

        Raises:
            NotNormalizableError: If no λ normalizes :math:`q_\lambda`.
        """
        alpha = float(alpha)
        loss_at = (lambda lam: self.loss(alpha, lam)) if loss else (lambda lam: math.nan)
        at_zero = self.normalization(alpha, 0.0)
        if math.isfinite(at_zero) and abs(at_zero - 1.0) <= 1e-12:
            return MultiSolution(alpha, 0.0, at_zero, loss_at(0.0), self)
        if at_zero < 1.0 and not self.matching.negative_multiplier:
            raise NotNormalizableError(self.matching.no_negative_multiplier(alpha, at_zero))
        sign = 1.0 if at_zero > 1.0 else -1.0
        lam = sign * (abs(guess) if guess else 1.0)
        settled = False
        for _ in range(60):
            value, x1, x2, w = self.rule(lambda a, b: self.q(a, b, alpha, lam), atol=_ATOL)
            if not math.isfinite(value):
                if abs(lam) > 1e100:
                    raise NotNormalizableError(
                        f"no normalized minimizer at α = {alpha:g}: with f = {self.matching.kind} and this C, ∫q_λ diverges for every λ up to 1e100 "
                        "(q_λ follows p where p is not integrable: at a singular face, or on an unbounded support where p does not decay)")
                lam *= 1e8
                continue
            new = sign * self._root(x1, x2, w, alpha, sign, lam)
            settled = abs(new - lam) <= 1e-11 * abs(new)
            lam = new
            if settled:
                break
        normalization = float(w @ self.q(x1, x2, alpha, lam)) if settled else self.normalization(alpha, lam)
        if not abs(normalization - 1.0) <= _NORMALIZATION_TOLERANCE:
            raise NotNormalizableError(f"no normalized minimizer found at α = {alpha:g}: the nested quadrature gives ∫q_λ = {normalization:.10g} at the λ = {lam:.6g} its nodes agree on")
        return MultiSolution(alpha, lam, normalization, loss_at(lam), self)

    def _root(self, x1: np.ndarray, x2: np.ndarray, w: np.ndarray, alpha: float, sign: float, start: float) -> float:
        r"""|λ| with :math:`\sum_k w_k q_\lambda(x_k) = 1` on fixed nodes (:func:`~renorm.symbolic._solve.bracket` in :math:`\log|\lambda|`)."""
        p, c2 = self.p(x1, x2, alpha), self.C_squared(x1, x2, alpha)
        log_abs = self.log_abs_p(x1, x2, alpha)
        total = lambda t: float(w @ self.matching.q(p, c2, sign * math.exp(t), lambda: log_abs)) - 1.0
        return bracket(total, abs(start), sign > 0, alpha, self.matching.kind)


def multi_matched_order(problem: MultiProblem, steps: int = 10) -> MatchedOrder:
    r"""Through which order :math:`q^*` matches :math:`p^N` at the bulk points (the method of
    :func:`~renorm.symbolic.matched_order`, at :meth:`MultiProblem.bulk_points`)."""
    minimizer = MultiMinimizer(problem)
    x1, x2 = problem.bulk_points().T
    return measure_order(problem, problem.variables, multi_coefficients(problem), (x1, x2),
                         lambda alpha, guess: minimizer.solve(alpha, guess, loss=False),
                         lambda alpha, lam: minimizer.deviation(x1, x2, alpha, lam), steps)


def marginal_problem(problem: MultiProblem, axis: int = 0) -> tuple[Problem | None, str]:
    r"""The one-dimensional problem of the target's marginal in variable ``axis``: :math:`\int p\, dx_2`
    (``axis = 0``) or :math:`\int p\, dx_1` (``axis = 1``), with the same :math:`f` and (if it does
    not depend on the variable integrated out) the same weight.

    In :math:`x_1` the limits are the region's bounds on :math:`x_2`. In :math:`x_2` they are the
    inverse branches of those bounds that :meth:`MultiProblem.outer_intervals` finds, checked to be the
    one :math:`x_1` interval the region holds at 9 points across the support of :math:`x_2`.

    Returns:
        ``(problem, "")``, or ``(None, reason)`` where SymPy cannot integrate the target in closed
        form, the integral diverges, the weight depends on the variable integrated out, or (in
        :math:`x_2`) the limits are not one pair of inverse branches.
    """
    x1, x2 = problem.variables
    kept, out = (x1, x2) if axis == 0 else (x2, x1)
    if out in problem.weight.free_symbols:
        return None, f"the weight depends on {out}, so the marginal problem has no weight of its own"
    if axis == 0:
        (a2, b2) = problem.support[1]
        lower = [b.expr for b in problem.region if b.side == "lower"]
        upper = [b.expr for b in problem.region if b.side == "upper"]
        if len(lower) > 1 or len(upper) > 1:
            return None, "the region has several bounds on one side"
        lo = lower[0] if lower else a2
        hi = upper[0] if upper else b2
    else:
        limits, why = _outer_limits(problem)
        if limits is None:
            return None, why
        lo, hi = limits
    integral = within(LIMITS.seconds, lambda: sp.integrate(problem.density, (out, lo, hi)), None)
    if integral is None or integral.has(sp.Integral, sp.oo, -sp.oo, sp.zoo, sp.nan):
        return None, f"the integral of p over {out} is {'not finite' if integral is not None and not integral.has(sp.Integral) else 'not found in closed form'}"
    integral = sp.simplify(integral)
    if problem.coupling not in integral.free_symbols:
        return None, f"the integral of p over {out}, {_short(sp.sstr(integral))}, does not depend on {problem.coupling}: there is no expansion in it to match"
    try:
        marginal = make_problem(
            name=f"{problem.name}.marginal{'' if axis == 0 else '2'}", density=integral, x=kept, coupling=problem.coupling,
            support=problem.support[axis], singular=problem.singular[axis], order=problem.order, f=problem.f, weight=problem.weight,
            coupling_range=problem.coupling_range)
    except RenormError as error:
        return None, str(error)
    return marginal, ""
