"""What a result was computed with: versions and platform, read without importing
the frameworks (importing torch or jax only to print a version costs seconds)."""
from __future__ import annotations

import os
import platform
from importlib import metadata

PACKAGES = ("numpy", "jax", "jaxlib", "torch", "optax", "matplotlib")


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def environment(device: str = "cpu") -> dict:
    env = {"python": platform.python_version()}
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

    try:
        return backends.load("torch").cuda_device_name()
    except backends.BackendUnavailable:
        return None
