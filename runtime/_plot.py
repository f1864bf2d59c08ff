r"""Plots of a verification: densities against the target and the exact minimizer, coefficients, training."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from renorm.symbolic import Frame, Problem, write_atomic

from ._verify import (
    BULK_POINTS, THRESHOLD_PER_TOLERANCE, LogDensity, _certificate_alphas, _Exact, _framed, _grid, _levels, _nodes, _order_deviation, _q,
    _quantiles, _range, _small_coupling_fit, _union_bulk, _window_order_deviation, extract_coefficients, window_checked,
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
    r"""Writes the PNG through the project's atomic writer: a reader never sees half a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    write_atomic(path, buffer.getvalue())
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


def _axis(frame: Frame) -> tuple[str, bool]:
    r"""The x axis: the distance to the singular endpoint on a log scale (so that the endpoint
    where the physics happens is spread out, at either end), or x itself, linearly. The plots
    work in the frame's variable, which is that distance (see :class:`~renorm.symbolic.Frame`)."""
    return f"${frame.label}$", frame.problem.singular == "lower"


def _densities(frame: Frame, exact: _Exact, log_density: LogDensity, alphas: Sequence[float], has_exact: bool, path: Path) -> Path:
    r"""p, q* and the flow at each coupling, with a ratio panel under each: q_flow/q* and p/q*
    (or q_flow/p where there is no q*), the view in which a physicist reads a per-cent agreement."""
    lo, hi = _plot_range(exact, log_density, alphas, has_exact)
    x = _grid(exact.minimizer, lo, hi, 600)
    problem = frame.problem
    label, logarithmic = _axis(frame)
    figure = _figure(4.6 * len(alphas), 5.8)
    grid = figure.subplots(2, len(alphas), sharex="col", sharey="row", squeeze=False, gridspec_kw={"height_ratios": (3, 1.3)})
    axes, ratios = grid[0], grid[1]
    top = 0.0
    for ax, below, alpha in zip(axes, ratios, alphas):
        with np.errstate(all="ignore"):
            p = exact.minimizer.p(x, alpha)
        positive = np.where(p > 0, p, np.nan)
        ax.plot(x, positive, color=_COLORS["p"], lw=1.2, label=r"$p$ (fixed order)")
        if np.any(p < 0):
            ax.plot(x, np.where(p < 0, -p, np.nan), color=_COLORS["p"], lw=1.2, ls="--", label=r"$|p|$ where $p < 0$")
        flow = _q(log_density, x, alpha)
        solution = exact.at(alpha)
        with np.errstate(all="ignore"):
            if solution is not None:
                star = solution.q(x)
                top = max(top, float(star[np.isfinite(star)].max(initial=0.0)))
                ax.plot(x, star, color=_COLORS["exact"], lw=2.4, alpha=0.6, label=r"$q^*$ (exact minimizer)")
                band = solution.q_error(x)
                if band is not None:
                    # a numeric target's Monte Carlo error, propagated to q* (1 sigma)
                    ax.fill_between(x, star - band, star + band, color=_COLORS["exact"], alpha=0.2, lw=0, label=r"$q^*$ MC band ($1\sigma$)")
                    below.fill_between(x, 1 - band / star, 1 + band / star, color=_COLORS["exact"], alpha=0.2, lw=0, label=r"$q^*$ MC band")
                below.plot(x, flow / star, color=_COLORS["flow"], lw=1.2, ls="-.", label=r"$q/q^*$")
                below.plot(x, p / star, color=_COLORS["p"], lw=1.0, label=r"$p/q^*$")
                below.set_ylabel(r"ratio to $q^*$" if alpha == alphas[0] else "")
            else:
                ax.text(0.5, 0.04, "no exact minimizer here", transform=ax.transAxes, ha="center", fontsize="small")
                below.plot(x, flow / p, color=_COLORS["flow"], lw=1.2, ls="-.", label=r"$q/p$")
                below.set_ylabel(r"ratio to $p$" if alpha == alphas[0] else "")
        if solution is None:
            # q* sets the scale where it exists: a poorly trained flow's tail would squash the rest
            top = max(top, float(flow[np.isfinite(flow)].max(initial=0.0)))
        ax.plot(x, np.where(flow > 0, flow, np.nan), color=_COLORS["flow"], lw=1.2, ls="-.", label=r"$q$ (flow)")
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
    axes[0].set_ylabel(f"density in ${frame.label}$")
    axes[0].legend(loc="best", fontsize="small")
    some = any(exact.at(a) is not None for a in alphas)
    figure.suptitle(f"{problem.name}: target, exact minimizer and flow" if some else f"{problem.name}: target and flow (no exact minimizer)")
    return _save(figure, path)


