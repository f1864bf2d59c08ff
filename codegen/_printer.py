r"""The SymPy→torch function table (derived from the special-function records) and a strict torch printer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import sympy as sp
from sympy.codegen import cfunctions
from sympy.core.logic import fuzzy_and
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import AbstractPythonCodePrinter

from renorm.symbolic import SPECIAL_FUNCTIONS

from ._errors import CodegenError

__all__ = ["TorchPrinter"]

#: Generated modules import :mod:`renorm.runtime.special` under this name.
_SPECIAL_MODULE = "renorm.runtime.special"


@dataclass(frozen=True)
class Lowering:
    r"""How one SymPy function class becomes a torch call.

    Built from a :class:`renorm.symbolic.SpecialFunction` record (its ``torch``, ``safe``,
    ``complex`` and ``torch_arguments``), or one of the printer's own rules.

    Attributes:
        target: The callable as it is written in generated code: ``torch.…`` for torch,
            ``special.…`` for :mod:`renorm.runtime.special`, or any other importable dotted
            path (``package.module.function``), which the generated module then imports.
        safe: An argument at which the function and its derivative are finite. The branches
            of a ``Piecewise`` that are not taken are evaluated at this argument, so that
            their (discarded) gradients cannot be NaN.
        complex: Whether :attr:`target` accepts complex tensors.
        arguments: The arguments of the call from the SymPy arguments (``None``: all of them);
            raises ``ValueError`` for a form without a torch implementation.
    """

    target: str
    safe: float = 0.5
    complex: bool = False
    arguments: Callable[..., tuple[Any, ...]] | None = None

    @property
    def module(self) -> str:
        r"""The module the generated code must import for :attr:`target`."""
        head = self.target.rpartition(".")[0]
        return _SPECIAL_MODULE if head == "special" else head


#: Printing rules for SymPy functions that are not spec functions (a spec string cannot call
#: them; a Python spec, which is code, may build them). Spec functions come from
#: :data:`renorm.symbolic.SPECIAL_FUNCTIONS`; structural nodes (``Add``, ``Mul``, ``Pow``,
#: ``Piecewise``, ``Max``, ``Min``, relations) are lowered by the printer's methods.
_RULES: dict[type, Lowering] = {
    cfunctions.log1p: Lowering("torch.log1p", complex=True),
    cfunctions.expm1: Lowering("torch.expm1", complex=True),
    sp.floor: Lowering("torch.floor"),
    sp.ceiling: Lowering("torch.ceil"),
}


def lowerings() -> dict[type, Lowering]:
    r"""The SymPy→torch table: SymPy function class → :class:`Lowering`.

    Derived, at each call, from the records of :data:`renorm.symbolic.SPECIAL_FUNCTIONS` that
    have a torch target (extend it with :func:`renorm.symbolic.register_function`), and the
    printer's rules for the few SymPy functions no spec string calls. Anything absent is
    refused at generation time.
    """
    table = dict(_RULES)
    for record in SPECIAL_FUNCTIONS.values():
        cls = record.function_class
        if record.torch is not None and cls is not None:
            table[cls] = Lowering(record.torch, float(record.safe), record.complex, record.torch_arguments)
    return table


def _class_name(cls: Any) -> str:
    module = getattr(cls, "__module__", "")
    return cls.__name__ if not module or module.startswith("sympy.core.function") else f"{module}.{cls.__name__}"


def lowering(expr: sp.Basic) -> Lowering:
    r"""The table entry for a function application, or a :class:`CodegenError` naming its class.

    Arguments:
        expr: A SymPy function application such as ``LambertW(x)``.

    Returns:
        Its :class:`Lowering` (see :func:`lowerings`).
    """
    table = lowerings()
    for cls in type(expr).__mro__:
        if cls in (sp.Function, sp.core.function.AppliedUndef, sp.core.function.Application):
            break
        if cls in table:
            return table[cls]
    cls = type(expr)
    name = getattr(expr.func, "__name__", cls.__name__)
    raise CodegenError(
        f"unsupported function {name!r} (sympy class {_class_name(cls)}): add it with "
        f"renorm.symbolic.register_function(SpecialFunction({name!r}, {name}, numpy=..., torch=\"module.function\")) "
        "to map it to a NumPy and a torch function")


def fingerprint() -> str:
    r"""A deterministic summary of the function table, so cached modules follow changes to it."""
    def qualified(function: Any) -> str:
        return "" if function is None else f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"

    rows = [f"rule:{_class_name(cls)}={entry.target}@{entry.safe!r}/{entry.complex}" for cls, entry in _RULES.items()]
    for name, record in SPECIAL_FUNCTIONS.items():
        rows.append(f"{name}:{_class_name(record.sympy)}={record.torch}@{record.safe!r}/{record.complex}"
                    f"({qualified(record.torch_arguments)})")
    return ";".join(sorted(rows))


class Guard(sp.Function):
    r"""``Guard(condition, argument, safe)``: the argument where the condition holds, else ``safe``.

    The lowering of ``Piecewise`` wraps every singular operation of a branch in a guard with
    the branch's condition (the "double where"): ``torch.where`` differentiates both of its
    branches, and an untaken branch evaluated outside its domain (``log`` of a negative number,
    ``1/0``) would turn the zero gradient it receives into ``0 · ∞ = NaN``.
    """

    nargs = 3

    @classmethod
    def eval(cls, condition: sp.Basic, argument: sp.Basic, safe: sp.Basic) -> sp.Basic | None:
        if condition is sp.true:
            return argument
        if condition is sp.false:
            return safe
        return None

    def _eval_is_extended_real(self) -> bool | None:
        return fuzzy_and([self.args[1].is_extended_real, self.args[2].is_extended_real])


_STRUCTURE = (
    sp.Symbol, sp.Number, sp.NumberSymbol, sp.core.numbers.ComplexInfinity, sp.Add, sp.Mul, sp.Pow, sp.Piecewise, sp.Max, sp.Min,
    sp.core.relational.Relational, sp.And, sp.Or, sp.Not, sp.Xor, sp.logic.boolalg.BooleanAtom,
    sp.functions.elementary.piecewise.ExprCondPair, Guard,
)


class TorchPrinter(AbstractPythonCodePrinter):
    r"""Prints SymPy expressions as torch code: strict, table-driven, NaN-free gradients.

    Built on SymPy's Python code printer (not :mod:`sympy.printing.pytorch`, which imports torch:
    generating a module must not), with every torch construct printed here: function calls come
    only from the table (:func:`lowerings`), anything else raises
    :class:`CodegenError`; ``Max``/``Min`` become ``torch.maximum``/``torch.clamp``;
    ``Piecewise`` a chain of ``torch.where`` (its branches are guarded beforehand, see
    :class:`Guard`); integers stay integers, rationals are written ``p/q`` (Python's division
    rounds correctly) and other numbers as the ``repr`` of their float64 value.

    Arguments:
        names: How each symbol is written (function arguments, common subexpressions).
        scalars: Symbols that are Python floats in the generated code (hoisted constants).
        like: A tensor argument every generated function has, used to give a
            ``torch.where`` of two plain numbers the right dtype and device.
    """

    printmethod = "_renorm_torchcode"

    def __init__(self, names: Mapping[sp.Symbol, str], scalars: frozenset[sp.Symbol] = frozenset(), like: str = "x"):
        super().__init__({"fully_qualified_modules": True, "strict": True})
        self.names = dict(names)
        self.scalars = scalars
        self.like = like
        #: Modules (other than torch and renorm.runtime.special) the printed code needs.
        self.imports: set[str] = set()

    def code(self, expr: sp.Basic) -> str:
        r"""The torch expression for ``expr`` (one line of Python)."""
        return self._print(sp.sympify(expr))

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, sp.Basic):
            # every function application goes through the table, whatever print method
            # SymPy's torch printer may have for it
            if isinstance(expr, sp.Function) and not isinstance(expr, (sp.Piecewise, Guard, sp.Max, sp.Min)):
                return self._print_Function(expr)
            if not isinstance(expr, _STRUCTURE):
                raise CodegenError(
                    f"cannot generate torch code for {sp.sstr(expr)!r} (sympy class {_class_name(type(expr))}): "
                    "only arithmetic, powers, Piecewise, Max/Min, relations and the functions of renorm.symbolic.SPECIAL_FUNCTIONS are supported")
        return super()._print(expr, **kwargs)

    def is_scalar(self, expr: sp.Basic) -> bool:
        r"""Whether ``expr`` prints as a Python number rather than a tensor."""
        return expr.is_Number or expr in self.scalars or not (expr.free_symbols - self.scalars)

    # atoms -------------------------------------------------------------------------
    def _print_Symbol(self, expr: sp.Symbol) -> str:
        if expr not in self.names:
            raise CodegenError(f"unknown symbol {expr.name!r}: a generated function only knows {', '.join(sorted(self.names.values()))}")
        return self.names[expr]

    _print_Dummy = _print_Symbol

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Integer(self, expr: sp.Integer) -> str:
        # torch refuses Python ints beyond int64 as scalars; beyond 2**53 a float is as exact
        return str(expr.p) if abs(expr.p) <= 2**53 else repr(float(expr))

    def _print_NumberSymbol(self, expr: sp.NumberSymbol) -> str:
        return repr(float(expr))

    _print_Pi = _print_NumberSymbol
    _print_Exp1 = _print_NumberSymbol
    _print_EulerGamma = _print_NumberSymbol
    _print_Catalan = _print_NumberSymbol
    _print_GoldenRatio = _print_NumberSymbol

    def _print_Infinity(self, expr: sp.Basic) -> str:
        return "math.inf"

    def _print_NegativeInfinity(self, expr: sp.Basic) -> str:
        return "-math.inf"

    def _print_NaN(self, expr: sp.Basic) -> str:
        return "math.nan"

    def _print_ComplexInfinity(self, expr: sp.Basic) -> str:
        # SymPy's 1/0; here it arises as C² = 1/(2w) where w = 0, which is +inf
        return "math.inf"

    def _print_ImaginaryUnit(self, expr: sp.Basic) -> str:
        raise CodegenError("the expression contains the imaginary unit I: generated kernels are real (only log_p is complex)")

    def _print_BooleanTrue(self, expr: sp.Basic) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: sp.Basic) -> str:
        return "False"

    # functions ---------------------------------------------------------------------
    def _call(self, entry: Lowering, args: list[str]) -> str:
        if entry.module not in ("torch", _SPECIAL_MODULE) and not entry.module.startswith("torch."):
            self.imports.add(entry.module)
        return f"{entry.target}({', '.join(args)})"

    def _print_Function(self, expr: sp.Function) -> str:
        entry = lowering(expr)
        args = list(expr.args)
        if entry.arguments is not None:
            try:
                args = list(entry.arguments(*args))
            except ValueError as error:
                raise CodegenError(f"{error} in {sp.sstr(expr)!r}") from None
        if all(self.is_scalar(a) for a in args):
            # a function of constants only is hoisted by the generator; reaching here means
            # SymPy could not evaluate it to a number
            raise CodegenError(f"cannot evaluate the constant {sp.sstr(expr)!r} to a float")
        return self._call(entry, [self._print(a) for a in args])

    _print_Application = _print_Function

    def _print_Guard(self, expr: Guard) -> str:
        condition, argument, safe = expr.args
        return f"torch.where({self._print(condition)}, {self._print(argument)}, {self._print(safe)})"

    # structure ---------------------------------------------------------------------
    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        b = self._print(base)
        if exponent == sp.S.Half:
            return f"torch.sqrt({b})"
        if exponent == -sp.S.Half:
            return f"torch.rsqrt({b})"
        if exponent == 2:
            return f"torch.square({b})"
        if exponent == -1:
            return f"1/{self.parenthesize(base, PRECEDENCE['Pow'])}"
        if exponent == -2:
            return f"1/torch.square({b})"
        # torch.pow(b, n) with a Python int n is exact for integers; non-integer powers of
        # negative numbers are NaN (their principal value is complex)
        e = str(int(exponent)) if exponent.is_Integer else self._print(exponent)
        return f"torch.pow({b}, {e})"

    def _print_Rational(self, expr: sp.Rational) -> str:
        # Python folds p/q into the correctly rounded float at compile time
        return f"{expr.p}/{expr.q}"

    def _value(self, expr: sp.Basic) -> str:
        r"""A branch value for ``torch.where``: plain numbers become tensors like ``x``."""
        return f"torch.full_like({self.like}, {self._print(expr)})" if self.is_scalar(expr) else self._print(expr)

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        # Piecewise((e1, c1), (e2, c2), ..., (en, True)): the first true condition wins;
        # without a final True branch the value is NaN where no condition holds
        pairs = list(expr.args)
        if pairs[-1].cond is sp.true:
            last = pairs.pop().expr
            tail, tail_scalar = self._print(last), self.is_scalar(last)
        else:
            tail, tail_scalar = "math.nan", True
        for value, condition in reversed(pairs):
            # torch.where needs a tensor among its two values to fix dtype and device
            first = self._value(value) if tail_scalar and self.is_scalar(value) else self._print(value)
            tail, tail_scalar = f"torch.where({self._print(condition)}, {first}, {tail})", False
        return tail

    def _minmax(self, expr: sp.Basic, fold: str, bound: str, builtin: str) -> str:
        # torch.maximum/minimum and clamp differentiate only the selected argument; their
        # other argument is finite wherever the comparison is meaningful, so no double where
        tensors = [a for a in expr.args if not self.is_scalar(a)]
        scalars = [a for a in expr.args if self.is_scalar(a)]
        if not tensors:
            return f"{builtin}({', '.join(self._print(a) for a in scalars)})"
        out = self._print(tensors[0])
        for other in tensors[1:]:
            out = f"{fold}({out}, {self._print(other)})"
        if scalars:
            limit = self._print(scalars[0]) if len(scalars) == 1 else f"{builtin}({', '.join(self._print(a) for a in scalars)})"
            out = f"torch.clamp({out}, {bound}={limit})"
        return out

    def _print_Max(self, expr: sp.Max) -> str:
        return self._minmax(expr, "torch.maximum", "min", "max")

    def _print_Min(self, expr: sp.Min) -> str:
        return self._minmax(expr, "torch.minimum", "max", "min")

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        # Python's operators, which work with a tensor on either side (torch.gt does not)
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _logical(self, expr: sp.Basic, function: str) -> str:
        out = self._print(expr.args[0])
        for other in expr.args[1:]:
            out = f"{function}({out}, {self._print(other)})"
        return out

    def _print_And(self, expr: sp.And) -> str:
        return self._logical(expr, "torch.logical_and")

    def _print_Or(self, expr: sp.Or) -> str:
        return self._logical(expr, "torch.logical_or")

    def _print_Xor(self, expr: sp.Xor) -> str:
        return self._logical(expr, "torch.logical_xor")

    def _print_Not(self, expr: sp.Not) -> str:
        return f"torch.logical_not({self._print(expr.args[0])})"
