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

import numpy as np

from harness.faults import FAULTS
from harness.files import OutputError, check_writable_dir, check_writable_file
from harness.rows import DEFAULT_ROWS, ROWS
from reference.optimizers import OPTIMIZERS
from reference.spec import ADAM_FORMS, DTYPES, GRAD_CONVENTIONS, Config

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


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
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
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="learning rate (default: the optimizer's, 0.001 for Adam)")
    parser.add_argument("--hidden", type=positive_int, default=DEFAULTS.hidden, help="hidden units (default %(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default=DEFAULTS.dtype, help="floating-point type of every row (default %(default)s)")


RECIPES = {"seed": {"adam": "seed", "grad": "half-sse"}}  # lr, epochs, init: the defaults are the article's


def _defaults_text(hyper: str) -> str:
    users = {name: o.defaults[hyper] for name, o in OPTIMIZERS.items() if hyper in o.defaults}
    values = {}
    for name, value in users.items():
        values.setdefault(value, []).append(name)
    return "; ".join(f"{'/'.join(names)} {value:g}" for value, names in values.items())


def add_adam_options(parser: argparse.ArgumentParser) -> None:
    """Which optimizer, its hyperparameters, which Adam form and which gradient; the
    default run and the sweep take them."""
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam",
                        help="the optimizer every row steps with (default %(default)s; equations and library "
                        "mapping in the README). lr defaults: " + _defaults_text("lr"))
    hyper = parser.add_argument_group("optimizer hyperparameters (each only for the optimizers that use it; "
                                      "defaults are torch.optim's, momentum's 0.9 aside)")
    hyper.add_argument("--momentum", type=finite_float, default=None,
                       help="μ in [0, 1) for momentum and nesterov (default 0.9)")
    hyper.add_argument("--rho", type=finite_float, default=None,
                       help="decay ρ in [0, 1) of the squared-gradient average (" + _defaults_text("rho") + ")")
    hyper.add_argument("--beta1", type=finite_float, default=None, help="β1 in [0, 1) (adam/adamw/amsgrad 0.9)")
    hyper.add_argument("--beta2", type=finite_float, default=None, help="β2 in [0, 1) (adam/adamw/amsgrad 0.999)")
    hyper.add_argument("--eps", type=finite_float, default=None, help="ε >= 0 (" + _defaults_text("eps") + ")")
    hyper.add_argument("--weight-decay", type=finite_float, default=None,
                       help="decoupled weight decay λ >= 0 for adamw (default 0.01)")
    hyper.add_argument("--initial-accumulator", type=finite_float, default=None,
                       help="adagrad's starting sum of squares a0 >= 0 (default 0, torch's; optax's default is 0.1)")
    parser.add_argument("--adam", choices=ADAM_FORMS, default=None,
                        help="Adam form: paper (Kingma & Ba, as torch.optim and optax; default), epshat (ε̂ added "
                        "to √v, as Keras 3, TensorFlow and the ゼロから作る textbook), seed (the article's constant "
                        "bias correction)")
    parser.add_argument("--grad", choices=GRAD_CONVENTIONS, default=None,
                        help="gradient of: mse (the logged loss; default) or half-sse (½·Σ(ŷ − y)², the article's "
                        "derivation); the logged loss is the MSE either way")
    parser.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                        help="seed: the whole article (seed-form Adam, half-sse gradient, lr 0.001, 20000 epochs, "
                        "np.random.seed(seed) then randn)")


HYPER_OPTIONS = ("momentum", "rho", "beta1", "beta2", "eps", "weight_decay", "initial_accumulator")


