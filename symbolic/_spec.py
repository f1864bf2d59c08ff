r"""Spec files (TOML or Python) and the problem object every other layer consumes."""

from __future__ import annotations

import ast
import hashlib
import json
import math
import runpy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import sympy as sp
from sympy.parsing.sympy_parser import auto_number, parse_expr

from ._errors import SpecError

__all__ = ["Problem", "make_problem", "load_spec", "parse_expression", "FUNCTIONS", "CONSTANTS"]

#: SymPy functions a spec string may call. Anything else is refused at load time.
FUNCTIONS: dict[str, Any] = {
    "log": sp.log, "ln": sp.log, "exp": sp.exp, "sqrt": sp.sqrt, "cbrt": sp.cbrt, "root": sp.root,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "asin": sp.asin, "acos": sp.acos,
    "atan": sp.atan, "atan2": sp.atan2, "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh,
    "asinh": sp.asinh, "acosh": sp.acosh, "atanh": sp.atanh,
    "Abs": sp.Abs, "abs": sp.Abs, "sign": sp.sign, "Max": sp.Max, "Min": sp.Min,
    "Heaviside": sp.Heaviside, "Piecewise": sp.Piecewise,
    "LambertW": sp.LambertW, "polylog": sp.polylog, "zeta": sp.zeta,
    "gamma": sp.gamma, "loggamma": sp.loggamma, "erf": sp.erf, "erfc": sp.erfc,
}

#: Named constants a spec string may use besides its own ``[constants]``.
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "E": sp.E, "EulerGamma": sp.EulerGamma, "oo": sp.oo}

_SINGULAR = ("lower", "upper", "none")
_PARSER_GLOBALS = {"Integer": sp.Integer, "Float": sp.Float, "Rational": sp.Rational, "__builtins__": {}}
_OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd)
_COMPARISONS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)


