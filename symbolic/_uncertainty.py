r"""The Monte Carlo uncertainty of a numeric target, propagated to λ(α) and to q*.

The fitted orders carry a covariance :math:`\Sigma` of their coefficients :math:`c`. Normalization
:math:`N(\lambda, c) = \int q_\lambda(x; p_c)\, dx = 1` fixes λ, so to first order

.. math:: \frac{\partial\lambda}{\partial c_k} = -\frac{\alpha^{n_k} \int \partial_p q_\lambda\, \phi_k\, dx}{\int \partial_\lambda q_\lambda\, dx},
   \qquad \delta q^*(x) = \sum_k \Big(\partial_p q_\lambda\, \alpha^{n_k}\phi_k(x) + \partial_\lambda q_\lambda \frac{\partial\lambda}{\partial c_k}\Big)\delta c_k,

with the pointwise derivatives of the minimizer by central differences, and variances
:math:`g^T \Sigma g`. Linear propagation is exact for the Gaussian fit errors to the extent that
:math:`q_\lambda` is linear over one standard deviation, which holds where the errors are small.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ._quadrature import integrate

if TYPE_CHECKING:
    from ._solve import ExactMinimizer

__all__: list[str] = []

_STEP = 1e-6


class MonteCarloError:
    r"""One standard deviation of λ(α) and of :math:`q^*(x|\alpha)` from the fits of a numeric target."""

    def __init__(self, minimizer: "ExactMinimizer"):
        from scipy.linalg import block_diag  # only a numeric target needs it

        self.minimizer = minimizer
        self.fits = [fit for source in minimizer.problem.data for fit in source.fits]
        self.covariance = block_diag(*(fit.covariance for fit in self.fits))
        self._gradients: dict[tuple[float, float], np.ndarray] = {}

    def derivatives(self, x: np.ndarray, alpha: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`\partial q_\lambda/\partial p` and :math:`\partial q_\lambda/\partial\lambda` at ``x``."""
        m = self.minimizer
        p, c2 = m.p(x, alpha), m.C_squared(x, alpha)
        log_abs = m.log_abs_p(x, alpha)

        def q(scale: float, multiplier: float) -> np.ndarray:
            return m.matching.q(p * scale, c2, multiplier, lambda: log_abs + math.log(scale))

        step = _STEP * max(abs(lam), 1e-6)
        with np.errstate(all="ignore"):
            dp = np.where(p != 0, (q(1 + _STEP, lam) - q(1 - _STEP, lam)) / (2 * _STEP * p), 0.0)
            # a one-sided step where λ - step would leave the admissible λ ≥ 0 of f = log
            dl = (q(1.0, lam + step) - q(1.0, lam - step)) / (2 * step) if lam > step else (q(1.0, lam + step) - q(1.0, lam)) / step
        return np.nan_to_num(dp, nan=0.0, posinf=0.0, neginf=0.0), np.nan_to_num(dl, nan=0.0, posinf=0.0, neginf=0.0)

    def _columns(self, x: np.ndarray, alpha: float) -> np.ndarray:
        r""":math:`\alpha^{n_k}\phi_k(x)`: how the target changes with each fit coefficient."""
        with np.errstate(all="ignore"):
            return np.concatenate([alpha**fit.n * fit.columns(x) for fit in self.fits], axis=1)

    def gradient(self, alpha: float, lam: float) -> np.ndarray:
        r""":math:`\partial\lambda/\partial c` at one coupling (cached)."""
        key = (float(alpha), float(lam))
        if key not in self._gradients:
            self._gradients[key] = self._gradient(alpha, lam)
        return self._gradients[key]

    def _gradient(self, alpha: float, lam: float) -> np.ndarray:
        m = self.minimizer
        mapping = m.map
        points = m.breakpoints(alpha)

        def inside(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = mapping.from_latent(u)
            return x, (x > mapping.a) & (x < mapping.b)

        def scalar(u: np.ndarray) -> np.ndarray:
            x, keep = inside(u)
            dp, _ = self.derivatives(x, alpha, lam)
            with np.errstate(all="ignore"):
                values = np.abs(dp * m.p(x, alpha)) * mapping.jacobian(u)
            return np.where(keep & np.isfinite(values), values, 0.0)

        def vector(u: np.ndarray) -> np.ndarray:
            x, keep = inside(u.ravel())
            dp, _ = self.derivatives(x, alpha, lam)
            with np.errstate(all="ignore"):
                values = self._columns(x, alpha) * (dp * mapping.jacobian(u.ravel()))[:, None]
            values = np.where((keep[:, None]) & np.isfinite(values), values, 0.0)
            return values.reshape(*u.shape, -1)

        panels = integrate(scalar, *mapping.latent_range(), breakpoints=points, rtol=1e-9)
        sensitivity = panels.on_panels(vector)
        slope = m.integral(lambda x: self.derivatives(x, alpha, lam)[1], points, rtol=1e-9)
        return -sensitivity / slope

    def multiplier(self, alpha: float, lam: float) -> float:
        r"""One standard deviation of λ at ``alpha``."""
        g = self.gradient(alpha, lam)
        return float(math.sqrt(max(g @ self.covariance @ g, 0.0)))

    def q(self, x: np.ndarray, alpha: float, lam: float) -> np.ndarray:
        r"""One standard deviation of :math:`q^*` at ``x`` (λ moving with the target)."""
        x = np.asarray(x, dtype=float)
        dp, dl = self.derivatives(x, alpha, lam)
        v = self._columns(x, alpha) * dp[:, None] + dl[:, None] * self.gradient(alpha, lam)[None, :]
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
        return np.sqrt(np.maximum(np.einsum("ik,kl,il->i", v, self.covariance, v), 0.0))