def config_from(args, parser=None) -> Config:
    adam, grad = getattr(args, "adam", None), getattr(args, "grad", None)
    optimizer = getattr(args, "optimizer", "adam")
    recipe = RECIPES.get(getattr(args, "recipe", None), {})
    for name, given in (("adam", adam), ("grad", grad)):
        if recipe and given is not None and given != recipe[name]:
            parser.error(f"argument --{name}: --recipe {args.recipe} uses --{name} {recipe[name]}, not {given}")
    if recipe and optimizer != "adam":
        parser.error(f"argument --recipe: the {args.recipe} recipe is Adam's, not {optimizer}'s")
    hyper = {name: getattr(args, name) for name in HYPER_OPTIONS if getattr(args, name, None) is not None}
    for name in hyper:
        if name not in OPTIMIZERS[optimizer].defaults:
            parser.error(f"argument --{name.replace('_', '-')}: does not apply to --optimizer {optimizer}")
    if adam not in (None, "paper") and optimizer != "adam":
        parser.error(f"argument --adam: the Adam forms apply to --optimizer adam, not {optimizer}")
    try:
        return Config(hidden=args.hidden, lr=args.lr, epochs=args.epochs, seed=args.seed, dtype=args.dtype,
                      adam=adam or recipe.get("adam", DEFAULTS.adam), grad=grad or recipe.get("grad", DEFAULTS.grad),
                      optimizer=optimizer, **hyper)
    except ValueError as exc:  # a hyperparameter out of its range
        parser.error(str(exc))


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
        description="Train the 2-H-1 sigmoid XOR network with Adam (or --optimizer) in every row (numpy, jax, "
        "torch, torch.optim, optax) from the same initial weights and report whether their trajectories agree.",
        epilog="subcommands: " + ", ".join(f"compare.py {c} --help" for c in COMMANDS)
        + ". exit status: 0 all rows agree, 1 some pair disagrees, 2 bad usage",
    )
    add_problem_options(parser)
    add_adam_options(parser)
    add_execution_options(parser)
    parser.add_argument(
        "--backends", type=row_list, default=None, metavar="ROWS",
        help=f"comma-separated rows to run, the first is the reference (default for every optimizer and Adam's paper "
        f"form: {','.join(DEFAULT_ROWS)}; for epshat: numpy,jax,torch,keras; for seed: numpy,jax,torch; rows whose "
        "framework is not installed are skipped)",
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--save", metavar="FILE.npz", help="write every row's loss and parameter trajectory")
    parser.add_argument("--plot", metavar="DIR", help="write PNG figures into DIR")
    parser.add_argument("--inject", action="append", metavar="ROW:FAULT",
                        help="plant a fault in one row (numpy, jax or torch) to see the harness catch it; faults: "
                        + ", ".join(FAULTS) + " (repeatable, one per row; each fault belongs to the optimizers "
                        "it names, Adam's to adam, the two gradient faults to every optimizer)")
    parser.add_argument("--backend-file", action="append", metavar="FILE.py",
                        help="add a row from your own backend module (the interface in the README; an example in "
                        "examples/plugin_backend.py), run like the built-in rows, lockstep included (repeatable)")
    parser.add_argument("--external", action="append", metavar="NAME=FILE",
                        help="add a row read from a trajectory file another program wrote (CSV: one line per epoch, "
                        "the loss then the 4H+1 parameters W1, b1, W2, b2 row by row; or npz with loss and params); "
                        "start it from compare.py init (repeatable)")
    parser.add_argument("--replay-dir", default=".", metavar="DIR",
                        help="where a failing pair's replay file goes (default: the current folder)")
    return parser


def select_rows(requested, parser, device: str = "cpu", cfg: Config = DEFAULTS) -> tuple[list[str], dict]:
    """Rows to run and rows skipped (name -> reason). A requested row that cannot run
    is a usage error; a default row whose framework is missing is skipped. A device
    that is not here is a usage error. The default rows are those implementing
    ``cfg``'s optimizer (and Adam form)."""
    from harness.rows import device_problem, rows_for, unavailable_reason

    if requested:
        wrong = [ROWS[n] for n in requested if not ROWS[n].implements(cfg)]
        if wrong and cfg.optimizer not in wrong[0].optimizers:
            parser.error(f"row {wrong[0].name} implements {'/'.join(wrong[0].optimizers)} only, not {cfg.optimizer}")
        if wrong:
            parser.error(f"row {wrong[0].name} implements Adam in the {'/'.join(wrong[0].forms)} form "
                         f"only, not {cfg.adam}")
    names = requested or list(rows_for(cfg))
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


def parse_faults(specs, names, cfg, parser) -> dict:
    """--inject ROW:FAULT values as {row: fault}; a bad one is a usage error."""
    from harness.faults import problem

    faults = {}
    for spec in specs or []:
        row, sep, fault = spec.partition(":")
        if not sep:
            parser.error(f"argument --inject: expected ROW:FAULT, got {spec!r}")
        why = problem(row, fault, cfg)
        if why is None and row not in names:
            why = f"row {row!r} is not among the rows run"
        if why is None and row in faults:
            why = f"row {row!r} has a fault already"
        if why:
            parser.error(f"argument --inject: {why}")
        faults[row] = fault
    return faults


def default_run(argv) -> int:
    parser = run_parser()
    args = parser.parse_args(argv)
    cfg = config_from(args, parser)
    outputs = check_outputs(parser, args, folders=("plot", "replay_dir"))
    names, skipped = select_rows(args.backends, parser, args.device, cfg)
    names += load_plugins(args.backend_file, names, cfg, args.device, parser)
    faults = parse_faults(args.inject, names, cfg, parser)
    externals = load_externals(args.external, names, cfg, parser)
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)

    from harness.environment import environment
    from harness.report import render, results_dict
    from harness.run import run_default, stderr_progress

    results = run_default(cfg, names, args.device, args.jobs, faults, progress=stderr_progress, externals=externals)
    if args.backends and results.skipped:
        print(f"compare.py: error: {next(iter(results.skipped.values()))}", file=sys.stderr)
        return EXIT_USAGE
    env = environment(args.device)
    replay_paths = write_replays(results, outputs["replay_dir"], env)
    print(render(results, replay_paths))

    failed = write_outputs(
        outputs,
        json_data=lambda: results_dict(results, env) | {"replay_files": {k: str(v) for k, v in replay_paths.items()}},
        npz_arrays=lambda: {f"{name}/{key}": getattr(traj, key)
                            for name, traj in results.trajectories.items() for key in ("loss", "params")},
        plots=lambda folder: write_run_plots(results, folder),
    )
    if failed is not None:
        return failed
    return EXIT_AGREE if results.passed else EXIT_DISAGREE


