r"""Training recipes side by side on the LO angularity: wall time, distance to q*, peak memory.

Each recipe runs in its own subprocess (so peak RSS is its own), on the same machine, in one
invocation. The seed talk's recipe is reproduced in this framework: the raw loss functional,
fresh Monte Carlo batches of 512 x × 32 α per step, Adam at lr 1e-3, 2000 epochs, α entering
linearly.

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

RECIPES = {
    "seed": dict(mode="functional", sampling="monte-carlo", x_points=512, alpha_points=32, lr=1e-3,
                 epochs=2000, refine=0, schedule="constant", context="linear"),
    "default": {},
    "functional": dict(mode="functional"),
}


def _child(name: str, device: str, out: str) -> None:
    import torch

    from renorm.runtime import TrainConfig, certificate, train
    from renorm.symbolic import load_spec

    torch.set_num_threads(2)
    problem = load_spec(SPEC)
    config = TrainConfig(**{**RECIPES[name], "device": device})
    start = time.perf_counter()
    run = train(problem, out, config, progress=False)
    seconds = time.perf_counter() - start
    rows = certificate(problem, run.log_density, [0.05, 0.118, 0.3])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"recipe": name, "seconds": seconds, "peak_mib": peak, "steps": run.step,
                      "tv": [r.total_variation for r in rows], "median": [r.median_relative_error for r in rows],
                      "excess": [r.excess_loss for r in rows]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipes", default="seed,default,functional")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/renorm-benchmark-train")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.device, args.out)
        return
    results = []
    for name in args.recipes.split(","):
        done = subprocess.run([sys.executable, __file__, "--child", name, "--device", args.device, "--out", f"{args.out}/{name}"],
                              capture_output=True, text=True, check=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    seed = next((r for r in results if r["recipe"] == "seed"), None)
    print(f"LO angularity, f = log, C = 1, alpha in [0.05, 0.3], device {args.device}\n")
    print("| recipe | steps | wall time (s) | speed-up vs seed | TV at 0.05 / 0.118 / 0.3 | median rel. error | excess loss | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---|---|---|---:|")
    for r in results:
        ratio = f"{seed['seconds'] / r['seconds']:.1f}x" if seed else "-"
        fmt = lambda values: " / ".join(f"{v:.1e}" for v in values)
        print(f"| {r['recipe']} | {r['steps']} | {r['seconds']:.1f} | {ratio} | {fmt(r['tv'])} | {fmt(r['median'])} | {fmt(r['excess'])} | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
