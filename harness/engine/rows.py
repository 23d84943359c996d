"""The rows of the comparison, one record each: which backend module trains it, what it
is, what it implements and what it needs. A library row's facts (the torch.optim or optax
call, known gaps) are the optimizer's record's (``reference.optimizers``)."""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import backends
from backends.compiled import COMPILATIONS, Compilation
from backends.compiled import unavailable as compiled_unavailable
from reference.optimizers import OPTIMIZERS
from reference.spec import ADAM_FORMS, DTYPES, Config


@dataclass(frozen=True)
class Row:
    """Everything the harness knows about one row; generic code and the generated tests
    read these fields, never a list of row names."""

    name: str
    backend: str  # what backends.load takes: the module ("backends.numpy_backend"), "file:PATH", "env:…"
    implementation: str  # what the row is, for the table
    kind: str  # "hand backprop", "autodiff", "library", "plug-in" or "external"
    requires: tuple[str, ...] = ()  # modules it imports: looked up before it runs, their import timed by bench
    packages: tuple[str, ...] = ()  # distributions its numbers depend on (the environment record, each row's versions)
    forms: tuple[str, ...] = ADAM_FORMS  # the Adam forms (Config.adam) it implements
    lockstep: bool = True  # whether it can step from a given state (lockstep, replay)
    optimizers: tuple[str, ...] = tuple(OPTIMIZERS)  # the optimizers (Config.optimizer) it implements
    library: str | None = None  # library rows: the Optimizer record's field naming the call ("torch", "optax")
    library_label: str = ""  # the library as the table names it ("torch.optim")
    program: bool = False  # a program in another language (its backend's PROGRAM says which)
    dtypes: tuple[str, ...] = DTYPES  # the dtypes it computes in
    batched: bool = True  # whether it trains a batch of runs at once (the sweep)
    twin: tuple[str, str] | None = None  # a row run by another interpreter: (the row it runs, the environment's name)
    injectable: bool = False  # its module is a whole backend (backends.interface): faults can be planted in it
    device: str = "any"  # "cpu": always runs on the cpu; "any": --device applies
    cost: float = 0.0  # expected seconds of its task in a default run (docs/speed.md): slowest start first
    bench: bool = True  # whether bench times it by default
    gradcheck: bool = False  # whether the gradient check takes its gradient as a source
    note: str = ""  # appended to the table's description of a hand-written step (", jit")
    opt_in: bool = False  # joins a run only when named (--backends +NAME): the compiled rows
    compiled: Compilation | None = None  # a compiled row: its record (backends.compiled); twin names the eager row

    @property
    def runs(self) -> str:
        """The built-in row whose code it runs: itself, or the row a twin runs elsewhere."""
        return self.twin[0] if self.twin else self.name

    @property
    def environment(self) -> str:
        """Where it runs: "here", or the other environment's name."""
        return self.twin[1] if self.twin else "here"

    def implements(self, cfg: Config) -> bool:
        return (
            cfg.optimizer in self.optimizers
            and (cfg.optimizer != "adam" or cfg.adam in self.forms)
            and cfg.dtype in self.dtypes
        )

    def describe(self, cfg: Config) -> str:
        """What the row computes for ``cfg``, for the table."""
        if self.compiled is not None:
            return f"{ROWS[self.twin[0]].describe(cfg)}: {self.compiled.what}" if self.twin else self.compiled.what
        if self.twin is not None:
            return f"{ROWS[self.twin[0]].describe(cfg)}, in {self.twin[1]}"
        if self.kind in ("external", "plug-in"):
            return self.implementation
        title = "Adam" if cfg.optimizer == "adam" else OPTIMIZERS[cfg.optimizer].title
        if self.library is not None:
            call = getattr(OPTIMIZERS[cfg.optimizer], self.library, None)
            return f"{self.implementation} + {self.library_label}" + (f".{call.describe()}" if call else f" {title}")
        return f"{self.implementation} + hand {title}{self.note}"


def library_optimizers(library: str) -> tuple[str, ...]:
    """The optimizers whose record names a call of ``library`` ("torch", "optax", "keras")."""
    return tuple(name for name, record in OPTIMIZERS.items() if getattr(record, library) is not None)


