r"""The commands ``renorm expand``, ``solve``, ``eval`` and the certificate of ``train`` for a target in two variables."""

from __future__ import annotations

import argparse
from typing import Sequence

import numpy as np

from ._cli import _matched, _numbers, _print_json, _solve_each

__all__: list[str] = []


def points(problem, xs: Sequence[tuple[float, ...]] | None) -> np.ndarray:
    r"""The ``--x`` pairs as an array of shape ``(n, 2)`` inside the region (default: its bulk points)."""
    from renorm.symbolic import RenormError

    if not xs:
        return problem.bulk_points()
    bad = next((p for p in xs if len(p) != problem.dimension), None)
    if bad is not None:
        names = ",".join(v.name for v in problem.variables)
        raise RenormError(f"--x takes {names} pairs for this target, got {','.join(map(format, bad))}")
    x = np.asarray(xs, dtype=float)
    if not np.isfinite(x).all():
        raise RenormError(f"--x must be finite numbers, got {','.join(map(format, x[~np.isfinite(x).all(1)][0]))}")
    outside = ~problem.contains(x[:, 0], x[:, 1])
    if outside.any():
        where = " and the region " + "; ".join(dict.fromkeys(b.text for b in problem.region)) if problem.region else ""
        raise RenormError(f"--x {','.join(map(format, x[outside][0]))} is outside the open support box{where}")
    return x


def _pairs(x: np.ndarray) -> list[list[float]]:
    return [[float(a), float(b)] for a, b in x]


def expand(args: argparse.Namespace, problem) -> None:
    import sympy as sp

    from renorm.symbolic import numeric, multi_coefficients

    x = points(problem, args.x)
    terms = multi_coefficients(problem)
    values = [np.broadcast_to(numeric(term, problem.variables)(x[:, 0], x[:, 1]), x[:, 0].shape) for term in terms]
    if args.json:
        _print_json({
            "name": problem.name, "order": problem.order, "variables": [v.name for v in problem.variables], "x": _pairs(x),
            "coefficients": [{"n": n, "regular": sp.sstr(term), "values": _numbers(v)} for n, (term, v) in enumerate(zip(terms, values))],
        })
        return
    names = ", ".join(v.name for v in problem.variables)
    print(f"{problem.name}: p^N to order {problem.order} in {problem.coupling}, variables ({names}), box {_box(problem)}{_region(problem)}")
    print("(pointwise coefficients inside the region; their distributional parts on the singular faces are not derived in two variables)")
    for n, (term, v) in enumerate(zip(terms, values)):
        print(f"p^{n} = {sp.sstr(term)}")
        if args.x:
            print(f"  ({names}): " + "  ".join(f"({a:.6g}, {b:.6g})" for a, b in x))
            print(f"  p^{n}: " + "  ".join(f"{value:.6g}" for value in v))


def _box(problem) -> str:
    import sympy as sp

    return " x ".join(f"({sp.sstr(a)}, {sp.sstr(b)})" for a, b in problem.support)


def _region(problem) -> str:
    return "; region " + "; ".join(dict.fromkeys(b.text for b in problem.region)) if problem.region else ""


