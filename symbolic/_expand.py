r"""α-expansion of the target and its distributional (δ and plus) coefficients."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import mpmath
import numpy as np
import sympy as sp

from ._budget import OverBudget, budget, within
from ._errors import RenormError, SpecError
from ._numeric import numeric
from ._maps import quadrature_map
from ._quadrature import integrate, integrate_support
from ._spec import LIMITS, Problem

__all__ = ["Coefficient", "expand", "coefficients"]


@dataclass(frozen=True)
class Coefficient:
    r"""The coefficient :math:`p^n` of :math:`\alpha^n` as a distribution on the support.

    With :math:`g = p^n_{reg}` the pointwise coefficient and :math:`e` the singular endpoint,

    .. math:: p^n = \delta_n\, \delta(x - e) + [g]_+ \quad\text{if } g \text{ is not integrable at } e,
    .. math:: p^n = \delta_n\, \delta(x - e) + g \quad\text{otherwise,}

    where :math:`\int [g]_+ \varphi = \int g\, (\varphi(x) - \varphi(e))` and the δ weight is fixed by
    :math:`\int p^n = \delta_{n0}` (the normalization of the platonic distribution at every α).

    Attributes:
        n: The order.
        regular: :math:`g(x)`, a SymPy expression.
        delta: The weight of :math:`\delta(x - e)` (zero when ``singular = none``).
        plus: :math:`g` when it needs the plus prescription, else ``0``.
        integral: :math:`\int g\,dx` over the support, ``inf`` if it diverges.
    """

    n: int
    regular: sp.Expr
    delta: sp.Expr
    plus: sp.Expr
    integral: float
    problem: Problem

    @cached_property
    def _values(self):
        return numeric(self.regular, (self.problem.x,))

    def values(self, x: np.ndarray) -> np.ndarray:
        r"""The regular part :math:`g(x)` at interior points."""
        x = np.asarray(x, dtype=float)
        with np.errstate(all="ignore"):
            return np.broadcast_to(np.asarray(self._values(x), dtype=float), x.shape).copy()

    def cumulant(self, x: np.ndarray) -> np.ndarray:
        r""":math:`\Sigma^n(x) = \int_a^x p^n` including the δ and plus parts.

        With the plus prescription at a singular lower endpoint,
        :math:`\Sigma^n(x) = \delta_n - \int_x^b g` (a plus distribution integrates to zero);
        otherwise :math:`\Sigma^n(x) = \delta_n [e = a] + \int_a^x g`.
        """
        p = self.problem
        x = np.atleast_1d(np.asarray(x, dtype=float))
        # the map and the break points are the same for every x
        mapping = quadrature_map(p.support_floats, p.singular)
        inside = mapping.to_latent(np.array(singular_points(p)))
        if p.singular == "lower" and self.plus != 0:
            return float(self.delta) - np.array([_integral(mapping, inside, self.values, xi, "above") for xi in x])
        offset = float(self.delta) if p.singular == "lower" else 0.0
        return offset + np.array([_integral(mapping, inside, self.values, xi, "below") for xi in x])


def _integral(mapping, inside: np.ndarray, g, x: float, side: str) -> float:
    r""":math:`\int_a^x g` (``below``) or :math:`\int_x^b g` (``above``) in the endpoint map, with
    break points ``inside`` (in the map's variable)."""
    u = float(mapping.to_latent(x))
    start, end = mapping.latent_range()
    lo, hi = (start, u) if (side == "below") == mapping.increasing else (u, end)
    inside = inside[(inside > lo) & (inside < hi)]
    return integrate(lambda t: g(mapping.from_latent(t)) * mapping.jacobian(t), lo, hi, breakpoints=inside).value


def expand(problem: Problem) -> list[sp.Expr]:
    r"""Pointwise coefficients :math:`p^n(x) = \frac{1}{n!}\partial_\alpha^n p|_{\alpha=0}`, :math:`n \le N`.

    Running couplings such as :math:`\alpha/(1 + \alpha b \log x)` expand into powers of logs.
    Each coefficient is checked to be a distribution on the support: locally integrable
    everywhere except at the singular endpoint, where the plus prescription regularizes it (see
    :func:`singular_points`). The result is cached per target.

    Raises:
        SpecError: If the target is not a power series in the coupling, or a coefficient has a
            non-integrable singularity inside the support or at an endpoint that is not the
            declared singular one.
    """
    key = _expansion_key(problem)
    if key not in _EXPANSIONS:
        terms = _expand(problem)
        if all(term == 0 for term in terms):
            raise SpecError(problem.where("target.density", f"its expansion vanishes through order {problem.order} (the density simplifies to 0 there): there is nothing to match"))
        checks = [_check_coefficient(problem, n, g) for n, g in enumerate(terms)]
        points = tuple(sorted({c for inside, _ in checks for c in inside}))
        _EXPANSIONS[key] = (terms, points, tuple(plus for _, plus in checks))
    return list(_EXPANSIONS[key][0])


def singular_points(problem: Problem) -> tuple[float, ...]:
    r"""Points inside the support where a coefficient :math:`p^n` has an integrable singularity.

    Quadratures use them as break points. Non-integrable singularities there are refused by
    :func:`expand`.
    """
    expand(problem)
    return _EXPANSIONS[_expansion_key(problem)][1]


_EXPANSIONS: dict[tuple, tuple[list[sp.Expr], tuple[float, ...], tuple[bool, ...]]] = {}


def _expansion_key(problem: Problem) -> tuple:
    return (sp.srepr(problem.density), sp.srepr(problem.x), sp.srepr(problem.coupling), problem.order,
            tuple(map(sp.srepr, problem.support)), problem.singular)


def _expand(problem: Problem) -> list[sp.Expr]:
    try:
        with budget(LIMITS.seconds):
            return _derivatives(problem)
    except OverBudget:
        raise SpecError(problem.where("target.density", f"the expansion in {problem.coupling} to order {problem.order} did not finish within {LIMITS.seconds:g} s (the limit); write the density more compactly or lower the order")) from None


def _size(expr: sp.Basic, limit: int) -> int:
    r"""The number of nodes of ``expr`` as a tree, counted up to ``limit + 1``."""
    count, stack = 0, [expr]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        stack.extend(node.args)
    return count


def _derivatives(problem: Problem) -> list[sp.Expr]:
    alpha = problem.coupling
    terms = []
    derivative = problem.density
    for n in range(problem.order + 1):
        if _size(derivative, LIMITS.expansion_nodes) > LIMITS.expansion_nodes:
            raise SpecError(problem.where("target.density", f"the derivative of order {n} in {alpha} has more than {LIMITS.expansion_nodes} terms (the limit); write the density more compactly or lower the order"))
        value = derivative.subs(alpha, 0)
        if value.has(sp.nan, sp.zoo) or not value.is_finite and value.is_finite is not None:
            try:
                value = sp.limit(derivative, alpha, 0, "+")
            except Exception as error:  # SymPy raises many types for non-analytic input
                raise SpecError(problem.where("target.density", f"cannot expand in {alpha} at order {n} ({type(error).__name__}: {error}); the target must be a power series in {alpha}")) from None
        if value.has(sp.oo, -sp.oo, sp.zoo, sp.nan):
            raise SpecError(problem.where("target.density", f"the coefficient of alpha^{n} is not finite ({sp.sstr(value)}); the target is not a power series in {alpha}"))
        value = value / math.factorial(n)
        if sp.count_ops(value) < 200:
            value = _simpler(problem, value)
        terms.append(value)
        derivative = sp.diff(derivative, alpha)
    return terms


def _simpler(problem: Problem, value: sp.Expr) -> sp.Expr:
    r"""``sp.simplify(value)`` where it evaluates to the same real numbers, else ``value``.

    SymPy simplifies over the complex numbers: ``1/sqrt(Abs(4*x - 1))`` becomes
    ``1/Abs(sqrt(4*x - 1))``, which is NaN in real arithmetic for ``x < 1/4``. So the simplified
    form must be finite in NumPy wherever the original is, and equal to it in mpmath at 50
    digits (to 1e-30, so that a sum that cancels exactly, ``sin(x)**2 + cos(x)**2 - 1``, may
    become 0 although float64 leaves rounding noise).
    """
    if value.has(sp.Float):
        # a fitted coefficient is already polynomials times logarithms; simplify would fold a
        # float polynomial into the logarithm, log(1/(2x))**P -> log((1/(2x))**P)
        return value
    simple = within(LIMITS.seconds / 10, lambda: sp.simplify(value), value)
    if simple == value or not value.has(problem.x):
        return simple
    x = problem.interior_points(32)
    with np.errstate(all="ignore"):
        before = np.broadcast_to(np.asarray(numeric(value, (problem.x,))(x), dtype=complex), x.shape)
        after = np.broadcast_to(np.asarray(numeric(simple, (problem.x,))(x), dtype=complex), x.shape)
    if not ((np.isfinite(before) <= np.isfinite(after)).all() and ((before.imag == 0) <= (after.imag == 0)).all()):
        return value
    try:
        exact = [sp.lambdify(problem.x, e, modules="mpmath") for e in (value, simple)]
        with mpmath.workdps(50):
            for point in x:
                one, two = (complex(f(mpmath.mpf(float(point)))) for f in exact)
                if not abs(one - two) <= 1e-30 + 1e-12 * abs(one):
                    return value
    except Exception:  # noqa: BLE001 - anything mpmath cannot evaluate keeps the original form
        return value
    return simple


#: Local exponents s of |g| ~ d^-s (d the distance to a point) from which g is not integrable
#: there (s = 1 exactly for a pole; the margin absorbs logarithms at the probe distances).
_NON_INTEGRABLE = 0.98
#: Interior singularities up to this exponent (logarithms: s ~ 0.05) are integrated as break
#: points; from it on, the part of the integral within float64 rounding distance of the point,
#: about eps^(1 - s), exceeds the quadrature's 1e-13 (measured: s = 0.2 errs by 9e-13).
_RESOLVED = 0.15
#: Probe distances, relative to the support's scale, for the local exponent.
_PROBES = (1e-7, 1e-10)


def _candidates(g: sp.Expr, x: sp.Symbol) -> list[sp.Expr]:
    r"""Expressions whose zeros are the candidate singular points of ``g``: bases of negative
    powers, arguments of logarithms, ``cos`` of a ``tan``, ``1/Γ`` of a ``Γ``."""
    out = []
    for node in sp.preorder_traversal(g):
        if node.is_Pow and node.exp.is_negative and node.base.has(x):
            out.append(node.base)
        elif isinstance(node, sp.log) and node.has(x):
            out.append(node.args[0])
        elif isinstance(node, sp.tan) and node.has(x):
            out.append(sp.cos(node.args[0]))
        elif isinstance(node, sp.gamma) and node.has(x):
            out.append(1 / node)
    return list(dict.fromkeys(out))


def _zeros(fn, xs: np.ndarray) -> list[float]:
    r"""Zeros of ``fn`` between the grid points ``xs``: sign changes (bisected) and touching minima of |fn|."""
    with np.errstate(all="ignore"):
        values = np.asarray(fn(xs), dtype=float)
    finite = np.isfinite(values)
    scale = float(np.median(np.abs(values[finite]))) if finite.any() else 1.0
    roots = list(xs[finite & (values == 0)])
    for i in np.nonzero(values[:-1] * values[1:] < 0)[0]:
        lo, hi, sign = xs[i], xs[i + 1], np.sign(values[i])
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            with np.errstate(all="ignore"):
                value = float(fn(np.array([mid]))[0])
            if value == 0 or not lo < mid < hi:
                break
            lo, hi = (mid, hi) if np.sign(value) == sign else (lo, mid)
        roots.append(0.5 * (lo + hi))
    magnitude = np.abs(values)
    # a zero without a sign change (|x - c|, (x - c)^2) is a local minimum of |fn| on the grid
    touching = np.nonzero((magnitude[1:-1] < magnitude[:-2]) & (magnitude[1:-1] <= magnitude[2:]))[0] + 1
    size = lambda t: abs(float(fn(np.array([t]))[0]))
    for i in touching:
        # golden-section search of the minimum (|fn| has a kink there: no derivatives)
        lo, hi = xs[i - 1], xs[i + 1]
        for _ in range(120):
            left, right = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
            lo, hi = (lo, right) if size(left) < size(right) else (left, hi)
        c = 0.5 * (lo + hi)
        if size(c) <= 1e-9 * scale:
            roots.append(c)
    return roots


def _local_exponent(fn, point: float, direction: float, scale: float) -> float:
    r"""The exponent s of :math:`|g| \sim d^{-s}` approaching ``point`` from one side (``nan`` if g is 0 there)."""
    d = np.array(_PROBES) * scale
    with np.errstate(all="ignore"):
        values = np.abs(np.asarray(fn(point + direction * d), dtype=float))
    if not (np.isfinite(values).all() and (values > 0).all()):
        return math.inf if np.isinf(values).any() else math.nan
    return float(np.log(values[1] / values[0]) / np.log(d[0] / d[1]))


def _unresolved(s: float) -> str:
    return f"about {1e-16 ** (1 - s) / (1 - s):.0e} of its integral lies within float64 rounding distance of the point"


def _check_coefficient(problem: Problem, n: int, g: sp.Expr) -> tuple[list[float], bool]:
    r"""Refuses a coefficient that is not a distribution, or one float64 quadrature cannot integrate.

    Away from the singular endpoint :math:`p^n` must be integrable; where it has a singularity
    :math:`|x - c|^{-s}`, the part of the integral within rounding distance of :math:`c`,
    about :math:`\epsilon^{1 - s}`, must be below the quadrature's accuracy (logarithms are;
    :math:`s = 1/2` is not). At the singular endpoint a non-integrable :math:`p^n` gets the
    plus prescription; there, an endpoint :math:`e \ne 0` is resolved only to
    :math:`\epsilon|e|` (the variable maps resolve distances down to 1e-300 at 0 only).

    Returns:
        The points inside the support where :math:`p^n` has an integrable singularity, and
        whether :math:`p^n` is not integrable at a nonzero singular endpoint (``None`` where
        the quadrature decides).
    """
    if g == 0 or not g.has(problem.x):
        return [], False
    a, b = problem.support_floats
    fn = numeric(g, (problem.x,))
    try:
        fn(np.array([0.5 * (a + b) if math.isfinite(a + b) else a + 1.0 if math.isfinite(a) else b - 1.0]))
    except RenormError:
        return [], False  # not evaluable in NumPy: every numerical use of it refuses it in one line
    mapping = quadrature_map((a, b), problem.singular)
    lo, hi = mapping.latent_range()
    xs = mapping.from_latent(np.linspace(max(lo, -60.0), min(hi, 60.0), 4001))
    xs = np.unique(xs[(xs > a) & (xs < b)])
    text = sp.sstr(g)
    text = text if len(text) <= 80 else text[:77] + "..."
    where = lambda message: SpecError(problem.where("target.density", f"the coefficient p^{n} = {text} {message}"))
    points = [c for candidate in _candidates(g, problem.x) for c in _zeros(numeric(candidate, (problem.x,)), xs)]
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(fn(xs), dtype=complex), xs.shape)
    bad = ~np.isfinite(values) | (values.imag != 0)
    if points:
        bad &= np.min(np.abs(xs[:, None] - np.array(points)[None, :]), axis=1) > 1e-9 * np.maximum(np.abs(xs), 1.0)
    if bad.any():
        i = int(np.argmax(bad))
        kind = "not real" if np.isfinite(values[i]) else "beyond the float64 range" if np.isinf(values[i]) else "undefined in real arithmetic"
        raise where(f"is {kind} at {problem.x} = {xs[i]:.6g} ({values[i].real if values[i].imag == 0 else values[i]}): every coefficient must be a real, finite number inside the support")
    inside = []
    for c in points:
        scale = min(c - a, b - c, 1.0)
        if scale <= 1e-12 * max(1.0, abs(c)):
            continue  # an endpoint, checked below
        s = max(_local_exponent(fn, c, -1.0, scale), _local_exponent(fn, c, 1.0, scale))
        if s >= _NON_INTEGRABLE:
            raise where(f"has a non-integrable singularity at {problem.x} = {c:.10g} inside the support ({a:g}, {b:g}): "
                        "a fixed-order coefficient must be integrable everywhere but at the singular endpoint")
        if s > _RESOLVED:
            raise where(f"has a singularity |{problem.x} - {c:.10g}|^-{s:.2g} inside the support: integrable, but {_unresolved(s)}; "
                        "split the support there or smooth the singularity")
        inside.append(c)
    plus_at_end = False
    for end, direction, name in ((a, 1.0, "lower"), (b, -1.0, "upper")):
        if math.isinf(end):
            if name == problem.singular:
                continue
            # |g| ~ x^-s at large x is integrable for s > 1
            far = np.array([1e6, 1e9]) * max(1.0, abs(b if math.isinf(a) else a))
            with np.errstate(all="ignore"):
                values = np.abs(np.asarray(fn(-far if end < 0 else far), dtype=float))
            decay = math.inf if values[1] == 0 else float(np.log(values[0] / values[1]) / np.log(far[1] / far[0]))
            if not decay > 1.0 + (1.0 - _NON_INTEGRABLE):
                raise where(f"is not integrable as {problem.x} -> {end:g} (it decays like {problem.x}^-{decay:.3g})")
            continue
        s = _local_exponent(fn, end, direction, min(1.0, b - a))
        if name != problem.singular:
            if s >= _NON_INTEGRABLE:
                raise where(f"is not integrable at the {name} endpoint {problem.x} = {end:g}, which is not the singular one "
                            f"(singular = {problem.singular!r}); declare that endpoint singular or correct the density")
        elif end == 0.0:
            continue  # resolved to 1e-300 by the variable map: the quadrature decides
        elif s >= _NON_INTEGRABLE:
            plus_at_end = True
            continue
        if s > _RESOLVED:
            raise where(f"has a singularity |{problem.x} - {end:g}|^-{s:.2g} at the {name} endpoint: integrable, but {_unresolved(s)}; "
                        + ("shift the variable so that the singular endpoint is 0" if name == problem.singular else "smooth the singularity"))
    return inside, plus_at_end


