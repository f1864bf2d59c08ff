r"""Generation of the torch kernel module of a matching problem (DESIGN §3)."""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import sympy as sp

from renorm.symbolic import (LAMBDA, LIMITS, LossKernel, MatchingFunction, MultiProblem, OverBudget, Problem, budget, exact_minimizer, expand,
                             matching_function, multi_coefficients)

from ._check import check_module
from ._errors import CodegenError
from ._printer import Guard, TorchPrinter, lowering

__all__ = ["generate"]

# Internal symbols start with "_", which spec names cannot (make_problem refuses them).
_LOG_Q = sp.Symbol("_log_q", real=True)
_COMPLEX_P = sp.Symbol("_pc")

# expression transforms ------------------------------------------------------------------
def _guarded(expr: sp.Basic, context: sp.Basic = sp.true) -> sp.Basic:
    r"""Lowers ``Piecewise`` for NaN-free gradients (the "double where").

    Inside each branch, every operation that can be singular (a function of the table, a
    negative or fractional power) gets its arguments wrapped in :class:`Guard` with the
    condition under which the branch is taken, so an untaken branch computes at a safe point.

    Arguments:
        expr: The expression.
        context: The condition under which ``expr`` is selected (``true`` outside branches).

    Returns:
        The transformed expression; without ``Piecewise`` it is ``expr`` itself.
    """
    if expr.is_Atom or (context is sp.true and not expr.has(sp.Piecewise)):
        return expr
    if isinstance(expr, sp.Piecewise):
        pairs, earlier = [], sp.false
        for value, condition in expr.args:
            taken = sp.And(context, condition, sp.Not(earlier))
            pairs.append((_guarded(value, taken), condition))
            earlier = sp.Or(earlier, condition)
        return sp.Piecewise(*pairs, evaluate=False)
    if context is not sp.true and isinstance(expr, sp.Function) and not isinstance(expr, (sp.Max, sp.Min)):
        safe = sp.Float(lowering(expr).safe)
        return expr.func(*[Guard(context, _guarded(a, context), safe) if a.free_symbols else a for a in expr.args])
    if context is not sp.true and isinstance(expr, sp.Pow) and not (expr.exp.is_Integer and expr.exp > 0):
        safe = sp.Float(0.5)
        return sp.Pow(*[Guard(context, _guarded(a, context), safe) if a.free_symbols else a for a in expr.args])
    if isinstance(expr, sp.Basic) and expr.args:
        return expr.func(*[_guarded(a, context) for a in expr.args])
    return expr


@dataclass
class _Constants:
    r"""Constant subexpressions hoisted to module level, numbered in order of appearance."""

    symbols: dict[sp.Expr, sp.Symbol] = field(default_factory=dict)
    values: list[tuple[sp.Symbol, float, sp.Expr]] = field(default_factory=list)

    def symbol(self, expr: sp.Expr) -> sp.Expr:
        r"""The module constant for ``expr``, or ``expr`` itself where it is a plain number."""
        if expr.is_Number:
            return expr
        if expr in self.symbols:
            return self.symbols[expr]
        value = expr.evalf(40)
        if not (value.is_Number and value.is_extended_real):
            return expr  # not a real number: left to the printer, which says why
        symbol = sp.Symbol(f"_K{len(self.values)}")
        self.symbols[expr] = symbol
        # rounded once from 40 digits: the float64 nearest the exact constant
        self.values.append((symbol, float(value), expr))
        return symbol

    def hoist(self, expr: sp.Basic) -> sp.Basic:
        r"""Replaces every maximal constant subexpression of ``expr`` by a module constant."""
        if isinstance(expr, sp.Expr) and not expr.free_symbols:
            return self.symbol(expr)
        if isinstance(expr, (sp.Add, sp.Mul)):
            constant = [a for a in expr.args if not a.free_symbols]
            rest = [self.hoist(a) for a in expr.args if a.free_symbols]
            if constant:
                value = expr.func(*constant)
                # c and -c share one module constant
                if isinstance(expr, sp.Mul) and value.is_negative and not value.is_Number:
                    rest[:0] = [sp.Integer(-1), self.symbol(-value)]
                else:
                    rest.insert(0, self.symbol(value))
            return expr.func(*rest)
        if expr.args and not isinstance(expr, sp.logic.boolalg.BooleanAtom):
            args = [self.hoist(a) for a in expr.args]
            return expr.func(*args, evaluate=False) if isinstance(expr, sp.Piecewise) else expr.func(*args)
        return expr


