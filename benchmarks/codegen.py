r"""Benchmark: the generated fused loss_density (eager, torch.compile) against SymPy's lambdify(modules="torch")."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

import sympy as sp
import torch

from renorm import codegen
from renorm.symbolic import Problem, load_spec

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
SPECS = ("angularity_lo.toml", "soft_collinear.toml", "angularity_running.toml", "soft_collinear_nlo.toml")


def _timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, torch.Tensor]:
    r"""Median wall time of ``fn`` over ``repeats`` calls after one warm-up call.

    Arguments:
        fn: The call to time.
        repeats: How many timed calls.

    Returns:
        The median in seconds and the last result.
    """
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _lambdified(problem: Problem) -> Callable[..., torch.Tensor]:
    r"""SymPy's own torch function of the log-matching integrand :math:`w (\log q - \log p)^2`, without CSE."""
    log_q = sp.Symbol("log_q", real=True)
    integrand = problem.weight * (log_q - sp.log(problem.density)) ** 2
    return sp.lambdify((log_q, problem.x, problem.coupling), integrand, modules="torch", cse=False)


def _inputs(problem: Problem, points: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    a, b = problem.support_floats
    x = a + (b - a) * torch.rand(points, generator=generator, dtype=torch.float64).clamp_min(1e-12)
    lo, hi = problem.coupling_range
    alpha = lo + (hi - lo) * torch.rand(points, generator=generator, dtype=torch.float64)
    log_q = torch.randn(points, generator=generator, dtype=torch.float64)
    return log_q, x, alpha


def _nan_share(value: torch.Tensor) -> float:
    return 1.0 - torch.isfinite(value).double().mean().item()


def run(spec: str, points: int, repeats: int) -> list[str]:
    r"""The table rows of one spec.

    Arguments:
        spec: A file in ``examples/``.
        points: Points per call.
        repeats: Timed calls per method.

    Returns:
        Markdown table rows.
    """
    problem = load_spec(ROOT / "examples" / spec)
    kernels = codegen.load(problem)
    log_q, x, alpha = _inputs(problem, points, seed=0)
    naive = _lambdified(problem)
    with warnings.catch_warnings():
        # inductor imports a deprecated torch.jit decorator on first use
        warnings.simplefilter("ignore", DeprecationWarning)
        compiled = codegen.compile_loss(kernels)
        compiled(log_q, x, alpha)

    with torch.no_grad():
        t_eager, y_eager = _timed(lambda: kernels.loss_density(log_q, x, alpha), repeats)
        t_compiled, y_compiled = _timed(lambda: compiled(log_q, x, alpha), repeats)
        try:
            t_naive, y_naive = _timed(lambda: naive(log_q, x, alpha), repeats)
        except (TypeError, RuntimeError) as error:  # SymPy's printer emits calls torch refuses
            message = str(error).splitlines()[0][:60]
            return [f"| {problem.name} | sympy lambdify (torch) | fails: {type(error).__name__}: {message} | | | |",
                    f"| {problem.name} | generated, eager | {t_eager * 1e3:.2f} | | | {_nan_share(y_eager):.1%} |",
                    f"| {problem.name} | generated, torch.compile | {t_compiled * 1e3:.2f} | | "
                    f"{(y_compiled - y_eager).abs().max().item():.2e} (vs eager) | {_nan_share(y_compiled):.1%} |"]

    # SymPy's log(p) is NaN where p < 0: compare where it has a value at all
    finite = torch.isfinite(y_naive)
    rows = []
    for method, seconds, value in (("sympy lambdify (torch)", t_naive, y_naive),
                                   ("generated, eager", t_eager, y_eager),
                                   ("generated, torch.compile", t_compiled, y_compiled)):
        difference = (value[finite] - y_naive[finite]).abs().max().item()
        rows.append(f"| {problem.name} | {method} | {seconds * 1e3:.2f} | {t_naive / seconds:.2f}x | {difference:.2e} | {_nan_share(value):.1%} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    r"""Prints the markdown table.

    Arguments:
        argv: ``[--points N] [--repeats R] [--specs ...]``.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--specs", nargs="*", default=list(SPECS))
    args = parser.parse_args(argv)
    print(f"loss_density on {args.points:,} points, float64, CPU ({torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, SymPy {sp.__version__}; median of {args.repeats} calls.")
    print("Max |difference| is against lambdify where lambdify is finite; NaN share counts non-finite outputs.\n")
    print("| problem | method | ms per call | speed vs lambdify | max abs difference | NaN share |")
    print("|---|---|---:|---:|---:|---:|")
    for spec in args.specs:
        for row in run(spec, args.points, args.repeats):
            print(row)


if __name__ == "__main__":
    main()
