r"""Spec files (TOML or Python) and the problem object every other layer consumes."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import operator
import re
import runpy
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import sympy as sp

from ._errors import SpecError, one_line
from ._functions import SPECIAL_FUNCTIONS

__all__ = ["Problem", "make_problem", "load_spec", "to_toml", "parse_expression", "LIMITS", "Limits"]

@dataclass(frozen=True)
class Limits:
    r"""Bounds on what a spec may ask for, so that every input is refused or finishes in seconds.

    Each is checked before SymPy evaluates anything it bounds, and a violation is refused in one
    line that names the limit.

    Attributes:
        spec_bytes: Size of a spec file.
        expression_length: Characters of one expression string.
        expression_nodes: Syntax-tree nodes of one expression (numbers, names, operators, calls).
        expression_depth: Nesting depth of one expression; a chain of ``+``/``-`` or of
            ``*``/``/`` counts as one level, a power or a call as one more.
        integer: Magnitude of an integer literal (write larger numbers as floats, ``1e20``).
        exponent: Magnitude of a constant exponent.
        digits: Decimal digits of an exact rational power SymPy would compute (``10**10**10``).
        argument: Magnitude of a constant argument of ``gamma``, ``loggamma``, ``zeta`` and
            ``polylog`` (the functions marked ``exact``), which SymPy evaluates exactly
            (factorials, Bernoulli numbers).
        order: The perturbative order :math:`N`.
        expansion_nodes: Size (expression-tree nodes) of one α-derivative of the target
            during the expansion.
        seconds: Wall time of one symbolic step whose cost the input decides (the
            α-expansion, code generation); ``simplify`` and SymPy's ``solve`` get a tenth of
            it and are skipped when they run out (main thread only, see ``_budget``).
    """

    spec_bytes: int = 1 << 20
    expression_length: int = 20_000
    expression_nodes: int = 2_000
    expression_depth: int = 40
    integer: int = 10**15
    exponent: int = 1_000
    digits: int = 10_000
    argument: int = 1_000
    order: int = 6
    expansion_nodes: int = 100_000
    seconds: float = 20.0


LIMITS = Limits()


#: Named constants a spec string may use besides its own ``[constants]``.
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E, "EulerGamma": sp.EulerGamma, "oo": sp.oo}

_SINGULAR = ("lower", "upper", "none")
#: Problem names: they become part of file and module names, so a closed character set.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Pow: operator.pow}
_COMPARISONS = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
#: Operators that chain at one level of nesting: a + b - c is one sum, a * b / c one product.
_CHAINS = ((ast.Add, ast.Sub), (ast.Mult, ast.Div))


def _chain(node: ast.AST) -> tuple[type, ...] | None:
    if isinstance(node, ast.BinOp):
        for ops in _CHAINS:
            if isinstance(node.op, ops):
                return ops
    return None


def _operands(node: ast.BinOp) -> tuple[ast.AST, list[tuple[ast.operator, ast.AST]]]:
    r"""A left-nested chain ``a + b - c`` as its first operand and the (operator, operand) pairs."""
    ops, rest = _chain(node), []
    while _chain(node) == ops:
        rest.append((node.op, node.right))
        node = node.left
    return node, rest[::-1]


def _check_syntax(tree: ast.Expression, text: str, names: Mapping[str, Any], where: str) -> None:
    r"""Refuses anything but arithmetic, comparisons, calls of :data:`SPECIAL_FUNCTIONS` and known names.

    The check runs on the Python syntax tree, iteratively, and nothing is evaluated: the tree
    is then turned into SymPy by :func:`_build`, node by node, with no ``eval`` at all.
    """
    nodes = 0
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > LIMITS.expression_nodes:
            raise SpecError(f"{where}: the expression has more than {LIMITS.expression_nodes} terms, names and operators (the limit)")
        if depth > LIMITS.expression_depth:
            raise SpecError(f"{where}: the expression is nested more than {LIMITS.expression_depth} levels deep (the limit)")
        if isinstance(node, ast.Name):
            if node.id not in names:
                known = ", ".join(n for n in names if n not in SPECIAL_FUNCTIONS)
                raise SpecError(f"{where}: unknown name {node.id!r} in {_short(text)} (known: {known}, and functions such as log, exp, LambertW)")
            children: list[ast.AST] = []
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (bool, int, float)):
                raise SpecError(f"{where}: only numbers (and True, False as conditions) are allowed as literals in {_short(text)}")
            if isinstance(node.value, int) and abs(node.value) > LIMITS.integer:
                raise SpecError(f"{where}: an integer literal exceeds the limit {LIMITS.integer:.0e} in magnitude; write large numbers as floats (1e20)")
            children = []
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name):
                kind = "attribute access" if isinstance(node.func, ast.Attribute) else "calling an expression"
                raise SpecError(f"{where}: {kind} is not allowed in {_short(text)}")
            entry = SPECIAL_FUNCTIONS.get(node.func.id)
            if entry is None:
                raise SpecError(f"{where}: unknown function {node.func.id!r} in {_short(text)} (allowed: {', '.join(sorted(SPECIAL_FUNCTIONS))})")
            if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
                raise SpecError(f"{where}: only plain positional arguments are allowed in {_short(text)}")
            if len(node.args) not in entry.arity:
                counts = " or ".join(map(str, entry.arity)) if len(entry.arity) < 3 else f"{entry.arity[0]} to {entry.arity[-1]}"
                raise SpecError(f"{where}: {node.func.id} takes {counts} argument(s), got {len(node.args)} in {_short(text)}")
            for argument in node.args:
                if isinstance(argument, ast.Tuple) != entry.pairs:
                    paired = " and ".join(sorted(n for n, r in SPECIAL_FUNCTIONS.items() if r.pairs))
                    raise SpecError(f"{where}: {paired} takes (value, condition) pairs, and only {paired} takes pairs, in {_short(text)}")
                if isinstance(argument, ast.Tuple) and len(argument.elts) != 2:
                    raise SpecError(f"{where}: a {node.func.id} branch is a (value, condition) pair in {_short(text)}")
            children = [e for a in node.args for e in (a.elts if isinstance(a, ast.Tuple) else [a])]
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            if _chain(node):
                first, rest = _operands(node)
                children = [first] + [operand for _, operand in rest]
            else:
                children = [node.left, node.right]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            children = [node.operand]
        elif isinstance(node, ast.Compare):
            if not all(type(op) in _COMPARISONS for op in node.ops):
                raise SpecError(f"{where}: only <, <=, >, >= comparisons are allowed in {_short(text)}")
            children = [node.left, *node.comparators]
        elif isinstance(node, ast.Attribute):
            raise SpecError(f"{where}: attribute access is not allowed in {_short(text)}")
        else:
            raise SpecError(f"{where}: {type(node).__name__.lower()} is not allowed in {_short(text)}")
        stack.extend((child, depth + 1) for child in children)


def _short(text: Any, limit: int = 120) -> str:
    r"""``text`` (or the ``repr`` of a non-string) quoted for a one-line message, cut in the middle when long."""
    text = text if isinstance(text, str) else repr(text)
    return repr(text) if len(text) <= limit else repr(text[: limit // 2]) + " … " + repr(text[-limit // 2:])


def _number(value: sp.Expr) -> float | None:
    r"""The float value of a constant, ``None`` where it is not a real number (or too large for float)."""
    if value.free_symbols:
        return None
    try:
        number = complex(value.evalf(15))
    except (TypeError, ValueError, OverflowError):
        return None
    return number.real if number.imag == 0 else None


def _power(base: sp.Expr, exponent: sp.Expr, where: str) -> sp.Expr:
    r"""``base**exponent``, refused before SymPy computes an exact power too large to finish."""
    e = _number(exponent)
    if e is not None and abs(e) > LIMITS.exponent:
        raise SpecError(f"{where}: the exponent {sp.sstr(exponent)} exceeds the limit {LIMITS.exponent} in magnitude")
    if isinstance(base, sp.Rational) and isinstance(exponent, sp.Integer) and base not in (0, 1, -1):
        digits = abs(int(exponent)) * math.log10(max(abs(base.p), abs(base.q)))
        if digits > LIMITS.digits:
            raise SpecError(f"{where}: {sp.sstr(base)}**{sp.sstr(exponent)} has about {digits:.3g} digits, more than the limit {LIMITS.digits}")
    return base**exponent


def _call(name: str, arguments: list[Any], where: str) -> sp.Expr:
    record = SPECIAL_FUNCTIONS[name]
    if record.exact:
        for argument in arguments:
            value = _number(argument) if isinstance(argument, sp.Expr) else None
            if value is not None and abs(value) > LIMITS.argument:
                raise SpecError(f"{where}: {name} of {sp.sstr(argument)} exceeds the argument limit {LIMITS.argument} (SymPy evaluates it exactly)")
    # what NumPy and the torch kernels implement; anything else is refused here, not later
    reason = record.check(*arguments) if record.check is not None else None
    if reason is not None:
        raise SpecError(f"{where}: {reason}")
    return record.apply(*arguments)


def _build(node: ast.AST, names: Mapping[str, Any], where: str) -> Any:
    r"""The SymPy object of a checked syntax tree (see :func:`_check_syntax`); depth is bounded there."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return sp.true if node.value else sp.false
        return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.UnaryOp):
        operand = _build(node.operand, names, where)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        if not _chain(node):
            return _power(_build(node.left, names, where), _build(node.right, names, where), where)
        first, rest = _operands(node)
        value = _build(first, names, where)
        for op, operand in rest:
            value = _BINARY[type(op)](value, _build(operand, names, where))
        return value
    if isinstance(node, ast.Compare):
        values = [_build(n, names, where) for n in (node.left, *node.comparators)]
        relations = [_COMPARISONS[type(op)](lhs, rhs) for op, lhs, rhs in zip(node.ops, values, values[1:])]
        return sp.And(*relations) if len(relations) > 1 else relations[0]
    # a call (the only node left after the check)
    arguments = [tuple(_build(e, names, where) for e in a.elts) if isinstance(a, ast.Tuple) else _build(a, names, where) for a in node.args]
    return _call(node.func.id, arguments, where)