#: The magnitudes a factor of p may take anywhere on the support to join the one logarithm of
#: their product: well inside float32's normal range (1.2e-38 to 3.4e38), so the product of a few
#: of them neither overflows nor loses digits to underflow.
_MODERATE = (1e-30, 1e30)


def _moderate(magnitudes: list[mpmath.mpf]) -> bool:
    lo, hi = _MODERATE
    return all(v == 0 or lo <= v <= hi for v in magnitudes)


def _probes(problem: Problem | MultiProblem) -> list[tuple[float, ...]]:
    r"""Points :math:`(x, \alpha)` where the magnitude of a factor of :math:`p` is checked.

    Interior points, and points approaching each finite endpoint geometrically, down to the
    smallest distances that floating point can represent there (1e-307 at 0, 1e-16 relative
    elsewhere), at the two ends and the middle of the coupling range. In two variables, each
    coordinate's points with the other at its interior points, and both approaching together.
    """
    lo, hi = problem.coupling_range
    alphas = [lo, math.sqrt(lo * hi), hi]
    if isinstance(problem, Problem):
        xs = _approach(*problem.support_floats)
        return [(x, alpha) for x in xs for alpha in alphas]
    (a1, b1), (a2, b2) = problem.support_floats
    first, second = _approach(a1, b1), _approach(a2, b2)
    if not (first and second):
        return []
    middle1, middle2 = first[::8][:4], second[::8][:4]
    points = [(x1, x2) for x1 in first for x2 in middle2] + [(x1, x2) for x1 in middle1 for x2 in second]
    points += [(x1, x2) for x1, x2 in zip(first[31:], second[31:])]
    return [(x1, x2, alpha) for x1, x2 in points for alpha in alphas]


