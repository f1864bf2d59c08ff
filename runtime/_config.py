r"""The training settings: one dataclass whose fields are the spec's ``[train]`` keys and ``renorm``'s flags.

Importing this module loads no torch, so that the command line can build every command's flags
(each field's help and default) without it.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from renorm.symbolic import MAPS, RenormError

__all__ = ["TrainConfig", "TrainingStatus", "auto_floor"]


def _setting(default: Any, help: str, choices: tuple[str, ...] | None = None, parse: Any = None) -> Any:
    r"""A field with the help, choices and (where it is not the default's type) the parser of its command-line flag."""
    return field(default=default, metadata={"help": help, "choices": choices, "parse": parse or type(default)})


#: ``alpha_floor = auto`` puts the perturbative window's floor a factor :data:`AUTO_LEVER` below
#: the spec's α_min, and at most at :data:`WINDOW_FLOOR`; where that is below :data:`LOWEST_FLOOR`
#: there is no window (see :func:`auto_floor`).
WINDOW_FLOOR = 1e-3
AUTO_LEVER = 50.0
LOWEST_FLOOR = 1e-4


def auto_floor(alpha_min: float) -> float:
    r"""The window's floor of ``alpha_floor = auto`` below a spec's α_min (0: no window).

    The factor 50 is the measured window of the angularity, [1e-3, 0.05], over which the flow's
    orders pass across the bulk. Below 1e-4 there is none: q*'s Sudakov peak moves as
    :math:`\log x \sim -\sqrt{\pi/\alpha}`, to x ~ 1e-25 at α = 1e-3 and past what float64 holds
    (1e-308) near α = 1e-5, so the training grid could no longer integrate it; and a physical range
    that starts below 5e-3 is itself where q* is p to 1e-3 across the bulk, so the fit over it
    checks the whole bulk without a window.
    """
    floor = min(WINDOW_FLOOR, alpha_min / AUTO_LEVER)
    return floor if floor >= LOWEST_FLOOR else 0.0


def _coupling_floor(text: str) -> float | str:
    r"""``--alpha-floor``: ``auto`` or a number."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number, got {text!r:.60}") from None


@dataclass
class TrainConfig:
    r"""How to train. Defaults are the measured choice for the examples (see README).

    Attributes:
        epochs: Steps of the main optimizer.
        refine: Then this many L-BFGS steps on the same objective (each up to 20 evaluations
            with a strong-Wolfe line search; needs ``sampling = quadrature``; 0 = off). It
            stops early once a second grid's objective has not improved for 10 steps (with the
            window it takes all its steps: there the objective stalls and improves again), and
            keeps the best flow. Measured on the angularity: 100 Adam steps then L-BFGS reach a total
            variation 17-55x smaller than the seed's 2000 Adam steps, 7x faster (README).
        lr: Adam's learning rate (cosine-annealed to ``lr * 1e-2`` when ``schedule = cosine``).
        optimizer: ``adam`` or ``lbfgs`` (full-batch, needs ``sampling = quadrature``).
        mode: ``functional`` (the loss of DESIGN §1 on the generated kernels), ``distill``
            (forward KL from the exact minimizer q*), ``events`` (f = linear on a target given as
            events: the loss straight from the events, :math:`\int w q^2 - 2 E_p[w q]`, no density
            estimate), or ``auto``: distill where an exact minimizer exists, else the functional.
        sampling: ``quadrature`` (deterministic Gauss–Legendre nodes in the latent variable and in α)
            or ``monte-carlo`` (fresh uniform latent points and α each step).
        x_points, alpha_points: Quadrature nodes, or the Monte Carlo batch (the seed used 512 × 32),
            over the spec's ``alpha_range``.
        alpha_floor: The lowest coupling trained: the flow also learns the perturbative window
            [``alpha_floor``, α_min] below the spec's range, where :func:`~renorm.runtime.verify`
            compares its coefficients with :math:`p^n` (there :math:`q^*` is :math:`p` up to
            corrections below 1e-3 across the bulk). ``auto``: :func:`auto_floor` of α_min (1e-3
            for the examples) where the window applies, that is for a target in one variable,
            distilled from q* (``mode`` auto or distill, quadrature sampling) and with q* at the
            floor; 0 otherwise. ``auto`` is the default; 0 turns the window off. A run stores
            the floor it used.
        window_points: Coupling nodes in the window (Gauss–Legendre in log α, or its Monte Carlo batch).
        window_weight: The window's weight per unit of log α, relative to the physical range's (1:
            the couplings weighted uniformly in log α across both). Measured on the angularity: at 1 the window's
            2.2 times the physical range's weight costs it TV 1.3–1.6e-3 at α = 0.3 on three
            seeds; at 0.15 it keeps 7.8e-4–1.0e-3 and the orders are checked as well (README).
        plane_points, plane_couplings: For a target in two variables, the Gauss–Legendre nodes per
            latent coordinate (a tensor grid of panels of 8 nodes: rounded down to a multiple of 8,
            at least 16) and in log α (``x_points`` and ``alpha_points`` are those of one variable).
        relative_weight: With distillation and the window on, the weight of a second term that asks
            for relative accuracy across the physical bulk at the window's couplings: the mean over the bulk (in the
            latent variable) of :math:`\frac12 \log^2(q/q^*)`. At small α the bulk holds little of
            the probability, so the KL divergence alone barely sees it (README, "Verification").
        taylor_weight: Weight of the opt-in Taylor-operator loss Σ_n ∫|q^n - p^n|² (0 = off);
            it needs ``context = linear`` (q^n are derivatives at α = 0).
        context: How α enters the flow: ``log`` (default) or ``linear``.
        support_map: A name from :data:`~renorm.symbolic.MAPS`, or ``auto`` (:func:`~renorm.symbolic.default_map`).
        degree, transforms, hidden: The flow's shape (default: the seed's 8405 parameters).
        seed: Makes runs reproducible (initialization, sampling).
        dtype, device: ``float32``/``float64``; ``cpu``/``cuda``/``mps``.
        checkpoint_every, checkpoint_seconds: Write a checkpoint every this many steps or
            seconds, whichever comes first (and at the end, and on SIGINT/SIGTERM). A write takes
            6-8 ms (0.33 MB, flushed to disk): every 10 steps costs under 1% of a default run.
        schedule: ``cosine`` or ``constant``.
        threads: CPU threads of torch's operations while training (restored afterwards). Fixed,
            not the machine's core count, because it changes the order of floating-point sums:
            measured on the angularity, 1 thread gives another trajectory (142 steps, TV 8.9e-4 at
            α = 0.05) than 2 (199 steps, 6.3e-4), while 2 and 4 agree to the last digit.
    """

    epochs: int = _setting(100, "steps of the main optimizer")
    refine: int = _setting(100, "L-BFGS refinement steps after them, at most (stopping early; 0 = off, needed with monte-carlo)")
    lr: float = _setting(1e-2, "Adam's learning rate, cosine-annealed to 1%% of it")
    optimizer: str = _setting("adam", "the main optimizer", ("adam", "lbfgs"))
    mode: str = _setting("auto", "distill q* where it exists (auto), train on the loss functional, or (f = linear) on the events themselves",
                         ("auto", "functional", "distill", "events"))
    sampling: str = _setting("quadrature", "deterministic Gauss-Legendre nodes or fresh uniform points each step", ("quadrature", "monte-carlo"))
    x_points: int = _setting(128, "latent quadrature nodes (or the Monte Carlo batch); at least 64")
    alpha_points: int = _setting(32, "coupling nodes over the spec's alpha_range (or the Monte Carlo batch)")
    alpha_floor: float | str = _setting("auto", "lowest coupling trained: a perturbative window [alpha_floor, alpha_min] below the "
                                             "spec's range, where verify checks the orders across the bulk (auto: alpha_min/50, at most "
                                             "1e-3, where the window applies; 0: off)", parse=_coupling_floor)
    window_points: int = _setting(16, "coupling nodes in the perturbative window")
    window_weight: float = _setting(0.15, "the window's weight per unit of log alpha, relative to the physical range's (1: uniform in log alpha)")
    plane_points: int = _setting(64, "for a target in two variables: latent quadrature nodes per coordinate")
    plane_couplings: int = _setting(8, "for a target in two variables: coupling nodes over the spec's alpha_range")
    relative_weight: float = _setting(1.0, "weight of the relative-accuracy term of distillation over the bulk, in the window (0: off)")
    taylor_weight: float = _setting(0.0, "weight of the opt-in Taylor-operator loss (0: off; needs --context linear)")
    context: str = _setting("log", "how alpha enters the flow", ("log", "linear"))
    support_map: str = _setting("auto", "the bijection from the support to the real line: auto, or a name of renorm.symbolic.MAPS")
    degree: int = _setting(16, "degree of the Bernstein polynomials")
    transforms: int = _setting(5, "number of Bernstein transforms")
    hidden: tuple[int, ...] = _setting((32, 32), "hidden layer widths of the conditioner")
    seed: int = _setting(0, "random seed")
    dtype: str = _setting("float64", "the training precision", ("float32", "float64"))
    device: str = _setting("cpu", "cpu, cuda or mps")
    checkpoint_every: int = _setting(10, "write a checkpoint every N steps")
    schedule: str = _setting("cosine", "the main phase's learning-rate schedule", ("cosine", "constant"))
    checkpoint_seconds: float = _setting(30.0, "... and at least every T seconds")
    threads: int = _setting(2, "CPU threads while training, whatever the machine: the count changes the order of sums, "
                               "so results are reproducible only at a fixed count")

    def validate(self, devices: bool = True) -> None:
        r"""Refuses settings of the wrong type or out of range (and, with ``devices``, an absent device)."""
        for item in dataclasses.fields(self):
            value, kind = getattr(self, item.name), type(item.default)
            if item.name == "alpha_floor":
                ok = value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
            elif item.name == "hidden":
                ok = isinstance(value, tuple) and all(isinstance(h, int) and not isinstance(h, bool) for h in value)
            elif kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            else:
                ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
            if not ok:
                wanted = {"hidden": "a tuple of integers", "alpha_floor": "auto or a number"}.get(item.name, f"a {kind.__name__}")
                raise RenormError(f"{item.name} must be {wanted}, got {value!r:.60}")

        checks = [
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.refine >= 0, f"refine must be >= 0, got {self.refine}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be positive, got {self.lr}"),
            (self.optimizer in ("adam", "lbfgs"), f"optimizer must be adam or lbfgs, got {self.optimizer!r}"),
            (self.mode in ("auto", "functional", "distill", "events"), f"mode must be auto, functional, distill or events, got {self.mode!r}"),
            (self.sampling in ("quadrature", "monte-carlo"), f"sampling must be quadrature or monte-carlo, got {self.sampling!r}"),
            (not (self.optimizer == "lbfgs" and self.sampling != "quadrature"), "lbfgs needs deterministic quadrature sampling"),
            (not (self.mode == "distill" and self.sampling != "quadrature"), "distill needs quadrature sampling (q* is tabulated on the grid)"),
            (self.refine == 0 or self.sampling == "quadrature", "L-BFGS refinement needs deterministic quadrature sampling: pass refine 0 (--refine 0) with monte-carlo"),
            (self.x_points >= 64 and self.alpha_points >= 1, "x_points >= 64 and alpha_points >= 1 are needed"),
            (self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}"),
            (self.schedule in ("cosine", "constant"), f"schedule must be cosine or constant, got {self.schedule!r}"),
            (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
            (self.checkpoint_seconds > 0, "checkpoint_seconds must be > 0"),
            (1 <= self.threads <= 256, f"threads must be 1..256, got {self.threads}"),
            (1 <= self.degree <= 64 and 1 <= self.transforms <= 16, f"degree must be 1..64 and transforms 1..16, got {self.degree}, {self.transforms}"),
            (1 <= len(self.hidden) <= 8 and all(1 <= h <= 1024 for h in self.hidden), f"hidden must be 1 to 8 layers of 1..1024, got {self.hidden}"),
            (self.x_points <= 100_000 and self.alpha_points <= 10_000, "x_points <= 100000 and alpha_points <= 10000 are the limits"),
            (self.taylor_weight >= 0, "taylor_weight must be >= 0"),
            (self.alpha_floor == "auto" or 0 <= self.alpha_floor < 1, f"alpha_floor must be auto or in [0, 1), got {self.alpha_floor}"),
            (1 <= self.window_points <= 10_000, f"window_points must be 1..10000, got {self.window_points}"),
            (0 < self.window_weight <= 1e3, f"window_weight must be in (0, 1000], got {self.window_weight}"),
            (8 <= self.plane_points <= 1024 and 1 <= self.plane_couplings <= 256, f"plane_points must be 8..1024 and plane_couplings 1..256, got {self.plane_points}, {self.plane_couplings}"),
            (self.relative_weight >= 0, "relative_weight must be >= 0"),
            (self.context in ("log", "linear"), f"context must be log or linear, got {self.context!r}"),
            (self.support_map == "auto" or self.support_map in MAPS, f"support_map must be auto or one of {', '.join(sorted(MAPS))}, got {self.support_map!r}"),
            (self.taylor_weight == 0 or self.context == "linear", "the Taylor-operator loss needs --context linear: a log-α context is undefined at α = 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise RenormError(message)
        if not devices:
            return
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RenormError("device cuda requested but torch sees no CUDA device")
        if self.device == "mps" and not torch.backends.mps.is_available():
            raise RenormError("device mps requested but torch sees no MPS device")

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        r"""The inverse of :meth:`to_json`; unknown keys are refused, missing ones take their defaults."""
        data = dict(data)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise RenormError(f"unknown setting {unknown[0]!r:.60}")
        if isinstance(data.get("hidden"), list):
            data["hidden"] = tuple(data["hidden"])
        return cls(**data)


@dataclass
class TrainingStatus:
    r"""Passed to the progress callback after every step."""

    step: int
    epochs: int
    loss: float
    elapsed: float

