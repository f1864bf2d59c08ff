r"""The durable state of a run directory: checksummed atomic checkpoints, the writer's lock, clean-up."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any, Iterator

import torch

from renorm.symbolic import MAPS, RenormError, one_line, write_atomic

from ._flow import ConditionalFlow

__all__ = ["Interrupted"]

#: Version of the checkpoint layout; 2 added the checksum, 3 trains a problem whose singular
#: endpoint is not 0 in the distance to it (format 2 is still read for every other problem).
FORMAT = 3
#: The formats this version reads.
_READABLE = (2, 3)
#: No checkpoint this tool writes comes near this (the default flow's is about 0.5 MB).
MAX_BYTES = 256 << 20
#: Temporary files of interrupted writes (write_atomic's ``.NAME.*.tmp``; ``.tmp-*.pt`` from before).
_ORPHANS = (".tmp-*.pt", ".*.tmp")
#: What a checkpoint holds, and the type of each entry.
_KEYS = {
    "format": int, "spec_sha256": str, "flow": dict, "state": dict, "optimizer": (dict, type(None)), "step": int,
    "phase": str, "config": dict, "history": list, "sampler": torch.Tensor, "best": dict, "checksum": str,
}
#: Bounds on the flow a checkpoint may describe, checked before the flow is built.
_SHAPE_LIMITS = {"degree": (1, 64), "transforms": (1, 16), "layers": (1, 8), "width": (1, 1024)}
#: The most weights a flow in two variables read from a checkpoint may have (it is built to check them).
_PLANE_PARAMETERS = 4_000_000


class Interrupted(KeyboardInterrupt):
    r"""Training stopped on SIGINT or SIGTERM after writing a checkpoint (a ``KeyboardInterrupt``).

    Attributes:
        signum: The signal.
        step: The step of the checkpoint written.
    """

    def __init__(self, signum: int, step: int, directory: Path):
        self.signum, self.step, self.directory = signum, step, directory
        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name} at step {step}; the checkpoint is in {one_line(directory)} (continue with --resume)")


def _feed(hasher: Any, value: Any) -> None:
    r"""Feeds ``value`` to ``hasher`` in a canonical form (dict keys sorted, types tagged)."""
    if isinstance(value, dict):
        hasher.update(b"{%d" % len(value))
        for key in sorted(value, key=repr):
            _feed(hasher, key)
            _feed(hasher, value[key])
    elif isinstance(value, (list, tuple)):
        hasher.update(b"[%d" % len(value) if isinstance(value, list) else b"(%d" % len(value))
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif value is None or isinstance(value, (bool, int, float, str)):
        hasher.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise RenormError(f"a checkpoint cannot hold a {type(value).__name__}")


def digest(state: dict) -> str:
    r"""SHA-256 of a checkpoint's content without its ``checksum`` entry (tensors by their bytes)."""
    hasher = hashlib.sha256()
    _feed(hasher, {k: v for k, v in state.items() if k != "checksum"})
    return hasher.hexdigest()


def save_checkpoint(state: dict, path: Path) -> None:
    r"""Writes ``state`` with its format and checksum to ``path`` atomically and durably.

    Through the project's one atomic writer (:func:`renorm.symbolic.write_atomic`: a
    temporary file in the same folder, flushed to disk, then ``os.replace``): readers see the
    old checkpoint or the new one, and a failed write (disk full, read-only) leaves the old one
    in place.

    Raises:
        RenormError: One line naming the path and the reason, if the write fails.
    """
    state = {**state, "format": FORMAT}
    state["checksum"] = digest(state)
    try:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_atomic(path, buffer.getvalue())
    except OSError as error:
        raise RenormError(f"cannot write the checkpoint {one_line(path)}: {error.strerror or error}") from None


