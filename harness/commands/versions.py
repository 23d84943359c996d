"""``compare.py versions --env NAME=PYTHON``: did an upgrade change the numbers? Every
Python row runs here and in the other environment (``backends.env_row``) from the same
initial weights; per row, whether the two runs are the same bits over the whole run, and
if not, where they first differ (in the trajectory, and stepping from the same states in
lockstep: epoch, phase, tensor, element, ULPs) and whether that is rounding (every step
within its rounding bound, the trajectories within the derived tolerance) or a change in
the computation."""

from __future__ import annotations

import argparse

import numpy as np

from harness.commands import arguments, ending, row_choice
from harness.engine.agreement import elementwise_gap
from harness.engine.lockstep import K_LOCKSTEP, difference_at, first_failing
from harness.engine.rows import ROWS, is_twin_pair, twinnable
from harness.engine.verdict import PairVerdict, lockstep_summary
from harness.report.text import element
from reference.spec import unflatten_params

DESCRIPTION = (
    "Run every Python row here and in another environment (--env NAME=PYTHON: that environment's "
    "interpreter, with this project installed beside other library versions) and say per row whether the "
    "two runs are bit-identical over the whole run; if not, the first epoch, phase, tensor and element "
    "where they differ, by how many ULPs, and whether it is rounding or a change in the computation."
)
EPILOG = (
    "exit status: 0 every row agrees with itself across the environments within the derived tolerance (bit-"
    "identical or rounding level), 1 some row does not, 2 bad usage, 3 a row could not run"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    arguments.add_adam_options(parser)
    arguments.add_env_option(parser, required=True)
    arguments.add_rows_option(
        parser,
        "comma-separated Python rows to compare (default: every Python row of the optimizer "
        "that can run in both environments; numpy runs here as the reference either way)",
    )
    arguments.add_output_options(parser, json="the results", report="the report, its figures and its JSON's tables")
    parser.add_argument(
        "--inject",
        action="append",
        metavar="ROW:FAULT",
        help="plant a fault in one row (ROW@NAME: in its run in environment NAME) to see a change "
        "in the computation caught (repeatable, one per row)",
    )
    arguments.add_jobs_option(parser)


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.engine.pipeline import run_default
    from harness.files.environment import environment
    from harness.report.progress import Board

    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=())
    chosen = _rows(args.backends, parser, cfg)
    names, skipped = row_choice.select_rows(chosen, parser, "cpu", cfg)
    twins, environments, not_there = row_choice.load_environments(args.env, names, parser)
    names = [n for n in names if any(is_twin_pair(n, t) for t in twins)]  # a row with no twin has nothing to say
    reference = [] if "numpy" in names else ["numpy"]
    faults = row_choice.parse_faults(args.inject, names + twins, cfg, parser)
    ending.refuse_if_too_large(parser, "default", cfg, len(reference + names + twins))
    ending.notice_skipped([*skipped.values(), *not_there.values()])
    with Board() as board:
        results = run_default(cfg, reference + names + twins, "cpu", args.jobs, faults, progress=board, twins_only=True)
    results.environment, results.environments = environment(), environments
    data = summary(results) | {"could_not_run": dict(results.failed)}
    text = render(results, data)
    print(text)
    return ending.finish(parser, outputs, ending.Result(data), text=text)


def _rows(requested, parser: argparse.ArgumentParser, cfg) -> list:
    """The rows to compare: the requested ones, which must be Python rows, else every
    Python row of the optimizer whose framework is here."""
    from harness.engine.rows import rows_for, unavailable_reason

    if requested:
        wrong = [n for n in requested if not twinnable(n)]
        if wrong:
            parser.error(
                f"argument --backends: {wrong[0]} is not a Python row of this project: the same program "
                "runs in either environment"
                if ROWS[wrong[0]].program
                else f"argument --backends: {wrong[0]} cannot run in another environment"
            )
        return requested
    return [n for n in rows_for(cfg) if twinnable(n) and not unavailable_reason(n)]


def summary(results) -> dict:
    """The JSON of a versions run: per twin pair, the whole-run comparison, the lockstep
    comparison and the verdict."""
    rows = {}
    for p in results.pairs:
        a, b, twin, drift = results.trajectories[p.a], results.trajectories[p.b], p.twin, p.agreement
        assert twin is not None
        rows[p.b] = {
            "row": p.a,
            "environment": twin.environment,
            "verdict": verdict(p),
            "passed": p.accepted,
            "bit_identical": twin.bit_identical,
            "trajectory": {
                "bit_identical": twin.trajectory_bit_identical,
                "first_difference": first_trajectory_difference(a, b),
                "max_abs_param_diff": drift.max_abs_param_diff,
                "max_abs_loss_diff": drift.max_abs_loss_diff,
                "margin": drift.margin,
                "tolerance": drift.tolerance,
                "passed": drift.passed,
            },
            "lockstep": {
                "run": twin.stepped,
                "first_difference": twin.first_difference,
                "max_ulp": p.lockstep_max_ulp,
                "allowed_ulp": K_LOCKSTEP,
                "first_failing_phase": first_failing_phase(p),
                "phases": lockstep_summary(p.lockstep or {}).get("lockstep"),
            },
            "diagnosis": p.diagnosis,
        }
    return {
        "config": results.cfg.to_dict(),
        "environments": {"here": results.environment} | results.environments,
        "injected": results.faults,
        "rows": rows,
        "skipped": dict(results.skipped),
        "passed": all(r["passed"] for r in rows.values()),
    }


