r"""The torch face of the support maps: :class:`renorm.symbolic.SupportMap` evaluated on tensors."""

from __future__ import annotations

import torch

from renorm.symbolic import ArrayOps, SupportMap

__all__ = ["TORCH"]

#: The operations a :class:`~renorm.symbolic.SupportMap` is written in, on tensors (pass as ``xp``).
TORCH = ArrayOps(
    exp=torch.exp, log=torch.log, tanh=torch.tanh, cosh=torch.cosh, arctanh=torch.arctanh,
    sigmoid=torch.sigmoid, logsigmoid=torch.nn.functional.logsigmoid,
)


def training_range(support_map: SupportMap, dtype: torch.dtype = torch.float64) -> tuple[float, float]:
    r"""The latent interval the flow is trained and integrated on, for a training dtype.

    Toward a finite endpoint it follows :math:`e^{-600}` in float64 and :math:`e^{-80}` in
    float32; toward an infinite one a quarter of that (:math:`x = e^{150}` is far beyond any
    tail a decaying density keeps).
    """
    depth = 600.0 if dtype == torch.float64 else 80.0
    return support_map.latent_range(depth, 0.25 * depth, float(torch.finfo(dtype).eps))
