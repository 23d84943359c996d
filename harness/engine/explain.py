"""Why rows part: the variant of the catalogue (``harness.engine.variants``) that a row
computes, or the hyperparameters it really used.

For a row that can step from a given state, at the first step where lockstep fails, that
step is computed again from the recorded state under every variant of the configured
optimizer, and a variant is named when every phase it computes matches the row's to the
lockstep bound (K_LOCKSTEP ULPs at the scale of the terms) at that step and the next
CONFIRM_STEPS. For a trajectory without state (an --external file, the octave row) the
first TRAJECTORY_EPOCHS epochs are trained again from the initial state under every
variant, and a variant is named when its trajectory equals the file's within the derived
tolerance at every one of them. Named variants are tried first (they change the fewest
numbers); when none matches, the optimizer's hyperparameters are fitted
(``harness.engine.fitting``) and named when the fit reproduces the row as well. Nothing
that does not match is ever named: the verdict is then "unexplained".
"""

from __future__ import annotations

import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

from harness.engine.agreement import (
    envelope_of,
    envelope_tolerance,
    gaps_per_record,
    nudge_streams,
    perturbed_starts,
    trajectory_scale,
)
from harness.engine.bounds import rounding_scales
from harness.engine.faults import injected
from harness.engine.fitting import fit
from harness.engine.lockstep import K_LOCKSTEP, PHASES, States, phase_errors, row_phases
from harness.engine.rows import ROWS, load_backend, their_failures
from harness.engine.variants import HYPERPARAMETERS, MAX_PARTS, candidates, compose, compositions
from reference.optimizers import OPTIMIZER_PHASES
from reference.spec import Config, initial_params

CONFIRM_STEPS = 4
TRAJECTORY_EPOCHS = 50


def explained(row: str, variant, matched_epochs, max_ulp: float, hyperparameters=None, fit_report=None) -> dict:
    """The JSON-ready explanation of a row that computes ``variant`` (None: the fitted
    hyperparameters)."""
    entry = {
        "verdict": "explained",
        "row": row,
        "matched_epochs": [int(e) for e in matched_epochs],
        "max_ulp": float(max_ulp),
    }
    if variant is None:
        names = ", ".join(f"{k} {v:.6g}" for k, v in hyperparameters.items())
        return (
            entry
            | {
                "variant": HYPERPARAMETERS,
                "phase": _first_phase(hyperparameters),
                "description": f"the same algorithm with {names}",
                "used_by": "another implementation's settings",
                "hyperparameters": hyperparameters,
            }
            | (fit_report or {})
        )
    return entry | {
        "variant": variant.name,
        "phase": variant.phase,
        "description": variant.description,
        "used_by": variant.used_by,
        "hyperparameters": None,
        "hint": variant.hint,
        "same_as": variant.same_as,
    }


def unexplained(row: str, why: str, matched_epochs=(), max_ulp=None) -> dict:
    return {
        "verdict": "unexplained",
        "row": row,
        "variant": None,
        "phase": None,
        "description": why,
        "used_by": None,
        "hyperparameters": None,
        "matched_epochs": [int(e) for e in matched_epochs],
        "max_ulp": max_ulp,
    }


# the first phase a hyperparameter changes (the rest change the step Δ first)
FIRST_PHASE = {"beta1": "m", "beta2": "v", "momentum": "buf", "rho": "v", "initial_accumulator": "sum"}


def _first_phase(hyperparameters: dict) -> str:
    return min((FIRST_PHASE.get(name, "update") for name in hyperparameters), key=PHASES.index)


# --- rows that step: the first failing step, again ----------------------------------------------


def subset(states: States, first_epoch: int, steps: int = CONFIRM_STEPS) -> States:
    """The states before ``first_epoch`` and the ``steps`` epochs after it (those recorded)."""
    rows = np.flatnonzero(states.epochs >= first_epoch)[: steps + 1]
    return States(
        params={k: v[rows] for k, v in states.params.items()},
        slots={s: {k: v[rows] for k, v in tree.items()} for s, tree in states.slots.items()},
        t=states.t[rows],
        epochs=states.epochs[rows],
    )


