"""The power scan: the smallest error planted in one phase of a step that the harness
catches, by lockstep (a row that can step from a given state) and by free-running drift
alone (a row known only by its trajectory).

The planted row is the numpy row with one phase's output multiplied by (1 + δ·s): s = 1
for a systematic error, s = ±1 at random per element and per step for a random one. It
is judged against the clean numpy row, so the gap is the planted error and nothing
else: the thresholds are the judges' own (a real row's rounding adds at most its margin).

The phases are planted where the numpy backend computes them, so training and lockstep
both see the error:
- forward: the activations A1 and A2 (σ's outputs; backprop then uses them);
- loss: the logged loss (training does not use it: only the loss's own check sees it);
- grads: every gradient;
- a slot (m, v, buf, …): the slot the step stores (this step's Δ was made from the clean
  value, the next step reads the planted one);
- update: Δ;
- params: the new θ.

δ runs over powers of two in ULPs of the dtype, from 1 ULP to 1e-2. Lockstep judges
LOCKSTEP_STEPS steps spread evenly over the run, every δ apart; drift trains all δ as one
batch of runs and judges them as the default run judges a pair (K_ENVELOPE × the clean
run's perturbation envelope).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np

import backends
from harness.engine.agreement import (
    envelope_of,
    envelope_tolerance,
    gaps_per_record,
    perturbed_starts,
    trajectory_scale,
)
from harness.engine.bounds import rounding_scales
from harness.engine.execution import run_row
from harness.engine.faults import patched
from harness.engine.lockstep import K_LOCKSTEP, phases_for, row_phases, states_from_history, worst_per_state
from harness.engine.rows import load_backend
from reference.spec import Config, checkpoint_epochs, initial_params

KINDS = ("systematic", "random")
LARGEST_DELTA = 1e-2
LOCKSTEP_STEPS = 250
DRIFT_RECORDS = 1000  # checkpoints of a drift run: the first epoch caught is known to epochs/1000


def delta_grid(dtype: str) -> np.ndarray:
    """1, 2, 4, … ULPs of ``dtype`` up to LARGEST_DELTA, as relative errors."""
    u = float(np.finfo(dtype).eps)
    return u * 2.0 ** np.arange(int(np.floor(np.log2(LARGEST_DELTA / u))) + 1)


def _scaler(kind: str, deltas: np.ndarray, seed: int):
    """x -> x·(1 + δ·s), δ along x's first axis (one per run or per state)."""
    rng = np.random.default_rng(seed)

    def scale(x):
        delta = deltas.reshape((-1,) + (1,) * (np.ndim(x) - 1))
        if kind == "random":
            return x * (1 + delta * (2.0 * rng.integers(0, 2, size=np.shape(x)) - 1))
        return x * (1 + delta)

    return scale


def planted_patches(module, cfg: Config, phase: str, kind: str, deltas: np.ndarray, seed: int) -> dict:
    """The numpy module's functions with ``phase``'s output planted (module doc)."""
    scale = _scaler(kind, deltas, seed)
    if phase == "forward":
        sigmoid = module.sigmoid
        return {"sigmoid": lambda z: scale(sigmoid(z))}
    if phase in ("loss", "grads"):
        original = module.loss_and_grads

        def loss_and_grads(params, X, y, convention="mse"):
            loss, grads = original(params, X, y, convention)
            if phase == "loss":
                return scale(loss), grads
            return loss, {k: scale(g) for k, g in grads.items()}

        return {"loss_and_grads": loss_and_grads}
    rule = module.UPDATES[cfg.optimizer]

    def planted_rule(g, slots, theta, t, cfg_):
        delta, new = rule(g, slots, theta, t, cfg_)
        if phase == "update":
            return scale(delta), new
        if phase == "params":
            return theta - scale(theta - delta), new
        return delta, dict(new, **{phase: scale(new[phase])})

    return {"UPDATES": dict(module.UPDATES, **{cfg.optimizer: planted_rule})}


def _planted_new_params(kind: str, deltas: np.ndarray, seed: int) -> dict:
    """Lockstep's phases with the new θ planted after the step: planting it through Δ, as
    training must, would show as an error in the update phase first."""
    scale, phases = _scaler(kind, deltas, seed), backends.hand_phases

    def hand_phases(*args):
        tree = phases(*args)
        return tree | {"params": {k: scale(x) for k, x in tree["params"].items()}}

    return {"hand_phases": hand_phases}


@contextlib.contextmanager
def planted(cfg: Config, phase: str, kind: str, deltas, seed: int, stepping: bool = False):
    """Within the block the numpy row computes with ``phase`` planted; ``stepping``: for
    lockstep's phases of one step rather than for training."""
    deltas = np.asarray(deltas, np.float64)
    if stepping and phase == "params":
        with patched(backends, _planted_new_params(kind, deltas, seed)):
            yield
        return
    module = load_backend("numpy")
    with patched(module, planted_patches(module, cfg, phase, kind, deltas, seed)):
        yield


