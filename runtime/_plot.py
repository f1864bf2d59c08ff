r"""Plots of a verification: densities against the target and the exact minimizer, coefficients, training."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import sympy as sp
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from renorm.symbolic import Problem

from ._verify import (
    THRESHOLD_PER_TOLERANCE, LogDensity, _certificate_alphas, _Coefficients, _Exact, _grid, _nodes, _order_deviation, _q,
    _quantiles, _range, _union_bulk, extract_coefficients,
)

__all__ = ["plot_report"]

_COLORS = {"p": "black", "flow": "tab:blue", "exact": "tab:orange"}
#: Quantiles of the densities that bound the plotted x range: wider than the verification's bulk.
_PLOT_QUANTILES = (1e-4, 0.999)


def _figure(width: float, height: float) -> Figure:
    r"""A figure on the Agg canvas: no display, no pyplot state."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    r"""Writes the PNG atomically: a temporary file in the same directory, then :func:`os.replace`."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png.tmp")
    os.close(fd)
    try:
        figure.savefig(temporary, format="png", dpi=120)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would make the plot private
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return path


def _plot_range(exact: _Exact, log_density: LogDensity, alphas: Sequence[float], has_exact: bool) -> tuple[float, float]:
    lows, highs = [], []
    for alpha in alphas:
        solution = exact.at(alpha)
        density = solution.q if solution is not None else (lambda x, a=alpha: _q(log_density, x, a))
        lo, hi = _quantiles(exact.minimizer, density, _PLOT_QUANTILES)
        lows.append(lo)
        highs.append(hi)
    return float(min(lows)), float(max(highs))


def _axis(problem: Problem, x: np.ndarray) -> tuple[np.ndarray, str, bool]:
    r"""What the x axis shows: the distance to the singular endpoint on a log scale (so that the
    endpoint where the physics happens is spread out, at either end), or x itself, linearly."""
    a, b = problem.support_floats
    name = problem.x.name
    if problem.singular == "upper":
        return b - x, f"${sp.latex(problem.support[1])} - {name}$", True
    if problem.singular == "lower":
        return (x - a, f"${name} - {sp.latex(problem.support[0])}$", True) if a != 0 else (x, f"${name}$", True)
    return x, f"${name}$", False


