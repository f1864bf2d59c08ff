r"""The layers: data flows symbolic → codegen → runtime, and packages meet only at their ``__init__``.

Read from the source (every import statement, at any depth) and from fresh processes (what a
command or a generated kernel actually loads).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("symbolic", "codegen", "runtime")
#: What each layer may import of the others (the one-way flow).
ALLOWED = {"symbolic": set(), "codegen": {"symbolic"}, "runtime": {"symbolic", "codegen"}}


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    r"""Every import in a file as (line, module, names), relative ones resolved to ``renorm.*``."""
    package = path.parent.name
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = f"renorm.{package}" + (f".{module}" if module else "")
            found.append((node.lineno, module, [alias.name for alias in node.names]))
    return found


def _sources():
    return [(package, path) for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))]


@pytest.mark.parametrize("package, path", _sources(), ids=lambda v: v if isinstance(v, str) else f"{v.parent.name}/{v.name}")
def test_no_private_name_crosses_a_package_line(package, path):
    bad = []
    for line, module, names in _imports(path):
        parts = module.split(".")
        if parts[0] != "renorm" or len(parts) < 2 or parts[1] == package:
            continue
        if any(part.startswith("_") for part in parts[2:]) or any(name.startswith("_") for name in names):
            bad.append(f"line {line}: {module} {names}")
    assert not bad, f"{package}/{path.name} imports private names of another package: {bad}"


@pytest.mark.parametrize("package, path", _sources(), ids=lambda v: v if isinstance(v, str) else f"{v.parent.name}/{v.name}")
def test_data_flows_one_way(package, path):
    bad = []
    for line, module, _ in _imports(path):
        parts = module.split(".")
        if parts[0] == "renorm" and len(parts) > 1 and parts[1] != package and parts[1] not in ALLOWED[package]:
            bad.append(f"line {line}: {module}")
        if package == "symbolic" and parts[0] in ("torch", "zuko", "matplotlib"):
            bad.append(f"line {line}: {module}")
    assert not bad, f"{package}/{path.name} imports against the flow symbolic → codegen → runtime: {bad}"


def _loaded(code: str) -> dict[str, bool]:
    r"""Which heavy modules a fresh process has loaded after running ``code``."""
    probe = code + "\nimport json, sys\nprint(json.dumps({m: m in sys.modules for m in ('torch', 'zuko', 'matplotlib', 'renorm.runtime._train')}))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_symbolic_and_the_generator_load_no_torch():
    spec = EXAMPLES / "angularity_lo.toml"
    loaded = _loaded(f"from renorm.symbolic import load_spec, solve\nfrom renorm.codegen import generate\n"
                     f"p = load_spec({str(spec)!r}); solve(p, [0.1]); generate(p)")
    assert not any(loaded.values()), loaded


@pytest.mark.parametrize("command", [
    ["expand", "examples/angularity_lo.toml"],
    ["solve", "examples/angularity_lo.toml", "--alpha", "0.1", "--json"],
    ["magic-c", "examples/soft_collinear.toml", "--q", "2*alpha*CF/pi*log(1/x)/x*exp(-alpha*CF/pi*log(1/x)^2)", "--alpha", "0.1"],
    ["--help"],
])
def test_symbolic_commands_load_no_torch(command):
    loaded = _loaded(f"import contextlib, io\nfrom renorm.runtime._cli import main\nwith contextlib.redirect_stdout(io.StringIO()):\n"
                     f"    try:\n        main({command!r})\n    except SystemExit:\n        pass")
    assert not any(loaded.values()), loaded


def test_generated_kernels_load_only_the_special_functions_leaf():
    loaded = _loaded("from renorm.runtime import special")
    assert loaded["torch"] and not loaded["zuko"] and not loaded["matplotlib"] and not loaded["renorm.runtime._train"], loaded


@pytest.mark.parametrize("package", PACKAGES)
def test_private_modules_offer_only_what_their_package_exports(package):
    import importlib
    import pkgutil

    surface = importlib.import_module(f"renorm.{package}")
    for info in pkgutil.iter_modules(surface.__path__):
        if not info.name.startswith("_"):
            continue  # a public module (renorm.runtime.special) is its own surface
        module = importlib.import_module(f"renorm.{package}.{info.name}")
        extra = set(getattr(module, "__all__", [])) - set(surface.__all__)
        assert not extra, f"renorm.{package}.{info.name}.__all__ lists {sorted(extra)}, which renorm.{package} does not export"
    for name in surface.__all__:
        assert getattr(surface, name) is not None, name