def lockstep_baseline(cfg: Config) -> dict:
    """The clean numpy row's states at LOCKSTEP_STEPS epochs, its phases and their bounds."""
    reference = run_row("numpy", cfg, record_states=True)
    epochs = np.unique(np.linspace(1, cfg.epochs, min(LOCKSTEP_STEPS, cfg.epochs)).round().astype(int))
    states = states_from_history(cfg, reference.params, reference.states, epochs)
    clean = row_phases("numpy", cfg, states)
    return {"states": states, "clean": clean, "scales": rounding_scales(clean, states, cfg)}


def lockstep_detection(cfg: Config, base: dict, phase: str, kind: str, deltas: np.ndarray):
    """Per δ: whether lockstep catches it, and the first epoch it does (−1: never)."""
    states = base["states"]
    caught, first = np.zeros(deltas.size, bool), np.full(deltas.size, -1)
    for i, delta in enumerate(deltas):
        with planted(cfg, phase, kind, [delta], cfg.seed + i, stepping=True):
            over = (
                worst_per_state(base["clean"], row_phases("numpy", cfg, states), base["scales"], cfg.dtype) > K_LOCKSTEP
            )
        if over.any():
            caught[i], first[i] = True, int(states.epochs[np.argmax(over)])
    return caught, first


def drift_baseline(cfg: Config) -> dict:
    """The clean numpy run at DRIFT_RECORDS checkpoints and the gap it allows per record."""
    every = max(1, cfg.epochs // DRIFT_RECORDS)
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    reference = run_row("numpy", cfg, params0, every)
    nudged = run_row("numpy", cfg, perturbed_starts(params0, cfg.seed), every, nudge_seed=cfg.seed)
    allowed = envelope_tolerance(envelope_of(reference, nudged), cfg.dtype, trajectory_scale(reference.params))[0]
    recorded = np.concatenate([[0], checkpoint_epochs(cfg.epochs, every)])
    return {"every": every, "params0": params0, "reference": reference, "allowed": allowed, "recorded": recorded}


def drift_detection(cfg: Config, base: dict, phase: str, kind: str, deltas: np.ndarray):
    """Per δ: whether the free-running drift rule catches it, and the first checkpoint
    epoch it does (−1: never). All δ train as one batch."""
    batch = {k: np.repeat(v[None], deltas.size, axis=0) for k, v in base["params0"].items()}
    with planted(cfg, phase, kind, deltas, cfg.seed):
        runs = run_row("numpy", cfg, batch, base["every"])
    reference = base["reference"]  # one run, against every δ's run: broadcast along the runs' axis
    gaps = gaps_per_record(SimpleNamespace(params=reference.params[:, None], loss=reference.loss[:, None]), runs)[2]
    with np.errstate(invalid="ignore"):
        over = gaps > base["allowed"][:, None]
    caught = over.any(axis=0)
    return caught, np.where(caught, base["recorded"][np.argmax(over, axis=0)], -1)


DETECTORS = {"lockstep": (lockstep_baseline, lockstep_detection), "drift": (drift_baseline, drift_detection)}


def power_task(cfg: Config) -> dict:
    """One task: for every phase, kind and judge, which δ of the grid are caught (and the
    first epoch), for one optimizer, dtype and seed."""
    deltas = delta_grid(cfg.dtype)
    curves = {}
    for judge, (baseline, detect) in DETECTORS.items():
        base = baseline(cfg)
        for phase in phases_for(cfg):
            for kind in KINDS:
                with np.errstate(all="ignore"):
                    curves[(phase, kind, judge)] = detect(cfg, base, phase, kind, deltas)
    return {"optimizer": cfg.optimizer, "dtype": cfg.dtype, "seed": cfg.seed, "deltas": deltas, "curves": curves}


def smallest_caught_from(caught: np.ndarray) -> int | None:
    """The index of the smallest δ caught with every larger δ caught too, or None."""
    if not caught.size or not caught[-1]:
        return None
    missed = np.flatnonzero(~caught)
    return int(missed[-1]) + 1 if missed.size else 0


def summarize_power(results: list) -> dict:
    """Thresholds per optimizer, dtype, phase, kind and judge, over the seeds: the smallest
    δ caught in every seed, with every larger δ too."""
    groups: dict[tuple, dict] = {}
    for result in results:
        for (phase, kind, judge), (caught, first) in result["curves"].items():
            key = (result["optimizer"], result["dtype"], phase, kind, judge)
            groups.setdefault(key, {"deltas": result["deltas"], "caught": [], "first": []})
            groups[key]["caught"].append(caught)
            groups[key]["first"].append(first)
    thresholds = []
    for (optimizer, dtype, phase, kind, judge), group in groups.items():
        caught = np.logical_and.reduce(group["caught"])
        index = smallest_caught_from(caught)
        deltas, u = group["deltas"], float(np.finfo(dtype).eps)
        thresholds.append(
            {
                "optimizer": optimizer,
                "dtype": dtype,
                "phase": phase,
                "kind": kind,
                "judged_by": judge,
                "smallest_caught_relative": None if index is None else float(deltas[index]),
                "smallest_caught_ulps": None if index is None else float(deltas[index] / u),
                "first_epoch": None if index is None else int(np.max([f[index] for f in group["first"]])),
                "seeds": len(group["caught"]),
                "caught_share": [float(np.mean([c[i] for c in group["caught"]])) for i in range(deltas.size)],
                "deltas": [float(d) for d in deltas],
            }
        )
    return {"thresholds": thresholds}
