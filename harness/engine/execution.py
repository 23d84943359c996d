"""Running rows: one row's training as a Trajectory, and tasks in parallel processes."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

import backends
from harness.engine.agreement import nudge_streams, perturbed_starts
from harness.engine.cluster import children_cpu_seconds
from harness.engine.faults import injected
from harness.engine.lifetime import ignore_interrupts
from harness.engine.rows import ROWS, Trajectory, device_for, program_timeout, their_failures
from harness.engine.trajectory_check import reference_first_step, validate_trajectory
from reference.exchange import ExternalError
from reference.spec import PARAM_NAMES, Config, checkpoint_epochs, initial_params, n_params


@dataclass(frozen=True)
class CouldNotRun:
    """A task's result when its row is installed but could not run: its program failed or
    hung, or its worker process died."""

    reason: str


WORKER_DIED = "its worker process died (killed by a signal, crashed or out of memory)"


def skip_notice(reason: str) -> str:
    """The line that says a row is skipped, and why."""
    return f"notice: skipping: {reason}"


def with_rows(rows: list, function, *args):
    """``function(*args)`` in a process that has registered ``rows`` first (worker
    processes start with the built-in rows only; a plug-in's module loads when its row
    first runs)."""
    for row in rows:
        ROWS[row.name] = row
    return function(*args)


def run_row(
    name: str,
    cfg: Config,
    params0=None,
    every: int = 1,
    device: str = "cpu",
    fault: str | None = None,
    record_states: bool = False,
    nudge_seed=None,
) -> Trajectory:
    """Train row ``name`` from ``params0`` (default: the config's initial weights),
    recording every ``every`` epochs (the last always), with ``fault`` planted if given.
    numpy only: ``record_states`` also keeps the optimizer's state for lockstep and
    replay; ``nudge_seed`` (the seed of each run ``perturbed_starts`` made ``params0``
    from, or of the one run) moves θ by ~one ULP at random after every step
    (``agreement.nudge_streams``: the envelope)."""
    row = ROWS[name]
    if params0 is None:
        params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    timings: dict = {}
    extra: dict = {}
    if record_states:
        extra["states"] = {}
    if nudge_seed is not None:
        extra["nudge_seed"] = nudge_streams(nudge_seed)
    if row.program:
        extra["timeout"] = program_timeout(name, cfg)
    with their_failures(name), injected(name, fault):
        train = backends.load(row.backend).train
        start = time.perf_counter()
        loss, params = train(cfg, params0, every=every, device=device_for(name, device), timings=timings, **extra)
        seconds = timings.get("run_seconds", time.perf_counter() - start)
        if row.kind == "plug-in":
            check_shapes(name, cfg, params0, every, loss, params)
    if row.program:  # another program's output: checked as any trajectory file is
        loss, params = program_trajectory(name, loss, params, cfg, every)
    return Trajectory(
        name=name,
        loss=np.asarray(loss, dtype=cfg.dtype),
        params=np.asarray(params, dtype=cfg.dtype),
        seconds=seconds,
        compile_seconds=timings.get("compile_seconds"),
        epochs_run=cfg.epochs,
        states=extra.get("states"),
    )


def check_shapes(name: str, cfg: Config, params0, every: int, loss, params) -> None:
    """A row's trajectory has a loss per checkpoint and the flat params before and after
    each, for every run of the batch; ValueError names what it returned instead."""
    records, batch = len(checkpoint_epochs(cfg.epochs, every)), np.shape(params0["W1"])[:-2]
    want = ((records, *batch), (records + 1, *batch, n_params(cfg.hidden)))
    got = (np.shape(loss), np.shape(params))
    if got != want:
        raise ValueError(f"train returned loss {got[0]} and params {got[1]}, not {want[0]} and {want[1]}")


def config_tasks(
    key: tuple,
    cfg: Config,
    names: list,
    params0,
    device: str = "cpu",
    envelope: bool = True,
    numpy_states: bool = False,
) -> list:
    """The tasks that train one config in every row of ``names`` that implements it, keyed
    ``key + (row,)``, and (``envelope``, numpy among them) the numpy runs nudged by one ULP
    that make its perturbation envelope, keyed ``key + ("perturbed",)``."""
    tasks: list[tuple] = [
        (key + (row,), run_row, (row, cfg, params0, 1, device, None, numpy_states and row == "numpy"))
        for row in names
        if ROWS[row].implements(cfg)
    ]
    if envelope and "numpy" in names:
        starts = perturbed_starts(params0, cfg.seed)
        tasks.append((key + ("perturbed",), run_row, ("numpy", cfg, starts, 1, "cpu", None, False, cfg.seed)))
    return tasks


def batch_params(seeds, hidden: int, dtype: str) -> dict:
    """The initial weights of every seed, stacked along a first axis: a batch of runs."""
    draws = [initial_params(int(s), hidden, dtype) for s in seeds]
    return {k: np.stack([d[k] for d in draws]) for k in PARAM_NAMES}


def guarded(function, *args):
    """Run a task; a framework that fails to import comes back as its reason (a str), a
    row that fails as :class:`CouldNotRun`."""
    try:
        return function(*args)
    except backends.BackendUnavailable as exc:
        return str(exc)
    except backends.RowFailed as exc:
        return CouldNotRun(str(exc))


def timed(function, *args):
    """``guarded(function, *args)`` and what it cost where it ran: the process, its start
    and end (wall-clock time, comparable across processes), the CPU seconds of the whole
    process (every thread), of the calling thread alone and of the programs it ran (the
    language rows), and the backends' first imports it paid for."""
    imported = set(backends.IMPORT_SECONDS)
    start, cpu, thread, children = time.time(), time.process_time(), time.thread_time(), children_cpu_seconds()
    result = guarded(function, *args)
    cost = {
        "pid": os.getpid(),
        "start": start,
        "end": time.time(),
        "cpu": time.process_time() - cpu,
        "thread_cpu": time.thread_time() - thread,
        "child_cpu": children_cpu_seconds() - children,
        "imports": {_import_label(k): s for k, s in backends.IMPORT_SECONDS.items() if k not in imported},
    }
    return result, cost


def _import_label(backend: str) -> str:
    """A backend's import as the timeline names it: the first row it trains."""
    return next((name for name, row in ROWS.items() if row.backend == backend), backend)


class Workers:
    """Tasks in ``jobs`` processes (in this process when jobs is 1); the processes live
    as long as the block, so each imports its frameworks once. Tasks may be submitted
    while results are being collected, so work that depends on a result starts as soon
    as that result is in. ``costs``: per finished task's key, what it cost (``timed``).

    A worker that dies breaks its pool and fails every task the pool held, whether it had
    started or not. Those tasks become suspects: each reruns alone in a pool of one
    worker, so a second death names its task for certain, and that task comes back as
    :class:`CouldNotRun`. Tasks submitted later go to a new pool."""

    def __init__(self, jobs: int):
        self.jobs = jobs
        self.pool: ProcessPoolExecutor | None = None
        self.quarantine: ProcessPoolExecutor | None = None
        self.pending: dict = {}  # future (or key, in this process) -> (key, function, args)
        self.suspects: list = []  # (key, function, args) to rerun alone
        self.alone: Future | None = None  # the suspect's future running in the quarantine pool
        self.costs: dict = {}

    def __enter__(self):
        if self.jobs > 1:
            self.pool = _new_pool(self.jobs)
        return self

    def __exit__(self, kind, *exc):
        for pool in (self.pool, self.quarantine):
            if pool is not None:  # on an error or a signal, nothing left is waited for
                pool.shutdown(wait=kind is None, cancel_futures=True)

    def submit(self, key, function, *args) -> None:
        if self.pool is None:
            self.pending[key] = (key, function, args)
        else:
            self.pending[self.pool.submit(timed, function, *args)] = (key, function, args)

    def results(self):
        """Yields (key, result) until nothing submitted is left, including tasks
        submitted meanwhile."""
        while self.pending or self.suspects:
            if self.pool is None:
                key, function, args = self.pending.pop(next(iter(self.pending)))
                result, self.costs[key] = timed(function, *args)
                yield key, result
                continue
            self._start_next_suspect()
            future = next(as_completed(list(self.pending)))
            key, function, args = self.pending.pop(future)
            try:
                result, self.costs[key] = future.result()
            except BrokenProcessPool:
                if future is self.alone:  # it died alone: it is the task that kills its worker
                    self._end_quarantine()
                    yield key, CouldNotRun(WORKER_DIED)
                else:
                    self._replace_broken_pool((key, function, args))
                continue
            if future is self.alone:
                self.alone = None
            yield key, result

    def _start_next_suspect(self) -> None:
        if self.alone is not None or not self.suspects:
            return
        if self.quarantine is None:
            self.quarantine = _new_pool(1)
        task = self.suspects.pop(0)
        self.alone = self.quarantine.submit(timed, task[1], *task[2])
        self.pending[self.alone] = task

    def _end_quarantine(self) -> None:
        if self.quarantine is not None:
            self.quarantine.shutdown(wait=False, cancel_futures=True)
        self.quarantine, self.alone = None, None

    def _replace_broken_pool(self, task) -> None:
        """Every task the broken pool held becomes a suspect; a new pool takes the rest."""
        held = [f for f in self.pending if f is not self.alone]
        self.suspects += [task] + [self.pending.pop(f) for f in held]
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = _new_pool(self.jobs)

    def run(self, tasks):
        """``tasks``: (key, function, args); yields (key, result) as each finishes."""
        for key, function, args in tasks:
            self.submit(key, function, *args)
        yield from self.results()


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: a parent that already holds torch or JAX threads must not fork.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=ignore_interrupts)


def program_trajectory(name: str, loss, params, cfg: Config, every: int):
    """Another program's whole trajectory (loss (E,), params (E + 1, n)) checked against the
    run as an --external file is, then kept at the checkpoints of ``every``; a program
    that wrote something unusable is :class:`backends.RowFailed`."""
    lines = list(range(1, len(loss) + 1))
    try:
        validate_trajectory(f"the {name} row's output", loss, params[1:], lines, cfg, reference_first_step(cfg))
    except ExternalError as exc:
        raise backends.RowFailed(f"{name} row wrote an unusable trajectory: {exc}") from None
    kept = checkpoint_epochs(cfg.epochs, every)
    return loss[kept - 1], params[np.concatenate([[0], kept])]
