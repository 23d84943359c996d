"""``python compare.py explain NAME=FILE`` (or ``--backend-file FILE.py``): does one
implementation compute the spec, and if not, which convention or hyperparameters does it
compute? The recognition is ``harness.engine.explain``; this runs it for one row against
the numpy row, with the default run's checks."""

from __future__ import annotations

import argparse

from harness.commands import arguments, ending, row_choice
from harness.engine.explain import TRAJECTORY_EPOCHS
from harness.report.text import explanation_sentence, fmt, optimizer_line

DESCRIPTION = (
    "Compare one implementation (a trajectory file another program wrote, as --external, or a plug-in "
    "backend, as --backend-file) with the spec, and when they part, name the convention it computes "
    "(the catalogue of variants) or fit the hyperparameters it really used."
)
EPILOG = (
    "exit status: 0 it agrees with the spec, 1 it differs (explained or not), 2 bad usage, 3 the plug-in could not run"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "trajectory",
        nargs="?",
        metavar="NAME=FILE",
        help="a trajectory file another program wrote, started from compare.py init (CSV or npz, as --external)",
    )
    parser.add_argument(
        "--backend-file", metavar="FILE.py", help="a plug-in backend module instead (as in the default run)"
    )
    arguments.add_problem_options(parser)
    arguments.add_adam_options(parser)
    parser.add_argument(
        "--match-epochs",
        type=arguments.positive_int,
        default=TRAJECTORY_EPOCHS,
        help="a trajectory is recognised from its first this many epochs (default %(default)s)",
    )
    arguments.add_jobs_option(parser)
    arguments.add_output_options(parser, json="the comparison and its explanation")


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.engine.pipeline import run_default
    from harness.files.environment import environment

    if (args.trajectory is None) == (args.backend_file is None):
        parser.error("give one implementation: NAME=FILE or --backend-file FILE.py")
    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=())
    names, _ = row_choice.select_rows(["numpy"], parser, "cpu", cfg)
    names += row_choice.load_plugins([args.backend_file] if args.backend_file else None, names, cfg, "cpu", parser)
    externals = row_choice.load_externals(
        [args.trajectory] if args.trajectory else None, names, cfg, parser, "NAME=FILE"
    )
    ending.refuse_if_too_large(parser, "default", cfg, len(names) + len(externals))
    results = run_default(cfg, names, "cpu", args.jobs, {}, externals=externals, match_epochs=args.match_epochs)
    if results.failed:  # a plug-in that fails as it trains or steps: nothing to explain
        print("\n".join(ending.could_not_run_lines(results.failed)))
        return ending.EXIT_COULD_NOT_RUN
    (pair,) = results.pairs
    result = ending.Result(
        {
            "config": cfg.to_dict(),
            "row": pair.b,
            "pair": pair.to_json(),
            "explanation": pair.explanation,
            "passed": pair.passed,
        }
    )
    print(render_explain(result.data, cfg))
    return ending.finish(parser, outputs, result, {"environment": environment()})


def render_explain(data: dict, cfg) -> str:
    pair = data["pair"]
    lock = (
        f"lockstep worst {pair['lockstep_max_ulp']:.3g} ULPs"
        if "lockstep_max_ulp" in pair
        else "no lockstep (a trajectory has no state to step from)"
    )
    first = pair["first_epoch_over_tolerance"]
    lines = [
        f"explain: {data['row']} against the spec (the numpy row), {optimizer_line(cfg)}; {cfg.epochs} epochs, "
        f"seed {cfg.seed}, {cfg.dtype}",
        f"free-running: max|Δθ| {fmt(pair['max_abs_param_diff'])}, max|Δloss| {fmt(pair['max_abs_loss_diff'])}, "
        f"first epoch over the tolerance {'none' if first is None else first}, margin "
        f"{fmt(pair['margin'], '.3g')}; {lock}",
        "",
    ]
    if pair["passed"]:
        return "\n".join(lines + [f"{data['row']} computes the spec: it agrees with the numpy row"])
    return "\n".join(lines + [explanation_sentence(data["explanation"])])
