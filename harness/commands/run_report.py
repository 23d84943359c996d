"""The default run's report: the table for people, the dict for --json, the figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.commands import ending
from harness.engine.agreement import envelope_tolerance, trajectory_scale
from harness.engine.lockstep import K_LOCKSTEP, phases_for
from harness.engine.rows import ROWS
from harness.engine.verdict import PairVerdict
from harness.report.text import GRAD_LABELS, element, explanation_sentence, fmt, optimizer_line, predictions
from reference.spec import Config, solves_xor, unflatten_params


def row_summary(traj, cfg: Config, environments: dict | None = None) -> dict:
    outputs = predictions(traj, cfg)
    final = unflatten_params(traj.params[-1].astype(np.float64), cfg.hidden)
    where = ROWS[traj.name].environment
    return {
        "environment": where,
        "versions": row_versions(traj.name, (environments or {}).get(where) or {}),
        "implementation": ROWS[traj.name].describe(cfg),
        "kind": ROWS[traj.name].kind,
        "final_loss": float(traj.loss[-1]),
        "final_params": {k: v.tolist() for k, v in final.items()},
        "predictions": outputs.tolist(),
        "solved": bool(solves_xor(outputs)),
        "seconds": traj.seconds,
        "us_per_epoch": traj.us_per_epoch,
        "compile_seconds": traj.compile_seconds,
    }


def row_versions(name: str, env: dict) -> dict:
    """The versions a row's numbers depend on: Python, numpy and its framework's packages."""
    row = ROWS[ROWS[name].runs]
    packages = dict.fromkeys(("numpy", *row.packages))
    return {"python": env.get("python")} | {p: env.get(p) for p in packages}


# What each key of the default run's JSON holds (docs/json.md is made from this; a test
# holds that results_dict writes exactly these keys).
JSON_KEYS = {
    "config": "the problem and optimizer: epochs, seed, hidden units, dtype, gradient convention, hyperparameters",
    "environment": "this machine: Python and library versions, platform, cpu count, device",
    "environments": "every environment rows ran in (--env), by name, this one as 'here'",
    "injected": "planted faults, row: fault (--inject)",
    "backends": "per row: its implementation, final loss, parameters and predictions, solved, seconds, µs/epoch",
    "skipped": "rows that could not run here (a framework not installed), row: why",
    "could_not_run": "rows that started and failed (worker died, program failed or hung), row: why",
    "reference_row": "the row every other row is compared with (the first)",
    "tolerance_rule": "how the free-running tolerance was derived",
    "lockstep_seconds": "lockstep's time, summed over rows",
    "agreement": "per pair: drift figures, margin, lockstep errors per phase, verdict, first divergence, explanation",
    "passed": "true when every pair agrees or differs only as a known library gap explains",
    "replay_files": "row: the replay file written for its failing pair",
    "timings": "where the time went: each task's cost in its process and each step in the main one",
}


def results_dict(results) -> dict:
    cfg = results.cfg
    environments = {"here": results.environment} | results.environments
    return {
        "config": cfg.to_dict(),
        "environment": results.environment,
        "environments": environments,
        "injected": results.faults,
        "backends": {name: row_summary(t, cfg, environments) for name, t in results.trajectories.items()},
        "skipped": {str(k): v for k, v in results.skipped.items()},
        "could_not_run": dict(results.failed),
        "reference_row": next(iter(results.trajectories), None),
        "tolerance_rule": (results.agreements[0].tolerance_source if results.agreements else None),
        "lockstep_seconds": results.lockstep_seconds,
        "agreement": [p.to_json() for p in results.pairs],
        "passed": results.passed,
        "replay_files": {k: str(v) for k, v in results.replay_files.items()},
        "timings": results.timings,
    }


def render(results) -> str:
    lines = _rows_table(results) + ending.could_not_run_lines(results.failed)
    if not results.pairs:
        return "\n".join(lines)
    lines += _pairs_table(results) + _lockstep_table(results) + _without_lockstep(results)
    lines += [""] + _known_differences(results) + _conclusion(results)
    return "\n".join(lines)


def name_width(names, least: int = 12) -> int:
    return max(least, *(len(n) for n in names))


def environment_lines(results) -> list:
    """One line per environment the rows ran in, with the versions that matter, when
    rows ran in more than this one (--env)."""
    if not results.environments:
        return []
    here = results.environment or {}
    lines = ["here: " + versions_text(here)]
    for name, env in results.environments.items():
        lines.append(f"{name} ({env['python_executable']}): " + versions_text(env))
    return lines


def versions_text(env: dict) -> str:
    from harness.files.environment import PACKAGES

    shown = [f"python {env.get('python')}"] + [f"{p} {env[p]}" for p in PACKAGES if env.get(p) and p != "matplotlib"]
    return ", ".join(shown)


def _rows_table(results) -> list:
    cfg, trajectories = results.cfg, results.trajectories
    width = max(36, *(len(ROWS[n].describe(cfg)) for n in trajectories))
    names = name_width(trajectories)
    lines = [
        f"XOR 2-{cfg.hidden}-1 sigmoid network, {optimizer_line(cfg)}; gradient of {GRAD_LABELS[cfg.grad]}",
        f"{cfg.epochs} epochs, seed {cfg.seed}, {cfg.dtype}; every row starts from the same initial weights"
        + (f"; planted: {', '.join(f'{r}:{f}' for r, f in results.faults.items())}" if results.faults else ""),
        *environment_lines(results),
        "",
        f"{'row':<{names}} {'gradient + optimizer':<{width}} {'final loss':>10}  {'predictions for 0 1 1 0':<27} "
        f"{'solved':<6} {'µs/epoch':>9}",
    ]
    for name, traj in trajectories.items():
        row, made, loss, shown, solved, us = row_cells(name, traj, cfg)
        lines.append(f"{row:<{names}} {made:<{width}} {loss:>10}  {shown:<27} {solved:<6} {us:>9}")
    return lines


def row_cells(name: str, traj, cfg: Config) -> list:
    """A row as the report's tables show it (the text and the page): its name, what
    computes it, final loss, the four predictions, solved, µs/epoch."""
    outputs = predictions(traj, cfg)
    return [
        name,
        ROWS[name].describe(cfg),
        fmt(float(traj.loss[-1]), ".4e"),
        " ".join(fmt(p, ".4f") for p in outputs),
        "yes" if solves_xor(outputs) else "NO",
        fmt(traj.us_per_epoch, ".1f"),
    ]


def _verdict(p: PairVerdict) -> str:
    if p.twin is not None:
        return p.diagnosis + "; " + twin_difference_text(p)
    if p.gap is None:
        return p.diagnosis
    if p.explained:
        return f"expected: a known {p.b} difference (below)"
    if p.passed:
        return f"agrees, though a known {p.b} difference was expected"
    return f"DISAGREES beyond the known {p.b} difference: {p.diagnosis}"


def twin_difference_text(p: PairVerdict) -> str:
    """Where one row's runs in two environments first differ at all."""
    assert p.twin is not None
    if p.twin.bit_identical:
        return "bit-identical"
    first = p.twin.first_difference
    if first is None:
        return "every step bit-identical, the trajectories differ"
    where = element(first["tensor"], first["index"])
    return f"steps first differ at epoch {first['epoch']}, {first['phase']} {where}, {first['ulps']:.3g} ULPs"


