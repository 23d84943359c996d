"""Command line: ``python compare.py [SUBCOMMAND] [options]``.

With no subcommand it is the default run: every row trained from the same initial
weights, compared against the first row. Subcommands are entries of ``COMMANDS``;
each takes the remaining arguments and returns the exit status.

Exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage or unwritable output.
"""
from __future__ import annotations

import argparse
import math
import sys

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


def run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="compare.py",
        description="Train the 2-H-1 sigmoid XOR network with Adam in every row (numpy, jax, torch, "
        "torch.optim, optax) from the same initial weights and report whether their trajectories agree.",
        epilog="exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage",
    )
    add_problem_options(parser)
    parser.add_argument(
        "--backends", type=row_list, default=None, metavar="ROWS",
        help=f"comma-separated rows to run, the first is the reference (default: {','.join(DEFAULT_ROWS)}, "
        "skipping rows whose framework is not installed)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--save", metavar="FILE.npz", help="write every row's loss and parameter trajectory")
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    return parser


def select_rows(requested, parser) -> tuple[list[str], dict]:
    """Rows to run and rows skipped (name -> reason). A requested row that cannot run
    is a usage error; a default row whose framework is missing is skipped."""
    from harness.rows import unavailable_reason

    names = requested or list(DEFAULT_ROWS)
    reasons = {n: unavailable_reason(n) for n in names}
    missing = {n: r for n, r in reasons.items() if r}
    if requested and missing:
        parser.error(next(iter(missing.values())))
    return [n for n in names if not missing.get(n)], missing


def default_run(argv) -> int:
    parser = run_parser()
    args = parser.parse_args(argv)
    cfg = config_from(args)
    try:
        json_path = check_writable_file(args.json) if args.json else None
        save_path = check_writable_file(args.save) if args.save else None
        plot_dir = check_writable_dir(args.plot) if args.plot else None
    except OutputError as exc:
        parser.error(str(exc))
    names, skipped = select_rows(args.backends, parser)
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)
    if not names:
        parser.error("no row can run: none of the frameworks is installed")

    from harness.agreement import compare_all
    from harness.environment import environment
    from harness.report import render, results_dict
    from harness.rows import run_row
    from reference.spec import initial_params

    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    trajectories = {}
    for name in names:
        trajectories[name] = run_row(name, cfg, params0)
        print(f"  {name:<12} trained in {trajectories[name].seconds:6.2f} s", file=sys.stderr, flush=True)
    agreements = compare_all(trajectories, cfg.dtype)
    print(render(cfg, trajectories, agreements))

    try:
        if json_path:
            from harness.files import write_json

            write_json(json_path, results_dict(cfg, trajectories, agreements, skipped, environment()))
        if save_path:
            from harness.files import write_npz

            arrays = {}
            for name, traj in trajectories.items():
                arrays[f"{name}/loss"] = traj.loss
                arrays[f"{name}/params"] = traj.params
            write_npz(save_path, arrays)
        if plot_dir:
            from harness.plots import write_all

            write_all(trajectories, cfg.hidden, plot_dir)
    except OSError as exc:
        print(f"compare.py: error: cannot write output: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_AGREE if all(a.passed for a in agreements) else EXIT_DISAGREE


COMMANDS = {}  # subcommand name -> function(argv) -> exit status; later issues add here


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return default_run(argv)
