r"""NumPy evaluation of SymPy expressions, with the special functions NumPy lacks."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.special as special
import sympy as sp

from ._errors import RenormError

__all__ = ["numeric", "lambertw"]


def lambertw(z: np.ndarray) -> np.ndarray:
    r"""Principal-branch Lambert W for real :math:`z \ge -1/e` (NaN below)."""
    z = np.asarray(z, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(z >= -np.exp(-1.0), special.lambertw(z).real, np.nan)


def _dilog(x: np.ndarray) -> np.ndarray:
    # scipy's spence(z) is Li2(1 - z)
    return special.spence(1.0 - np.asarray(x, dtype=float))


def _polylog(s, x):
    if s == 2:
        return _dilog(x)
    if s == 1:
        return -np.log1p(-np.asarray(x, dtype=float))
    raise RenormError(f"polylog({s}, x) has no NumPy evaluation; only s = 1, 2 are supported")


_MODULES = [{"LambertW": lambertw, "polylog": _polylog, "gamma": special.gamma, "loggamma": special.gammaln,
             "erf": special.erf, "erfc": special.erfc, "zeta": special.zeta,
             "Heaviside": lambda x, h0=0.5: np.heaviside(x, h0)}, "numpy"]


def numeric(expr: sp.Expr, args: Sequence[sp.Symbol]) -> Callable[..., np.ndarray]:
    r"""A vectorized NumPy function of ``args`` that evaluates ``expr`` (float64, no warnings)."""
    # 1/(2w) with w = 0 is SymPy's complex infinity; on the real line it is +inf
    fn = sp.lambdify(tuple(args), expr.xreplace({sp.zoo: sp.oo}), modules=_MODULES)

    def evaluate(*values: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            try:
                out = fn(*values)
            except NameError as error:  # a function lambdify could not translate
                raise RenormError(f"{sp.sstr(expr)[:80]}: {error.name} has no NumPy evaluation (only the functions a TOML spec may call have one)") from None
        shape = np.broadcast_shapes(*(np.shape(v) for v in values))
        return np.broadcast_to(np.asarray(out), shape)

    return evaluate
