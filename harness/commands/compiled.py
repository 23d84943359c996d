"""``python compare.py compiled``: every compiled row (torch.compile and its backend
ladder and Inductor knobs, the compiled and fused torch.optim optimizers, JAX under other
XLA flags) against the eager row it compiles and against numpy: the verdict, where the
steps first differ, the catalogued variant that reproduces the compiled bits there, and
the compiler decision whose removal makes the difference disappear. The engine is
``harness.engine.compiled``; docs/compiled.md is its table from one real run."""

from __future__ import annotations

import argparse

from harness.commands import arguments, ending, row_choice
from harness.engine.rows import COMPILED_ROWS, ROWS

DESCRIPTION = (
    "Run each compiled row (torch.compile, its backend ladder and Inductor knobs, the compiled and fused "
    "torch.optim optimizers, JAX under other XLA flags) beside the eager row it compiles and numpy; per row "
    "the verdict (bit-identical, rounding level, computation changed), the first differing epoch, phase, "
    "tensor and element, the catalogued compiler variant that reproduces it and the compiler decision that "
    "makes it."
)
EPILOG = (
    "exit status: 0 every compiled row is bit-identical to its eager row or at rounding level, 1 some row is "
    "not, 2 bad usage, 3 a row could not run (its compile failed). Inductor's cache: $TORCHINDUCTOR_CACHE_DIR, "
    "else ~/.cache/xor-crosscheck/inductor (delete it to compile afresh)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    arguments.add_adam_options(parser)
    arguments.add_rows_option(
        parser, f"compiled rows to run (default: every one that implements the optimizer and can run here: "
        f"{', '.join(COMPILED_ROWS)})"
    )  # fmt: skip
    parser.add_argument(
        "--backend-file",
        action="append",
        metavar="FILE.py",
        help="add a plug-in backend that stands for a compiled step of a built-in row (its COMPILES names the "
        "row): judged, recognised against the catalogue and bisected like the compiled rows (repeatable)",
    )
    parser.add_argument(
        "--no-bisect", action="store_true", help="name the variant only; do not rerun each row per compiler decision"
    )
    arguments.add_jobs_option(parser)
    arguments.add_output_options(parser, json="the results", report="the report, its figures and its JSON's tables")


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.engine.compiled import investigate
    from harness.engine.pipeline import run_default
    from harness.report.progress import Board

    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=())
    plugins = _plugins(args.backend_file, parser, cfg)
    names, skipped = _rows(args.backends, parser, cfg, bool(plugins))
    names += plugins
    eager = [ROWS[n].runs for n in names]
    order = ["numpy", *dict.fromkeys(e for e in eager if e != "numpy"), *names]
    ending.refuse_if_too_large(parser, "default", cfg, len(order))
    ending.notice_skipped(skipped.values())
    with Board() as board:
        results = run_default(cfg, order, "cpu", args.jobs, {}, progress=board)
        findings = {}
        for name in (n for n in names if n in results.trajectories and ROWS[n].runs in results.trajectories):
            twin = _pair(results, ROWS[name].runs, name)
            board.add(("bisect", name), f"{name}: variant, decision")
            first = twin.twin.first_difference if twin.twin else None
            findings[name] = investigate(name, cfg, first, results.trajectories["numpy"], not args.no_bisect)
            board.finish(("bisect", name), "found")
    data = summary(results, names, findings)
    text = render(results, data)
    print(text)
    return ending.finish(parser, outputs, ending.Result(data), text=text)


def _plugins(paths, parser: argparse.ArgumentParser, cfg) -> list:
    """--backend-file values registered as compiled rows; a bad one is a usage error."""
    import backends
    from harness.engine.rows import register_compiled_plugin

    names = []
    for path in paths or []:
        try:
            row = register_compiled_plugin(path)
        except backends.PluginError as exc:
            parser.error(f"argument --backend-file: {exc}")
        if row.name in names:
            parser.error(f"argument --backend-file: {path}: NAME {row.name!r} is taken by another row")
        if not row.implements(cfg):
            parser.error(f"argument --backend-file: {path}: its UPDATES have no {cfg.optimizer}")
        names.append(row.name)
    return names


def _rows(requested, parser: argparse.ArgumentParser, cfg, plugins: bool = False) -> tuple[list, dict]:
    """The compiled rows to run: the requested ones (each must be one), else every
    compiled row of the optimizer that can run here (the others skipped with why);
    none by default beside plug-ins."""
    if plugins and not requested:
        return [], {}
    if requested:
        wrong = [n for n in requested if ROWS[n].compiled is None]
        if wrong:
            choices = ", ".join(COMPILED_ROWS)
            parser.error(f"argument --backends: {wrong[0]} is not a compiled row (choose from {choices})")
        names, skipped = row_choice.select_rows(list(requested), parser, "cpu", cfg)
        return names, skipped
    chosen = [n for n in COMPILED_ROWS if ROWS[n].implements(cfg)]
    names, skipped = row_choice.requested_or_default(None, chosen)
    if not names:
        parser.error("no compiled row can run here: " + "; ".join(skipped.values()))
    return names, skipped


