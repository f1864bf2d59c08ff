r"""LO events of the jet angularity (β = 1, WTA axis, R = 1) from the one-emission phase space.

The talk's first formula: one gluon at angle θ with momentum fraction z off a quark,

    p(x|α) = α C_F/π ∫ dθ/θ ∫ dz P(z) δ(x - min(z, 1 - z) θ),   P(z) = (1 + (1 - z)²)/z,

sampled in (log θ, log z), uniform on (-Λ, 0)², so that an event's weight z P(z) Λ² C_F/(π N) is
bounded. Every emission comes with its counter-event at x = 0 (the same group id, minus its
weight): that is the plus prescription, and makes ∫p¹ = 0 exactly, as normalization requires.
Emissions below x = e^-Λ, where the sampled region no longer covers all of (θ, z), are dropped
with their counter-events. No spec formula is used.

    python examples/mc/angularity_events.py --out examples/mc/angularity_events.npz
    python examples/mc/angularity_events.py --histogram examples/mc/angularity_histogram.csv --bins 40
"""

from __future__ import annotations

import argparse
import math

import numpy as np

CF = 4.0 / 3.0


def emissions(count: int, cut_log: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    r"""``count`` sampled emissions: the angularity x and the O(α) weight of each (those below the cut dropped)."""
    rng = np.random.default_rng(seed)
    log_theta = rng.uniform(-cut_log, 0.0, count)
    z = np.exp(rng.uniform(-cut_log, 0.0, count))
    x = np.minimum(z, 1.0 - z) * np.exp(log_theta)
    weight = CF / math.pi * cut_log**2 * (1.0 + (1.0 - z) ** 2) / count  # z P(z) times the Jacobian
    keep = x > math.exp(-cut_log)
    return x[keep], weight[keep]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="emissions sampled (default 1e6)")
    parser.add_argument("--cut", type=float, default=12.0, help="Λ: log θ and log z from -Λ to 0, x > e^-Λ (default 12)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write events (.npz or .csv): x, w1, group")
    parser.add_argument("--histogram", help="write a histogram CSV (lo,hi,p1,p1_err) instead")
    parser.add_argument("--bins", type=int, default=40, help="histogram bins, log-spaced from e^-Λ to 1/2 (default 40)")
    args = parser.parse_args()
    x, w = emissions(args.events, args.cut, args.seed)
    if args.histogram:
        edges = np.logspace(-args.cut / math.log(10), math.log10(0.5), args.bins + 1)
        index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, args.bins - 1)
        sums = np.bincount(index, weights=w, minlength=args.bins)
        squares = np.bincount(index, weights=w**2, minlength=args.bins)
        width = np.diff(edges)
        error = np.sqrt(np.maximum(squares - sums**2 / args.events, 0.0)) / width
        table = np.column_stack([edges[:-1], edges[1:], sums / width, error])
        np.savetxt(args.histogram, table, delimiter=",", header="lo,hi,p1,p1_err", comments="", fmt="%.17g")
    if args.out:
        group = np.repeat(np.arange(x.size), 2)
        events = {"x": np.column_stack([x, np.zeros_like(x)]).ravel(), "w1": np.column_stack([w, -w]).ravel(), "group": group}
        if args.out.endswith(".csv"):
            np.savetxt(args.out, np.column_stack([events["x"], events["w1"], group]), delimiter=",", header="x,w1,group", comments="", fmt=["%.17g", "%.17g", "%d"])
        else:
            np.savez(args.out, **events)
    if not (args.out or args.histogram):
        parser.error("give --out and/or --histogram")


if __name__ == "__main__":
    main()
