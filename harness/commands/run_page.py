"""The default run's HTML report (``--report FILE.html``): the verdict, the rows, the
pairs with their margins, the lockstep heatmap, each pair's gap against its allowance,
the rows' figures, a failing pair's first divergence with its explanation and replay
command, and the environment. Rendered from the run's result objects, as the JSON is."""

from __future__ import annotations

import numpy as np

from harness.commands import run_report
from harness.engine.lockstep import K_LOCKSTEP, phases_for
from harness.report.html import Figure, Report, Section, Table, key_value_table
from harness.report.text import element, explanation_sentence, optimizer_line


def report(results) -> Report:
    """The page, its figures drawn in this process."""
    from harness.report.plots import drawn_to_data, row_figures

    figures = row_figures(results.trajectories, results.cfg.hidden) if results.trajectories else []
    pair_figures = run_report.pair_figures(results) if results.pairs else []
    heatmap = lockstep_heatmap_figure(results)
    drawn = {
        name: Figure(_caption(name), *drawn_to_data(draw, args))
        for name, draw, args in heatmap + pair_figures + figures
    }
    sections = [
        rows_section(results),
        pairs_section(results),
        lockstep_section(results, [drawn[n] for n, _, _ in heatmap]),
        Section(
            "Gap against its allowance, per pair", "gaps", [_GAP_TEXT], figures=[drawn[n] for n, _, _ in pair_figures]
        ),
        Section("Decision regions and loss, per row", "figures", figures=[drawn[n] for n, _, _ in figures]),
        *failing_sections(results),
        environment_section(results),
    ]
    return Report(
        "XOR cross-check: the default run",
        results.passed,
        verdict_text(results),
        sections,
        run_report.results_dict(results),
    )


_GAP_TEXT = (
    "Each pair's free-running gap per epoch (the largest |Δθ| and |Δloss|) on a log scale, with the allowance "
    "derived from the reference row's own nudged runs, the lockstep error of one step from the same state, and "
    "a red line at the first epoch whose gap exceeds its allowance."
)


def _caption(name: str) -> str:
    return name.removesuffix(".png").replace("_", " ")


def verdict_text(results) -> str:
    if not results.pairs:
        return "no pair to compare: " + ("; ".join(f"{n} could not run" for n in results.failed) or "one row")
    return run_report._conclusion(results)[0]


def rows_section(results) -> Section:
    cfg = results.cfg
    head = (
        f"XOR 2-{cfg.hidden}-1 sigmoid network, {optimizer_line(cfg)}; {cfg.epochs} epochs, seed {cfg.seed}, "
        f"{cfg.dtype}; every row starts from the same initial weights."
    )
    if results.faults:
        head += " Planted: " + ", ".join(f"{r}:{f}" for r, f in results.faults.items()) + "."
    headers = ["row", "gradient + optimizer", "final loss", "predictions for 0 1 1 0", "solved", "µs/epoch"]
    table = Table(headers, [run_report.row_cells(name, traj, cfg) for name, traj in results.trajectories.items()])
    failed = [f"{name} could not run: {why}" for name, why in results.failed.items()]
    return Section("Rows", "rows", [head, *failed], [table])


def pairs_section(results) -> Section:
    if not results.pairs:
        return Section("Pairs", "pairs", ["No pair: fewer than two rows ran."])
    first = results.agreements[0]
    text = (
        f"Free-running drift against {first.a}: tolerance = {first.tolerance_source} (allowed at the last epoch "
        f"{first.tolerance:.2e}); margin = largest gap / allowed."
    )
    headers = ["pair", "max|Δθ|", "max|Δloss|", "first epoch over", "margin", "lockstep ULPs", "verdict"]
    table = Table(headers, [run_report.pair_cells(p) for p in results.pairs], [not p.accepted for p in results.pairs])
    return Section("Pairs and their margins", "pairs", [text], [table])


def lockstep_heatmap_figure(results) -> list:
    """The heatmap, not yet drawn (none without lockstep): [(name, draw, args)]."""
    from harness.report.plots import lockstep_heatmap

    if not results.lockstep:
        return []
    phases = list(phases_for(results.cfg))
    rows = list(results.lockstep)
    ulps = np.array([[_worst(results.lockstep[r]["errors"], ph) for ph in phases] for r in rows])
    return [("lockstep_heatmap.png", lockstep_heatmap, (rows, phases, ulps, K_LOCKSTEP))]


def _worst(errors: dict, phase: str) -> float:
    return errors[phase].max_ulp if phase in errors else np.nan


def lockstep_section(results, figures: list) -> Section:
    if not results.lockstep:
        return Section("Lockstep", "lockstep", [run_report._lockstep_note(results)])
    text = (
        f"Every row steps from numpy's state at each of the {results.cfg.epochs} epochs; each cell is the worst "
        f"error of that phase in ULPs at the scale of the value's terms. Allowed: {K_LOCKSTEP:g} ULPs (the red "
        "mark on the colour bar; a cell over it is outlined in red)."
    )
    worst = []
    for name, result in results.lockstep.items():
        e = run_report.worst_error(result)
        worst.append([name, e.phase, str(e.epoch), element(e.tensor, e.index), f"{e.max_ulp:.3g}"])
    table = Table(["row", "worst phase", "epoch", "element", "ULPs"], worst)
    return Section("Lockstep", "lockstep", [text], [table], figures)


def failing_sections(results) -> list:
    sections = []
    for p in results.pairs:
        if p.accepted or not p.first_divergence:
            continue
        div = p.first_divergence
        where = element(div["tensor"], div["index"])
        table = key_value_table(divergence_items(p))
        text = [f"{p.a} vs {p.b} first part at epoch {div['epoch']}, phase {div['phase']}, {where}."]
        if p.explanation:
            text.append(explanation_sentence(p.explanation))
        replay = results.replay_files.get(p.b)
        commands = [f"python compare.py replay {replay}"] if replay else []
        if not replay:
            text.append("No replay file: it needs the numpy row's state at that epoch.")
        sections.append(
            Section(f"Where {p.a} and {p.b} part", f"part-{p.b}", text, [table], commands=commands, failing=True)
        )
    return sections


def divergence_items(p) -> dict:
    """A failing pair's first divergence, item by item (the page's table, the docs')."""
    div = p.first_divergence
    return {
        "epoch": div["epoch"],
        "phase": div["phase"],
        "tensor": div["tensor"],
        "element": element(div["tensor"], div["index"]),
        p.a: f"{div['reference']:.17g}",
        p.b: f"{div['value']:.17g}",
        "difference": f"{div['abs_diff']:.3e} absolute, {div['rel_diff']:.3e} relative",
        "ULPs": f"{div['ulp_diff']:.3g}",
        "found by": f"the {div['found_by']} check",
    }


def environment_section(results) -> Section:
    from harness.files.environment import code_fingerprint

    env = dict(results.environment or {})
    env["code fingerprint"] = code_fingerprint()
    tables = [key_value_table(env)]
    for name, other in results.environments.items():
        tables.append(key_value_table({"environment": name} | other))
    return Section("Environment", "environment", tables=tables)
