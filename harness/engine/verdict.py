"""The verdict on a pair of rows: free-running drift against the derived tolerance and
lockstep errors per phase combined, which case a difference is, where the pair first
parts, and whether a known library gap explains it. One ``PairVerdict`` per pair; its
``to_json()`` is what --json writes for it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.engine.agreement import Agreement
from harness.engine.lockstep import PHASES, PhaseError, first_failing
from reference.spec import PARAM_NAMES, unflatten_params


@dataclass(frozen=True)
class GapVerdict:
    """A pair with a known library gap: expected to disagree, and whether it does so as
    the gap says (``explain_gap``)."""

    reason: str
    phase: str
    explained: bool

    def to_json(self) -> dict:
        return {
            "expected": True,
            "expected_reason": self.reason,
            "expected_phase": self.phase,
            "explained": self.explained,
        }


@dataclass(frozen=True)
class TwinVerdict:
    """What a pair of one row in two environments adds: whether the whole run is the same
    bits, and where the same steps first differ at all (lockstep; None: nowhere)."""

    environment: str
    bit_identical: bool
    trajectory_bit_identical: bool
    first_difference: dict | None
    stepped: bool

    def to_json(self) -> dict:
        return {
            "environment": self.environment,
            "bit_identical": self.bit_identical,
            "trajectory_bit_identical": self.trajectory_bit_identical,
            "first_difference": self.first_difference,
            "stepped": self.stepped,
        }


@dataclass
class PairVerdict:
    """Everything reported for one pair: the free-running figures (``agreement``), the
    lockstep errors per phase when the pair has them, the verdict, the first divergence
    and the explanation (``harness.engine.explain``; None for a pair that agrees) of a
    failing pair, a known library gap's verdict, and a twin pair's summary."""

    agreement: Agreement
    lockstep: dict[str, PhaseError] | None
    passed: bool
    diagnosis: str
    explanation: dict | None = None
    first_divergence: dict | None = None
    gap: GapVerdict | None = None
    twin: TwinVerdict | None = None

    @property
    def a(self) -> str:
        return self.agreement.a

    @property
    def b(self) -> str:
        return self.agreement.b

    @property
    def explained(self) -> bool:
        return self.gap is not None and self.gap.explained

    @property
    def accepted(self) -> bool:
        """It agrees, or disagrees only as a known library gap explains (``explain_gap``)."""
        return self.passed or self.explained

    @property
    def amplified(self) -> bool:
        """It agrees by lockstep while the free-running gap exceeds its allowance: rounding
        that training amplified (``pair_verdict``)."""
        return self.passed and not self.agreement.passed

    @property
    def lockstep_max_ulp(self) -> float | None:
        return max(e.max_ulp for e in self.lockstep.values()) if self.lockstep else None

    def to_json(self) -> dict:
        """The pair's JSON, with the keys it has always had."""
        entry = self.agreement.to_dict() | lockstep_summary(self.lockstep or {})
        entry |= {
            "passed": self.passed,
            "free_running_passed": self.agreement.passed,
            "rounding_amplified": self.amplified,
            "diagnosis": self.diagnosis,
        }
        if self.first_divergence:
            entry["first_divergence"] = self.first_divergence
        entry["explanation"] = self.explanation
        if self.gap is not None:
            entry |= self.gap.to_json()
        if self.twin is not None:
            entry |= self.twin.to_json()
        return entry


def pair_verdict(
    agreement: Agreement,
    errors: dict | None,
    a,
    b,
    gap=None,
    explanation: dict | None = None,
    twin: TwinVerdict | None = None,
) -> PairVerdict:
    """The verdict on trajectories ``a`` and ``b`` from their agreement, their lockstep
    ``errors`` (None without) and ``gap`` (``reference.optimizers.Gap``) when one is known."""
    lock_ok = all(e.passed for e in errors.values()) if errors else True
    # Lockstep's word where it has it: every step at rounding level makes a free-running gap
    # past the envelope rounding that training amplified. A known gap keeps drift's word (a
    # difference below one step's rounding that accumulates, like torch.optim's AdamW decay).
    drift_ok = agreement.passed or (bool(errors) and not gap)
    passed = bool(drift_ok and lock_ok)
    verdict = PairVerdict(
        agreement,
        errors or None,
        passed,
        diagnosis(agreement, errors, amplified=passed and not agreement.passed),
        explanation=None if passed else explanation,
        first_divergence=None if passed else first_divergence(agreement, errors, a, b),
        twin=twin,
    )
    if gap:
        verdict.gap = explain_gap(gap, passed, errors, verdict.explanation)
    return verdict


