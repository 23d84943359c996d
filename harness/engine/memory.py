"""Will a run fit in memory? An estimate made before anything runs, so that a run too
large for this machine is refused in one line instead of dying with a traceback hours in.

The estimate counts what a run keeps: every row's trajectory (loss and flat params per
recorded epoch), held twice (in the worker that trained it and in the main process), the
numpy row's optimizer state when lockstep needs it, the perturbed runs of the envelope,
and the lockstep batches (every recorded state stepped at once: its forward pass, phases
and rounding bounds), on top of a process with the frameworks loaded. The two constants
are measured by ``benchmarks/memory.py`` (figures in docs/speed.md); the rest is
counted. It errs large: a run refused here would need most of the machine.
"""

from __future__ import annotations

import os

import numpy as np

from reference.optimizers import OPTIMIZERS
from reference.spec import Config, n_params

# bytes of lockstep working memory per value of a step (epochs × (3·4H + 4H + 1)): measured
# at most 122 for every row once the framework's own import is out of the figure
LOCKSTEP_BYTES_PER_VALUE = 160
# a process with numpy, JAX and torch loaded and a default run's small arrays: measured 0.9 GiB
BASELINE_BYTES = 2**30
ENVELOPE_RUNS = 3
COPIES = 2  # a trajectory lives in the worker that trained it and in the main process


def available_bytes() -> int | None:
    """Memory available to a new process now (Linux: MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def trajectory_bytes(cfg: Config, runs: int = 1, every: int = 1, slots: int = 0) -> int:
    """One row's recorded trajectory over ``runs`` runs, with ``slots`` optimizer slots."""
    records = cfg.epochs // every + 2
    item = np.dtype(cfg.dtype).itemsize
    return records * runs * (n_params(cfg.hidden) * (1 + slots) + 1) * item


def lockstep_bytes(cfg: Config) -> int:
    """One row's lockstep: every epoch's step at once."""
    values = cfg.epochs * (3 * 4 * cfg.hidden + n_params(cfg.hidden))
    return values * LOCKSTEP_BYTES_PER_VALUE


def estimate_bytes(command: str, cfg: Config, rows: int, runs: int = 1, every: int = 1) -> int:
    """What ``command`` keeps at its peak for ``rows`` rows of ``runs`` runs each
    (seeds for the sweep, optimizers for the lineage, Adam forms for forms)."""
    return BASELINE_BYTES + _kept_bytes(command, cfg, rows, runs, every)


def _kept_bytes(command: str, cfg: Config, rows: int, runs: int, every: int) -> int:
    slots = len(OPTIMIZERS[cfg.optimizer].state_slots)
    if command == "default":
        kept = COPIES * rows * trajectory_bytes(cfg) + trajectory_bytes(cfg, slots=slots)
        return kept + COPIES * trajectory_bytes(cfg, ENVELOPE_RUNS) + 2 * lockstep_bytes(cfg)
    if command == "sweep":
        return COPIES * (rows + ENVELOPE_RUNS) * trajectory_bytes(cfg, runs, every)
    if command == "lineage":
        return COPIES * runs * (rows + ENVELOPE_RUNS) * trajectory_bytes(cfg)
    if command == "forms":
        return runs * trajectory_bytes(cfg, slots=2)
    return rows * trajectory_bytes(cfg, runs, every)


ADVICE = {
    "sweep": "a larger --every, fewer --seeds or --epochs, or a smaller --hidden",
    "grads": "fewer --epochs or a smaller --hidden",
}


def too_large(command: str, cfg: Config, rows: int, runs: int = 1, every: int = 1) -> str | None:
    """Why the run would not fit in the memory available now (one line), or None."""
    need, have = estimate_bytes(command, cfg, rows, runs, every), available_bytes()
    if have is None or need <= have:
        return None
    advice = ADVICE.get(command, "fewer --epochs or a smaller --hidden")
    return (
        f"this run would need about {need / 2**30:.1f} GiB of memory (its trajectories and lockstep batches), "
        f"more than the {have / 2**30:.1f} GiB available here: use {advice}"
    )