def _check_finite(expr: sp.Basic, text: str, where: str, infinite: bool = False) -> None:
    r"""Refuses undefined values (``1/0``, ``0/0``), infinities and constants beyond float64."""
    undefined = (sp.zoo, sp.nan) if infinite else (sp.zoo, sp.nan, sp.oo, -sp.oo)
    if expr.has(*undefined):
        raise SpecError(f"{where}: {_short(text)} is undefined or infinite ({_short(sp.sstr(expr))}): a division by zero, or a number beyond the floating-point range")
    if infinite and expr in (sp.oo, -sp.oo):
        return
    stack = [expr]
    while stack:
        node = stack.pop()
        if not isinstance(node, sp.Expr):
            stack.extend(node.args)
        elif not node.free_symbols:
            if node.is_Number:
                continue
            value = node.evalf(15)
            if value.is_Number and value.is_finite and abs(value) > 1e300:
                raise SpecError(f"{where}: the constant {_short(sp.sstr(node))} = {sp.sstr(value)} is beyond the floating-point range")
        else:
            stack.extend(node.args)


def parse_expression(text: str, names: Mapping[str, Any], where: str, infinite: bool = False) -> sp.Expr:
    r"""Parses a spec string into a SymPy expression in a closed namespace, within :data:`LIMITS`.

    The string is parsed as a Python expression and checked node by node (arithmetic,
    comparisons, calls of :data:`SPECIAL_FUNCTIONS`, known names, numbers) before anything is built;
    the SymPy expression is then constructed from the syntax tree directly. No ``eval``, no
    ``sympify`` of text, no attribute access: nothing in the string can run.

    Arguments:
        text: The expression, e.g. ``"alpha*CF/pi/x"``; ``^`` is read as a power.
        names: The symbols and constants the string may use (functions come from
            :data:`SPECIAL_FUNCTIONS`, constants from :data:`CONSTANTS`).
        where: The field name for error messages, e.g. ``"target.density"``.
        infinite: Whether the value may be ``oo`` (a support endpoint).

    Returns:
        The expression. Raises :class:`SpecError` naming ``where`` and ``text`` otherwise.
    """
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        raise SpecError(f"{where}: expected an expression string, got {_short(text)}")
    text = str(text).strip()
    if len(text) > LIMITS.expression_length:
        raise SpecError(f"{where}: the expression is {len(text)} characters long, more than the limit {LIMITS.expression_length}")
    if not text:
        raise SpecError(f"{where}: empty expression")
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as error:
        raise SpecError(f"{where}: cannot parse {_short(text)}: {error.msg} at column {error.offset}") from None
    except ValueError as error:  # e.g. an integer literal too long to convert
        raise SpecError(f"{where}: cannot parse {_short(text)}: {_short(str(error))}") from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{where}: the expression is nested too deeply to parse (limit {LIMITS.expression_depth} levels)") from None
    namespace = {**{n: r.sympy for n, r in SPECIAL_FUNCTIONS.items()}, **CONSTANTS, **names}
    _check_syntax(tree, text, namespace, where)
    try:
        value = _build(tree.body, namespace, where)
    except SpecError:
        raise
    except Exception as error:  # SymPy raises many types for malformed input
        raise SpecError(f"{where}: cannot evaluate {_short(text)}: {_short(str(error))}") from None
    if not isinstance(value, sp.Expr):
        raise SpecError(f"{where}: {_short(text)} is not an expression")
    _check_finite(value, text, where, infinite)
    return value


