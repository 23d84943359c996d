"""What a result was computed with: versions and platform, read without importing
the frameworks (importing torch or jax only to print a version costs seconds)."""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

from harness.engine.rows import ROWS

# numpy, every built-in row's packages (its record's), and the figures' library
PACKAGES = tuple(dict.fromkeys(("numpy", *(p for row in ROWS.values() for p in row.packages), "matplotlib")))
CODE_PACKAGES = ("reference", "backends", "harness")
CODE_SUFFIXES = (".py", ".m", ".sci")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu") -> dict:
    env: dict[str, str | int | None] = {"python": platform.python_version()}
    env.update({name: package_version(name) for name in PACKAGES})
    env["platform"] = platform.platform()
    env["machine"] = platform.machine()
    env["cpu_count"] = os.cpu_count()
    env["device"] = device
    if device == "cuda":
        env["cuda_device"] = cuda_device_name()
    return env


def cuda_device_name() -> str | None:
    """The GPU the torch rows ran on (torch is imported only for a cuda run)."""
    import backends
    from harness.engine.rows import load_backend

    try:
        return load_backend("torch").cuda_device_name()
    except backends.BackendUnavailable:
        return None


def code_fingerprint() -> str:
    """A digest of this project's code as this interpreter imports it (every .py, .m and
    .sci file of its packages, by relative path): two environments that print the same
    one run the same code, so a difference between them is the libraries'."""
    import importlib

    digest = hashlib.sha256()
    for package in CODE_PACKAGES:
        folder = Path(str(importlib.import_module(package).__file__)).parent
        for path in sorted(p for p in folder.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts):
            digest.update(f"{package}/{path.relative_to(folder).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
