"""The rows of the comparison: which backend function trains each, and what it is."""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field

import numpy as np

import backends
from reference.spec import Config, initial_params


@dataclass(frozen=True)
class Row:
    name: str
    backend: str            # module key in backends.MODULES
    train_function: str     # function of that module: train(cfg, params0) -> (loss, params)
    implementation: str     # what the row is, for the table
    kind: str               # "hand backprop", "autodiff" or "library"
    extra_imports: tuple = ()


ROWS = {
    row.name: row
    for row in (
        Row("numpy", "numpy", "train", "hand backprop + hand Adam", "hand backprop"),
        Row("jax", "jax", "train", "jax.value_and_grad + hand Adam, jit", "autodiff"),
        Row("torch", "torch", "train", "torch autograd + hand Adam", "autodiff"),
        Row("torch.optim", "torch", "train_torch_optim", "torch autograd + torch.optim.Adam", "library"),
        Row("optax", "jax", "train_optax", "jax.value_and_grad + optax.adam", "library", ("optax",)),
    )
}
DEFAULT_ROWS = tuple(ROWS)


@dataclass
class Trajectory:
    """One row's run: loss per epoch (before its update) and flat params per epoch."""

    name: str
    loss: np.ndarray            # (epochs,)
    params: np.ndarray          # (epochs + 1, n_params); row 0 the initial weights
    seconds: float              # training wall time, compile excluded
    compile_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return self.loss.shape[0]

    @property
    def us_per_epoch(self) -> float:
        return self.seconds / self.epochs * 1e6


def unavailable_reason(name: str) -> str | None:
    """Why row ``name`` cannot run here (a framework is missing), or None."""
    row = ROWS[name]
    try:
        backends.load(row.backend)
        for module in row.extra_imports:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise backends.BackendUnavailable(f"{name} row unavailable: cannot import {module}") from exc
    except backends.BackendUnavailable as exc:
        return str(exc)
    return None


def run_row(name: str, cfg: Config, params0=None) -> Trajectory:
    """Train row ``name`` from ``params0`` (default: the config's initial weights)."""
    row = ROWS[name]
    if params0 is None:
        params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    train = getattr(backends.load(row.backend), row.train_function)
    compile_seconds = None
    start = time.perf_counter()
    if row.backend == "jax":
        loss, params, compile_seconds = train(cfg, params0, with_compile_time=True)
    else:
        loss, params = train(cfg, params0)
    seconds = time.perf_counter() - start - (compile_seconds or 0.0)
    return Trajectory(
        name=name,
        loss=np.asarray(loss, dtype=cfg.dtype),
        params=np.asarray(params, dtype=cfg.dtype),
        seconds=seconds,
        compile_seconds=compile_seconds,
    )
