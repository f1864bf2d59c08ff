r"""The check every generated module passes before it is imported: only the expected definitions."""

from __future__ import annotations

import ast
import re
from typing import Iterable

from ._errors import CodegenError

__all__: list[str] = []

#: The functions a generated module defines (``q_exact`` may be ``None`` instead).
FUNCTION_NAMES = frozenset({"_full", "_broadcast", "p", "log_p", "p_coefficients", "weight", "q_exact", "loss_density", "inner_interval"})
#: The constants it defines, besides the hoisted ``K0``, ``K1``, ….
CONSTANT_NAMES = frozenset({"NAME", "ORDER", "SUPPORT", "SINGULAR", "COUPLING_RANGE", "F", "SPEC_SHA256", "VARIABLES"})
#: Constants whose value is a string (a validated name, a kind, a hash), or a tuple of strings
#: for a target in several variables (``SINGULAR``, ``VARIABLES``).
_STRING_CONSTANTS = frozenset({"NAME", "SINGULAR", "F", "SPEC_SHA256", "VARIABLES"})
_HOISTED = re.compile(r"K[0-9]+")
#: Builtins the generated code calls or names in annotations.
_BUILTINS = frozenset({"float", "list", "max", "min", "tuple"})
#: Attributes of tensors (arguments and locals) the generated code reads.
_TENSOR_ATTRIBUTES = frozenset({"shape", "dtype", "device", "expand", "real", "imag"})
#: Parts of torch that read or write files, compile code or change global state.
_TORCH_DENIED = frozenset({"load", "save", "hub", "ops", "jit", "compile", "utils", "backends", "library", "classes",
                           "set_default_dtype", "set_default_device", "manual_seed", "set_grad_enabled", "cuda", "distributed",
                           "multiprocessing", "package", "export", "onnx", "fx", "overrides"})
_NODES = (
    ast.Module, ast.Expr, ast.Constant, ast.Import, ast.ImportFrom, ast.alias, ast.Assign, ast.Name, ast.Load,
    ast.Store, ast.List, ast.Tuple, ast.FunctionDef, ast.arguments, ast.arg, ast.Return, ast.Call, ast.keyword,
    ast.Attribute, ast.BinOp, ast.UnaryOp, ast.Compare, ast.Subscript, ast.Starred, ast.GeneratorExp,
    ast.comprehension, ast.operator, ast.unaryop, ast.cmpop,
)


def _fail(reason: str, node: ast.AST | None = None) -> CodegenError:
    line = f" (line {node.lineno})" if node is not None and hasattr(node, "lineno") else ""
    return CodegenError(f"refusing a generated module: {reason}{line}")


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _literal(node: ast.AST) -> bool:
    r"""A number, ``None``, ``math.inf``/``math.nan``, a negated literal or a tuple of them."""
    if isinstance(node, ast.Constant):
        return node.value is None or (isinstance(node.value, (int, float)) and not isinstance(node.value, bool))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _literal(node.operand)
    if isinstance(node, ast.Tuple):
        return all(_literal(e) for e in node.elts)
    return _dotted(node) in ("math.inf", "math.nan")


