"""The default run's pipeline: train every row from the same initial weights, numpy with
its states and the runs nudged by one ULP that make its envelope; step every row in
lockstep from numpy's states as soon as they are in; compare each pair against the
derived tolerance, and judge and explain it. ``compare.py``, ``explain``, ``versions``
and the benchmarks call ``run_default``; the reports read its ``Results``."""

from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from harness.engine.agreement import compare_all, envelope_of, gaps_per_record, perturbed_starts
from harness.engine.execution import CouldNotRun, Workers, run_row, skip_notice, with_rows
from harness.engine.explain import TRAJECTORY_EPOCHS, explain_trajectory, lockstep_and_explain, unexplained
from harness.engine.lockstep import states_from_history
from harness.engine.rows import ROWS, added_rows, expected_cost, expected_gap, is_twin_pair
from harness.engine.verdict import PairVerdict, TwinVerdict, pair_verdict
from reference.spec import Config, initial_params


@dataclass
class Results:
    cfg: Config
    trajectories: dict
    agreements: list
    envelope: np.ndarray | None
    lockstep: dict  # row -> lockstep_row result
    faults: dict
    skipped: dict
    failed: dict = field(default_factory=dict)  # row -> why it could not run (exit status 3)
    pairs: list[PairVerdict] = field(default_factory=list)
    gaps: dict = field(default_factory=dict)  # (a, b) of each pair -> its gap per record (for the drift figure)
    lockstep_seconds: float = 0.0  # summed over rows (they may run in parallel with training)
    environment: dict | None = None
    environments: dict = field(default_factory=dict)  # the other environments (--env) by name
    replay_files: dict = field(default_factory=dict)  # row -> the replay file of its failing pair
    # Where the time went (bench's breakdown): "tasks", each task's cost in its process
    # (execution.timed); "main", seconds of each step in this process; "started".
    timings: dict = field(default_factory=lambda: {"started": time.time(), "tasks": {}, "main": {}})

    @contextmanager
    def timed(self, step: str):
        """Adds the seconds the block takes to ``timings["main"][step]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            main = self.timings["main"]
            main[step] = main.get(step, 0.0) + time.perf_counter() - start

    def timed_call(self, step: str, function, *args):
        with self.timed(step):
            return function(*args)

    @property
    def passed(self) -> bool:
        return all(p.accepted for p in self.pairs)


class Untold:
    """The progress of a run nobody watches: the interface of
    ``harness.report.progress.Board`` (a line per task, notices), doing nothing."""

    def add(self, key, label: str, total=None, status: str = "running") -> None:
        pass

    def advance(self, key, status=None) -> None:
        pass

    def finish(self, key, status: str) -> None:
        pass

    def notice(self, text: str) -> None:
        pass


def run_default(
    cfg: Config,
    names: list,
    device: str,
    jobs: int,
    faults: dict,
    progress=None,
    externals: dict | None = None,
    match_epochs: int = TRAJECTORY_EPOCHS,
    twins_only: bool = False,
    workers: Workers | None = None,
) -> Results:
    """``names``' first row is the reference. Lockstep and the derived tolerance need
    the numpy row (its states and its sensitivity); without it the fixed rule applies.
    ``externals``: rows read from trajectory files (name -> Trajectory), compared like
    the others after them; they have no lockstep, and a failing one is explained from
    its first ``match_epochs`` epochs. ``twins_only``: compare and step only the rows of
    other environments with the rows they run here (``compare.py versions``).
    ``workers``: an open pool to run in, so that a command running many configurations
    starts its processes, and they import their frameworks, once (the atlas); by default
    the run opens its own pool of ``jobs`` processes."""
    started = time.time()
    stepped = [n for n in names if ROWS[n].twin] if twins_only else None
    trained = _train_and_step(cfg, names, device, jobs, faults, progress or Untold(), stepped, workers)
    trajectories, perturbed, skipped, failed, lockstep, lockstep_seconds, costs = trained
    trajectories = {n: trajectories[n] for n in names if n in trajectories} | dict(externals or {})
    trained_at = time.time()
    envelope = envelope_of(trajectories["numpy"], perturbed) if perturbed and names[0] == "numpy" else None
    pairs = pairs_of(list(trajectories))
    agreements = compare_all(
        trajectories, cfg.dtype, envelope, [p for p in pairs if is_twin_pair(*p)] if twins_only else pairs
    )
    results = Results(
        cfg, trajectories, agreements, envelope, lockstep, faults, skipped, failed, lockstep_seconds=lockstep_seconds
    )
    results.timings.update(started=started, tasks=costs)
    results.timings["main"].update(
        {"training and lockstep": trained_at - started, "envelope and comparison": time.time() - trained_at}
    )
    with results.timed("verdicts"):
        _judge_pairs(results, match_epochs)
    return results


def pairs_of(names: list) -> list:
    """The pairs a run compares: each row with its run in another environment first (a
    twin), then the first row with every other."""
    if not names:
        return []
    twins = [(ROWS[n].runs, n) for n in names if ROWS[n].twin and ROWS[n].runs in names]
    return twins + [(names[0], n) for n in names[1:] if (names[0], n) not in twins]


def _judge_pairs(results: Results, match_epochs: int) -> None:
    """Each pair's verdict, explained where it parts, and its gap per record."""
    cfg, trajectories = results.cfg, results.trajectories
    for agreement in results.agreements:
        a, b = trajectories[agreement.a], trajectories[agreement.b]
        step, gap = _pair_lockstep(results.lockstep, agreement.a, agreement.b, results.faults), None
        if step.get("twin") is None:
            gap = expected_gap(agreement.b, cfg) or expected_gap(agreement.a, cfg)
        explanation = step.get("explanation") or _explain_free_running(agreement, step, b, cfg, match_epochs)
        twin = twin_summary(agreement, step) if step.get("twin") else None
        results.pairs.append(pair_verdict(agreement, step.get("errors"), a, b, gap, explanation, twin))
        results.gaps[agreement.a, agreement.b] = gaps_per_record(a, b)[2]


