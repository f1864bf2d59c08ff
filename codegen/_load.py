r"""Importing generated modules (cached by spec hash in memory and on disk) and compiling the loss."""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable

import sympy as sp

import renorm.symbolic
from renorm.symbolic import Problem, write_atomic

from . import _generate, _printer
from ._check import check_module
from ._errors import CodegenError
from ._generate import generate
from ._printer import fingerprint

__all__ = ["load", "compile_loss", "cache_dir"]

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


@functools.cache
def _generator_hash() -> str:
    r"""Hash of the generator's source and of the symbolic layer it generates from (the expansion, the
    matching functions): a change in either never reuses old cache entries."""
    digest = hashlib.sha256()
    symbolic = sorted(Path(renorm.symbolic.__file__).parent.glob("*.py"))
    for path in [Path(_generate.__file__), Path(_printer.__file__), *symbolic]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _key(problem: Problem) -> str:
    r"""The cache key: the spec hash, the generator, the SymPy version and the function table."""
    text = "\n".join([problem.sha256, _generator_hash(), sp.__version__, fingerprint()])
    return hashlib.sha256(text.encode()).hexdigest()


#: A cached module larger than this is not read (the largest example is about 20 kB).
_CACHE_BYTES = 16 << 20


def _table_modules() -> set[str]:
    r"""The modules that the function table's lowerings make a generated module import."""
    return {entry.module for entry in _printer.lowerings().values()} - {"torch"}


def _private(stat: os.stat_result) -> bool:
    r"""Owned by this user and writable by no one else: a cache entry another user could have written is not read."""
    return stat.st_uid == os.getuid() and not stat.st_mode & 0o022


def _cached(directory: Path, name: str, problem: Problem) -> tuple[str, Path] | None:
    r"""The verified source of a cache entry for ``name`` and its path, or ``None``.

    An entry is named ``NAME.DIGEST.py`` with DIGEST the SHA-256 of its content. It is used
    only if the folder and the file belong to this user and no one else can write them, the
    content hashes to the digest in its name, the module passes :func:`check_module` and
    declares this problem's spec hash. Nothing in it runs before that.
    """
    try:
        if not _private(directory.stat()):
            return None
        candidates = sorted(directory.glob(f"{name}.*.py"))
    except OSError:
        return None
    for path in candidates:
        try:
            stat = path.lstat()
            if not (stat.st_mode & 0o170000 == 0o100000 and _private(stat) and stat.st_size <= _CACHE_BYTES):
                continue
            data = path.read_bytes()
        except OSError:
            continue
        digest = hashlib.sha256(data).hexdigest()
        if path.name != f"{name}.{digest[:32]}.py":
            continue
        try:
            source = data.decode("utf-8")
            check_module(source, _table_modules())
        except (UnicodeDecodeError, CodegenError):
            continue
        if f"\nSPEC_SHA256 = {problem.sha256!r}\n" in source:
            return source, path
    return None


def _store(directory: Path, name: str, source: str) -> Path | None:
    r"""Writes a cache entry (see :func:`_cached`); ``None`` where the cache cannot be written."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    path = directory / f"{name}.{digest[:32]}.py"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(directory.stat()):
            return None
        path.unlink(missing_ok=True)  # a new file: write_atomic would keep an old one's permissions
        write_atomic(path, source)
    except OSError:
        return None
    return path


def _module(source: str, name: str, path: Path | None) -> types.ModuleType:
    r"""Executes a checked module source (the text that was verified, not a file read again)."""
    module = types.ModuleType(name)
    filename = str(path) if path is not None else f"<renorm-codegen {name}>"
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    sys.modules[name] = module
    return module


def load(problem: Problem) -> types.ModuleType:
    r"""The generated kernel module of ``problem``, checked and imported.

    Modules are cached in memory and as files under :func:`cache_dir`, keyed by the spec hash
    (and the generator's source, the SymPy version and the function table), written
    atomically and named by the SHA-256 of their content. A module runs only after
    :func:`~renorm.codegen._check.check_module` has accepted its text; a cache entry is used
    only if its content matches its digest and it belongs to this user (see :func:`_cached`),
    otherwise it is generated again. Where the cache folder is not writable the module is
    run from memory.

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
    directory = cache_dir()
    cached = _cached(directory, name, problem)
    if cached is None:
        source = generate(problem)  # checked there
        path = _store(directory, name, source)
    else:
        source, path = cached
    _resolve_targets(source)
    module = _module(source, name, path)
    _MODULES[key] = module
    return module


def _resolve_targets(source: str) -> None:
    r"""Refuses, in one line, a module that calls a torch target which does not exist (a registered
    function's misspelt ``torch`` path): generating imports no torch, so this is the first place to look."""
    for function, entry in _printer.lowerings().items():
        if f"{entry.target}(" not in source:
            continue
        try:
            found = callable(getattr(importlib.import_module(entry.module), entry.target.rpartition(".")[2], None))
        except ImportError:
            found = False
        if not found:
            raise CodegenError(f"{getattr(function, '__name__', function)}: the torch target {entry.target!r} does not exist "
                               "(check the function's record in renorm.symbolic.SPECIAL_FUNCTIONS)")


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