def _approach(a: float, b: float) -> list[float]:
    r"""Interior points of a finite ``(a, b)`` and points approaching both ends (none on an infinite one)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return []
    width = b - a
    xs = [a + width * i / 32 for i in range(1, 32)]
    for end, inward in ((a, 1.0), (b, -1.0)):
        smallest = 307 if end == 0.0 else 16
        xs += [end + inward * width * 10.0**-k for k in range(1, smallest + 1)]
    return [x for x in xs if a < x < b]


def _magnitudes(problem: Problem | MultiProblem, factor: sp.Expr, probes: list[tuple[float, ...]]) -> list[mpmath.mpf] | None:
    r"""``|factor|`` at the probes in mpmath (30 digits), or ``None`` where it cannot be evaluated there."""
    variables = (problem.x,) if isinstance(problem, Problem) else problem.variables
    try:
        fn = sp.lambdify((*variables, problem.coupling), factor, modules="mpmath")
        with mpmath.workdps(30):
            values = [fn(*map(mpmath.mpf, point)) for point in probes]
            return [abs(v) if mpmath.isfinite(v) and mpmath.im(v) == 0 else mpmath.inf for v in values]
    except Exception:  # noqa: BLE001 - any factor mpmath cannot evaluate keeps a logarithm of its own
        return None


def _log_magnitude(problem: Problem) -> tuple[sp.Expr, sp.Basic]:
    r""":math:`\log|p|` and the condition :math:`p < 0`, safe where :math:`p` itself overflows.

    :math:`p` is split into factors. Those that keep a moderate magnitude on the whole support
    (checked at probe points approaching the endpoints as closely as floating point can, see
    :func:`_probes`) are multiplied and take one logarithm; the others (a power of :math:`x` at a
    singular endpoint) add a logarithm each, and an exponential adds its exponent. So the sum
    stays finite where :math:`p` over- or underflows (float32 at small :math:`x`), with no more
    logarithms than it needs. Logarithms of powers inside :math:`p` are expanded
    (:math:`\log(1/x) = -\log x` for positive :math:`x`) so that common subexpressions share
    them; other logarithms stay as written, so a factor that overflows itself (:math:`\log((1 -
    x)/x)` below the smallest normal :math:`x`, with :math:`1/x`) stays infinite. The sign comes
    from the factors whose sign SymPy cannot decide, compared one by one.

    Arguments:
        problem: The matching problem.

    Returns:
        ``(log_abs, negative)``: an expression and a SymPy boolean (possibly ``true``/``false``).
    """
    terms: list[sp.Expr] = []
    factors: list[tuple[sp.Expr, sp.Expr]] = []
    uncertain: list[sp.Expr] = []
    flip = False
    constant: sp.Expr = sp.Integer(1)

    def odd(power: sp.Expr) -> bool:
        return bool(power.is_Integer and power % 2 == 1)

    def visit(factor: sp.Expr, power: sp.Expr) -> None:
        nonlocal flip, constant
        if factor.is_Mul:
            for a in factor.args:
                visit(a, power)
        elif factor.is_Pow and factor.exp.is_Integer:
            visit(factor.base, power * factor.exp)
        elif factor.is_Pow and factor.base.is_positive and factor.exp.is_extended_real:
            terms.append(power * factor.exp * sp.log(factor.base))
        elif isinstance(factor, sp.exp) and factor.args[0].is_extended_real:
            terms.append(power * factor.args[0])
        elif factor.is_number and factor.is_extended_real and factor.is_nonzero and power.is_Integer:
            constant *= sp.Abs(factor) ** power
            flip ^= bool(factor.is_negative) and odd(power)
        else:
            factors.append((factor, power))
            if factor.is_negative:
                flip ^= odd(power)
            elif not factor.is_positive and odd(power):
                uncertain.append(factor)

    # log(x**k) = k log(x) for positive x: exact, and shared with the log(x) of a power factor
    # (log((1 - x)/x) stays: near its zero it is more accurate than log(1 - x) - log(x))
    density = problem.density.replace(
        lambda e: isinstance(e, sp.log) and e.args[0].is_Pow and e.args[0].base.is_positive and e.args[0].exp.is_extended_real,
        lambda e: e.args[0].exp * sp.log(e.args[0].base))
    visit(sp.factor_terms(density), sp.Integer(1))

    # grow the product one factor at a time while it stays moderate at every probe
    probes = _probes(problem)
    # Abs factor by factor: Abs of a product rewrites its factors ((1 - x)/x as -(x - 1)/x), which
    # rounds differently and hides them from the common subexpressions of the sign test
    product: sp.Expr = constant
    running = [mpmath.mpf(float(constant))] * len(probes)
    for factor, power in factors:
        # a high power of a factor with a zero between the probes could underflow there
        values = _magnitudes(problem, factor**power, probes) if probes and power.is_Integer and abs(power) <= 4 else None
        joined = None if values is None else [r * v for r, v in zip(running, values)]
        sign = 1 if factor.is_positive else -1 if factor.is_negative else 0
        if joined is not None and _moderate(values) and _moderate(joined):
            running = joined
            product *= (sign * factor if sign else sp.Abs(factor)) ** power
        else:
            terms.append(power * (sp.log(sign * factor) if sign else sp.log(sp.Abs(factor))))
    if product != 1:
        terms.append(sp.log(product))

    if not uncertain:
        negative: sp.Basic = sp.true if flip else sp.false
    else:
        negative = sp.Xor(*[sp.Lt(f, 0) for f in uncertain]) if len(uncertain) > 1 else sp.Lt(uncertain[0], 0)
        negative = sp.Not(negative) if flip else negative
    return sp.Add(*terms), negative


# printing ---------------------------------------------------------------------------------
@dataclass
class _Body:
    r"""The statements of one generated function body.

    Attributes:
        lines: The ``t0 = …`` statements of the common subexpressions.
        results: Each requested expression, printed in terms of those.
        depends: The function arguments each result depends on.
    """

    lines: list[str]
    results: list[str]
    depends: list[frozenset[sp.Symbol]]


class _Writer:
    r"""Shared state of one generation: argument names, hoisted constants, imports."""

    def __init__(self, problem: Problem | MultiProblem):
        self.problem = problem
        #: The observables and their argument names: ``x``, or ``x1, x2`` for a target in two variables.
        self.variables = {problem.x: "x"} if isinstance(problem, Problem) else {v: f"x{i + 1}" for i, v in enumerate(problem.variables)}
        self.signature = ", ".join(f"{name}: Tensor" for name in self.variables.values())
        self.first = next(iter(self.variables.values()))
        self.x_docs = [_X] if isinstance(problem, Problem) else [
            f"{name}: The observable {v.name!r}, a tensor broadcastable with the others{'; fixes dtype and device' if i == 0 else ''}."
            for i, (v, name) in enumerate(self.variables.items())]
        self.arguments = {**self.variables, problem.coupling: "alpha", LAMBDA: "lam", _LOG_Q: "log_q", _COMPLEX_P: "pc"}
        self.constants = _Constants()
        self.imports: set[str] = set()

    def prepare(self, expr: sp.Basic) -> sp.Basic:
        return self.constants.hoist(_guarded(sp.sympify(expr)))

    def body(self, exprs: list[sp.Basic], names: dict[sp.Symbol, str] | None = None, prefix: str = "t") -> _Body:
        r"""Common subexpressions of ``exprs`` as ``t0 = …`` statements, then the results.

        Arguments:
            exprs: The results of one function, in order.
            names: Extra symbols known to the function body (e.g. a complex ``pc``).
            prefix: The name stem of the common subexpressions.

        Returns:
            The statements, the printed results and the arguments each result depends on.
        """
        exprs = [self.prepare(e) for e in exprs]
        # numbered in the order cse emits them, which depends only on the expressions
        replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_t"), order="canonical", list=True)
        names = {**self.arguments, **(names or {}), **{s: s.name[1:] for s, _, _ in self.constants.values}}
        printer = TorchPrinter(names, frozenset(s for s, _, _ in self.constants.values))
        lines = []
        for i, (symbol, value) in enumerate(replacements):
            lines.append(f"{prefix}{i} = {printer.code(value)}")
            printer.names[symbol] = f"{prefix}{i}"
        results = [printer.code(e) for e in reduced]
        self.imports |= printer.imports
        arguments = set(self.arguments)
        return _Body(lines, results, [frozenset(e.free_symbols & arguments) for e in exprs])


def _shaped(code: str, used: frozenset[sp.Symbol], arguments: dict[sp.Symbol, str], scalar: bool) -> str:
    r"""``code`` as a tensor of the broadcast shape of all ``arguments``, in the dtype of the first.

    Arguments:
        code: A printed result.
        used: The arguments it depends on.
        arguments: The function's arguments and their names, in order.
        scalar: Whether ``code`` is a Python number.

    Returns:
        ``code``, or ``code`` wrapped in ``_full`` or ``_broadcast``.
    """
    names = ", ".join(arguments.values())
    if scalar:
        return f"_full({code}, {names})"
    if set(arguments) - used:
        return f"_broadcast({code}, {names})"
    return code


def _indent(lines: list[str]) -> str:
    return "".join(f"    {line}\n" for line in lines)


def _docstring(summary: str, details: list[str], arguments: list[str], returns: str) -> str:
    r"""A Google-style docstring, wrapped at 100 columns, indented for a function body."""
    width = 96
    out = [f'r"""{summary}', ""]
    for paragraph in details:
        out += textwrap.wrap(paragraph, width, break_long_words=True, break_on_hyphens=False) + [""]
    out.append("Arguments:")
    for argument in arguments:
        out += textwrap.wrap(argument, width - 4, initial_indent="    ", subsequent_indent="        ", break_on_hyphens=False)
    out += ["", "Returns:"]
    out += textwrap.wrap(returns, width - 4, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False)
    out.append('"""')
    return "".join(f"    {line}\n" if line else "\n" for line in out)


