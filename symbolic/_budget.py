r"""Time budgets for SymPy operations whose cost the input decides (expansion, simplify, solve)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from typing import Callable, Iterator, TypeVar

__all__ = ["OverBudget", "budget"]

T = TypeVar("T")


class OverBudget(Exception):
    r"""Raised inside a :func:`budget` block when its time is up."""


def _expire(signum: int, frame: object) -> None:
    raise OverBudget()


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[None]:
    r"""Interrupts the block with :class:`OverBudget` after ``seconds`` of wall time.

    SymPy is pure Python, so a ``SIGALRM`` timer interrupts it between bytecodes. The timer is
    only available in the main thread and when nothing else handles ``SIGALRM``; elsewhere the
    block runs unbounded (the size limits on the input still apply). Budgets nest: an inner one
    never outlasts an outer one, and the outer one keeps what is left of its time.
    """
    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    handler = signal.getsignal(signal.SIGALRM) if usable else None
    if not usable or handler not in (signal.SIG_DFL, signal.SIG_IGN, None, _expire):
        yield
        return
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer and outer <= seconds:
        yield  # the enclosing budget ends first
        return
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))
        else:
            signal.signal(signal.SIGALRM, handler)


def within(seconds: float, fn: Callable[[], T], default: T) -> T:
    r"""``fn()``, or ``default`` if it does not finish within ``seconds`` (or recurses too deeply)."""
    try:
        with budget(seconds):
            return fn()
    except (OverBudget, RecursionError):
        return default
