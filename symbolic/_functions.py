r"""The special functions a spec may call: one record each, from the spec string to the torch kernel."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np
import sympy as sp

from ._errors import RenormError, SpecError

__all__ = ["SpecialFunction", "SPECIAL_FUNCTIONS", "register_function", "unregister_function"]

#: A torch target: a dotted path such as ``torch.special.erf`` or ``special.lambertw``.
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


@dataclass(frozen=True)
class SpecialFunction:
    r"""A function a spec string may call, and how every layer evaluates it.

    The parser admits it by :attr:`name` (and :attr:`aliases`) with :attr:`arity` arguments and
    builds :attr:`sympy` of them; :func:`~renorm.symbolic.numeric` (the exact solutions, ``solve``)
    evaluates it with :attr:`numpy`; the generated kernels (``renorm.codegen``, and so training)
    call :attr:`torch`. Register a new one with :func:`register_function`.

    Attributes:
        name: The name a spec string calls, e.g. ``"LambertW"``.
        sympy: The SymPy function class the call builds (the printer and ``lambdify`` look it up
            by class), or the callable that builds the SymPy expression where that is no function
            class of its own (``sqrt`` is a power, ``Max`` is printed structurally).
        arity: The numbers of arguments it takes.
        numpy: The NumPy evaluator, called with the SymPy arguments as arrays (``None`` where
            SymPy's NumPy printer evaluates the class itself).
        torch: What the generated code calls, as a dotted path: ``torch.…``, ``special.…`` for
            :mod:`renorm.runtime.special`, or ``package.module.function`` of another importable
            module (imported by the generated module). ``None`` where the printer lowers the
            SymPy form itself (powers, ``Max``/``Min``, ``Piecewise``) or the function takes only
            numbers (folded into constants).
        safe: An argument at which the torch function and its derivative are finite: the
            untaken branches of a ``Piecewise`` are evaluated there, so that their discarded
            gradients cannot be NaN.
        complex: Whether :attr:`torch` accepts complex tensors (a custom f is also evaluated at
            p + 0i).
        aliases: Other spec names of the same function (``ln`` for ``log``).
        pairs: Whether its arguments are ``(value, condition)`` pairs (``Piecewise``).
        exact: Whether SymPy evaluates it exactly at numbers (factorials, Bernoulli numbers), so
            a constant argument is bounded by ``LIMITS.argument``.
        check: Called with the SymPy arguments; the reason they are refused (a form no layer
            implements), or ``None``.
        build: Builds the expression where that differs from calling :attr:`sympy`
            (``polylog(1, z) = -log(1 - z)``).
        torch_arguments: The arguments of the torch call, from the SymPy arguments (dropping a
            fixed order or branch); raises ``ValueError`` naming a form without a torch
            implementation. ``None`` passes them all.

    Example:
        >>> import scipy.special, sympy
        >>> record = SpecialFunction("erfinv", sympy.erfinv, numpy=scipy.special.erfinv, torch="torch.special.erfinv")
    """

    name: str
    sympy: Callable[..., Any]
    arity: tuple[int, ...] = (1,)
    numpy: Callable[..., Any] | None = None
    torch: str | None = None
    safe: float = 0.5
    complex: bool = False
    aliases: tuple[str, ...] = ()
    pairs: bool = False
    exact: bool = False
    check: Callable[..., str | None] | None = None
    build: Callable[..., Any] | None = None
    torch_arguments: Callable[..., tuple[Any, ...]] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        r"""Every spec name of the function: :attr:`name`, then :attr:`aliases`."""
        return (self.name, *self.aliases)

    @property
    def function_class(self) -> type | None:
        r""":attr:`sympy` where it is a SymPy function class (what printers look up), else ``None``."""
        return self.sympy if isinstance(self.sympy, type) and issubclass(self.sympy, sp.Function) else None

    def apply(self, *arguments: Any) -> Any:
        r"""The SymPy expression of a call (with arguments :attr:`check` accepts)."""
        return (self.build or self.sympy)(*arguments)


# NumPy evaluators of what NumPy lacks ---------------------------------------------------
def _scipy(name: str) -> Callable[..., Any]:
    r"""``scipy.special.<name>``, imported at the first call: the import takes 0.2 s, a quarter
    of the command line's start, and most commands (or refusals) never evaluate a special function."""
    def evaluate(*arguments: Any) -> Any:
        import scipy.special

        return getattr(scipy.special, name)(*arguments)

    evaluate.__name__ = name
    return evaluate


def lambertw(z: np.ndarray) -> np.ndarray:
    r"""Principal-branch Lambert W for real :math:`z \ge -1/e` (NaN below)."""
    z = np.asarray(z, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(z >= -np.exp(-1.0), _scipy("lambertw")(z).real, np.nan)


def _dilog(x: np.ndarray) -> np.ndarray:
    # scipy's spence(z) is Li2(1 - z)
    return _scipy("spence")(1.0 - np.asarray(x, dtype=float))


def _polylog(s: Any, x: np.ndarray) -> np.ndarray:
    if s == 2:
        return _dilog(x)
    if s == 1:
        return -np.log1p(-np.asarray(x, dtype=float))
    raise RenormError(f"polylog({s}, x) has no NumPy evaluation; only s = 1, 2 are supported")


def _heaviside(x: np.ndarray, h0: Any = 0.5) -> np.ndarray:
    return np.heaviside(x, h0)


# argument constraints: what NumPy and the torch kernels implement, refused when parsed -------
def _polylog_check(s: sp.Expr, z: sp.Expr) -> str | None:
    if z.free_symbols and s not in (1, 2):
        return f"polylog(s, z) of a variable z is implemented for s = 1 and 2 only, got s = {sp.sstr(s)}"
    if s.free_symbols:
        return "the order s of polylog(s, z) must be a number"
    return None


def _polylog_build(s: sp.Expr, z: sp.Expr) -> sp.Expr:
    # Li_1(z) = -log(1 - z), which every layer evaluates
    return -sp.log(1 - z) if s == 1 else sp.polylog(s, z)


def _polylog_torch(s: sp.Expr, z: sp.Expr) -> tuple[sp.Expr]:
    # SymPy rewrites the orders 1, 0, -1, ... into logs and rational functions
    if s != 2:
        raise ValueError(f"polylog of order {sp.sstr(s)}: only the dilogarithm polylog(2, z) has a torch implementation")
    return (z,)


def _zeta_check(*arguments: sp.Expr) -> str | None:
    if any(a.free_symbols for a in arguments):
        return "zeta takes a number (such as zeta(3)), not a function of the variables"
    return None


def _lambertw_check(z: sp.Expr, k: sp.Expr = sp.S.Zero) -> str | None:
    return None if k == 0 else "only the principal branch LambertW(z) = LambertW(z, 0) is implemented"


def _lambertw_torch(z: sp.Expr, k: sp.Expr = sp.S.Zero) -> tuple[sp.Expr]:
    if k != 0:
        raise ValueError(f"LambertW branch k = {k}: only the principal branch (k = 0) has a torch implementation")
    return (z,)


def _heaviside_check(x: sp.Expr, h0: sp.Expr = sp.S.Half) -> str | None:
    return "the value at zero of Heaviside(x, h0) must be a number" if h0.free_symbols else None


_MANY = tuple(range(1, 65))

#: The functions every layer implements (tests/symbolic/test_functions.py checks each against mpmath).
_BUILT_IN = (
    SpecialFunction("exp", sp.exp, torch="torch.exp", complex=True),
    SpecialFunction("sqrt", sp.sqrt),
    SpecialFunction("cbrt", sp.cbrt),
    SpecialFunction("sin", sp.sin, torch="torch.sin", complex=True),
    SpecialFunction("cos", sp.cos, torch="torch.cos", complex=True),
    SpecialFunction("tan", sp.tan, torch="torch.tan", complex=True),
    SpecialFunction("asin", sp.asin, torch="torch.asin", complex=True),
    SpecialFunction("acos", sp.acos, torch="torch.acos", complex=True),
    SpecialFunction("atan", sp.atan, torch="torch.atan", complex=True),
    SpecialFunction("sinh", sp.sinh, torch="torch.sinh", complex=True),
    SpecialFunction("cosh", sp.cosh, torch="torch.cosh", complex=True),
    SpecialFunction("tanh", sp.tanh, torch="torch.tanh", complex=True),
    SpecialFunction("asinh", sp.asinh, torch="torch.asinh", complex=True),
    SpecialFunction("acosh", sp.acosh, torch="torch.acosh", safe=2.0, complex=True),
    SpecialFunction("atanh", sp.atanh, torch="torch.atanh", complex=True),
    SpecialFunction("Abs", sp.Abs, torch="torch.abs", complex=True, aliases=("abs",)),
    SpecialFunction("sign", sp.sign, torch="torch.sign"),
    SpecialFunction("gamma", sp.gamma, numpy=_scipy("gamma"), torch="special.gamma", exact=True),
    # torch's lgamma is log|Γ|; SymPy's loggamma is complex for negative arguments
    SpecialFunction("loggamma", sp.loggamma, numpy=_scipy("gammaln"), torch="torch.lgamma", exact=True),
    SpecialFunction("erf", sp.erf, numpy=_scipy("erf"), torch="torch.special.erf"),
    SpecialFunction("erfc", sp.erfc, numpy=_scipy("erfc"), torch="torch.special.erfc"),
    SpecialFunction("log", sp.log, arity=(1, 2), torch="torch.log", complex=True, aliases=("ln",)),
    SpecialFunction("root", sp.root, arity=(2,)),
    SpecialFunction("atan2", sp.atan2, arity=(2,), torch="torch.atan2"),
    SpecialFunction("Max", sp.Max, arity=_MANY),
    SpecialFunction("Min", sp.Min, arity=_MANY),
    SpecialFunction("Heaviside", sp.Heaviside, arity=(1, 2), numpy=_heaviside, torch="special.heaviside", check=_heaviside_check),
    SpecialFunction("Piecewise", sp.Piecewise, arity=_MANY, pairs=True),
    SpecialFunction("LambertW", sp.LambertW, arity=(1, 2), numpy=lambertw, torch="special.lambertw",
                    check=_lambertw_check, torch_arguments=_lambertw_torch),
    SpecialFunction("polylog", sp.polylog, arity=(2,), numpy=_polylog, torch="special.dilog", exact=True,
                    check=_polylog_check, build=_polylog_build, torch_arguments=_polylog_torch),
    SpecialFunction("zeta", sp.zeta, numpy=_scipy("zeta"), exact=True, check=_zeta_check),
)

_TABLE: dict[str, SpecialFunction] = {name: record for record in _BUILT_IN for name in record.names}

#: Every function a spec string may call, by spec name (aliases included): the one table the
#: parser, :func:`~renorm.symbolic.numeric` and the torch printer read. Read-only; extend it with
#: :func:`register_function`.
SPECIAL_FUNCTIONS: Mapping[str, SpecialFunction] = MappingProxyType(_TABLE)


def _identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isascii() and name.isidentifier() and not name.startswith("_")


def register_function(record: SpecialFunction) -> SpecialFunction:
    r"""Adds a function that specs may call; it then parses, evaluates in NumPy and in the kernels.

    The record is checked here; its torch target is looked up when a generated module calls it
    (generating a module imports no torch).

    Arguments:
        record: The function (see :class:`SpecialFunction`).

    Returns:
        The record.

    Raises:
        SpecError: If a field is malformed or one of its names (or, for a record with a NumPy or
            torch evaluation, its SymPy class) is registered already.

    Example:
        >>> import scipy.special, sympy
        >>> record = register_function(SpecialFunction(
        ...     "erfinv", sympy.erfinv, numpy=scipy.special.erfinv, torch="torch.special.erfinv"))
        >>> unregister_function("erfinv")
    """
    from ._spec import CONSTANTS  # the parser's constant names (_spec imports this module)

    if not isinstance(record, SpecialFunction):
        raise SpecError(f"register_function: expected a SpecialFunction record, got {record!r}")
    where = f"register_function({record.name!r})"
    for name in record.names:
        if not _identifier(name) or name in CONSTANTS:
            raise SpecError(f"{where}: {name!r} is not a usable function name (an ASCII identifier not starting with '_', not a constant name)")
        if name in _TABLE:
            raise SpecError(f"{where}: {name!r} is registered already (unregister_function({_TABLE[name].name!r}) first)")
    if len(set(record.names)) != len(record.names):
        raise SpecError(f"{where}: a name is given twice in {record.names!r}")
    if not callable(record.sympy):
        raise SpecError(f"{where}: sympy must be a SymPy function class such as sympy.erfinv, got {record.sympy!r}")
    if not (isinstance(record.arity, tuple) and record.arity and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in record.arity)):
        raise SpecError(f"{where}: arity must be a non-empty tuple of argument counts such as (1,) or (1, 2), got {record.arity!r}")
    for field in ("numpy", "check", "build", "torch_arguments"):
        if getattr(record, field) is not None and not callable(getattr(record, field)):
            raise SpecError(f"{where}: {field} must be callable or None, got {getattr(record, field)!r}")
    if record.torch is not None and not (isinstance(record.torch, str) and _DOTTED.match(record.torch)):
        raise SpecError(f"{where}: torch must be a dotted path like 'torch.special.i0' or 'special.dilog', got {record.torch!r}")
    if isinstance(record.safe, bool) or not isinstance(record.safe, (int, float)) or not math.isfinite(record.safe):
        raise SpecError(f"{where}: safe must be a finite number, got {record.safe!r}")
    if not (isinstance(record.complex, bool) and isinstance(record.pairs, bool) and isinstance(record.exact, bool)):
        raise SpecError(f"{where}: complex, pairs and exact are True or False")
    if record.numpy is not None or record.torch is not None:
        cls = record.function_class
        if cls is None:
            raise SpecError(f"{where}: a function with a NumPy or torch evaluation needs a SymPy function class (sympy.erfinv, sympy.Function('name')), got {record.sympy!r}")
        other = next((r for r in _TABLE.values() if r.function_class is cls and (r.numpy is not None or r.torch is not None)), None)
        if other is not None:
            raise SpecError(f"{where}: the SymPy class {cls.__name__} is evaluated by {other.name!r} already")
    for name in record.names:
        _TABLE[name] = record
    return record


def unregister_function(name: str) -> None:
    r"""Removes a function added by :func:`register_function` (all its names).

    Arguments:
        name: Its :attr:`SpecialFunction.name`.

    Raises:
        SpecError: If no registered function has that name, or it is built in.
    """
    record = _TABLE.get(name)
    if record is None or record.name != name:
        raise SpecError(f"unregister_function: no function named {name!r} is registered")
    if any(record is r for r in _BUILT_IN):
        raise SpecError(f"unregister_function: {name!r} is built in")
    for alias in record.names:
        del _TABLE[alias]