def load_plugins(paths, names, cfg: Config, device: str, parser) -> list:
    """--backend-file values registered as rows (their NAMEs); a file that cannot be a
    backend, or does not implement the run's optimizer, is a usage error."""
    import backends
    from harness.rows import device_problem, register_plugin

    added = []
    for path in paths or []:
        try:
            row = register_plugin(path)
        except backends.PluginError as exc:
            parser.error(f"argument --backend-file: {exc}")
        if row.name in names or row.name in added:
            parser.error(f"argument --backend-file: {path}: NAME {row.name!r} is taken by another row")
        if not row.implements(cfg):
            parser.error(f"argument --backend-file: {path}: its UPDATES have {', '.join(row.optimizers)}"
                         + ("" if cfg.optimizer in row.optimizers else f", not {cfg.optimizer}")
                         + ("" if cfg.optimizer != "adam" or cfg.adam in row.forms else f" (Adam form {cfg.adam})"))
        problem = device_problem(row.name, device)
        if problem:
            parser.error(problem)
        added.append(row.name)
    return added


def load_externals(specs, names, cfg: Config, parser) -> dict:
    """--external NAME=FILE values as validated trajectories, before any training; a bad
    one is a usage error naming the file, the line and the problem."""
    from harness.exchange import ExternalError, load_external, reference_first_step
    from harness.rows import register_external

    externals = {}
    first_step = reference_first_step(cfg) if specs else None
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            parser.error(f"argument --external: expected NAME=FILE, got {spec!r}")
        if name in names or name in externals or name in ROWS:
            parser.error(f"argument --external: the name {name!r} is taken by another row")
        try:
            externals[name] = load_external(name, path, cfg, first_step)
        except ExternalError as exc:
            parser.error(f"argument --external: {exc}")
        register_external(name, path)
    return externals