def _check_plane_flow(description: dict, state: dict, where: str) -> None:
    r"""The checks of :func:`_check_flow` for a flow in two variables (:class:`~renorm.runtime.PlaneFlow`)."""
    from ._plane import PlaneFlow

    required = ("plane_map", "shift", "scale", "coupling_range", "degree", "transforms", "hidden")
    missing = [k for k in required if k not in description]
    if missing:
        raise RenormError(f"{where}: the flow description lacks {missing[0]!r}")
    plane = description["plane_map"]
    try:
        maps = [plane["first"], plane["second"]]
        known = all(isinstance(m, list) and len(m) == 3 and m[0] in MAPS and float(m[1]) < float(m[2]) for m in maps)
        shift, scale = [float(v) for v in description["shift"]], [float(v) for v in description["scale"]]
        lo, hi = (float(v) for v in description["coupling_range"])
    except (TypeError, ValueError, KeyError):
        raise RenormError(f"{where}: the flow description's maps, standardization or coupling range is not readable") from None
    if not (known and plane.get("kind") in ("box", "ratio", "scaled") and len(shift) == len(scale) == 2
            and all(math.isfinite(v) for v in shift + scale) and min(scale) > 0 and 0 < lo < hi and math.isfinite(hi)):
        raise RenormError(f"{where}: the flow description is out of range")
    _check_shape(description, where)
    # zuko's masked conditioners use torch.unique, which the meta device lacks: the flow is built
    # for real, so its size is bounded first (inputs x1, x2 and the context; 2 (degree + 1) outputs)
    widths = [3, *description["hidden"], 2 * (description["degree"] + 1)]
    if description["transforms"] * sum(a * b for a, b in zip(widths, widths[1:])) > _PLANE_PARAMETERS:
        raise RenormError(f"{where}: the flow the checkpoint describes has more than {_PLANE_PARAMETERS} parameters; not one this tool trains")
    expected = {k: tuple(v.shape) for k, v in PlaneFlow.rebuild(description, None).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if found != expected or len(found) != len(state):
        raise RenormError(f"{where}: the weights do not fit the flow the checkpoint describes")


def _check_shape(description: dict, where: str) -> None:
    r"""Refuses a network shape outside the limits."""
    hidden = description["hidden"]
    sizes = {"degree": description["degree"], "transforms": description["transforms"]}
    for name, value in sizes.items():
        lo_limit, hi_limit = _SHAPE_LIMITS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not lo_limit <= value <= hi_limit:
            raise RenormError(f"{where}: flow {name} {one_line(repr(value))[:40]} is outside {lo_limit}..{hi_limit}")
    layers, width = _SHAPE_LIMITS["layers"], _SHAPE_LIMITS["width"]
    if not (isinstance(hidden, (list, tuple)) and layers[0] <= len(hidden) <= layers[1]
            and all(isinstance(h, int) and not isinstance(h, bool) and width[0] <= h <= width[1] for h in hidden)):
        raise RenormError(f"{where}: flow hidden layers {one_line(repr(hidden))[:60]} are outside {layers[1]} layers of {width[0]}..{width[1]}")


def _check_flow(description: dict, state: dict, where: str) -> None:
    r"""Refuses a flow description out of range, or whose weights do not fit it, before building it."""
    if isinstance(description, dict) and "plane_map" in description:
        return _check_plane_flow(description, state, where)
    required = ("map", "support", "shift", "scale", "coupling_range", "context", "degree", "transforms", "hidden")
    missing = [k for k in required if k not in description]
    if missing:
        raise RenormError(f"{where}: the flow description lacks {missing[0]!r}")
    if description["map"] not in MAPS:
        raise RenormError(f"{where}: unknown support map {one_line(repr(description['map']))[:80]} (known: {', '.join(sorted(MAPS))})")
    try:
        a, b = (float(v) for v in description["support"])
        shift, scale = float(description["shift"]), float(description["scale"])
        lo, hi = (float(v) for v in description["coupling_range"])
    except (TypeError, ValueError):
        raise RenormError(f"{where}: the flow description's support, standardization or coupling range is not numeric") from None
    checks = [
        (a < b, "support"), (math.isfinite(shift) and math.isfinite(scale) and scale > 0, "standardization"),
        (math.isfinite(hi) and 0 < lo < hi, "coupling range"), (description["context"] in ("log", "linear"), "context"),
    ]
    for ok, name in checks:
        if not ok:
            raise RenormError(f"{where}: the flow description's {name} is out of range")
    _check_shape(description, where)
    # the module's parameter shapes, on the meta device: nothing is allocated
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ConditionalFlow.rebuild(description).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)}
    if found != expected or len(found) != len(state):
        raise RenormError(f"{where}: the weights do not fit the flow the checkpoint describes")


def _finite(state: dict | None) -> bool:
    return state is None or all(not v.is_floating_point() or bool(torch.isfinite(v).all()) for v in state.values() if isinstance(v, torch.Tensor))


