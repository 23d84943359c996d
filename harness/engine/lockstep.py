"""Lockstep: every row takes one step from the *numpy row's* recorded state, at every
epoch at once, and each phase of that step is compared.

Because every row starts each step from the same state, the error does not compound:
it measures the implementation, not the chaos of training. The steps of all recorded
epochs run as one batch along a leading axis (each backend's ``step_phases``), so
checking 20000 steps costs about one training run.

How big may a phase's error be? Each phase gets a first-order rounding bound e in units
of u (``harness.engine.bounds``). An error is reported in "ULPs at the scale of its
terms", |row − numpy| / (u·e): a gradient that is small because its terms cancel is not
held to ULPs of itself. Two correct rows each stay within ~u·e of the truth; K_LOCKSTEP
allows for the bound's constants (measured in tests/test_lockstep.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from harness.engine.agreement import elementwise_gap
from harness.engine.bounds import rounding_scales
from harness.engine.faults import injected
from harness.engine.rows import ROWS, load_backend, program_timeout
from reference.optimizers import OPTIMIZER_PHASES, OPTIMIZERS
from reference.spec import PARAM_NAMES, Config, unflatten_params

# Every phase any optimizer has, in the order a step computes them (from the records);
# each optimizer's phases (``phases_for``) are a subsequence of it.
NETWORK_PHASES = ("forward", "loss", "grads")
PHASES = (*NETWORK_PHASES, *OPTIMIZER_PHASES, "params")
K_LOCKSTEP = 8.0


def phases_for(cfg: Config) -> tuple:
    return (*NETWORK_PHASES, *OPTIMIZERS[cfg.optimizer].phases, "params")


@dataclass
class States:
    """A batch of optimizer states: the state before each recorded step (numpy arrays)."""

    params: dict  # each (E, r, c)
    slots: dict  # slot name -> mapping like params
    t: np.ndarray  # (E, 1, 1) steps taken before this one
    epochs: np.ndarray  # (E,) the 1-based epoch each step is


def states_from_history(cfg: Config, params: np.ndarray, slots: dict | None, epochs=None) -> States:
    """The states before epochs 1..E (or the given 1-based ``epochs``) from flat
    histories (params, and each optimizer slot) whose row e is the state after epoch e."""
    epochs = np.arange(1, params.shape[0]) if epochs is None else np.asarray(epochs)
    before = epochs - 1
    slots = slots or {}
    return States(
        params=unflatten_params(params[before], cfg.hidden),
        slots={s: unflatten_params(slots[s][before], cfg.hidden) for s in OPTIMIZERS[cfg.optimizer].state_slots},
        t=before.reshape(-1, 1, 1).astype(np.int64),
        epochs=epochs,
    )


def row_phases(name: str, cfg: Config, states: States) -> dict:
    """Row ``name``'s phases of one step from each recorded state (its backend's
    ``step_phases``)."""
    extra = {"timeout": program_timeout(name, cfg)} if ROWS[name].program else {}
    return load_backend(name).step_phases(cfg, states.params, states.slots, states.t, **extra)


@dataclass
class PhaseError:
    phase: str
    max_ulp: float  # |row − numpy| / (u·e), worst element
    max_raw_ulp: float  # |row − numpy| / spacing(|numpy|), worst element
    epoch: int  # where the worst (scaled) error is
    tensor: str
    index: tuple
    reference: float
    value: float
    passed: bool
    first: dict | None = None  # the earliest epoch over K_LOCKSTEP: epoch, tensor, index, values, ulp

    def to_dict(self) -> dict:
        return {**self.__dict__, "index": list(self.index)}


def scaled_gap(gap: np.ndarray, bound: np.ndarray) -> np.ndarray:
    """|row − numpy| in units of its rounding bound u·e; where e is 0 any gap is infinite."""
    return np.where(bound > 0, gap / np.where(bound > 0, bound, 1.0), np.where(gap > 0, np.inf, 0.0))


def worst_per_state(ref: dict, other: dict, scales: dict, dtype: str) -> np.ndarray:
    """Per state of the batch (the first axis), the worst scaled error over every phase and
    element: the lockstep verdict of each step apart, > K_LOCKSTEP where it fails."""
    u = float(np.finfo(dtype).eps)
    worst = None
    for phase in PHASES:
        for k, want in ref.get(phase, {}).items() if phase in other else ():
            gap = elementwise_gap(np.asarray(want, np.float64), np.asarray(other[phase][k], np.float64))
            scaled = scaled_gap(gap, u * scales[phase][k])
            scaled = scaled.reshape(scaled.shape[0], -1).max(axis=1) if scaled.ndim > 1 else scaled
            worst = scaled if worst is None else np.maximum(worst, scaled)
    if worst is None:
        raise ValueError("the two steps share no phase")
    return worst


def raw_ulps(want, gap: np.ndarray, dtype: str) -> np.ndarray:
    """``gap`` in ULPs of ``want``'s values in ``dtype``, element by element."""
    spacing = np.spacing(np.abs(np.asarray(want, dtype))).astype(np.float64)
    with np.errstate(over="ignore"):  # a gap from exactly 0 is infinitely many ULPs of 0
        return gap / np.where(spacing > 0, spacing, np.finfo(dtype).smallest_subnormal)