_X = "x: Points of the support, shape (*); fixes dtype and device."
_ALPHA = "alpha: The coupling, a tensor broadcastable with x, or a number."
_LAM = "lam: The Lagrange multiplier λ, a tensor broadcastable with x, or a number."
_LOG_Q_DOC = "log_q: log q(x|α), a tensor broadcastable with x."
_DISTRIBUTIONS = "δ and plus-distribution parts at the singular endpoint are not included (see renorm.symbolic.coefficients)."
_DISTRIBUTIONS_2D = "Pointwise inside the region; distributional parts on the singular faces are not derived in two variables."


def _shape(w: "_Writer") -> str:
    r"""The arguments a result broadcasts over, in words: ``x``, or ``x1, x2``."""
    return ", ".join(w.variables.values())


def _text(text: str) -> str:
    r"""``text`` safe inside a raw docstring or a comment: quotes and backslashes get a backslash,
    unprintable characters (newlines included) are written as escapes, so nothing in it can end
    the string or the line."""
    return "".join(
        "\\" + c if c in '\\"' else c if c.isprintable() else ascii(c)[1:-1]
        for c in text)


def _expression(expr: sp.Basic) -> str:
    return _text(sp.sstr(expr))


def _file_name(name: str) -> str:
    r"""A spec file name for the header comment: as it is if plain, else its escaped ``ascii`` form."""
    return name if re.fullmatch(r"[A-Za-z0-9_.+-]+", name) else ascii(name)


