r"""What a run directory holds, read without torch: the command line refuses a missing directory or
spec copy in a fraction of a second, before the 1.5 s it takes to import torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from renorm.symbolic import RenormError, load_spec, one_line

__all__: list[str] = []

#: The flow and its training state.
CHECKPOINT = "checkpoint.pt"
#: The run directory's copy of the problem: always a TOML spec, which is data.
SPEC_COPY = "spec.toml"


def run_problem(directory: str | Path, problem: Any = None) -> Any:
    r"""The problem of the run in ``directory``: ``problem`` if given, else the directory's spec copy.

    Raises:
        RenormError: If there is no such directory, or (without ``problem``) no spec copy in it.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RenormError(f"{one_line(directory)}: no such run directory")
    if problem is not None:
        return problem
    # a run directory is data: its spec copy is read as TOML whatever it contains, and nothing
    # else in it is ever loaded as a spec
    copy = directory / SPEC_COPY
    if not copy.is_file():
        raise RenormError(
            f"{one_line(directory)}: no {SPEC_COPY} in the run directory (a run from a Python spec that TOML cannot express "
            "keeps none): pass the spec with --spec FILE")
    return load_spec(copy, python=False)
