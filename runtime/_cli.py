r"""The ``renorm`` command line."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Sequence

import numpy as np

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    r"""argparse that reports a usage error as one line (exit 2) instead of usage plus error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(value: float) -> float | None:
    r"""JSON has no inf/nan: they become ``null`` (documented in the README)."""
    value = float(value)
    return value if math.isfinite(value) else None


def _numbers(values: Any) -> list[float | None]:
    return [_number(v) for v in np.asarray(values, dtype=float).ravel()]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, allow_nan=False))


def _load(path: str):
    from renorm.symbolic import load_spec

    return load_spec(path)


def _points(problem, xs: Sequence[float] | None) -> np.ndarray:
    if not xs:
        from renorm.symbolic._solve import _bulk_points

        return _bulk_points(problem)
    x = np.asarray(xs, dtype=float)
    a, b = problem.support_floats
    outside = (x <= a) | (x >= b)
    if outside.any():
        from renorm.symbolic import RenormError

        raise RenormError(f"--x {x[outside][0]:g} is outside the open support ({a:g}, {b:g})")
    return x


def _expand(args: argparse.Namespace) -> None:
    import sympy as sp

    from renorm.symbolic import coefficients

    problem = _load(args.spec)
    x = _points(problem, args.x)
    terms = coefficients(problem)
    if args.json:
        _print_json({
            "order": problem.order,
            "singular": problem.singular,
            "endpoint": _number(problem.support_floats[0 if problem.singular != "upper" else 1]),
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


def _solve(args: argparse.Namespace) -> None:
    from renorm.symbolic import NotNormalizableError, matched_order, solve

    problem = _load(args.spec)
    x = _points(problem, args.x)
    try:
        solutions = solve(problem, args.alpha)
    except NotNormalizableError as error:
        order = matched_order(problem).order
        raise NotNormalizableError(f"{error} (matched order {order})") from None
    order = matched_order(problem)
    from renorm.symbolic import ExactMinimizer

    minimizer = ExactMinimizer(problem)
    rows = [
        {"alpha": s.alpha, "lambda": _number(s.lagrange_multiplier), "normalization": _number(s.normalization),
         "loss": _number(s.loss), "x": _numbers(x), "q": _numbers(s.q(x)), "p": _numbers(minimizer.p(x, s.alpha)),
         "matched_order": order.order}
        for s in solutions
    ]
    if args.json:
        _print_json(rows)
        return
    print(f"{problem.name}: f = {problem.f_kind}, weight 1/(2C^2) = {problem.weight}")
    print(f"{'alpha':>8} {'lambda':>14} {'int q*':>18} {'loss':>12}")
    for s in solutions:
        print(f"{s.alpha:8.4g} {s.lagrange_multiplier:14.8g} {s.normalization:18.15f} {s.loss:12.6g}")
    trend = ", ".join(f"{e:.3g}" for e in order.exponents)
    print(f"matched order: {order.order} of {problem.order} (q* - p^N ~ alpha^s at fixed x; local s as alpha -> 0: {trend})")


def _magic(args: argparse.Namespace) -> None:
    import sympy as sp

    from renorm.symbolic import magic_c, parse_target

    problem = _load(args.spec)
    magic = magic_c(problem, parse_target(problem, args.q))
    alphas = args.alpha or [problem.coupling_range[0], problem.coupling_range[1]]
    checks = [magic.check(a) for a in alphas]
    if args.json:
        _print_json({
            "q": sp.sstr(magic.target), "C": sp.sstr(magic.C), "C_squared": sp.sstr(magic.C_squared),
            "weight": sp.sstr(magic.weight), "lagrange_multiplier": magic.lagrange_multiplier,
            "checks": [
                {"alpha": c.alpha, "normalization": _number(c.normalization), "loss": _number(c.loss),
                 "kl_divergence": None if c.kl_divergence is None else _number(c.kl_divergence),
                 "lambda": _number(c.lagrange_multiplier), "max_relative_error": _number(c.max_relative_error)}
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


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="renorm", description="Normalized, positive distributions that match fixed-order QCD order by order.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    expand = commands.add_parser("expand", help="alpha-expansion of the target with its delta and plus parts")
    expand.add_argument("spec")
    expand.add_argument("--x", type=float, nargs="+", help="interior points at which to print p^n(x)")
    expand.add_argument("--json", action="store_true")
    expand.set_defaults(run=_expand)

    solve = commands.add_parser("solve", help="exact minimizer q*, lambda(alpha) and the matched order")
    solve.add_argument("spec")
    solve.add_argument("--alpha", type=float, nargs="+", required=True)
    solve.add_argument("--x", type=float, nargs="+", help="interior points at which to print q* and p")
    solve.add_argument("--json", action="store_true")
    solve.set_defaults(run=_solve)

    magic = commands.add_parser("magic-c", help="the kernel C_q for which a target q is the minimizer")
    magic.add_argument("spec")
    magic.add_argument("--q", required=True, help="target q(x|alpha) in the spec's names")
    magic.add_argument("--alpha", type=float, nargs="+", help="couplings for the numerical checks (default: the range ends)")
    magic.add_argument("--json", action="store_true")
    magic.set_defaults(run=_magic)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    r"""Runs ``renorm``; returns the exit code (2 and one line on stderr for bad input)."""
    from renorm.symbolic import RenormError

    args = _parser().parse_args(argv)
    for name in ("alpha",):
        values = getattr(args, name, None) or []
        if any(not math.isfinite(v) or v <= 0 for v in values):
            print(f"renorm: error: --{name} must be positive and finite, got {values}", file=sys.stderr)
            return 2
    try:
        args.run(args)
    except RenormError as error:
        print(f"renorm: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("renorm: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
