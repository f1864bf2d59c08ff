r"""Benchmark: the generated fused loss_density (eager, torch.compile) against SymPy's lambdify(modules="torch")."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import sympy as sp
import torch
from torch._inductor import metrics
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from renorm import codegen
from renorm.symbolic import Problem, load_spec

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
SPECS = ("angularity_lo.toml", "soft_collinear.toml", "angularity_running.toml", "soft_collinear_nlo.toml")


def _timed(methods: dict[str, Callable[[], torch.Tensor]], rounds: int) -> dict[str, tuple[float, torch.Tensor]]:
    r"""Median wall time of each method over ``rounds`` interleaved rounds, after one warm-up call each.

    Each round calls every method once, so load from elsewhere on a shared machine falls on all
    methods alike and the ratios stay meaningful when the absolute times do not.

    Arguments:
        methods: The calls to time, by name.
        rounds: How many timed calls per method.

    Returns:
        For each name, the median in seconds and the last result.
    """
    results = {name: fn() for name, fn in methods.items()}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(rounds):
        for name, fn in methods.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in methods}


class _Passes(TorchDispatchMode):
    r"""Counts the kernels that write a full-size result: in eager torch, one pass over the points each."""

    def __init__(self, points: int) -> None:
        super().__init__()
        self.points = points
        self.count = 0

    def __torch_dispatch__(self, func: Callable[..., Any], types: tuple[type, ...], args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if any(isinstance(t, torch.Tensor) and t.numel() >= self.points for t in tree_leaves(out)):
            self.count += 1
        return out


def _eager_passes(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> int:
    r"""How many passes over the points an eager call of ``fn`` makes."""
    with torch.no_grad(), _Passes(inputs[0].numel()) as passes:
        fn(*inputs)
    return passes.count


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


def run(spec: str, points: int, rounds: int) -> list[str]:
    r"""The table rows of one spec.

    Arguments:
        spec: A file in ``examples/``.
        points: Points per call.
        rounds: Timed calls per method.

    Returns:
        Markdown table rows.
    """
    problem = load_spec(ROOT / "examples" / spec)
    kernels = codegen.load(problem)
    inputs = _inputs(problem, points, seed=0)
    naive = _lambdified(problem)
    with warnings.catch_warnings():
        # inductor imports a deprecated torch.jit decorator on first use
        warnings.simplefilter("ignore", DeprecationWarning)
        metrics.reset()
        compiled = codegen.compile_loss(kernels)
        compiled(*inputs)
        compiled_passes = metrics.generated_kernel_count

    methods = {"generated, eager": lambda: kernels.loss_density(*inputs),
               "generated, torch.compile": lambda: compiled(*inputs)}
    passes = {"generated, eager": _eager_passes(kernels.loss_density, *inputs),
              "generated, torch.compile": compiled_passes}
    try:
        naive(*inputs)
    except (TypeError, RuntimeError) as error:  # SymPy's printer emits calls torch refuses
        message = str(error).splitlines()[0][:60]
        failure = f"| {problem.name} | sympy lambdify (torch) | | fails: {type(error).__name__}: {message} | | | |"
    else:
        failure = None
        methods = {"sympy lambdify (torch)": lambda: naive(*inputs), **methods}
        passes["sympy lambdify (torch)"] = _eager_passes(naive, *inputs)
    with torch.no_grad():
        timings = _timed(methods, rounds)

    # against lambdify where it has a value at all (its log(p) is NaN where p < 0), else against eager
    reference = "generated, eager" if failure else "sympy lambdify (torch)"
    t_reference, y_reference = timings[reference]
    finite = torch.isfinite(y_reference)
    rows = [failure] if failure else []
    for method, (seconds, value) in timings.items():
        difference = (value[finite] - y_reference[finite]).abs().max().item()
        speed, versus = ("", " (vs eager)") if failure else (f"{t_reference / seconds:.2f}x", "")
        rows.append(f"| {problem.name} | {method} | {passes[method]} | {seconds * 1e3:.2f} | {speed} | "
                    f"{difference:.2e}{versus} | {_nan_share(value):.1%} |")
    return rows


def main(argv: list[str] | None = None) -> None:
    r"""Prints the markdown table.

    Arguments:
        argv: ``[--points N] [--rounds R] [--specs ...]``.
    """
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--specs", nargs="*", default=list(SPECS))
    args = parser.parse_args(argv)
    print(f"loss_density on {args.points:,} points, float64, CPU ({torch.get_num_threads()} threads), "
          f"torch {torch.__version__}, SymPy {sp.__version__}; median of {args.rounds} interleaved rounds.")
    print("Passes: kernels per call that write all points (eager: one per elementwise op; compiled: inductor's")
    print("generated kernels). Max |difference| is against lambdify where lambdify is finite; NaN share counts")
    print("non-finite outputs.\n")
    print("| problem | method | passes | ms per call | speed vs lambdify | max abs difference | NaN share |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for spec in args.specs:
        for row in run(spec, args.points, args.rounds):
            print(row)


if __name__ == "__main__":
    main()