def _float(value: float) -> str:
    if math.isinf(value):
        return "math.inf" if value > 0 else "-math.inf"
    if math.isnan(value):
        return "math.nan"
    return repr(value)


def _coerce(arguments: list[str], first: str = "x") -> list[str]:
    lines = []
    for name in arguments:
        if name in ("alpha", "lam"):
            lines.append(f"{name} = torch.as_tensor({name}, dtype={first}.dtype, device={first}.device)")
    return lines


def _function_p(w: _Writer) -> str:
    problem = w.problem
    args = {**w.variables, problem.coupling: "alpha"}
    body = w.body([problem.density])
    scalar = not body.depends[0]
    doc = _docstring(
        "The target density :math:`p^N(x|\\alpha)` (may be negative or infinite).",
        [f"p = {_expression(problem.density)}"], [*w.x_docs, _ALPHA], f"p, with the broadcast shape of {_shape(w)} and alpha.")
    lines = _coerce(list(args.values()), w.first) + body.lines + [f"return {_shaped(body.results[0], body.depends[0], args, scalar)}"]
    return f"def p({w.signature}, alpha: Tensor | float) -> Tensor:\n{doc}{_indent(lines)}"


def _function_log_p(w: _Writer, log_abs: sp.Expr, negative: sp.Basic) -> str:
    problem = w.problem
    args = {**w.variables, problem.coupling: "alpha"}
    body = w.body([log_abs, negative] if not isinstance(negative, sp.logic.boolalg.BooleanAtom) else [log_abs])
    real = _shaped(body.results[0], body.depends[0], args, not body.depends[0])
    lines = _coerce(list(args.values()), w.first) + body.lines + [f"real = {real}"]
    if negative is sp.false:
        lines.append("imag = torch.zeros_like(real)")
    elif negative is sp.true:
        lines.append("imag = torch.full_like(real, math.pi)")
    else:
        lines.append(f"imag = torch.where({body.results[1]}, math.pi, torch.zeros_like(real))")
    lines.append("return torch.complex(real, imag)")
    doc = _docstring(
        "The principal-branch :math:`\\log p = \\log|p| + i\\pi\\,[p < 0]`, always a complex tensor.",
        ["The real part adds the logarithms of the factors of p that can leave the floating-point range (a "
         "power of x at a singular endpoint) to one logarithm of the product of the others: finite where p "
         "itself overflows or underflows.",
         f"log|p| = {_expression(log_abs)}"],
        [*w.x_docs, _ALPHA], f"log p, complex128 for float64 {w.first} (complex64 for float32), broadcast shape of {_shape(w)} and alpha.")
    return f"def log_p({w.signature}, alpha: Tensor | float) -> Tensor:\n{doc}{_indent(lines)}"


def _function_coefficients(w: _Writer, coefficients: list[sp.Expr]) -> str:
    body = w.body(coefficients)
    results = []
    for expr, code, used in zip(coefficients, body.results, body.depends):
        if len(w.variables) > 1:
            results.append(_shaped("0.0" if expr == 0 else code, used, w.variables, expr == 0 or not used))
        elif expr == 0:
            results.append("torch.zeros_like(x)")
        elif not used:
            results.append(f"torch.full_like(x, {code})")
        else:
            results.append(code)
    details = [f"p^{n}(x) = {_expression(c)}" for n, c in enumerate(coefficients)]
    doc = _docstring(
        "The regular parts :math:`p^n(x)`, :math:`n = 0, \\dots, N`, of the α-expansion of p.",
        [_DISTRIBUTIONS if len(w.variables) == 1 else _DISTRIBUTIONS_2D] + details,
        w.x_docs, f"A list of N + 1 tensors with the {'shape' if len(w.variables) == 1 else 'broadcast shape'}, dtype and device of {_shape(w)}.")
    lines = body.lines + [f"return [{', '.join(results)}]"]
    return f"def p_coefficients({w.signature}) -> list[Tensor]:\n{doc}{_indent(lines)}"