def _coefficients(frame: Frame, exact: _Exact, log_density: LogDensity, has_exact: bool, tolerance: float, path: Path) -> Path:
    r"""Per order the extracted :math:`q^n` against :math:`p^n`, with the tolerance band over the checked range."""
    problem = frame.problem
    coefficients = exact.coefficients
    alphas = _nodes(problem, None)
    checks = _certificate_alphas(problem)
    flow = None if has_exact else (lambda a: (lambda x: _q(log_density, x, a)))
    bulk = _union_bulk(exact, flow, checks)
    threshold = THRESHOLD_PER_TOLERANCE * tolerance
    alpha_max = float(problem.coupling_range[1])
    order = problem.order
    figure = _figure(4.6 * (order + 1), 4.0)
    axes = figure.subplots(1, order + 1, squeeze=False)[0]
    ranges = [_range(exact, coefficients, bulk, [n], threshold, alphas, has_exact) for n in range(order + 1)]
    label, logarithmic = _axis(frame)
    for n, ax in enumerate(axes):
        x_range = ranges[n]
        extractable = x_range is not None
        # the whole bulk, so that the checked range shows where it sits and what lies outside it
        x = _grid(exact.minimizer, *bulk, 300)
        wide = logarithmic and x.max() > 10 * x.min()
        # over decades the coefficients go like 1/distance: distance × p^n keeps them readable
        factor = x if wide else np.ones_like(x)
        target = coefficients(n, x)
        ax.plot(x, factor * target, color=_COLORS["p"], lw=1.2, label=rf"$p^{n}$ (symbolic)")
        scale = coefficients.scale(n, x, alpha_max)
        if extractable:
            inside = (x >= x_range[0]) & (x <= x_range[1])
            # the band of the test: |q^n - p^n| <= tolerance * s_n for the median over the range
            band = np.where(inside, tolerance * scale, np.nan)
            ax.fill_between(x, factor * (target - band), factor * (target + band), color=_COLORS["p"], alpha=0.25, lw=0,
                            label=f"checked range, ±{tolerance:g} $s_{n}$ (median test)")
            for edge in x_range:
                ax.axvline(edge, color="gray", lw=0.8, ls=":")
        if has_exact:
            star = extract_coefficients(problem, exact.log_q, x, nodes=alphas)[n]
            ax.plot(x, factor * star, color=_COLORS["exact"], lw=2.4, alpha=0.6, label=rf"$q^{{*{n}}}$ extracted (method's bias)")
        extracted = extract_coefficients(problem, log_density, x, nodes=alphas)[n]
        name = rf"$q^{n}$ extracted (flow)"
        if extractable:
            deviation = _order_deviation(problem, exact, coefficients, log_density, n, x_range, None, alphas, 64)
            name += f", median deviation {deviation.median_relative_deviation:.2%}"
        ax.plot(x, factor * extracted, color=_COLORS["flow"], lw=1.2, ls="-.", label=name)
        _finish_panel(ax, n, factor * (scale if coefficients.vanishing[n] else target), coefficients.vanishing[n], wide, label,
                      "" if extractable else "not extractable in this coupling range")
    lo, hi = problem.coupling_range
    figure.suptitle(f"{problem.name}: coefficients by a fit in α over [{lo:g}, {hi:g}]")
    return _save(figure, path)


def _finish_panel(ax: Any, n: int, reach: np.ndarray, vanishing: bool, wide: bool, label: str, failure: str) -> None:
    r"""Limits, axes and legend of a coefficient panel. A fit's extrapolation leaves the scale outside
    the checked points, so ``reach`` sets it: the target, or where :math:`p^n` vanishes the
    deviation's scale :math:`s_n` (the leading term), on both sides of 0."""
    reach = reach[np.isfinite(reach)]
    if reach.size:
        low, high = min(float(reach.min()), -float(reach.max()) if vanishing else 0.0), max(float(reach.max()), 0.0)
        pad = 0.25 * max(high - low, 1e-300)
        ax.set_ylim(low - pad, high + pad)
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel(f"{label} × coefficient" if wide else "coefficient")
    ax.set_title(rf"order $\alpha^{n}$", loc="left")
    if failure:
        ax.set_title(failure, loc="right", color="tab:red", fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize="small")