def _check_syntax(text: str, names: Mapping[str, Any], where: str) -> None:
    r"""Refuses anything but arithmetic, calls of whitelisted functions and known names.

    The check runs on the Python syntax tree before SymPy sees the string, so attribute
    access, subscripts, lambdas, strings and dunder names never reach an ``eval``.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise SpecError(f"{where}: cannot parse {text!r}: {error.msg} at column {error.offset}") from None

    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in names and node.id not in ("True", "False"):
                known = ", ".join(n for n in names if n not in FUNCTIONS)
                raise SpecError(f"{where}: unknown name {node.id!r} in {text!r} (known: {known}, and SymPy functions such as log, exp, LambertW)")
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                raise SpecError(f"{where}: attribute access is not allowed in {text!r}")
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
                raise SpecError(f"{where}: unknown function {name!r} in {text!r} (allowed: {', '.join(sorted(set(FUNCTIONS)))})")
            if node.keywords:
                raise SpecError(f"{where}: keyword arguments are not allowed in {text!r}")
        elif isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, bool)) or isinstance(node.value, complex):
                raise SpecError(f"{where}: only numbers are allowed as literals in {text!r}")
        elif isinstance(node, (ast.Compare,)):
            if not all(isinstance(op, _COMPARISONS) for op in node.ops):
                raise SpecError(f"{where}: only <, <=, >, >= comparisons are allowed in {text!r}")
        elif isinstance(node, ast.Attribute):
            raise SpecError(f"{where}: attribute access is not allowed in {text!r}")
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Tuple, ast.Load) + _OPERATORS + _COMPARISONS):
            raise SpecError(f"{where}: {type(node).__name__.lower()} is not allowed in {text!r}")


def parse_expression(text: str, names: Mapping[str, Any], where: str) -> sp.Expr:
    r"""Parses a spec string into a SymPy expression in a closed namespace.

    Arguments:
        text: The expression, e.g. ``"alpha*CF/pi/x"``; ``^`` is read as a power.
        names: The symbols and constants the string may use (functions come from
            :data:`FUNCTIONS`, constants from :data:`CONSTANTS`).
        where: The field name for error messages, e.g. ``"target.density"``.

    Returns:
        The expression. Raises :class:`SpecError` naming ``where`` and ``text`` otherwise.
    """
    if not isinstance(text, (str, int, float)) or isinstance(text, bool):
        raise SpecError(f"{where}: expected an expression string, got {text!r}")
    text = str(text).strip().replace("^", "**")
    if not text:
        raise SpecError(f"{where}: empty expression")
    namespace = {**FUNCTIONS, **CONSTANTS, **names}
    _check_syntax(text, namespace, where)
    try:
        value = parse_expr(text, local_dict=dict(namespace), global_dict=dict(_PARSER_GLOBALS), transformations=(auto_number,))
    except Exception as error:  # SymPy raises many types for malformed input
        raise SpecError(f"{where}: cannot evaluate {text!r}: {error}") from None
    if not isinstance(value, sp.Expr):
        raise SpecError(f"{where}: {text!r} is not an expression")
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

    #: The symbol :math:`q` in which :attr:`f` is written.
    q = sp.Symbol("q", positive=True)

    @property
    def C_squared(self) -> sp.Expr:
        r""":math:`C^2 = 1/(2w)`."""
        return 1 / (2 * self.weight)

    @property
    def support_floats(self) -> tuple[float, float]:
        return float(self.support[0]), float(self.support[1])

    @property
    def sha256(self) -> str:
        r"""Hash of the canonical problem (not of the file: comments do not change it)."""
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


def _symbol_for(name: str, positive: bool) -> sp.Symbol:
    return sp.Symbol(name, positive=True) if positive else sp.Symbol(name, real=True)


def _as_expr(value: Any, names: Mapping[str, Any], where: str) -> sp.Expr:
    if isinstance(value, sp.Basic):
        if not isinstance(value, sp.Expr):
            raise SpecError(f"{where}: {value!r} is not an expression")
        return value
    return parse_expression(value, names, where)


def _check_free(expr: sp.Expr, allowed: set[sp.Symbol], where: str) -> None:
    extra = expr.free_symbols - allowed
    if extra:
        raise SpecError(f"{where}: unknown name {sorted(map(str, extra))[0]!r} in {sp.sstr(expr)!r}")


def _matching_function(f: Any, q: sp.Symbol) -> tuple[sp.Expr, str]:
    if isinstance(f, str) and f.strip() in ("linear", "log"):
        kind = f.strip()
        return (q if kind == "linear" else sp.log(q)), kind
    expr = _as_expr(f, {"q": q}, "matching.f")
    _check_free(expr, {q}, "matching.f")
    if expr == q:
        return expr, "linear"
    if expr == sp.log(q):
        return expr, "log"
    derivative = sp.lambdify(q, sp.diff(expr, q), "numpy")
    grid = np.logspace(-12, 12, 97)
    with np.errstate(all="ignore"):
        slope = np.broadcast_to(np.asarray(derivative(grid), dtype=complex), grid.shape)
    real = np.isfinite(slope) & (np.abs(slope.imag) <= 1e-12 * np.abs(slope.real))
    if not real.all() or not ((slope.real > 0).all() or (slope.real < 0).all()):
        raise SpecError(f"matching.f: {sp.sstr(expr)!r} is not strictly monotone and real for q > 0 (its derivative changes sign or vanishes)")
    return expr, "custom"


def make_problem(
    *,
    name: str,
    density: Any,
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
) -> Problem:
    r"""Builds and validates a :class:`Problem` from strings or SymPy objects.

    Arguments:
        name: Identifier of the problem.
        density: :math:`p^N(x|\alpha)`, a string or SymPy expression.
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

    Returns:
        The validated problem. Raises :class:`SpecError` naming the field otherwise.
    """
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"name: expected a non-empty string, got {name!r}")
    x_name = x.name if isinstance(x, sp.Symbol) else x
    a_name = coupling.name if isinstance(coupling, sp.Symbol) else coupling
    for field_name, value in (("target.x", x_name), ("target.alpha", a_name)):
        if not isinstance(value, str) or not value.isidentifier() or value.startswith("_") or value in FUNCTIONS or value in CONSTANTS:
            raise SpecError(f"{field_name}: {value!r} is not a usable symbol name")
    if x_name == a_name:
        raise SpecError(f"target.alpha: the coupling and the variable are both called {x_name!r}")

    values: dict[str, sp.Expr] = {}
    for key, text in (constants or {}).items():
        if not str(key).isidentifier() or str(key).startswith("_") or key in (x_name, a_name) or key in FUNCTIONS or key in CONSTANTS:
            raise SpecError(f"constants.{key}: {key!r} is not a usable constant name")
        value = _as_expr(text, values, f"constants.{key}")
        if value.free_symbols:
            raise SpecError(f"constants.{key}: {sp.sstr(value)!r} is not a number")
        values[str(key)] = value

    if not (isinstance(support, (list, tuple)) and len(support) == 2):
        raise SpecError(f"target.support: expected two endpoints like [\"0\", \"1/2\"], got {support!r}")
    ends = tuple(_as_expr(e, values, f"target.support[{i}]") for i, e in enumerate(support))
    if any(e.free_symbols for e in ends) or not all(e.is_extended_real for e in ends):
        raise SpecError(f"target.support: endpoints must be real numbers, got {support!r}")
    lower, upper = float(ends[0]), float(ends[1])
    if not lower < upper:
        raise SpecError(f"target.support: empty or reversed support [{sp.sstr(ends[0])}, {sp.sstr(ends[1])}]")
    if math.isinf(lower) and math.isinf(upper):
        raise SpecError("target.support: a support infinite at both ends is not supported yet; shift it to a half-line")

    if singular not in _SINGULAR:
        raise SpecError(f"target.singular: expected one of {', '.join(_SINGULAR)}, got {singular!r}")
    if (singular == "lower" and math.isinf(lower)) or (singular == "upper" and math.isinf(upper)):
        raise SpecError(f"target.singular: the {singular} endpoint is infinite; δ and plus distributions need a finite endpoint")
    if isinstance(order, bool) or not isinstance(order, int) or order < 0:
        raise SpecError(f"target.order: expected an integer N >= 0, got {order!r}")

    xs = _symbol_for(x_name, positive=lower >= 0)
    alpha = sp.Symbol(a_name, positive=True)
    names = {**values, x_name: xs, a_name: alpha}

    def physics_expr(value: Any, where: str) -> sp.Expr:
        expr = _as_expr(value, names, where)
        expr = expr.subs({sp.Symbol(x_name): xs, sp.Symbol(x_name, real=True): xs, sp.Symbol(a_name): alpha, sp.Symbol(a_name, real=True): alpha})
        expr = expr.subs({sp.Symbol(k): v for k, v in values.items()})
        _check_free(expr, {xs, alpha}, where)
        return expr

    p = physics_expr(density, "target.density")
    if alpha not in p.free_symbols:
        raise SpecError(f"target.density: {sp.sstr(p)!r} does not depend on the coupling {a_name!r}")
    f_expr, f_kind = _matching_function(f, Problem.q)

    if C is not None and weight is not None:
        raise SpecError("matching: give either C or weight, not both")
    if weight is not None:
        w = physics_expr(weight, "matching.weight")
    else:
        c = physics_expr(1 if C is None else C, "matching.C")
        w = 1 / (2 * c**2)

    try:
        lo_alpha, hi_alpha = (float(v) for v in coupling_range)
    except (TypeError, ValueError):
        raise SpecError(f"train.alpha_range: expected two numbers, got {coupling_range!r}") from None
    if not 0 < lo_alpha < hi_alpha or not math.isfinite(hi_alpha):
        raise SpecError(f"train.alpha_range: need 0 < alpha_min < alpha_max, got {list(coupling_range)!r}")

    problem = Problem(
        name=name.strip(), x=xs, coupling=alpha, support=ends, singular=singular, order=order,
        density=p, f=f_expr, f_kind=f_kind, weight=w, coupling_range=(lo_alpha, hi_alpha),
        constants=values, source=source,
    )
    _check_weight(problem)
    return problem


def _check_weight(problem: Problem) -> None:
    weight = sp.lambdify((problem.x, problem.coupling), problem.weight, "numpy")
    xs = problem.interior_points(32)[:, None]
    alphas = np.linspace(*problem.coupling_range, 5)[None, :]
    with np.errstate(all="ignore"):
        values = np.broadcast_to(np.asarray(weight(xs, alphas), dtype=complex), (xs.size, alphas.size))
    bad = ~np.isfinite(values) | (np.abs(values.imag) > 0) | (values.real < 0)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise SpecError(f"matching: the weight 1/(2C^2) = {sp.sstr(problem.weight)!r} is {values[i, j]} at x={xs[i, 0]:.6g}, alpha={alphas[0, j]:.6g}; it must be real, finite and >= 0")


_TOML_KEYS = {
    "": {"name", "constants", "target", "matching", "train"},
    "target": {"x", "alpha", "support", "singular", "order", "density"},
    "matching": {"f", "C", "weight"},
    "train": {"alpha_range"},
}


def load_spec(path: str | Path) -> Problem:
    r"""Loads a TOML spec, or a Python spec file that defines ``problem`` (see :func:`make_problem`).

    Every failure raises :class:`SpecError` with the file name, the field and the text.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        if path.suffix == ".py":
            return _load_python(path)
        return _load_toml(path)
    except SpecError as error:
        message = str(error)
        raise SpecError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def _load_python(path: Path) -> Problem:
    try:
        namespace = runpy.run_path(str(path), run_name="renorm_spec")
    except Exception as error:  # the user's own code: report it in one line
        raise SpecError(f"error while running the Python spec: {type(error).__name__}: {error}") from None
    problem = namespace.get("problem")
    if not isinstance(problem, Problem):
        raise SpecError("a Python spec must define `problem = renorm.symbolic.make_problem(...)`")
    return problem


def _load_toml(path: Path) -> Problem:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"not valid TOML: {error}") from None
    for table, allowed in _TOML_KEYS.items():
        section = data if not table else data.get(table, {})
        if not isinstance(section, dict):
            raise SpecError(f"{table}: expected a table")
        for key in section:
            if table == "" and key in allowed:
                continue
            if key not in allowed:
                where = f"{table}.{key}" if table else key
                raise SpecError(f"{where}: unknown key (expected one of {', '.join(sorted(allowed))})")
    target = data.get("target")
    if not isinstance(target, dict) or "density" not in target:
        raise SpecError("target.density: missing (the [target] table needs a density)")
    matching = data.get("matching", {})
    train = data.get("train", {})
    return make_problem(
        name=data.get("name", path.stem),
        density=target["density"],
        x=target.get("x", "x"),
        coupling=target.get("alpha", "alpha"),
        support=target.get("support", ["0", "1"]),
        singular=target.get("singular", "lower"),
        order=target.get("order", 1),
        f=matching.get("f", "log"),
        C=matching.get("C"),
        weight=matching.get("weight"),
        coupling_range=train.get("alpha_range", (0.05, 0.3)),
        constants=data.get("constants", {}),
        source=str(path),
    )