def _function_weight(w: _Writer) -> str:
    problem = w.problem
    args = {**w.variables, problem.coupling: "alpha"}
    body = w.body([problem.weight])
    doc = _docstring(
        "The kernel weight :math:`w = 1/(2C^2)` of the loss.",
        [f"w = {_expression(problem.weight)}"], [*w.x_docs, _ALPHA], f"w, with the broadcast shape of {_shape(w)} and alpha.")
    lines = _coerce(list(args.values()), w.first) + body.lines + [f"return {_shaped(body.results[0], body.depends[0], args, not body.depends[0])}"]
    return f"def weight({w.signature}, alpha: Tensor | float) -> Tensor:\n{doc}{_indent(lines)}"


def _function_q_exact(w: _Writer, matching: MatchingFunction, q: sp.Expr | None) -> str:
    if q is None:
        return ("# No closed-form Euler–Lagrange minimizer exists for this f (renorm.symbolic.exact_minimizer\n"
                "# returned None): use renorm.symbolic.solve, which solves the condition pointwise.\n"
                "q_exact = None\n")
    problem = w.problem
    args = {**w.variables, problem.coupling: "alpha", LAMBDA: "lam"}
    body = w.body([q])
    doc = _docstring(
        "The exact minimizer :math:`q_\\lambda(x|\\alpha)` of the loss for a given Lagrange multiplier.",
        [matching.validity, f"q = {_expression(q)}"], [*w.x_docs, _ALPHA, _LAM], f"q, with the broadcast shape of {_shape(w)}, alpha and lam.")
    lines = _coerce(list(args.values()), w.first) + body.lines + [f"return {_shaped(body.results[0], body.depends[0], args, not body.depends[0])}"]
    return f"def q_exact({w.signature}, alpha: Tensor | float, lam: Tensor | float) -> Tensor:\n{doc}{_indent(lines)}"


def _check_complex(expr: sp.Basic, f: sp.Expr) -> None:
    r"""Refuses a custom f whose evaluation at complex p has no torch implementation."""
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Piecewise, sp.Max, sp.Min, sp.core.relational.Relational)):
            bad = type(node).__name__
        elif isinstance(node, sp.Function) and not lowering(node).complex:  # a custom f is also evaluated at p + 0i
            bad = f"{type(node).__name__} (lowered to {lowering(node).target})"
        else:
            continue
        raise CodegenError(
            f"matching.f = {sp.sstr(f)!r}: f(p) where p < 0 is complex, but {bad} has no complex torch implementation; "
            "write f with exp, log, powers and elementary functions only")


def _function_loss(w: _Writer, matching: MatchingFunction, log_abs: sp.Expr, negative: sp.Basic) -> str:
    problem = w.problem
    args = {_LOG_Q: "log_q", **w.variables, problem.coupling: "alpha"}
    kernel = matching.loss_kernel(_LOG_Q, _COMPLEX_P, log_abs, negative)
    for _, expr in kernel.complex_inputs:
        _check_complex(expr, problem.f)
    names = [name for name, _ in kernel.inputs]
    body = w.body([expr for _, expr in kernel.inputs])
    weight = names.index("w")
    constant_weight = not body.depends[weight]
    lines = _coerce(["alpha"], w.first)
    if constant_weight and problem.weight.is_zero:
        lines.append(f"return _full(0.0, log_q, {', '.join(w.variables.values())}, alpha)")
    else:
        lines += body.lines + [f"w = {body.results[weight]}"]
        lines += _loss_tail(w, kernel, dict(zip(names, body.results)), constant_weight)
        used = frozenset().union(*body.depends) | {_LOG_Q}
        lines[-1] = f"return {_shaped(lines[-1], used, args, False)}"

    doc = _docstring(
        "The loss integrand :math:`w\\,|f(q) - f(p)|^2` at :math:`q = e^{\\log q}`, fused in one function.",
        [f"f(q) = {_text(matching.formula)}, with f(p) on the principal branch where p < 0. The integrand is exactly 0 where "
         "w = 0 or f(q) = f(p), and its gradient in log_q is finite there."],
        [_LOG_Q_DOC, *w.x_docs, _ALPHA], f"The integrand, with the broadcast shape of log_q, {_shape(w)} and alpha.")
    return f"def loss_density(log_q: Tensor, {w.signature}, alpha: Tensor | float) -> Tensor:\n{doc}{_indent(lines)}"


