"""The atlas: for every optimizer and every library row that ships it (torch.optim, optax,
Keras), whether the library computes the hand rows' spec, and where it does not, which
catalogued variant it computes and which settings make the two agree.

Each optimizer runs once at its defaults in numpy and its library rows, judged as the
default run judges a pair (``harness.engine.pipeline``: drift against the envelope,
lockstep where the row can step, the explanation at the first differing step). A
library that cannot run the config at all (Keras's Adam is only the ε-hat form) trains
under its gap's settings and is explained from its trajectory. Then each gap's settings
(``reference.optimizers.Gap.agree``) are run with both the spec and the library, to show
that they do agree there. A recorded difference that does not show is reported as
refuted (a library that fixed it), never failed; a difference nobody recorded is named
when the catalogue or a hyperparameter fit explains it, and unexplained otherwise.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np

from harness.engine.agreement import compare_all
from harness.engine.execution import Workers
from harness.engine.explain import explain_trajectory
from harness.engine.pipeline import Results, run_default
from harness.engine.rows import BUILT_IN, ROWS, unavailable_reason
from reference.optimizers import OPTIMIZERS
from reference.spec import Config

LIBRARY_ROWS = tuple(name for name, row in ROWS.items() if row.library and name in BUILT_IN and not row.opt_in)
# each library row's hand-written twin: the whole backend with the same gradients (torch.optim's
# torch, optax's and Keras's JAX), against which a library step can be the same bits
SAME_GRADIENTS = {
    name: next(n for n, r in ROWS.items() if r.injectable and r.implementation == ROWS[name].implementation)
    for name in LIBRARY_ROWS
}
VERDICTS = ("bit-identical", "rounding level", "differs")
# how a pair stands against the records: every status but "unexplained" is explained
STATUSES = ("agrees", "confirmed", "refuted", "new", "unexplained")


@dataclass(frozen=True)
class Pairing:
    """One optimizer in one library row: the config the row runs and, where it cannot run
    the spec's config itself, that it is explained from its trajectory."""

    optimizer: str
    row: str
    runs: Config
    from_trajectory: bool
    spec: Config  # the config the spec runs (``runs`` differs only for a row explained from its trajectory)

    @property
    def gap(self):
        """The row's recorded difference where it holds for the spec's config, or None."""
        gap = OPTIMIZERS[self.optimizer].gaps.get(self.row)
        return gap if gap is not None and gap.holds(self.spec) else None


def atlas_config(base: Config, optimizer: str) -> Config:
    """``base``'s problem with ``optimizer`` at its defaults."""
    return Config(optimizer=optimizer, hidden=base.hidden, epochs=base.epochs, seed=base.seed, dtype=base.dtype)


def pairings(base: Config, optimizers, rows) -> list[Pairing]:
    """Every (optimizer, library row) the atlas runs: the rows that implement the
    optimizer's config, or its gap's settings."""
    found = []
    for optimizer in optimizers:
        cfg = atlas_config(base, optimizer)
        for row in rows:
            gap = OPTIMIZERS[optimizer].gaps.get(row)
            if ROWS[row].implements(cfg):
                found.append(Pairing(optimizer, row, cfg, False, cfg))
            elif gap and gap.agree and ROWS[row].implements(agreeing(cfg, gap)):
                found.append(Pairing(optimizer, row, agreeing(cfg, gap), True, cfg))
    return found


def agreeing(cfg: Config, gap) -> Config:
    """``cfg`` under the settings that make the library and the spec agree."""
    return replace(cfg, **gap.agree)


def run_pairs(cfg: Config, rows: list, device: str, jobs: int, workers: Workers | None = None) -> Results:
    """numpy, ``rows`` and their hand-written twins under ``cfg``, judged as the default run
    judges them (in ``workers``, when given)."""
    twins = [
        SAME_GRADIENTS[r]
        for r in rows
        if SAME_GRADIENTS[r] not in rows and unavailable_reason(SAME_GRADIENTS[r]) is None
    ]
    return run_default(cfg, ["numpy", *dict.fromkeys([*rows, *twins])], device, jobs, {}, workers=workers)