ROWS: dict[str, Row] = {
    row.name: row
    for row in (
        Row(
            "numpy",
            "backends.numpy_backend",
            "hand backprop",
            "hand backprop",
            ("numpy",),
            ("numpy",),
            injectable=True,
            device="cpu",
            cost=1,
        ),
        Row(
            "jax",
            "backends.jax_backend",
            "jax.value_and_grad",
            "autodiff",
            ("jax",),
            ("jax", "jaxlib"),
            injectable=True,
            cost=2,
            gradcheck=True,
            note=", jit",
        ),
        Row(
            "torch",
            "backends.torch_backend",
            "torch autograd",
            "autodiff",
            ("torch",),
            ("torch",),
            injectable=True,
            cost=10,
            gradcheck=True,
        ),
        Row(
            "torch.optim",
            "backends.torch_optim_row",
            "torch autograd",
            "library",
            ("torch",),
            ("torch",),
            forms=("paper",),
            optimizers=library_optimizers("torch"),
            library="torch",
            library_label="torch.optim",
            cost=16,
        ),
        Row(
            "optax",
            "backends.optax_row",
            "jax.value_and_grad",
            "library",
            ("jax", "optax"),
            ("jax", "jaxlib", "optax"),
            forms=("paper",),
            optimizers=library_optimizers("optax"),
            library="optax",
            library_label="optax",
            cost=1,
        ),
        Row(
            "keras",
            "backends.keras_row",
            "jax.value_and_grad",
            "library",
            ("jax", "keras"),
            ("jax", "jaxlib", "keras"),
            forms=("epshat",),
            lockstep=False,
            optimizers=library_optimizers("keras"),
            library="keras",
            library_label="keras",
            cost=1,
        ),
        # the series' other languages: programs run in a subprocess (backends.program_row)
        Row(
            "octave",
            "backends.octave_row",
            "MATLAB code (backends/octave) run by GNU Octave",
            "hand backprop",
            program=True,
            dtypes=("float64",),
            batched=False,
            device="cpu",
            cost=7,
        ),
        Row(
            "scilab",
            "backends.scilab_row",
            "Scilab code (backends/scilab/xor.sci) run by Scilab",
            "hand backprop",
            program=True,
            dtypes=("float64",),
            batched=False,
            device="cpu",
            cost=7,
        ),
    )
}


def compiled_row(c: Compilation) -> Row:
    """The row of a compiled-row record: the eager row it compiles, opt-in, judged against
    that row as a twin (the compiler in place of another environment)."""
    eager = ROWS[c.runs]
    return replace(
        eager,
        name=c.name,
        backend=f"compiled:{c.name}",
        kind="compiled",
        requires=(c.framework,),
        optimizers=tuple(o for o in eager.optimizers if o in c.optimizers) if c.optimizers else eager.optimizers,
        batched=False,
        twin=(c.runs, c.label),
        injectable=False,
        device="cpu" if c.kind == "xla flags" else eager.device,
        cost=eager.cost + (2.0 if c.kind == "xla flags" else 30.0),
        bench=False,
        gradcheck=False,
        opt_in=True,
        compiled=c,
    )


ROWS.update({name: compiled_row(c) for name, c in COMPILATIONS.items()})
COMPILED_ROWS = tuple(COMPILATIONS)
BUILT_IN = frozenset(ROWS)
# the paper form's Python rows: what a default Adam run compares
DEFAULT_ROWS = tuple(name for name, row in ROWS.items() if not row.program and not row.opt_in and "paper" in row.forms)
LANGUAGE_ROWS = tuple(name for name, row in ROWS.items() if row.program)  # they join a default run where installed
INJECTABLE_ROWS = tuple(name for name, row in ROWS.items() if row.injectable)  # the whole backends
PERTURBED_COST = 5.0  # the envelope's nudged numpy runs, one task beside the rows'


# A language row's program counts as hung past its expected cost scaled to the run's epochs,
# times PROGRAM_HEADROOM, plus PROGRAM_START_SECONDS for the interpreter's start (Scilab's
# takes 1-2 s alone; a loaded CI machine several times that).
PROGRAM_HEADROOM, PROGRAM_START_SECONDS, COST_EPOCHS = 10.0, 20.0, 20000


def program_timeout(name: str, cfg) -> float:
    """Seconds row ``name``'s program may run (training, or one lockstep call) before it is
    killed and the row could not run."""
    return PROGRAM_START_SECONDS + PROGRAM_HEADROOM * ROWS[name].cost * cfg.epochs / COST_EPOCHS


@contextmanager
def their_failures(name: str):
    """A plug-in row is anyone's code: whatever it raises (SystemExit too), or whatever
    its output makes our checks raise, is that row failing (:class:`backends.RowFailed`,
    one line), not the run's. Any other row's failure is ours and goes up as it is."""
    if ROWS[name].kind != "plug-in":
        yield
        return
    try:
        yield
    except (backends.BackendUnavailable, backends.RowFailed):
        raise
    except (Exception, SystemExit) as exc:
        raise backends.RowFailed(f"{name} row failed: {type(exc).__name__}: {exc}") from None


def expected_cost(task: str, unknown: float = 0.0) -> float:
    """The expected seconds of a default run's task: a row's (its record's cost) or the
    envelope's ("perturbed"); ``unknown`` for anything else (a plug-in, a twin)."""
    if task == "perturbed":
        return PERTURBED_COST
    return ROWS[task].cost if task in BUILT_IN else unknown


