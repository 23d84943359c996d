"""Golden trajectories of the numpy row, for regression tests.

Each file ``reference/golden/seed<S>.npz`` holds, for the default config at seed S:
the initial params, the loss and flat params every ``EVERY`` epochs, the config and the
environment it was made in (JSON strings). Regenerate all of them with

    python -m harness.files.golden

(generation trains the numpy row, so it lives a layer up, in the harness).

Files are read with ``allow_pickle=False`` and checked for shape before use.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reference.spec import Config, checkpoint_epochs, n_params

FOLDER = Path(__file__).resolve().parent / "golden"
SEEDS = (0, 1, 2)
EVERY = 100
COMMAND = "python -m harness.files.golden"


def golden_path(seed: int) -> Path:
    return FOLDER / f"seed{seed}.npz"


def load_golden(seed: int) -> dict:
    """The golden record for ``seed``, validated; config and environment as dicts."""
    path = golden_path(seed)
    with np.load(path, allow_pickle=False) as data:
        record = {k: data[k] for k in data.files}
    cfg = Config(**json.loads(str(record["config"])))
    n, kept = n_params(cfg.hidden), checkpoint_epochs(cfg.epochs, EVERY)
    expected = {"epochs": kept.shape, "loss": kept.shape, "params": (kept.size, n), "params0": (n,)}
    for key, shape in expected.items():
        if key not in record or record[key].shape != shape:
            raise ValueError(f"{path}: {key} should have shape {shape}")
    if not np.array_equal(record["epochs"], kept):
        raise ValueError(f"{path}: checkpoint epochs differ from every {EVERY}")
    record["config"] = cfg
    record["environment"] = json.loads(str(record["environment"]))
    return record
