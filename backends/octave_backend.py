"""The Octave row: the network and Adam written in MATLAB (``octave/xor_adam.m``, which
runs unchanged in MATLAB), run by GNU Octave's ``octave-cli`` as a subprocess from the
exported initial state, its trajectory read back in the exchange format
(``reference.exchange``); the harness validates it as any external program's.
Independent arithmetic: Octave's own exp, BLAS products and loop.

Not the full backend interface: it trains one float64 run with paper-form Adam and
cannot step from a given state, so it has no lockstep.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from reference.exchange import ExternalError, init_record, read_trajectory_file
from reference.spec import Config, flatten_params

NAME = "octave"
GRADIENT_SOURCE = "hand backprop in MATLAB code"
PROGRAM = "octave-cli"
SCRIPT_DIR = Path(__file__).resolve().parent / "octave"  # package data: installed with the package
TIMEOUT_SECONDS = 600
# Octave 7 may print this at exit after a successful run (an Octave bug, not ours).
HARMLESS_STDERR = "ignoring const execution_exception& while preparing to exit"


def check_device(device: str) -> None:
    if device != "cpu":
        raise RuntimeError(f"the octave row runs on the cpu only, not {device!r}")


def command(init_file, out_file) -> list[str]:
    """The octave-cli command line that trains from ``init_file`` into ``out_file``."""
    call = f"addpath('{SCRIPT_DIR.as_posix()}'); xor_adam('{Path(init_file).as_posix()}', '{Path(out_file).as_posix()}')"
    return [PROGRAM, "--no-init-file", "--quiet", "--eval", call]


def train(cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
    """Write the initial state as ``compare.py init`` does (with ``params0``), run
    xor_adam.m on it and read its trajectory back: (loss (E,), params (E + 1, n), the
    initial weights first), every epoch whatever ``every`` is; the harness checks it
    against the run as it checks any external program's."""
    import backends

    check_device(device)
    if shutil.which(PROGRAM) is None:
        raise backends.BackendUnavailable(f"octave row unavailable: {PROGRAM} is not on PATH")
    if np.ndim(params0["W1"]) != 2 or cfg.dtype != "float64" or cfg.optimizer != "adam" or cfg.adam != "paper":
        raise ValueError("the octave row trains one float64 run with paper-form Adam")
    record = init_record(cfg) | {"params": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in params0.items()},
                                 "flat": flatten_params(params0).astype(np.float64).tolist()}
    with tempfile.TemporaryDirectory(prefix="xor-octave-") as folder:
        init_file, out_file = Path(folder) / "init.json", Path(folder) / "trajectory.csv"
        init_file.write_text(json.dumps(record))
        start = time.perf_counter()
        try:
            done = subprocess.run(command(init_file, out_file), capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            raise backends.BackendUnavailable(f"octave row failed: no result in {TIMEOUT_SECONDS} s") from None
        seconds = time.perf_counter() - start
        if done.returncode != 0 or not out_file.exists():
            last = [line for line in done.stderr.splitlines() if line.strip() and HARMLESS_STDERR not in line]
            raise backends.BackendUnavailable(f"octave row failed (exit {done.returncode}): "
                                              f"{last[-1] if last else 'no trajectory written'}")
        try:
            loss, params, _ = read_trajectory_file(out_file)
        except ExternalError as exc:
            raise backends.BackendUnavailable(f"octave row wrote an unusable trajectory: {exc}") from None
    if timings is not None:
        timings["run_seconds"] = seconds  # octave-cli's start (~0.2 s) included
    return loss, np.vstack([flatten_params(params0)[None].astype(np.float64), params])
