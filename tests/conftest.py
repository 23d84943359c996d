import os

import numpy as np
import pytest
from hypothesis import settings

from reference.spec import Config, initial_params

# CI must not flake: the same examples every run there; a fresh search elsewhere.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

BACKEND_NAMES = ("numpy", "jax", "torch")


def load_backend(name):
    """The backend module, or a skip naming the missing framework."""
    if name != "numpy":
        pytest.importorskip(name)
    import backends

    return backends.load(name)


@pytest.fixture(scope="session")
def default_cfg():
    return Config()


@pytest.fixture(scope="session")
def numpy_trajectory(default_cfg):
    """The numpy row at the default config: shared by tests that need a mid-trajectory point."""
    from harness.engine.execution import run_row

    return run_row("numpy", default_cfg)


def ulp_tolerance(reference, ulps=8):
    """Absolute tolerance of ``ulps`` units of roundoff at the reference's magnitude."""
    reference = np.asarray(reference)
    return ulps * np.finfo(reference.dtype).eps * max(1.0, float(np.abs(reference).max()))


def params_at(seed=0, hidden=4, dtype="float64"):
    return initial_params(seed, hidden, dtype)


# Fixtures that run something expensive (whole default runs, an install, a cluster, 20000
# epochs of every row): every test that uses one is in the slow tier, so the quick tier
# (pytest -m "not slow") never pays for them.
EXPENSIVE_FIXTURES = {"full_run", "clean_audit", "local_audit", "installed", "float64_rows", "float32_rows",
                      "canary_run", "float64_check"}


def pytest_collection_modifyitems(items):
    for item in items:
        if EXPENSIVE_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