def worst_ulp(reference: dict, values: dict, states: States, cfg: Config, phases=PHASES, extra=None) -> float:
    """The largest error of ``values`` against ``reference`` over ``phases``, in ULPs at the
    scale of the terms (lockstep's measure). A variant's values are its own arithmetic,
    which the spec's bounds do not follow step for step: each bound also allows one
    rounding of the value itself and the variant's ``extra`` bound, and from the first
    phase the variant computes in float32 on, errors are counted in float32's ULPs."""
    shown = {p: values[p] for p in phases if p in values and p in reference}
    scales = rounding_scales(reference, states, cfg)
    extra = extra or {}
    scales = {
        p: {
            k: e + np.abs(np.asarray(reference[p][k], np.float64)) + extra.get(p, {}).get(k, 0.0)
            for k, e in tree.items()
        }
        for p, tree in scales.items()
        if p in reference
    }
    errors = phase_errors(reference, shown, scales, states, cfg.dtype)
    u = coarsest = float(np.finfo(cfg.dtype).eps)
    worst = 0.0
    for phase in PHASES:
        if phase in reference:
            coarsest = max([coarsest] + [float(np.finfo(np.asarray(x).dtype).eps) for x in reference[phase].values()])
        if phase in errors:
            worst = max(worst, errors[phase].max_ulp * u / coarsest)
    return float(worst) if np.isfinite(worst) else float("inf")


def explain_steps(name: str, cfg: Config, states: States, faults: dict, first_epoch: int) -> dict:
    """The explanation of a pair (numpy, ``name``) whose lockstep first fails at
    ``first_epoch``: of ``name``, or of numpy when numpy carries a planted fault and the
    row computes the spec."""
    started = time.perf_counter()
    picked = subset(states, first_epoch)
    with injected(name, faults.get(name)):
        values = row_phases(name, cfg, picked)
    row = name
    if faults.get("numpy"):
        spec = row_phases("numpy", cfg, picked)
        if worst_ulp(spec, values, picked, cfg) <= K_LOCKSTEP:
            with injected("numpy", faults["numpy"]):
                row, values = "numpy", row_phases("numpy", cfg, picked)
    explanation = recognize_step(row, cfg, picked, values)
    return explanation | {"seconds": time.perf_counter() - started}


def recognize_step(row: str, cfg: Config, picked: States, values: dict) -> dict:
    """The variant (or hyperparameters) whose step from ``picked`` gives ``values``: one
    variant of the catalogue, else the smallest composition of them (``composed_step``),
    else a hyperparameter fit."""
    scores = [(_step_ulp(variant, cfg, picked, values), variant) for variant in candidates(cfg)]
    matches = [(worst, variant) for worst, variant in scores if worst <= K_LOCKSTEP]
    if matches:
        worst, variant = min(matches, key=lambda m: m[0])
        return explained(row, variant, picked.epochs, worst)
    found = composed_step(row, cfg, picked, values)
    if found is None:
        found = _fit_step(row, cfg, picked, values)
    if found["verdict"] != "explained":
        closest = [v for _, v in sorted(scores, key=lambda s: s[0])[: FITTED_ON_TOP["step"]]]
        found = (
            _smallest([f for v in closest if (f := _fit_step(row, cfg, picked, values, v))["verdict"] == "explained"])
            or found
        )
    return found


def _step_ulp(variant, cfg: Config, states: States, values: dict) -> float:
    """How far ``values`` are from ``variant``'s step from ``states``, in lockstep's ULPs."""
    run = variant.config_for(cfg)
    reference = variant.phases(cfg, states)
    extra = variant.extra_bound(reference, states, run) if variant.extra_bound else None
    return worst_ulp(reference, values, states, run, extra=extra)


def first_phase_apart(cfg: Config, states: States, values: dict) -> str | None:
    """The first phase where ``values`` part from the spec's step (None: none does)."""
    spec = row_phases("numpy", cfg, states)
    for phase in PHASES:
        if phase in values and worst_ulp(spec, values, states, cfg, (phase,)) > K_LOCKSTEP:
            return phase
    return None


