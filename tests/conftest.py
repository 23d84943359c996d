import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from harness.engine.rows import INJECTABLE_ROWS
from reference.spec import Config

# CI must not flake: the same examples every run there; a fresh search elsewhere.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# the whole backends (numpy, jax, torch): the rows whose records take planted faults
BACKEND_NAMES = INJECTABLE_ROWS

# One JAX compilation cache on disk for the whole session: the suite compiles the same
# programs in many processes (xdist workers, the rows' worker pools, dask workers, every
# compare.py it runs), which inherit these variables and reuse what any of them compiled.
# The executables are XLA's own, so the numbers are the same bits; only compile time goes.
_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _JAX_CACHE = tempfile.mkdtemp(prefix="xor-tests-jax-cache-")
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=_JAX_CACHE,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


# Inductor's cache likewise (the compiled rows, tests/test_compiled.py): one for the session,
# not the user's ~/.cache/xor-crosscheck/inductor; a test that needs a cold compile sets its own.
_INDUCTOR_CACHE = None
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _INDUCTOR_CACHE = tempfile.mkdtemp(prefix="xor-tests-inductor-cache-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _INDUCTOR_CACHE


# Screenshots the browser tests take (tests/test_report.py), in one folder every xdist
# worker shares, emptied when the session starts and listed at its end.
SCREENSHOTS = Path(os.environ.get("XOR_SCREENSHOT_DIR") or Path(tempfile.gettempdir()) / "xorcheck-screenshots")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        shutil.rmtree(SCREENSHOTS, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    shots = sorted(SCREENSHOTS.glob("*.png")) if SCREENSHOTS.is_dir() else []
    if shots:
        terminalreporter.section("screenshots")
        for shot in shots:
            terminalreporter.write_line(f"{shot} ({shot.stat().st_size} bytes)")


def pytest_unconfigure(config):
    for made in (_JAX_CACHE, _INDUCTOR_CACHE):  # by the process that made it (under xdist: the controller)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def load_backend(name):
    """Row ``name``'s backend module, or a skip naming the missing framework."""
    from harness.engine.rows import ROWS, load_backend, unavailable_reason

    if unavailable_reason(name):
        pytest.skip(unavailable_reason(name))
    for module in ROWS[name].requires:
        pytest.importorskip(module)
    return load_backend(name)


@pytest.fixture(scope="session")
def default_cfg():
    return Config()


@pytest.fixture(scope="session")
def numpy_trajectory(default_cfg):
    """The numpy row at the default config: shared by tests that need a mid-trajectory point."""
    from harness.engine.execution import run_row

    return run_row("numpy", default_cfg)


def example_plugin_with(folder, extra: str, name: str = "plugin.py"):
    """A plug-in file in ``folder``: the example backend with ``extra`` appended (a
    member redefined, or a fault planted)."""
    path = Path(folder) / name
    source = (Path(__file__).resolve().parents[1] / "examples" / "plugin_backend.py").read_text()
    path.write_text(source + "\n" + extra)
    return path


def ulp_tolerance(reference, ulps=8):
    """Absolute tolerance of ``ulps`` units of roundoff at the reference's magnitude."""
    reference = np.asarray(reference)
    return ulps * np.finfo(reference.dtype).eps * max(1.0, float(np.abs(reference).max()))


# Fixtures that run something expensive (whole default runs, an install, a cluster, 20000
# epochs of every row): every test that uses one is in the slow tier, so the quick tier
# (pytest -m "not slow") never pays for them, and, per module (the fixtures are
# module-scoped), in one xdist group, so that under pytest -n a module's expensive
# fixtures run in one worker, once each (--dist loadgroup, pyproject.toml).
EXPENSIVE_FIXTURES = {
    "full_run",
    "clean_audit",
    "local_audit",
    "installed",
    "float64_rows",
    "float32_rows",
    "canary_run",
    "float64_check",
    "old_env",
}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if EXPENSIVE_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


# --- a second Python environment with older libraries (compare.py --env) ----------------------
# Built once per machine and kept (in XOR_ENV_CACHE, default ~/.cache/xor-crosscheck): a
# virtual environment of its own, none of this machine's site-packages, with these pins
# from the package registry. The project is not installed there: a .pth file names the
# checkout under test, rewritten every session, so the other interpreter runs this code.
OLD_ENV_PINS = ("numpy<2", "jax[cpu]==0.4.30", "optax==0.2.3")
ROOT = Path(__file__).resolve().parents[1]
REGISTRY_REFUSALS = (
    "No matching distribution",
    "Could not find a version",
    "404",
    "Network is unreachable",
    "Failed to establish a new connection",
)


@contextmanager
def _locked(path: Path):
    """One process at a time (xdist workers share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_env(folder: Path, pins) -> str | None:
    """A virtual environment in ``folder`` with ``pins``; None, or why the registry
    could not serve them (any other failure fails the test that needs it)."""
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    done = subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", *pins],
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode == 0:
        (folder / "ready").write_text("\n".join(pins) + "\n")
        return None
    said = [line for line in (done.stderr + done.stdout).splitlines() if line.strip() and "WARNING" not in line]
    reason = said[-1] if said else f"pip exited {done.returncode}"
    if any(refusal in done.stderr + done.stdout for refusal in REGISTRY_REFUSALS):
        return reason
    raise RuntimeError(f"building the second environment failed: {reason}")


@pytest.fixture(scope="session")
def old_env() -> str:
    """The interpreter of a second environment: numpy 1.26, jax/jaxlib 0.4.30, optax 0.2.3."""
    key = hashlib.sha256(("\n".join(OLD_ENV_PINS) + sys.version).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XOR_ENV_CACHE") or Path.home() / ".cache" / "xor-crosscheck")
    folder = cache / f"old-env-{key}"
    with _locked(cache / f"old-env-{key}.lock"):
        if not (folder / "ready").exists():
            refused = _build_env(folder, OLD_ENV_PINS)
            if refused:
                pytest.skip(
                    f"notice: the package registry cannot serve {', '.join(OLD_ENV_PINS)} for the second "
                    f"environment: {refused}"
                )
        site = next((folder / "lib").glob("python*/site-packages"))
        pth = site / "xor_crosscheck_source.pth"
        pth.with_suffix(".tmp").write_text(str(ROOT) + "\n")
        os.replace(pth.with_suffix(".tmp"), pth)
    return str(folder / "bin" / "python")