def _integrability(problem: Problem, n: int, g: sp.Expr) -> float:
    r""":math:`\int g` over the support; ``inf`` when it diverges at an endpoint."""
    if g == 0:
        return 0.0
    if _EXPANSIONS[_expansion_key(problem)][2][n]:
        return math.inf
    fn = numeric(g, (problem.x,))
    mapping = quadrature_map(problem.support_floats, problem.singular)
    return integrate_support(lambda x: np.asarray(fn(x), dtype=float), mapping, mapping.to_latent(np.array(singular_points(problem))), rtol=1e-12)


#: δ weights below this are quadrature noise (the integrals run at relative 1e-12).
_ZERO = 1e-11


def coefficients(problem: Problem) -> list[Coefficient]:
    r"""The distributional coefficients :math:`p^0, \dots, p^N` (see :class:`Coefficient`)."""
    out = []
    for n, g in enumerate(expand(problem)):
        total = _integrability(problem, n, g)
        unit = sp.Integer(1 if n == 0 else 0)
        if problem.singular == "none":
            delta, plus = sp.Integer(0), sp.Integer(0)
        elif math.isinf(total):
            delta, plus = unit, g
        else:
            weight = float(unit) - total
            # exact when nothing was integrated; a weight at the quadrature's accuracy is zero
            if total == 0:
                delta = unit
            else:
                delta = sp.Float(weight, 15) if abs(weight) > _ZERO else sp.Integer(0)
            plus = sp.Integer(0)
        out.append(Coefficient(n=n, regular=g, delta=delta, plus=plus, integral=total, problem=problem))
    return out