def twin_summary(agreement, step: dict) -> TwinVerdict:
    """A pair of one row in two environments: whether the whole run is the same bits,
    and where the same steps first differ at all (lockstep, None: nowhere)."""
    same = agreement.max_abs_param_diff == 0 and agreement.max_abs_loss_diff == 0
    return TwinVerdict(
        step["twin"],
        bool(same and step["first_difference"] is None),
        bool(same),
        step["first_difference"],
        step["stepped"],
    )


def _pair_lockstep(lockstep: dict, a: str, b: str, faults: dict) -> dict:
    """The lockstep that speaks for a pair: a row against numpy (its own lockstep), or a
    row of another environment against the row it runs here (``twin``: their errors, and
    where they first differ at all; None without a lockstep)."""
    if is_twin_pair(a, b):
        step, env = lockstep.get(b, {}), ROWS[b].environment
        if "twin_errors" not in step:
            return {"twin": env, "first_difference": None, "stepped": False}
        failing = not all(e.passed for e in step["twin_errors"].values())
        planted = [f"{row}:{faults[row]}" for row in (a, b) if faults.get(row)]
        compiled = ROWS[b].compiled is not None
        cause = "the compiler" if compiled else "the libraries"
        cause = f"the fault planted ({', '.join(planted)})" if planted else cause
        where = f"compiled ({env}) than eagerly" if compiled else f"in {env} than here"
        why = f"the same code computes a step differently {where}: {cause} changed the computation"
        return {
            "errors": step["twin_errors"],
            "twin": env,
            "first_difference": step["first_difference"],
            "stepped": True,
            "explanation": unexplained(b, why) if failing else None,
        }
    other = b if a == "numpy" else a if b == "numpy" else None
    return lockstep.get(other, {})


def _explain_free_running(agreement, step: dict, traj, cfg: Config, match_epochs: int) -> dict | None:
    """Why a pair parts that lockstep did not explain: every step agreed (rounding that
    training amplified), or the row has no lockstep (its trajectory is recognised)."""
    if agreement.passed:
        return None
    if step.get("errors"):
        return unexplained(
            traj.name,
            f"every step agrees with {agreement.a}'s to rounding: the gap is rounding that "
            "training amplified, not a convention",
        )
    if agreement.a == "numpy" and ROWS[traj.name].kind in ("external", "library"):
        return explain_trajectory(traj.name, traj, cfg, match_epochs)
    return unexplained(traj.name, "no lockstep, and its trajectory is not compared with the spec's")


def _task_label(key) -> str:
    """A task as the progress display names it."""
    if key == ("perturbed",):
        return "numpy's nudged runs"
    return f"{key[1]} lockstep" if isinstance(key, tuple) else key


