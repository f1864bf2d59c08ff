r"""The α-conditioned Bernstein-polynomial flow q(x|α) on the problem's support."""

from __future__ import annotations

import math

import torch
import zuko
from torch import Tensor, nn

from renorm.symbolic import MAPS, SupportMap

from ._maps import TORCH

__all__ = ["ConditionalFlow"]


class ConditionalFlow(nn.Module):
    r"""A normalized density :math:`q(x|\alpha)` built from zuko's Bernstein-polynomial flow.

    The support is mapped to :math:`\mathbb{R}` by a registered bijection :math:`y(x)`
    (:data:`renorm.symbolic.MAPS`, evaluated in its torch face) and standardized, :math:`z = (y - \mu)/\sigma`, so that
    the bulk lies inside the Bernstein polynomials' domain :math:`[-5, 5]`; the coupling enters
    as the context :math:`c = (\log\alpha - \log\alpha_0)/\Delta`. Then

    .. math:: \log q(x|\alpha) = \log q_z(z|c) - \log\sigma - \log|dx/dy|.

    The default network is the seed talk's: 5 BPF transforms of degree 16 with hidden
    layers (32, 32), 8405 parameters.

    Arguments:
        support_map: The bijection (its name and support are stored in the state dict).
        shift, scale: :math:`\mu` and :math:`\sigma` of the standardization.
        coupling_range: :math:`(\alpha_{min}, \alpha_{max})` that the context is scaled to.
        degree, transforms, hidden: The BPF's shape.

    References:
        | Bernstein-polynomial flows: Arpogaus et al., 2022 (arXiv:2204.13939)
        | Re-normalizing flows: R. Gambhir, R. Mastandrea, ML4Jets 2024
    """

    def __init__(
        self,
        support_map: SupportMap,
        shift: float,
        scale: float,
        coupling_range: tuple[float, float],
        degree: int = 16,
        transforms: int = 5,
        hidden: tuple[int, ...] = (32, 32),
        context: str = "log",
    ):
        super().__init__()
        if context not in ("log", "linear"):
            raise ValueError(f"context must be 'log' or 'linear', got {context!r}")
        self.support_map = support_map
        self.context_scale = context
        self.shape = {"degree": degree, "transforms": transforms, "hidden": tuple(hidden)}
        self.bpf = zuko.flows.BPF(1, context=1, degree=degree, transforms=transforms, hidden_features=tuple(hidden))
        self.coupling_range = (float(coupling_range[0]), float(coupling_range[1]))
        lo, hi = (math.log(c) for c in self.coupling_range) if context == "log" else self.coupling_range
        # constants of the parametrization: buffers travel with the state dict, never train
        self.register_buffer("shift", torch.tensor(float(shift), dtype=torch.float64))
        self.register_buffer("scale", torch.tensor(float(scale), dtype=torch.float64))
        self.register_buffer("context_center", torch.tensor(0.5 * (lo + hi), dtype=torch.float64))
        self.register_buffer("context_half_width", torch.tensor(0.5 * (hi - lo), dtype=torch.float64))

    def context(self, alpha: Tensor) -> Tensor:
        r"""The coupling mapped to [-1, 1] over the range, shape ``(*alpha.shape, 1)``.

        On a log scale by default: perturbative distributions change fastest at small α
        (Sudakov factors go like :math:`e^{-c/\sqrt{\alpha}}`) and a log scale spreads that change
        evenly. A linear scale is defined at α = 0, which the Taylor-operator loss needs.
        """
        scaled = torch.log(alpha) if self.context_scale == "log" else alpha
        return ((scaled - self.context_center) / self.context_half_width).unsqueeze(-1)

    def log_prob_latent(self, y: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\log q_y(y|\alpha)` in the map variable.

        Arguments:
            y: Latent points, shape ``(n,)``.
            alpha: Couplings, shape ``(m,)``.

        Returns:
            Log densities of shape ``(n, m)``.
        """
        return self.log_prob_latent_paired(y[:, None], alpha)

    def log_prob_latent_paired(self, y: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\log q_y(y_i|\alpha_i)` for paired points and couplings of shape ``(n,)`` → ``(n,)``.

        Each point has its own coupling, so :math:`\partial/\partial\alpha_i` of the sum is the
        pointwise derivative (used for the Taylor coefficients :math:`q^n(x)`). ``y`` and ``alpha``
        broadcast: ``y`` of shape ``(n, 1)`` against ``(m,)`` couplings gives the ``(n, m)`` grid.
        """
        z = (y - self.shift) / self.scale
        return self._log_prob(z, self.context(alpha)) - torch.log(self.scale)

    def _log_prob(self, z: Tensor, context: Tensor) -> Tensor:
        r"""zuko's BPF log density with the Bernstein derivative in closed form.

        The same function as ``self.bpf(context).log_prob(z[..., None])`` (tested to 1e-13), but
        zuko differentiates each transform by autograd inside the forward pass and evaluates the
        basis through Beta densities; the derivative of a Bernstein polynomial is itself one, of
        degree M - 1 with coefficients M (θ_{k+1} - θ_k) (measured: the training objective with its
        backward 10x faster).

        Arguments:
            z: Standardized latent points, any shape broadcastable with ``context.shape[:-1]``.
            context: Contexts of shape ``(..., 1)``.
        """
        total = torch.zeros((), dtype=z.dtype, device=z.device)
        for lazy in self.bpf.transform.transforms:
            bernstein = lazy(context).base  # zuko's parametrization: constrained θ, bound, eps
            z, ladj = _bernstein(z, bernstein.theta[..., 0, :], bernstein.bound, bernstein.eps)
            total = total + ladj
        return self.bpf.base(context).log_prob(z[..., None]) + total

    def _log_prob_reference(self, z: Tensor, context: Tensor) -> Tensor:
        r"""The same through zuko's own ``log_prob``: the reference for tests and for the seed
        recipe in ``benchmarks/train.py`` (the seed trained with it)."""
        # expanded explicitly: zuko's log-Jacobian does not broadcast over a batch of contexts
        # (measured: the density then integrates to m, not 1)
        shape = torch.broadcast_shapes(z.shape, context.shape[:-1])
        return self.bpf(context).log_prob(z.expand(shape)[..., None])

    def log_prob(self, x: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\log q(x|\alpha)` for points ``x`` of shape ``(n,)`` and couplings of shape ``(m,)`` → ``(n, m)``."""
        # points that round onto an endpoint carry no probability (and would give nan)
        inside = (x > self.support_map.a) & (x < self.support_map.b)
        y = self.support_map.to_latent(torch.where(inside, x, self.support_map.from_latent(torch.zeros_like(x), TORCH)), TORCH)
        value = self.log_prob_latent(y, alpha) - self.support_map.log_jacobian(y, TORCH)[:, None]
        return torch.where(inside[:, None], value, torch.full_like(value, -torch.inf))

    @torch.no_grad()
    def sample(self, alpha: float, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""``n`` samples of :math:`x \sim q(x|\alpha)`, shape ``(n,)``."""
        dtype = self.shift.dtype
        context = self.context(torch.tensor([alpha], dtype=dtype, device=self.shift.device))
        flow = self.bpf(context)
        base = torch.randn((n, 1, 1), dtype=dtype, device=self.shift.device, generator=generator)
        z = flow.transform.inv(base)
        return self.support_map.from_latent(self.shift + self.scale * z[:, 0, 0], TORCH)

    def describe(self) -> dict:
        r"""What is needed to rebuild the module before loading its state dict."""
        return {
            "map": self.support_map.name, "support": [self.support_map.a, self.support_map.b],
            "shift": float(self.shift), "scale": float(self.scale),
            "coupling_range": list(self.coupling_range), "context": self.context_scale,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in self.shape.items()},
        }

    @classmethod
    def rebuild(cls, description: dict) -> "ConditionalFlow":
        r"""The inverse of :meth:`describe` (weights are loaded separately)."""
        support_map = MAPS[description["map"]](*description["support"])
        return cls(support_map, description["shift"], description["scale"], tuple(description["coupling_range"]),
                   description["degree"], description["transforms"], tuple(description["hidden"]), description["context"])


def _bernstein(z: Tensor, theta: Tensor, bound: float, eps: float) -> tuple[Tensor, Tensor]:
    r"""A bounded Bernstein transform and its log-derivative, extended linearly outside [-B, B].

    With :math:`u = (z + B)/2B` and :math:`b_{k,M}(u) = \binom{M}{k} u^k (1 - u)^{M-k}`:
    :math:`f = \sum_k \theta_k b_{k,M}(u)` and
    :math:`f' = \frac{M}{2B} \sum_k (\theta_{k+1} - \theta_k) b_{k,M-1}(u)`; outside
    :math:`[\epsilon, 1 - \epsilon]` zuko continues the bounded polynomial (:math:`f = \mp B` at
    the ends) linearly with slope 1 in :math:`z`.

    Arguments:
        z: Points, shape ``S``.
        theta: Constrained increasing coefficients, shape broadcastable to ``S + (M + 1,)``.
    """
    order = theta.shape[-1] - 1
    u = (z + bound) / (2 * bound)
    below, above = u <= eps, u >= 1 - eps
    inside = torch.where(below | above, 0.5, u)[..., None]
    k = torch.arange(order + 1, dtype=z.dtype, device=z.device)
    log_binomial = math.lgamma(order + 1) - torch.lgamma(k + 1) - torch.lgamma(order - k + 1)
    log_u, log_v = torch.log(inside), torch.log1p(-inside)
    # b_{k,M-1} from the same powers: C(M-1, k) = C(M, k) (M - k)/M
    basis = torch.exp(log_binomial + k * log_u + (order - k) * log_v)
    lower = torch.exp(log_binomial[:-1] + torch.log((order - k[:-1]) / order) + k[:-1] * log_u + (order - 1 - k[:-1]) * log_v)
    value = (basis * theta).sum(-1)
    slope = order / (2 * bound) * (lower * (theta[..., 1:] - theta[..., :-1])).sum(-1)
    # zuko's continuation: -B + 2B (u - eps) below, B + 2B (u - 1 + eps) above
    value = torch.where(below, 2 * bound * (u - eps) - bound, torch.where(above, 2 * bound * (u - 1 + eps) + bound, value))
    slope = torch.where(below | above, 1.0, slope)
    return value, torch.log(slope)


def parameter_count(module: nn.Module) -> int:
    r"""Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
