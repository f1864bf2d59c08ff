r"""The ``renorm`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
from typing import Any, Sequence

import numpy as np

__all__: list[str] = []

#: The most samples ``renorm sample`` draws in one call (8 bytes each).
_MAX_SAMPLES = 10**8


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("renorm-flows")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _numbers(values: Any) -> list[float | None]:
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]


def _json_text(data: Any) -> str:
    r"""``data`` as the tool's JSON: indented, inf and nan as ``null`` (JSON has neither; see the README)."""
    from renorm.symbolic import json_safe

    return json.dumps(json_safe(data), indent=2, allow_nan=False)


def _print_json(data: Any) -> None:
    r"""One JSON object on stdout."""
    print(_json_text(data))


def _matched(order, problem) -> dict[str, Any]:
    r"""The matched order as it appears in every command's JSON."""
    return {"order": order.matched, "of": problem.order, "text": order.describe(problem.order), "exponents": list(order.exponents)}


def _load(path: str, command: str | None = None):
    r"""The spec's problem; one in two variables is refused by a ``command`` that takes one variable only."""
    from renorm.symbolic import MultiProblem, RenormError, load_spec

    problem = load_spec(path)
    if command is not None and isinstance(problem, MultiProblem):
        raise RenormError(problem.where("target.x", f"renorm {command} takes a target in one variable; every other "
                                        "command works in two"))
    return problem


