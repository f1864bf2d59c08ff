r"""Vectorized adaptive Gauss–Kronrod quadrature, and integrals over a support through its map."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ._maps import LogLower, LogUpper, SupportMap, Tanh

__all__ = ["integrate"]

# Kronrod 15-point nodes on [0, 1] half (symmetric), with the 7-point Gauss rule nested in
# the odd-indexed ones; the pair gives a free error estimate per panel.
_XK = np.array([
    0.991455371120812639206854697526329, 0.949107912342758524526189684047851,
    0.864864423359769072789712788640926, 0.741531185599394439863864773280788,
    0.586087235467691130294144845693013, 0.405845151377397166906606412076961,
    0.207784955007898467600689403773245, 0.0,
])
_WK = np.array([
    0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
    0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
    0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
    0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
])
_WG = np.array([0.129484966168869693270611432679082, 0.279705391489276667901467771423780,
                0.381830050505118944950369775488975, 0.417959183673469387755102040816327])

NODES = np.concatenate([-_XK[:-1], _XK[::-1]])
KRONROD = np.concatenate([_WK[:-1], _WK[::-1]])
GAUSS = np.zeros(15)
GAUSS[1:15:2] = np.concatenate([_WG[:-1], _WG[::-1]])


@dataclass(frozen=True)
class Quadrature:
    r"""Result of :func:`integrate`: the value, an error estimate and the panels used."""

    value: float
    error: float
    panels: int
    #: Left edges and values of the final panels (to read off partial integrals).
    edges: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    contributions: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    #: Right edges of the final panels.
    rights: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def on_panels(self, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        r"""The K15 integral of a vector-valued ``fn`` (abscissae of shape ``(P, 15)`` to values of
        shape ``(P, 15, K)``) on these panels, for integrands that the scalar one, adapted first,
        resolves as well."""
        half = 0.5 * (self.rights - self.edges)
        mid = 0.5 * (self.rights + self.edges)
        values = np.asarray(fn(mid[:, None] + half[:, None] * NODES[None, :]), dtype=float)
        return np.einsum("p,pnk,n->k", half, values, KRONROD)


def integrate(
    fn: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    breakpoints: np.ndarray | tuple[float, ...] = (),
    rtol: float = 1e-13,
    atol: float = 0.0,
    initial: int = 16,
    max_panels: int = 100_000,
) -> Quadrature:
    r"""Integrates a vectorized function by globally adaptive G7–K15 bisection.

    Each round bisects the panels with the largest error estimates until the remaining
    error is within tolerance, and evaluates all new panels in one call of ``fn``: a few
    dozen NumPy calls rather than thousands of scalar ones. Global (not per-panel)
    acceptance is what lets integrable endpoint singularities such as :math:`\log|u - u_0|`
    converge.

    Arguments:
        fn: Maps an array of abscissae (any shape) to values of the same shape.
        lo, hi: Finite limits.
        breakpoints: Points inside ``(lo, hi)`` where the integrand is not smooth.
        rtol, atol: Target accuracy :math:`\max(atol, rtol |I|)`.
        initial: Equal panels per interval between breakpoints at the start.
        max_panels: Stop refining beyond this many panels (the error estimate says so).

    Returns:
        A :class:`Quadrature`; ``value`` is NaN if ``fn`` returned a non-finite value.
    """
    edges = np.unique(np.concatenate([[lo], np.asarray(breakpoints, dtype=float), [hi]]))
    edges = edges[(edges >= lo) & (edges <= hi)]
    t = np.linspace(0.0, 1.0, initial + 1)
    left = (edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * t[None, :-1]).ravel()
    right = (edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * t[None, 1:]).ravel()
    panels = _adapt(lambda u, owner: fn(u), left, right, np.zeros(left.size, dtype=np.intp), 1, rtol, atol, max_panels)
    if panels.failed[0]:
        return Quadrature(math.nan, math.inf, panels.left.size)
    return Quadrature(float(panels.value.sum()), float(panels.error.sum()), panels.left.size, panels.left, panels.value, panels.right)


@dataclass(frozen=True)
class _Panels:
    r"""The final panels of :func:`_adapt`, grouped by owner (each owner's in the order they were made)."""

    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    error: np.ndarray
    owner: np.ndarray
    #: Per owner, whether its integrand returned a non-finite value (its panels are then the last ones tried).
    failed: np.ndarray


def _adapt(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], left: np.ndarray, right: np.ndarray, owner: np.ndarray,
           count: int, rtol: float, atol: float, max_panels: int) -> _Panels:
    r"""Globally adaptive G7–K15 bisection of ``count`` independent integrals at once.

    Panel ``i`` belongs to integral ``owner[i]`` (``owner`` sorted); ``fn(u, owner)`` evaluates the
    integrands at abscissae ``u`` of shape ``(P, 15)`` for panels of the given owners. Each integral is
    refined as if alone: its panels with the largest error estimates are bisected until its own error
    is within :math:`\max(atol, rtol |I|)`, and every round evaluates the new panels of all the
    integrals in one call of ``fn``.
    """
    value, error, floor = _panels(lambda u: fn(u, owner), left, right)
    failed = np.zeros(count, dtype=bool)
    failed[owner[~np.isfinite(value)]] = True
    # an integral within tolerance, out of panels or failed is never refined again
    open_ = ~failed
    every = np.arange(count + 1)
    while True:
        bounds = np.searchsorted(owner, every)
        chosen = []
        for k in np.flatnonzero(open_):
            # the same float64 operations as for one integral alone
            i, j = bounds[k], bounds[k + 1]
            own = error[i:j]
            tolerance = max(atol, rtol * abs(value[i:j].sum()))
            # panels at the round-off floor cannot improve by splitting
            splittable = own > floor[i:j]
            if j - i >= max_panels or own.sum() <= tolerance or not splittable.any():
                open_[k] = False
                continue
            # bisect the panels with the largest errors, the fewest that leave half the tolerance
            order = np.argsort(np.where(splittable, -own, 0.0))
            remaining = own.sum() - np.cumsum(own[order])
            needed = int(np.searchsorted(-remaining, -0.5 * tolerance)) + 1
            chosen.append(i + order[: min(needed, int(splittable.sum()))])
        if not chosen:
            break
        split = np.concatenate(chosen)
        mid = 0.5 * (left[split] + right[split])
        new_left, new_right = np.concatenate([left[split], mid]), np.concatenate([mid, right[split]])
        new_owner = np.concatenate([owner[split], owner[split]])
        new_value, new_error, new_floor = _panels(lambda u: fn(u, new_owner), new_left, new_right)
        bad = ~np.isfinite(new_value)
        if bad.any():
            failed[new_owner[bad]] = True
            open_ &= ~failed
        keep = np.ones(left.size, dtype=bool)
        keep[split] = False
        left, right, owner = np.concatenate([left[keep], new_left]), np.concatenate([right[keep], new_right]), np.concatenate([owner[keep], new_owner])
        value, error, floor = np.concatenate([value[keep], new_value]), np.concatenate([error[keep], new_error]), np.concatenate([floor[keep], new_floor])
        if count > 1:
            # regroup by owner, each owner's kept panels before its new ones (one owner: already so)
            regroup = np.argsort(owner, kind="stable")
            left, right, owner, value, error, floor = left[regroup], right[regroup], owner[regroup], value[regroup], error[regroup], floor[regroup]
    return _Panels(left, right, value, error, owner, failed)


