"""``python compare.py grads``: is a hand-derived gradient right, and of which loss? The
check itself is ``harness.gradcheck``."""

from __future__ import annotations

import argparse

from harness.commands import arguments, ending

DESCRIPTION = (
    "Check the hand-derived gradient (and jax.grad, torch autograd, central differences) against a "
    "50-digit mpmath oracle at the initial weights, along the training and at saturated points; "
    "Taylor-test it and say which loss it is the exact gradient of."
)
EPILOG = "exit status: 0 every source agrees (with --canary: every canary caught), 1 otherwise, 2 bad usage"
HAND_GRADIENTS = {
    "mse": ("mse", "numpy hand backprop of the MSE"),
    "article": ("half-sse", "the article's derivation, delta2 = (A2 − y)·σ'(Z2) with no 2/N"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    parser.add_argument(
        "--points",
        type=arguments.non_negative_int,
        default=4,
        help="points spread along the training trajectory, besides the initial weights and two "
        "saturated points (default %(default)s)",
    )
    parser.add_argument(
        "--hand",
        type=arguments.renamed("--hand", {"seed": "article"}),
        choices=tuple(HAND_GRADIENTS),
        default="mse",
        help="the hand gradient to check: mse (the numpy backend's) or article (the article's "
        "derivation; seed, its old name, is taken for one release) (default %(default)s)",
    )
    parser.add_argument(
        "--canary", action="store_true", help="check built-in wrong hand gradients instead: each must be caught"
    )
    arguments.add_output_options(parser, json="the report")


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.environment import environment
    from harness.gradcheck import check, report

    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=())
    ending.refuse_if_too_large(parser, "grads", cfg, 1, every=max(1, cfg.epochs // max(1, args.points)))
    if args.canary:
        result = check.run_canaries(cfg, args.points)
        print(report.render_canaries(result))
    else:
        convention, label = HAND_GRADIENTS[args.hand]
        result = check.run_check(cfg, args.points, check.hand_source(convention), label)
        ending.notice_skipped(result["skipped"].values())
        print(report.render_check(result))
    return ending.finish(parser, outputs, ending.Result(result), {"environment": environment()})