def lockstep_summary(errors: dict) -> dict:
    """JSON-ready lockstep figures of one row: per phase, and the worst phase."""
    if not errors:
        return {}
    worst = max(errors.values(), key=lambda e: e.max_ulp)
    return {
        "lockstep_max_ulp": worst.max_ulp,
        "lockstep_worst_phase": worst.phase,
        "lockstep_passed": all(e.passed for e in errors.values()),
        "lockstep": {p: e.to_dict() for p, e in errors.items()},
    }


def first_divergence(agreement, errors: dict | None, a, b) -> dict | None:
    """The first epoch, phase, tensor and element where the pair parts, with both values.
    Lockstep failures come first (they locate the computation); otherwise the first
    epoch the free-running gap exceeds its tolerance, in the parameters (or loss)."""
    failing = [e for e in (errors or {}).values() if not e.passed and e.first]
    if failing:
        e = min(failing, key=lambda x: (x.first["epoch"], PHASES.index(x.phase)))
        f = e.first
        return _divergence(
            f["epoch"],
            e.phase,
            f["tensor"],
            f["index"],
            f["reference"],
            f["value"],
            source="lockstep",
            ulp=f["raw_ulp"],
        )
    if agreement.passed or agreement.first_epoch_over_tolerance is None:
        return None
    epoch = agreement.first_epoch_over_tolerance
    hidden = (a.params.shape[-1] - 1) // 4
    pa, pb = unflatten_params(a.params[epoch], hidden), unflatten_params(b.params[epoch], hidden)
    gaps = {k: np.abs(pa[k].astype(np.float64) - pb[k]) for k in PARAM_NAMES}
    k = max(gaps, key=lambda name: np.nan_to_num(gaps[name], nan=np.inf).max())
    index = np.unravel_index(int(np.argmax(np.nan_to_num(gaps[k], nan=np.inf))), gaps[k].shape)
    phase, ref, val = "params", float(pa[k][index]), float(pb[k][index])
    if epoch >= 1 and abs(float(a.loss[epoch - 1]) - float(b.loss[epoch - 1])) > abs(ref - val):
        phase, k, index, ref, val = "loss", "loss", (), float(a.loss[epoch - 1]), float(b.loss[epoch - 1])
    ulp = abs(ref - val) / float(np.spacing(np.abs(np.asarray(ref, a.params.dtype)))) if ref == ref else float("inf")
    return _divergence(epoch, phase, k, [int(i) for i in index], ref, val, source="free-running", ulp=ulp)


def _divergence(epoch, phase, tensor, index, reference, value, source, ulp) -> dict:
    diff = abs(value - reference) if np.isfinite(value) and np.isfinite(reference) else float("inf")
    relative = diff / abs(reference) if reference and np.isfinite(diff) else float("inf")
    return {
        "epoch": int(epoch),
        "phase": phase,
        "tensor": tensor,
        "index": list(index),
        "reference": reference,
        "value": value,
        "abs_diff": diff,
        "rel_diff": relative,
        "ulp_diff": float(ulp),
        "found_by": source,
    }


def diagnosis(agreement, errors: dict | None, amplified: bool = False) -> str:
    """Which case a difference is."""
    failing = first_failing(errors or {})
    if failing is not None:
        return f"computation differs (lockstep fails first in {failing.phase})"
    if amplified:
        worst = max(errors.values(), key=lambda e: e.max_ulp) if errors else None
        chaos = "; chaotic training: one-ULP nudges part by > √u" if agreement.chaotic else ""
        return (
            f"agree — rounding amplified by training: the free-running gap is {agreement.margin:.3g} × its "
            f"allowance from epoch {agreement.first_epoch_over_tolerance}, but every step agrees to rounding "
            f"(lockstep at most {worst.max_ulp if worst else 0:.2g} ULP, in {worst.phase if worst else '-'}){chaos}"
        )
    if not agreement.passed:
        if errors:
            return "rounding amplified by training (lockstep at rounding level)"
        return "trajectories part (no lockstep for this pair)"
    return "agree"


def explain_gap(gap, passed: bool, errors: dict | None, explanation: dict | None = None) -> GapVerdict:
    """A pair with a known library gap: expected to disagree, and explained when it does
    so where the gap says: lockstep's first failing phase is the one the gap names (and
    the step is recognised as the gap's variant, when it names one), or no phase fails
    and only the free-running drift exceeds (a difference below one step's rounding that
    accumulates: a "drift" gap always, any gap in float32, where ε's placement can sit
    below a ULP). Without lockstep, any disagreement."""
    phase, reason = gap.phase, gap.reason
    if errors:
        failing = first_failing(errors)
        recognised = gap.variant is None or failing is None or (explanation or {}).get("variant") == gap.variant
        explained = not passed and recognised and (failing is None or (phase != "drift" and failing.phase == phase))
    else:
        explained = not passed
    return GapVerdict(reason, phase, bool(explained))
