r"""One variable against two: time and memory per training step and to convergence, in one run.

The 1D baseline is the LO angularity with the default recipe; the 2D case the emission in
(theta, z) with its default recipe (a 64 x 64 latent grid at 8 couplings). Each case runs in its
own subprocess, so that its peak RSS is its own: first 20 timed steps of its objective (forward
and backward), then a full default training with the certificate against q*.

    python benchmarks/dimensions.py [--device cpu] [--skip-training]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CASES = {"1D angularity_lo": EXAMPLES / "angularity_lo.toml", "2D emission_theta_z": EXAMPLES / "multi" / "emission_theta_z.toml"}


def _child(case: str, device: str, training: bool) -> None:
    import torch

    from renorm.runtime import TrainConfig, certificate, train
    from renorm.runtime._plane_train import plane_certificate
    from renorm.runtime._train import _Trainer, window_floor
    from renorm.symbolic import MultiProblem, load_spec

    torch.set_num_threads(2)
    problem = load_spec(CASES[case])
    config = TrainConfig(device=device)
    # the floor "auto" stands for, as train() resolves it before it builds its trainer
    config = dataclasses.replace(config, alpha_floor=window_floor(problem, config))
    with tempfile.TemporaryDirectory() as folder:
        trainer = _Trainer(problem, Path(folder), config, None, False, None)
        trainer._evaluate()  # warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            trainer._evaluate()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_step = (time.perf_counter() - start) / 20
        result = {"case": case, "per_step": per_step, "step_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if training:
            start = time.perf_counter()
            run = train(problem, Path(folder) / "run", config, progress=False)
            result["seconds"] = time.perf_counter() - start
            result["steps"] = run.step
            rows = plane_certificate(run) if isinstance(problem, MultiProblem) else certificate(problem, run.log_density, [0.05, 0.118, 0.3])
            result["tv"] = [row.total_variation for row in rows]
            result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-training", action="store_true", help="time the steps only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args.child, args.device, not args.skip_training)
    rows = []
    for case in CASES:
        command = [sys.executable, __file__, "--child", case, "--device", args.device] + (["--skip-training"] if args.skip_training else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    base = rows[0]["per_step"]
    print("| case | time per step (ms) | vs 1D | peak RSS, steps only (MiB) | steps to convergence | wall time (s) | TV at 0.05 / 0.118 / 0.3 | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        trained = ("| " + " | ".join([str(row["steps"]), f"{row['seconds']:.1f}", " / ".join(f"{v:.1e}" for v in row["tv"]), f"{row['peak_mib']:.0f}"]) + " |"
                   if "steps" in row else "| - | - | - | - |")
        print(f"| {row['case']} | {1e3 * row['per_step']:.1f} | {row['per_step'] / base:.1f}x | {row['step_peak_mib']:.0f} {trained}")


if __name__ == "__main__":
    main()