def _pairs_table(results) -> list:
    first = results.agreements[0]
    width = name_width([p.a + " vs " + p.b for p in results.pairs], 26)
    lines = [
        "",
        f"free-running drift against {first.a}: tolerance = {first.tolerance_source} "
        f"(allowed at the last epoch {first.tolerance:.2e})",
        f"{'pair':<{width}} {'max|Δθ|':>10} {'max|Δloss|':>11} {'first epoch over':>17} {'margin':>9}  "
        f"{'lockstep ULPs':>13}  verdict",
    ]
    for p in results.pairs:
        pair, param, loss, first_over, margin, lock, verdict = pair_cells(p)
        lines.append(f"{pair:<{width}} {param:>10} {loss:>11} {first_over:>17} {margin:>9}  {lock:>13}  {verdict}")
    return lines


def pair_cells(p: PairVerdict) -> list:
    """A pair as the report's tables show it: the pair, its largest parameter and loss
    gaps, the first epoch over the tolerance, the margin, lockstep's worst ULPs, the verdict."""
    drift = p.agreement
    return [
        f"{p.a} vs {p.b}",
        fmt(drift.max_abs_param_diff),
        fmt(drift.max_abs_loss_diff),
        "none" if drift.first_epoch_over_tolerance is None else str(drift.first_epoch_over_tolerance),
        fmt(drift.margin, ".3f" if drift.margin < 1e3 else ".2e"),
        "n/a" if p.lockstep_max_ulp is None else f"{p.lockstep_max_ulp:.3g}",
        _verdict(p),
    ]