def solve(args: argparse.Namespace, problem) -> int:
    from renorm.symbolic import ExactMinimizer, MultiMinimizer, NotNormalizableError, marginal_problem, multi_matched_order

    x = points(problem, args.x)
    marginal_x, second_x = np.unique(x[:, 0]), np.unique(x[:, 1])
    minimizer = MultiMinimizer(problem)
    found = _solve_each(minimizer, args.alpha)
    order = multi_matched_order(problem)
    reasons = [reason for _, _, reason in found if reason is not None]
    if len(reasons) == len(found):
        raise NotNormalizableError(f"{reasons[0]} (matched order {order.describe(problem.order)})")
    reduced, why = marginal_problem(problem)
    second_reduced, second_target_why = marginal_problem(problem, 1)

    def reduced_q(marginal, points: np.ndarray):
        r"""The 1D q* of a marginal target at ``points``, per coupling (None where it has none)."""
        minimizer = ExactMinimizer(marginal) if marginal is not None else None

        def at(alpha: float) -> np.ndarray | None:
            if minimizer is None:
                return None
            try:
                return minimizer.solve(alpha).q(points)
            except NotNormalizableError:
                return None

        return at

    first_q, second_q = reduced_q(reduced, marginal_x), reduced_q(second_reduced, second_x)

    second_why = problem.second_marginal_refusal(second_x) or None

    rows = []
    for alpha, s, reason in found:
        if s is None:
            rows.append({"alpha": alpha, "lagrange_multiplier": None, "normalization": None, "loss": None, "q": None, "p": None,
                         "marginal_q": None, "marginal_q_of_marginal_target": None, "marginal_q_2": None,
                         "marginal_q_2_of_marginal_target": None, "error": reason})
            continue
        one_d, second_one_d = first_q(alpha), second_q(alpha)
        rows.append({"alpha": alpha, "lagrange_multiplier": s.lagrange_multiplier, "normalization": s.normalization, "loss": s.loss,
                     "q": _numbers(s.q(x[:, 0], x[:, 1])), "p": _numbers(minimizer.p(x[:, 0], x[:, 1], alpha)),
                     "marginal_q": _numbers(s.marginal(0, marginal_x)),
                     "marginal_q_of_marginal_target": None if one_d is None else _numbers(one_d),
                     "marginal_q_2": None if second_why else _numbers(s.marginal(1, second_x)),
                     "marginal_q_2_of_marginal_target": None if second_one_d is None else _numbers(second_one_d), "error": None})
    first, second = problem.variables[0].name, problem.variables[1].name
    if args.json:
        _print_json({"name": problem.name, "f": problem.f_kind, "variables": [v.name for v in problem.variables], "x": _pairs(x),
                    "marginal": {"variable": first, "x": _numbers(marginal_x), "target": None if reduced is None else str(reduced.density),
                                 "reason": why or None},
                    "marginal_2": {"variable": second, "x": _numbers(second_x), "reason": second_why,
                                   "target": None if second_reduced is None else str(second_reduced.density), "target_reason": second_target_why or None},
                    "matched_order": _matched(order, problem), "couplings": rows})
        return 1 if reasons else 0
    from renorm.symbolic import one_line

    print(f"{problem.name}: f = {problem.f_kind}, weight 1/(2C^2) = {problem.weight}, variables "
          f"({', '.join(v.name for v in problem.variables)}) as written (f = log compares densities in these variables)")
    print(f"{'alpha':>8} {'lambda':>14} {'int q*':>18} {'loss':>12}")
    for alpha, s, reason in found:
        print(f"{alpha:8.4g}  {one_line(reason)}" if s is None else f"{alpha:8.4g} {s.lagrange_multiplier:14.8g} {s.normalization:18.15f} {s.loss:12.6g}")
    print(f"marginal in {first}: int q* d{problem.variables[1]} (2D q*) against the 1D q* of the marginal target int p d{problem.variables[1]}"
          + ("" if reduced is not None else f" (not available: {why})"))
    for row in rows:
        if row["error"] is None:
            one_d = row["marginal_q_of_marginal_target"]
            for i, v in enumerate(marginal_x):
                other = f"{one_d[i]:14.6g}" if one_d is not None else f"{'-':>14}"
                print(f"{row['alpha']:8.4g} {first} = {v:<10.4g} {row['marginal_q'][i]:14.6g} {other}")
    if second_why:
        print(f"marginal in {second}: not available: {second_why}")
    else:
        print(f"marginal in {second}: int q* d{first} (2D q*) against the 1D q* of the marginal target int p d{first}"
              + ("" if second_reduced is not None else f" (not available: {second_target_why})"))
    for row in rows:
        if row["error"] is None and row["marginal_q_2"] is not None:
            one_d = row["marginal_q_2_of_marginal_target"]
            for i, v in enumerate(second_x):
                other = f"{one_d[i]:14.6g}" if one_d is not None else f"{'-':>14}"
                print(f"{row['alpha']:8.4g} {second} = {v:<10.4g} {row['marginal_q_2'][i]:14.6g} {other}")
    trend = ", ".join(f"{e:.3g}" for e in order.exponents)
    detail = f" (q* - p^N ~ alpha^s at the bulk points; local s as alpha -> 0: {trend})" if order.exponents else ""
    print(f"matched order: {order.describe(problem.order)}{detail}")
    return 1 if reasons else 0