def load_backend(name: str):
    """Row ``name``'s backend module (``backends.load``)."""
    return backends.load(ROWS[name].backend)


def register_plugin(path) -> Row:
    """A row for the plug-in backend in ``path`` (``compare.py --backend-file``), named by
    its NAME; :class:`backends.PluginError` when the file cannot be one."""
    module = backends.load_file(path)
    name = str(module.NAME)
    resolved = str(Path(path).resolve())
    if name in ROWS and ROWS[name].backend != f"file:{resolved}":
        raise backends.PluginError(f"{path}: NAME {name!r} is taken by another row")
    row = Row(
        name,
        f"file:{resolved}",
        f"plug-in {Path(path).name}: {module.GRADIENT_SOURCE}",
        "plug-in",
        forms=tuple(getattr(module, "ADAM_FORMS", ("paper",))),
        optimizers=tuple(module.UPDATES),
    )
    ROWS[name] = row
    return row


def register_compiled_plugin(path) -> Row:
    """A plug-in that stands for a compiled step of a built-in row (``compare.py compiled
    --backend-file``): its module's ``COMPILES`` names that row; judged against it as a
    compiled row is. :class:`backends.PluginError` when the file cannot be one."""
    row = register_plugin(path)
    eager = getattr(backends.load(row.backend), "COMPILES", None)
    if eager not in BUILT_IN or ROWS[eager].compiled is not None or ROWS[eager].program:
        del ROWS[row.name]
        raise backends.PluginError(
            f"{path}: COMPILES must name the eager Python row it stands for (one of "
            f"{', '.join(n for n in DEFAULT_ROWS)}), not {eager!r}"
        )
    c = Compilation(row.name, eager, "plug-in", f"plug-in {Path(path).name}")
    ROWS[row.name] = replace(row, twin=(eager, "plug-in"), compiled=c, opt_in=True)
    return ROWS[row.name]


def added_rows(names) -> list:
    """The rows among ``names`` that this process registered (plug-ins, rows of other
    environments): what a worker process must register too (``execution.with_rows``)."""
    return [ROWS[n] for n in names if n in ROWS and n not in BUILT_IN]


def twinnable(name: str) -> bool:
    """Whether row ``name`` can also run in another Python environment: the built-in rows
    that are Python code (a language row runs the same program in either)."""
    return name in BUILT_IN and not ROWS[name].program and not ROWS[name].opt_in


def is_twin_pair(a: str, b: str) -> bool:
    """Whether row ``b`` is row ``a`` run in another environment."""
    return ROWS[b].twin is not None and ROWS[b].runs == a


def register_twin(name: str, env: str, python) -> Row:
    """Row ``name`` run by the interpreter ``python`` as environment ``env``: ``name@env``
    (``backends.env_row``)."""
    from backends.env_row import backend_key

    base = ROWS[name]
    row = replace(
        base, name=f"{name}@{env}", backend=backend_key(name, env, python), requires=(), batched=False, twin=(name, env)
    )
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
    return tuple(name for name, row in ROWS.items() if name in BUILT_IN and not row.opt_in and row.implements(cfg))


def expected_gap(name: str, cfg: Config):
    """The known gap (``reference.optimizers.Gap``: first differing phase, why) when row
    ``name`` cannot compute ``cfg``'s spec (a library that cannot express it), or None;
    a row of another environment has the gaps of the row it runs."""
    twin = ROWS[name].twin if name in ROWS else None
    gap = OPTIMIZERS[cfg.optimizer].gaps.get(twin[0] if twin else name)
    return gap if gap is not None and gap.holds(cfg) else None


@dataclass
class Trajectory:
    """One row's run: loss per epoch (before its update) and flat params per epoch."""

    name: str
    loss: np.ndarray  # (epochs,)
    params: np.ndarray  # (epochs + 1, n_params); row 0 the initial weights
    seconds: float  # training wall time, compile excluded
    compile_seconds: float | None = None
    epochs_run: int | None = None  # when only checkpoints are kept: how many epochs ran
    states: dict | None = None  # Adam's flat m and v per record, where recorded

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
    compilation = ROWS[name].compiled
    if compilation is not None:
        return compiled_unavailable(compilation)
    if ROWS[name].program:
        from backends.program_row import unavailable

        return unavailable(load_backend(name).PROGRAM)
    return None


def device_for(name: str, device: str) -> str:
    """The device row ``name`` runs on when a run asks for ``device``: its record's rule;
    a row of another environment always runs on the CPU."""
    row = ROWS[name]
    return "cpu" if row.device == "cpu" or (row.twin and row.compiled is None) else device


def device_problem(name: str, device: str) -> str | None:
    """Why row ``name`` cannot run on ``device`` here, or None."""
    if device_for(name, device) == "cpu":
        return None
    try:
        load_backend(name).check_device(device)
    except RuntimeError as exc:
        return f"{name} row: {exc}"
    return None
