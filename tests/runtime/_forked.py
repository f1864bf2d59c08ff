r"""A command line run in a process forked from a server that has already imported SymPy.

Each hostile case is a fresh process that runs its command as ``python -m`` would, but it starts
from a fork-server that imported :mod:`renorm.symbolic` (SymPy, about 0.85 s of the 1.2 s a
refusal takes) once; torch is not imported there, so every child that needs it imports it
itself, after the fork. This module imports nothing heavy: the server preloads it.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import sys
import traceback

#: Imported once by the fork-server; ``__main__`` (pytest's) so that no child imports it again.
PRELOAD = ["__main__", "renorm.symbolic", __name__]


def context() -> multiprocessing.context.ForkServerContext:
    r"""The fork-server context, with :data:`PRELOAD` (the server starts at the first process)."""
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(PRELOAD)
    return forkserver


def run_module(program: str, argv: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    r"""Runs ``python -m program *argv`` in ``cwd`` with exactly ``env``, its standard input empty and
    its output in the files ``stdout`` and ``stderr``, and exits with its status (1 and a
    traceback for an uncaught exception, as the interpreter does)."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = [program, *argv]
    try:
        runpy.run_module(program, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 1
        if not isinstance(exit.code, (int, type(None))):
            print(exit.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