def composed_step(row: str, cfg: Config, picked: States, values: dict) -> dict | None:
    """The smallest composition of variants whose step gives ``values`` (or None): only
    compositions whose first changed phase is where the row parts from the spec are tried,
    on the first differing step alone first, and the survivors on every picked step. The
    explanation says what each part contributes (how far the rest alone stays) and which
    other compositions of the same size match too (the same mathematics)."""
    started = time.perf_counter()
    first = _first_state(picked)
    first_values = {p: {k: v[:1] for k, v in tree.items()} for p, tree in values.items()}
    tried = compositions(cfg, first_phase_apart(cfg, first, first_values))
    matches = _smallest_matching(
        tried,
        lambda c: _step_ulp(c, cfg, first, first_values),
        lambda c: _step_ulp(c, cfg, picked, values),
        K_LOCKSTEP,
    )
    if not matches:
        return None
    worst, best = matches[0]
    contributions = {p.name: _step_ulp(_without(best, p), cfg, picked, values) for p in best.parts}
    return explained(row, best, picked.epochs, worst) | _composition_report(
        best, contributions, matches[1:], len(tried), time.perf_counter() - started
    )


def _smallest_matching(tried: list, screen, measure, limit: float) -> list:
    """The matches of the smallest size of composition that has any, best first, as
    (measure, composition): each screened cheaply first, then measured, a match within
    ``limit``; [] when no size matches."""
    for size in range(2, MAX_PARTS + 1):
        sized = [c for c in tried if len(c.parts) == size and screen(c) <= limit]
        matches = sorted(((m, c) for c in sized if (m := measure(c)) <= limit), key=lambda match: match[0])
        if matches:
            return matches
    return []


def _fit_step(row: str, cfg: Config, picked: States, values: dict, variant=None) -> dict:
    """Hyperparameters (of the spec, or of ``variant`` on top), when the network's phases
    match and only the optimizer's differ."""

    def phases_of(trial: Config) -> dict:
        return variant.phases(trial, picked) if variant else row_phases("numpy", trial, picked)

    spec = phases_of(cfg)
    network = ("forward", "loss", "grads")
    if worst_ulp(spec, values, picked, cfg, network) > K_LOCKSTEP:
        return unexplained(
            row, "the forward pass, loss or gradients differ from the spec and from every variant of the catalogue"
        )
    phases = [p for p in (*OPTIMIZER_PHASES, "params") if p in values]
    scales = rounding_scales(spec, picked, cfg)
    u = float(np.finfo(cfg.dtype).eps)

    def residual_of(shown):
        def residual(trial: Config) -> np.ndarray:
            computed = phases_of(trial)
            return np.concatenate(
                [
                    (
                        (np.asarray(computed[p][k], np.float64) - np.asarray(values[p][k], np.float64))
                        / (u * scales[p][k])
                    ).ravel()
                    for p in shown
                    for k in values[p]
                ]
            )

        return residual

    slots = [p for p in phases if p in picked.slots]
    result = fit(residual_of(phases), cfg, [residual_of(slots)] if slots else [], accept=K_LOCKSTEP)
    if result is None or result["max_residual"] > K_LOCKSTEP:
        return unexplained(
            row, "no variant of the catalogue and no choice of the optimizer's hyperparameters reproduces this step"
        )
    found = explained(row, None, picked.epochs, result["max_residual"], result["changed"], _report(result, "ULPs"))
    return found if variant is None else _on_top(found, variant)


def _first_state(states: States) -> States:
    return subset(states, int(states.epochs[0]), steps=0)


def _without(composition, part):
    rest = tuple(p for p in composition.parts if p is not part)
    return rest[0] if len(rest) == 1 else compose(rest)


def _composition_report(best, contributions: dict, others: list, tried: int, seconds: float) -> dict:
    """What a composition's explanation adds: its parts, what each contributes (the error
    left without it), the other compositions that match as well, and the search's cost."""
    return {
        "parts": [p.name for p in best.parts],
        "contributions": contributions,
        "equivalent": [c.name for _, c in others],
        "compositions_tried": tried,
        "search_seconds": seconds,
    }


def _report(result: dict, unit: str) -> dict:
    return {"uncertainty": result["uncertainty"], "residual": result["max_residual"], "residual_unit": unit}


# --- trajectories: the first epochs, again -------------------------------------------------------