def _loss_tail(w: _Writer, kernel: LossKernel, printed: dict[str, str], constant_weight: bool) -> list[str]:
    r"""The statements of ``loss_density`` after ``w``; the last entry is the result expression.

    The matching function's statements come first (its ``{name}`` placeholders filled with the
    printed inputs, its complex inputs printed where its statements bind the complex p). The
    reference contributes exactly 0 where w = 0 or f(q) = f(p). With a constant w > 0 the
    product w · 0 already is 0. Otherwise the residuals and w are set to 0 there before they
    are multiplied (the double where), so that no 0 · ∞ enters a value or a gradient.
    """
    lines = [statement.format(**printed) for statement in kernel.statements]
    if kernel.complex_inputs:
        inner = w.body([expr for _, expr in kernel.complex_inputs], {_COMPLEX_P: kernel.complex_argument}, prefix="u")
        lines += inner.lines
        printed = {**printed, **{name: code for (name, _), code in zip(kernel.complex_inputs, inner.results)}}
        lines += [statement.format(**printed) for statement in kernel.complex_statements]
    if not constant_weight:
        lines.append(f"drop = {' | '.join(['(w == 0)'] + ([kernel.exact] if kernel.exact else []))}")
        lines += [f"{name} = torch.where(drop, 0.0, {name})" for name in [*kernel.safe, "w"]]
    return lines + list(kernel.phase) + [f"w * {kernel.squared}"]


_HELPERS = '''
def _full(value: float, *like: Tensor) -> Tensor:
    r"""A constant with the broadcast shape of ``like`` and the dtype and device of its first entry."""
    shape = torch.broadcast_shapes(*(t.shape for t in like))
    return torch.full(shape, value, dtype=like[0].dtype, device=like[0].device)


def _broadcast(value: Tensor, *like: Tensor) -> Tensor:
    r"""``value`` broadcast (as a view) to the common shape of itself and ``like``."""
    return value.expand(torch.broadcast_shapes(value.shape, *(t.shape for t in like)))
'''


def generate(problem: Problem, source: str | Path | None = None) -> str:
    r"""The source of a Python module of torch kernels for ``problem`` (DESIGN §3).

    The module defines ``p``, ``log_p``, ``p_coefficients``, ``weight``, ``q_exact`` (``None``
    where no closed form exists) and the fused ``loss_density``, and the constants ``NAME``,
    ``ORDER``, ``SUPPORT``, ``SINGULAR``, ``COUPLING_RANGE``, ``F`` and ``SPEC_SHA256``. The text
    depends only on the problem (and the SymPy version and function table): the same spec gives
    a byte-identical file.

    Arguments:
        problem: The matching problem.
        source: The spec file named in the header (only its file name is written); default
            ``problem.source``.

    Returns:
        The module source.

    Raises:
        CodegenError: If an expression uses a function without a torch lowering (the message
            names it and how to register one) or cannot be printed.
    """
    try:
        with budget(3 * LIMITS.seconds):
            return _generate(problem, source)
    except OverBudget:
        raise CodegenError(f"code generation for {problem.name!r} did not finish within {3 * LIMITS.seconds:g} s (the limit); write the density more compactly") from None


def _function_inner_interval(w: _Writer) -> str:
    problem = w.problem
    (a2, b2) = problem.support_floats[1]
    x1 = problem.variables[0]
    bounds = {side: [b.expr for b in problem.region if b.side == side] for side in ("lower", "upper")}
    body = w.body(bounds["lower"] + bounds["upper"])
    printed = iter(zip(body.results, body.depends))
    ends = {}
    for side, edge, combine in (("lower", a2, "torch.maximum"), ("upper", b2, "torch.minimum")):
        code = f"_full({_float(edge)}, x1)"
        for _ in bounds[side]:
            result, used = next(printed)
            code = f"{combine}({code}, {_shaped(result, used, {x1: 'x1'}, not used)})"
        ends[side] = code
    texts = "; ".join(dict.fromkeys(b.text for b in problem.region)) or "none (the box)"
    doc = _docstring(
        "The interval :math:`[l(x_1), u(x_1)]` of the second variable inside the region at :math:`x_1`.",
        [f"Region: {_text(texts)}; empty where l >= u."], ["x1: The first observable, shape (*); fixes dtype and device."],
        "(l, u), two tensors with the shape of x1.")
    lines = body.lines + [f"return {ends['lower']}, {ends['upper']}"]
    return f"def inner_interval(x1: Tensor) -> tuple[Tensor, Tensor]:\n{doc}{_indent(lines)}"