def _window_coefficients(frame: Frame, exact: _Exact, log_density: LogDensity, couplings: tuple[float, float], tolerance: float, path: Path) -> Path:
    r"""Per order the :math:`q^n` of the fit at small couplings (what :func:`~renorm.runtime.verify` checks for a
    run trained below the physical range) against :math:`p^n` across the bulk: the flow's, :math:`q^*`'s (the
    method's bias), the band :math:`p^n \pm` ``tolerance`` :math:`s_n` on the checked points, and the error
    estimate :math:`p^n \pm (\text{bias} + G_n \epsilon)` there."""
    problem = frame.problem
    coefficients = exact.coefficients
    checks = _certificate_alphas(problem)
    use_exact = exact.available(list(_levels(couplings)) + checks)
    flow = None if use_exact else (lambda a: (lambda x: _q(log_density, x, a)))
    fit = _small_coupling_fit(exact, log_density, couplings, _union_bulk(exact, flow, checks), BULK_POINTS, use_exact)
    order = problem.order
    figure = _figure(4.6 * (order + 1), 4.0)
    axes = figure.subplots(1, order + 1, squeeze=False)[0]
    label, logarithmic = _axis(frame)
    x = fit.x
    wide = logarithmic and x.max() > 10 * x.min()
    factor = x if wide else np.ones_like(x)
    with np.errstate(all="ignore"):
        for n, ax in enumerate(axes):
            target = coefficients(n, x)
            checked, bias = window_checked(coefficients, fit, n, tolerance)
            deviation = _window_order_deviation(problem, coefficients, fit, n, tolerance, 0.05, 0.9)
            # the deviation's unit s_n at each point (its top coupling where p^n vanishes)
            scale = np.abs(coefficients.scale(n, x, 1.0) * np.where(np.isfinite(fit.top), fit.top, np.nan) ** (
                (coefficients.leading - n) if coefficients.vanishing[n] and coefficients.leading is not None else 0))
            ax.plot(x, factor * target, color=_COLORS["p"], lw=1.2, label=rf"$p^{n}$ (symbolic)")
            band = np.where(checked, tolerance * scale, np.nan)
            ax.fill_between(x, factor * (target - band), factor * (target + band), color=_COLORS["p"], alpha=0.25, lw=0,
                            label=f"checked, ±{tolerance:g} $s_{n}$ ({deviation.coverage:.0%} of the bulk)")
            if bias is not None:
                estimate = np.where(checked, (bias + fit.gain[n] * fit.error) * scale, np.nan)
                ax.plot(x, factor * (target + estimate), color="gray", lw=0.8, ls=":", label="error estimate: bias + $G_n$ × flow's error")
                ax.plot(x, factor * (target - estimate), color="gray", lw=0.8, ls=":")
                ax.plot(x, factor * fit.exact[n], color=_COLORS["exact"], lw=2.4, alpha=0.6, label=rf"$q^{{*{n}}}$ extracted (method's bias)")
            name = rf"$q^{n}$ extracted (flow)"
            if deviation.extractable:
                name += f", median deviation {deviation.median_relative_deviation:.2%}"
            ax.plot(x, factor * fit.extracted[n], color=_COLORS["flow"], lw=1.2, ls="-.", label=name)
            _finish_panel(ax, n, factor * (scale if coefficients.vanishing[n] else target), coefficients.vanishing[n], wide, label,
                          "" if deviation.extractable else "not extractable at these couplings")
    figure.suptitle(f"{problem.name}: coefficients by a fit in α at small couplings, from {couplings[0]:g}")
    return _save(figure, path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(float(h["step"]), float(h[key])) for h in history if h.get(key) is not None and "step" in h]
    pairs = [(s, v) for s, v in pairs if math.isfinite(v)]
    if not pairs:
        return np.empty(0), np.empty(0)
    steps, values = np.array(pairs).T
    return steps, values