@dataclass(frozen=True)
class Problem:
    r"""A matching problem: target :math:`p^N(x|\alpha)`, matching function :math:`f` and kernel.

    Build it with :func:`make_problem` or :func:`load_spec`, which validate every field.

    Attributes:
        name: Short identifier, used in file names.
        x: The observable, a SymPy symbol (positive when the support is).
        coupling: The coupling :math:`\alpha`, a positive SymPy symbol.
        support: The interval :math:`(a, b)`; ``b`` may be ``oo``.
        singular: Which endpoint carries the δ and plus distributions: ``lower``, ``upper`` or ``none``.
        order: The perturbative order :math:`N` of the target.
        density: :math:`p^N(x|\alpha)` as given (may contain running couplings).
        f: The matching function of the symbol :attr:`q`.
        f_kind: ``linear``, ``log`` or ``custom``.
        weight: :math:`w = 1/(2C^2)` as a function of ``x`` and ``coupling``.
        coupling_range: The :math:`\alpha` range used for training and checks.
        constants: The spec's named constants, already substituted everywhere.
        source: The spec file the problem came from, if any.
        training: The spec's other ``[train]`` settings (names of ``renorm.runtime.TrainConfig``,
            checked by the runtime, which owns that list); not part of :attr:`sha256`.
        data: The numeric sources (``events`` or ``histogram`` files, with their fits) that
            orders of :attr:`density` were fitted from; not part of :attr:`sha256`, which the
            fitted density already fixes.
    """

    name: str
    x: sp.Symbol
    coupling: sp.Symbol
    support: tuple[sp.Expr, sp.Expr]
    singular: str
    order: int
    density: sp.Expr
    f: sp.Expr
    f_kind: str
    weight: sp.Expr
    coupling_range: tuple[float, float]
    constants: dict[str, sp.Expr] = field(default_factory=dict)
    source: str | None = None
    training: dict[str, Any] = field(default_factory=dict)
    data: tuple[Any, ...] = ()

    #: The symbol :math:`q` in which :attr:`f` is written.
    q = sp.Symbol("q", positive=True)

    def __post_init__(self) -> None:
        # the name becomes part of file and module names, whichever way the problem was built
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SpecError(f"name: {_short(self.name)} is not a usable name: 1 to 64 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit")

    @property
    def C_squared(self) -> sp.Expr:
        r""":math:`C^2 = 1/(2w)`."""
        return 1 / (2 * self.weight)

    def where(self, field: str, message: str) -> str:
        r"""``message`` about a field, prefixed with the spec file where there is one."""
        return f"{one_line(self.source)}: {field}: {message}" if self.source else f"{field}: {message}"

    @property
    def support_floats(self) -> tuple[float, float]:
        return float(self.support[0]), float(self.support[1])

    @cached_property
    def sha256(self) -> str:
        r"""Hash of the canonical problem (not of the file: comments do not change it); computed once."""
        canonical = {
            "name": self.name, "x": self.x.name, "coupling": self.coupling.name,
            "support": [sp.srepr(e) for e in self.support], "singular": self.singular,
            "order": self.order, "density": sp.srepr(self.density), "f": sp.srepr(self.f),
            "weight": sp.srepr(self.weight), "coupling_range": list(self.coupling_range),
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()

    def interior_points(self, n: int = 64) -> np.ndarray:
        r"""Points strictly inside the support, dense towards the singular endpoint."""
        a, b = self.support_floats
        t = np.logspace(-8, 0, n + 1)[:-1] if self.singular != "none" else np.linspace(0, 1, n + 2)[1:-1]
        if math.isinf(b):
            return a + np.logspace(-8, 4, n)
        if math.isinf(a):
            return b - np.logspace(-8, 4, n)
        width = b - a
        return a + width * t if self.singular != "upper" else b - width * t


def _identifier(name: Any) -> bool:
    return isinstance(name, str) and name.isascii() and name.isidentifier() and not name.startswith("_")


def _symbol_for(name: str, positive: bool) -> sp.Symbol:
    return sp.Symbol(name, positive=True) if positive else sp.Symbol(name, real=True)


def _as_expr(value: Any, names: Mapping[str, Any], where: str, infinite: bool = False) -> sp.Expr:
    if isinstance(value, sp.Basic):
        # a Python spec's own SymPy object: the same finiteness rules as for a string
        if not isinstance(value, sp.Expr):
            raise SpecError(f"{where}: {_short(sp.sstr(value))} is not an expression")
        _check_finite(value, sp.sstr(value), where, infinite)
        return value
    return parse_expression(value, names, where, infinite)


def _check_free(expr: sp.Expr, allowed: set[sp.Symbol], where: str) -> None:
    extra = expr.free_symbols - allowed
    if extra:
        raise SpecError(f"{where}: unknown name {sorted(map(str, extra))[0]!r} in {_short(sp.sstr(expr))}")


def _matching_function(f: Any, q: sp.Symbol) -> tuple[sp.Expr, str]:
    r"""The spec's ``f`` and its kind: a named kind of :data:`~renorm.symbolic.MATCHING` (by name or
    by its expression), else ``custom`` for a strictly monotone expression in ``q``."""
    from ._matching import MATCHING  # it imports this module for Problem

    named = {kind: cls.expression(q) for kind, cls in MATCHING.items() if cls.expression(q) is not None}
    if isinstance(f, str) and f.strip() in named:
        return named[f.strip()], f.strip()
    expr = _as_expr(f, {"q": q}, "matching.f")
    _check_free(expr, {q}, "matching.f")
    for kind, form in named.items():
        if expr == form:
            return expr, kind
    derivative = sp.lambdify(q, sp.diff(expr, q), "numpy")
    grid = np.logspace(-12, 12, 97)
    with np.errstate(all="ignore"):
        slope = np.broadcast_to(np.asarray(derivative(grid), dtype=complex), grid.shape)
    real = np.isfinite(slope) & (np.abs(slope.imag) <= 1e-12 * np.abs(slope.real))
    if not real.all() or not ((slope.real > 0).all() or (slope.real < 0).all()):
        raise SpecError(f"matching.f: {_short(sp.sstr(expr))} is not strictly monotone and real for q > 0 (its derivative changes sign or vanishes)")
    return expr, "custom"


def make_problem(
    *,
    name: str,
    density: Any = None,
    x: Any = "x",
    coupling: Any = "alpha",
    support: tuple[Any, Any] = (0, 1),
    singular: str = "lower",
    order: int = 1,
    f: Any = "log",
    C: Any = None,
    weight: Any = None,
    coupling_range: tuple[float, float] = (0.05, 0.3),
    constants: Mapping[str, Any] | None = None,
    source: str | None = None,
    training: Mapping[str, Any] | None = None,
    events: str | Path | None = None,
    histogram: str | Path | None = None,
    base: str | Path | None = None,
) -> Problem:
    r"""Builds and validates a :class:`Problem` from strings or SymPy objects.

    Arguments:
        name: Identifier of the problem.
        density: :math:`p^N(x|\alpha)`, a string or SymPy expression; with ``events`` or
            ``histogram``, the orders known analytically (or omitted).
        events: Weighted Monte Carlo events (``.npz``, ``.csv`` or ``.parquet``): a column named
            after ``x`` and weights ``w0`` … ``wN`` (see :func:`~renorm.symbolic.read_events`).
        histogram: Per-order bin averages: a CSV ``lo,hi,p1,p1_err,…`` or a YODA file (see
            :func:`~renorm.symbolic.read_histogram`).
        base: The folder relative data paths are read from (a spec's own folder).
        x: The observable's name (or SymPy symbol).
        coupling: The coupling's name (or SymPy symbol).
        support: Endpoints :math:`(a, b)`, strings or numbers; ``"oo"`` allowed.
        singular: ``lower``, ``upper`` or ``none``.
        order: The order :math:`N \ge 0`.
        f: ``linear``, ``log`` or a monotone expression in ``q``.
        C: The kernel :math:`C(x, \alpha)` (default 1); exclusive with ``weight``.
        weight: :math:`w = 1/(2C^2)` directly.
        coupling_range: :math:`(\alpha_{min}, \alpha_{max})` with :math:`0 < \alpha_{min} < \alpha_{max}`.
        constants: Named constants, strings or SymPy numbers; may refer to earlier ones.
        source: The spec file, for messages.
        training: Training settings (the ``[train]`` table besides ``alpha_range``): plain
            numbers, strings, booleans or lists of numbers, checked by the runtime.

    Returns:
        The validated problem. Raises :class:`SpecError` naming the field otherwise.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"name: {_short(name)} is not a usable name: 1 to 64 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit")
    (x_name,), a_name = _variable_names([x], coupling)
    values = _constants(constants or {}, (x_name, a_name))
    ends = _support(support, values)
    lower, upper = float(ends[0]), float(ends[1])
    _check_shape(singular, order, lower, upper)

    xs = _symbol_for(x_name, positive=lower >= 0)
    alpha = sp.Symbol(a_name, positive=True)
    names = {**values, x_name: xs, a_name: alpha}

    def physics_expr(value: Any, where: str) -> sp.Expr:
        expr = _as_expr(value, names, where)
        expr = expr.subs({sp.Symbol(x_name): xs, sp.Symbol(x_name, real=True): xs, sp.Symbol(a_name): alpha, sp.Symbol(a_name, real=True): alpha})
        expr = expr.subs({sp.Symbol(k): v for k, v in values.items()})
        _check_free(expr, {xs, alpha}, where)
        return expr

    p = physics_expr(density, "target.density") if density is not None else sp.Integer(0)
    p, data = _with_data(p, events, histogram, base, x_name, (lower, upper), singular, order, xs, alpha)
    if density is None and not data:
        raise SpecError("target.density: missing (the [target] table needs a density, events or a histogram)")
    if alpha not in p.free_symbols:
        raise SpecError(f"target.density: {_short(sp.sstr(p))} does not depend on the coupling {a_name!r}")
    f_expr, f_kind = _matching_function(f, Problem.q)
    w = _weight(C, weight, physics_expr)
    problem = Problem(
        name=name, x=xs, coupling=alpha, support=ends, singular=singular, order=order,
        density=p, f=f_expr, f_kind=f_kind, weight=w, coupling_range=_coupling_range(coupling_range),
        constants=values, source=source, training=_training(training or {}), data=data,
    )
    _check_weight(problem)
    return problem


def _with_data(p: sp.Expr, events: Any, histogram: Any, base: Any, x_name: str, support: tuple[float, float], singular: str,
               order: int, x: sp.Symbol, alpha: sp.Symbol) -> tuple[sp.Expr, tuple[Any, ...]]:
    r"""The formula ``p`` plus the orders a data file gives, each times :math:`\alpha^n`, and the file's provenance."""
    given = [(kind, path) for kind, path in (("events", events), ("histogram", histogram)) if path is not None]
    if not given:
        return p, ()
    if len(given) > 1:
        raise SpecError("target: give events or a histogram, not both")
    from ._fit import numeric_orders  # reads and fits only for numeric targets

    kind, path = given[0]
    if not isinstance(path, (str, Path)) or not str(path):
        raise SpecError(f"target.{kind}: expected a file name, got {_short(path)}")
    path = Path(path)
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    orders, source = numeric_orders(kind, path, x_name, support, singular, order, x)
    for n in orders:
        formula = sp.diff(p, alpha, n).subs(alpha, 0) / sp.factorial(n) if p != 0 else sp.Integer(0)
        if sp.expand(formula) != 0 and _nonzero(formula, x, support):
            raise SpecError(f"target: order {n} is given both by the density formula and by the {kind} file; give each order once")
    return p + sp.Add(*(alpha**n * expr for n, expr in orders.items())), (source,)


def _nonzero(expr: sp.Expr, x: sp.Symbol, support: tuple[float, float]) -> bool:
    a, b = support
    points = np.linspace(a, b, 23)[1:-1] if math.isfinite(b) else a + np.logspace(-3, 3, 21)
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(sp.lambdify(x, expr, "numpy")(points), dtype=complex), points.shape)
    return bool(np.any(values != 0))