def verdict(p: PairVerdict) -> str:
    """bit-identical, rounding level, or what differs."""
    if p.twin is not None and p.twin.bit_identical:
        return "bit-identical"
    if p.passed:
        return "rounding level"
    failing = first_failing_phase(p)
    if failing:
        return f"computation changed ({failing} first)"
    return "parts beyond the derived tolerance"


def first_failing_phase(p: PairVerdict) -> str | None:
    """The first phase, in the order a step computes them, whose lockstep error is over its bound."""
    failing = first_failing(p.lockstep or {})
    return failing.phase if failing else None


def first_trajectory_difference(a, b) -> dict | None:
    """Where two whole-run trajectories (every epoch) first differ at all: the earliest
    epoch, the loss logged before its update first, then the parameters after it."""
    loss_differs = elementwise_gap(a.loss, b.loss) > 0
    param_differs = (elementwise_gap(a.params, b.params) > 0).any(axis=1)
    epochs = [
        int(np.argmax(loss_differs)) + 1 if loss_differs.any() else None,
        int(np.argmax(param_differs)) if param_differs.any() else None,
    ]
    if epochs == [None, None]:
        return None
    epoch = min(e for e in epochs if e is not None)
    if epochs[0] == epoch and epoch >= 1:
        return difference_at(
            epoch, "loss", "loss", [], float(a.loss[epoch - 1]), float(b.loss[epoch - 1]), a.loss.dtype
        )
    hidden = (a.params.shape[1] - 1) // 4
    here, there = unflatten_params(a.params[epoch], hidden), unflatten_params(b.params[epoch], hidden)
    for k in here:
        differs = elementwise_gap(here[k], there[k]) > 0
        if differs.any():
            index = np.unravel_index(int(np.argmax(differs)), differs.shape)
            return difference_at(
                epoch,
                "params",
                k,
                [int(i) for i in index],
                float(here[k][index]),
                float(there[k][index]),
                a.params.dtype,
            )
    return None


def _where(first: dict) -> str:
    where = "" if first["tensor"] == first["phase"] else " " + element(first["tensor"], first["index"])
    return (
        f"epoch {first['epoch']}, {first['phase']}{where}: {first['reference']:.17g} here, "
        f"{first['value']:.17g} there, {first['ulps']:.3g} ULPs"
    )


def render(results, data: dict) -> str:
    from harness.commands.run_report import environment_lines
    from harness.report.text import optimizer_line

    cfg = results.cfg
    lines = [
        f"one row, two environments: {optimizer_line(cfg)}; {cfg.epochs} epochs, seed {cfg.seed}, {cfg.dtype}",
        *environment_lines(results),
        "",
    ]
    for name, row in data["rows"].items():
        lines += _row_lines(name, row, cfg.epochs)
    lines += ending.could_not_run_lines(data["could_not_run"])
    failed = [name for name, row in data["rows"].items() if not row["passed"]]
    lines.append("")
    lines.append(
        f"{len(failed)} of {len(data['rows'])} rows differ beyond rounding: {', '.join(failed)}"
        if failed
        else f"all {len(data['rows'])} rows agree across the environments (bit-identical or at rounding level)"
    )
    return "\n".join(lines)


def _row_lines(name: str, row: dict, epochs: int) -> list:
    traj, lock = row["trajectory"], row["lockstep"]
    if row["bit_identical"]:
        return [
            f"{row['row']} vs {name}: bit-identical: every epoch of the {epochs}"
            + (" and every phase of every step" if lock["run"] else " (no lockstep for this row)")
        ]
    lines = [f"{row['row']} vs {name}: {row['verdict']}"]
    if traj["bit_identical"]:
        lines.append("  whole run: bit-identical")
    else:
        lines.append(
            f"  whole run: first differs at {_where(traj['first_difference'])}; max|Δθ| "
            f"{traj['max_abs_param_diff']:.2e}, margin {traj['margin']:.3g} of the allowed "
            f"{traj['tolerance']:.2e}" + ("" if traj["passed"] else " (OVER)")
        )
    first = lock["first_difference"]
    if not lock["run"]:
        return lines + ["  same states (lockstep): not run for this row"]
    lines.append(
        "  same states (lockstep): "
        + (
            "every phase of every step bit-identical"
            if first is None
            else f"first differs at {_where(first)}; worst {lock['max_ulp']:.3g} ULPs at the scale of its terms "
            f"(allowed {lock['allowed_ulp']:g})"
            + (f", fails first in {lock['first_failing_phase']}" if lock["first_failing_phase"] else ": rounding level")
        )
    )
    return lines
