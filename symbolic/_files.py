r"""Files the tool writes, and the JSON it prints: one atomic writer, one JSON sanitizer."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_atomic", "json_safe"]


def write_atomic(path: str | Path, text: str | bytes) -> None:
    r"""Writes ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the new one, never a half-written one; the content is flushed
    to disk before the rename. A new file gets the usual permissions (``0666`` less the umask),
    an existing one keeps its own.

    Arguments:
        path: The destination.
        text: The content (``str`` as UTF-8, or ``bytes``).
    """
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        # mkstemp makes the file private; a new file gets the usual permissions instead
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    data = text.encode("utf-8") if isinstance(text, str) else text
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
        _fsync_directory(path.parent)  # the rename itself survives a crash
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _fsync_directory(directory: Path) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems cannot sync a directory; the data itself is on disk
    finally:
        os.close(handle)


def json_safe(value: Any) -> Any:
    r"""A JSON-safe copy: non-finite floats become ``None``, tuples lists, NumPy scalars and arrays
    Python ones (so ``json.dumps(..., allow_nan=False)`` works)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # NumPy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value