def _variable_names(variables: list[Any], coupling: Any) -> tuple[tuple[str, ...], str]:
    r"""The names of the observables and the coupling, refused if unusable or equal."""
    names = tuple(x.name if isinstance(x, sp.Symbol) else x for x in variables)
    a_name = coupling.name if isinstance(coupling, sp.Symbol) else coupling
    for field_name, value in [("target.x", x) for x in names] + [("target.alpha", a_name)]:
        if not _identifier(value) or value in SPECIAL_FUNCTIONS or value in CONSTANTS:
            raise SpecError(f"{field_name}: {_short(value)} is not a usable symbol name (an ASCII identifier not starting with '_', not a function or constant name)")
    if a_name in names:
        raise SpecError(f"target.alpha: the coupling and the variable are both called {a_name!r}")
    if len(set(names)) < len(names):
        raise SpecError(f"target.x: two variables are called the same in {_short(list(names))}")
    return names, a_name


def _constants(constants: Mapping[str, Any], reserved: tuple[str, ...]) -> dict[str, sp.Expr]:
    r"""The spec's named constants as SymPy numbers, each of which may refer to earlier ones
    (``reserved``: the names of the variables and the coupling)."""
    values: dict[str, sp.Expr] = {}
    for key, text in constants.items():
        if not _identifier(key) or key in reserved or key in SPECIAL_FUNCTIONS or key in CONSTANTS:
            raise SpecError(f"constants: {_short(key)} is not a usable constant name (an ASCII identifier not starting with '_', not a function, constant or variable name)")
        value = _as_expr(text, values, f"constants.{key}")
        if value.free_symbols:
            raise SpecError(f"constants.{key}: {_short(sp.sstr(value))} is not a number")
        values[str(key)] = value
    return values


