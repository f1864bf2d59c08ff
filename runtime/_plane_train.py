r"""Training the flow in two variables: distillation of q* on a latent grid, the run, and its certificate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from renorm.symbolic import MultiMinimizer, MultiProblem, RenormError

from ._config import TrainConfig
from ._plane import PlaneFlow, PlaneMap, problem_interval
from ._train import Run, _gauss_legendre

__all__ = ["PlaneRun", "PlaneCertificate", "PlaneLogDensity", "plane_certificate", "density_certificate"]

#: Gauss–Legendre nodes per panel of the latent grid.
_ORDER = 8
#: The latent grid ends where q* leaves less than this beyond it (at the extreme couplings), and
#: the standardization maps the quantiles :data:`_QUANTILE` and 1 - :data:`_QUANTILE` to ±4.5.
#: Not 1e-6 as in one variable: at a regular end the latent tails fall only like e^{-|y|}, and the
#: 1e-6 quantiles of the emission lie three times as far out as its bulk, which then got a third of
#: the Bernstein polynomials' range (measured on the emission: TV 4.7e-3 at α = 0.05 with 1e-6,
#: 2.9e-3 with 1e-4; beyond ±5 the flow's Gaussian tail holds the last 1e-4 on each side).
_TAIL = 1e-9
_QUANTILE = 1e-4
_WINDOW = 4.5


def _even_rule(lo: float, hi: float, panels: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Composite Gauss–Legendre nodes of ``order`` on ``panels`` equal panels of ``[lo, hi]``."""
    return _gauss_legendre(np.linspace(lo, hi, panels + 1), order)