def _point(text: str) -> tuple[float, ...]:
    r"""One ``--x`` value: a number, or comma-separated coordinates for a target in several variables."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid point {text!r}: expected a number, or x1,x2 for a target in two variables") from None


def _points(problem, xs: Sequence[tuple[float, ...]] | None) -> np.ndarray:
    if not xs:
        from renorm.symbolic import bulk_points

        return bulk_points(problem)
    from renorm.symbolic import RenormError

    if any(len(point) != 1 for point in xs):
        raise RenormError(f"--x takes single numbers for a target in one variable, got {','.join(map(format, next(p for p in xs if len(p) != 1)))}")
    x = np.asarray([point[0] for point in xs], dtype=float)
    if not np.isfinite(x).all():
        raise RenormError(f"--x must be finite numbers, got {x[~np.isfinite(x)][0]:g}")
    a, b = problem.support_floats
    outside = (x <= a) | (x >= b)
    if outside.any():
        raise RenormError(f"--x {x[outside][0]:g} is outside the open support ({a:g}, {b:g})")
    return x


def _expand(args: argparse.Namespace) -> None:
    import sympy as sp

    from renorm.symbolic import MultiProblem, coefficients

    problem = _load(args.spec)
    if isinstance(problem, MultiProblem):
        from . import _multi_cli

        return _multi_cli.expand(args, problem)
    x = _points(problem, args.x)
    terms = coefficients(problem)
    if args.json:
        _print_json({
            "name": problem.name,
            "order": problem.order,
            "singular": problem.singular,
            "endpoint": problem.support_floats[0 if problem.singular != "upper" else 1],
            "x": _numbers(x),
            "coefficients": [
                {"n": c.n, "regular": sp.sstr(c.regular), "delta": sp.sstr(c.delta), "plus": sp.sstr(c.plus),
                 "values": _numbers(c.values(x))}
                for c in terms
            ],
        })
        return
    endpoint = {"lower": problem.support[0], "upper": problem.support[1]}.get(problem.singular)
    print(f"{problem.name}: p^N to order {problem.order} in {problem.coupling}, support {tuple(map(sp.sstr, problem.support))}")
    for c in terms:
        parts = []
        if c.delta != 0 and endpoint is not None:
            # printed by hand: SymPy evaluates DiracDelta(x) to 0 for a positive symbol x
            weight = "" if c.delta == 1 else f"{sp.sstr(c.delta)}*"
            parts.append(f"{weight}delta({sp.sstr(problem.x - endpoint)})")
        if c.plus != 0:
            parts.append(f"[{sp.sstr(c.plus)}]_+")
        elif c.regular != 0:
            parts.append(sp.sstr(c.regular))
        print(f"p^{c.n} = {' + '.join(parts) or '0'}")
        if args.x:
            print("      x: " + "  ".join(f"{v:.6g}" for v in x))
            print(f"  p^{c.n}(x): " + "  ".join(f"{v:.6g}" for v in c.values(x)))


def _source(source) -> dict:
    r"""A numeric target's file, its hash and the quality of each order's fit, as JSON."""
    return {"kind": source.kind, "path": source.path, "sha256": source.sha256, "events": source.events or None,
            "fits": [{"n": f.n, "chi2": f.chi2, "ndf": f.ndf, "bins": f.bins, "log_powers": f.logs, "degree": f.degree} for f in source.fits]}


def _solve_each(minimizer, alphas: Sequence[float]) -> list[tuple[float, Any, str | None]]:
    r"""``(alpha, solution, None)`` or ``(alpha, None, reason)`` per coupling, in increasing α: each
    coupling on its own, so that one without a minimizer does not void the others."""
    from renorm.symbolic import NotNormalizableError

    found, guess = [], None
    for alpha in sorted(alphas):
        try:
            solution = minimizer.solve(alpha, guess)
        except NotNormalizableError as error:
            found.append((alpha, None, str(error)))
            continue
        guess = solution.lagrange_multiplier if solution.lagrange_multiplier > 0 else None
        found.append((alpha, solution, None))
    return found


def _solve(args: argparse.Namespace) -> int:
    from renorm.symbolic import ExactMinimizer, MultiProblem, NotNormalizableError, matched_order, one_line

    problem = _load(args.spec)
    if isinstance(problem, MultiProblem):
        from . import _multi_cli

        return _multi_cli.solve(args, problem)
    x = _points(problem, args.x)
    minimizer = ExactMinimizer(problem)
    found = _solve_each(minimizer, args.alpha)
    order = matched_order(problem)
    reasons = [reason for _, _, reason in found if reason is not None]
    if len(reasons) == len(found):
        raise NotNormalizableError(f"{reasons[0]} (matched order {order.describe(problem.order)})")
    if args.json:
        rows = [{"alpha": alpha, "lagrange_multiplier": None, "lagrange_multiplier_error": None, "normalization": None, "loss": None,
                 "q": None, "q_error": None, "p": None, "error": reason}
                if s is None else
                {"alpha": alpha, "lagrange_multiplier": s.lagrange_multiplier, "lagrange_multiplier_error": s.lagrange_multiplier_error,
                 "normalization": s.normalization, "loss": s.loss, "q": _numbers(s.q(x)),
                 "q_error": None if minimizer.uncertainty is None else _numbers(s.q_error(x)), "p": _numbers(minimizer.p(x, alpha)), "error": None}
                for alpha, s, reason in found]
        _print_json({"name": problem.name, "f": problem.f_kind, "x": _numbers(x), "data": [_source(d) for d in problem.data],
                     "matched_order": _matched(order, problem), "couplings": rows})
        return 1 if reasons else 0
    print(f"{problem.name}: f = {problem.f_kind}, weight 1/(2C^2) = {problem.weight}")
    for source in problem.data:
        print(f"  fitted from {one_line(source.describe())}")
    error = minimizer.uncertainty is not None
    spread_header = f"{'+- (MC)':>11}" if error else ""
    print(f"{'alpha':>8} {'lambda':>14}{spread_header} {'int q*':>18} {'loss':>12}")
    for alpha, s, reason in found:
        spread = f" {s.lagrange_multiplier_error:10.3g}" if s is not None and error else ""
        print(f"{alpha:8.4g}  {one_line(reason)}" if s is None else
              f"{alpha:8.4g} {s.lagrange_multiplier:14.8g}{spread} {s.normalization:18.15f} {s.loss:12.6g}")
    trend = ", ".join(f"{e:.3g}" for e in order.exponents)
    detail = f" (q* - p^N ~ alpha^s at fixed x; local s as alpha -> 0: {trend})" if order.exponents else ""
    print(f"matched order: {order.describe(problem.order)}{detail}")
    return 1 if reasons else 0


def _magic(args: argparse.Namespace) -> None:
    import sympy as sp

    from renorm.symbolic import magic_c, parse_target

    problem = _load(args.spec, "magic-c")
    magic = magic_c(problem, parse_target(problem, args.q))
    alphas = args.alpha or [problem.coupling_range[0], problem.coupling_range[1]]
    checks = [magic.check(a) for a in alphas]
    if args.json:
        _print_json({
            "q": sp.sstr(magic.target), "C": sp.sstr(magic.C), "C_squared": sp.sstr(magic.C_squared),
            "weight": sp.sstr(magic.weight), "lagrange_multiplier": magic.lagrange_multiplier,
            "couplings": [
                {"alpha": c.alpha, "normalization": c.normalization, "loss": c.loss, "kl_divergence": c.kl_divergence,
                 "lagrange_multiplier": c.lagrange_multiplier, "max_relative_error": c.max_relative_error}
                for c in checks
            ],
        })
        return
    print(f"C_q^2       = {sp.sstr(magic.C_squared)}")
    print(f"1/(2 C_q^2) = {sp.sstr(magic.weight)}")
    print(f"(lambda = {magic.lagrange_multiplier:+d} by convention: C is defined up to a constant)")
    print(f"{'alpha':>8} {'int q':>18} {'L[q]':>12} {'KL(q||p)':>12} {'lambda*':>14} {'max |q*-q|/q':>14}")
    for c in checks:
        kl = f"{c.kl_divergence:12.8g}" if c.kl_divergence is not None else f"{'-':>12}"
        print(f"{c.alpha:8.4g} {c.normalization:18.15f} {c.loss:12.8g} {kl} {c.lagrange_multiplier:14.10g} {c.max_relative_error:14.3g}")


def _config(args: argparse.Namespace, problem, base=None):
    r"""The training settings: ``base`` (default: the spec's ``[train]`` table over :class:`TrainConfig`'s
    defaults) with the flags given on the command line."""
    from renorm.symbolic import RenormError

    from ._config import TrainConfig

    if base is None:
        try:
            base = TrainConfig.from_json(problem.training) if problem.training else TrainConfig()
        except (RenormError, TypeError) as error:
            raise RenormError(problem.where("train", f"{error} (the settings are those of renorm train's options, e.g. epochs, lr, threads)")) from None
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if getattr(args, f.name, None) is not None}
    if "hidden" in given:
        given["hidden"] = tuple(given["hidden"])
    return dataclasses.replace(base, **given)


def _certificate_table(rows) -> None:
    # a numeric target adds the flow's distance from q* in units of q*'s Monte Carlo error
    pulls = any(row.median_mc_pull is not None for row in rows)
    extra = f" {'median |q-q*|/MC':>17}" if pulls else ""
    print(f"{'alpha':>8} {'TV(q, q*)':>11} {'median |q/q*-1|':>16} {'L[q] - L[q*]':>13} {'int q':>10}{extra}")
    for row in rows:
        pull = f" {row.median_mc_pull:17.3g}" if pulls and row.median_mc_pull is not None else ""
        print(f"{row.alpha:8.4g} {row.total_variation:11.3e} {row.median_relative_error:16.3e} {row.excess_loss:13.3e} {row.normalization:10.6f}{pull}")


def _train(args: argparse.Namespace) -> None:
    problem = _load(args.spec)  # a bad spec is refused before torch is imported

    from ._train import stored_run, train

    if args.resume and args.force:
        from renorm.symbolic import RenormError

        raise RenormError("--resume continues the run in --out and --force replaces it: give one of them")
    # a resumed run keeps its own settings; flags given again must agree (train() checks)
    stored, start = stored_run(args.out, problem) if args.resume else (None, 0)
    run = train(problem, args.out, _config(args, problem, stored), resume=args.resume, progress=not args.json, force=args.force)
    new = run.step - start
    if _two_variables(run):
        from . import _multi_cli
        from ._plane_train import plane_certificate

        rows, table = plane_certificate(run), _multi_cli.certificate_table
    else:
        rows, table = _certificate_rows(run), _certificate_table
    if args.json:
        _print_json({"out": str(run.directory), "steps": run.step, "new_steps": new, "seconds": run.seconds,
                     "loss": run.final_loss, "couplings": [row.to_json() for row in rows]})
        return
    steps = f"{new} new steps (to step {run.step})" if args.resume else f"{run.step} steps"
    seconds = f" in {run.seconds:.1f} s" if new else ""
    print(f"trained {problem.name}: {steps}{seconds}, final loss {run.final_loss:.6g}; checkpoint in {run.directory}")
    if rows:
        table(rows)


def _certificate_rows(run) -> list:
    from renorm.symbolic import RenormError

    from ._verify import _certificate_alphas, certificate

    try:
        return certificate(run.problem, run.log_density_distance, _certificate_alphas(run.problem), distance=True)
    except RenormError:
        return []


def _load_run(args: argparse.Namespace):
    r"""The run of ``args.dir``: its problem from the stored TOML copy, or from ``--spec`` if given."""
    from ._rundir import run_problem

    problem = run_problem(args.dir, _load(args.spec) if args.spec else None)  # refused before torch is imported

    from ._train import load_run

    return load_run(args.dir, problem)


def _two_variables(run) -> bool:
    from renorm.symbolic import MultiProblem

    return isinstance(run.problem, MultiProblem)


def _eval(args: argparse.Namespace) -> None:
    run = _load_run(args)
    if _two_variables(run):
        from . import _multi_cli

        return _multi_cli.evaluate(args, run)
    x = _points(run.problem, args.x)
    q = np.exp(run.log_density(x, args.alpha[0]))
    band = _inherited_band(run.problem, x, args.alpha[0])
    if args.json:
        _print_json({"alpha": args.alpha[0], "x": _numbers(x), "q": _numbers(q), "q_error": None if band is None else _numbers(band)})
        return
    print(f"{'x':>14} {'q(x|alpha=' + format(args.alpha[0], 'g') + ')':>22}" + (f" {'+- (MC)':>12}" if band is not None else ""))
    for i, (xi, qi) in enumerate(zip(x, q)):
        print(f"{xi:14.8g} {qi:22.12g}" + (f" {band[i]:12.3g}" if band is not None else ""))


def _inherited_band(problem, x: np.ndarray, alpha: float):
    r"""For a numeric target, the Monte Carlo error the flow inherits from the q* it approximates
    (``None`` for a formula, without the data's spec, or where q* does not exist)."""
    from renorm.symbolic import ExactMinimizer, NotNormalizableError

    minimizer = ExactMinimizer(problem)
    if minimizer.uncertainty is None:
        return None
    try:
        return minimizer.solve(alpha).q_error(x)
    except NotNormalizableError:
        return None


def _sample(args: argparse.Namespace) -> None:
    from renorm.symbolic import RenormError, one_line

    if not 0 < args.n <= _MAX_SAMPLES:
        raise RenormError(f"-n must be between 1 and {_MAX_SAMPLES}, got {args.n}")
    if args.out and not args.out.endswith(".npy"):
        raise RenormError(f"--out {one_line(args.out)}: the file name must end in .npy")
    run = _load_run(args)
    samples = run.sample(args.alpha[0], args.n, args.seed)
    summary = {"alpha": args.alpha[0], "n": args.n, "seed": args.seed, "out": args.out}
    if args.out:
        import io

        from renorm.symbolic import write_atomic

        buffer = io.BytesIO()
        np.save(buffer, samples)
        _write(write_atomic, args.out, buffer.getvalue())
        if args.json:
            _print_json({**summary, "samples": None})
        else:
            print(f"wrote {args.n} samples of x ~ q(x|alpha={args.alpha[0]:g}) to {args.out}")
        return
    if samples.ndim == 2:
        if args.json:
            _print_json({**summary, "samples": [[float(a), float(b)] for a, b in samples]})
            return
        for a, b in samples:
            print(f"{a:.17g} {b:.17g}")
        return
    if args.json:
        _print_json({**summary, "samples": _numbers(samples)})
        return
    for value in samples:
        print(f"{value:.17g}")


def _verify_run(run):
    if _two_variables(run):
        from . import _multi_cli

        return _multi_cli.verify_run(run)
    from ._verify import verify

    return verify(run.problem, run.log_density_distance, couplings=run.couplings, distance=True)


def _plot_run(run, out) -> list:
    if _two_variables(run):
        from . import _multi_cli

        return _multi_cli.plot_run(run, out)
    from ._plot import plot_report

    return plot_report(run.problem, run.log_density_distance, out, history=run.history, distance=True, couplings=run.couplings)


def _print_report(report) -> None:
    from ._plane_verify import PlaneVerifyReport

    if isinstance(report, PlaneVerifyReport):
        from . import _multi_cli

        return _multi_cli.print_report(report)
    print(f"verification: {'PASSED' if report.passed else 'FAILED'} (tolerance {report.tolerance:g} on the median relative deviation per order)")
    for order in report.orders:
        if order.extractable:
            lo, hi = order.x_range
            mc = f"; MC error of p^{order.n} there: median {order.mc_error:.3e}" if order.mc_error is not None else ""
            cumulant = f", cumulant median {order.cumulant_median:.3e}" if math.isfinite(order.cumulant_median) else ""
            print(f"  q^{order.n} vs p^{order.n} on {report.variable} in [{lo:.4g}, {hi:.4g}] (scale {order.scale}): median {order.median_relative_deviation:.3e}, "
                  f"max {order.max_relative_deviation:.3e}{cumulant}; {order.coverage:.1%} of the bulk, margin {order.margin:+.2f}{mc}")
        else:
            print(f"  q^{order.n}: not extractable at the couplings trained")
    for alpha, value in zip(report.alphas, report.normalization):
        print(f"  int q dx at alpha={alpha:g}: {value:.10f}")
    print(f"  minimum density on the bulk: {report.minimum_density:.3e}")
    if report.certificate:
        _certificate_table(report.certificate)
    print("  checks: " + ", ".join(f"{c.name}: {'passed' if c.passed else 'FAILED' if c.ran else 'not run'}" for c in report.checks))
    for note in report.notes:
        print(f"  note: {note}")


def _verify(args: argparse.Namespace) -> int:
    report = _verify_run(_load_run(args))
    if args.json:
        _print_json(report.to_json())
    else:
        _print_report(report)
    return 0 if report.passed else 1


def _plot(args: argparse.Namespace) -> None:
    run = _load_run(args)
    paths = _plot_run(run, run.directory)
    if args.json:
        _print_json({"plots": [str(p) for p in paths]})
        return
    for path in paths:
        print(path)


def _run(args: argparse.Namespace) -> int:
    import time

    from renorm.codegen import generate
    from renorm.symbolic import (
        ExactMinimizer, MultiMinimizer, MultiProblem, RenormError, matched_order, multi_matched_order, one_line, write_atomic,
    )

    problem = _load(args.spec)  # a bad spec is refused before torch is imported

    from ._checkpoint import run_lock
    from ._rundir import CHECKPOINT
    from ._train import _directory, train
    from ._verify import _certificate_alphas

    say = (lambda *_: None) if args.json else print
    multi = isinstance(problem, MultiProblem)
    out = _directory(args.out)
    with run_lock(out):
        if (out / CHECKPOINT).exists() and not args.force:
            raise RenormError(f"{one_line(out)} already holds a run: replace it with --force (or continue its training with renorm train --resume)")
        start = time.perf_counter()
        _write(write_atomic, out / "kernels.py", generate(problem))
        say(f"[1/5] kernels: {out / 'kernels.py'}")
        order = (multi_matched_order if multi else matched_order)(problem)
        solved = _solve_each((MultiMinimizer if multi else ExactMinimizer)(problem), _certificate_alphas(problem))
        matched = (f"matches p^N through O(alpha^{order.order}) of {problem.order}" if order.matched is not None
                   else f"matched order {order.describe(problem.order)}")
        found = ", ".join(f"{s.lagrange_multiplier:.6g} (alpha={alpha:g})" for alpha, s, _ in solved if s is not None)
        absent = "; ".join(f"none at alpha={alpha:g} ({reason})" for alpha, s, reason in solved if s is None)
        say(f"[2/5] exact minimizer: {'lambda = ' + found if found else ''}{'; ' if found and absent else ''}{absent}; {matched}")
        run = train(problem, out, _config(args, problem), progress=not args.json, force=args.force)
        say(f"[3/5] trained {run.step} steps in {run.seconds:.1f} s, final loss {run.final_loss:.6g}")
        # the trained flow is on disk from here on: a failure below is reported and keeps it
        kept = f"; the trained flow is kept in {one_line(out / CHECKPOINT)}"
        report = _verify_run(run)
        _write(write_atomic, out / "report.json", _json_text(report.to_json()), kept)
        say(f"[4/5] verification written to {out / 'report.json'}")
        try:
            paths = _plot_run(run, out)
        except OSError as error:
            raise RenormError(f"cannot write the plots in {one_line(out)}: {error.strerror or error}{kept}") from None
        say(f"[5/5] plots: {', '.join(p.name for p in paths)}")
    if args.json:
        couplings = [{"alpha": alpha, "lagrange_multiplier": None if s is None else s.lagrange_multiplier, "error": reason}
                     for alpha, s, reason in solved]
        _print_json({
            "name": problem.name, "out": str(out), "kernels": str(out / "kernels.py"),
            "exact_minimizer": {"matched_order": _matched(order, problem), "couplings": couplings},
            "training": {"steps": run.step, "seconds": run.seconds, "loss": run.final_loss},
            "report": report.to_json(), "plots": [str(p) for p in paths], "seconds": time.perf_counter() - start,
        })
        return 0 if report.passed else 1
    print()
    _print_report(report)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0 if report.passed else 1


def _write(write, path, text: str | bytes, suffix: str = "") -> None:
    r"""``write(path, text)``, with a failure as one line."""
    from renorm.symbolic import RenormError, one_line

    try:
        write(path, text)
    except OSError as error:
        raise RenormError(f"cannot write {one_line(path)}: {error.strerror or error}{suffix}") from None


def _training_options(parser: argparse.ArgumentParser) -> None:
    r"""One flag per :class:`TrainConfig` field, with its help, choices and default from the dataclass."""
    from ._config import TrainConfig

    for item in dataclasses.fields(TrainConfig):
        flag, choices = "--" + item.name.replace("_", "-"), item.metadata["choices"]
        default = " ".join(map(str, item.default)) if isinstance(item.default, tuple) else item.default
        help = f"{item.metadata['help']} (default {default})"
        if isinstance(item.default, tuple):
            parser.add_argument(flag, type=int, nargs="+", metavar="N", help=help)
        else:
            parser.add_argument(flag, type=item.metadata["parse"], choices=choices, help=help)
    parser.add_argument("--force", action="store_true", help="replace a run already in --out")


def _parser() -> argparse.ArgumentParser:
    from renorm.symbolic import OneLineParser

    parser = OneLineParser(prog="renorm", description="Normalized, positive distributions that match fixed-order QCD order by order.")
    parser.add_argument("--version", action="version", version=f"renorm-flows {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    expand = commands.add_parser("expand", help="alpha-expansion of the target with its delta and plus parts")
    expand.add_argument("spec", help="a spec file: .toml (data), or .py defining `problem` (code: only files you trust)")
    expand.add_argument("--x", type=_point, nargs="+", help="interior points at which to print p^n(x)")
    expand.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    expand.set_defaults(run=_expand)

    solve = commands.add_parser("solve", help="exact minimizer q*, lambda(alpha) and the matched order")
    solve.add_argument("spec", help="a spec file: .toml (data), or .py defining `problem` (code: only files you trust)")
    solve.add_argument("--alpha", type=float, nargs="+", required=True, help="couplings at which to solve for lambda (required)")
    solve.add_argument("--x", type=_point, nargs="+", help="interior points at which to print q* and p")
    solve.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    solve.set_defaults(run=_solve)

    magic = commands.add_parser("magic-c", help="the kernel C_q for which a target q is the minimizer")
    magic.add_argument("spec", help="a spec file: .toml (data), or .py defining `problem` (code: only files you trust)")
    magic.add_argument("--q", required=True, help="target q(x|alpha) in the spec's names")
    magic.add_argument("--alpha", type=float, nargs="+", help="couplings for the numerical checks (default: the range ends)")
    magic.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    magic.set_defaults(run=_magic)

    train = commands.add_parser("train", help="train the alpha-conditioned flow")
    train.add_argument("spec", help="a spec file: .toml (data), or .py defining `problem` (code: only files you trust)")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    _training_options(train)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("eval", help="the trained flow's density q(x|alpha)")
    evaluate.add_argument("dir", help="a run directory written by renorm train or renorm run")
    evaluate.add_argument("--spec", help="the spec, when the run directory has no spec.toml (a Python spec is code: only one you trust)")
    evaluate.add_argument("--alpha", type=float, nargs=1, required=True, help="the coupling (required, within the trained range)")
    evaluate.add_argument("--x", type=_point, nargs="+", required=True, help="interior points of the support (required)")
    evaluate.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    evaluate.set_defaults(run=_eval)

    sample = commands.add_parser("sample", help="samples x ~ q(x|alpha)")
    sample.add_argument("dir", help="a run directory written by renorm train or renorm run")
    sample.add_argument("--spec", help="the spec, when the run directory has no spec.toml (a Python spec is code: only one you trust)")
    sample.add_argument("--alpha", type=float, nargs=1, required=True, help="the coupling (required)")
    sample.add_argument("-n", type=int, required=True, help="how many samples (required, at most 10^8)")
    sample.add_argument("--seed", type=int, default=0, help="random seed of the samples (default 0)")
    sample.add_argument("--out", help="write a .npy file instead of printing")
    sample.add_argument("--json", action="store_true", help="print one JSON object (with the samples, unless --out) instead of one number per line")
    sample.set_defaults(run=_sample)

    check = commands.add_parser("verify", help="coefficients, normalization, positivity and distance to q* (exit 1 if it fails)")
    check.add_argument("dir", help="a run directory written by renorm train or renorm run")
    check.add_argument("--spec", help="the spec, when the run directory has no spec.toml (a Python spec is code: only one you trust)")
    check.add_argument("--json", action="store_true", help="print the numbers as one JSON object instead of a table")
    check.set_defaults(run=_verify)

    plot = commands.add_parser("plot", help="PNG plots of p, q and q*, coefficients and the training curve")
    plot.add_argument("dir", help="a run directory written by renorm train or renorm run")
    plot.add_argument("--spec", help="the spec, when the run directory has no spec.toml (a Python spec is code: only one you trust)")
    plot.add_argument("--json", action="store_true", help="print the paths as one JSON object")
    plot.set_defaults(run=_plot)

    chain = commands.add_parser("run", help="codegen -> solve -> train -> verify -> plot (exit 1 if verification fails)")
    chain.add_argument("spec", help="a spec file: .toml (data), or .py defining `problem` (code: only files you trust)")
    chain.add_argument("--out", required=True, help="run directory (created; an earlier run there needs --force)")
    chain.add_argument("--json", action="store_true", help="print one JSON object at the end (no progress bar, no step lines)")
    _training_options(chain)
    chain.set_defaults(run=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    r"""Runs ``renorm``; returns the exit code (2 and one line on stderr for bad input)."""
    from renorm.symbolic import RenormError, one_line

    argv = list(sys.argv[1:] if argv is None else argv)
    # a target that starts with a minus sign is a value of --q, not an option
    for i in range(len(argv) - 1):
        if argv[i] == "--q" and argv[i + 1].startswith("-"):
            argv[i:i + 2] = [f"--q={argv[i + 1]}"]
            break
    args = _parser().parse_args(argv)
    for name in ("alpha",):
        values = getattr(args, name, None) or []
        if any(not math.isfinite(v) or v <= 0 for v in values):
            print(f"renorm: error: --{name} must be positive and finite, got {values}", file=sys.stderr)
            return 2
    try:
        code = args.run(args)
    except RenormError as error:
        print(f"renorm: error: {one_line(error)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`renorm solve ... | head`): nothing more to say, and nowhere to say it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt as stop:
        # training's Interrupted (SIGINT or SIGTERM, after writing a checkpoint) says where it stopped
        print(f"renorm: {one_line(stop) or 'interrupted'}", file=sys.stderr)
        return 128 + getattr(stop, "signum", 2)
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
