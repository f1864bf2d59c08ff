r"""Importing generated modules (cached by spec hash in memory and on disk) and compiling the loss."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable

import sympy as sp

from renorm.symbolic import Problem

from . import _generate, _printer
from ._generate import generate
from ._printer import fingerprint

__all__ = ["load", "compile_loss", "cache_dir", "write_atomic"]

_MODULES: dict[str, types.ModuleType] = {}


def cache_dir() -> Path:
    r"""Where generated modules are kept: ``$RENORM_CACHE``, else ``~/.cache/renorm-flows``.

    Returns:
        The ``codegen`` folder inside it (not created here).
    """
    root = os.environ.get("RENORM_CACHE")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "renorm-flows")
    return Path(root) / "codegen"


def write_atomic(path: str | Path, text: str) -> None:
    r"""Writes ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the new one, never a half-written one.

    Arguments:
        path: The destination.
        text: The content (UTF-8).
    """
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        # mkstemp makes the file private; a new file gets the usual permissions instead
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


@functools.cache
def _generator_hash() -> str:
    r"""Hash of the generator's own source: a changed generator never reuses old cache entries."""
    digest = hashlib.sha256()
    for module in (_generate, _printer):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def _key(problem: Problem) -> str:
    r"""The cache key: the spec hash, the generator, the SymPy version and the function table."""
    text = "\n".join([problem.sha256, _generator_hash(), sp.__version__, fingerprint()])
    return hashlib.sha256(text.encode()).hexdigest()


def _import(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _from_source(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<renorm-codegen {name}>", "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def load(problem: Problem) -> types.ModuleType:
    r"""The generated kernel module of ``problem``, imported.

    Modules are cached in memory and as files under :func:`cache_dir`, keyed by the spec hash
    (and the generator's format, the SymPy version and the function table), and written
    atomically. Where the cache folder is not writable the module is imported from memory.

    Arguments:
        problem: The matching problem.

    Returns:
        The module (see :func:`renorm.codegen.generate` for its contents).

    Example:
        >>> from renorm.symbolic import load_spec
        >>> kernels = load(load_spec("examples/angularity_lo.toml"))  # doctest: +SKIP
        >>> kernels.loss_density(log_q, x, alpha)  # doctest: +SKIP
    """
    key = _key(problem)
    if key in _MODULES:
        return _MODULES[key]
    name = f"renorm_generated_{re.sub(r'[^0-9A-Za-z_]', '_', problem.name)}_{key[:16]}"
    path = cache_dir() / f"{name}.py"
    module = None
    if path.is_file():
        try:
            module = _import(path, name)
        except (SyntaxError, ImportError, AttributeError, NameError, OSError):
            module = None  # an unreadable cache entry is simply regenerated
        if module is not None and getattr(module, "SPEC_SHA256", None) != problem.sha256:
            module = None
    if module is None:
        source = generate(problem)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, source)
            module = _import(path, name)
        except OSError:
            module = _from_source(source, name)
    _MODULES[key] = module
    return module


def compile_loss(module: types.ModuleType, **options: Any) -> Callable[..., Any]:
    r"""``torch.compile`` of the module's fused ``loss_density``.

    Arguments:
        module: A generated module (from :func:`load` or an imported file).
        options: Passed to :func:`torch.compile` (e.g. ``dynamic=True``, ``mode="max-autotune"``).

    Returns:
        The compiled function, same signature ``(log_q, x, alpha)``.
    """
    import torch

    return torch.compile(module.loss_density, **options)
