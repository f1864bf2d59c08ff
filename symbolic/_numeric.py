r"""NumPy evaluation of SymPy expressions, with the special functions of the table (``_functions``)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import sympy as sp

from ._errors import RenormError
from ._functions import SPECIAL_FUNCTIONS

__all__ = ["numeric"]


def _namespace() -> list[Any]:
    r"""What ``lambdify`` evaluates with: the NumPy evaluators of :data:`SPECIAL_FUNCTIONS`, by SymPy class name, then NumPy."""
    return [{r.sympy.__name__: r.numpy for r in SPECIAL_FUNCTIONS.values() if r.numpy is not None}, "numpy"]


def numeric(expr: sp.Expr, args: Sequence[sp.Symbol]) -> Callable[..., np.ndarray]:
    r"""A vectorized NumPy function of ``args`` that evaluates ``expr`` (float64, no warnings)."""
    # 1/(2w) with w = 0 is SymPy's complex infinity; on the real line it is +inf
    fn = sp.lambdify(tuple(args), expr.xreplace({sp.zoo: sp.oo}), modules=_namespace())

    def evaluate(*values: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            try:
                out = fn(*values)
            except NameError as error:  # a function lambdify could not translate
                raise RenormError(f"{sp.sstr(expr)[:80]}: {error.name} has no NumPy evaluation (only the functions a TOML spec may call have one)") from None
        shape = np.broadcast_shapes(*(np.shape(v) for v in values))
        return np.broadcast_to(np.asarray(out), shape)

    return evaluate
