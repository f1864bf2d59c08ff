r"""Bijections from a support to the real line: one protocol, written once, with a NumPy and a torch face.

A :class:`SupportMap` states its mathematics against a small namespace of array operations
(:class:`ArrayOps`): :data:`NUMPY` here, the runtime's ``TORCH`` for tensors. Quadrature over a
support (:func:`quadrature_map`) and the flow's latent variable (:func:`default_map`) are two
uses of the same protocol, with different maps: integrals need :math:`u = \log(x - a)` near a
singular endpoint, the flow a double logarithm.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np

__all__ = ["ArrayOps", "NUMPY", "SupportMap", "MAPS", "register_map", "default_map", "quadrature_map"]


@dataclass(frozen=True)
class ArrayOps:
    r"""The elementwise operations a :class:`SupportMap` is written in, for one array library."""

    exp: Callable[[Any], Any]
    log: Callable[[Any], Any]
    tanh: Callable[[Any], Any]
    cosh: Callable[[Any], Any]
    arctanh: Callable[[Any], Any]
    sigmoid: Callable[[Any], Any]
    logsigmoid: Callable[[Any], Any]


#: The NumPy face (float64 arrays and scalars).
NUMPY = ArrayOps(
    exp=np.exp, log=np.log, tanh=np.tanh, cosh=np.cosh, arctanh=np.arctanh,
    sigmoid=lambda y: _expit(y), logsigmoid=lambda y: -np.logaddexp(0.0, -y),
)

def _expit(y: Any) -> Any:
    from scipy.special import expit  # imported at the first use: 0.2 s of the command line's start

    return expit(y)


#: :math:`e^{-600}` is far below any scale a physical distribution resolves, yet keeps
#: :math:`1/x` finite in float64: how far quadrature follows a singular or infinite end.
DEPTH = 600.0
_EPS = float(np.finfo(float).eps)


class SupportMap(ABC):
    r"""A smooth bijection :math:`x(y)` from :math:`\mathbb{R}` onto the open support :math:`(a, b)`.

    Subclasses implement :meth:`from_latent`, :meth:`to_latent`, :meth:`log_jacobian`
    (:math:`\log|dx/dy|` as a function of :math:`y`, so it stays finite where :math:`x` itself
    rounds to an endpoint), :meth:`latent_range` and :meth:`cut_ends`, each in the operations
    ``xp`` (:data:`NUMPY` by default, the runtime's ``TORCH`` for tensors).

    Arguments:
        a: Lower end of the support.
        b: Upper end of the support.
    """

    name: ClassVar[str]
    #: Whether :math:`x` grows with :math:`y`.
    increasing: ClassVar[bool] = True

    def __init__(self, a: float, b: float):
        self.a, self.b = float(a), float(b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.a!r}, {self.b!r})"

    @abstractmethod
    def from_latent(self, y: Any, xp: ArrayOps = NUMPY) -> Any:
        r""":math:`x(y)`."""

    @abstractmethod
    def to_latent(self, x: Any, xp: ArrayOps = NUMPY) -> Any:
        r""":math:`y(x)`."""

    @abstractmethod
    def log_jacobian(self, y: Any, xp: ArrayOps = NUMPY) -> Any:
        r""":math:`\log|dx/dy|` at :math:`y`."""

    def jacobian(self, y: Any, xp: ArrayOps = NUMPY) -> Any:
        r""":math:`|dx/dy|` at :math:`y`: :math:`\int dx\, g = \int dy\, g(x(y))\, |dx/dy|`."""
        return xp.exp(self.log_jacobian(y, xp))

    @abstractmethod
    def latent_range(self, depth: float = DEPTH, reach: float | None = None, eps: float = _EPS) -> tuple[float, float]:
        r"""The :math:`y` interval that integrals over the support use.

        Arguments:
            depth: Toward a finite endpoint, how many e-folds to follow it (:math:`x - a` down
                to :math:`e^{-\text{depth}}`) where the map would resolve it further.
            reach: Toward an infinite endpoint, up to :math:`|x| = e^{\text{reach}}` (default ``depth``).
            eps: The float's resolution, for ends where :math:`x` rounds onto an endpoint first.
        """

    @abstractmethod
    def whole_line(self) -> bool:
        r"""Whether every real :math:`y` maps into the support: what a flow's latent variable needs
        (:class:`LogLower` on a finite support reaches :math:`b` at :math:`y = \log(b - a)`)."""

    @abstractmethod
    def cut_ends(self) -> tuple[bool, bool]:
        r"""Whether the low and the high end of :meth:`latent_range` stop short of an endpoint
        the map still resolves (at ``depth`` or ``reach``), rather than where :math:`x` rounds
        onto it: weight an integrand carries there is truncated, not resolved."""


class LogLower(SupportMap):
    r""":math:`x = a + e^y`: resolves a singular lower endpoint, or the half-line :math:`(a, \infty)`."""

    name = "log_lower"

    def from_latent(self, y, xp=NUMPY):
        return self.a + xp.exp(y)

    def to_latent(self, x, xp=NUMPY):
        return xp.log(x - self.a)

    def log_jacobian(self, y, xp=NUMPY):
        return y

    def jacobian(self, y, xp=NUMPY):
        return xp.exp(y)

    def latent_range(self, depth=DEPTH, reach=None, eps=_EPS):
        far = self.b - self.a
        return -depth, math.log(far) if math.isfinite(far) else depth if reach is None else reach

    def whole_line(self):
        return math.isfinite(self.a) and math.isinf(self.b)

    def cut_ends(self):
        return True, math.isinf(self.b)


class LogUpper(LogLower):
    r""":math:`x = b - e^y`: the mirror image of :class:`LogLower`, for :math:`(-\infty, b)` or a singular upper end."""

    name = "log_upper"
    increasing = False

    def from_latent(self, y, xp=NUMPY):
        return self.b - xp.exp(y)

    def to_latent(self, x, xp=NUMPY):
        return xp.log(self.b - x)

    def whole_line(self):
        return math.isinf(self.a) and math.isfinite(self.b)

    def cut_ends(self):
        return True, math.isinf(self.a)


class Tanh(SupportMap):
    r""":math:`x = a + (b - a)(1 + \tanh y)/2` for a finite support without a singular endpoint."""

    name = "tanh"

    def from_latent(self, y, xp=NUMPY):
        return self.a + (self.b - self.a) * 0.5 * (1.0 + xp.tanh(y))

    def to_latent(self, x, xp=NUMPY):
        return xp.arctanh(2.0 * (x - self.a) / (self.b - self.a) - 1.0)

    def log_jacobian(self, y, xp=NUMPY):
        # 1/cosh² y = 4 σ(2y) σ(-2y), finite where cosh y overflows
        return math.log(2.0 * (self.b - self.a)) + xp.logsigmoid(2.0 * y) + xp.logsigmoid(-2.0 * y)

    def jacobian(self, y, xp=NUMPY):
        return (self.b - self.a) * 0.5 / xp.cosh(y) ** 2

    def latent_range(self, depth=DEPTH, reach=None, eps=_EPS):
        # the largest whole y at which 1 - tanh y ≈ 2 e^{-2y} still exceeds eps (18 in float64)
        end = float(math.floor(0.5 * math.log(2.0 / eps)))
        return -end, end

    def whole_line(self):
        return math.isfinite(self.a) and math.isfinite(self.b)

    def cut_ends(self):
        return False, False


class Logit(SupportMap):
    r""":math:`y = \log\frac{x - a}{b - x}` for a finite support without a singular endpoint."""

    name = "logit"

    def from_latent(self, y, xp=NUMPY):
        return self.a + (self.b - self.a) * xp.sigmoid(y)

    def to_latent(self, x, xp=NUMPY):
        return xp.log(x - self.a) - xp.log(self.b - x)

    def log_jacobian(self, y, xp=NUMPY):
        return math.log(self.b - self.a) + xp.logsigmoid(y) + xp.logsigmoid(-y)

    def latent_range(self, depth=DEPTH, reach=None, eps=_EPS):
        # y ≈ log((x - a)/(b - a)) near a; near b, x rounds onto b once e^-y < eps
        return -depth, -math.log(eps)

    def whole_line(self):
        return math.isfinite(self.a) and math.isfinite(self.b)

    def cut_ends(self):
        return True, False


class DoubleLogLower(SupportMap):
    r""":math:`y = \log\log\frac{b - a}{x - a}` for a log-singular lower endpoint.

    Resolves :math:`x - a \ll 1`: :math:`x - a = e^{-600}` is :math:`y \approx 6.4`, so the
    logarithms of a perturbative distribution become gentle functions of :math:`y`.
    """

    name = "double_log_lower"
    increasing = False

    def from_latent(self, y, xp=NUMPY):
        return self.a + (self.b - self.a) * xp.exp(-xp.exp(y))

    def to_latent(self, x, xp=NUMPY):
        return xp.log(xp.log((self.b - self.a) / (x - self.a)))

    def log_jacobian(self, y, xp=NUMPY):
        return math.log(self.b - self.a) - xp.exp(y) + y

    def latent_range(self, depth=DEPTH, reach=None, eps=_EPS):
        # the other end x -> b is x = b - (b - a) e^y to first order: e^-30 leaves nothing
        return -30.0, math.log(depth + math.log(self.b - self.a))

    def whole_line(self):
        return math.isfinite(self.a) and math.isfinite(self.b)

    def cut_ends(self):
        return False, True


class DoubleLogUpper(DoubleLogLower):
    r"""The mirror image of :class:`DoubleLogLower` for a log-singular upper endpoint."""

    name = "double_log_upper"
    increasing = True

    def from_latent(self, y, xp=NUMPY):
        return self.b - (self.b - self.a) * xp.exp(-xp.exp(y))

    def to_latent(self, x, xp=NUMPY):
        return xp.log(xp.log((self.b - self.a) / (self.b - x)))


#: The registered maps by name; extend with :func:`register_map`.
MAPS: dict[str, type[SupportMap]] = {m.name: m for m in (DoubleLogLower, DoubleLogUpper, Logit, LogLower, LogUpper, Tanh)}


def register_map(cls: type[SupportMap]) -> type[SupportMap]:
    r"""Registers a :class:`SupportMap` subclass under its ``name`` (usable as a decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, SupportMap) and isinstance(getattr(cls, "name", None), str)):
        raise TypeError(f"register_map takes a SupportMap subclass with a name, got {cls!r}")
    MAPS[cls.name] = cls
    return cls


def default_map(support: tuple[float, float], singular: str) -> SupportMap:
    r"""The flow's map for a support and singular endpoint, by name from :data:`MAPS` (so a map
    registered under one of these names replaces the default): double-log at a singular end,
    log on a half-line, logit on a regular finite interval."""
    a, b = support
    if math.isinf(b):
        name = "log_lower"
    elif math.isinf(a):
        name = "log_upper"
    else:
        name = {"lower": "double_log_lower", "upper": "double_log_upper", "none": "logit"}[singular]
    return MAPS[name](a, b)


def quadrature_map(support: tuple[float, float], singular: str) -> SupportMap:
    r"""The map every one-dimensional integral over the support is computed in: :math:`u = \log(x - a)`
    at a singular lower or an infinite upper end, :math:`\log(b - x)` at the mirror images,
    :math:`\tanh` otherwise. Fixed classes, not :data:`MAPS`: registering a flow map leaves the
    exact side's numbers alone."""
    a, b = support
    if singular == "upper" or (math.isinf(a) and not math.isinf(b)):
        return LogUpper(a, b)
    if singular == "lower" or math.isinf(b):
        return LogLower(a, b)
    return Tanh(a, b)