def phase_cells(errors: dict, phases) -> str:
    """One row of a lockstep table: each phase's worst error, '!' where it fails."""
    return "".join(
        (f"{errors[ph].max_ulp:9.3g}" + (" " if errors[ph].passed else "!")) if ph in errors else f"{'n/a':>9} "
        for ph in phases
    )


def _lockstep_table(results) -> list:
    if not results.lockstep:
        return []
    cfg = results.cfg
    phases = phases_for(cfg)
    lines = [
        "",
        f"lockstep: every row steps from numpy's state at each of the {cfg.epochs} epochs; worst error "
        f"per phase in ULPs at the scale of the value's terms (allowed {K_LOCKSTEP:g}; "
        f"{results.lockstep_seconds:.1f} s)",
        f"{'row':<{name_width(results.lockstep)}} " + " ".join(f"{ph:>9}" for ph in phases),
    ]
    where = []
    for name, result in results.lockstep.items():
        errors = result["errors"]
        lines.append(f"{name:<{name_width(results.lockstep)}} " + phase_cells(errors, phases))
        worst = worst_error(result)
        where.append(f"{name} {worst.phase} at epoch {worst.epoch}, {element(worst.tensor, worst.index)}")
    return lines + ["worst: " + "; ".join(where)]


def worst_error(lockstep_result: dict):
    """A row's lockstep error (``PhaseError``) with the most ULPs, over its phases."""
    return max(lockstep_result["errors"].values(), key=lambda e: e.max_ulp)


def _no_lockstep_reason(name: str) -> str:
    kind = ROWS[name].kind if name in ROWS else ""
    if kind == "external":
        return "another program's trajectory, read from a file: it cannot step from a given state"
    return "its framework cannot step from a given state" if not ROWS[name].lockstep else "not run"


def _without_lockstep(results) -> list:
    without = [n for n in results.trajectories if n != "numpy" and n not in results.lockstep]
    if "numpy" not in results.trajectories or not without:
        return []
    return ["", "no lockstep for " + "; ".join(f"{n} ({_no_lockstep_reason(n)})" for n in without)]


def _known_differences(results) -> list:
    lines = []
    for p in results.pairs:
        if p.gap is not None:
            where = "free-running drift only" if p.gap.phase == "drift" else f"{p.gap.phase} phase"
            lines.append(f"known difference, {p.b} ({where}): {p.gap.reason}")
            if p.explained and (p.explanation or {}).get("verdict") == "explained":
                lines.append("  recognised: " + explanation_sentence(p.explanation))
    return lines


def _lockstep_note(results) -> str:
    judged = [p for p in results.pairs if not p.explained]
    unchecked = [p.b for p in judged if p.lockstep_max_ulp is None]
    if not unchecked:
        return "lockstep at rounding level"
    if "numpy" not in results.trajectories:
        return "no lockstep: it needs the numpy row"
    if len(unchecked) == len(judged):
        return f"no lockstep for {', '.join(unchecked)}"
    return f"lockstep at rounding level; none for {', '.join(unchecked)}"


