"""``compare.py compiled``: does compiling change the numbers, and which compiler decision
does it? Each compiled row (``backends.compiled``) runs beside the eager row it compiles
and numpy, through the default pipeline: the twin verdict against its eager row (the
judges and first-difference record of ``versions``) and the usual verdict against numpy.
Where the compiled row's steps first differ from its eager row's, two questions are
answered from that one state:

- which variant of the catalogue (``backends.compiler_variants``) reproduces the compiled
  bits in the first differing phase: the eager row stepped with the variant planted;
- which compiler decision makes the difference: the row is stepped again with each of
  its decisions taken away (``backends.compiled.decisions``: a knob, a rung of the
  backend ladder, an XLA flag) and the first one whose removal gives the eager row's bits
  in that phase is named, the predicate CompilerBisector lets a user write, judged bitwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import backends
from backends.compiled import backend_for, decisions, forget_compiled, pairs
from harness.engine.agreement import elementwise_gap
from harness.engine.faults import patched
from harness.engine.lockstep import PHASES, States, raw_ulps, states_from_history
from harness.engine.rows import ROWS, load_backend


@dataclass
class Finding:
    """What one compiled row showed."""

    row: str
    first: dict | None  # where its steps first differ from the eager row's (lockstep), else None
    phase: str | None = None  # the first differing phase of a lone step from that state: what is explained
    variants: dict = field(default_factory=dict)  # variant -> {"reproduces": bool, "max_ulps": float}
    bisection: list = field(default_factory=list)  # [{"removed", "gone", "max_ulps"}] in the order tried
    seconds: float = 0.0
    failed: str | None = None  # a compile that failed while recognising or bisecting

    @property
    def recognised(self) -> list:
        return [name for name, v in self.variants.items() if v["reproduces"]]

    @property
    def whole_step(self) -> list:
        """The variants that reproduce every phase of the compiled step, not only the first that differs."""
        return [name for name, v in self.variants.items() if v["whole_step"]]

    @property
    def deciding(self) -> str | None:
        return next((b["removed"] for b in self.bisection if b["gone"]), None)

    def to_json(self) -> dict:
        return {
            "first_difference": self.first,
            "explained_phase": self.phase,
            "variants": self.variants,
            "recognised": self.recognised,
            "whole_step": self.whole_step,
            "bisection": self.bisection,
            "deciding": self.deciding,
            "seconds": self.seconds,
            "failed": self.failed,
        }


def phase_gap(a: dict, b: dict, phase: str, dtype: str) -> float:
    """The largest gap, in ULPs of the first's values, between two steps' ``phase``
    (0 only when every tensor of it is the same bits)."""
    worst = 0.0
    for k, want in a[phase].items():
        gap = elementwise_gap(np.asarray(want, np.float64), np.asarray(b[phase][k], np.float64))
        worst = max(worst, float(np.max(raw_ulps(want, gap, dtype))) if gap.size else 0.0)
    return worst


def _steps(backend, cfg, state: States) -> dict:
    return backend.step_phases(cfg, state.params, state.slots, state.t)


def recognise(name: str, cfg, state: States, phase: str, compiled: dict) -> dict:
    """Each catalogue variant of the row: whether the eager row stepped with it planted
    reproduces the compiled bits in ``phase`` (and how far apart they stay, in ULPs)."""
    from backends.compiler_variants import for_row

    eager = ROWS[name].runs
    module = load_backend(eager)
    found = {}
    for variant in for_row(eager, cfg.optimizer):
        with patched(module, variant.make(module)):
            stepped = _steps(module, cfg, state)
        gap = phase_gap(compiled, stepped, phase, cfg.dtype)
        whole = max(phase_gap(compiled, stepped, p, cfg.dtype) for p in compiled if p in stepped)
        found[variant.name] = {"reproduces": gap == 0.0, "max_ulps": gap, "whole_step": whole == 0.0}
    return found


def _tried(name: str, cfg, state: States, phase: str, eager: dict, label: str, without) -> dict:
    forget_compiled()
    backend = load_backend(ROWS[name].runs) if without is None else backend_for(without)
    gap = phase_gap(eager, _steps(backend, cfg, state), phase, cfg.dtype)
    return {"removed": label, "gone": gap == 0.0, "max_ulps": gap}


def bisect(name: str, cfg, state: States, phase: str, eager: dict) -> list:
    """The row stepped again with each of its compiler decisions taken away: whether the
    difference in ``phase`` is gone (bitwise the eager row's there); where no single one
    makes it, each pair of them taken away together."""
    c = ROWS[name].compiled
    assert c is not None
    tried = [_tried(name, cfg, state, phase, eager, d.label, d.undo(c)) for d in decisions(c)]
    if not any(t["gone"] for t in tried):
        tried += [_tried(name, cfg, state, phase, eager, label, both) for label, both in pairs(c)]
    return tried


def investigate(name: str, cfg, first: dict | None, reference, bisection: bool = True) -> Finding:
    """Recognise and bisect row ``name``'s first difference from its eager row, stepping
    from the state ``reference`` (the run's numpy trajectory, its states recorded) had
    there; a compile that fails on the way is said in the finding, the rest of the run
    goes on."""
    started = time.perf_counter()
    finding = Finding(name, first)
    if first is not None:
        state = states_from_history(cfg, reference.params, reference.states, [first["epoch"]])
        try:
            _investigate(finding, name, cfg, first, state, bisection)
        except backends.RowFailed as exc:
            finding.failed = str(exc)
    finding.seconds = time.perf_counter() - started
    return finding


def _investigate(finding: Finding, name: str, cfg, first: dict, state: States, bisection: bool) -> None:
    eager = _steps(load_backend(ROWS[name].runs), cfg, state)
    compiled = _steps(load_backend(name), cfg, state)
    phase = next((p for p in PHASES if p in eager and p in compiled and phase_gap(eager, compiled, p, cfg.dtype)), None)
    if phase is None:  # a one-state step agrees where the batch did not
        finding.first = dict(first, note="stepped alone from this state, every phase is the same bits")
        return
    if phase != first["phase"]:
        finding.first = dict(first, note=f"stepped alone from this state, {phase} differs first")
    finding.phase = phase
    finding.variants = recognise(name, cfg, state, phase, compiled)
    if bisection:
        finding.bisection = bisect(name, cfg, state, phase, eager)