def explain_trajectory(name: str, trajectory, cfg: Config, epochs: int = TRAJECTORY_EPOCHS) -> dict:
    """The explanation of a row known only by its trajectory: the variant (or
    hyperparameters) that trains its first ``epochs`` epochs from the initial state."""
    started = time.perf_counter()
    k = min(epochs, cfg.epochs, trajectory.loss.shape[0])
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    target = _first_records((trajectory.loss, trajectory.params), k)
    spec, allowed = _spec_and_allowed(cfg, params0, k)
    spec_margin = float((gaps_per_record(spec, target)[2] / allowed).max())
    if spec_margin <= 1.0:
        return unexplained(
            name, f"its first {k} epochs are the spec's: the rows part later", range(1, k + 1), spec_margin
        ) | {"seconds": time.perf_counter() - started}
    matches = [(m, v) for v in candidates(cfg) if (m := _trajectory_margin(v, cfg, params0, target, allowed, k)) <= 1.0]
    if matches:
        worst, variant = min(matches, key=lambda m: m[0])
        return explained(name, variant, range(1, k + 1), _ulps(worst, allowed, target, cfg)) | {
            "seconds": time.perf_counter() - started
        }
    found = composed_trajectory(name, cfg, params0, target, allowed, k)
    if found is None:
        found = _fit_trajectory(name, cfg, params0, target, allowed, k)
    if found["verdict"] != "explained":
        short = min(SCREEN_EPOCHS, k)
        closeness = lambda v: _trajectory_margin(v, cfg, params0, target, allowed, short)  # noqa: E731
        closest = sorted(candidates(cfg), key=closeness)[: FITTED_ON_TOP["trajectory"]]
        fits = [_fit_trajectory(name, cfg, params0, target, allowed, k, v) for v in closest]
        found = _smallest([f for f in fits if f["verdict"] == "explained"]) or found
    return found | {"seconds": time.perf_counter() - started}


def _smallest(explanations: list) -> dict | None:
    """Of several explanations, the one that changes least (fewest variants, then fewest
    hyperparameters), with the others named as the same steps reached another way."""
    if not explanations:
        return None
    size = lambda e: (len(e.get("parts") or [1]), len(e.get("hyperparameters") or {}), e["max_ulp"])  # noqa: E731
    best, *others = sorted(explanations, key=size)
    return best | {"equivalent": [f"{e['variant']} with {e['hyperparameters']}" for e in others]}


# How many of the variants closest to a row a hyperparameter fit is tried on top of: a fit
# over a trajectory's epochs costs seconds, over a few steps far less.
FITTED_ON_TOP = {"trajectory": 1, "step": 3}


def _trajectory_margin(variant, cfg: Config, params0, target, allowed, epochs: int) -> float:
    """How far ``variant``, trained from ``params0``, stays from the target's first
    ``epochs`` epochs, in units of the allowed gap (inf where it overflows)."""
    run = _first_records(variant.train(cfg, params0, epochs), epochs)
    part = _first_records((target.loss, target.params), epochs)
    with np.errstate(all="ignore"):
        worst = float((gaps_per_record(run, part)[2] / allowed[: epochs + 1]).max())
    return worst if np.isfinite(worst) else float("inf")


SCREEN_EPOCHS = 5  # a composition's first epochs are checked before its whole stretch


def composed_trajectory(name: str, cfg: Config, params0, target, allowed, k: int) -> dict | None:
    """The smallest composition of variants that trains the target's first ``k`` epochs
    (or None), each screened on its first SCREEN_EPOCHS first; with what each part
    contributes (the rest's margin, in ULPs) and the others that match as well."""
    started = time.perf_counter()

    def margin(variant, epochs: int) -> float:
        return _trajectory_margin(variant, cfg, params0, target, allowed, epochs)

    tried = compositions(cfg)
    matches = _smallest_matching(tried, lambda c: margin(c, min(k, SCREEN_EPOCHS)), lambda c: margin(c, k), 1.0)
    if not matches:
        return None
    worst, best = matches[0]
    contributions = {p.name: _ulps(margin(_without(best, p), k), allowed, target, cfg) for p in best.parts}
    return explained(name, best, range(1, k + 1), _ulps(worst, allowed, target, cfg)) | _composition_report(
        best, contributions, matches[1:], len(tried), time.perf_counter() - started
    )