def same_bits(results: Results, row: str) -> bool:
    """Whether ``row`` trained the same bits as its hand-written twin on the same gradients."""
    twin = results.trajectories.get(SAME_GRADIENTS[row])
    mine = results.trajectories.get(row)
    return twin is not None and mine is not None and np.array_equal(twin.params, mine.params)


def verdict_of(passed: bool, identical: bool) -> str:
    """bit-identical (the same bits as the hand-written step on the same gradients),
    rounding level (the pair agrees) or differs."""
    if not passed:
        return "differs"
    return "bit-identical" if identical else "rounding level"


def status_of(verdict: str, gap, named: str | None) -> str:
    """How a pair stands against the records (``STATUSES``). A drift gap that stays under
    the tolerance is not refuted: its bias is below one step's rounding by definition."""
    if verdict != "differs":
        return "refuted" if gap and gap.phase != "drift" else "agrees"
    if named is None:
        return "unexplained"
    return "confirmed" if gap and (gap.variant is None or gap.variant == named) else "new"


def entry_for(pairing: Pairing, pair_json: dict, explanation: dict | None, identical: bool) -> dict:
    """One cell of the atlas from its judged pair."""
    gap = pairing.gap
    verdict = verdict_of(pair_json["passed"], identical)
    named = None
    if verdict == "differs" and explanation and explanation.get("verdict") == "explained":
        named = explanation["variant"]
    entry = {
        "optimizer": pairing.optimizer,
        "row": pairing.row,
        "verdict": verdict,
        "status": status_of(verdict, gap, named),
        "variant": named,
        "recorded_variant": gap.variant if gap else None,
        "margin": pair_json["margin"],
        "max_abs_param_diff": pair_json["max_abs_param_diff"],
        "lockstep_max_ulp": pair_json.get("lockstep_max_ulp"),
        "trajectories_agree": pair_json.get("free_running_passed", pair_json["passed"]),
        "same_bits_as": SAME_GRADIENTS[pairing.row] if identical else None,
        "explanation": explanation,
        "defaults": OPTIMIZERS[pairing.optimizer].library_defaults,
    }
    if gap:
        entry |= {"reason": gap.reason, "source": gap.source, "issue": gap.issue}
    return entry


def trajectory_pair(numpy_results: Results, agreed: Results, pairing: Pairing) -> tuple[dict, dict | None]:
    """A row that ran only under its gap's settings, against the spec's numpy run: the
    pair's figures and the explanation from its trajectory."""
    cfg = numpy_results.cfg
    trajectories = {"numpy": numpy_results.trajectories["numpy"], pairing.row: agreed.trajectories[pairing.row]}
    agreement = compare_all(trajectories, cfg.dtype, numpy_results.envelope)[0]
    entry = agreement.to_dict() | {"free_running_passed": agreement.passed, "lockstep_max_ulp": None}
    explanation = None if agreement.passed else explain_trajectory(pairing.row, agreed.trajectories[pairing.row], cfg)
    return entry, explanation


