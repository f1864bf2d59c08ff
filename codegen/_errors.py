r"""The code generator's error: printed by the command line as one line, exit code 2."""

from __future__ import annotations

from renorm.symbolic import RenormError

__all__ = ["CodegenError"]


class CodegenError(RenormError):
    r"""An expression cannot be turned into torch code (names the SymPy class and the fix)."""