def _support(support: Any, values: Mapping[str, sp.Expr], where: str = "target.support") -> tuple[sp.Expr, sp.Expr]:
    r"""The support's endpoints: real, increasing, finite at one end at least."""
    if not (isinstance(support, (list, tuple)) and len(support) == 2):
        raise SpecError(f"{where}: expected two endpoints like [\"0\", \"1/2\"], got {_short(support)}")
    ends = tuple(_as_expr(e, values, f"{where}[{i}]", infinite=True) for i, e in enumerate(support))
    if any(e.free_symbols for e in ends) or not all(e.is_extended_real for e in ends):
        raise SpecError(f"{where}: endpoints must be real numbers, got {_short(support)}")
    lower, upper = float(ends[0]), float(ends[1])
    if not lower < upper:
        raise SpecError(f"{where}: empty or reversed support [{sp.sstr(ends[0])}, {sp.sstr(ends[1])}]")
    if math.isinf(lower) and math.isinf(upper):
        raise SpecError(f"{where}: a support infinite at both ends is not supported yet; shift it to a half-line")
    return ends[0], ends[1]


def _check_shape(singular: Any, order: Any, lower: float, upper: float) -> None:
    r"""Refuses a singular endpoint that does not exist or is infinite, and an order outside 0 … the limit."""
    if singular not in _SINGULAR:
        raise SpecError(f"target.singular: expected one of {', '.join(_SINGULAR)}, got {_short(singular)}")
    if (singular == "lower" and math.isinf(lower)) or (singular == "upper" and math.isinf(upper)):
        raise SpecError(f"target.singular: the {singular} endpoint is infinite; δ and plus distributions need a finite endpoint")
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise SpecError(f"target.order: expected an integer N >= 0, got {_short(order)}")
    if order > LIMITS.order:
        raise SpecError(f"target.order: {order} exceeds the limit {LIMITS.order}")


