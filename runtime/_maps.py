r"""Bijections from a support to the real line, registered by name."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["SupportMap", "MAPS", "register_map", "default_map"]


class SupportMap:
    r"""A smooth bijection :math:`y(x)` from the open support :math:`(a, b)` to :math:`\mathbb{R}`.

    Subclasses implement :meth:`to_latent`, :meth:`from_latent` and :meth:`log_jacobian`
    (:math:`\log|dx/dy|` as a function of :math:`y`, so it stays finite where :math:`x`
    itself rounds to an endpoint).

    Arguments:
        a: Lower end of the support.
        b: Upper end of the support.
    """

    name = "identity"

    def __init__(self, a: float, b: float):
        self.a, self.b = float(a), float(b)

    def to_latent(self, x: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} does not define to_latent")

    def from_latent(self, y: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} does not define from_latent")

    def log_jacobian(self, y: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} does not define log_jacobian")

    def latent_range(self, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
        r"""The :math:`y` interval used for quadrature: outside it :math:`x` is within float
        resolution of an endpoint (or beyond :math:`e^{\pm 600}` for float64)."""
        raise TypeError(f"{type(self).__name__} does not define latent_range")


def _depth(dtype: torch.dtype) -> float:
    r"""How many e-folds towards an endpoint the dtype resolves: :math:`e^{-600}` in float64, :math:`e^{-80}` in float32."""
    return 600.0 if dtype == torch.float64 else 80.0


class DoubleLogLower(SupportMap):
    r""":math:`y = \log\log\frac{b - a}{x - a}` for a log-singular lower endpoint.

    Resolves :math:`x - a \ll 1`: :math:`x - a = e^{-600}` is :math:`y \approx 6.4`, so the
    logarithms of a perturbative distribution become gentle functions of :math:`y`.
    """

    name = "double_log_lower"

    def to_latent(self, x: Tensor) -> Tensor:
        return torch.log(torch.log((self.b - self.a) / (x - self.a)))

    def from_latent(self, y: Tensor) -> Tensor:
        return self.a + (self.b - self.a) * torch.exp(-torch.exp(y))

    def log_jacobian(self, y: Tensor) -> Tensor:
        return math.log(self.b - self.a) - torch.exp(y) + y

    def latent_range(self, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
        # the upper end x -> b is x = b - (b - a) e^y to first order: e^-30 leaves nothing
        return -30.0, math.log(_depth(dtype) + math.log(self.b - self.a))


class DoubleLogUpper(DoubleLogLower):
    r"""The mirror image of :class:`DoubleLogLower` for a log-singular upper endpoint."""

    name = "double_log_upper"

    def to_latent(self, x: Tensor) -> Tensor:
        return torch.log(torch.log((self.b - self.a) / (self.b - x)))

    def from_latent(self, y: Tensor) -> Tensor:
        return self.b - (self.b - self.a) * torch.exp(-torch.exp(y))


class Logit(SupportMap):
    r""":math:`y = \log\frac{x - a}{b - x}` for a finite support without a singular endpoint."""

    name = "logit"

    def to_latent(self, x: Tensor) -> Tensor:
        return torch.log(x - self.a) - torch.log(self.b - x)

    def from_latent(self, y: Tensor) -> Tensor:
        return self.a + (self.b - self.a) * torch.sigmoid(y)

    def log_jacobian(self, y: Tensor) -> Tensor:
        return math.log(self.b - self.a) + torch.nn.functional.logsigmoid(y) + torch.nn.functional.logsigmoid(-y)

    def latent_range(self, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
        # y ≈ log((x - a)/(b - a)) near a; near b, x rounds onto b once e^-y < machine epsilon
        return -_depth(dtype), -math.log(torch.finfo(dtype).eps)


class LogLower(SupportMap):
    r""":math:`y = \log(x - a)` for :math:`(a, \infty)`."""

    name = "log_lower"

    def to_latent(self, x: Tensor) -> Tensor:
        return torch.log(x - self.a)

    def from_latent(self, y: Tensor) -> Tensor:
        return self.a + torch.exp(y)

    def log_jacobian(self, y: Tensor) -> Tensor:
        return y

    def latent_range(self, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
        return -_depth(dtype), 0.25 * _depth(dtype)


class LogUpper(LogLower):
    r""":math:`y = \log(b - x)` for :math:`(-\infty, b)`."""

    name = "log_upper"

    def to_latent(self, x: Tensor) -> Tensor:
        return torch.log(self.b - x)

    def from_latent(self, y: Tensor) -> Tensor:
        return self.b - torch.exp(y)


#: The registered maps by name; extend with :func:`register_map`.
MAPS: dict[str, type[SupportMap]] = {m.name: m for m in (DoubleLogLower, DoubleLogUpper, Logit, LogLower, LogUpper)}


def register_map(cls: type[SupportMap]) -> type[SupportMap]:
    r"""Registers a :class:`SupportMap` subclass under its ``name`` (usable as a decorator)."""
    MAPS[cls.name] = cls
    return cls


def default_map(support: tuple[float, float], singular: str) -> SupportMap:
    r"""The map for a support and singular endpoint, by name from :data:`MAPS` (so a map registered
    under one of these names replaces the default): double-log at a singular end, log on a
    half-line, logit on a regular finite interval."""
    a, b = support
    if math.isinf(b):
        name = "log_lower"
    elif math.isinf(a):
        name = "log_upper"
    else:
        name = {"lower": "double_log_lower", "upper": "double_log_upper", "none": "logit"}[singular]
    return MAPS[name](a, b)