def _panel_rule(edges: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    r"""Composite Gauss–Legendre nodes of order :data:`_ORDER` on the panels between ``edges``, each
    inner edge moved by ``shift`` of its panel (a validation grid between the training grid's nodes)."""
    moved = edges[:-1] + shift * np.diff(edges)
    return _gauss_legendre(np.unique(np.concatenate([edges[:1], moved, edges[-1:]])), _ORDER)


#: The share of the training grid's panels spread evenly over its range; the rest follow q*'s mass.
_EVEN = 0.25


def _panel_edges(lo: float, hi: float, marginals: list[tuple[np.ndarray, np.ndarray]], panels: int) -> np.ndarray:
    r"""Edges of ``panels`` panels on ``[lo, hi]`` at equal steps of :math:`(1 - \beta) F + \beta u`:
    :math:`F` the mean of the ``marginals``' distribution functions (q* at the couplings, in this
    latent coordinate), :math:`u` the uniform one, :math:`\beta` = :data:`_EVEN`. Nodes gather where
    q* has its mass, and the tails, which reach 1e-9 of it (on a range three times the bulk's), keep
    panels of their own."""
    grid = np.linspace(lo, hi, 4097)
    cdf = np.mean([np.interp(grid, nodes, np.cumsum(mass) / mass.sum()) for nodes, mass in marginals], 0)
    mixed = (1 - _EVEN) * cdf + _EVEN * (grid - lo) / (hi - lo)
    mixed = (mixed - mixed[0]) / (mixed[-1] - mixed[0])
    return np.interp(np.linspace(0.0, 1.0, panels + 1), mixed, grid)


def _couplings(lo: float, hi: float, n: int) -> np.ndarray:
    r""":math:`n` Gauss–Legendre couplings in :math:`\log\alpha` over ``[lo, hi]``."""
    t, _ = np.polynomial.legendre.leggauss(n)
    a, b = math.log(lo), math.log(hi)
    return np.exp(0.5 * (a + b) + 0.5 * (b - a) * t)


_SOLVED: dict[tuple[str, tuple[float, ...]], tuple[Any, ...]] = {}


def _solutions(problem: MultiProblem, alphas: tuple[float, ...]) -> tuple[Any, ...]:
    r"""q* at each coupling, warm-started (memoized by the problem's hash: training and its certificate ask for the same ones)."""
    key = (problem.sha256, tuple(alphas))
    if key in _SOLVED:
        return _SOLVED[key]
    minimizer, out, guess = MultiMinimizer(problem), [], None
    for alpha in alphas:
        solution = minimizer.solve(alpha, guess, loss=False)
        guess = solution.lagrange_multiplier or None
        out.append(solution)
    if len(_SOLVED) > 16:
        _SOLVED.clear()
    _SOLVED[key] = tuple(out)
    return _SOLVED[key]


def _latent_log_q_star(problem: MultiProblem, solution: Any, x1: np.ndarray, x2: np.ndarray, log_jacobian: np.ndarray) -> np.ndarray:
    r"""The log density of q* in the latent plane at mapped points, :math:`\log q^* + \log|\partial x/\partial y|`:
    :math:`-\infty` outside the region and wherever either term is not finite (no probability there)."""
    with np.errstate(all="ignore"):  # where the bounds round together there is no point
        value = solution.minimizer.log_q(x1, x2, solution.alpha, solution.lagrange_multiplier) + log_jacobian
    return np.where(problem.contains(x1, x2) & np.isfinite(value), value, -np.inf)


#: The fine latent rule of :func:`_latent_marginals`: Gauss–Legendre of this order on panels at most this wide, at most this many per coordinate.
_FINE = (8, 0.5, 128)
_MARGINALS: dict[tuple[str, str, tuple[float, ...]], list[list[tuple[np.ndarray, np.ndarray]]]] = {}


def _latent_marginals(problem: MultiProblem, plane_map: PlaneMap, alphas: tuple[float, ...]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    r"""Per coupling and latent coordinate, q*'s marginal there: nodes and their probabilities.

    They come from a fine tensor rule in the latent plane, widened on each side until its last
    two units hold less than 1e-13 of q* (q*'s own nested-quadrature nodes cannot give tails: a
    node's weight stands for a whole interval, so the first node of the emission in θ, at y₁ = −3.9,
    carried 2.6e-4 of it; the tail of the logit and double-log maps at a regular end falls only
    like :math:`e^{-|y|}`, and the 1e-9 quantile lay at y₁ ≈ −21, where the training grid ended at −5
    and left out 0.2–0.3% of q*)."""
    key = (problem.sha256, repr(plane_map.describe()), tuple(alphas))
    if key in _MARGINALS:
        return _MARGINALS[key]
    solutions = _solutions(problem, tuple(alphas))
    window = []
    for k in range(2):  # start from the span of the nested nodes
        ends = []
        for solution in solutions:
            x1, x2, _ = solution.nodes
            with np.errstate(all="ignore"):
                y = plane_map.to_latent(x1, x2)[k]
            ends += [np.nanmin(np.where(np.isfinite(y), y, np.nan)), np.nanmax(np.where(np.isfinite(y), y, np.nan))]
        window.append([min(ends) - 1.0, max(ends) + 1.0])
    order, width, most = _FINE
    for _ in range(16):
        (y1, w1), (y2, w2) = (_even_rule(lo, hi, min(int(math.ceil((hi - lo) / width)), most), order) for lo, hi in window)
        g1, g2 = (a.ravel() for a in np.meshgrid(y1, y2, indexing="ij"))
        with np.errstate(all="ignore"):  # where the bounds round together there is no point
            x1, x2, log_jacobian = plane_map.from_latent(g1, g2)
        out = []
        for solution in solutions:
            density = np.exp(np.minimum(_latent_log_q_star(problem, solution, x1, x2, log_jacobian), 700.0)).reshape(y1.size, y2.size)
            mass = density * np.outer(w1, w2)
            mass /= mass.sum()
            out.append([(y1, mass.sum(1)), (y2, mass.sum(0))])
        widened = False
        for k, (lo, hi) in enumerate(window):
            nodes = out[0][k][0]
            low = max(m[k][1][nodes < lo + 2.0].sum() for m in out)
            high = max(m[k][1][nodes > hi - 2.0].sum() for m in out)
            step = max(4.0, 0.5 * (hi - lo))
            if low > 1e-13:
                window[k][0], widened = lo - step, True
            if high > 1e-13:
                window[k][1], widened = hi + step, True
        if not widened:
            break
    if len(_MARGINALS) > 16:
        _MARGINALS.clear()
    _MARGINALS[key] = out
    return out


def _quantile(values: np.ndarray, mass: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(mass[order])
    return float(values[order][min(np.searchsorted(cumulative, q * cumulative[-1]), values.size - 1)])


def _latent_spans(problem: MultiProblem, plane_map: PlaneMap, tail: float, alphas: tuple[float, ...] | None = None) -> list[tuple[float, float]]:
    r"""Per latent coordinate, the interval outside which q* leaves less than ``tail`` on each side, at
    each coupling of ``alphas`` (default: both ends of the coupling range)."""
    marginals = _latent_marginals(problem, plane_map, problem.coupling_range if alphas is None else tuple(alphas))
    return [(min(_quantile(*m[k], tail) for m in marginals), max(_quantile(*m[k], 1 - tail) for m in marginals)) for k in range(2)]


def build_plane_flow(problem: MultiProblem, config: TrainConfig) -> PlaneFlow:
    r"""A fresh flow for ``problem``: the default :class:`PlaneMap`, standardized so that the quantiles
    :data:`_QUANTILE` and 1 - :data:`_QUANTILE` of q* in each latent coordinate (at both ends of the coupling range) fall at ±4.5."""
    plane_map = PlaneMap.for_problem(problem, problem_interval(problem))
    shift, scale = _standardization(problem, plane_map)
    return PlaneFlow(plane_map, shift, scale, problem.coupling_range, config.degree, config.transforms, config.hidden)


def _standardization(problem: MultiProblem, plane_map: PlaneMap) -> tuple[tuple[float, ...], tuple[float, ...]]:
    r"""The shift and scale per latent coordinate that put q*'s quantiles :data:`_QUANTILE` (at both ends of the coupling range) at ±4.5."""
    spans = _latent_spans(problem, plane_map, _QUANTILE)
    return tuple(0.5 * (lo + hi) for lo, hi in spans), tuple(max(0.5 * (hi - lo) / _WINDOW, 1e-3) for lo, hi in spans)


class PlaneObjective:
    r"""Distillation of :math:`q^*` into the flow on a latent tensor-product grid at Gauss–Legendre couplings.

    At each coupling :math:`\alpha_j` the objective is the Kullback–Leibler divergence of the flow from
    :math:`q^*` on the grid, with a guard against lumps:

    .. math:: \sum_k m_k \log\frac{q^*_k}{q_k} + M \max\Big(0, \log\frac{\sum_k W_k q_k}{M}\Big), \qquad m_k = W_k q^*_k,\ M = \sum_k m_k,

    :math:`\mathrm{KL}(q^* \| q)` where the grid resolves both. The second term is there for a
    flow whose grid sum exceeds what it can hold, :math:`\sum_k W_k q_k > M`: lumps on the nodes,
    which would lower the first sum alone (measured: it fell to -0.3 in 30 L-BFGS steps while the
    flow moved away from :math:`q^*`); where the flow holds less on the grid than q*, the first sum
    already pays for it (measured: with the second term always on, the divergence is blind to
    probability the flow moves off the grid, and the flow lost 1% of it).

    Arguments:
        problem: The two-dimensional problem.
        flow: The flow being trained.
        config: ``plane_points`` latent nodes per coordinate, ``plane_couplings`` couplings.
    """

    def __init__(self, problem: MultiProblem, flow: PlaneFlow, config: TrainConfig, dtype: torch.dtype, device: torch.device):
        self.problem, self.flow = problem, flow
        #: The sampler state a checkpoint stores (the grid is deterministic: it is never drawn from).
        self.generator = torch.Generator().manual_seed(config.seed)
        self.alphas = tuple(float(a) for a in _couplings(*flow.coupling_range, config.plane_couplings))
        self.ranges = self.latent_ranges(problem, flow.plane_map)
        panels = max(config.plane_points // _ORDER, 2)
        marginals = _latent_marginals(problem, flow.plane_map, problem.coupling_range)
        self.edges = [_panel_edges(lo, hi, [m[k] for m in marginals], panels) for k, (lo, hi) in enumerate(self.ranges)]
        self.training = self._grid(0.0, dtype, device)
        self.checking = self._grid(0.5, dtype, device)

    @staticmethod
    def latent_ranges(problem: MultiProblem, plane_map: PlaneMap) -> list[tuple[float, float]]:
        r"""Per latent coordinate, the range outside which q* leaves less than 1e-9 at both ends of the coupling range (padded by 5%)."""
        return [(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)) for lo, hi in _latent_spans(problem, plane_map, _TAIL)]

    def _grid(self, shift: float, dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        (y1, w1), (y2, w2) = (_panel_rule(edges, shift) for edges in self.edges)
        g1, g2 = (a.ravel() for a in np.meshgrid(y1, y2, indexing="ij"))
        weights = np.outer(w1, w2).ravel()
        x1, x2, log_jacobian = self.flow.plane_map.from_latent(g1, g2)
        target = np.stack([_latent_log_q_star(self.problem, solution, x1, x2, log_jacobian) for solution in _solutions(self.problem, self.alphas)], 1)
        mass = np.where(np.isfinite(target), weights[:, None] * np.exp(np.minimum(target, 700)), 0.0)
        tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)
        return {"y": tensor(np.stack([g1, g2], -1)), "log_weight": tensor(np.log(weights)), "target": tensor(np.where(np.isfinite(target), target, 0.0)),
                "mass": tensor(mass), "alpha": tensor(np.array(self.alphas))}

    def _divergence(self, grid: dict[str, Tensor]) -> Tensor:
        log_q = self.flow.log_prob_latent(grid["y"], grid["alpha"])
        mass = grid["mass"]
        total = mass.sum(0)
        kl = (mass * (grid["target"] - log_q)).sum(0)
        excess = torch.clamp(torch.logsumexp(log_q + grid["log_weight"][:, None], 0) - torch.log(total), min=0.0)
        return (kl + total * excess).mean()

    def __call__(self) -> Tensor:
        return self._divergence(self.training)

    @torch.no_grad()
    def validation(self) -> float:
        r"""The same on a grid shifted by half a panel: it ranks the refinement's steps."""
        return float(self._divergence(self.checking))


class PlaneRun(Run):
    r"""A trained run in two variables: a :class:`~renorm.runtime.Run` whose points are pairs
    (its one-variable :attr:`~renorm.runtime.Run.frame` and ``log_density_distance`` do not apply)."""

    _WIDEN = "widen train.alpha_range and train again"

    def log_density(self, x: np.ndarray, alpha: float) -> np.ndarray:
        r""":math:`\log q(x_1, x_2|\alpha)` at points of shape ``(n, 2)``, float64 NumPy."""
        self.require_coupling(alpha)
        x = np.asarray(x, dtype=np.float64).reshape(-1, 2)
        with torch.no_grad():
            value = self.evaluator.log_prob(torch.as_tensor(x[:, 0]), torch.as_tensor(x[:, 1]), torch.tensor([float(alpha)], dtype=torch.float64))
        return value[:, 0].numpy()

    def sample(self, alpha: float, n: int, seed: int = 0) -> np.ndarray:
        r"""``n`` samples of :math:`(x_1, x_2)`, shape ``(n, 2)``."""
        self.require_coupling(alpha)
        generator = torch.Generator(device=self.flow.shift.device).manual_seed(seed)
        x1, x2 = self.flow.sample(alpha, n, generator)
        return np.stack([x1.double().cpu().numpy(), x2.double().cpu().numpy()], -1)


@dataclass(frozen=True)
class PlaneCertificate:
    r"""The flow against :math:`q^*` at one coupling, on the nested quadrature of :math:`q^*`.

    Attributes:
        total_variation: :math:`\frac12 \iint |q - q^*|`.
        median_relative_error: The median of :math:`|q/q^* - 1|` under :math:`q^*` (half the
            probability lies where the flow is closer than this).
        normalization: :math:`\iint q` on the same grid.
        resolution: :math:`\iint q^* - 1` on that grid: how far the grid's sums can be trusted.
    """

    alpha: float
    lagrange_multiplier: float
    total_variation: float
    median_relative_error: float
    normalization: float
    resolution: float

    def to_json(self) -> dict:
        return {"alpha": self.alpha, "lagrange_multiplier": self.lagrange_multiplier, "total_variation": self.total_variation,
                "median_relative_error": self.median_relative_error, "normalization": self.normalization, "resolution": self.resolution}


def latent_window(problem: MultiProblem, plane_map: PlaneMap, flow: PlaneFlow | None = None) -> list[tuple[float, float]]:
    r"""Per latent coordinate, the range of the sums over q* and a flow: the training grid's, widened to
    ±10 standard deviations of the ``flow``'s standardization (or of the one a new flow would get).
    The training grid's alone is too narrow for them: at a regular face the logit map's density
    falls only like :math:`e^{-|y|}`, and it ends where q* leaves 1e-9 overall, not at every :math:`x_1`
    (measured: the marginal of the angularity pair's q* then missed 1.8e-3 of itself at λ₁ = 1e-4)."""
    shift, scale = (flow.shift.tolist(), flow.scale.tolist()) if flow is not None else _standardization(problem, plane_map)
    return [(min(c - 10 * w, lo), max(c + 10 * w, hi)) for c, w, (lo, hi) in zip(shift, scale, PlaneObjective.latent_ranges(problem, plane_map))]


def latent_rule(lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Gauss–Legendre of order 8 on panels 1/4 wide (at most 64 of them) over ``[lo, hi]``."""
    return _even_rule(lo, hi, min(int(math.ceil(4 * (hi - lo))), 64), 8)


def _certificate_grid(problem: MultiProblem, plane_map: PlaneMap, flow: PlaneFlow | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""A fine tensor grid in the latent plane over :func:`latent_window` (:func:`latent_rule` per
    coordinate): nodes and weights. Its sum of q* (``resolution``) says how well it resolves them."""
    (y1, w1), (y2, w2) = (latent_rule(lo, hi) for lo, hi in latent_window(problem, plane_map, flow))
    g1, g2 = (a.ravel() for a in np.meshgrid(y1, y2, indexing="ij"))
    return g1, g2, np.outer(w1, w2).ravel()


#: ``log_density(x, alpha)``: :math:`\log q(x_1, x_2|\alpha)` at points of shape ``(n, 2)``, float64 NumPy.
PlaneLogDensity = Callable[[np.ndarray, float], np.ndarray]


def plane_certificate(run: PlaneRun, alphas: tuple[float, ...] = (0.05, 0.118, 0.3)) -> list[PlaneCertificate]:
    r"""The certificate of a trained run at each coupling of ``alphas`` inside its trained range
    (:func:`density_certificate` on a grid that also spans the flow's standardization)."""
    lo, hi = run.couplings
    inside = tuple(a for a in alphas if lo <= a <= hi)
    plane_map = run.evaluator.plane_map
    return density_certificate(run.problem, run.log_density, inside, _certificate_grid(run.problem, plane_map, run.evaluator), plane_map)


def density_certificate(problem: MultiProblem, log_density: PlaneLogDensity, alphas: tuple[float, ...],
                        grid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None, plane_map: PlaneMap | None = None) -> list[PlaneCertificate]:
    r"""A density in two variables against :math:`q^*` at each coupling of ``alphas``.

    :math:`\frac12\iint |q - q^*|` and :math:`\iint q` are sums over a fine tensor grid in the
    latent plane of ``plane_map`` (default: the problem's; grid: :func:`_certificate_grid`), where
    both densities are smooth; ``resolution`` is how far the same sum of :math:`q^*` misses 1. The
    median of :math:`|q/q^* - 1|` is taken under :math:`q^*` on the nodes of its nested quadrature.
    """
    plane_map = plane_map or PlaneMap.for_problem(problem, problem_interval(problem))
    y1, y2, weights = grid if grid is not None else _certificate_grid(problem, plane_map)
    with np.errstate(all="ignore"):  # where the bounds round together (x1 -> 0 under l1**2 <= l2) there is no point
        x1, x2, log_jacobian = plane_map.from_latent(y1, y2)
    inside_region = problem.contains(x1, x2) & np.isfinite(log_jacobian)
    points = np.stack([x1, x2], -1)
    rows = []
    for solution in _solutions(problem, tuple(alphas)):
        log_flow = np.concatenate([_log_values(log_density, part, solution.alpha) for part in np.array_split(points, 64)])
        flow = np.where(inside_region, np.exp(np.minimum(log_flow + log_jacobian, 700.0)), 0.0)
        exact = np.exp(np.minimum(_latent_log_q_star(problem, solution, x1, x2, log_jacobian), 700.0))
        n1, n2, w = solution.nodes
        q_star = solution.q(n1, n2)
        with np.errstate(all="ignore"):  # a node where q* underflows to 0 carries no weight below
            relative = np.abs(np.exp(np.minimum(_log_values(log_density, np.stack([n1, n2], -1), solution.alpha), 700.0)) / q_star - 1)
        order = np.argsort(relative)
        cumulative = np.cumsum((w * q_star)[order])
        median = float(relative[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
        rows.append(PlaneCertificate(solution.alpha, solution.lagrange_multiplier, float(0.5 * (weights * np.abs(flow - exact)).sum()), median,
                                     float((weights * flow).sum()), float((weights * exact).sum() - 1)))
    return rows


def _log_values(log_density: PlaneLogDensity, x: np.ndarray, alpha: float) -> np.ndarray:
    r""":math:`\log q` at the pairs ``x`` as float64, one value per pair (NaN counts as :math:`-\infty`: no probability)."""
    with np.errstate(all="ignore"):
        values = np.asarray(log_density(x, float(alpha)), dtype=float).ravel()
    if values.size != x.shape[0]:
        raise RenormError(f"log_density returned {values.size} values for {x.shape[0]} points at α = {alpha:g}; it must return one log q per pair")
    return np.where(np.isnan(values), -np.inf, values)