def write_replays(results, folder, env) -> dict:
    """One replay file per failing pair whose divergence has a numpy state to start from."""
    from pathlib import Path

    from harness.diagnosis import write_replay

    reference = results.trajectories.get("numpy")
    if reference is None or reference.states is None or folder is None:
        return {}
    paths = {}
    for p in results.pairs:
        div = p.get("first_divergence")
        if not div or div["epoch"] < 1 or p.get("explained"):
            continue
        Path(folder).mkdir(parents=True, exist_ok=True)
        path = Path(folder) / f"replay_{p['b']}_epoch{div['epoch']}.npz"
        try:
            write_replay(path, results.cfg, reference, div["epoch"], (p["a"], p["b"]), div["phase"], results.faults, env)
        except OSError as exc:
            print(f"compare.py: warning: cannot write replay file {path}: {exc}", file=sys.stderr)
            continue
        paths[p["b"]] = path
    return paths


def write_run_plots(results, folder) -> None:
    from pathlib import Path

    from harness.agreement import envelope_tolerance, trajectory_scale
    from harness.diagnosis import drift_figure
    from harness.plots import write_all

    write_all(results.trajectories, results.cfg.hidden, folder)
    reference = next(iter(results.trajectories.values()))
    allowed = (envelope_tolerance(results.envelope, results.cfg.dtype, trajectory_scale(reference.params))[0]
               if results.envelope is not None else np.full(reference.params.shape[0], results.agreements[0].tolerance))
    for p in results.pairs:
        lock = results.lockstep.get(p["b"], {}).get("params_gap") if p["a"] == "numpy" else None
        drift_figure(Path(folder) / f"drift_{p['a']}_vs_{p['b']}.png", p["a"], p["b"], p["_gap"], allowed, lock)


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
    cfg = config_from(args, parser)
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
    add_adam_options(parser)
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
    cfg = config_from(args, parser)
    outputs = check_outputs(parser, args, files=("json",), folders=("plot",))
    names, skipped = select_rows(args.backends, parser, args.device, cfg)
    single = [n for n in names if not ROWS[n].batched]
    if args.backends and single:
        parser.error(f"row {single[0]} trains one run at a time: the sweep needs rows that train a batch")
    names = [n for n in names if n not in single]
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)

    from harness.environment import environment
    from harness.progress import Progress
    from harness.rows import EXPECTED_COST, Workers, run_row
    from harness.sweep import (batch_params, default_every, peak_memory_mib, perturbed_starts, plot_sweep,
                               render_sweep, summarize)

    started = time.perf_counter()
    every = args.every or default_every(cfg.epochs)
    seeds = np.arange(args.first_seed, args.first_seed + args.seeds)
    params0 = batch_params(seeds, cfg.hidden, cfg.dtype)
    tasks = [(n, run_row, (n, cfg, params0, every, args.device)) for n in sorted(names, key=lambda n: -EXPECTED_COST.get(n, 0))]
    if names[0] == "numpy":  # each seed's perturbation envelope: one more numpy batch, the largest task: first
        tasks.insert(0, (("perturbed",), run_row, ("numpy", cfg, perturbed_starts(params0, args.first_seed), every,
                                                   "cpu", None, False, args.first_seed)))
    progress = Progress(len(tasks), "runs trained")
    trajectories, perturbed = {}, None
    with Workers(min(args.jobs, len(tasks))) as workers:
        for key, result in workers.run(tasks):
            if isinstance(result, str):
                progress.close()
                if args.backends:
                    print(f"compare.py: error: {result}", file=sys.stderr)
                    return EXIT_USAGE
                print(f"notice: skipping: {result}", file=sys.stderr)
                continue
            if isinstance(key, tuple):
                perturbed = result
            else:
                trajectories[key] = result
            progress.advance(key if isinstance(key, str) else "envelope")
    progress.close()
    trajectories = {n: trajectories[n] for n in names if n in trajectories}
    summary = summarize(cfg, seeds, every, trajectories, perturbed)
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
    cfg = config_from(args, parser)
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