def _training(problem: Problem, history: Sequence[Mapping[str, Any]], path: Path) -> Path:
    r"""The loss and validation curves, the phases (Adam, then L-BFGS refinement) marked, and the
    step whose flow was kept (the refinement's lowest validation objective)."""
    extras = [key for key in ("excess_loss", "total_variation") if _series(history, key)[0].size]
    figure = _figure(6.0 * (1 + bool(extras)), 4.0)
    axes = figure.subplots(1, 1 + bool(extras), squeeze=False)[0]
    ax = axes[0]
    steps, loss = _series(history, "loss")
    ax.plot(steps, loss, color=_COLORS["flow"], lw=1.2, label="training objective")
    v_steps, validation = _series(history, "validation")
    if v_steps.size:
        ax.plot(v_steps, validation, color="tab:purple", lw=1.0, marker=".", ms=3, label="validation objective (other grid)")
    refine = [float(h["step"]) for h in history if h.get("phase") == "refine"]
    if refine:
        start = refine[0] - 1
        ax.axvline(start, color="gray", lw=0.8, ls="--")
        ax.axvspan(start, max(refine), color="gray", alpha=0.08, lw=0, label="L-BFGS refinement (Adam before)")
        kept = [(v, s) for s, v in zip(v_steps, validation) if s >= start]
        if kept:
            value, step = min(kept)
            ax.plot([step], [value], marker="*", ms=10, color="tab:red", ls="none", label=f"kept: step {step:.0f}")
    if loss.size and np.all(loss > 0) and np.all(validation > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("objective")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
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
    *,
    tolerance: float | None = None,
    distance: bool = False,
    couplings: tuple[float, float] | None = None,
) -> list[Path]:
    r"""Writes the verification plots as PNG files.

    - ``densities.png``: :math:`p`, the flow's :math:`q` and the exact minimizer :math:`q^*`
      (where it exists) at three couplings, both axes logarithmic (x against the distance to
      the singular endpoint), with a ratio panel (:math:`q/q^*`, :math:`p/q^*`) under each; where
      :math:`p < 0` its magnitude is drawn dashed (the legend says so).
    - ``coefficients.png``: per order :math:`n \le N` the extracted :math:`q^n` (fit in α, see
      :func:`~renorm.runtime._verify.extract_coefficients`) against the symbolic :math:`p^n`, over
      the bulk, the checked range shaded with the tolerance band :math:`p^n \pm` ``tolerance``
      :math:`\cdot s_n`; the same extraction applied to :math:`q^*` shows the method's own bias.
    - ``training.png``, when ``history`` is given: the training and validation objectives per
      step, the L-BFGS refinement shaded, the kept step starred, and ``excess_loss`` /
      ``total_variation`` where present.

    Each file is written to a temporary file in ``out_dir`` and moved into place with
    :func:`os.replace`, so a reader never sees half a PNG.

    Arguments:
        problem: The matching problem.
        log_density: :math:`\log q(x|\alpha)` of the flow.
        out_dir: Directory for the PNGs (created if missing).
        history: Training records, dicts with ``step``, ``loss`` and optionally ``phase``
            (``main`` or ``refine``), ``validation``, ``excess_loss``, ``total_variation``.
        alphas: Couplings of ``densities.png``; default :math:`\alpha_{min}`, middle (0.118 when
            inside the range), :math:`\alpha_{max}`.
        tolerance: The verification's tolerance, drawn as the coefficient band (default, as
            :func:`~renorm.runtime.verify`'s: 0.02 over the physical range, 0.01 at small couplings).
        distance: ``log_density`` takes the distance to the singular endpoint, not :math:`x`
            (:meth:`~renorm.runtime.Run.log_density_distance`).
        couplings: The couplings the density is defined at (a run's :attr:`~renorm.runtime.Run.couplings`):
            reaching below the physical range, ``coefficients.png`` shows the fit at small couplings
            that :func:`~renorm.runtime.verify` checks there.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame, log_density = _framed(problem, log_density, distance)
    problem = frame.problem
    exact = _Exact.of(problem)
    checks = [float(a) for a in (_certificate_alphas(problem) if alphas is None else alphas)]
    has_exact = exact.available(list(_nodes(problem, None)) + checks + _certificate_alphas(problem))
    window = couplings is not None and float(couplings[0]) < problem.coupling_range[0]
    tolerance = (0.01 if window else 0.02) if tolerance is None else float(tolerance)
    paths = [
        _densities(frame, exact, log_density, checks, has_exact, out / "densities.png"),
        _window_coefficients(frame, exact, log_density, (float(couplings[0]), float(couplings[1])), tolerance, out / "coefficients.png") if window
        else _coefficients(frame, exact, log_density, has_exact, tolerance, out / "coefficients.png"),
    ]
    if history:
        paths.append(_training(problem, history, out / "training.png"))
    return paths