def _densities(problem: Problem, exact: _Exact, log_density: LogDensity, alphas: Sequence[float], has_exact: bool, path: Path) -> Path:
    r"""p, q* and the flow at each coupling, with a ratio panel under each: q_flow/q* and p/q*
    (or q_flow/p where there is no q*), the view in which a physicist reads a per-cent agreement."""
    lo, hi = _plot_range(exact, log_density, alphas, has_exact)
    x = _grid(exact.minimizer, lo, hi, 600)
    shown, label, logarithmic = _axis(problem, x)
    figure = _figure(4.6 * len(alphas), 5.8)
    grid = figure.subplots(2, len(alphas), sharex="col", sharey="row", squeeze=False, gridspec_kw={"height_ratios": (3, 1.3)})
    axes, ratios = grid[0], grid[1]
    top = 0.0
    for ax, below, alpha in zip(axes, ratios, alphas):
        with np.errstate(all="ignore"):
            p = exact.minimizer.p(x, alpha)
        positive = np.where(p > 0, p, np.nan)
        ax.plot(shown, positive, color=_COLORS["p"], lw=1.2, label=r"$p$ (fixed order)")
        if np.any(p < 0):
            ax.plot(shown, np.where(p < 0, -p, np.nan), color=_COLORS["p"], lw=1.2, ls="--", label=r"$|p|$ where $p < 0$")
        flow = _q(log_density, x, alpha)
        solution = exact.at(alpha)
        with np.errstate(all="ignore"):
            if solution is not None:
                star = solution.q(x)
                top = max(top, float(star[np.isfinite(star)].max(initial=0.0)))
                ax.plot(shown, star, color=_COLORS["exact"], lw=2.4, alpha=0.6, label=r"$q^*$ (exact minimizer)")
                below.plot(shown, flow / star, color=_COLORS["flow"], lw=1.2, ls="-.", label=r"$q/q^*$")
                below.plot(shown, p / star, color=_COLORS["p"], lw=1.0, label=r"$p/q^*$")
                below.set_ylabel(r"ratio to $q^*$" if alpha == alphas[0] else "")
            else:
                ax.text(0.5, 0.04, "no exact minimizer here", transform=ax.transAxes, ha="center", fontsize="small")
                below.plot(shown, flow / p, color=_COLORS["flow"], lw=1.2, ls="-.", label=r"$q/p$")
                below.set_ylabel(r"ratio to $p$" if alpha == alphas[0] else "")
        top = max(top, float(flow[np.isfinite(flow)].max(initial=0.0)))
        ax.plot(shown, np.where(flow > 0, flow, np.nan), color=_COLORS["flow"], lw=1.2, ls="-.", label=r"$q$ (flow)")
        if logarithmic:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(rf"$\alpha = {alpha:.4g}$")
        below.axhline(1.0, color="gray", lw=0.8)
        below.set_ylim(0.9, 1.1)  # ±10%: what the tolerance bands of verification live in
        below.set_xlabel(label)
        below.legend(loc="best", fontsize="x-small")
        for panel in (ax, below):
            panel.grid(True, which="major", alpha=0.3)
    if top > 0:
        # p ~ 1/x near a singular endpoint would set the scale: let the normalized densities set it
        axes[0].set_ylim(top * 1e-4, top * 3)
    axes[0].set_ylabel(f"density in ${problem.x.name}$")
    axes[0].legend(loc="best", fontsize="small")
    some = any(exact.at(a) is not None for a in alphas)
    figure.suptitle(f"{problem.name}: target, exact minimizer and flow" if some else f"{problem.name}: target and flow (no exact minimizer)")
    return _save(figure, path)


def _coefficients(problem: Problem, exact: _Exact, log_density: LogDensity, has_exact: bool, path: Path) -> Path:
    coefficients = _Coefficients.of(problem)
    alphas = _nodes(problem, None)
    checks = _certificate_alphas(problem)
    flow = None if has_exact else (lambda a: (lambda x: _q(log_density, x, a)))
    bulk = _union_bulk(exact, flow, checks)
    threshold = THRESHOLD_PER_TOLERANCE * 0.02
    order = problem.order
    figure = _figure(4.6 * (order + 1), 4.0)
    axes = figure.subplots(1, order + 1, squeeze=False)[0]
    ranges = [_range(exact, coefficients, bulk, [n], threshold, alphas, has_exact) for n in range(order + 1)]
    leading = ranges[coefficients.leading] if coefficients.leading is not None else None
    for n, ax in enumerate(axes):
        x_range = ranges[n]
        extractable = x_range is not None
        # an order that cannot be extracted is shown where the leading one can, to show the bias
        shown = x_range if extractable else (leading if leading is not None else bulk)
        x = _grid(exact.minimizer, *shown, 200)
        axis, axis_label, logarithmic = _axis(problem, x)
        wide = logarithmic and axis.max() > 10 * axis.min()
        # over decades the coefficients go like 1/distance: distance × p^n keeps them readable
        factor = axis if wide else np.ones_like(x)
        ax.plot(axis, factor * coefficients(n, x), color=_COLORS["p"], lw=1.2, label=rf"$p^{n}$ (symbolic)")
        if has_exact:
            star = extract_coefficients(problem, exact.log_q, x, nodes=alphas)[n]
            ax.plot(axis, factor * star, color=_COLORS["exact"], lw=2.4, alpha=0.6, label=rf"$q^{{*{n}}}$ extracted (method's bias)")
        extracted = extract_coefficients(problem, log_density, x, nodes=alphas)[n]
        label = rf"$q^{n}$ extracted (flow)"
        if extractable:
            deviation = _order_deviation(problem, exact, coefficients, log_density, n, x_range, None, alphas, x.size)
            label += f", median deviation {deviation.median_relative_deviation:.2%}"
        ax.plot(axis, factor * extracted, color=_COLORS["flow"], lw=1.2, ls="-.", label=label)
        if wide:
            ax.set_xscale("log")
        ax.set_xlabel(axis_label)
        ax.set_ylabel(f"{axis_label} × coefficient" if wide else "coefficient")
        ax.set_title(rf"order $\alpha^{n}$", loc="left")
        if not extractable:
            ax.set_title("not extractable in this coupling range", loc="right", color="tab:red", fontsize="small")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    lo, hi = problem.coupling_range
    figure.suptitle(f"{problem.name}: coefficients by a fit in α over [{lo:g}, {hi:g}]")
    return _save(figure, path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(float(h["step"]), float(h[key])) for h in history if h.get(key) is not None and "step" in h]
    pairs = [(s, v) for s, v in pairs if math.isfinite(v)]
    if not pairs:
        return np.empty(0), np.empty(0)
    steps, values = np.array(pairs).T
    return steps, values