def check_module(source: str, modules: Iterable[str] = ()) -> None:
    r"""Refuses a module source that is anything but a generated kernel module.

    The top level may hold only the docstring, the imports of ``math``, ``torch``,
    ``renorm.runtime.special`` and the modules of registered lowerings, the constants of the
    contract (literals; strings only for ``NAME``, ``SINGULAR``, ``F``, ``SPEC_SHA256``, ``VARIABLES``), the
    hoisted ``K0, K1, …`` and the functions of :data:`FUNCTION_NAMES`. Throughout, no string
    other than a docstring, no name that was not defined in the module, its functions or the
    few builtins it needs, no underscore attribute, and nothing of torch that touches files or
    global state. A module that fails is never executed.

    Arguments:
        source: The module text.
        modules: The extra modules the function table's lowerings import.

    Raises:
        CodegenError: Naming what was found and where.
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise _fail(f"it does not parse ({type(error).__name__})") from None
    allowed_modules = {"math", "torch", *modules}
    defined: set[str] = set()
    strings: set[int] = set()  # ids of the string constants that are allowed where they stand

    for index, statement in enumerate(tree.body):
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str):
            if index != 0:
                raise _fail("a string statement that is not the module docstring", statement)
            strings.add(id(statement.value))
        elif isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname or alias.name not in allowed_modules:
                    raise _fail(f"an import of {alias.name!r}", statement)
                defined.add(alias.name.partition(".")[0])
        elif isinstance(statement, ast.ImportFrom):
            names = [(a.name, a.asname) for a in statement.names]
            if (statement.level, statement.module, names) not in ((0, "torch", [("Tensor", None)]), (0, "renorm.runtime", [("special", None)])):
                raise _fail(f"an import from {statement.module!r}", statement)
            defined.add(names[0][0])
        elif isinstance(statement, ast.Assign):
            if len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name):
                raise _fail("an assignment to something other than one name", statement)
            name, value = statement.targets[0].id, statement.value
            if name == "__all__":
                if not (isinstance(value, ast.List) and all(isinstance(e, ast.Constant) and e.value in FUNCTION_NAMES | CONSTANT_NAMES for e in value.elts)):
                    raise _fail("an __all__ that lists other names", statement)
                strings.update(id(e) for e in value.elts)
            elif name in _STRING_CONSTANTS and isinstance(value, ast.Constant) and isinstance(value.value, str):
                strings.add(id(value))
            elif name in ("SINGULAR", "VARIABLES") and isinstance(value, ast.Tuple) and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts):
                strings.update(id(e) for e in value.elts)
            elif not ((name in CONSTANT_NAMES or _HOISTED.fullmatch(name) or name == "q_exact") and _literal(value)):
                raise _fail(f"an unexpected assignment to {name!r}", statement)
            defined.add(name)
        elif isinstance(statement, ast.FunctionDef):
            if statement.name not in FUNCTION_NAMES or statement.decorator_list:
                raise _fail(f"an unexpected function {statement.name!r}", statement)
            defined.add(statement.name)
        else:
            raise _fail(f"an unexpected {type(statement).__name__} statement", statement)

    for function in (s for s in tree.body if isinstance(s, ast.FunctionDef)):
        body = function.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            strings.add(id(body[0].value))
        local = {a.arg for a in function.args.args + function.args.kwonlyargs}
        local |= {v.arg for v in (function.args.vararg, function.args.kwarg) if v is not None}
        local |= {n.id for n in ast.walk(function) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        for node in ast.walk(function):
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef)) and node is not function:
                raise _fail(f"a nested {type(node).__name__} in {function.name}", node)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in local | defined | _BUILTINS:
                raise _fail(f"the unknown name {node.id!r} in {function.name}", node)

    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            raise _fail(f"a {type(node).__name__} node", node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, (str, bytes)) and id(node) not in strings:
                raise _fail("a string outside a docstring or a contract constant", node)
            if node.value is Ellipsis:
                raise _fail("an ellipsis", node)
        elif isinstance(node, ast.Name) and node.id.startswith("__") and node.id != "__all__":
            raise _fail(f"the name {node.id!r}", node)
        elif isinstance(node, ast.keyword) and (node.arg is None or node.arg.startswith("_")):
            raise _fail("an unexpected keyword argument", node)
        elif isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise _fail(f"the attribute {node.attr!r}", node)
            dotted = _dotted(node)
            root = dotted.partition(".")[0] if dotted else None
            if root in allowed_modules or root == "special":
                parts = dotted.split(".")
                if root == "torch" and (parts[1] in _TORCH_DENIED or len(parts) > 3 or (len(parts) == 3 and parts[1] != "special")):
                    raise _fail(f"the use of {dotted}", node)
            elif node.attr not in _TENSOR_ATTRIBUTES:
                raise _fail(f"the attribute {node.attr!r} of a value", node)