def _conclusion(results) -> list:
    failed = [p for p in results.pairs if not p.accepted]
    if failed:
        lines = [f"{len(failed)} of {len(results.pairs)} pairs disagree: " + ", ".join(_pair_name(p) for p in failed)]
        for p in failed:
            if p.first_divergence:
                lines += ["", paragraph(p.a, p.b, p.first_divergence, results.replay_files.get(p.b), p.explanation)]
        return lines
    explained = [p.b for p in results.pairs if p.explained]
    agreeing = len(results.pairs) - len(explained)
    head = (
        f"all {agreeing} pairs agree"
        if not explained
        else f"{agreeing} of {len(results.pairs)} pairs agree, {', '.join(explained)} differs as explained above"
    )
    lines = [head + f" (margin = largest gap / allowed; {_lockstep_note(results)})"]
    if results.failed:
        lines.append(f"{len(results.failed)} row(s) could not run: {', '.join(results.failed)} (exit status 3)")
    return lines


def _pair_name(p: PairVerdict) -> str:
    """A pair by its second row, or by both when the first is not the reference."""
    return p.b if p.a == "numpy" or p.twin is None else f"{p.a} vs {p.b}"


def paragraph(a: str, b: str, div: dict, replay_path, explanation: dict | None = None) -> str:
    where = element(div["tensor"], div["index"])
    text = (
        f"{a} vs {b} first part at epoch {div['epoch']}, phase {div['phase']}, {where}: "
        f"{a} {div['reference']:.17g}, {b} {div['value']:.17g}; difference {div['abs_diff']:.3e} "
        f"absolute, {div['rel_diff']:.3e} relative, {div['ulp_diff']:.3g} ULPs (found by the "
        f"{div['found_by']} check)."
    )
    if div["found_by"] == "lockstep":
        text += " Starting from the same state, the two compute this step differently."
    else:
        text += (
            " Every step agrees to rounding when started from the same state: the gap is rounding that "
            "training amplified beyond the tolerance."
        )
    if explanation:
        text += " " + explanation_sentence(explanation)
    if replay_path:
        text += f" Replay that step: python compare.py replay {replay_path}"
    return text


def allowed_per_epoch(results) -> np.ndarray:
    """The free-running gap allowed at each record: the envelope's derived tolerance, or
    the one tolerance when there is no envelope."""
    reference = next(iter(results.trajectories.values()))
    if results.envelope is not None:
        return envelope_tolerance(results.envelope, results.cfg.dtype, trajectory_scale(reference.params))[0]
    return np.full(reference.params.shape[0], results.agreements[0].tolerance)


def pair_figures(results) -> list:
    """Per pair its drift figure (gap, allowed, lockstep error, first excess), not yet
    drawn: (file name, draw function, its arguments)."""
    from harness.report.plots import drift_figure

    allowed = allowed_per_epoch(results)
    figures = []
    for p in results.pairs:
        lock = results.lockstep.get(p.b, {}).get("params_gap") if p.a == "numpy" else None
        first = p.agreement.first_epoch_over_tolerance
        figures.append(
            (f"drift_{p.a}_vs_{p.b}.png", drift_figure, (p.a, p.b, results.gaps[p.a, p.b], allowed, lock, first))
        )
    return figures


def write_plots(results, folder) -> None:
    """The rows' figures, and per pair the drift figure, as PNG files in ``folder``
    (drawn in this process: docs/speed.md has why)."""
    from harness.report.plots import drawn_to_file, row_figures

    Path(folder).mkdir(parents=True, exist_ok=True)
    for name, draw, args in row_figures(results.trajectories, results.cfg.hidden) + pair_figures(results):
        drawn_to_file(draw, args, Path(folder) / name)