def _weight(C: Any, weight: Any, physics_expr: Any) -> sp.Expr:
    r""":math:`w = 1/(2C^2)`, from ``weight`` or from ``C`` (default 1), never both."""
    if C is not None and weight is not None:
        raise SpecError("matching: give either C or weight, not both")
    if weight is not None:
        return physics_expr(weight, "matching.weight")
    c = physics_expr(1 if C is None else C, "matching.C")
    w = 1 / (2 * c**2)
    if w.has(sp.zoo, sp.nan):
        raise SpecError(f"matching.C: C = {_short(sp.sstr(c))} vanishes identically, so the weight 1/(2C^2) is infinite everywhere")
    return w


def _coupling_range(coupling_range: Any) -> tuple[float, float]:
    try:
        lo_alpha, hi_alpha = (float(v) for v in coupling_range)
    except (TypeError, ValueError):
        raise SpecError(f"train.alpha_range: expected two numbers, got {_short(coupling_range)}") from None
    if not 0 < lo_alpha < hi_alpha or not math.isfinite(hi_alpha):
        raise SpecError(f"train.alpha_range: need 0 < alpha_min < alpha_max, got {_short(list(coupling_range))}")
    return lo_alpha, hi_alpha


def _training(training: Mapping[str, Any]) -> dict[str, Any]:
    r"""The ``[train]`` settings as plain values (the runtime checks their names and ranges)."""
    settings = dict(training)
    for key, value in settings.items():
        plain = isinstance(value, (bool, int, float, str)) or (isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        if not _identifier(key) or not plain or (isinstance(value, str) and len(value) > 64):
            raise SpecError(f"train.{one_line(str(key))[:40]}: expected a number, a short string or a list of integers, got {_short(value)}")
    return settings


def _check_weight(problem: Problem) -> None:
    weight = sp.lambdify((problem.x, problem.coupling), problem.weight, "numpy")
    xs = problem.interior_points(32)[:, None]
    alphas = np.linspace(*problem.coupling_range, 5)[None, :]
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(weight(xs, alphas), dtype=complex), (xs.size, alphas.size))
    bad = ~np.isfinite(values) | (np.abs(values.imag) > 0) | (values.real < 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise SpecError(f"matching: the weight 1/(2C^2) = {_short(sp.sstr(problem.weight))} is {values[i, j]} at x={xs[i, 0]:.6g}, alpha={alphas[0, j]:.6g}; it must be real, finite and >= 0")


_TOML_KEYS = {
    "": {"name", "constants", "target", "matching", "train"},
    "target": {"x", "alpha", "support", "singular", "order", "density", "events", "histogram", "region"},
    "matching": {"f", "C", "weight"},
    "train": None,  # alpha_range, and the runtime's training settings (checked there)
}


def load_spec(path: str | Path, *, python: bool = True) -> Problem:
    r"""Loads a TOML spec, or a Python spec file that defines ``problem`` (see :func:`make_problem`).

    A TOML spec is data: its strings are parsed by :func:`parse_expression`, and nothing in it
    runs. A Python spec is code and runs as code, with the user's rights: load only files you
    trust.

    Arguments:
        path: The spec file, ``.toml`` or ``.py``.
        python: Whether a ``.py`` spec may run; ``False`` refuses it (run directories are
            data and are read this way).

    Every failure raises :class:`SpecError` with the file name, the field and the text.
    """
    path = Path(path)
    try:
        if path.suffix == ".py":
            if not python:
                raise SpecError("a Python spec is code; here only a TOML spec is read")
            if not path.is_file():
                raise SpecError("no such spec file")
            return _load_python(path)
        return _parse_toml(_read_spec(path), _default_name(path.stem), str(path))
    except SpecError as error:
        raise SpecError(f"{one_line(path)}: {error}") from None


def _read_spec(path: Path) -> str:
    r"""The text of a spec file, refused in one line if missing, unreadable, too large or not UTF-8."""
    try:
        if not path.is_file():
            raise SpecError("no such spec file")
        with open(path, "rb") as stream:
            data = stream.read(LIMITS.spec_bytes + 1)
    except OSError as error:
        raise SpecError(f"cannot read the spec: {error.strerror or error}") from None
    if len(data) > LIMITS.spec_bytes:
        raise SpecError(f"the spec file is larger than the limit of {LIMITS.spec_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(f"the spec is not UTF-8 text ({error.reason} at byte {error.start})") from None


def _default_name(stem: str) -> str:
    r"""A usable problem name from a file name: characters outside the name set become ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:64].lstrip("_.-")
    return name or "problem"


def _load_python(path: Path) -> Problem:
    try:
        namespace = runpy.run_path(str(path), run_name="renorm_spec")
    except Exception as error:  # the user's own code: report it in one line
        raise SpecError(f"error while running the Python spec: {type(error).__name__}: {_short(str(error))}") from None
    from ._multi import MultiProblem  # it imports this module

    problem = namespace.get("problem")
    if not isinstance(problem, (Problem, MultiProblem)):
        raise SpecError("a Python spec must define `problem = renorm.symbolic.make_problem(...)`")
    return problem


def _parse_toml(text: str, default_name: str, source: str | None) -> Problem:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"not valid TOML: {error}") from None
    except (RecursionError, MemoryError):
        raise SpecError("not valid TOML: nested too deeply") from None
    for table, allowed in _TOML_KEYS.items():
        section = data if not table else data.get(table, {})
        if not isinstance(section, dict):
            raise SpecError(f"{table}: expected a table")
        for key in section:
            if allowed is not None and key not in allowed:
                where = f"{table}.{key}" if table else key
                raise SpecError(f"{one_line(where[:80])}: unknown key (expected one of {', '.join(sorted(allowed))})")
    if not isinstance(data.get("constants", {}), dict):
        raise SpecError("constants: expected a table")
    target = data.get("target")
    if not isinstance(target, dict) or not {"density", "events", "histogram"} & set(target):
        raise SpecError("target.density: missing (the [target] table needs a density, events or a histogram)")
    matching = data.get("matching", {})
    train = data.get("train", {})
    common = dict(
        name=data.get("name", default_name), density=target.get("density"), coupling=target.get("alpha", "alpha"),
        singular=target.get("singular", "lower"), order=target.get("order", 1), f=matching.get("f", "log"), C=matching.get("C"),
        weight=matching.get("weight"), coupling_range=train.get("alpha_range", (0.05, 0.3)), constants=data.get("constants", {}),
        source=source, training={k: v for k, v in train.items() if k != "alpha_range"},
    )
    if isinstance(target.get("x"), list):
        from ._multi import make_multi_problem  # it imports this module

        for key in ("events", "histogram"):
            if key in target:
                raise SpecError(f"target.{key}: numeric targets in several variables are not supported yet (give a density formula)")
        return make_multi_problem(x=target["x"], support=target.get("support", [["0", "1"]] * len(target["x"])), region=target.get("region"), **common)
    if "region" in target:
        raise SpecError("target.region: a region needs several variables (x = [\"x1\", \"x2\"]); a one-dimensional support is its interval")
    return make_problem(
        events=target.get("events"), histogram=target.get("histogram"), base=Path(source).parent if source else None,
        x=target.get("x", "x"), support=target.get("support", ["0", "1"]), **common)


def _toml_string(text: str) -> str:
    # JSON's string escapes are TOML's basic-string escapes
    return json.dumps(text, ensure_ascii=True)


def to_toml(problem: Problem) -> str:
    r"""The problem as a TOML spec: data that :func:`load_spec` reads back to the same problem.

    Constants are already substituted, so the text has none. A run directory stores its
    problem this way (a Python spec's code never goes into it). A problem in two variables
    (:class:`~renorm.symbolic.MultiProblem`) is written with its box, and its region as one
    bound on :math:`x_2` per comparison.

    Raises:
        SpecError: If the text does not read back to the same problem (its hash differs), e.g.
            because it uses a function a TOML spec may not call.
    """
    from ._matching import matching_function  # it imports this module for Problem

    f = matching_function(problem).spec
    if isinstance(problem, Problem):
        variables = [f"x = {_toml_string(problem.x.name)}"]
        box = [f"support = [{', '.join(_toml_string(sp.sstr(e)) for e in problem.support)}]", f"singular = {_toml_string(problem.singular)}"]
    else:
        x2 = problem.variables[1].name
        variables = [f"x = [{', '.join(_toml_string(v.name) for v in problem.variables)}]"]
        box = [f"support = [{', '.join('[' + ', '.join(_toml_string(sp.sstr(e)) for e in ends) + ']' for ends in problem.support)}]",
               f"singular = [{', '.join(_toml_string(side) for side in problem.singular)}]"]
        if problem.region:
            bounds = (f"{x2} {'>=' if b.side == 'lower' else '<='} {sp.sstr(b.expr)}" for b in problem.region)
            box.append(f"region = [{', '.join(_toml_string(text) for text in bounds)}]")
    lines = [
        "# The problem of a renorm-flows run, stored as data (constants substituted).",
        *(f"# density fitted from {one_line(source.describe())}" for source in problem.data),
        f"name = {_toml_string(problem.name)}",
        "",
        "[target]",
        *variables,
        f"alpha = {_toml_string(problem.coupling.name)}",
        *box,
        f"order = {problem.order}",
        f"density = {_toml_string(sp.sstr(problem.density))}",
        "",
        "[matching]",
        f"f = {_toml_string(f)}",
        f"weight = {_toml_string(sp.sstr(problem.weight))}",
        "",
        "[train]",
        f"alpha_range = [{problem.coupling_range[0]!r}, {problem.coupling_range[1]!r}]",
        *(f"{key} = {json.dumps(value)}" for key, value in sorted(problem.training.items())),
        "",
    ]
    text = "\n".join(lines)
    try:
        again = _parse_toml(text, problem.name, None)
    except SpecError as error:
        raise SpecError(f"the problem {problem.name!r} cannot be written as a TOML spec: {error}") from None
    if again.sha256 != problem.sha256 or again.training != problem.training:
        raise SpecError(f"the problem {problem.name!r} cannot be written as a TOML spec: it does not read back to the same expressions")
    return text
