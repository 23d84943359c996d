"""Command line: ``python compare.py [SUBCOMMAND] [options]``.

With no subcommand it is the default run: every row trained from the same initial
weights, compared against the first row. Subcommands are entries of ``COMMANDS``;
each takes the remaining arguments and returns the exit status.

Exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage or unwritable output.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

from harness.files import OutputError, check_writable_dir, check_writable_file
from harness.rows import DEFAULT_ROWS, ROWS
from reference.spec import DTYPES, Config

EXIT_AGREE, EXIT_DISAGREE, EXIT_USAGE = 0, 1, 2
DEFAULTS = Config()


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def seed_int(text: str) -> int:
    value = _whole_number(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def row_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected at least one row name")
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown row {unknown[0]!r} (choose from {', '.join(ROWS)})"
        )
    return list(dict.fromkeys(names))


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """Options that define the training problem; later subcommands share them."""
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs, help="training epochs (default %(default)s)")
    parser.add_argument("--seed", type=seed_int, default=DEFAULTS.seed, help="initial-weight seed (default %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=DEFAULTS.lr, help="Adam learning rate (default %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=DEFAULTS.hidden, help="hidden units (default %(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default=DEFAULTS.dtype, help="floating-point type of every row (default %(default)s)")


def config_from(args) -> Config:
    return Config(hidden=args.hidden, lr=args.lr, epochs=args.epochs, seed=args.seed, dtype=args.dtype)


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, len(DEFAULT_ROWS)))


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Where and how rows run; later subcommands share them."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of the JAX and torch rows; numpy always runs on the cpu (default %(default)s)")
    parser.add_argument("--jobs", type=positive_int, default=default_jobs(),
                        help="rows run in this many processes at once (default: the cpu count, here %(default)s)")


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Train the 2-H-1 sigmoid XOR network with Adam in every row (numpy, jax, torch, "
        "torch.optim, optax) from the same initial weights and report whether their trajectories agree.",
        epilog="subcommands: " + ", ".join(f"compare.py {c} --help" for c in COMMANDS)
        + ". exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage",
    )
    add_problem_options(parser)
    add_execution_options(parser)
    parser.add_argument(
        "--backends", type=row_list, default=None, metavar="ROWS",
        help=f"comma-separated rows to run, the first is the reference (default: {','.join(DEFAULT_ROWS)}, "
        "skipping rows whose framework is not installed)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--save", metavar="FILE.npz", help="write every row's loss and parameter trajectory")
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    return parser


def select_rows(requested, parser, device: str = "cpu") -> tuple[list[str], dict]:
    """Rows to run and rows skipped (name -> reason). A requested row that cannot run
    is a usage error; a default row whose framework is missing is skipped. A device
    that is not here is a usage error."""
    from harness.rows import device_problem, unavailable_reason

    names = requested or list(DEFAULT_ROWS)
    reasons = {n: unavailable_reason(n) for n in names}
    missing = {n: r for n, r in reasons.items() if r}
    if requested and missing:
        parser.error(next(iter(missing.values())))
    names = [n for n in names if not missing.get(n)]
    if not names:
        parser.error("no row can run: none of the frameworks is installed")
    for name in names:
        problem = device_problem(name, device)
        if problem:
            parser.error(problem)
    return names, missing


def train_rows(names, cfg, args, skipped: dict, every: int = 1) -> dict | None:
    """Run the rows, one progress line each on stderr; None when a row named in
    --backends turned out not to import (the error is printed)."""
    from harness.rows import run_rows

    finished = {}
    for name, result in run_rows(names, cfg, every=every, device=args.device, jobs=args.jobs):
        if isinstance(result, str):
            if args.backends:
                print(f"compare.py: error: {result}", file=sys.stderr)
                return None
            skipped[name] = result
            print(f"notice: skipping: {result}", file=sys.stderr)
            continue
        finished[name] = result
        print(f"  {name:<12} trained in {result.seconds:6.2f} s", file=sys.stderr, flush=True)
    return {n: finished[n] for n in names if n in finished}


def check_outputs(parser, args, files=("json", "save"), folders=("plot",)) -> dict:
    """Every output path checked before any work; returns them as Paths (or None)."""
    try:
        paths = {k: check_writable_file(getattr(args, k)) if getattr(args, k) else None for k in files}
        paths.update({k: check_writable_dir(getattr(args, k)) if getattr(args, k) else None for k in folders})
    except OutputError as exc:
        parser.error(str(exc))
    return paths


def write_outputs(outputs: dict, json_data=None, npz_arrays=None, plots=None) -> int | None:
    """Write what was asked for: ``json_data`` (a zero-argument function giving the dict)
    to --json, ``npz_arrays`` to --save, ``plots(folder)`` into --plot. A write that
    fails is a one-line error and the usage exit status; None when all went well."""
    from harness.files import write_json, write_npz

    try:
        if outputs.get("json") and json_data is not None:
            write_json(outputs["json"], json_data())
        if outputs.get("save") and npz_arrays is not None:
            write_npz(outputs["save"], npz_arrays())
        if outputs.get("plot") and plots is not None:
            plots(outputs["plot"])
    except OSError as exc:
        print(f"compare.py: error: cannot write output: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return None


def default_run(argv) -> int:
    parser = run_parser()
    args = parser.parse_args(argv)
    cfg = config_from(args)
    outputs = check_outputs(parser, args)
    names, skipped = select_rows(args.backends, parser, args.device)
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)

    from harness.agreement import compare_all
    from harness.environment import environment
    from harness.report import render, results_dict

    trajectories = train_rows(names, cfg, args, skipped)
    if trajectories is None:
        return EXIT_USAGE
    agreements = compare_all(trajectories, cfg.dtype)
    print(render(cfg, trajectories, agreements))

    from harness.plots import write_all

    failed = write_outputs(
        outputs,
        json_data=lambda: results_dict(cfg, trajectories, agreements, skipped, environment(args.device)),
        npz_arrays=lambda: {f"{name}/{key}": getattr(traj, key)
                            for name, traj in trajectories.items() for key in ("loss", "params")},
        plots=lambda folder: write_all(trajectories, cfg.hidden, folder),
    )
    if failed is not None:
        return failed
    return EXIT_AGREE if all(a.passed for a in agreements) else EXIT_DISAGREE


def bench(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py bench",
        description="Time every row (µs per epoch: median, min, max over --repeat runs, one row at a time), "
        "with compile and import times, against the seed-style numpy loop and a plain C loop (the floor).",
    )
    add_problem_options(parser)
    parser.add_argument("--repeat", type=positive_int, default=5, help="runs per row (default %(default)s)")
    parser.add_argument("--backends", type=row_list, default=None, metavar="ROWS", help="rows to time (default: all installed)")
    parser.add_argument("--no-wall", action="store_true",
                        help="skip timing whole runs of python compare.py and of the seed-style script")
    parser.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = parser.parse_args(argv)
    cfg = config_from(args)
    outputs = check_outputs(parser, args, files=("json",), folders=())
    names, skipped = select_rows(args.backends, parser)
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)

    from harness.bench import render_bench, run_bench
    from harness.environment import environment

    progress = (lambda text: print(f"  {text} ...", file=sys.stderr, flush=True))
    result = run_bench(cfg, names, args.repeat, wall=not args.no_wall, progress=progress)
    result["environment"] = environment()
    print(render_bench(result))
    return write_outputs(outputs, json_data=lambda: result) or EXIT_AGREE


def sweep(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py sweep",
        description="Train every row over many initial-weight seeds at once and report, per pair, how many "
        "seeds agree, the distribution of gaps, the failing seeds, and per row how often XOR is solved.",
        epilog="exit status: 0 every seed agrees in every pair, 1 some seed disagrees, 2 bad usage",
    )
    add_problem_options(parser)
    add_execution_options(parser)
    parser.add_argument("--seeds", type=positive_int, default=100, help="how many seeds (default %(default)s)")
    parser.add_argument("--first-seed", type=seed_int, default=0, help="seeds run from this one up (default %(default)s)")
    parser.add_argument("--every", type=positive_int, default=None,
                        help="compare at every K-th epoch and the last (default: epochs/200)")
    parser.add_argument("--backends", type=row_list, default=None, metavar="ROWS",
                        help="rows to run, the first is the reference (default: all installed)")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--plot", metavar="DIR", help="write the gap histogram and final-loss distributions")
    args = parser.parse_args(argv)
    if args.first_seed + args.seeds > 2**32:
        parser.error("argument --seeds: seeds past 2**32 - 1 do not exist")
    cfg = config_from(args)
    outputs = check_outputs(parser, args, files=("json",), folders=("plot",))
    names, skipped = select_rows(args.backends, parser, args.device)
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)

    import numpy as np

    from harness.environment import environment
    from harness.progress import Progress
    from harness.rows import run_rows
    from harness.sweep import batch_params, default_every, peak_memory_mib, plot_sweep, render_sweep, summarize

    started = time.perf_counter()
    every = args.every or default_every(cfg.epochs)
    seeds = np.arange(args.first_seed, args.first_seed + args.seeds)
    params0 = batch_params(seeds, cfg.hidden, cfg.dtype)
    progress = Progress(len(names), "rows trained")
    trajectories = {}
    for name, result in run_rows(names, cfg, params0, every=every, device=args.device, jobs=args.jobs):
        if isinstance(result, str):
            progress.close()
            if args.backends:
                print(f"compare.py: error: {result}", file=sys.stderr)
                return EXIT_USAGE
            print(f"notice: skipping: {result}", file=sys.stderr)
            continue
        trajectories[name] = result
        progress.advance(name)
    progress.close()
    trajectories = {n: trajectories[n] for n in names if n in trajectories}
    summary = summarize(cfg, seeds, every, trajectories)
    summary["seconds"] = time.perf_counter() - started
    summary["peak_memory_mib"] = peak_memory_mib()
    print(render_sweep(summary))
    failed = write_outputs(
        outputs,
        json_data=lambda: {k: v for k, v in summary.items() if not k.startswith("_")}
        | {"environment": environment(args.device), "skipped": skipped},
        plots=lambda folder: plot_sweep(summary, trajectories, folder),
    )
    if failed is not None:
        return failed
    return EXIT_AGREE if summary["passed"] else EXIT_DISAGREE


HAND_GRADIENTS = {
    "mse": ("mse", "numpy hand backprop of the MSE"),
    "seed": ("half-sse", "the seed article's derivation, delta2 = (A2 − y)·σ'(Z2) with no 2/N"),
}


def grads(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py grads",
        description="Check the hand-derived gradient (and jax.grad, torch autograd, central differences) "
        "against a 50-digit mpmath oracle at the initial weights, along the training and at saturated points; "
        "Taylor-test it and say which loss it is the exact gradient of.",
        epilog="exit status: 0 every source agrees (with --canary: every canary caught), 1 otherwise, 2 bad usage",
    )
    add_problem_options(parser)
    parser.add_argument("--points", type=non_negative_int, default=4,
                        help="points spread along the training trajectory, besides the initial weights and two "
                        "saturated points (default %(default)s)")
    parser.add_argument("--hand", choices=tuple(HAND_GRADIENTS), default="mse",
                        help="the hand gradient to check: mse (the numpy backend's) or seed (the article's "
                        "derivation) (default %(default)s)")
    parser.add_argument("--canary", action="store_true",
                        help="check built-in wrong hand gradients instead: each must be caught")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    args = parser.parse_args(argv)
    cfg = config_from(args)
    outputs = check_outputs(parser, args, files=("json",), folders=())

    from harness import gradcheck
    from harness.environment import environment

    if args.canary:
        result = gradcheck.run_canaries(cfg, args.points)
        print(gradcheck.render_canaries(result))
    else:
        convention, label = HAND_GRADIENTS[args.hand]
        result = gradcheck.run_check(cfg, args.points, gradcheck.hand_source(convention), label)
        for reason in result["skipped"].values():
            print(f"notice: skipping: {reason}", file=sys.stderr)
        print(gradcheck.render_check(result))
    failed = write_outputs(outputs, json_data=lambda: result | {"environment": environment()})
    if failed is not None:
        return failed
    return EXIT_AGREE if result["passed"] else EXIT_DISAGREE


# subcommand name -> function(argv) -> exit status; later issues add theirs here
COMMANDS = {"bench": bench, "sweep": sweep, "grads": grads}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return default_run(argv)
