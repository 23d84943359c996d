"""The default run (``python compare.py`` with no subcommand): train every row from the
same initial weights, measure the problem's own sensitivity, step every row in lockstep
from numpy's states, compare, and diagnose. Its report is ``harness.commands.run_report``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.commands import arguments, ending, row_choice
from harness.engine.faults import FAULTS
from harness.engine.pipeline import Results, run_default
from harness.engine.rows import DEFAULT_ROWS, ROWS
from harness.report.progress import Board

DESCRIPTION = (
    "Train the 2-H-1 sigmoid XOR network with Adam (or --optimizer) in every row (numpy, jax, torch, "
    "torch.optim, optax) from the same initial weights and report whether their trajectories agree."
)
EPILOG = (
    "exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage, 3 a row could not run (its worker died, "
    "its program failed or hung) and every other row agrees, 130 interrupted, 143 terminated"
)


REPLAY_DIR = "xorcheck-replays"  # never loose in the current folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    arguments.add_adam_options(parser)
    arguments.add_execution_options(parser)
    arguments.add_rows_option(
        parser,
        f"comma-separated rows to run, the first is the reference (default for every optimizer and Adam's paper "
        f"form: {','.join(DEFAULT_ROWS)}; for epshat: numpy,jax,torch,keras; for seed: numpy,jax,torch; rows whose "
        "framework is not installed are skipped)",
    )
    arguments.add_output_options(
        parser,
        json="the results",
        save="write every row's loss and parameter trajectory",
        plot="write PNG figures into DIR",
        report="the verdict, the tables and the figures",
    )
    parser.add_argument(
        "--inject",
        action="append",
        metavar="ROW:FAULT",
        help="plant a fault in one row (numpy, jax or torch) to see the harness catch it; faults: "
        + ", ".join(FAULTS)
        + " (repeatable, one per row; each fault belongs to the "
        "optimizers it names, Adam's to adam, the two gradient faults to every optimizer)",
    )
    parser.add_argument(
        "--backend-file",
        action="append",
        metavar="FILE.py",
        help="add a row from your own backend module (the interface in the docs; an example in "
        "examples/plugin_backend.py), run like the built-in rows, lockstep included (repeatable)",
    )
    parser.add_argument(
        "--external",
        action="append",
        metavar="NAME=FILE",
        help="add a row read from a trajectory file another program wrote (CSV: one line per epoch, "
        "the loss then the 4H+1 parameters W1, b1, W2, b2 row by row; or npz with loss and params); "
        "start it from compare.py init (repeatable)",
    )
    arguments.add_env_option(parser)
    parser.add_argument(
        "--replay-dir",
        default=REPLAY_DIR,
        metavar="DIR",
        help="the folder a failing pair's replay file goes into, made if missing (default: %(default)s, "
        "under the current folder)",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.commands import run_page, run_report
    from harness.files.environment import environment

    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, folders=("plot", "replay_dir"))
    names, skipped = row_choice.select_rows(args.backends, parser, args.device, cfg)
    names += row_choice.load_plugins(args.backend_file, names, cfg, args.device, parser)
    twins, environments, not_there = row_choice.load_environments(args.env, names, parser)
    names += twins
    faults = row_choice.parse_faults(args.inject, names, cfg, parser)
    externals = row_choice.load_externals(args.external, names, cfg, parser)
    ending.refuse_if_too_large(parser, "default", cfg, len(names) + len(externals))
    ending.notice_skipped([*skipped.values(), *not_there.values()])
    if outputs["plot"] or outputs["report"]:
        preload_matplotlib()
    with Board() as board:
        results = run_default(cfg, names, args.device, args.jobs, faults, progress=board, externals=externals)
        board.verdict(run_page.verdict_text(results))
    if args.backends and results.skipped:
        return ending.usage_error(parser, next(iter(results.skipped.values())))
    results.environment = environment(args.device)
    results.environments = environments
    results.replay_files = write_replays(results, outputs["replay_dir"], parser)
    with results.timed("report"):
        print(run_report.render(results))
    return ending.finish(
        parser,
        outputs,
        Reported(results),
        plots=lambda folder: results.timed_call("plots", run_report.write_plots, results, folder),
        page=lambda: results.timed_call("html report", run_page.report, results),
        npz=lambda: {
            f"{name}/{key}": getattr(traj, key)
            for name, traj in results.trajectories.items()
            for key in ("loss", "params")
        },
    )


@dataclass
class Reported:
    """The default run as a command's result: its JSON is the report's, read when it is
    written (after the plots, whose time it reports)."""

    results: Results

    @property
    def passed(self) -> bool:
        return self.results.passed

    @property
    def could_not_run(self) -> dict:
        return self.results.failed

    def to_json(self) -> dict:
        from harness.commands.run_report import results_dict

        return results_dict(self.results)


def preload_matplotlib() -> None:
    """Import matplotlib while the rows train, in a thread of this process (which only
    waits on its workers then), so that the figures are drawn here at once afterwards: a
    worker pool for them spent about 1 s starting and importing it (docs/speed.md)."""
    import threading

    from harness.report.plots import pyplot

    threading.Thread(target=pyplot, name="import matplotlib", daemon=True).start()


def write_replays(results: Results, folder, parser: argparse.ArgumentParser) -> dict:
    """One replay file per failing pair whose divergence has a numpy state to start from."""
    from harness.files.replay import write_replay

    reference = results.trajectories.get("numpy")
    if reference is None or reference.states is None or folder is None:
        return {}
    paths = {}
    for p in results.pairs:
        div = p.first_divergence
        if not div or div["epoch"] < 1 or p.explained or ROWS[p.b].twin:
            continue  # (a replay runs in one environment)
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / f"replay_{p.b}_epoch{div['epoch']}.npz"
        try:
            write_replay(
                path,
                results.cfg,
                reference,
                div["epoch"],
                (p.a, p.b),
                div["phase"],
                results.faults,
                results.environment,
            )
        except OSError as exc:
            print(f"{parser.prog}: warning: cannot write replay file {path}: {exc}", file=sys.stderr)
            continue
        paths[p.b] = path
    return paths
