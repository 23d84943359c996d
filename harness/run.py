"""The default run as a whole: train every row, measure the problem's own sensitivity,
step every row in lockstep from numpy's states, compare, and diagnose."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np

from harness.agreement import compare_all, gaps_per_record, perturbation_envelope, perturbed_start_batch, runs_of_batch
from harness.diagnosis import diagnosis, first_divergence, lockstep_summary
from harness.lockstep import first_failing, lockstep_row, states_from_history
from harness.rows import EXPECTED_COST, ROWS, Workers, expected_gap, plugin_paths, run_row, with_plugins
from reference.spec import Config, initial_params


@dataclass
class Results:
    cfg: Config
    trajectories: dict
    agreements: list
    envelope: np.ndarray | None
    lockstep: dict                      # row -> lockstep_row result
    faults: dict
    skipped: dict
    pairs: list = field(default_factory=list)  # per pair: dict of everything reported
    lockstep_seconds: float = 0.0  # summed over rows (they may run in parallel with training)

    @property
    def passed(self) -> bool:
        return all(pair_accepted(p) for p in self.pairs)


def pair_accepted(pair: dict) -> bool:
    """A pair agrees, or disagrees only as a known library gap explains (``explain_gap``)."""
    return pair["passed"] or pair.get("explained", False)


def run_default(cfg: Config, names: list, device: str, jobs: int, faults: dict, progress=None,
                externals: dict | None = None) -> Results:
    """``names``' first row is the reference. Lockstep and the derived tolerance need
    the numpy row (its states and its sensitivity); without it the fixed rule applies.
    ``externals``: rows read from trajectory files (name -> Trajectory), compared like
    the others after them; they have no lockstep."""
    progress = progress or (lambda text: None)
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    # numpy first: its states start every other row's lockstep; then the longest rows
    ordered = sorted(names, key=lambda n: (n != "numpy", -EXPECTED_COST.get(n, 0)))
    with_numpy = "numpy" in names
    plugins = plugin_paths(names)

    def task(key, function, *args):  # worker processes must register the plug-in rows first
        return (key, with_plugins, (plugins, function, *args)) if plugins else (key, function, args)

    tasks = [task(n, run_row, n, cfg, params0, 1, device, faults.get(n), n == "numpy") for n in ordered]
    if with_numpy:  # the perturbed runs train as one batch: one task, ~1.2× one run
        batch = perturbed_start_batch(params0, cfg.seed)
        tasks.append(task(("perturbed",), run_row, "numpy", cfg, batch, 1, "cpu", faults.get("numpy"), False, cfg.seed))
    trajectories, perturbed, skipped, lockstep = {}, [], {}, {}
    lockstep_seconds = 0.0
    with Workers(min(jobs, len(tasks))) as workers:
        for key, function, args in tasks:
            workers.submit(key, function, *args)
        for key, result in workers.results():
            if isinstance(result, str):
                if not isinstance(key, tuple):  # a lockstep task fails the same way: said once
                    skipped[key] = result
                    progress(f"notice: skipping: {result}")
            elif isinstance(key, tuple) and key[0] == "perturbed":
                perturbed = runs_of_batch(result)
            elif isinstance(key, tuple):  # ("lockstep", row)
                lockstep[key[1]] = result
                lockstep_seconds += result["seconds"]
                progress(f"  {key[1]:<12} lockstep in {result['seconds']:6.2f} s")
            else:
                trajectories[key] = result
                progress(f"  {key:<12} trained in {result.seconds:6.2f} s")
                if key == "numpy":  # its states are in: every other row's lockstep can start
                    states = states_from_history(cfg, result.params, result.states)
                    for other in ordered:
                        if other != "numpy" and ROWS[other].lockstep:
                            workers.submit(*_flat(task(("lockstep", other), lockstep_row, other, cfg, states, faults)))
    lockstep = {n: lockstep[n] for n in ordered if n in lockstep and n in trajectories}
    trajectories = {n: trajectories[n] for n in names if n in trajectories} | dict(externals or {})
    envelope = perturbation_envelope(trajectories["numpy"], perturbed) if perturbed and names[0] == "numpy" else None
    agreements = compare_all(trajectories, cfg.dtype, envelope)
    results = Results(cfg, trajectories, agreements, envelope, lockstep, faults, skipped,
                      lockstep_seconds=lockstep_seconds)
    for agreement in agreements:
        a, b = trajectories[agreement.a], trajectories[agreement.b]
        # lockstep compares a row with numpy, so it speaks for the pairs that include numpy
        other = agreement.b if agreement.a == "numpy" else agreement.a if agreement.b == "numpy" else None
        errors = lockstep.get(other, {}).get("errors")
        lock_ok = all(e.passed for e in errors.values()) if errors else True
        entry = agreement.to_dict() | lockstep_summary(errors or {})
        entry["passed"] = bool(agreement.passed and lock_ok)
        entry["free_running_passed"] = agreement.passed
        entry["diagnosis"] = diagnosis(agreement, errors)
        divergence = None if entry["passed"] else first_divergence(agreement, errors, a, b)
        if divergence:
            entry["first_divergence"] = divergence
        gap = expected_gap(agreement.b, cfg) or expected_gap(agreement.a, cfg)
        if gap:
            entry |= explain_gap(gap, entry["passed"], errors)
        entry["_gap"] = gaps_per_record(a, b)[2]
        results.pairs.append(entry)
    return results


def _flat(task: tuple) -> tuple:
    """(key, function, args) as Workers.submit's arguments."""
    key, function, args = task
    return (key, function, *args)


def explain_gap(gap: tuple, passed: bool, errors: dict | None) -> dict:
    """A pair with a known library gap: expected to disagree, and explained when it does
    so where the gap says: lockstep's first failing phase is the one the gap names, or no
    phase fails and only the free-running drift exceeds (a difference below one step's
    rounding that accumulates: a "drift" gap always, any gap in float32, where ε's
    placement can sit below a ULP). Without lockstep, any disagreement."""
    phase, reason = gap
    if errors:
        failing = first_failing(errors)
        explained = not passed and (failing is None or (phase != "drift" and failing.phase == phase))
    else:
        explained = not passed
    return {"expected": True, "expected_reason": reason, "expected_phase": phase, "explained": explained}


def stderr_progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
