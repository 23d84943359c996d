"""The rows of the comparison, one record each: which backend module trains it, what it
is, what it implements and what it needs. A library row's facts (the torch.optim or optax
call, known gaps) are the optimizer's record's (``reference.optimizers``)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import backends
from reference.optimizers import OPTIMIZERS
from reference.spec import ADAM_FORMS, DTYPES, Config


@dataclass(frozen=True)
class Row:
    name: str
    backend: str            # key in backends.MODULES ("file:PATH" for a plug-in): that module's train() trains it
    implementation: str     # what the row is, for the table
    kind: str               # "hand backprop", "autodiff" or "library"
    requires: tuple = ()    # importable modules the row needs
    forms: tuple = ADAM_FORMS  # the Adam forms (Config.adam) it implements
    lockstep: bool = True   # whether it can step from a given state (lockstep, replay)
    optimizers: tuple = tuple(OPTIMIZERS)  # the optimizers (Config.optimizer) it implements
    library: str | None = None   # library rows: "torch" or "optax" (the optimizer record's call), "keras"
    program: bool = False        # a program in another language (its backend's PROGRAM says which)
    dtypes: tuple = DTYPES       # the dtypes it computes in
    batched: bool = True         # whether it trains a batch of runs at once (the sweep)
    twin: tuple | None = None    # a row run by another interpreter: (the row it runs, the environment's name)

    def implements(self, cfg: Config) -> bool:
        return (cfg.optimizer in self.optimizers and (cfg.optimizer != "adam" or cfg.adam in self.forms)
                and cfg.dtype in self.dtypes)

    def describe(self, cfg: Config) -> str:
        """What the row computes for ``cfg``, for the table."""
        if self.twin is not None:
            return f"{ROWS[self.twin[0]].describe(cfg)}, in {self.twin[1]}"
        if self.kind in ("external", "plug-in"):
            return self.implementation
        if self.library == "keras":
            return f"{self.implementation} + keras Adam"
        if self.library is not None:
            call = getattr(OPTIMIZERS[cfg.optimizer], self.library).describe()
            return f"{self.implementation} + {'torch.optim' if self.library == 'torch' else self.library}.{call}"
        title = "Adam" if cfg.optimizer == "adam" else OPTIMIZERS[cfg.optimizer].title
        return f"{self.implementation} + hand {title}" + (", jit" if self.backend == "jax" else "")


ROWS = {
    row.name: row
    for row in (
        Row("numpy", "numpy", "hand backprop", "hand backprop", ("numpy",)),
        Row("jax", "jax", "jax.value_and_grad", "autodiff", ("jax",)),
        Row("torch", "torch", "torch autograd", "autodiff", ("torch",)),
        Row("torch.optim", "torch.optim", "torch autograd", "library", ("torch",), forms=("paper",), library="torch"),
        Row("optax", "optax", "jax.value_and_grad", "library", ("jax", "optax"), forms=("paper",), library="optax"),
        Row("keras", "keras", "jax.value_and_grad", "library", ("jax", "keras"), forms=("epshat",), lockstep=False,
            optimizers=("adam",), library="keras"),
        # the series' other languages: programs run in a subprocess (backends.program_row)
        Row("octave", "octave", "MATLAB code (backends/octave) run by GNU Octave", "hand backprop",
            program=True, dtypes=("float64",), batched=False),
        Row("scilab", "scilab", "Scilab code (backends/scilab/xor.sci) run by Scilab", "hand backprop",
            program=True, dtypes=("float64",), batched=False),
    )
}
BUILT_IN = frozenset(ROWS)
DEFAULT_ROWS = ("numpy", "jax", "torch", "torch.optim", "optax")  # the paper form's rows
LANGUAGE_ROWS = tuple(name for name, row in ROWS.items() if row.program)  # they join a default run where installed


def register_plugin(path) -> Row:
    """A row for the plug-in backend in ``path`` (``compare.py --backend-file``), named by
    its NAME; :class:`backends.PluginError` when the file cannot be one."""
    module = backends.load_file(path)
    name = str(module.NAME)
    resolved = str(Path(path).resolve())
    if name in ROWS and ROWS[name].backend != f"file:{resolved}":
        raise backends.PluginError(f"{path}: NAME {name!r} is taken by another row")
    row = Row(name, f"file:{resolved}", f"plug-in {Path(path).name}: {module.GRADIENT_SOURCE}", "plug-in",
              forms=tuple(getattr(module, "ADAM_FORMS", ("paper",))), optimizers=tuple(module.UPDATES))
    ROWS[name] = row
    return row


def added_rows(names) -> list:
    """The rows among ``names`` that this process registered (plug-ins, rows of other
    environments): what a worker process must register too (``execution.with_rows``)."""
    return [ROWS[n] for n in names if n in ROWS and n not in BUILT_IN]


def twinnable(name: str) -> bool:
    """Whether row ``name`` can also run in another Python environment: the built-in rows
    that are Python code (a language row runs the same program in either)."""
    return name in BUILT_IN and not ROWS[name].program


def is_twin_pair(a: str, b: str) -> bool:
    """Whether row ``b`` is row ``a`` run in another environment."""
    return ROWS[b].twin is not None and ROWS[b].twin[0] == a


def register_twin(name: str, env: str, python) -> Row:
    """Row ``name`` run by the interpreter ``python`` as environment ``env``: ``name@env``
    (``backends.env_row``)."""
    from backends.env_row import backend_key

    base = ROWS[name]
    row = replace(base, name=f"{name}@{env}", backend=backend_key(name, env, python), requires=(), batched=False,
                  twin=(name, env))
    ROWS[row.name] = row
    return row


def register_external(name: str, path) -> Row:
    """A row read from a trajectory file (``compare.py --external NAME=FILE``)."""
    row = Row(name, "external", f"trajectory from {path}", "external", lockstep=False)
    ROWS[name] = row
    return row


def rows_for(cfg: Config) -> tuple:
    """The built-in rows that implement ``cfg``'s optimizer (and Adam form), numpy first
    (plug-ins, files and other environments join a run only when named)."""
    return tuple(name for name, row in ROWS.items() if name in BUILT_IN and row.implements(cfg))


def expected_gap(name: str, cfg: Config):
    """The known gap (``reference.optimizers.Gap``: first differing phase, why) when row
    ``name`` cannot compute ``cfg``'s spec (a library that cannot express it), or None;
    a row of another environment has the gaps of the row it runs."""
    twin = ROWS[name].twin if name in ROWS else None
    return OPTIMIZERS[cfg.optimizer].gaps.get(twin[0] if twin else name)


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
    if ROWS[name].program:
        from backends.program_row import unavailable

        return unavailable(backends.load(ROWS[name].backend).PROGRAM)
    return None


def device_for(name: str, device: str) -> str:
    """numpy, the language rows and the rows of other environments always run on the CPU;
    ``device`` applies to the JAX and torch rows."""
    row = ROWS[name]
    return "cpu" if row.backend == "numpy" or row.program or row.twin else device


def device_problem(name: str, device: str) -> str | None:
    """Why row ``name`` cannot run on ``device`` here, or None."""
    if device_for(name, device) == "cpu":
        return None
    try:
        backends.load(ROWS[name].backend).check_device(device)
    except RuntimeError as exc:
        return f"{name} row: {exc}"
    return None


# Longest first, so that the slowest row never starts last when rows run in parallel:
# seconds each task took in a default run (seed 0, Adam, 20000 epochs) on the 2-core
# development machine, imports included; "perturbed" is the envelope's nudged numpy runs.
EXPECTED_COST = {"torch.optim": 16, "torch": 10, "scilab": 7, "octave": 7, "perturbed": 5, "jax": 2, "numpy": 1,
                 "optax": 1, "keras": 1}


