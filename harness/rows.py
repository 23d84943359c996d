"""The rows of the comparison: which backend function trains each, and what it is."""
from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import numpy as np

import backends
from reference.optimizers import LIBRARY_GAPS, OPTAX, OPTIMIZERS, TORCH_OPTIM
from reference.spec import ADAM_FORMS, DTYPES, Config, initial_params


@dataclass(frozen=True)
class Row:
    name: str
    backend: str            # module key in backends.MODULES
    train_function: str     # function of that module: train(cfg, params0) -> (loss, params)
    implementation: str     # what the row is, for the table
    kind: str               # "hand backprop", "autodiff" or "library"
    requires: tuple = ()    # importable modules the row needs
    forms: tuple = ADAM_FORMS  # the Adam forms (Config.adam) it implements
    lockstep: bool = True   # whether it can step from a given state (lockstep, replay)
    optimizers: tuple = tuple(OPTIMIZERS)  # the optimizers (Config.optimizer) it implements
    library: dict | None = None  # optimizer -> the library call, for library rows
    program: str | None = None   # an executable the row runs, looked up on PATH
    dtypes: tuple = DTYPES       # the dtypes it computes in
    batched: bool = True         # whether it trains a batch of runs at once (the sweep)

    def implements(self, cfg: Config) -> bool:
        return (cfg.optimizer in self.optimizers and (cfg.optimizer != "adam" or cfg.adam in self.forms)
                and cfg.dtype in self.dtypes)

    def describe(self, cfg: Config) -> str:
        """What the row computes for ``cfg``, for the table."""
        if self.kind in ("external", "plug-in"):
            return self.implementation
        if self.library is not None:
            return f"{self.implementation} + {self.library[cfg.optimizer]}"
        title = "Adam" if cfg.optimizer == "adam" else OPTIMIZERS[cfg.optimizer].title
        return f"{self.implementation} + hand {title}" + (", jit" if self.backend == "jax" else "")


ROWS = {
    row.name: row
    for row in (
        Row("numpy", "numpy", "train", "hand backprop", "hand backprop", ("numpy",)),
        Row("jax", "jax", "train", "jax.value_and_grad", "autodiff", ("jax",)),
        Row("torch", "torch", "train", "torch autograd", "autodiff", ("torch",)),
        Row("torch.optim", "torch", "train_torch_optim", "torch autograd", "library", ("torch",),
            forms=("paper",), library={k: f"torch.optim.{v}" for k, v in TORCH_OPTIM.items()}),
        Row("optax", "jax", "train_optax", "jax.value_and_grad", "library", ("jax", "optax"),
            forms=("paper",), library={k: f"optax.{v}" for k, v in OPTAX.items()}),
        Row("keras", "jax", "train_keras", "jax.value_and_grad", "library", ("jax", "keras"),
            forms=("epshat",), lockstep=False, optimizers=("adam",), library={"adam": "keras Adam"}),
        Row("octave", "octave", "train", "MATLAB code (octave/xor_adam.m) run by GNU Octave", "external", (),
            forms=("paper",), lockstep=False, optimizers=("adam",), program="octave-cli", dtypes=("float64",),
            batched=False),
    )
}
DEFAULT_ROWS = ("numpy", "jax", "torch", "torch.optim", "optax")  # the paper form's rows


def register_plugin(path) -> Row:
    """A row for the plug-in backend in ``path`` (``compare.py --backend-file``), named by
    its NAME; :class:`backends.PluginError` when the file cannot be one."""
    from pathlib import Path

    module = backends.load_file(path)
    name = str(module.NAME)
    resolved = str(Path(path).resolve())
    if name in ROWS and ROWS[name].backend != f"file:{resolved}":
        raise backends.PluginError(f"{path}: NAME {name!r} is taken by another row")
    row = Row(name, f"file:{resolved}", "train", f"plug-in {Path(path).name}: {module.GRADIENT_SOURCE}", "plug-in",
              forms=tuple(getattr(module, "ADAM_FORMS", ("paper",))), optimizers=tuple(module.UPDATES))
    ROWS[name] = row
    return row


def plugin_paths(names) -> list:
    """The files of the plug-in rows among ``names``: what a worker process must register."""
    return [ROWS[n].backend[len("file:"):] for n in names if n in ROWS and ROWS[n].kind == "plug-in"]


def with_plugins(paths: list, function, *args):
    """``function(*args)`` in a process that has registered the plug-in rows first (worker
    processes start with the built-in rows only)."""
    for path in paths:
        register_plugin(path)
    return function(*args)


def register_external(name: str, path) -> Row:
    """A row read from a trajectory file (``compare.py --external NAME=FILE``)."""
    row = Row(name, "external", "", f"trajectory from {path}", "external", lockstep=False)
    ROWS[name] = row
    return row


def rows_for(cfg: Config) -> tuple:
    """The rows that implement ``cfg``'s optimizer (and Adam form), numpy first."""
    return tuple(name for name, row in ROWS.items() if row.implements(cfg))


