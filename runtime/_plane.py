r"""The α-conditioned flow in two variables: a map of the region onto the plane, and zuko's autoregressive BPF.

The region :math:`\{a_1 < x_1 < b_1,\ l(x_1) < x_2 < u(x_1)\}` is mapped onto :math:`\mathbb{R}^2`
coordinate by coordinate: :math:`y_1` is the one-dimensional map of :math:`x_1`
(:func:`~renorm.symbolic.default_map`), :math:`y_2` a map of :math:`x_2` within its interval at
:math:`x_1`. The Jacobian is triangular, so :math:`\log|\partial x/\partial y|` is the sum of the
two diagonal terms.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import torch
import zuko
from torch import Tensor, nn
from zuko.utils import unpack

from renorm.symbolic import MAPS, NUMPY, ArrayOps, SupportMap, default_map

from ._flow import _bernstein
from ._maps import TORCH

__all__ = ["PlaneMap", "PlaneFlow"]

#: ``interval(x1, xp)``: the second variable's interval ``(l, u)`` at ``x1`` (NumPy or torch).
Interval = Callable[[Any, ArrayOps], tuple[Any, Any]]


def problem_interval(problem: Any) -> Interval:
    r"""The region's interval of :math:`x_2` at :math:`x_1`: the problem's own in NumPy, the generated
    kernel ``inner_interval`` on tensors."""
    from renorm import codegen

    kernels = codegen.load(problem)

    def interval(x1: Any, xp: ArrayOps = NUMPY) -> tuple[Any, Any]:
        return kernels.inner_interval(x1) if xp is TORCH else problem.inner_interval(x1)

    return interval


class PlaneMap:
    r"""A bijection from the region to :math:`\mathbb{R}^2`, with a NumPy and a torch face.

    The second coordinate is one of three kinds:

    - ``box`` (no region): :math:`y_2` is the map of :math:`x_2` on its support;
    - ``ratio`` (a lower bound :math:`l(x_1) > a_2` at a singular lower face :math:`a_2`):
      :math:`s = \log\frac{x_2 - a_2}{l - a_2} / \log\frac{u - a_2}{l - a_2}`, the position in the
      logarithm of the distance to the face (:math:`l_1^2 \le l_2 \le l_1` becomes
      :math:`s = \log(1/z)/\log(1/z\theta)`), then :math:`y_2 = \mathrm{logit}\, s`;
    - ``scaled`` (otherwise): :math:`s = (x_2 - l)/(u - l)`, then :math:`y_2` the map of
      :math:`s` on :math:`(0, 1)`, double-logarithmic at the singular side where that side is
      the box's face.

    Arguments:
        first: The map of :math:`x_1`.
        second: The map of :math:`x_2` (``box``) or of :math:`s` on :math:`(0, 1)`.
        kind: ``box``, ``ratio`` or ``scaled``.
        face: :math:`a_2`, the singular lower face (``ratio`` only).
        interval: The interval of :math:`x_2` at :math:`x_1` (unused for ``box``).
    """

    def __init__(self, first: SupportMap, second: SupportMap, kind: str, face: float, interval: Interval):
        if kind not in ("box", "ratio", "scaled"):
            raise ValueError(f"kind must be box, ratio or scaled, got {kind!r}")
        self.first, self.second, self.kind, self.face, self.interval = first, second, kind, float(face), interval

    @classmethod
    def for_problem(cls, problem: Any, interval: Interval) -> "PlaneMap":
        r"""The default map of a :class:`~renorm.symbolic.MultiProblem` (see the class docstring)."""
        (a1, b1), (a2, b2) = problem.support_floats
        first = default_map((a1, b1), problem.singular[0])
        if not problem.region:
            return cls(first, default_map((a2, b2), problem.singular[1]), "box", a2, interval)
        x1 = a1 + (b1 - a1) * np.linspace(0, 1, 203)[1:-1] if math.isfinite(b1 - a1) else a1 + np.logspace(-6, 3, 201)
        lo, hi = problem.inner_interval(x1)
        inside = lo < hi
        if problem.singular[1] == "lower" and math.isfinite(a2) and (lo[inside] > a2).all() and np.isfinite(hi[inside]).all():
            return cls(first, MAPS["logit"](0.0, 1.0), "ratio", a2, interval)
        if not (np.isfinite(lo[inside]).all() and np.isfinite(hi[inside]).all()):
            raise ValueError("a region whose interval in x2 is unbounded at some x1 has no plane map yet")
        faces = {"lower": (lo[inside] <= a2).all(), "upper": (hi[inside] >= b2).all(), "none": True}
        side = problem.singular[1] if faces[problem.singular[1]] else "none"
        return cls(first, default_map((0.0, 1.0), side), "scaled", a2, interval)

    def from_latent(self, y1: Any, y2: Any, xp: ArrayOps = NUMPY) -> tuple[Any, Any, Any]:
        r""":math:`(x_1, x_2)` and :math:`\log|\partial x/\partial y|` at latent points."""
        x1 = self.first.from_latent(y1, xp)
        log_jacobian = self.first.log_jacobian(y1, xp)
        if self.kind == "box":
            return x1, self.second.from_latent(y2, xp), log_jacobian + self.second.log_jacobian(y2, xp)
        lo, hi = self.interval(x1, xp)
        s = self.second.from_latent(y2, xp)
        log_jacobian = log_jacobian + self.second.log_jacobian(y2, xp)
        if self.kind == "ratio":
            span = xp.log((hi - self.face) / (lo - self.face))
            distance = (lo - self.face) * xp.exp(s * span)
            return x1, self.face + distance, log_jacobian + xp.log(distance) + xp.log(span)
        return x1, lo + (hi - lo) * s, log_jacobian + xp.log(hi - lo)

    def to_latent(self, x1: Any, x2: Any, xp: ArrayOps = NUMPY) -> tuple[Any, Any]:
        r"""The inverse of :meth:`from_latent`."""
        y1 = self.first.to_latent(x1, xp)
        if self.kind == "box":
            return y1, self.second.to_latent(x2, xp)
        lo, hi = self.interval(x1, xp)
        if self.kind == "ratio":
            s = xp.log((x2 - self.face) / (lo - self.face)) / xp.log((hi - self.face) / (lo - self.face))
        else:
            s = (x2 - lo) / (hi - lo)
        return y1, self.second.to_latent(s, xp)

    def describe(self) -> dict:
        return {"first": [self.first.name, self.first.a, self.first.b], "second": [self.second.name, self.second.a, self.second.b],
                "kind": self.kind, "face": self.face}

    @classmethod
    def rebuild(cls, description: dict, interval: Interval) -> "PlaneMap":
        first = MAPS[description["first"][0]](*description["first"][1:])
        second = MAPS[description["second"][0]](*description["second"][1:])
        return cls(first, second, description["kind"], description["face"], interval)


class PlaneFlow(nn.Module):
    r"""A normalized density :math:`q(x_1, x_2|\alpha)` on the region from zuko's autoregressive BPF (features = 2).

    As :class:`~renorm.runtime.ConditionalFlow` in one variable: the region is mapped onto the
    plane (:class:`PlaneMap`), each latent coordinate standardized, and the coupling enters as
    the context; then :math:`\log q(x) = \log q_z(z|c) - \sum_i \log\sigma_i - \log|\partial x/\partial y|`.
    The default network has 5 transforms of degree 16 with hidden layers (32, 32) and SiLU activations.

    Arguments:
        plane_map: The map of the region.
        shift, scale: The standardization of each latent coordinate.
        coupling_range: :math:`(\alpha_{min}, \alpha_{max})` that the context is scaled to (in :math:`\log\alpha`).
        degree, transforms, hidden: The BPF's shape.
    """

    def __init__(self, plane_map: PlaneMap, shift: tuple[float, float], scale: tuple[float, float], coupling_range: tuple[float, float],
                 degree: int = 16, transforms: int = 5, hidden: tuple[int, ...] = (32, 32)):
        super().__init__()
        self.plane_map = plane_map
        self.shape = {"degree": degree, "transforms": transforms, "hidden": tuple(hidden)}
        # SiLU, not zuko's default ReLU: the conditioner of x2 sees x1, and ReLU's kinks would make
        # q kinked in x1 (measured: a 40 x 40 Gauss-Legendre grid then misses its normalization by 1e-4)
        self.bpf = zuko.flows.BPF(2, context=1, degree=degree, transforms=transforms, hidden_features=tuple(hidden), activation=nn.SiLU)
        self.coupling_range = (float(coupling_range[0]), float(coupling_range[1]))
        lo, hi = (math.log(c) for c in self.coupling_range)
        self.register_buffer("shift", torch.tensor([float(v) for v in shift], dtype=torch.float64))
        self.register_buffer("scale", torch.tensor([float(v) for v in scale], dtype=torch.float64))
        self.register_buffer("context_center", torch.tensor(0.5 * (lo + hi), dtype=torch.float64))
        self.register_buffer("context_half_width", torch.tensor(0.5 * (hi - lo), dtype=torch.float64))

    def context(self, alpha: Tensor) -> Tensor:
        r"""The coupling mapped to [-1, 1] in :math:`\log\alpha` over the range, shape ``(*alpha.shape, 1)``."""
        return ((torch.log(alpha) - self.context_center) / self.context_half_width).unsqueeze(-1)

    def log_prob_latent(self, y: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\log q_y(y|\alpha)` for latent points ``y`` of shape ``(n, 2)`` and couplings ``(m,)`` → ``(n, m)``."""
        z = ((y - self.shift) / self.scale)[:, None, :].expand(y.shape[0], alpha.shape[0], 2)
        context = self.context(alpha)[None, :, :].expand(y.shape[0], alpha.shape[0], 1)
        return self._log_prob(z, context) - torch.log(self.scale).sum()

    def _log_prob(self, z: Tensor, context: Tensor) -> Tensor:
        r"""zuko's autoregressive BPF log density, each transform's Bernstein derivative in closed form
        (the same function as ``self.bpf(context).log_prob(z)``, tested to 1e-12, and faster).

        Arguments:
            z: Standardized latent points, shape ``(..., 2)``.
            context: Contexts of shape ``(..., 1)``.
        """
        total = torch.zeros((), dtype=z.dtype, device=z.device)
        for transform in self.bpf.transform.transforms:
            # the conditioner sees its own input (masked) and the context: one pass from x to z
            phi = transform.hyper(torch.cat([z, context], -1)).unflatten(-1, (-1, transform.total))
            bernstein = transform.univariate(*unpack(phi, transform.shapes))
            z, ladj = _bernstein(z, bernstein.theta, bernstein.bound, bernstein.eps)
            total = total + ladj.sum(-1)
        return self.bpf.base(context).log_prob(z) + total

    def log_prob(self, x1: Tensor, x2: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\log q(x_1, x_2|\alpha)` at points of shape ``(n,)`` and couplings ``(m,)`` → ``(n, m)`` (:math:`-\infty` outside the region)."""
        y1, y2 = self.plane_map.to_latent(x1, x2, TORCH)
        inside = torch.isfinite(y1) & torch.isfinite(y2)
        y = torch.stack([torch.where(inside, y1, 0.0), torch.where(inside, y2, 0.0)], -1)
        _, _, log_jacobian = self.plane_map.from_latent(y[:, 0], y[:, 1], TORCH)
        value = self.log_prob_latent(y, alpha) - log_jacobian[:, None]
        return torch.where(inside[:, None], value, torch.full_like(value, -torch.inf))

    @torch.no_grad()
    def sample(self, alpha: float, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        r"""``n`` samples of :math:`(x_1, x_2) \sim q(\cdot|\alpha)`, two tensors of shape ``(n,)``."""
        dtype, device = self.shift.dtype, self.shift.device
        context = self.context(torch.tensor([alpha], dtype=dtype, device=device)).expand(n, 1)
        base = torch.randn((n, 2), dtype=dtype, device=device, generator=generator)
        y = self.shift + self.scale * self.bpf(context).transform.inv(base)
        x1, x2, _ = self.plane_map.from_latent(y[:, 0], y[:, 1], TORCH)
        return x1, x2

    def describe(self) -> dict:
        r"""What is needed to rebuild the module before loading its state dict (with the problem's interval)."""
        return {"plane_map": self.plane_map.describe(), "shift": self.shift.tolist(), "scale": self.scale.tolist(),
                "coupling_range": list(self.coupling_range), **{k: list(v) if isinstance(v, tuple) else v for k, v in self.shape.items()}}

    @classmethod
    def rebuild(cls, description: dict, interval: Interval) -> "PlaneFlow":
        return cls(PlaneMap.rebuild(description["plane_map"], interval), tuple(description["shift"]), tuple(description["scale"]),
                   tuple(description["coupling_range"]), description["degree"], description["transforms"], tuple(description["hidden"]))
