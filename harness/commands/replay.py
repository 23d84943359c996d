"""``python compare.py replay FILE``: run the single step a replay file holds (the numpy
row's exact state before the step where a pair parted) in every row, phase by phase."""

from __future__ import annotations

import argparse

from harness.commands import arguments, ending, row_choice
from harness.commands.run_report import phase_cells
from harness.engine.faults import problem as fault_problem
from harness.engine.lockstep import K_LOCKSTEP, first_failing, lockstep_row, phases_for
from harness.engine.rows import ROWS
from harness.report.text import element

DESCRIPTION = (
    "Run the single step a replay file holds (the numpy row's exact state before the step where a pair "
    "parted) in every row, and compare each phase with numpy's."
)
EPILOG = "exit status: 0 every row computes the step as numpy does, 1 some row differs, 2 bad usage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a replay .npz written by python compare.py when a pair failed")
    arguments.add_rows_option(parser, "rows to run the step in (default: all installed)")
    arguments.add_output_options(parser, json="the phase-by-phase errors")
    parser.add_argument(
        "--backend-file",
        action="append",
        metavar="FILE.py",
        help="run the step in your own backend module too (as in the default run; repeatable)",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.replay import ReplayError, read_replay

    outputs = ending.check_outputs(parser, args, files=("json",), folders=())
    try:
        record = read_replay(args.file)
    except ReplayError as exc:
        parser.error(str(exc))
    names, skipped = row_choice.select_rows(args.backends, parser, cfg=record["config"])
    names += row_choice.load_plugins(args.backend_file, names, record["config"], "cpu", parser)
    names = [n for n in names if ROWS[n].lockstep]  # the step is run again: rows that can step from a state
    ending.notice_skipped(skipped.values())
    faults = {row: fault for row, fault in record["faults"].items() if row in names or row == "numpy"}
    for row, fault in faults.items():
        why = fault_problem(row, fault, record["config"])
        if why:
            parser.error(f"{args.file}: faults: {why}")
    results = {
        name: lockstep_row(name, record["config"], record["states"], faults)["errors"]
        for name in names
        if name != "numpy"
    }
    print(render_replay(record, results))
    return ending.finish(parser, outputs, ending.Result(replay_json(args.file, record, results)))


def replay_json(path, record: dict, results: dict) -> dict:
    return {
        "file": path,
        "config": record["config"].to_dict(),
        "faults": record["faults"],
        "epoch": int(record["states"].epochs[0]),
        "pair": record["pair"],
        "rows": {n: {p: e.to_dict() for p, e in errors.items()} for n, errors in results.items()},
        "passed": all(e.passed for errors in results.values() for e in errors.values()),
    }


def render_replay(replay: dict, results: dict) -> str:
    cfg = replay["config"]
    lines = [
        f"replay of epoch {int(replay['states'].epochs[0])} from the numpy row's state "
        f"(t = {int(replay['states'].t.ravel()[0])}), {cfg.optimizer}, {cfg.dtype}, seed {cfg.seed}, lr {cfg.lr:g}"
        + (f"; planted: {', '.join(f'{r}:{f}' for r, f in replay['faults'].items())}" if replay["faults"] else ""),
        f"recorded for {' vs '.join(replay['pair'])}, first parting in phase {replay['phase']}",
        "",
        f"error against numpy in ULPs at the scale of each value's terms (allowed {K_LOCKSTEP:g}):",
        f"{'row':<12} " + " ".join(f"{p:>9}" for p in phases_for(cfg)),
    ]
    for name, errors in results.items():
        lines.append(f"{name:<12} " + phase_cells(errors, phases_for(cfg)))
    failing = {n: f for n, e in results.items() if (f := first_failing(e)) is not None}
    lines.append("")
    if not failing:
        lines.append("every row computes this step as numpy does, to rounding")
    for name, f in failing.items():
        where = element(f.tensor, f.index)
        lines.append(
            f"{name}: first differs in {f.phase}, worst at {where}: numpy {f.reference:.17g}, "
            f"{name} {f.value:.17g} ({f.max_ulp:.3g} ULPs at the scale of its terms)"
        )
    return "\n".join(lines)