def phase_errors(ref: dict, other: dict, scales: dict, states: States, dtype: str) -> dict:
    """Per phase: the worst error at the scale of its terms and where, and the earliest
    epoch where it exceeds K_LOCKSTEP."""
    u = float(np.finfo(dtype).eps)
    out: dict[str, PhaseError] = {}
    for phase in PHASES:
        if phase not in other:
            continue
        worst: tuple | None = None
        first: dict | None = None
        for k, want in ref[phase].items():
            want64, got64 = np.asarray(want, np.float64), np.asarray(other[phase][k], np.float64)
            gap = elementwise_gap(want64, got64)
            scaled = scaled_gap(gap, u * scales[phase][k])
            raw = raw_ulps(want, gap, dtype)
            position = np.unravel_index(int(np.argmax(scaled)), scaled.shape)
            candidate = (
                float(scaled.max()),
                float(raw.max()),
                k,
                position,
                float(want64[position]),
                float(got64[position]),
            )
            if worst is None or candidate[:2] > worst[:2]:
                worst = candidate
            over = (scaled > K_LOCKSTEP).reshape(scaled.shape[0], -1).any(axis=1)
            if over.any():
                e = int(np.argmax(over))
                if first is None or e < first["_row"]:
                    element = np.unravel_index(int(np.argmax(scaled[e])), scaled.shape[1:])
                    first = {
                        "_row": e,
                        "epoch": int(states.epochs[e]),
                        "tensor": k,
                        "index": [int(i) for i in element],
                        "reference": float(want64[e][element]),
                        "value": float(got64[e][element]),
                        "ulp": float(scaled[e][element]),
                        "raw_ulp": float(raw[e][element]),
                    }
        assert worst is not None  # every phase holds a tensor
        scaled_max, raw_max, k, position, reference, value = worst
        if first is not None:
            del first["_row"]
        out[phase] = PhaseError(
            phase=phase,
            max_ulp=scaled_max,
            max_raw_ulp=raw_max,
            epoch=int(states.epochs[position[0]]),
            tensor=k,
            index=tuple(int(i) for i in position[1:]),
            reference=reference,
            value=value,
            passed=bool(scaled_max <= K_LOCKSTEP),
            first=first,
        )
    return out


def first_failing(errors: dict) -> PhaseError | None:
    """The first phase, in the order a step computes them, whose error is too large;
    among its failures, the earliest epoch is the one reported by ``phase_errors``."""
    for phase in PHASES:
        if phase in errors and not errors[phase].passed:
            return errors[phase]
    return None


def lockstep_row(
    name: str, cfg: Config, states: States, faults: dict | None = None, twin_of: str | None = None
) -> dict:
    """One row's lockstep against numpy (each with its planted fault, if any): per phase
    errors, and per epoch the largest |Δθ| of the new params. A row of another
    environment (``twin_of``: the row it runs) is also held against that row here: its
    per phase errors (``twin_errors``) and where the two first differ at all
    (``first_difference``)."""
    faults = faults or {}
    started = time.perf_counter()
    ref = _phases_with_fault("numpy", cfg, states, faults)
    scales = rounding_scales(ref, states, cfg)
    other = _phases_with_fault(name, cfg, states, faults)
    errors = phase_errors(ref, other, scales, states, cfg.dtype)
    params_gap = np.max(
        [
            elementwise_gap(np.asarray(ref["params"][k], np.float64), np.asarray(other["params"][k], np.float64))
            .reshape(len(states.epochs), -1)
            .max(axis=1)
            for k in PARAM_NAMES
        ],
        axis=0,
    )
    result = {"errors": errors, "params_gap": params_gap}
    if twin_of is not None:
        here = ref if twin_of == "numpy" else _phases_with_fault(twin_of, cfg, states, faults)
        result["twin_errors"] = phase_errors(here, other, scales, states, cfg.dtype)
        result["first_difference"] = first_bitwise_difference(here, other, states)
    return result | {"seconds": time.perf_counter() - started}


def _phases_with_fault(name: str, cfg: Config, states: States, faults: dict) -> dict:
    with injected(name, faults.get(name)):
        return row_phases(name, cfg, states)


def first_bitwise_difference(ref: dict, other: dict, states: States) -> dict | None:
    """Where two rows' phases of the same steps first differ at all: the earliest epoch,
    then the first phase a step computes, its tensor and element (``difference_at``);
    None when every phase is bit-identical."""
    found = None
    for phase in (p for p in PHASES if p in ref and p in other):
        for k, want in ref[phase].items():
            want64, got64 = np.asarray(want, np.float64), np.asarray(other[phase][k], np.float64)
            differs = (elementwise_gap(want64, got64) > 0).reshape(want64.shape[0], -1)
            rows = np.flatnonzero(differs.any(axis=1))
            if rows.size and (found is None or rows[0] < found[0]):
                element = np.unravel_index(int(np.argmax(differs[rows[0]])), want64.shape[1:])
                found = (
                    int(rows[0]),
                    phase,
                    k,
                    element,
                    float(want64[rows[0]][element]),
                    float(got64[rows[0]][element]),
                    np.asarray(want).dtype,
                )
    if found is None:
        return None
    row, phase, k, element, reference, value, dtype = found
    return difference_at(int(states.epochs[row]), phase, k, [int(i) for i in element], reference, value, dtype)


def difference_at(epoch: int, phase: str, tensor: str, index: list, reference: float, value: float, dtype) -> dict:
    """One first difference, JSON-ready: where, both values, and the gap in ULPs of the
    reference value in ``dtype`` (infinite where either is not finite)."""
    finite = np.isfinite(reference) and np.isfinite(value)
    spacing = float(np.spacing(np.abs(np.asarray(reference, dtype)))) if finite else 0.0
    ulps = abs(value - reference) / spacing if spacing > 0 else float("inf")
    return {
        "epoch": int(epoch),
        "phase": phase,
        "tensor": tensor,
        "index": list(index),
        "reference": reference,
        "value": value,
        "ulps": ulps,
    }
