r"""Training the conditional flow on the generated loss kernels, with atomic checkpoints."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NoReturn

import numpy as np
import torch
from torch import Tensor

from renorm.symbolic import (
    MAPS, ExactMinimizer, Frame, MultiProblem, NotNormalizableError, Problem, RenormError, SupportMap, default_map, distance_frame, event_sample,
    expand, numeric, one_line, solve, to_toml, write_atomic,
)

from ._checkpoint import FORMAT, Interrupted, clean_orphans, deferred_signals, read_checkpoint, run_lock, save_checkpoint, saving
from ._config import TrainConfig, TrainingStatus, auto_floor
from ._flow import ConditionalFlow
from ._maps import TORCH, training_range
from ._rundir import CHECKPOINT, SPEC_COPY, run_problem

__all__ = ["train", "load_run", "Run"]


def _gauss_legendre(edges: np.ndarray, order: int = 8) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(order)
    lo, hi = edges[:-1, None], edges[1:, None]
    half = 0.5 * (hi - lo)
    return (0.5 * (hi + lo) + half * nodes).ravel(), (half * weights).ravel()


#: Quantiles of q* (in the latent variable, over the coupling range) mapped to ±4.5: the whole
#: region where the loss is not negligible then lies inside the Bernstein polynomials' [-5, 5],
#: outside of which the flow is the identity with a Gaussian tail (measured: standardizing by
#: mean and spread left x -> 1/2 of the angularity in that tail and a loss 400x the optimum).
_QUANTILES = (1e-6, 1 - 1e-6)
_WINDOW = 4.5

#: The training grid integrates q* to this at every training coupling, the validation grid (which
#: only ranks the refinement's steps, on a non-negative integrand) to the second; both are
#: refined panel by panel (:meth:`Objective._resolved`) to at most :data:`_REFINEMENT` times the panels asked for.
_GRID_TOLERANCE = 1e-5
_VALIDATION_TOLERANCE = 1e-3
_REFINEMENT = 4


def _latent_quantiles(problem: Problem, support_map: SupportMap, alphas, quantiles) -> list[float]:
    r"""The latent points of the ``quantiles`` of q* at each coupling of ``alphas`` (of the positive
    part of p where no exact minimizer exists; none where even that vanishes)."""
    minimizer = ExactMinimizer(problem)
    lo, hi = training_range(support_map)
    y = np.linspace(lo, hi, 20001)
    x = support_map.from_latent(torch.as_tensor(y), TORCH).numpy()
    jacobian = np.exp(support_map.log_jacobian(torch.as_tensor(y), TORCH).numpy())
    ends = []
    for alpha in alphas:
        try:
            solution = minimizer.solve(alpha)
            density = solution.q(x)
        except (NotNormalizableError, RenormError):
            density = np.maximum(minimizer.p(x, alpha), 0.0)
        weights = np.nan_to_num(density * jacobian, nan=0.0, posinf=0.0)
        cdf = np.cumsum(weights)
        if cdf[-1] <= 0:
            continue
        cdf /= cdf[-1]
        ends += [float(np.interp(q, cdf, y)) for q in quantiles]
    return ends


def _standardization(problem: Problem, support_map: SupportMap) -> tuple[float, float]:
    r"""Shift and scale that map the :data:`_QUANTILES` of q* in the latent variable, at both ends
    of the spec's ``alpha_range``, to ±4.5.

    The perturbative window below it is left out: the flow follows q* there only across the
    physical bulk (:meth:`Objective._window`), and standardizing on q*'s peak at α = 1e-3 took the
    Bernstein polynomials' resolution away from the physical range (measured: TV 1.0e-3, 1.2e-3,
    2.5e-3 at 0.05, 0.118, 0.3 against 8.2e-4, 6.9e-4, 1.5e-3 without it).
    """
    ends = _latent_quantiles(problem, support_map, problem.coupling_range, _QUANTILES)
    if not ends:
        lo, hi = training_range(support_map)
        return 0.5 * (lo + hi), (hi - lo) / 9
    first, last = min(ends), max(ends)
    return 0.5 * (first + last), max((last - first) / (2 * _WINDOW), 1e-3)


def trained_couplings(problem: Problem, config: TrainConfig) -> tuple[float, float]:
    r"""The couplings a flow is trained on: the spec's ``alpha_range`` and the perturbative window below it.

    Raises:
        RenormError: If ``config.alpha_floor`` is not below the spec's α_min.
    """
    lo, hi = problem.coupling_range
    floor = window_floor(problem, config)
    if floor == 0:
        return float(lo), float(hi)
    if not floor < lo:
        raise RenormError(f"alpha_floor {floor:g} is not below the spec's alpha_min {lo:g}: lower it, or pass 0 to train "
                          "no perturbative window")
    return floor, float(hi)


def window_floor(problem: Problem | MultiProblem, config: TrainConfig) -> float:
    r"""The perturbative window's floor: ``config.alpha_floor``, or what ``auto`` means for ``problem`` (0: none).

    ``auto`` is :func:`~renorm.runtime._config.auto_floor` of the spec's α_min where the window
    applies: a target in one variable (the window is not there in two yet), trained by
    distillation (the window's objective is distillation's: ``mode`` auto or distill on the
    quadrature grid), with an exact minimizer at the floor and at the ends of the physical
    range. Elsewhere it is 0, and ``verify`` reads the orders over the physical range.
    """
    if config.alpha_floor != "auto":
        return float(config.alpha_floor)
    if isinstance(problem, MultiProblem) or config.mode in ("functional", "events") or config.sampling != "quadrature":
        return 0.0
    lo, hi = (float(c) for c in problem.coupling_range)
    floor = auto_floor(lo)
    if floor == 0:
        return 0.0
    try:
        # downwards, so that each warm start is a larger λ than the root: measured on angularity_running,
        # upwards from the floor's λ = 4e-20 the solve at α_min adapted to q ≈ |p| at the Landau pole (11 s, not 0.6 s)
        solve(problem, [hi, lo, floor])
    except NotNormalizableError:
        return 0.0
    return floor


class Objective:
    r"""The training objective on a grid of latent points and couplings.

    ``functional``: the mean over α of :math:`L[q] = \int dx\, w |f(q) - f(p)|^2`, computed with the
    generated ``loss_density`` kernel by quadrature in the latent variable
    (:math:`\int dx = \int dy\, |dx/dy|`). ``distill``: the mean over α of the forward KL
    divergence :math:`\int q^* \log(q^*/q)` from the exact minimizer. Optionally plus the Taylor
    operator loss :math:`\sum_{n \le N} \int dx\, (q^n - p^n)^2` with :math:`q^n` from autograd in α at α = 0.
    """

    def __init__(self, problem: Problem, flow: ConditionalFlow, config: TrainConfig, dtype: torch.dtype, device: torch.device):
        from renorm.codegen import load

        self.problem, self.flow, self.config = problem, flow, config
        self.dtype, self.device = dtype, device
        self.kernels = load(problem)
        self.latent_lo, self.latent_hi = training_range(flow.support_map, dtype)
        self._exact: dict[bytes, Callable[[np.ndarray], np.ndarray]] = {}
        self.parts = self._coupling_parts()
        self.alpha, self.alpha_weight = (self._tensor(v) for v in self._coupling_nodes("nodes"))
        edges = self.latent_edges(max(4, config.x_points // 8))
        if config.mode != "events":  # that mode integrates on the events' own grid
            edges = self._resolved(edges, self.alpha, 8, _GRID_TOLERANCE)
        self.y, self.y_weight = (self._tensor(v) for v in _gauss_legendre(edges))
        # the bulk that the window's couplings train (with the window only): the 1%-99% quantiles of q* at the ends of the physical range
        ends = _latent_quantiles(problem, flow.support_map, problem.coupling_range, (0.01, 0.99)) if len(self.parts) > 1 else []
        self.bulk = (min(ends), max(ends)) if ends else None
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed + 1)
        self.mode, self.target = self._objective_mode()
        self.events = _EventLoss(self) if self.mode == "events" else None
        self._validation: tuple[Tensor, Tensor, Tensor, Tensor | None] | None = None
        self.coefficients = [numeric(c, (problem.x,)) for c in expand(problem)] if config.taylor_weight > 0 else None

    def latent_edges(self, panels: int) -> np.ndarray:
        r"""Panel edges in the latent variable: dense over the bulk (±6 spreads), a few wide ones over the tails."""
        mean, spread = float(self.flow.shift), float(self.flow.scale)
        lo, hi = self.latent_lo, self.latent_hi
        inner_lo, inner_hi = max(lo, mean - 6 * spread), min(hi, mean + 6 * spread)
        return np.unique(np.concatenate([np.linspace(lo, inner_lo, 5), np.linspace(inner_lo, inner_hi, panels - 7), np.linspace(inner_hi, hi, 5)]))

    def _resolved(self, edges: np.ndarray, alpha: Tensor, order: int, tolerance: float) -> np.ndarray:
        r"""The panel ``edges``, halved where the Gauss–Legendre rule of ``order`` does not resolve q*.

        A panel's error is the largest difference, over the couplings ``alpha``, between its rule
        and the rule on its two halves, applied to the latent density of q*. Panels with more than
        their share of ``tolerance`` are halved, the worst first, until the errors sum to less than
        it (or the grid has :data:`_REFINEMENT` times its panels), so that the grid integrates q*
        to ``tolerance`` at every coupling. Measured without it: with the window, where q*'s Sudakov peak at α = 1e-3 is narrow in the
        latent variable, the training grid integrated q* to 0.92-1.08, and the flow learned the
        grid's normalization (bulk errors of 1% oscillating in α); at the Landau pole of
        ``angularity_running`` and the kink of ``soft_collinear_nlo``, to 5% and 4% (with it: 1.8e-3
        at the refinement's limit, and 5.6e-6). Without an exact minimizer the edges are returned as they are.
        """
        try:
            log_density = self._exact_log_density(alpha)
        except NotNormalizableError:
            return edges

        def density(y: np.ndarray) -> np.ndarray:
            return np.nan_to_num(np.exp(log_density(y)), nan=0.0, posinf=0.0)

        most = _REFINEMENT * (edges.size - 1)
        while True:
            middle = 0.5 * (edges[1:] + edges[:-1])
            halves = np.sort(np.concatenate([edges, middle]))
            coarse, fine = (self._panel_integrals(e, density, order) for e in (edges, halves))
            error = np.abs(coarse - fine[0::2] - fine[1::2]).max(axis=1)
            room = most - error.size
            if error.sum() <= tolerance or room <= 0:
                break
            worst = np.argsort(error)[::-1][: room]
            refined = np.unique(np.concatenate([edges, middle[worst[error[worst] > tolerance / error.size]]]))
            if refined.size == edges.size:  # panels as narrow as float64 resolves
                break
            edges = refined
        return edges

    @staticmethod
    def _panel_integrals(edges: np.ndarray, density: Callable[[np.ndarray], np.ndarray], order: int) -> np.ndarray:
        r"""Each panel's Gauss–Legendre integral of ``density`` (``(n,)`` → ``(n, m)``), shape ``(panels, m)``."""
        y, weight = _gauss_legendre(edges, order)
        return (weight[:, None] * density(y)).reshape(edges.size - 1, order, -1).sum(axis=1)

    def _exact_log_density(self, alpha: Tensor) -> Callable[[np.ndarray], np.ndarray]:
        r"""The latent log density of q* at the couplings ``alpha``, a NumPy function ``(n,)`` → ``(n, m)``.

        Kept per set of couplings: the grid's refinement and the distillation target need the same
        λ(α), and solving for it is a good part of a training start (32 couplings of ``angularity_running``: 6.1 s on a loaded machine).

        Raises:
            NotNormalizableError: Where q* does not exist.
        """
        couplings = alpha.double().cpu().numpy()
        if couplings.tobytes() in self._exact:
            return self._exact[couplings.tobytes()]
        solutions = solve(self.problem, couplings)
        minimizer, support_map = solutions[0].minimizer, self.flow.support_map

        def log_density(y: np.ndarray) -> np.ndarray:
            latent = torch.as_tensor(y, dtype=torch.float64)
            x = support_map.from_latent(latent, TORCH).numpy()
            jacobian = support_map.log_jacobian(latent, TORCH).numpy()
            return np.stack([minimizer.log_q(x, s.alpha, s.lagrange_multiplier) + jacobian for s in solutions], axis=1)

        self._exact[couplings.tobytes()] = log_density
        return log_density

    def _tensor(self, values: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device).to(self.dtype)

    def _coupling_parts(self) -> list[tuple[float, float, int, bool, float]]:
        r"""The coupling ranges trained, each ``(lo, hi, nodes, in_log, weight)``: the spec's range, in
        the context's own scale, and the perturbative window below it, in log α.

        Nodes go uniformly in the context's scale (log α by default): with nodes uniform in α the
        small-α end, where the distribution changes fastest, was under-weighted (measured: TV at
        α = 0.05 stalled at 1e-2). The window's total weight is its length in log α over the
        range's times ``window_weight`` (1: the couplings weighted uniformly in log α across both).
        """
        lo, hi = self.problem.coupling_range
        parts = [(float(lo), float(hi), self.config.alpha_points, self.config.context == "log", 1.0)]
        floor = trained_couplings(self.problem, self.config)[0]
        if floor < lo:
            parts.append((floor, float(lo), self.config.window_points, True, self.config.window_weight * math.log(lo / floor) / math.log(hi / lo)))
        return parts

    def _coupling_nodes(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        r"""Couplings and weights of every part: its Gauss–Legendre ``nodes``; the couplings halfway
        ``between`` them and at the ends, equally weighted (the validation grid); or ``random``
        uniform draws (Monte Carlo sampling)."""
        alphas, weights = [], []
        for lo, hi, count, in_log, total in self.parts:
            if kind == "random":
                t, w = torch.rand(count, generator=self.generator, dtype=torch.float64).numpy(), np.ones(count)
            else:
                nodes, w = np.polynomial.legendre.leggauss(count)
                t = (nodes + 1) / 2
                if kind == "between":
                    t = np.concatenate([[0.0], 0.5 * (t[1:] + t[:-1]), [1.0]])
                    w = np.ones_like(t)
            alphas.append(self._scaled(t, lo, hi, in_log))
            weights.append(total * w / w.sum())
        return np.concatenate(alphas), np.concatenate(weights)

    @staticmethod
    def _scaled(t: np.ndarray, lo: float, hi: float, in_log: bool) -> np.ndarray:
        r"""Couplings at fractions ``t`` of ``[lo, hi]``, in log α or in α."""
        return np.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * t) if in_log else lo + (hi - lo) * t

    def _objective_mode(self) -> tuple[str, Tensor | None]:
        r"""The mode and, for distillation, its target; ``auto`` distills where q* exists.

        The target lives on the quadrature grid, so Monte Carlo sampling means the functional.
        """
        mode = self.config.mode
        if mode == "events":
            _check_events_mode(self.problem)
            return "events", None
        if mode == "functional" or (mode == "auto" and self.config.sampling != "quadrature"):
            return "functional", None
        try:
            return "distill", self._distillation_target(self.y, self.alpha)
        except NotNormalizableError as error:
            if mode == "distill":
                raise RenormError(f"distillation needs an exact minimizer: {error}") from None
            return "functional", None

    def _distillation_target(self, y: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\log q^*_y` at latent points ``y`` and couplings ``alpha`` (latent density of the exact minimizer)."""
        return self._tensor(self._exact_log_density(alpha)(y.double().cpu().numpy()))

    @torch.no_grad()
    def validation(self) -> float:
        r"""The objective on a second grid: other latent nodes, and couplings between the training ones.

        The refinement stops where this stops improving (measured: L-BFGS kept lowering the
        training objective while the distance to q* between the nodes grew 30-fold).
        """
        if self._validation is None:
            panels = (self.config.x_points // 6 + 1) * (_EventLoss.DENSER if self.events is not None else 1)
            alpha, alpha_weight = (self._tensor(v) for v in self._coupling_nodes("between"))
            edges = np.linspace(float(self.y.min()), float(self.y.max()), panels + 1)
            y, weight = _gauss_legendre(self._resolved(edges, alpha, 7, _VALIDATION_TOLERANCE) if self.events is None else edges, order=7)
            y, weight = self._tensor(y), self._tensor(weight)
            target = self._distillation_target(y, alpha) if self.target is not None else None
            self._validation = (y, weight, alpha, alpha_weight, target)
        y, weight, alpha, alpha_weight, target = self._validation
        if self.events is not None:
            square = self.events.square(self.flow.log_prob_latent(y, alpha), y, weight, alpha)
            value = float((alpha_weight * square).sum() - 2 * self.events.expectation(alpha, alpha_weight, validation=True))
        else:
            value = float((alpha_weight * self._per_alpha(self.flow.log_prob_latent(y, alpha), y, weight, alpha, target)).sum())
        if self.coefficients is not None:
            # the stopping rule must see the whole objective, or it stops where the two terms trade
            with torch.enable_grad():
                value += self.config.taylor_weight * float(self.taylor(y, weight))
        return value

    def grid(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Latent points, their weights, couplings and their weights for one step."""
        if self.config.sampling == "quadrature":
            return self.y, self.y_weight, self.alpha, self.alpha_weight
        u = torch.rand(self.config.x_points, generator=self.generator, dtype=torch.float64)
        width = self.latent_hi - self.latent_lo
        y = self._tensor((self.latent_lo + width * u).numpy())
        alpha, alpha_weight = (self._tensor(v) for v in self._coupling_nodes("random"))
        return y, torch.full_like(y, width / y.numel()), alpha, alpha_weight

    def functional(self, log_q_latent: Tensor, y: Tensor, y_weight: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`L[q]` per coupling from latent log densities of shape ``(n, m)``.

        The kernel runs in float64 whatever the training dtype: in float32, x within 1e-7 of a
        zero of p rounds onto it (measured: the angularity's p vanishes at x = 1/2, where 608
        grid entries gave an infinite loss at the first step).
        """
        y = y.double()
        jac = self.flow.support_map.log_jacobian(y, TORCH)
        x = self.flow.support_map.from_latent(y, TORCH)
        density = self.kernels.loss_density(log_q_latent.double() - jac[:, None], x[:, None], alpha.double()[None, :])
        return ((y_weight.double() * torch.exp(jac))[:, None] * density).sum(0).to(log_q_latent.dtype)

    def __call__(self) -> Tensor:
        y, y_weight, alpha, alpha_weight = self.grid()
        if self.events is not None:
            if self.config.sampling == "quadrature":
                y, y_weight = self.events.y, self.events.y_weight
            square = self.events.square(self.flow.log_prob_latent(y, alpha), y, y_weight, alpha)
            loss = (alpha_weight * square).sum() - 2 * self.events.expectation(alpha, alpha_weight)
        else:
            per_alpha = self._per_alpha(self.flow.log_prob_latent(y, alpha), y, y_weight, alpha, self.target)
            loss = (alpha_weight * per_alpha).sum()
        if self.coefficients is not None:
            loss = loss + self.config.taylor_weight * self.taylor(y, y_weight)
        return loss

    def _per_alpha(self, log_q: Tensor, y: Tensor, y_weight: Tensor, alpha: Tensor, target: Tensor | None) -> Tensor:
        r"""The forward KL from q* (``target`` given) or the loss functional, per coupling."""
        if target is None:
            return self.functional(log_q, y, y_weight, alpha)
        # the generalized KL q* log(q*/q) - q* + q: the same integral (both densities are
        # normalized) but non-negative at every node, so on a finite grid it is minimized by
        # q = q* node by node; the plain KL could be lowered by moving mass between the nodes
        # (measured: it went negative on a second grid while the distance to q* grew)
        # Written as q* (e^d - 1 - d) with d = log(q/q*): the three O(q*) terms of the plain form
        # cancel to O(q* d^2), which float32 cannot resolve near the optimum (d ~ 1e-3)
        present = torch.isfinite(target)
        safe = torch.where(present, target, 0.0)
        d = torch.where(present, log_q - safe, 0.0)
        kl = torch.where(present, torch.exp(safe) * (torch.expm1(d) - d), torch.exp(log_q))
        value = (y_weight[:, None] * kl).sum(0)
        if self.bulk is None:
            return value
        window = self._window(log_q, y, y_weight, kl, d, torch.where(present, torch.exp(safe), 0.0))
        return torch.where(alpha < self.problem.coupling_range[0], window, value)

    def _window(self, log_q: Tensor, y: Tensor, y_weight: Tensor, kl: Tensor, d: Tensor, star: Tensor) -> Tensor:
        r"""The distillation objective at the window's couplings, where only the physical bulk is checked.

        At α = 1e-3 q* is a Sudakov peak far below the bulk, which then holds a few percent of the
        probability; asked to follow that peak too, the flow spent itself there (measured: bulk
        errors of 1%, and TV 5e-3 at α = 0.3). So the generalized KL divergence runs pointwise over
        the bulk only, and each side of it enters as one bin, :math:`M^* \log(M^*/M) - M^* + M`
        with M the probability there (written as the nodes' are): the bulk's share stays right,
        the peak's shape is free. Plus ``relative_weight`` times the bulk mean (in the latent
        variable) of :math:`\frac12 \log^2(q/q^*)`, which weights the bulk by its extent rather
        than by its probability.
        """
        inside = (y >= self.bulk[0]) & (y <= self.bulk[1])
        value = (torch.where(inside, y_weight, 0.0)[:, None] * kl).sum(0)
        for side in (y < self.bulk[0], y > self.bulk[1]):
            weight = torch.where(side, y_weight, 0.0)[:, None]
            mass, exact = (weight * torch.exp(log_q)).sum(0), (weight * star).sum(0)
            ratio = torch.log(mass) - torch.log(exact.clamp_min(1e-300))  # in the same cancellation-free form as the nodes'
            value = value + torch.where(exact > 0, exact * (torch.expm1(ratio) - ratio), mass)
        bulk_weight = torch.where(inside, y_weight, 0.0)
        relative = (bulk_weight[:, None] * 0.5 * d ** 2).sum(0) / bulk_weight.sum().clamp_min(1e-300)
        return value + self.config.relative_weight * relative

    def taylor(self, y: Tensor, y_weight: Tensor) -> Tensor:
        r"""The Taylor-operator loss :math:`\sum_{n \le N} \int dx\, (q^n - p^n)^2` on the latent grid.

        :math:`q^n = \frac{1}{n!}\partial_\alpha^n q(x|\alpha)` at α = 0 by nested autograd, with
        one coupling per point so that the derivatives stay pointwise; :math:`p^n` are the
        regular parts (the δ and plus parts at the endpoint have no pointwise counterpart). The
        integral runs over the standardized bulk :math:`|z| \le 3` only: a regular part such as
        :math:`\log(1/x)/x` is not square-integrable at the singular endpoint.
        """
        bulk = (y - self.flow.shift).abs() <= 3 * self.flow.scale
        y, y_weight = y[bulk], y_weight[bulk]
        x = self.flow.support_map.from_latent(y, TORCH)
        jac = self.flow.support_map.log_jacobian(y, TORCH)
        alpha = torch.zeros_like(y, requires_grad=True)
        q = torch.exp(self.flow.log_prob_latent_paired(y, alpha) - jac)
        points = x.detach().double().cpu().numpy()
        total, derivative = q.new_zeros(()), q
        for n, coefficient in enumerate(self.coefficients):
            if n > 0:
                derivative = torch.autograd.grad(derivative.sum(), alpha, create_graph=True)[0]
            target = torch.tensor(np.array(coefficient(points), dtype=np.float64)).to(q)
            total = total + ((y_weight * torch.exp(jac)) * (derivative / math.factorial(n) - target) ** 2).sum()
        return total


@dataclass
class Run:
    r"""A trained run: the problem, the flow and what was recorded.

    The flow's variable is that of the problem's :class:`~renorm.symbolic.Frame`: the distance
    :math:`d` to a singular endpoint other than 0 (:math:`x = b - d` at an upper one), else
    :math:`x`. :meth:`log_density` and :meth:`sample` speak :math:`x`;
    :meth:`log_density_distance` speaks :math:`d` and resolves the endpoint.
    """

    problem: Problem
    flow: ConditionalFlow
    config: TrainConfig
    step: int
    history: list[dict] = field(default_factory=list)
    directory: Path | None = None
    _evaluator: ConditionalFlow | None = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def frame(self) -> Frame:
        r"""The variable the flow is trained in (see :func:`~renorm.symbolic.distance_frame`)."""
        return distance_frame(self.problem)

    @property
    def seconds(self) -> float:
        r"""Training wall time recorded so far (0 before the first step)."""
        return self.history[-1]["time"] if self.history else 0.0

    @property
    def final_loss(self) -> float:
        r"""The loss of the last step (NaN before the first step)."""
        return self.history[-1]["loss"] if self.history else math.nan

    @property
    def evaluator(self) -> ConditionalFlow:
        r"""A float64 CPU copy of the flow: a float32-trained flow is evaluated exactly in float64,
        where :math:`x` near a singular endpoint does not underflow."""
        if self._evaluator is None:
            self._evaluator = copy.deepcopy(self.flow).to(device="cpu", dtype=torch.float64).eval()
        return self._evaluator

    @property
    def couplings(self) -> tuple[float, float]:
        r"""The couplings the flow was trained on: the spec's ``alpha_range`` and the perturbative window below it."""
        return self.flow.coupling_range

    #: What to do about a coupling outside :attr:`couplings` (the end of :meth:`require_coupling`'s message).
    _WIDEN = "widen train.alpha_range, or lower alpha_floor, and train again"

    def require_coupling(self, alpha: float) -> None:
        r"""Refuses a coupling outside :attr:`couplings`, where the flow was never trained (in one line)."""
        lo, hi = self.couplings
        if not lo * (1 - 1e-12) <= alpha <= hi * (1 + 1e-12):
            raise RenormError(f"alpha = {alpha:g} is outside the couplings this flow was trained on, [{lo:g}, {hi:g}]: its density "
                              f"there is an extrapolation ({self._WIDEN})")

    def log_density_distance(self, d: np.ndarray, alpha: float) -> np.ndarray:
        r""":math:`\log q` at distances :math:`d` to the singular endpoint (:math:`x` itself where
        that endpoint is 0 or there is none), float64 NumPy: the interface of verification and plots.

        Raises:
            RenormError: At a coupling outside :attr:`couplings`.
        """
        self.require_coupling(alpha)
        with torch.no_grad():
            dt = torch.as_tensor(np.asarray(d, dtype=np.float64).ravel())
            return self.evaluator.log_prob(dt, torch.tensor([float(alpha)], dtype=torch.float64))[:, 0].numpy().reshape(np.shape(d))

    def log_density(self, x: np.ndarray, alpha: float) -> np.ndarray:
        r""":math:`\log q(x|\alpha)` as float64 NumPy."""
        return self.log_density_distance(self.frame.d(x), alpha)

    def sample(self, alpha: float, n: int, seed: int = 0) -> np.ndarray:
        r"""``n`` samples of :math:`x` (float64; rounded within :math:`\epsilon|x|` of a nonzero singular endpoint)."""
        self.require_coupling(alpha)
        parameter = next(self.flow.parameters())
        generator = torch.Generator(device=parameter.device).manual_seed(seed)
        return self.frame.x(self.flow.sample(alpha, n, generator).double().cpu().numpy())


def _check_events_mode(problem: Problem) -> None:
    r"""Refuses ``mode = events`` where it does not apply, in one line."""
    events = any(source.kind == "events" for source in problem.data)
    if problem.f_kind != "linear" or not events:
        raise RenormError(f"mode events trains f = linear on a target given as events (target.events); {problem.name} has "
                          f"f = {problem.f_kind} and {'events' if events else 'no events'}")
    if not distance_frame(problem).identity:
        raise RenormError("mode events at a singular endpoint other than 0 is not supported yet (the flow trains in the distance to it, "
                          "the events are in x)")


class _EventLoss:
    r"""``f = linear`` straight from Monte Carlo events, without a density estimate:

    .. math:: L[q] - \int w p^2 = \int w q^2\, dx - 2 E_p[w q],

    the first term by quadrature in the latent variable, the expectation as the events' weighted
    sum :math:`\sum_i w_i(\alpha)\, w(x_i, \alpha)\, q(x_i|\alpha)` (events at the singular end, where
    q has no δ part, contribute nothing). The constant :math:`\int w p^2` is not known from events,
    so the loss reported in this mode is :math:`L[q]` less it. Each event is paired with one
    coupling node (a fixed random pairing with quadrature sampling, fresh each step with Monte
    Carlo), so a step evaluates the flow once per event: :data:`SAMPLE` events for training and
    a disjoint quarter as many for the refinement's validation. With quadrature sampling the first
    term has its own grid, :data:`DENSER` times the training grid's nodes: on a grid as coarse as
    the other modes' the flow learns to put probability between the nodes, where the events
    reward it and the quadrature does not see it (measured: TV 0.85 from q* after 60 steps with
    64 nodes, against 0.03 for the same budget on the formula).
    """

    SAMPLE = 1 << 15
    DENSER = 16

    def __init__(self, objective: "Objective"):
        self.objective = objective
        problem, config = objective.problem, objective.config
        (source,) = [source for source in problem.data if source.kind == "events"]
        sample = event_sample(source.path, problem.x.name, problem.support_floats, problem.singular, problem.order)
        generator = np.random.default_rng(config.seed + 2)
        order = generator.permutation(sample.x.size)
        # the training and validation events are disjoint; each carries its share of the whole sample
        cut = min(self.SAMPLE, (4 * sample.x.size) // 5)
        train, check = order[:cut], order[cut:cut + max(cut // 4, 1)]
        self.sets = {False: self._tensors(sample, train, generator), True: self._tensors(sample, check, generator)}
        self.monte_carlo = config.sampling != "quadrature"
        self.y, self.y_weight = (objective._tensor(v) for v in _gauss_legendre(objective.latent_edges(self.DENSER * max(4, config.x_points // 8))))

    def _tensors(self, sample, index: np.ndarray, generator: np.random.Generator) -> dict[str, Tensor]:
        x = torch.as_tensor(sample.x[index], dtype=torch.float64)
        y = self.objective.flow.support_map.to_latent(x, TORCH)
        return {"x": x, "y": y, "jac": self.objective.flow.support_map.log_jacobian(y, TORCH),
                "weights": torch.as_tensor(sample.weights[index] * (sample.x.size / max(index.size, 1)), dtype=torch.float64),
                "pairing": torch.as_tensor(generator.random(index.size))}

    def square(self, log_q_latent: Tensor, y: Tensor, y_weight: Tensor, alpha: Tensor) -> Tensor:
        r""":math:`\int w q^2\, dx` per coupling from latent log densities of shape ``(n, m)``."""
        y = y.double()
        jac = self.objective.flow.support_map.log_jacobian(y, TORCH)
        x = self.objective.flow.support_map.from_latent(y, TORCH)
        weight = self.objective.kernels.weight(x[:, None], alpha.double()[None, :])
        # q_x^2 |dx/dy| = exp(2 log q_y - log|dx/dy|)
        values = torch.where(weight > 0, weight * torch.exp(2 * log_q_latent.double() - jac[:, None]), 0.0)
        return (y_weight.double()[:, None] * values).sum(0).to(log_q_latent.dtype)

    def expectation(self, alpha: Tensor, alpha_weight: Tensor, validation: bool = False) -> Tensor:
        r""":math:`\sum_j a_j E_p[w q](\alpha_j)`, each event at its paired node with weight :math:`m a_j`."""
        events = self.sets[validation]
        m = alpha.numel()
        draw = torch.rand(events["x"].numel(), generator=self.objective.generator, dtype=torch.float64) if self.monte_carlo and not validation else events["pairing"]
        node = torch.clamp((draw * m).long(), max=m - 1).to(alpha.device)
        a = alpha.double()[node]
        x, y, jac = (events[k].to(alpha.device) for k in ("x", "y", "jac"))
        powers = a[:, None] ** torch.arange(events["weights"].shape[1], device=alpha.device, dtype=torch.float64)[None, :]
        w_event = (events["weights"].to(alpha.device) * powers).sum(1)
        log_q = self.objective.flow.log_prob_latent_paired(y.to(self.objective.dtype), a.to(self.objective.dtype)).double() - jac
        terms = m * alpha_weight.double()[node] * w_event * self.objective.kernels.weight(x, a) * torch.exp(log_q)
        return terms.sum().to(self.objective.dtype)


def _spec_copy(problem: Problem, directory: Path) -> None:
    r"""Stores the problem in the run directory as data.

    A TOML spec is copied as written (with its comments); a Python spec's problem, and one fitted
    from data files (whose paths are the spec's), is written as the equivalent TOML
    (:func:`~renorm.symbolic.to_toml`: the fitted density as a formula, the files' hashes in
    comments), so that nothing in a run directory is ever code or depends on another file. A
    problem that TOML cannot express is not stored: reading the run then needs the spec again
    (``--spec``).
    """
    target = directory / SPEC_COPY
    source = Path(problem.source) if problem.source else None
    if source is not None and source.suffix != ".py" and not problem.data:
        if source.resolve() != target.resolve():
            write_atomic(target, source.read_text(encoding="utf-8"))
        return
    try:
        text = to_toml(problem)
    except RenormError:
        target.unlink(missing_ok=True)
        return
    write_atomic(target, text)


#: A map named for an end of x acts on the other end of the distance d = b - x.
_MIRRORED = {"double_log_lower": "double_log_upper", "double_log_upper": "double_log_lower", "log_lower": "log_upper", "log_upper": "log_lower"}


def _support_map(problem: Problem, config: TrainConfig) -> SupportMap:
    r"""The flow's map in the problem's frame: ``config.support_map`` (named for an end of :math:`x`,
    mirrored in the distance to an upper end), or the default for the support.

    Raises:
        RenormError: If the named map does not take the whole real line onto the support.
    """
    frame = distance_frame(problem)
    support, singular = frame.problem.support_floats, frame.problem.singular
    if config.support_map == "auto":
        return default_map(support, singular)
    name = _MIRRORED.get(config.support_map, config.support_map) if frame.sign < 0 else config.support_map
    support_map = MAPS[name](*support)
    if not support_map.whole_line():
        a, b = problem.support_floats
        raise RenormError(f"support map {config.support_map} does not map the real line onto the support ({a:g}, {b:g}): use auto or one that does")
    return support_map


def _build_flow(problem: Problem, config: TrainConfig) -> ConditionalFlow:
    r"""A fresh flow in the variable of the problem's frame: the distance to a nonzero singular endpoint, else :math:`x`."""
    support_map = _support_map(problem, config)
    problem = distance_frame(problem).problem
    couplings = trained_couplings(problem, config)
    shift, scale = _standardization(problem, support_map)
    return ConditionalFlow(support_map, shift, scale, couplings, config.degree, config.transforms, config.hidden, config.context)


#: Settings a resumed run may change; every other flag given again must agree with the run's own.
RESUMABLE = frozenset({"epochs", "refine", "checkpoint_every", "checkpoint_seconds", "device"})
#: Files of a finished or earlier run that ``force`` removes before a fresh run starts.
_RUN_FILES = (CHECKPOINT, "history.json", "report.json")


def _directory(out_dir: str | Path) -> Path:
    r"""The run directory, created; one line if it cannot be (a file, under a file, read-only)."""
    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=directory, prefix=".tmp-probe-", suffix=".tmp")
        probe.close()
    except OSError as error:
        raise RenormError(f"cannot write the run directory {one_line(directory)}: {error.strerror or error}") from None
    return directory


def resumed_config(stored: TrainConfig, given: TrainConfig | None) -> TrainConfig:
    r"""The settings of a resumed run: its own, with only :data:`RESUMABLE` ones taken from ``given``.

    Raises:
        RenormError: If ``given`` disagrees with the run on any other setting (named).
    """
    if given is None:
        return stored
    for item in dataclasses.fields(TrainConfig):
        mine, theirs = getattr(stored, item.name), getattr(given, item.name)
        if item.name not in RESUMABLE and mine != theirs:
            flag = "--" + item.name.replace("_", "-")
            raise RenormError(f"{flag} {theirs} disagrees with the run's own {item.name} = {mine}: a resumed run keeps its settings "
                              f"(only {', '.join(sorted(RESUMABLE))} may change)")
    return dataclasses.replace(stored, **{name: getattr(given, name) for name in RESUMABLE})


def stored_run(out_dir: str | Path, problem: Problem | None = None) -> tuple[TrainConfig, int]:
    r"""The settings and the step recorded in a run directory's checkpoint (validated)."""
    state, config = _read_checkpoint(Path(out_dir) / CHECKPOINT, problem)
    return config, int(state["step"])


def train(
    problem: Problem,
    out_dir: str | Path,
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[TrainingStatus], None] | None = None,
    force: bool = False,
) -> Run:
    r"""Trains the flow for ``problem`` and writes ``out_dir/checkpoint.pt`` atomically.

    Checkpoints carry the spec hash, the flow's description, the optimizer state, the step, the
    configuration, the loss history and a checksum of all of them; they are written every
    ``checkpoint_every`` steps or ``checkpoint_seconds`` seconds, whichever comes first, at the
    end, and when SIGINT or SIGTERM asks training to stop (:class:`Interrupted` is then raised
    after the write; a signal during a write never aborts it). A non-finite loss stops training
    with a clear error and leaves the last good checkpoint in place, as does a failed write.
    The directory is locked while this runs: a second writer is refused.

    Arguments:
        problem: The matching problem.
        out_dir: The run directory (created).
        config: Training settings (default :class:`TrainConfig`). With ``resume``, the run's own
            settings are used and ``config`` may only change :data:`RESUMABLE` ones.
        resume: Continue from ``out_dir/checkpoint.pt`` (refused if it belongs to another spec).
        progress: Show a progress bar.
        callback: Called with a :class:`TrainingStatus` after every step.
        force: Replace a run already in ``out_dir`` (without it, that is refused).

    Returns:
        The trained :class:`Run`.
    """
    if not resume:
        # refused before the run directory is made
        config = config or TrainConfig()
        config.validate()
        config = dataclasses.replace(config, alpha_floor=window_floor(problem, config))  # the floor auto means, as the run stores it
        if isinstance(problem, MultiProblem):
            _check_plane_config(config)
        else:
            _support_map(problem, config)
            trained_couplings(problem, config)
        if config.mode == "events":
            _check_events_mode(problem)
    directory = _directory(out_dir)
    with run_lock(directory):
        clean_orphans(directory)
        return _train(problem, directory, config, resume, force, progress, callback)


def _check_plane_config(config: TrainConfig) -> None:
    r"""Refuses, in one line, the settings of one variable that training in two does not have yet."""
    unsupported = [
        (config.mode not in ("auto", "distill"), f"mode {config.mode}: in two variables the flow is trained by distillation of q* (auto or distill)"),
        (config.alpha_floor != 0, "alpha_floor: the perturbative window is not there in two variables yet"),
        (config.taylor_weight != 0, "taylor_weight: the Taylor-operator loss is one-dimensional"),
        (config.sampling != "quadrature" or config.optimizer != "adam", "in two variables training is Adam on the deterministic grid, then L-BFGS"),
        (config.support_map != "auto" or config.context != "log", "support_map and context: in two variables the plane map and a log-alpha context are fixed"),
    ]
    for bad, message in unsupported:
        if bad:
            raise RenormError(f"{message} (a target in two variables)")


@contextlib.contextmanager
def _threads(count: int):
    r"""torch's intra-op thread count set to ``count`` inside the block (see :attr:`TrainConfig.threads`)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _train(problem: Problem, directory: Path, config: TrainConfig | None, resume: bool, force: bool,
           progress: bool, callback: Callable[[TrainingStatus], None] | None) -> Run:
    checkpoint_path = directory / CHECKPOINT
    state = None
    if resume:
        state, stored = _read_checkpoint(checkpoint_path, problem)
        if config is not None and config.alpha_floor == "auto":
            config = dataclasses.replace(config, alpha_floor=stored.alpha_floor)  # resumed, auto is the floor the run chose
        config = resumed_config(stored, config)
        config.validate()
        _check_continuation(state, config, directory)
    elif checkpoint_path.exists() or checkpoint_path.is_symlink():
        if not force:
            raise RenormError(f"{one_line(directory)} already holds a run: continue it with --resume, or replace it with --force")
        for name in _RUN_FILES:
            with contextlib.suppress(FileNotFoundError):
                (directory / name).unlink()
    with _threads(config.threads):
        return _Trainer(problem, directory, config, state, progress, callback).run()


def _check_continuation(state: dict, config: TrainConfig, directory: Path) -> None:
    r"""Refuses a resume that asks for steps the run cannot take, instead of silently taking none."""
    step, wanted = state["step"], config.epochs + config.refine
    if wanted <= step:
        return
    if state["phase"] == "refine" and config.epochs > step:
        raise RenormError(f"{one_line(directory)}: the run is already in its L-BFGS refinement (step {step}); --epochs {config.epochs} "
                          "cannot return it to the main phase (raise --refine instead, or start a new run)")
    patience = _patience(config)
    if _Best.from_state(state["best"], patience).stopped:
        why = "a failed line search" if patience is None else f"{patience} steps without improvement on the validation grid, or a failed line search"
        raise RenormError(f"{one_line(directory)}: the run's refinement stopped at step {step} ({why}): more steps would not change the flow; "
                          "start a new run to train differently")


class _Trainer:
    r"""One session of training a run: the main phase, the L-BFGS refinement, checkpoints and stopping.

    The main phase takes ``epochs`` steps of the configured optimizer on the learning-rate
    schedule; the refinement then takes up to ``refine`` L-BFGS steps and stops early through
    :class:`_Best`. A checkpoint is written every ``checkpoint_every`` steps or
    ``checkpoint_seconds`` seconds, at the end, and when SIGINT or SIGTERM asks training to stop.
    Resumed from a checkpoint's ``state``, the run continues where it left off: the flow, the
    optimizer where it belongs to the current phase, the sampler, the history and the early stopping.
    """

    #: Steps between validation records in the main phase (every step in the refinement, which stops on it).
    VALIDATE_EVERY = 10

    def __init__(self, problem: Problem, directory: Path, config: TrainConfig, state: dict | None,
                 progress: bool, callback: Callable[[TrainingStatus], None] | None):
        self.problem, self.directory, self.config = problem, directory, config
        self.progress, self.callback = progress, callback
        dtype = torch.float64 if config.dtype == "float64" else torch.float32
        device = torch.device(config.device)
        torch.manual_seed(config.seed)
        if isinstance(problem, MultiProblem):
            from ._plane import PlaneFlow, problem_interval
            from ._plane_train import PlaneObjective, build_plane_flow

            flow = PlaneFlow.rebuild(state["flow"], problem_interval(problem)) if state else build_plane_flow(problem, config)
            objective = functools.partial(PlaneObjective, problem)
        else:
            flow = ConditionalFlow.rebuild(state["flow"]) if state else _build_flow(problem, config)
            objective = functools.partial(Objective, distance_frame(problem).problem)
        self.flow = flow.to(device=device, dtype=dtype)
        if state:
            self.flow.load_state_dict(state["state"])
        self.objective = objective(self.flow, config, dtype, device)
        self.step: int = state["step"] if state else 0
        # a checkpoint written at step == epochs still belongs to the main phase: the switch, with
        # its first early-stopping candidate (the flow Adam left), happens in the loop as it would have
        self.refining = bool(state) and state["phase"] == "refine"
        self.optimizer = self._optimizer()
        if state and state.get("optimizer") and state.get("phase", "main") == self.phase:
            self.optimizer.load_state_dict(state["optimizer"])
        self.history: list[dict] = list(state["history"]) if state else []
        self.best = _Best.from_state(state.get("best") if state else None, _patience(config))
        self.steps = config.epochs + config.refine
        self._store_spec()
        if state and "sampler" in state:
            self.objective.generator.set_state(state["sampler"])
        self.saved: int | None = state["step"] if state else None  # the step of this run's checkpoint on disk
        self.last_save = time.monotonic()
        self.start = math.nan  # perf_counter when this session's steps begin (see run)

    @property
    def phase(self) -> str:
        r"""Which optimizer a checkpoint's state belongs to."""
        return "refine" if self.refining else "main"

    def _optimizer(self) -> torch.optim.Optimizer:
        r"""The main phase's optimizer, or the L-BFGS of the refinement phase."""
        if self.refining:
            # full steps (lr 1) with a line search: on this smooth deterministic objective L-BFGS
            # converges where Adam crawls, once Adam has brought it near the optimum (measured:
            # from the initial flow it diverged)
            return torch.optim.LBFGS(self.flow.parameters(), lr=1.0, max_iter=20, history_size=50, line_search_fn="strong_wolfe",
                                     tolerance_grad=1e-12, tolerance_change=1e-15)
        if self.config.optimizer == "adam":
            return torch.optim.Adam(self.flow.parameters(), lr=self.config.lr)
        return torch.optim.LBFGS(self.flow.parameters(), lr=self.config.lr, max_iter=1, history_size=50, line_search_fn="strong_wolfe")

    def run(self) -> Run:
        r"""Trains to the last step or the refinement's early stop, saves and returns the run.

        Raises:
            Interrupted: After the checkpoint, where SIGINT or SIGTERM asked training to stop.
            RenormError: Where training diverged or a checkpoint could not be written.
        """
        from tqdm.auto import tqdm

        self.start = time.perf_counter()
        bar = tqdm(total=self.steps, initial=min(self.step, self.steps), disable=not self.progress, desc="train", unit="step",
                   leave=False, mininterval=1.0)
        try:
            with deferred_signals() as stop:
                self._steps(stop, bar)
                if stop:
                    self._interrupt(stop[0])
        finally:
            bar.close()
        if self.refining:
            self.best.restore(self.flow)
        self._save()
        return _run_of(self.problem, self.flow, self.config, self.step, self.history, self.directory)

    def _steps(self, stop: list[int], bar: Any) -> None:
        r"""Steps until the last one, the refinement's early stop, or a signal collected in ``stop``; ``bar`` is the tqdm progress bar."""
        while self.step < self.steps and not stop:
            if self.step >= self.config.epochs and not self.refining:
                self._start_refinement()
            if self.best.stopped:
                return
            if self.step < self.config.epochs:
                for group in self.optimizer.param_groups:
                    group["lr"] = self.config.lr * self._schedule()
            value = float(self.optimizer.step(self._evaluate).detach())
            if self._diverged(value):
                return
            self._record(value)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.6g}")
            if self.callback is not None:
                self.callback(TrainingStatus(self.step, self.steps, value, time.perf_counter() - self.start))
            if self.step % self.config.checkpoint_every == 0 or time.monotonic() - self.last_save >= self.config.checkpoint_seconds:
                self._save()

    # one step

    def _evaluate(self) -> Tensor:
        r"""The objective with its gradients: the closure of ``optimizer.step`` (L-BFGS evaluates it repeatedly)."""
        self.optimizer.zero_grad()
        value = self.objective()
        value.backward()
        return value

    def _record(self, value: float) -> None:
        r"""Counts the step and appends it to the history, with the validation objective every
        step of the refinement (offered to its early stopping) and every :attr:`VALIDATE_EVERY` of the main phase."""
        self.step += 1
        entry = {"step": self.step, "loss": value, "time": time.perf_counter() - self.start, "phase": self.phase}
        self.history.append(entry)
        if self.refining:
            entry["validation"] = self.best.offer(self.objective.validation(), self.flow)
        elif self.step % self.VALIDATE_EVERY == 0:
            # the training curve's companion; deterministic, so the trajectory is unchanged
            with torch.no_grad():
                entry["validation"] = self.objective.validation()

    # the main phase

    def _schedule(self) -> float:
        r"""The main phase's learning rate at this step as a fraction of ``lr``: cosine from 1 to 1e-2 over ``epochs`` steps, or 1."""
        if self.config.schedule != "cosine":
            return 1.0
        total = max(self.config.epochs, 1)
        return 1e-2 + (1 - 1e-2) * 0.5 * (1 + math.cos(math.pi * min(self.step, total) / total))

    # the refinement

    def _start_refinement(self) -> None:
        r"""Switches to the refinement's L-BFGS; the flow Adam left is the first candidate of the early stopping."""
        self.refining = True
        self.optimizer = self._optimizer()
        self.best.offer(self.objective.validation(), self.flow)

    # stopping

    def _diverged(self, value: float) -> bool:
        r"""Whether the step left a non-finite loss or flow, which ends training.

        In the refinement this is a failed line search: the best flow so far is restored and the
        refinement ends. Anywhere else it is an error; the last good checkpoint stays.
        """
        if math.isfinite(value) and all(torch.isfinite(p).all() for p in self.flow.parameters()):
            return False
        if not (self.refining and self.best.state is not None):
            raise RenormError(f"training diverged at step {self.step + 1}: the loss is {value}; {self._kept()} in {one_line(self.directory)}")
        self.best.restore(self.flow)
        self.best.halted = True  # stopped, also when resumed
        return True

    def _interrupt(self, signum: int) -> NoReturn:
        r"""Saves, so that an interrupted run can be resumed from where it stopped, and raises :class:`Interrupted`."""
        self._save()
        raise Interrupted(signum, self.step, self.directory)

    # checkpoints

    def _store_spec(self) -> None:
        r"""The spec copy in the run directory (:func:`_spec_copy`); one line where it cannot be written."""
        try:
            _spec_copy(self.problem, self.directory)
        except OSError as error:
            raise RenormError(f"cannot store the spec in {one_line(self.directory)}: {error.strerror or error}") from None

    def _kept(self) -> str:
        r"""What a failure leaves on disk, for its message."""
        return f"the last good checkpoint (step {self.saved}) is kept" if self.saved is not None else "this run wrote no checkpoint"

    def _save(self) -> None:
        r"""Writes the checkpoint, then history.json (a copy of its history); a signal meanwhile waits for both."""
        with saving():
            try:
                save_checkpoint({
                    "spec_sha256": self.problem.sha256, "flow": self.flow.describe(),
                    "state": self.flow.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                    "phase": self.phase, "config": self.config.to_json(), "history": self.history,
                    "sampler": self.objective.generator.get_state(), "best": self.best.to_state(),
                }, self.directory / CHECKPOINT)
            except RenormError as error:
                raise RenormError(f"{error}; {self._kept()} in {one_line(self.directory)}") from None
            self.saved, self.last_save = self.step, time.monotonic()
            try:
                write_atomic(self.directory / "history.json", json.dumps(self.history))
            except OSError as error:  # a copy of what the checkpoint holds: the checkpoint is whole
                raise RenormError(f"cannot write {one_line(self.directory / 'history.json')}: {error.strerror or error}; "
                                  f"the checkpoint (step {self.step}) is written") from None


class _Best:
    r"""The refinement's early stopping: the flow with the lowest validation objective so far.

    Refinement stops after ``patience`` steps without improvement (:attr:`PATIENCE`; ``None``:
    never), or when it is ``halted`` by a failed line search, and the best flow is restored at its
    end. With the perturbative window the patience is ``None`` (:func:`_patience`).
    """

    PATIENCE = 10

    def __init__(self, value: float = math.inf, state: dict | None = None, stale: int = 0, halted: bool = False,
                 patience: int | None = PATIENCE):
        self.value, self.state, self.stale, self.halted, self.patience = value, state, stale, halted, patience

    @property
    def stopped(self) -> bool:
        return self.halted or (self.patience is not None and self.stale >= self.patience)

    def offer(self, value: float, flow: ConditionalFlow) -> float:
        r"""Records the validation objective of the current flow; returns it."""
        if value < self.value:
            self.value, self.stale = value, 0
            self.state = {k: v.detach().clone() for k, v in flow.state_dict().items()}
        else:
            self.stale += 1
        return value

    def restore(self, flow: ConditionalFlow) -> None:
        if self.state is not None:
            flow.load_state_dict(self.state)

    def to_state(self) -> dict:
        # a refinement that stopped stays stopped when resumed, whatever the patience then
        return {"value": self.value, "state": self.state, "stale": self.stale, "halted": self.stopped}

    @classmethod
    def from_state(cls, state: dict | None, patience: int | None) -> "_Best":
        if not state:
            return cls(patience=patience)
        # a checkpoint from before "halted" was stopped where its stale count reached the patience of then, 10
        return cls(**{"halted": state["stale"] >= cls.PATIENCE, **state}, patience=patience)


def _patience(config: TrainConfig) -> int | None:
    r"""The refinement's early-stopping patience: :attr:`_Best.PATIENCE` steps, none with the window.

    The validation objective of a windowed run stalls for 10 steps and then improves again: stopped
    there (after 145-185 steps) its flow had TV 7.9e-4-1.08e-3 to q* at α = 0.3 on four CPU code
    paths of the angularity, run to its ``refine`` steps 4.1e-4-6.7e-4, with q¹ checked as well (README).
    """
    return None if config.alpha_floor > 0 else _Best.PATIENCE


def _read_checkpoint(path: Path, problem: Problem | None) -> tuple[dict, TrainConfig]:
    r"""A validated checkpoint and its settings (see :func:`~renorm.runtime._checkpoint.read_checkpoint`)."""
    if not path.is_file():
        raise RenormError(f"{one_line(path)}: no checkpoint (train first with `renorm train SPEC --out {one_line(path.parent)}`)")
    state = read_checkpoint(path)
    try:
        # settings stored before the perturbative window existed trained none, and before its
        # weight existed weighted it uniformly in log alpha
        config = TrainConfig.from_json({"alpha_floor": 0.0, "window_weight": 1.0, **state["config"]})
        config.validate(devices=False)
    except (TypeError, ValueError) as error:
        raise RenormError(f"{one_line(path)}: the checkpoint's settings are invalid ({one_line(error)[:200]})") from None
    if problem is not None and state["spec_sha256"] != problem.sha256:
        raise RenormError(f"{one_line(path)}: the checkpoint belongs to another spec (hash {state['spec_sha256'][:12]}, this spec {problem.sha256[:12]})")
    if problem is not None and isinstance(problem, MultiProblem) != ("plane_map" in state["flow"]):
        raise RenormError(f"{one_line(path)}: the checkpoint's flow has another number of variables than the spec")
    if problem is not None and not isinstance(problem, MultiProblem):
        frame = distance_frame(problem)
        if state["format"] < FORMAT and not frame.identity:
            raise RenormError(f"{one_line(path)}: checkpoint format {state['format']} trained this problem in x, which does not resolve its "
                              f"singular endpoint; format {FORMAT} trains in the distance to it: train again")
        if tuple(float(v) for v in state["flow"]["support"]) != frame.problem.support_floats:
            raise RenormError(f"{one_line(path)}: the checkpoint's flow lives on another support than the spec's")
    return state, config


def load_run(directory: str | Path, problem: Problem | None = None, device: str = "cpu") -> Run:
    r"""Loads a run directory written by :func:`train` (``weights_only=True``).

    Arguments:
        directory: The run directory.
        problem: The problem; by default the spec copy in the directory is loaded and must
            match the checkpoint's hash.
        device: Where to put the flow.
    """
    directory = Path(directory)
    problem = run_problem(directory, problem)
    state, config = _read_checkpoint(directory / CHECKPOINT, problem)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    if isinstance(problem, MultiProblem):
        from ._plane import PlaneFlow, problem_interval

        flow = PlaneFlow.rebuild(state["flow"], problem_interval(problem))
    else:
        flow = ConditionalFlow.rebuild(state["flow"])
    flow = flow.to(device=device, dtype=dtype)
    flow.load_state_dict(state["state"])
    flow.eval()
    return _run_of(problem, flow, config, int(state["step"]), list(state["history"]), directory)


def _run_of(problem: Problem | MultiProblem, flow: Any, config: TrainConfig, step: int, history: list[dict], directory: Path | None) -> Any:
    r"""The :class:`Run` of a problem in one variable, the :class:`~renorm.runtime._plane_train.PlaneRun` of one in two."""
    if isinstance(problem, MultiProblem):
        from ._plane_train import PlaneRun

        return PlaneRun(problem, flow, config, step, history, directory)
    return Run(problem, flow, config, step, history, directory)
