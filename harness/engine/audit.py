"""The false-alarm audit: every row is correct, so every disagreement the harness reports
over a grid of configurations is a false alarm.

A grid cell is an optimizer, a dtype, a learning rate (a factor times the optimizer's
default) and a hidden size; its seeds are split into tasks of batched seeds. A task
trains every batched row over its seeds (the sweep's way), judges each pair per seed by
the drift rule of the default run (K_ENVELOPE × that seed's own perturbation envelope)
and by lockstep at the checkpoints (every row steps from the numpy row's recorded states
at about 200 epochs spread over the run; the default run steps from every epoch), and
returns each seed's margins: largest gap / allowed, over 1 a disagreement.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from harness.engine.agreement import (
    chaotic_runs,
    envelope_of,
    envelope_tolerance,
    gaps_per_record,
    perturbed_starts,
    quantiles,
    trajectory_scale,
)
from harness.engine.bounds import rounding_scales
from harness.engine.execution import batch_params, run_row
from harness.engine.lockstep import K_LOCKSTEP, States, row_phases, worst_per_state
from harness.engine.rows import ROWS, expected_gap, rows_for, unavailable_reason
from reference.optimizers import OPTIMIZERS
from reference.spec import Config, checkpoint_epochs, unflatten_params


@dataclass(frozen=True)
class Cell:
    """One configuration of the grid, without its seed."""

    optimizer: str
    dtype: str
    lr_factor: float
    hidden: int
    epochs: int

    def config(self, seed: int = 0) -> Config:
        lr = self.lr_factor * OPTIMIZERS[self.optimizer].defaults["lr"]
        return Config(
            optimizer=self.optimizer, dtype=self.dtype, lr=lr, hidden=self.hidden, epochs=self.epochs, seed=seed
        )


def grid_cells(optimizers, dtypes, lr_factors, hiddens, epochs: int) -> list:
    return [Cell(o, d, f, h, epochs) for o, d, f, h in itertools.product(optimizers, dtypes, lr_factors, hiddens)]


def seed_batches(seeds: int, per_task: int) -> list:
    """Seeds 0..seeds−1 in consecutive batches of at most ``per_task``."""
    return [np.arange(start, min(start + per_task, seeds)) for start in range(0, seeds, per_task)]


def audit_rows(cfg: Config) -> list:
    """The rows judged: those implementing ``cfg`` that train a batch and are installed,
    numpy (the reference) first."""
    return [n for n in rows_for(cfg) if ROWS[n].batched and ROWS[n].kind != "plug-in" and not unavailable_reason(n)]


def checkpoint_states(cfg: Config, reference, every: int) -> States:
    """The numpy row's states before step 1 and after each checkpoint but the last, for a
    batch of seeds, flattened to one batch of K·S states (checkpoint-major)."""
    kept = checkpoint_epochs(cfg.epochs, every)
    before = np.concatenate([[0], kept[:-1]])
    k, s = before.size, reference.params.shape[1]

    def flat(history):
        return unflatten_params(history[:k].reshape(k * s, -1), cfg.hidden)

    return States(
        params=flat(reference.params),
        slots={name: flat(h) for name, h in reference.states.items()},
        t=np.repeat(before, s).reshape(-1, 1, 1).astype(np.int64),
        epochs=np.repeat(before + 1, s),
    )


def audit_task(cell: Cell, seeds, every: int) -> dict:
    """One task: every pair's drift and lockstep margins per seed of ``seeds`` (arrays)."""
    cfg = cell.config(int(seeds[0]))
    params0 = batch_params(seeds, cfg.hidden, cfg.dtype)
    names = audit_rows(cfg)
    reference = run_row("numpy", cfg, params0, every, record_states=True)
    nudged = run_row("numpy", cfg, perturbed_starts(params0, seeds), every, nudge_seed=seeds)
    envelope, scale = envelope_of(reference, nudged), trajectory_scale(reference.params, axis=1)
    allowed = envelope_tolerance(envelope, cfg.dtype, scale)[0]
    states = checkpoint_states(cfg, reference, every)
    ref_phases = row_phases("numpy", cfg, states)
    scales = rounding_scales(ref_phases, states, cfg)
    pairs = {}
    for name in names[1:]:
        with np.errstate(all="ignore"):
            drift = (gaps_per_record(reference, run_row(name, cfg, params0, every))[2] / allowed).max(axis=0)
        lockstep = None
        if ROWS[name].lockstep:
            worst = worst_per_state(ref_phases, row_phases(name, cfg, states), scales, cfg.dtype)
            lockstep = worst.reshape(-1, len(seeds)).max(axis=0) / K_LOCKSTEP
        pairs[name] = {"drift": drift, "lockstep": lockstep, "known_gap": expected_gap(name, cfg) is not None}
    return {
        "cell": cell,
        "seeds": np.asarray(seeds),
        "pairs": pairs,
        "chaotic": chaotic_runs(envelope, cfg.dtype, scale),
    }


JUDGES = ("verdict", "lockstep", "drift")
CONFIGURATION = ("optimizer", "dtype", "lr_factor", "hidden", "seed")


def judge_margins(pair: dict) -> dict:
    """Per seed, each judge's margin (over 1 an alarm): lockstep's and drift's own, and the
    verdict's, which takes lockstep's word where the row steps and drift's where it is
    known only by its trajectory (``harness.engine.verdict.pair_verdict``). Drift here is
    drift alone, as it judges an ``--external`` row: chaotic or not."""
    drift = np.nan_to_num(pair["drift"], nan=np.inf)
    if pair["lockstep"] is None:
        return {"verdict": drift, "lockstep": None, "drift": drift}
    lockstep = np.nan_to_num(pair["lockstep"], nan=np.inf)
    return {"verdict": lockstep, "lockstep": lockstep, "drift": drift}