def replay(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py replay",
        description="Run the single step a replay file holds (the numpy row's exact state before the step where "
        "a pair parted) in every row, and compare each phase with numpy's.",
        epilog="exit status: 0 every row computes the step as numpy does, 1 some row differs, 2 bad usage",
    )
    parser.add_argument("file", help="a replay .npz written by python compare.py when a pair failed")
    parser.add_argument("--backends", type=row_list, default=None, metavar="ROWS",
                        help="rows to run the step in (default: all installed)")
    parser.add_argument("--backend-file", action="append", metavar="FILE.py",
                        help="run the step in your own backend module too (as in the default run; repeatable)")
    parser.add_argument("--json", metavar="FILE", help="write the phase-by-phase errors as JSON")
    args = parser.parse_args(argv)
    outputs = check_outputs(parser, args, files=("json",), folders=())
    from harness.diagnosis import ReplayError, read_replay, render_replay

    try:
        record = read_replay(args.file)
    except ReplayError as exc:
        parser.error(str(exc))
    names, skipped = select_rows(args.backends, parser, cfg=record["config"])
    names += load_plugins(args.backend_file, names, record["config"], "cpu", parser)
    names = [n for n in names if ROWS[n].lockstep]  # the step is run again: rows that can step from a state
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)
    from harness.lockstep import lockstep_row

    faults = {row: fault for row, fault in record["faults"].items() if row in names or row == "numpy"}
    results = {}
    for name in names:
        if name != "numpy":
            results[name] = lockstep_row(name, record["config"], record["states"], faults)["errors"]
    print(render_replay(record, results))
    passed = all(e.passed for errors in results.values() for e in errors.values())
    failed = write_outputs(outputs, json_data=lambda: {
        "file": args.file, "config": record["config"].to_dict(), "faults": record["faults"],
        "epoch": int(record["states"].epochs[0]), "pair": record["pair"],
        "rows": {n: {p: e.to_dict() for p, e in errors.items()} for n, errors in results.items()},
        "passed": passed})
    if failed is not None:
        return failed
    return EXIT_AGREE if passed else EXIT_DISAGREE


def flavors(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py flavors",
        description="Run every Adam form (paper, epshat, seed; the seed form with both gradient conventions) "
        "from one initial state and compare final loss, when XOR is solved, step size and parameter gap.",
    )
    add_problem_options(parser)
    parser.add_argument("--json", metavar="FILE", help="write the table as JSON")
    parser.add_argument("--plot", metavar="DIR", help="loss curves overlaid and decision regions side by side")
    args = parser.parse_args(argv)
    cfg = config_from(args, parser)
    outputs = check_outputs(parser, args, files=("json",), folders=("plot",))
    from harness.environment import environment
    from harness.flavors import plot_flavors, render_flavors, run_flavors

    result = run_flavors(cfg)
    print(render_flavors(result))
    failed = write_outputs(
        outputs,
        json_data=lambda: {k: v for k, v in result.items() if not k.startswith("_")} | {"environment": environment()},
        plots=lambda folder: plot_flavors(result, folder),
    )
    return EXIT_AGREE if failed is None else failed