def read_checkpoint(path: Path) -> dict:
    r"""A checkpoint, refused in one line unless it is whole, unaltered and describes a sane flow.

    In order, before anything large is allocated: the file's size, ``torch.load`` with
    ``weights_only=True``, the layout (every key, with its type), the checksum over all
    tensors and settings, the flow's shape (within bounds, and the weights fitting it, checked
    on the meta device) and finite weights. The settings (``config``) are checked by the caller.

    Raises:
        RenormError: Naming the path and what is wrong.
    """
    where = one_line(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise RenormError(f"{where}: cannot read the checkpoint: {error.strerror or error}") from None
    if size > MAX_BYTES:
        raise RenormError(f"{where}: {size} bytes, larger than any checkpoint this tool writes ({MAX_BYTES}); not a renorm checkpoint")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as error:  # a truncated, foreign or malicious file: weights_only refuses code
        raise RenormError(f"{where}: not a readable renorm checkpoint ({type(error).__name__}: {one_line(error)[:200]})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise RenormError(f"{where}: not a renorm checkpoint")
    if state["format"] not in _READABLE or isinstance(state["format"], bool):
        raise RenormError(f"{where}: checkpoint format {one_line(repr(state['format']))[:20]}, this version reads formats {_READABLE[0]} to {FORMAT} (format 1 had no checksum: train again)")
    for key, kind in _KEYS.items():
        if key not in state:
            raise RenormError(f"{where}: the checkpoint lacks {key!r}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool) and kind is int:
            raise RenormError(f"{where}: the checkpoint's {key!r} has the wrong type")
    unknown = sorted(set(state) - set(_KEYS))
    if unknown:
        raise RenormError(f"{where}: the checkpoint holds an unknown entry {one_line(repr(unknown[0]))[:60]}")
    try:
        intact = digest(state) == state["checksum"]
    except RenormError:
        intact = False
    if not intact:
        raise RenormError(f"{where}: the checkpoint is corrupted (its checksum does not match its content)")
    if state["step"] < 0 or state["phase"] not in ("main", "refine"):
        raise RenormError(f"{where}: the checkpoint's step or phase is out of range")
    _check_flow(state["flow"], state["state"], where)
    best = state["best"].get("state")
    if not _finite(state["state"]) or not (best is None or isinstance(best, dict) and _finite(best)):
        raise RenormError(f"{where}: the checkpoint holds non-finite weights")
    return state


def clean_orphans(directory: Path) -> list[Path]:
    r"""Removes the temporary files of interrupted writes (call while holding :func:`run_lock`)."""
    removed = []
    for pattern in _ORPHANS:
        for path in directory.glob(pattern):
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed.append(path)
    return removed


@contextlib.contextmanager
def run_lock(directory: Path) -> Iterator[None]:
    r"""Holds ``directory/.lock`` exclusively while a process writes the run.

    An advisory ``flock``: the kernel releases it when the process ends, however it ends, so a
    killed run never leaves a stale lock. A second writer is refused in one line; the same
    process may take it again (``renorm run`` holds it around ``train``).
    """
    key = str(directory.resolve())
    if key in _HELD:
        yield
        return
    path = directory / ".lock"
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RenormError(f"cannot write the run directory {one_line(directory)}: {error.strerror or error}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            owner = os.pread(handle, 32, 0).decode(errors="replace").strip()
            raise RenormError(f"{one_line(directory)} is being written by another process{f' (pid {owner})' if owner.isdigit() else ''}; wait for it or use another --out") from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
    finally:
        os.close(handle)  # releases the lock


#: Run directories this process holds the lock of.
_HELD: set[str] = set()


@contextlib.contextmanager
def deferred_signals() -> Iterator[list[int]]:
    r"""Turns SIGINT and SIGTERM into a request to stop, collected in the yielded list.

    Training checks the list after every step and stops cleanly with a checkpoint; a signal
    that arrives during a save is recorded, never raised, so it cannot abort the write. A
    second SIGINT outside a save still interrupts at once (the last checkpoint stays). Only in
    the main thread; elsewhere the list stays empty and signals behave as usual.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if received and signum == signal.SIGINT and not _SAVING:
            raise KeyboardInterrupt
        received.append(signum)

    for s in previous:
        signal.signal(s, handler)
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_SAVING: list[bool] = []


@contextlib.contextmanager
def saving() -> Iterator[None]:
    r"""Marks a checkpoint write, during which signals are only recorded (see :func:`deferred_signals`)."""
    _SAVING.append(True)
    try:
        yield
    finally:
        _SAVING.pop()