def run_atlas(base: Config, optimizers, rows: list, device: str, jobs: int, progress=None) -> dict:
    """The atlas's cells (``entry_for``), each with the check of its gap's settings, and
    the rows that could not run."""
    from harness.engine.pipeline import Untold

    progress = progress or Untold()
    found = pairings(base, optimizers, rows)
    cells: list = []
    failed: dict = {}
    # one pool for every optimizer's runs: its processes import torch, JAX and Keras once
    with Workers(jobs) as workers:
        for optimizer in dict.fromkeys(p.optimizer for p in found):
            mine = [p for p in found if p.optimizer == optimizer]
            cfg = atlas_config(base, optimizer)
            progress.add(optimizer, optimizer, status=", ".join(p.row for p in mine))
            direct = run_pairs(cfg, [p.row for p in mine if not p.from_trajectory], device, jobs, workers)
            agreed = _agreeing_runs(cfg, mine, device, jobs, workers)
            failed |= direct.failed | {row: why for run in agreed.values() for row, why in run.failed.items()}
            for pairing in mine:
                cell = _cell(pairing, direct, agreed)
                if cell is not None:
                    cells.append(cell)
            progress.finish(optimizer, ", ".join(p.row for p in mine) + ": done")
    return {"cells": cells, "could_not_run": failed}


def setting_of(gap) -> tuple | None:
    """A gap's settings that make library and spec agree, as a key: (config changes,
    environment variables), or None when it records none."""
    if gap is None or not (gap.agree or gap.environment):
        return None
    return tuple(sorted(gap.agree.items())), tuple(sorted(gap.environment.items()))


@contextmanager
def environment(variables: dict):
    """Within the block, ``variables`` are set in the environment the workers start with."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _agreeing_runs(cfg: Config, mine: list, device: str, jobs: int, workers: Workers) -> dict:
    """Each distinct gap setting of this optimizer's rows, run with the rows it concerns:
    setting (``setting_of``) -> Results. A setting without environment variables runs in
    ``workers``; one with them in a pool of its own, whose processes start with them."""
    rows_by_setting: dict = {}
    for pairing in mine:
        setting = setting_of(pairing.gap)
        if setting is not None:
            rows_by_setting.setdefault(setting, []).append(pairing.row)
    runs = {}
    for (changes, variables), rows in rows_by_setting.items():
        with environment(dict(variables)):
            pool = None if variables else workers
            runs[changes, variables] = run_pairs(replace(cfg, **dict(changes)), rows, device, jobs, pool)
    return runs


def _cell(pairing: Pairing, direct: Results, agreed: dict) -> dict | None:
    """The pairing's cell, or None when its row could not run."""
    gap = pairing.gap
    setting = setting_of(gap)
    under = agreed.get(setting) if setting else None
    explanation: dict | None
    if pairing.from_trajectory:
        if under is None or pairing.row not in under.trajectories:
            return None
        pair_json, explanation = trajectory_pair(direct, under, pairing)
        identical = False
    else:
        judged = next((p for p in direct.pairs if p.b == pairing.row), None)
        if judged is None:
            return None
        pair_json, explanation = judged.to_json(), judged.explanation
        pair_json["lockstep_max_ulp"] = judged.lockstep_max_ulp
        identical = same_bits(direct, pairing.row)
    cell = entry_for(pairing, pair_json, explanation, identical)
    if under is not None and gap is not None:
        check = next((p for p in under.pairs if p.b == pairing.row), None)
        cell["agree"] = {
            "settings": dict(gap.agree) | dict(gap.environment),
            "passed": bool(check is not None and check.passed),
            "margin": None if check is None else check.agreement.margin,
            "verdict": None if check is None else verdict_of(check.passed, same_bits(under, pairing.row)),
        }
    return cell


def summarize(cells: list) -> dict:
    """Counts per verdict and status, and whether every difference is explained (and every
    gap's settings make library and spec agree)."""
    unexplained = [c for c in cells if c["status"] == "unexplained"]
    not_agreeing = [c for c in cells if "agree" in c and not c["agree"]["passed"]]
    return {
        "verdicts": {v: sum(c["verdict"] == v for c in cells) for v in VERDICTS},
        "statuses": {s: sum(c["status"] == s for c in cells) for s in STATUSES},
        "unexplained": [f"{c['optimizer']}/{c['row']}" for c in unexplained],
        "settings_that_fail": [f"{c['optimizer']}/{c['row']}" for c in not_agreeing],
        "passed": not unexplained and not not_agreeing,
    }