def _generate(problem: Problem | MultiProblem, source: str | Path | None) -> str:
    writer = _Writer(problem)
    several = isinstance(problem, MultiProblem)
    log_abs, negative = _log_magnitude(problem)
    coefficients = multi_coefficients(problem) if several else expand(problem)
    q = exact_minimizer(problem)
    matching = matching_function(problem)

    functions = [
        _function_p(writer),
        _function_log_p(writer, log_abs, negative),
        _function_coefficients(writer, coefficients),
        _function_weight(writer),
        _function_q_exact(writer, matching, q),
        _function_loss(writer, matching, log_abs, negative),
        *([_function_inner_interval(writer)] if several else []),
    ]

    origin = source if source is not None else problem.source
    spec = _file_name(Path(origin).name) if origin else "a Python-built problem"
    f_value = matching.spec
    x = ", ".join(writer.variables.values())
    exact_text = (f"q_exact({x}, alpha, lam) is the closed-form minimizer q_λ; λ(α) comes from renorm.symbolic.solve."
                  if q is not None else "q_exact is None: this f has no closed-form minimizer (renorm.symbolic.solve finds it pointwise).")
    docstring = "\n".join([
        f'r"""Torch kernels of the matching problem {problem.name!r} (f = {_text(f_value)}, order {problem.order}).',
        "",
        *textwrap.wrap(
            "Every function takes tensors that broadcast against each other (alpha and lam may also be numbers), "
            f"computes in the dtype and on the device of {writer.first} (its own arithmetic never creates float64 from float32; "
            "renorm.runtime.special evaluates in float64 and rounds once), and is "
            "differentiable with finite gradients through its where-branches. log_p is always complex: "
            f"complex128 for float64 {writer.first}, complex64 for float32, with imaginary part π where p < 0 (principal branch). "
            f"p_coefficients returns the regular parts p^0..p^N. loss_density(log_q, {x}, alpha) is the fused "
            "integrand w |f(q) - f(p)|² of the matching loss. " + exact_text + " Non-integer powers of negative "
            "numbers are NaN (their principal value is complex)."
            + (f" The variables x1, x2 are {', '.join(repr(v.name) for v in problem.variables)} (VARIABLES); inner_interval(x1) "
               "gives the second one's interval inside the region." if several else ""), 96),
        '"""',
    ])

    header = [
        f"# Generated by renorm-codegen from {spec} (problem {problem.name!r}) with SymPy {sp.__version__}.",
        f"# Do not edit: regenerate with `renorm-codegen {spec} -o <this file>`.",
    ]
    imports = ["import math", "", "import torch", "from torch import Tensor", "", "from renorm.runtime import special"]
    extra = sorted(writer.imports)
    if extra:
        imports += [""] + [f"import {module}" for module in extra]
    names = ["NAME", "ORDER", "SUPPORT", "SINGULAR", "COUPLING_RANGE", "F", "SPEC_SHA256", *(["VARIABLES"] if several else []),
             "p", "log_p", "p_coefficients", "weight", "q_exact", "loss_density", *(["inner_interval"] if several else [])]
    if several:
        support = "(" + ", ".join(f"({_float(a)}, {_float(b)})" for a, b in problem.support_floats) + ")"
    else:
        a, b = problem.support_floats
        support = f"({_float(a)}, {_float(b)})"
    constants = [
        f"NAME = {problem.name!r}",
        f"ORDER = {problem.order}",
        f"SUPPORT = {support}",
        f"SINGULAR = {problem.singular!r}",
        *([f"VARIABLES = {tuple(v.name for v in problem.variables)!r}"] if several else []),
        f"COUPLING_RANGE = ({_float(problem.coupling_range[0])}, {_float(problem.coupling_range[1])})",
        f"F = {f_value!r}",
        f"SPEC_SHA256 = {problem.sha256!r}",
    ]
    hoisted = []
    if writer.constants.values:
        hoisted = ["", "# Constant subexpressions, each rounded once from 40 digits (the exact value in the comment)."]
        hoisted += [f"{symbol.name[1:]} = {_float(value)}  # {_expression(expr)}" for symbol, value, expr in writer.constants.values]

    parts = [
        "\n".join(header + [docstring, ""] + imports),
        "\n".join(["__all__ = ["] + [f"    {n!r}," for n in names] + ["]", ""] + constants + hoisted),
        _HELPERS.strip("\n"),
        *(f.rstrip("\n") for f in functions),
    ]
    text = "\n\n\n".join(parts) + "\n"
    check_module(text, writer.imports)
    return text