def upper_bound_95(failures: int, trials: int) -> float:
    """One-sided 95% upper bound of a rate seen ``failures`` times in ``trials`` (exact,
    Clopper-Pearson; 0 in N gives 1 − 0.05^(1/N), the rule of three's ≈ 3/N)."""
    if trials == 0 or failures >= trials:
        return 1.0
    if failures == 0:
        return 1 - 0.05 ** (1 / trials)

    def cdf(p):  # P(X <= failures) for X ~ Binomial(trials, p)
        return sum(
            math.exp(
                math.lgamma(trials + 1)
                - math.lgamma(i + 1)
                - math.lgamma(trials - i + 1)
                + i * math.log(p)
                + (trials - i) * math.log1p(-p)
            )
            for i in range(failures + 1)
        )

    low, high = failures / trials, 1.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > 0.05 else (low, middle)
    return high


def _alarm(cell: Cell, seed: int, name: str, margins: dict, i) -> dict:
    """One configuration's pair that the verdict or drift flagged, with every judge's margin."""
    return {
        "optimizer": cell.optimizer,
        "dtype": cell.dtype,
        "lr": cell.config().lr,
        "lr_factor": cell.lr_factor,
        "hidden": cell.hidden,
        "seed": seed,
        "pair": f"numpy vs {name}",
        "margin": float(margins["verdict"][i]),
        "judged_by": "lockstep" if margins["lockstep"] is not None else "drift",
        "drift_margin": float(margins["drift"][i]),
        "lockstep_margin": None if margins["lockstep"] is None else float(margins["lockstep"][i]),
    }


def judge_tally(found: dict, configurations: int) -> dict:
    """Per judge: the pairs it flagged, the configurations with any, the rate's 95% upper
    bound and its largest margin."""
    return {
        judge: {
            "alarms": len(tally["alarms"]),
            "configurations_alarmed": len(tally["configurations"]),
            "fpr_upper_95": upper_bound_95(len(tally["configurations"]), configurations),
            "largest_margin": tally["largest"],
        }
        for judge, tally in found.items()
    }


def margin_table(worst: dict, judge: str) -> dict:
    """Per optimizer and dtype, the quantiles of one judge's worst margin per configuration."""
    table: dict[str, dict] = {}
    for (optimizer, dtype), parts in worst.items():
        table.setdefault(optimizer, {})[dtype] = quantiles(np.concatenate(parts[judge]))
    return table


def summarize_audit(results: list) -> dict:
    """The audit's figures from every task's result (in the grid's order): the verdict's
    false alarms, every judge's rate apart, and the pairs the verdict passed by lockstep
    while drift alone flagged them (rounding amplified by training, counted apart)."""
    found: dict[str, dict] = {j: {"alarms": [], "configurations": set(), "largest": 0.0} for j in JUDGES}
    amplified: list[dict] = []
    known_gaps, configurations, chaotic = 0, 0, 0
    worst: dict[tuple, dict] = {}  # (optimizer, dtype) -> judge -> per-seed worst margins
    heat: dict[tuple, float] = {}  # (dtype, optimizer, lr factor) -> worst verdict margin
    for result in results:
        cell, seeds = result["cell"], result["seeds"]
        configurations += len(seeds)
        chaotic += int(result["chaotic"].sum())
        seed_worst = {j: np.zeros(len(seeds)) for j in JUDGES}
        for name, pair in result["pairs"].items():
            margins = judge_margins(pair)
            if pair["known_gap"]:
                known_gaps += int((margins["verdict"] > 1).sum())
                continue
            for judge, margin in margins.items():
                if margin is None:
                    continue
                seed_worst[judge] = np.maximum(seed_worst[judge], margin)
                found[judge]["largest"] = max(found[judge]["largest"], float(margin.max()))
                for i in np.flatnonzero(margin > 1):
                    found[judge]["alarms"].append(_alarm(cell, int(seeds[i]), name, margins, i))
                    found[judge]["configurations"].add((cell, int(seeds[i])))
            for i in np.flatnonzero((margins["drift"] > 1) & (margins["verdict"] <= 1)):
                amplified.append(_alarm(cell, int(seeds[i]), name, margins, i))
        for judge in JUDGES:
            worst.setdefault((cell.optimizer, cell.dtype), {}).setdefault(judge, []).append(seed_worst[judge])
        key = (cell.dtype, cell.optimizer, cell.lr_factor)
        heat[key] = max(heat.get(key, 0.0), float(seed_worst["verdict"].max()))
    judges = judge_tally(found, configurations)
    return {
        "configurations": configurations,
        "chaotic_configurations": chaotic,
        "false_alarms": found["verdict"]["alarms"],
        "known_gaps": known_gaps,
        "configurations_alarmed": judges["verdict"]["configurations_alarmed"],
        "fpr_upper_95": judges["verdict"]["fpr_upper_95"],
        "judges": judges,
        "drift_alarms": found["drift"]["alarms"],
        "rounding_amplified": amplified,
        "configurations_amplified": len({tuple(a[k] for k in CONFIGURATION) for a in amplified}),
        "margins": margin_table(worst, "verdict"),
        "drift_margins": margin_table(worst, "drift"),
        "largest_margin_by_judge": {j: judges[j]["largest_margin"] for j in JUDGES},
        "worst_margin_by_lr": [
            {"dtype": d, "optimizer": o, "lr_factor": f, "margin": m} for (d, o, f), m in heat.items()
        ],
        "passed": not found["verdict"]["alarms"],
    }