def expected_gap(name: str, cfg: Config) -> tuple | None:
    """(first differing phase, why) when row ``name`` is known not to compute ``cfg``'s
    spec (a library that cannot express it), or None."""
    return LIBRARY_GAPS.get((name, cfg.optimizer))


@dataclass
class Trajectory:
    """One row's run: loss per epoch (before its update) and flat params per epoch."""

    name: str
    loss: np.ndarray            # (epochs,)
    params: np.ndarray          # (epochs + 1, n_params); row 0 the initial weights
    seconds: float              # training wall time, compile excluded
    compile_seconds: float | None = None
    epochs_run: int | None = None  # when only checkpoints are kept: how many epochs ran
    states: dict | None = None     # Adam's flat m and v per record, where recorded

    @property
    def epochs(self) -> int:
        return self.epochs_run or self.loss.shape[0]

    @property
    def us_per_epoch(self) -> float:
        return self.seconds / self.epochs * 1e6


def unavailable_reason(name: str) -> str | None:
    """Why row ``name`` cannot run here (a framework is not installed), or None.

    Looks the modules up without importing them, so asking costs nothing; a framework
    that is installed but fails to import shows up when the row runs
    (:class:`backends.BackendUnavailable`).
    """
    for module in ROWS[name].requires:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"{name} row unavailable: {module} is not installed"
    program = ROWS[name].program
    if program and shutil.which(program) is None:
        return f"{name} row unavailable: {program} is not on PATH (install GNU Octave, e.g. apt-get install octave)"
    return None


def device_for(name: str, device: str) -> str:
    """numpy always runs on the CPU; ``device`` applies to the JAX and torch rows."""
    return "cpu" if ROWS[name].backend == "numpy" else device


def device_problem(name: str, device: str) -> str | None:
    """Why row ``name`` cannot run on ``device`` here, or None."""
    if device_for(name, device) == "cpu":
        return None
    try:
        backends.load(ROWS[name].backend).check_device(device)
    except RuntimeError as exc:
        return f"{name} row: {exc}"
    return None


def run_row(name: str, cfg: Config, params0=None, every: int = 1, device: str = "cpu",
            fault: str | None = None, record_states: bool = False, nudge_seed: int | None = None) -> Trajectory:
    """Train row ``name`` from ``params0`` (default: the config's initial weights),
    recording every ``every`` epochs (the last always), with ``fault`` planted if given.
    numpy only: ``record_states`` also keeps the optimizer's state for lockstep and
    replay; ``nudge_seed`` moves θ by ~one ULP at random after every step (the envelope)."""
    from harness.faults import injected

    row = ROWS[name]
    if params0 is None:
        params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    timings, extra = {}, {}
    if record_states:
        extra["states"] = {}
    if nudge_seed is not None:
        extra["nudge_seed"] = nudge_seed
    with injected(row.backend, fault):
        train = getattr(backends.load(row.backend), row.train_function)
        start = time.perf_counter()
        loss, params = train(cfg, params0, every=every, device=device_for(name, device), timings=timings, **extra)
        seconds = timings.get("run_seconds", time.perf_counter() - start)
    return Trajectory(
        name=name,
        loss=np.asarray(loss, dtype=cfg.dtype),
        params=np.asarray(params, dtype=cfg.dtype),
        seconds=seconds,
        compile_seconds=timings.get("compile_seconds"),
        epochs_run=cfg.epochs,
        states=extra.get("states"),
    )


def _guarded(function, *args):
    """Run a task; a framework that fails to import comes back as its reason."""
    try:
        return function(*args)
    except backends.BackendUnavailable as exc:
        return str(exc)


# Longest first, so that the slowest row never starts last when rows run in parallel.
EXPECTED_COST = {"torch.optim": 5, "torch": 4, "numpy": 3, "octave": 3, "jax": 2, "optax": 1, "keras": 1}


class Workers:
    """Tasks in ``jobs`` processes (in this process when jobs is 1); the processes live
    as long as the block, so each imports its frameworks once. Tasks may be submitted
    while results are being collected, so work that depends on a result starts as soon
    as that result is in."""

    def __init__(self, jobs: int):
        self.jobs, self.pool, self.pending = jobs, None, {}

    def __enter__(self):
        if self.jobs > 1:
            # spawn, not fork: a parent that already holds torch or JAX threads must not fork.
            context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=context)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown()

    def submit(self, key, function, *args) -> None:
        if self.pool is None:
            self.pending[key] = (function, args)
        else:
            self.pending[self.pool.submit(_guarded, function, *args)] = key

    def results(self):
        """Yields (key, result) until nothing submitted is left, including tasks
        submitted meanwhile."""
        while self.pending:
            if self.pool is None:
                key = next(iter(self.pending))
                function, args = self.pending.pop(key)
                yield key, _guarded(function, *args)
                continue
            future = next(as_completed(list(self.pending)))
            yield self.pending.pop(future), future.result()

    def run(self, tasks):
        """``tasks``: (key, function, args); yields (key, result) as each finishes."""
        for key, function, args in tasks:
            self.submit(key, function, *args)
        yield from self.results()