def _fit_trajectory(name: str, cfg: Config, params0, target, allowed, k: int, variant=None) -> dict:
    """The hyperparameters (of the spec, or of ``variant`` on top) that train the target's
    first ``k`` epochs."""

    def train(trial: Config, epochs: int):
        return variant.train(trial, params0, epochs) if variant else _numpy_train(trial, params0, epochs)

    def residual_over(epochs: int):
        def residual(trial: Config) -> np.ndarray:
            run = _first_records(train(trial, epochs), epochs)
            gap = np.concatenate(
                [
                    ((run.params - target.params[: epochs + 1]) / allowed[: epochs + 1, None]).ravel(),
                    (run.loss - target.loss[:epochs]) / allowed[1 : epochs + 1],
                ]
            )
            return np.nan_to_num(gap, nan=1e30, posinf=1e30, neginf=-1e30)

        return residual

    horizons = [2**i for i in range(k.bit_length()) if 2**i < k]
    result = fit(residual_over(k), cfg, [residual_over(h) for h in horizons], accept=1.0)
    if result is None or result["max_residual"] > 1.0:
        return unexplained(
            name,
            f"no variant of the catalogue and no choice of the optimizer's hyperparameters "
            f"reproduces its first {k} epochs",
        )
    found = explained(
        name,
        None,
        range(1, k + 1),
        _ulps(result["max_residual"], allowed, target, cfg),
        result["changed"],
        _report(result, "× the allowed gap"),
    )
    return found if variant is None else _on_top(found, variant)


def _on_top(fitted: dict, variant) -> dict:
    """A hyperparameter fit made on top of ``variant``: the variant named, with the
    hyperparameters it needs besides."""
    names = ", ".join(f"{k} {v:.6g}" for k, v in fitted["hyperparameters"].items())
    return fitted | {
        "variant": variant.name,
        "phase": variant.phase,
        "description": f"{variant.description}, with {names}",
        "used_by": variant.used_by,
        "parts": [p.name for p in variant.parts] or [variant.name],
        "hint": variant.hint,
        "same_as": variant.same_as,
    }


def _first_records(run: tuple, k: int) -> SimpleNamespace:
    """A run's (loss, params)'s first ``k`` epochs, as the trajectory-like pair the gap
    functions take."""
    loss, params = run
    return SimpleNamespace(loss=np.asarray(loss[:k], np.float64), params=np.asarray(params[: k + 1], np.float64))


def _numpy_train(cfg: Config, params0, k: int, **extra):
    return load_backend("numpy").train(replace(cfg, epochs=k), params0, **extra)


def _spec_and_allowed(cfg: Config, params0, k: int):
    """The spec's first ``k`` epochs, and the derived tolerance per record over them."""
    spec = _first_records(_numpy_train(cfg, params0, k), k)
    starts = perturbed_starts(params0, cfg.seed)
    loss, params = _numpy_train(cfg, starts, k, nudge_seed=nudge_streams(cfg.seed))
    envelope = envelope_of(spec, SimpleNamespace(loss=loss, params=params))
    return spec, envelope_tolerance(envelope, cfg.dtype, trajectory_scale(spec.params))[0]


def _ulps(margin: float, allowed: np.ndarray, target, cfg: Config) -> float:
    """A margin over the allowed gap as ULPs of the parameters' scale (the worst case)."""
    u = float(np.finfo(cfg.dtype).eps)
    return float(margin * allowed.max() / (u * max(1.0, float(np.abs(target.params).max()))))


def lockstep_and_explain(name: str, cfg: Config, states: States, faults: dict | None = None) -> dict:
    """``lockstep_row``, and when a phase fails, the explanation of that step."""
    from harness.engine.lockstep import lockstep_row

    twin = ROWS[name].twin
    with their_failures(name):
        result = lockstep_row(name, cfg, states, faults, twin_of=twin[0] if twin else None)
        failing = [e.first["epoch"] for e in result["errors"].values() if not e.passed and e.first]
        result["explanation"] = explain_steps(name, cfg, states, faults or {}, min(failing)) if failing else None
    return result
