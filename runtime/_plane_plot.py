r"""Plots of a density in two variables: heat maps of p, the flow, q* and their ratio, and marginals."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.colors import LogNorm, TwoSlopeNorm

from renorm.symbolic import ExactMinimizer, MultiProblem, NotNormalizableError, marginal_problem

from ._plane import PlaneFlow, PlaneMap, problem_interval
from ._plane_train import PlaneLogDensity, _log_values, _quantile, _solutions
from ._plane_verify import marginal_rule
from ._plot import _COLORS, _figure, _save, _training
from ._verify import _certificate_alphas

__all__ = ["plot_plane_report"]

#: The plotted box leaves out less than this of q* on each side, per variable (wider than the verification's bulk).
_TAIL = 1e-4
#: Points per axis of the heat maps.
_SIDE = 161


def _logarithmic(problem: MultiProblem, k: int) -> bool:
    r"""Whether axis ``k`` is drawn logarithmically: a singular lower face at 0 (where the physics is)."""
    return problem.singular[k] == "lower" and problem.support_floats[k][0] == 0.0


def _axes_range(problem: MultiProblem, alphas: Sequence[float]) -> list[tuple[float, float]]:
    r"""Per variable, the span of q*'s 1e-4 … 1 - 1e-4 quantiles at ``alphas`` (in :math:`x_k`, from its nested-quadrature nodes)."""
    clouds = [(s.nodes[0], s.nodes[1], s.nodes[2] * s.q(*s.nodes[:2])) for s in _solutions(problem, tuple(alphas))]
    return [(min(_quantile(c[k], c[2], _TAIL) for c in clouds), max(_quantile(c[k], c[2], 1 - _TAIL) for c in clouds)) for k in range(2)]


def _axis_points(problem: MultiProblem, k: int, span: tuple[float, float], count: int) -> np.ndarray:
    lo, hi = span
    return np.geomspace(lo, hi, count) if _logarithmic(problem, k) and lo > 0 else np.linspace(lo, hi, count)


def _heat_maps(problem: MultiProblem, log_density: PlaneLogDensity, alphas: Sequence[float], path: Path) -> Path:
    r"""Rows p, q, q*, q/q*; one column per coupling; masked outside the region."""
    spans = _axes_range(problem, alphas)
    a1, a2 = (_axis_points(problem, k, spans[k], _SIDE) for k in range(2))
    g1, g2 = np.meshgrid(a1, a2, indexing="ij")
    x1, x2 = g1.ravel(), g2.ravel()
    inside = problem.contains(x1, x2)
    solutions = _solutions(problem, tuple(alphas))
    names = [v.name for v in problem.variables]
    figure = _figure(4.2 * len(alphas), 3.4 * 4)
    axes = figure.subplots(4, len(alphas), squeeze=False)
    for j, solution in enumerate(solutions):
        with np.errstate(all="ignore"):
            p = np.where(inside, solution.minimizer.p(x1, x2, solution.alpha), np.nan)
            q_star = np.where(inside, solution.q(x1, x2), np.nan)
            flow = np.where(inside, np.exp(_log_values(log_density, np.stack([x1, x2], -1), solution.alpha)), np.nan)
        positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in (q_star, flow)])
        norm = LogNorm(vmin=float(np.quantile(positive, 0.005)), vmax=float(positive.max())) if positive.size else None
        ratio = flow / q_star
        spread = float(np.nanmax(np.abs(ratio - 1))) if np.isfinite(ratio).any() else 0.1
        spread = min(max(spread, 1e-3), 1.0)
        panels = [("p", np.where(p > 0, p, np.nan), norm, "viridis"), ("q (flow)", flow, norm, "viridis"), ("q*", q_star, norm, "viridis"),
                  ("q / q*", ratio, TwoSlopeNorm(1.0, 1 - spread, 1 + spread), "RdBu_r")]
        for i, (label, values, scale, cmap) in enumerate(panels):
            ax = axes[i][j]
            mesh = ax.pcolormesh(a1, a2, values.reshape(g1.shape).T, norm=scale, cmap=cmap, shading="nearest", rasterized=True)
            figure.colorbar(mesh, ax=ax, shrink=0.85)
            ax.set_xscale("log" if _logarithmic(problem, 0) else "linear")
            ax.set_yscale("log" if _logarithmic(problem, 1) else "linear")
            ax.set_title(f"{label}, $\\alpha$ = {solution.alpha:g}", fontsize="small")
            ax.set_xlabel(names[0])
            ax.set_ylabel(names[1])
    figure.suptitle(f"{problem.name}: densities in ({', '.join(names)}); p < 0 and the outside of the region blank")
    return _save(figure, path)