def _train_and_step(cfg: Config, names: list, device: str, jobs: int, faults: dict, progress, stepped=None, pool=None):
    """Every row trained in ``jobs`` processes (or in ``pool``), numpy first with its states
    and the envelope's perturbed runs; once numpy's states are in, every other row's
    lockstep (or ``stepped``'s) too. (trajectories, perturbed run, skipped, lockstep,
    seconds, each task's cost by label)"""
    ordered = sorted(names, key=lambda n: (n != "numpy", -expected_cost(n)))
    added = added_rows(names)
    submitted: list = []

    def submit(workers, key, function, *args):
        if added:  # worker processes must register the plug-ins and other environments' rows first
            function, args = with_rows, (added, function, *args)
        workers.submit(key, function, *args)
        submitted.append(key)
        progress.add(key, _task_label(key))

    tasks = _training_tasks(cfg, ordered, device, faults)
    trajectories, perturbed, skipped, failed, lockstep, seconds = {}, None, {}, {}, {}, 0.0
    with nullcontext(pool) if pool is not None else Workers(min(jobs, len(tasks))) as workers:
        for key, task in tasks:
            submit(workers, key, *task)
        for key, result in workers.results():
            if isinstance(result, CouldNotRun):
                row = "numpy" if key == ("perturbed",) else _task_row(key)
                if row not in failed:
                    failed[row] = result.reason
                    progress.notice(f"  {row:<12} could not run: {result.reason}")
                    progress.finish(row, "could not run")
            elif isinstance(result, str):
                if not isinstance(key, tuple):
                    skipped[key] = result
                    progress.notice(skip_notice(result))
                    progress.finish(key, "skipped")
                elif key[-1] in trajectories:  # (else its training failed the same way: said once)
                    progress.notice(f"notice: no lockstep for {key[-1]}: {result}")
                    progress.finish(key, "no lockstep")
            elif key == ("perturbed",):
                perturbed = result
                progress.finish(key, f"trained in {result.seconds:.2f} s")
            elif isinstance(key, tuple):  # ("lockstep", row)
                lockstep[key[1]], seconds = result, seconds + result["seconds"]
                progress.finish(key, f"lockstep done in {result['seconds']:.2f} s")
            else:
                trajectories[key] = result
                progress.finish(key, f"trained in {result.seconds:.2f} s, {result.us_per_epoch:.1f} µs/epoch")
                if key == "numpy":  # its states are in: every other row's lockstep can start
                    states = states_from_history(cfg, result.params, result.states)
                    for other in (
                        n for n in ordered if n != "numpy" and ROWS[n].lockstep and (stepped is None or n in stepped)
                    ):
                        submit(workers, ("lockstep", other), lockstep_and_explain, other, cfg, states, faults)
    # a row that could not run is not judged, whichever of its tasks failed
    trajectories = {n: t for n, t in trajectories.items() if n not in failed}
    lockstep = {n: lockstep[n] for n in ordered if n in lockstep and n in trajectories}
    perturbed = None if "numpy" in failed else perturbed
    costs = {task_label(key): workers.costs[key] for key in submitted if key in workers.costs}
    return trajectories, perturbed, skipped, failed, lockstep, seconds, costs


def _training_tasks(cfg: Config, ordered: list, device: str, faults: dict) -> list[tuple]:
    """(key, task) for each row's training, and for the envelope's perturbed runs as one
    batch when numpy is a row: numpy first (lockstep waits for its states), then the
    longest first."""
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    tasks: list[tuple] = [(n, (run_row, n, cfg, params0, 1, device, faults.get(n), n == "numpy")) for n in ordered]
    if "numpy" in ordered:
        starts = perturbed_starts(params0, cfg.seed)
        tasks.append((("perturbed",), (run_row, "numpy", cfg, starts, 1, "cpu", faults.get("numpy"), False, cfg.seed)))
    tasks.sort(key=lambda task: (task[0] != "numpy", -expected_cost(_task_row(task[0]))))
    return tasks


def _task_row(key) -> str:
    return key[-1] if isinstance(key, tuple) else key


def task_label(key) -> str:
    """A default run's task by what it does: "train ROW", "lockstep ROW", "envelope runs"."""
    if key == ("perturbed",):
        return "envelope runs"
    return f"lockstep {key[1]}" if isinstance(key, tuple) else f"train {key}"
