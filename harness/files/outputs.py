"""Output files are written whole or not at all: to a temporary name beside the
target, then renamed over it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from harness.engine.lifetime import PENDING_FILES


class OutputError(Exception):
    """An output path that cannot be written; the message is one line for the user."""


def check_writable_file(path: str) -> Path:
    """Fail before any work if ``path`` cannot be written as a file."""
    try:
        return _check_writable_file(path)
    except OSError as exc:  # a name too long, a loop of links: what stat itself refuses
        raise OutputError(f"cannot write {_shown(path)}: {exc.strerror or exc}") from None


def _shown(path: str, most: int = 80) -> str:
    """A path as an error line shows it: a long one cut in the middle."""
    return path if len(path) <= most else f"{path[: most // 2]}…{path[-most // 2 :]}"


def _check_writable_file(path: str) -> Path:
    target = Path(path)
    if target.is_dir():
        raise OutputError(f"{path} is a directory, not a file")
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"cannot write {path}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return target


def check_writable_dir(path: str) -> Path:
    """Fail before any work if ``path`` cannot be a writable folder (made if missing)."""
    try:
        return _check_writable_dir(path)
    except OSError as exc:
        raise OutputError(f"cannot write into {_shown(path)}: {exc.strerror or exc}") from None


def _check_writable_dir(path: str) -> Path:
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise OutputError(f"{path} exists and is not a folder")
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {path}: {existing} is not a writable folder")
    return target


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path, write) -> None:
    """Call ``write(binary_file)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    PENDING_FILES.add(tmp)
    try:
        os.chmod(tmp, _default_file_mode())  # mkstemp makes it private; outputs are not
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    finally:
        PENDING_FILES.discard(tmp)


def json_safe(value):
    """Standard JSON has no NaN or infinity: such numbers are written as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path, data) -> None:
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    write_atomic(path, lambda f: f.write(text.encode()))


def write_npz(path, arrays: dict) -> None:
    write_atomic(path, lambda f: np.savez(f, **arrays))
