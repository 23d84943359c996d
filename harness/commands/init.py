"""``python compare.py init``: the exact initial state every row starts from, for a
program in any language (the formats: ``reference.exchange``)."""

from __future__ import annotations

import argparse
import os

from harness.commands import arguments, ending
from harness.files.exchange import INIT_WRITERS

DESCRIPTION = (
    "Write the exact initial state every row starts from (W1, b1, W2, b2 with their shapes, the flat "
    "vector in the documented order, the XOR data and the config) for a program in any language."
)
EPILOG = (
    "formats: json (numbers that read back to the same float64), csv (section,name,row,col,value per line), "
    "npz (arrays W1, b1, W2, b2, flat, X, y, config). exit status: 0 written, 2 bad usage"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    arguments.add_adam_options(parser)
    parser.add_argument(
        "--format", choices=tuple(INIT_WRITERS), default=None, help="file format (default: from the --out suffix)"
    )
    parser.add_argument("--out", metavar="FILE", required=True, help="where to write it")


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.exchange import write_init

    cfg = arguments.config_from(args, parser)
    suffix = os.path.splitext(args.out)[1].lower().lstrip(".")
    fmt = args.format or (suffix if suffix in INIT_WRITERS else None)
    if fmt is None:
        parser.error("argument --format: give one (json, csv or npz) or an --out name ending in .json, .csv or .npz")
    path = ending.check_outputs(parser, args, files=("out",), folders=())["out"]
    try:
        write_init(path, cfg, fmt)
    except OSError as exc:
        return ending.usage_error(parser, f"cannot write {path}: {exc}")
    print(f"wrote the initial state for seed {cfg.seed}, hidden {cfg.hidden} ({fmt}) to {path}")
    return ending.EXIT_AGREE