def _training(problem: Problem, history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    extras = [key for key in ("excess_loss", "total_variation") if _series(history, key)[0].size]
    figure = _figure(6.0 * (1 + bool(extras)), 4.0)
    axes = figure.subplots(1, 1 + bool(extras), squeeze=False)[0]
    steps, loss = _series(history, "loss")
    axes[0].plot(steps, loss, color=_COLORS["flow"], lw=1.2, label="loss")
    if loss.size and np.all(loss > 0):
        axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("training loss")
    axes[0].grid(True, which="major", alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    if extras:
        for key, color in zip(extras, ("tab:red", "tab:green")):
            s, v = _series(history, key)
            axes[1].plot(s, np.where(v > 0, v, np.nan), color=color, lw=1.2, label=key.replace("_", " "))
        axes[1].set_yscale("log")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel(r"distance to $q^*$")
        axes[1].grid(True, which="major", alpha=0.3)
        axes[1].legend(loc="best", fontsize="small")
    figure.suptitle(f"{problem.name}: training")
    return _save(figure, path)


def plot_report(
    problem: Problem,
    log_density: LogDensity,
    out_dir: str | Path,
    history: Sequence[Mapping[str, Any]] | None = None,
    alphas: Sequence[float] | None = None,
) -> list[Path]:
    r"""Writes the verification plots as PNG files.

    - ``densities.png``: :math:`p`, the flow's :math:`q` and the exact minimizer :math:`q^*`
      (where it exists) against :math:`x` at three couplings, both axes logarithmic; where
      :math:`p < 0` its magnitude is drawn dashed (the legend says so).
    - ``coefficients.png``: per order :math:`n \le N` the extracted :math:`q^n` (fit in α, see
      :func:`~renorm.runtime._verify.extract_coefficients`) against the symbolic :math:`p^n`, over
      the order's extractable range; the same extraction applied to :math:`q^*` shows the method's
      own bias.
    - ``training.png``: the loss curve, and ``excess_loss`` / ``total_variation`` where present,
      when ``history`` is given.

    Each file is written to a temporary file in ``out_dir`` and moved into place with
    :func:`os.replace`, so a reader never sees half a PNG.

    Arguments:
        problem: The matching problem.
        log_density: :math:`\log q(x|\alpha)` of the flow.
        out_dir: Directory for the PNGs (created if missing).
        history: Training records, dicts with ``step``, ``loss`` and optionally ``excess_loss``,
            ``total_variation``.
        alphas: Couplings of ``densities.png``; default :math:`\alpha_{min}`, middle (0.118 when
            inside the range), :math:`\alpha_{max}`.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exact = _Exact.of(problem)
    checks = [float(a) for a in (_certificate_alphas(problem) if alphas is None else alphas)]
    has_exact = exact.available(list(_nodes(problem, None)) + checks + _certificate_alphas(problem))
    paths = [
        _densities(problem, exact, log_density, checks, has_exact, out / "densities.png"),
        _coefficients(problem, exact, log_density, has_exact, out / "coefficients.png"),
    ]
    if history:
        paths.append(_training(problem, history, out / "training.png"))
    return paths