def certificate_table(rows) -> None:
    r"""The certificate of a flow in two variables against q*, as ``renorm train`` prints it."""
    print(f"{'alpha':>8} {'TV(q, q*)':>11} {'median |q/q*-1|':>16} {'int q':>10}   (TV and int q on a fine latent grid; the median under q*)")
    for row in rows:
        print(f"{row.alpha:8.4g} {row.total_variation:11.3e} {row.median_relative_error:16.3e} {row.normalization:10.6f}")


def evaluate(args: argparse.Namespace, run) -> None:
    r"""``renorm eval`` of a flow in two variables at ``--x`` pairs."""
    alpha = args.alpha[0]
    x = points(run.problem, args.x)
    q = np.exp(run.log_density(x, alpha))
    if args.json:
        _print_json({"alpha": alpha, "x": _pairs(x), "q": _numbers(q)})
        return
    names = [v.name for v in run.problem.variables]
    print(f"{names[0]:>14} {names[1]:>14} {'q(x|alpha=' + format(alpha, 'g') + ')':>22}")
    for (a, b), value in zip(x, q):
        print(f"{a:14.8g} {b:14.8g} {value:22.12g}")


def verify_run(run):
    r"""``renorm verify`` of a trained flow in two variables (:func:`~renorm.runtime._plane_verify.verify_plane` on its own latent plane)."""
    from ._plane_verify import verify_plane

    return verify_plane(run.problem, run.log_density, flow=run.evaluator)


def plot_run(run, out) -> list:
    r"""``renorm plot`` of a trained flow in two variables."""
    from ._plane_plot import plot_plane_report

    return plot_plane_report(run.problem, run.log_density, out, history=run.history, flow=run.evaluator)


def print_report(report) -> None:
    r"""A :class:`~renorm.runtime._plane_verify.PlaneVerifyReport` as ``renorm verify`` prints it."""
    names = ", ".join(report.variables)
    print(f"verification: {'PASSED' if report.passed else 'FAILED'} (tolerance {report.tolerance:g} on the median relative deviation per order, "
          f"in ({names}) and in the marginals of {' and '.join(report.variables)})")
    for kind, orders in (("", report.orders), ("marginal ", report.marginal_orders), ("marginal ", report.second_marginal_orders)):
        for order in orders:
            target = order.target.replace("^n", f"^{order.n}")
            if not order.extractable:
                print(f"  {kind}q^{order.n} vs {target}: not extractable at the couplings trained")
                continue
            resolution = f", quadrature {order.resolution:.1e}" if order.resolution is not None else ""
            print(f"  {kind}q^{order.n} vs {target} (scale {order.scale}): median {order.median_relative_deviation:.3e}, max "
                  f"{order.max_relative_deviation:.3e}, bias of the fit on q* {order.bias:.3e}{resolution}; {order.points} points, "
                  f"{order.coverage:.1%} of the bulk, margin {order.margin:+.2f}")
    print(f"  minimum density on the bulk: {report.minimum_density:.3e}")
    certificate_table(report.certificate)
    print("  checks: " + ", ".join(f"{c.name}: {'passed' if c.passed else 'FAILED' if c.ran else 'not run'}" for c in report.checks))
    for note in report.notes:
        print(f"  note: {note}")