def _pair(results, a: str, b: str):
    return next(p for p in results.pairs if (p.a, p.b) == (a, b))


def summary(results, names: list, findings: dict) -> dict:
    """The JSON: per compiled row its two verdicts, timings and what the investigation showed."""
    from harness.commands.versions import first_trajectory_difference, verdict

    rows = {}
    for name in (n for n in names if n in findings):
        eager_name = ROWS[name].runs
        twin, against_numpy = _pair(results, eager_name, name), _pair(results, "numpy", name)
        traj, eager = results.trajectories[name], results.trajectories[eager_name]
        rows[name] = {
            "compiles": eager_name,
            "compiler": ROWS[name].environment,
            "verdict": verdict(twin),
            "passed": twin.accepted,
            "against_numpy": "agrees" if against_numpy.accepted else "disagrees",
            "max_abs_param_diff": twin.agreement.max_abs_param_diff,
            "lockstep_max_ulp": twin.lockstep_max_ulp,
            "trajectory_first_difference": first_trajectory_difference(eager, traj),
            "compile_seconds": traj.compile_seconds,
            "us_per_epoch": traj.us_per_epoch,
            "eager_us_per_epoch": eager.us_per_epoch,
        } | findings[name].to_json()
    return {
        "config": results.cfg.to_dict(),
        "rows": rows,
        "skipped": dict(results.skipped),
        "could_not_run": dict(results.failed),
        "passed": all(r["passed"] for r in rows.values()),
    }


def _where(first: dict) -> str:
    from harness.commands.versions import _where as where

    return where(first).replace(" here, ", " eager, ").replace(" there, ", " compiled, ")


def _row_lines(name: str, row: dict) -> list:
    timing = (
        f"compile {row['compile_seconds']:.1f} s, " if row["compile_seconds"] is not None else ""
    ) + f"{row['us_per_epoch']:.0f} µs/epoch (eager {row['eager_us_per_epoch']:.0f})"
    lines = [f"{name} ({row['compiler']}) vs {row['compiles']}: {row['verdict']}; vs numpy: {row['against_numpy']}; "
             + timing]  # fmt: skip
    first = row["first_difference"]
    if first is None:
        whole = row["trajectory_first_difference"]
        lines.append(
            "  every phase of every step bit-identical"
            + (f"; the whole run first differs at {_where(whole)}" if whole else "; so is the whole run")
        )
        return lines
    lines.append(f"  steps first differ at {_where(first)}" + (f" ({first['note']})" if first.get("note") else ""))
    if row["failed"]:
        return lines + [f"  not explained: {row['failed']}"]
    if row["explained_phase"] is None:
        return lines
    recognised = row["recognised"]
    tried = ", ".join(f"{v} {d['max_ulps']:.2g}" for v, d in row["variants"].items() if not d["reproduces"])
    lines.append(
        "  variant: "
        + (", ".join(recognised) if recognised else "none of the catalogue reproduces it")
        + (f" (the others, ULPs from the compiled bits: {tried})" if tried else "")
    )
    if row["whole_step"]:
        lines.append(f"  the whole compiled step (every phase, same bits): {', '.join(row['whole_step'])}")
    if row["bisection"]:
        singles = [b for b in row["bisection"] if " + " not in b["removed"]]
        paired = [b for b in row["bisection"] if " + " in b["removed"]]
        steps = "; ".join(f"{b['removed']}: {'gone' if b['gone'] else 'stays'}" for b in singles)
        if paired:
            gone = [b["removed"] for b in paired if b["gone"]]
            steps += f"; of {len(paired)} pairs, gone with: " + (" | ".join(gone) if gone else "none")
        lines.append(f"  deciding: {row['deciding'] or 'none of these (each removal leaves it)'} [{steps}]")
    return lines


def render(results, data: dict) -> str:
    from harness.report.text import optimizer_line

    cfg = results.cfg
    lines = [f"compiled rows against their eager rows: {optimizer_line(cfg)}; {cfg.epochs} epochs, seed {cfg.seed}, "
             f"{cfg.dtype}", ""]  # fmt: skip
    for name, row in data["rows"].items():
        lines += _row_lines(name, row)
    lines += ending.could_not_run_lines(data["could_not_run"])
    failed = [name for name, row in data["rows"].items() if not row["passed"]]
    lines += [
        "",
        f"{len(failed)} of {len(data['rows'])} compiled rows change the computation: {', '.join(failed)}"
        if failed
        else f"all {len(data['rows'])} compiled rows are bit-identical to their eager rows or at rounding level",
    ]
    return "\n".join(lines)
