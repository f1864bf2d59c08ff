r"""Training recipes side by side on the LO angularity: wall time, distance to q*, peak memory.

Each recipe runs in its own subprocess (so peak RSS is its own), on the same machine, in one
invocation. The seed talk's recipe is reproduced in this framework: the raw loss functional,
fresh Monte Carlo batches of 512 x × 32 α per step, Adam at lr 1e-3, 2000 epochs, α entering
linearly, the flow evaluated by zuko's own ``log_prob``. ``seed-closed-form`` is the same recipe
on this package's closed-form Bernstein derivative, to separate the evaluation's share of the
speed-up from the optimizer's.

    python benchmarks/train.py [--device cpu] [--recipes seed,default,functional]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

SPEC = Path(__file__).resolve().parents[1] / "examples" / "angularity_lo.toml"

SEED = dict(mode="functional", sampling="monte-carlo", x_points=512, alpha_points=32, lr=1e-3,
            epochs=2000, refine=0, schedule="constant", context="linear")
RECIPES = {
    "seed": SEED,
    "seed-closed-form": SEED,
    # the defaults: with the perturbative window [1e-3, 0.05] below the spec's range
    "default": {},
    # the alternatives the defaults were chosen against (those of the physical range without the window)
    "no-window": dict(alpha_floor=0.0),
    "float32": dict(dtype="float32", alpha_floor=0.0),
    "alpha-24": dict(alpha_points=24, alpha_floor=0.0),
    "alpha-16": dict(alpha_points=16, alpha_floor=0.0),
    "functional": dict(mode="functional"),
    # the opt-in Taylor-operator loss needs a linear context; its baseline is the same without it
    "functional-linear": dict(mode="functional", context="linear"),
    "taylor": dict(mode="functional", context="linear", taylor_weight=1e-3),
}


def _child(name: str, device: str, out: str, taylor_weight: float) -> None:
    import torch

    from renorm.runtime import ConditionalFlow, TrainConfig, certificate, train, verify
    from renorm.symbolic import load_spec

    if name == "seed":
        ConditionalFlow._log_prob = ConditionalFlow._log_prob_reference
    torch.set_num_threads(2)
    problem = load_spec(SPEC)
    recipe = {**RECIPES[name], "device": device}
    if "taylor_weight" in recipe:
        recipe["taylor_weight"] = taylor_weight
    config = TrainConfig(**recipe)
    start = time.perf_counter()
    run = train(problem, out, config, progress=False, force=True)  # a rerun replaces the last one
    seconds = time.perf_counter() - start
    rows = certificate(problem, run.log_density, [0.05, 0.118, 0.3])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = verify(problem, run.log_density, couplings=run.couplings)  # across the bulk where the run has the window
    print(json.dumps({"recipe": name, "seconds": seconds, "peak_mib": peak, "steps": run.step,
                      "tv": [r.total_variation for r in rows], "median": [r.median_relative_error for r in rows],
                      "excess": [r.excess_loss for r in rows], "passed": report.passed,
                      "orders": [o.median_relative_deviation for o in report.orders]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipes", default="seed,default,functional", help=f"comma-separated, from {', '.join(RECIPES)}")
    parser.add_argument("--taylor-weight", type=float, default=1e-3, help="the weight of the taylor recipe")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/renorm-benchmark-train")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.device, args.out, args.taylor_weight)
        return
    results = []
    for name in args.recipes.split(","):
        done = subprocess.run([sys.executable, __file__, "--child", name, "--device", args.device, "--out", f"{args.out}/{name}",
                               "--taylor-weight", str(args.taylor_weight)],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    seed = next((r for r in results if r["recipe"] == "seed"), None)
    print(f"LO angularity, f = log, C = 1, alpha in [0.05, 0.3], device {args.device}\n")
    print("| recipe | steps | wall time (s) | speed-up vs seed | TV at 0.05 / 0.118 / 0.3 | median rel. error | excess loss | verify: median dev. of q^0 / q^1 | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---|---|---|---|---:|")
    for r in results:
        ratio = f"{seed['seconds'] / r['seconds']:.1f}x" if seed else "-"
        fmt = lambda values: " / ".join(f"{v:.1e}" for v in values)
        print(f"| {r['recipe']} | {r['steps']} | {r['seconds']:.1f} | {ratio} | {fmt(r['tv'])} | {fmt(r['median'])} | {fmt(r['excess'])} | {fmt(r['orders'])} ({'passed' if r['passed'] else 'failed'}) | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