def _marginals(problem: MultiProblem, log_density: PlaneLogDensity, plane_map: PlaneMap, flow: PlaneFlow | None, alphas: Sequence[float],
               path: Path) -> Path:
    r"""The marginal in :math:`x_1` of the flow and of q*, the 1D q* of the marginal target, and :math:`\int p\, dx_2`,
    with q/q* below; and under them the marginal in :math:`x_2` of the flow, of q* and :math:`\int p\, dx_1`."""
    spans = _axes_range(problem, alphas)
    x1, x2 = (_axis_points(problem, k, spans[k], 81) for k in range(2))
    rule = marginal_rule(problem, plane_map, x1, flow)
    reduced, why = marginal_problem(problem)
    one_d = ExactMinimizer(reduced) if reduced is not None else None
    second_why = problem.second_marginal_refusal(x2)
    names = [v.name for v in problem.variables]
    figure = _figure(4.2 * len(alphas), 11.0)
    axes = figure.subplots(4, len(alphas), squeeze=False, height_ratios=[3, 1, 3, 1])
    for j, solution in enumerate(_solutions(problem, tuple(alphas))):
        minimizer, alpha = solution.minimizer, solution.alpha
        flow, exact = rule(log_density, alpha), solution.marginal(0, x1)
        curves = [(axes[0][j], axes[1][j], 0, x1, flow, exact, None)]
        if not second_why:
            def density(a: np.ndarray, b: np.ndarray) -> np.ndarray:
                return np.exp(_log_values(log_density, np.stack([a.ravel(), b.ravel()], -1), alpha)).reshape(a.shape)

            with np.errstate(all="ignore"):
                target = minimizer.marginal(lambda a, b: minimizer.p(a, b, alpha), 1, x2)
            curves.append((axes[2][j], axes[3][j], 1, x2, minimizer.marginal(density, 1, x2, rtol=1e-8), solution.marginal(1, x2),
                           target if np.isfinite(target).all() else None))
        for ax, below, k, x, values, star, target in curves:
            ax.plot(x, values, color=_COLORS["flow"], lw=1.4, label="flow")
            ax.plot(x, star, color=_COLORS["exact"], lw=1.0, ls="--", label="q* (2D), integrated")
            if k == 0 and one_d is not None:
                ax.plot(x, one_d.p(x, alpha), color=_COLORS["p"], lw=0.8, label=f"int p d{names[1]}")
                try:
                    ax.plot(x, one_d.solve(alpha).q(x), color="tab:green", lw=0.8, ls=":", label="1D q* of the marginal target")
                except NotNormalizableError:
                    pass
            if k == 1 and target is not None:
                ax.plot(x, target, color=_COLORS["p"], lw=0.8, label=f"int p d{names[0]}")
            below.plot(x, values / star, color=_COLORS["flow"], lw=1.0)
            below.axhline(1.0, color="gray", lw=0.6)
            for a in (ax, below):
                a.set_xscale("log" if _logarithmic(problem, k) else "linear")
                a.grid(True, which="major", alpha=0.3)
            ax.set_yscale("log")
            ax.set_title(f"$\\alpha$ = {alpha:g}", fontsize="small")
            ax.legend(loc="best", fontsize="x-small")
            below.set_xlabel(names[k])
            below.set_ylabel("flow / q*")
    axes[0][0].set_ylabel(f"marginal density in {names[0]}")
    axes[2][0].set_ylabel(f"marginal density in {names[1]}")
    if second_why:
        for ax in axes[2]:
            ax.set_title(f"not available: {second_why}", fontsize="x-small", color="tab:red", wrap=True)
    note = "" if reduced is not None else f" (no 1D target: {why})"
    figure.suptitle(f"{problem.name}: marginals in {names[0]}{note} and in {names[1]}")
    return _save(figure, path)


def plot_plane_report(problem: MultiProblem, log_density: PlaneLogDensity, out_dir: str | Path,
                      history: Sequence[Mapping[str, Any]] | None = None, alphas: Sequence[float] | None = None,
                      flow: PlaneFlow | None = None) -> list[Path]:
    r"""Writes the plots of a density in two variables as PNG files.

    - ``densities.png``: heat maps of :math:`p`, the flow's :math:`q`, :math:`q^*` (one colour
      scale per coupling, logarithmic) and :math:`q/q^*` (diverging around 1) at three couplings,
      each axis logarithmic where its variable has a singular lower face at 0, over the box of
      :math:`q^*`'s 1e-4 … 1 − 1e-4 quantiles; outside the region (and where :math:`p \le 0`) blank.
    - ``marginals.png``: the marginal in :math:`x_1` of the flow (Gauss–Legendre in the inner
      latent coordinate) and of :math:`q^*` (adaptive quadrature), with the target's marginal
      :math:`\int p\,dx_2` and the 1D :math:`q^*` of that marginal target where it has a closed
      form (the two :math:`q^*` differ: see the README), and their ratio; below, the marginal in
      :math:`x_2` of the flow, of :math:`q^*` and :math:`\int p\,dx_1` where it is finite (adaptive
      quadrature over the region's :math:`x_1` intervals), and its ratio.
    - ``training.png``, when ``history`` is given (as in one variable).

    Arguments:
        problem: The problem in two variables.
        log_density: :math:`\log q(x_1, x_2|\alpha)` at pairs of shape ``(n, 2)``.
        out_dir: Directory for the PNGs (created if missing).
        history: Training records.
        alphas: Couplings; default :math:`\alpha_{min}`, the middle coupling, :math:`\alpha_{max}`.
        flow: A trained run's flow: its latent plane and standardization set the marginal's rule (see :func:`~renorm.runtime._plane_verify.verify_plane`).

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plane_map = flow.plane_map if flow is not None else PlaneMap.for_problem(problem, problem_interval(problem))
    alphas = [float(a) for a in (_certificate_alphas(problem) if alphas is None else alphas)]
    paths = [_heat_maps(problem, log_density, alphas, out / "densities.png"),
             _marginals(problem, log_density, plane_map, flow, alphas, out / "marginals.png")]
    if history:
        paths.append(_training(problem, history, out / "training.png"))
    return paths