def lineage(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py lineage",
        description="Train every optimizer (" + ", ".join(OPTIMIZERS) + ") from the same initial weights, each at "
        "its conventional default hyperparameters, in every row; one table of final loss, the epoch XOR is "
        "solved from, agreement across rows and µs/epoch.",
        epilog="exit status: 0 every optimizer agrees across its rows (known library differences aside), "
        "1 otherwise, 2 bad usage",
    )
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs, help="training epochs (default %(default)s)")
    parser.add_argument("--seed", type=seed_int, default=DEFAULTS.seed, help="initial-weight seed (default %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=DEFAULTS.hidden, help="hidden units (default %(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default=DEFAULTS.dtype, help="floating-point type (default %(default)s)")
    parser.add_argument("--grad", choices=GRAD_CONVENTIONS, default=DEFAULTS.grad,
                        help="gradient of: mse or half-sse (default %(default)s)")
    add_execution_options(parser)
    parser.add_argument("--backends", type=row_list, default=None, metavar="ROWS",
                        help=f"rows to run, the first is the reference (default: {','.join(DEFAULT_ROWS)}, "
                        "those installed)")
    parser.add_argument("--json", metavar="FILE", help="write the table as JSON")
    parser.add_argument("--plot", metavar="DIR", help="loss curves overlaid and a grid of decision regions")
    args = parser.parse_args(argv)
    base = Config(hidden=args.hidden, epochs=args.epochs, seed=args.seed, dtype=args.dtype, grad=args.grad)
    outputs = check_outputs(parser, args, files=("json",), folders=("plot",))
    from harness.lineage import available_rows, plot_lineage, render_lineage, run_lineage

    partial = [n for n in args.backends or [] if not set(ROWS[n].optimizers) >= set(OPTIMIZERS)]
    if partial:
        wrong = partial[0]
        parser.error(f"row {wrong} implements {'/'.join(ROWS[wrong].optimizers)} only, not the whole lineage")
    names, skipped = available_rows(args.backends)
    if args.backends and skipped:
        parser.error(next(iter(skipped.values())))
    if not names:
        parser.error("no row can run: none of the frameworks is installed")
    for reason in skipped.values():
        print(f"notice: skipping: {reason}", file=sys.stderr)
    from harness.environment import environment
    from harness.run import stderr_progress

    result = run_lineage(base, names, args.jobs, args.device, progress=stderr_progress)
    for reason in result["skipped"].values():
        print(f"notice: skipping: {reason}", file=sys.stderr)
    print(render_lineage(result))
    failed = write_outputs(
        outputs,
        json_data=lambda: {k: v for k, v in result.items() if not k.startswith("_")} | {"environment": environment()},
        plots=lambda folder: plot_lineage(result, folder),
    )
    if failed is not None:
        return failed
    return EXIT_AGREE if result["passed"] else EXIT_DISAGREE


def init(argv) -> int:
    parser = argparse.ArgumentParser(
        prog="compare.py init",
        description="Write the exact initial state every row starts from (W1, b1, W2, b2 with their shapes, the flat "
        "vector in the documented order, the XOR data and the config) for a program in any language.",
        epilog="formats: json (numbers that read back to the same float64), csv (section,name,row,col,value per line), "
        "npz (arrays W1, b1, W2, b2, flat, X, y, config). exit status: 0 written, 2 bad usage",
    )
    add_problem_options(parser)
    add_adam_options(parser)
    parser.add_argument("--format", choices=("json", "csv", "npz"), default=None,
                        help="file format (default: from the --out suffix)")
    parser.add_argument("--out", metavar="FILE", required=True, help="where to write it")
    args = parser.parse_args(argv)
    cfg = config_from(args, parser)
    fmt = args.format or {".json": "json", ".csv": "csv", ".npz": "npz"}.get(os.path.splitext(args.out)[1].lower())
    if fmt is None:
        parser.error("argument --format: give one (json, csv or npz) or an --out name ending in .json, .csv or .npz")
    try:
        path = check_writable_file(args.out)
    except OutputError as exc:
        parser.error(str(exc))
    from harness.exchange import write_init

    try:
        write_init(path, cfg, fmt)
    except OSError as exc:
        print(f"compare.py init: error: cannot write {path}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote the initial state for seed {cfg.seed}, hidden {cfg.hidden} ({fmt}) to {path}")
    return EXIT_AGREE


# subcommand name -> function(argv) -> exit status; later issues add theirs here
COMMANDS = {"bench": bench, "sweep": sweep, "grads": grads, "replay": replay, "flavors": flavors, "lineage": lineage,
            "init": init}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return default_run(argv)
