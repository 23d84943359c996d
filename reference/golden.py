"""Golden trajectories of the numpy row, for regression tests.

Each file ``reference/golden/seed<S>.npz`` holds, for the default config at seed S:
the initial params, the loss and flat params every ``EVERY`` epochs, the config and the
environment it was made in (JSON strings), and a fingerprint of every phase of every
step: ``digests`` (E, P) uint32, the 4-byte BLAKE2b digest (``phase_digests``) of each
phase's values (its tensors in name order, little-endian float64) when the row steps
from its own state before epoch e, for the phases ``phases`` of the optimizer's step.
Run elsewhere, the same digests say at which epoch and in which phase the numbers first
differ from the ones the golden was made with, without keeping the 20000 steps' values.
Regenerate all of them with

    python -m harness.files.golden

(generation trains the numpy row, so it lives a layer up, in the harness).

Files are read with ``allow_pickle=False`` and checked for shape before use.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from reference.spec import Config, checkpoint_epochs, n_params

FOLDER = Path(__file__).resolve().parent / "golden"
SEEDS = (0, 1, 2)
EVERY = 100
COMMAND = "python -m harness.files.golden"


def golden_path(seed: int, folder=None) -> Path:
    return Path(FOLDER if folder is None else folder) / f"seed{seed}.npz"


def load_golden(seed: int, folder=None) -> dict:
    """The golden record for ``seed`` (in ``folder``, default ``FOLDER``), validated;
    config and environment as dicts."""
    path = golden_path(seed, folder)
    with np.load(path, allow_pickle=False) as data:
        record = {k: data[k] for k in data.files}
    cfg = Config(**json.loads(str(record["config"])))
    n, kept = n_params(cfg.hidden), checkpoint_epochs(cfg.epochs, EVERY)
    phases = record.get("phases", np.array([]))
    expected = {
        "epochs": kept.shape,
        "loss": kept.shape,
        "params": (kept.size, n),
        "params0": (n,),
        "phases": (max(phases.size, 1),),
        "digests": (cfg.epochs, max(phases.size, 1)),
    }
    for key, shape in expected.items():
        if key not in record or record[key].shape != shape:
            raise ValueError(f"{path}: {key} should have shape {shape}")
    if not np.array_equal(record["epochs"], kept):
        raise ValueError(f"{path}: checkpoint epochs differ from every {EVERY}")
    if record["digests"].dtype != np.uint32 or record["phases"].dtype.kind != "U":
        raise ValueError(f"{path}: digests should be uint32 and phases their names")
    record["config"] = cfg
    record["environment"] = json.loads(str(record["environment"]))
    return record


def phase_digests(phases: dict, names) -> np.ndarray:
    """(E, P) uint32: per state of a batch of steps (the first axis) and per phase of
    ``names``, the 4-byte BLAKE2b digest of that phase's tensors in name order as
    little-endian float64 bytes."""
    count = len(next(iter(phases[names[0]].values())))
    out = np.empty((count, len(names)), dtype=np.uint32)
    for column, phase in enumerate(names):
        parts = phases[phase]
        values = np.concatenate([np.asarray(parts[k], dtype="<f8").reshape(count, -1) for k in sorted(parts)], axis=1)
        values = np.ascontiguousarray(values)
        out[:, column] = [
            int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=4).digest(), "little") for row in values
        ]
    return out


def first_digest_difference(golden: np.ndarray, here: np.ndarray, names) -> tuple[int, str] | None:
    """(epoch, phase) of the first step, and its first phase, whose digests differ; None
    when all agree."""
    differs = golden != here
    rows = np.flatnonzero(differs.any(axis=1))
    if not rows.size:
        return None
    return int(rows[0]) + 1, str(names[int(np.argmax(differs[rows[0]]))])
