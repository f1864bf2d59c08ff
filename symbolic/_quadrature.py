r"""Vectorized adaptive Gauss–Kronrod quadrature, and integrals over a support through its map."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ._maps import SupportMap

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
    value, error, floor = _panels(fn, left, right)
    if not np.isfinite(value).all():
        return Quadrature(math.nan, math.inf, left.size)
    while left.size < max_panels:
        tolerance = max(atol, rtol * abs(value.sum()))
        # panels at the round-off floor cannot improve by splitting
        splittable = error > floor
        if error.sum() <= tolerance or not splittable.any():
            break
        order = np.argsort(np.where(splittable, -error, 0.0))
        remaining = error.sum() - np.cumsum(error[order])
        count = int(np.searchsorted(-remaining, -0.5 * tolerance)) + 1
        split = order[: min(count, int(splittable.sum()))]
        mid = 0.5 * (left[split] + right[split])
        new_left = np.concatenate([left[split], mid])
        new_right = np.concatenate([mid, right[split]])
        new_value, new_error, new_floor = _panels(fn, new_left, new_right)
        if not np.isfinite(new_value).all():
            return Quadrature(math.nan, math.inf, left.size)
        keep = np.ones(left.size, dtype=bool)
        keep[split] = False
        left, right = np.concatenate([left[keep], new_left]), np.concatenate([right[keep], new_right])
        value = np.concatenate([value[keep], new_value])
        error = np.concatenate([error[keep], new_error])
        floor = np.concatenate([floor[keep], new_floor])
    return Quadrature(float(value.sum()), float(error.sum()), left.size, left, value, right)


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
    (see :func:`support_quadrature`)."""
    return support_quadrature(fn, mapping, breakpoints, rtol, tails)[0]


def support_quadrature(
    fn: Callable[[np.ndarray], np.ndarray],
    mapping: SupportMap,
    breakpoints: np.ndarray | tuple[float, ...] = (),
    rtol: float = 1e-13,
    tails: bool = True,
    atol: float = 0.0,
) -> tuple[float, Quadrature | None]:
    r""":math:`\int dx\, g(x)` over the support through ``mapping``, and the final panels (in the
    map's variable); ``(inf, None)`` if it does not converge.

    Weight that an integrand still carries within :math:`e^{-400}` of a singular or infinite
    endpoint is an artifact of the cut at :math:`e^{\pm 600}`, not physics: such an integral
    is reported as divergent rather than silently truncated. ``tails = False`` turns that test
    off for an integrand known to be integrable, such as a flow's normalized density, whose
    heavy tail in :math:`\log x` may really hold 1e-5 of its mass below :math:`e^{-400}`.
    """

    singular_x = mapping.from_latent(np.asarray(breakpoints, dtype=float))

    def integrand(u: np.ndarray) -> np.ndarray:
        x = mapping.from_latent(u)
        with np.errstate(all="ignore"):
            values = np.asarray(fn(x), dtype=float) * mapping.jacobian(u)
        # a node that rounds onto an endpoint lies outside the open support; one that rounds onto
        # an interior breakpoint where the integrand is not finite (a pole of p hit exactly, as the
        # subdivision closes in on a Landau pole) is a null set of an integrable singularity
        keep = (x > mapping.a) & (x < mapping.b)
        bad = ~np.isfinite(values)
        if singular_x.size and bad.any():
            keep &= ~(bad & np.isclose(x[..., None], singular_x, rtol=8 * np.finfo(float).eps, atol=0).any(-1))
        return np.where(keep, values, 0.0)

    lo, hi = mapping.latent_range()
    result = integrate(integrand, lo, hi, breakpoints=breakpoints, rtol=rtol, atol=atol)
    if not math.isfinite(result.value):
        return math.inf, None
    cut_lo, cut_hi = mapping.cut_ends()
    if tails and (cut_lo or cut_hi):
        tail = (cut_lo & (result.edges < lo + TAIL_WIDTH)) | (cut_hi & (result.edges > hi - TAIL_WIDTH))
        if abs(result.contributions[tail].sum()) > TAIL_TOLERANCE * max(1.0, abs(result.value)):
            return math.inf, None
    return result.value, result


def support_nodes(result: Quadrature, mapping: SupportMap) -> tuple[np.ndarray, np.ndarray]:
    r"""The Kronrod nodes :math:`x_k` and weights :math:`w_k` of a :func:`support_quadrature`'s panels:
    :math:`\sum_k w_k g(x_k)` is its integral of :math:`g` (nodes that round onto an endpoint dropped)."""
    half = 0.5 * (result.rights - result.edges)
    u = 0.5 * (result.rights + result.edges)[:, None] + half[:, None] * NODES[None, :]
    x = mapping.from_latent(u)
    weights = half[:, None] * KRONROD[None, :] * mapping.jacobian(u)
    keep = (x > mapping.a) & (x < mapping.b)
    return x[keep], weights[keep]