def _panels(fn: Callable[[np.ndarray], np.ndarray], left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""K15 values, error estimates and round-off floors of the panels ``[left, right]``."""
    half = 0.5 * (right - left)
    mid = 0.5 * (right + left)
    values = np.asarray(fn(mid[:, None] + half[:, None] * NODES[None, :]), dtype=float)
    # non-finite values are reported by the caller; keep them from raising warnings here
    with np.errstate(all="ignore"):
        kronrod = half * (values @ KRONROD)
        difference = np.abs(kronrod - half * (values @ GAUSS))
        # |K - G| overestimates K15's error by orders of magnitude on smooth panels: sharpen it
        # by the spread of the values, and floor it at what float64 round-off can resolve
        spread = half * (np.abs(values - (kronrod / np.where(half > 0, 2 * half, 1.0))[:, None]) @ KRONROD)
        error = np.where(spread > 0, spread * np.minimum(1.0, (200.0 * difference / spread) ** 1.5), difference)
        floor = 50.0 * np.finfo(float).eps * half * (np.abs(values) @ KRONROD)
    return kronrod, np.maximum(error, floor), floor


#: Integrands left with more than this fraction of the integral in their tails diverge.
TAIL_TOLERANCE = 1e-10
#: Width in :math:`u` of the tail region checked for left-over weight (:math:`x - a < e^{-400}`).
TAIL_WIDTH = 200.0


def integrate_support(
    fn: Callable[[np.ndarray], np.ndarray],
    mapping: SupportMap,
    breakpoints: np.ndarray | tuple[float, ...] = (),
    rtol: float = 1e-13,
    tails: bool = True,
) -> float:
    r""":math:`\int dx\, g(x)` over the support through ``mapping``; ``inf`` if it does not converge
    (see :func:`support_quadratures`)."""
    return float(support_quadratures(lambda x, owner: fn(x), [mapping], breakpoints, rtol, tails, nodes=False).values[0])


@dataclass(frozen=True)
class SupportBatch:
    r"""Integrals over the supports of several maps (:func:`support_quadratures`), and the Kronrod
    nodes :math:`x_k` and weights :math:`w_k` that reproduce each: :math:`\sum_k w_k g(x_k)`."""

    #: Per map, the integral; ``inf`` where it does not converge (and no nodes).
    values: np.ndarray
    x: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    #: Map ``k``'s nodes are ``x[starts[k]:starts[k + 1]]``.
    starts: np.ndarray = field(repr=False)

    def nodes(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        r"""The nodes and weights of integral ``k`` (nodes that round onto an endpoint dropped)."""
        where = slice(self.starts[k], self.starts[k + 1])
        return self.x[where], self.weights[where]


#: The maps whose formulas are elementwise in the ends :math:`a, b` (those of :func:`quadrature_map`):
#: integrals over many supports evaluate them once, with the ends as arrays.
_ELEMENTWISE = (LogLower, LogUpper, Tanh)


def _through(maps: list[SupportMap], owner: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any, Any]:
    r""":math:`x(u)`, :math:`|dx/du|` and the ends :math:`a, b` (floats, or arrays like ``u``), at latent
    points ``u`` of shape ``(P, 15)`` whose rows belong to the maps ``owner``."""
    if all(m is maps[0] for m in maps):
        m = maps[0]
        return m.from_latent(u), m.jacobian(u), m.a, m.b
    x, jacobian = np.empty(u.shape), np.empty(u.shape)
    ends = np.array([(m.a, m.b) for m in maps])
    a, b = (np.broadcast_to(ends[owner, i][:, None], u.shape) for i in range(2))
    kinds = np.array([_ELEMENTWISE.index(type(m)) if type(m) in _ELEMENTWISE else -1 for m in maps])
    if (kinds < 0).any():
        raise TypeError(f"integrals over several supports take the maps of quadrature_map, not {type(maps[int(np.argmin(kinds))]).__name__}")
    for kind, cls in enumerate(_ELEMENTWISE):
        rows = kinds[owner] == kind
        if rows.any():
            each = cls.__new__(cls)
            each.a, each.b = a[rows], b[rows]
            x[rows], jacobian[rows] = each.from_latent(u[rows]), each.jacobian(u[rows])
    return x, jacobian, a, b


def support_quadratures(
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    maps: list[SupportMap],
    breakpoints: np.ndarray | tuple[float, ...] = (),
    rtol: float = 1e-13,
    tails: bool = True,
    atol: float = 0.0,
    nodes: bool = True,
) -> SupportBatch:
    r""":math:`\int dx\, g_k(x)` over the support of each ``maps[k]``, all adapted at once.

    ``fn(x, owner)`` evaluates the integrands: :math:`g_{owner}(x)` for points ``x`` of shape
    ``(P, 15)`` whose rows belong to the integrals ``owner`` (shape ``(P,)``). Each integral is
    refined as if alone (:func:`_adapt`), so a nested integral's inner level costs one vectorized
    call per round, not one adaptive quadrature per outer node.

    Weight that an integrand still carries within :math:`e^{-400}` of a singular or infinite
    endpoint is an artifact of the cut at :math:`e^{\pm 600}`, not physics: such an integral
    is reported as divergent rather than silently truncated. ``tails = False`` turns that test
    off for an integrand known to be integrable, such as a flow's normalized density, whose
    heavy tail in :math:`\log x` may really hold 1e-5 of its mass below :math:`e^{-400}`.

    Arguments:
        breakpoints: Latent points (shared by every map) where the integrands are not smooth.
        nodes: Whether to return the nodes and weights too (else the batch holds none).
    """
    count = len(maps)
    breakpoints = np.asarray(breakpoints, dtype=float)
    ranges = np.array([m.latent_range() for m in maps]).reshape(count, 2)
    cuts = np.array([m.cut_ends() for m in maps], dtype=bool).reshape(count, 2)
    singular_x = np.array([m.from_latent(breakpoints) for m in maps]).reshape(count, breakpoints.size)
    t = np.linspace(0.0, 1.0, 17)
    left, right = [], []
    for lo, hi in ranges:
        edges = np.unique(np.concatenate([[lo], breakpoints, [hi]]))
        edges = edges[(edges >= lo) & (edges <= hi)]
        left.append((edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * t[None, :-1]).ravel())
        right.append((edges[:-1, None] + (edges[1:] - edges[:-1])[:, None] * t[None, 1:]).ravel())
    owner = np.repeat(np.arange(count), [piece.size for piece in left])

    def integrand(u: np.ndarray, owner: np.ndarray) -> np.ndarray:
        x, jacobian, a, b = _through(maps, owner, u)
        with np.errstate(all="ignore"):
            values = np.asarray(fn(x, owner), dtype=float) * jacobian
        # a node that rounds onto an endpoint lies outside the open support; one that rounds onto
        # an interior breakpoint where the integrand is not finite (a pole of p hit exactly, as the
        # subdivision closes in on a Landau pole) is a null set of an integrable singularity
        keep = (x > a) & (x < b)
        bad = ~np.isfinite(values)
        if breakpoints.size and bad.any():
            keep &= ~(bad & np.isclose(x[..., None], singular_x[owner][:, None, :], rtol=8 * np.finfo(float).eps, atol=0).any(-1))
        return np.where(keep, values, 0.0)

    panels = _adapt(integrand, np.concatenate(left), np.concatenate(right), owner, count, rtol, atol, 100_000)
    bounds = np.concatenate([[0], np.cumsum(np.bincount(panels.owner, minlength=count))])
    values = np.array([panels.value[bounds[k]:bounds[k + 1]].sum() for k in range(count)])
    diverges = panels.failed.copy()
    if tails:
        lo, hi = ranges[panels.owner].T
        cut_lo, cut_hi = cuts[panels.owner].T
        tail = (cut_lo & (panels.left < lo + TAIL_WIDTH)) | (cut_hi & (panels.left > hi - TAIL_WIDTH))
        diverges |= np.abs(np.bincount(panels.owner, np.where(tail, panels.value, 0.0), count)) > TAIL_TOLERANCE * np.maximum(1.0, np.abs(values))
    values[diverges] = math.inf
    if not nodes:
        return SupportBatch(values, np.empty(0), np.empty(0), np.zeros(count + 1, dtype=int))
    # the nodes of the integrals that converged, grouped by integral
    used = ~diverges[panels.owner]
    half = 0.5 * (panels.right - panels.left)[used]
    u = 0.5 * (panels.right + panels.left)[used][:, None] + half[:, None] * NODES[None, :]
    x, jacobian, a, b = _through(maps, panels.owner[used], u)
    weights = half[:, None] * KRONROD[None, :] * jacobian
    keep = (x > a) & (x < b)
    starts = np.concatenate([[0], np.cumsum(np.bincount(panels.owner[used], keep.sum(1), count).astype(int))])
    return SupportBatch(values, x[keep], weights[keep], starts)
