"""The subcommands' arguments: argument types (each a one-line error for a bad value) and
the option groups they share (the problem, the optimizer and its hyperparameters, where
rows run, the grid, outputs), and the config made from them."""

from __future__ import annotations

import argparse
import math
import os

from harness.commands import ending
from harness.engine.rows import DEFAULT_ROWS, ROWS
from reference.optimizers import HYPERPARAMETER_RECORDS, OPTIMIZERS
from reference.spec import ADAM_FORMS, DTYPES, GRAD_CONVENTIONS, OLD_ADAM_FORMS, Config

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


class RowList(list):
    """Row names; ``with_defaults``: every name came as +NAME, added to the command's default rows."""

    with_defaults = False


def row_list(text: str) -> list[str]:
    """``--backends``: ROW,ROW… (those rows), or +ROW,+ROW… (the default rows and those)."""
    given = [n.strip() for n in text.split(",") if n.strip()]
    if not given:
        raise argparse.ArgumentTypeError("expected at least one row name")
    names = RowList(dict.fromkeys(n.removeprefix("+") for n in given))
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown row {unknown[0]!r} (choose from {', '.join(ROWS)})")
    added = [n.startswith("+") for n in given]
    if any(added) and not all(added):
        raise argparse.ArgumentTypeError("either name the rows (ROW,ROW) or add rows to the defaults (+ROW,+ROW)")
    names.with_defaults = all(added)
    return names


def comma_list(item_type, choices=None):
    """An argument type: a comma-separated list of ``item_type`` values (from ``choices``)."""

    def parse(text: str) -> list:
        items = [part.strip() for part in text.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        values = [item_type(item) for item in items]
        wrong = [v for v in values if choices is not None and v not in choices]
        if wrong:
            raise argparse.ArgumentTypeError(f"unknown {wrong[0]!r} (choose from {', '.join(choices)})")
        return list(dict.fromkeys(values))

    return parse


def add_problem_options(parser: argparse.ArgumentParser, lr: bool = True) -> None:
    """Options that define the training problem; later subcommands share them (``lr``:
    whether the command takes one learning rate)."""
    parser.add_argument(
        "--epochs", type=positive_int, default=DEFAULTS.epochs, help="training epochs (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=seed_int, default=DEFAULTS.seed, help="initial-weight seed (default %(default)s)"
    )
    if lr:
        parser.add_argument(
            "--lr",
            type=positive_float,
            default=None,
            help=f"learning rate > 0 (default: the optimizer's: {_defaults_text('lr')})",
        )
    parser.add_argument(
        "--hidden", type=positive_int, default=DEFAULTS.hidden, help="hidden units (default %(default)s)"
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default=DEFAULTS.dtype, help="floating-point type of every row (default %(default)s)"
    )


RECIPES = {"article": {"adam": "article", "grad": "half-sse"}}  # lr, epochs, init: the defaults are the article's
OLD_RECIPES = {"seed": "article"}  # an old name -> the name now: taken for one release


def renamed(option: str, old_names: dict[str, str]):
    """An argument type that takes a value's old name for one release, with a notice on
    stderr, and gives its name now (argparse then checks it among the choices)."""

    def convert(text: str) -> str:
        if text in old_names:
            ending.notice_renamed(f"{option} {text}", f"{option} {old_names[text]}")
            return old_names[text]
        return text

    return convert


def _defaults_text(hyper: str) -> str:
    """The optimizers' defaults of ``hyper`` from their records: "adam/adamw 0.9; …"."""
    users = {name: o.defaults[hyper] for name, o in OPTIMIZERS.items() if hyper in o.defaults}
    values: dict[float, list[str]] = {}
    for name, value in users.items():
        values.setdefault(value, []).append(name)
    return "; ".join(f"{'/'.join(names)} {value:g}" for value, names in values.items())


def _add_hyperparameter_options(group) -> None:
    """One option per hyperparameter record but lr (a problem option), or per pair of them
    where torch.optim takes two as one argument (``--etas``), its help made from the
    records and the optimizers' defaults."""
    for name in HYPER_OPTIONS:
        record = HYPERPARAMETER_RECORDS[name]
        group.add_argument(
            f"--{name.replace('_', '-')}",
            type=finite_float,
            default=None,
            help=f"{record.symbol}: {record.meaning}, {record.range_text} (default {_defaults_text(name)})",
        )
    for pair, names in PAIRED_OPTIONS.items():
        records = [HYPERPARAMETER_RECORDS[n] for n in names]
        group.add_argument(
            f"--{pair.replace('_', '-')}",
            type=float_pair,
            default=None,
            metavar=",".join(r.symbol for r in records),
            help="; ".join(
                f"{r.symbol}: {r.meaning}, {r.range_text} (default {_defaults_text(r.name)})" for r in records
            ),
        )


def float_pair(text: str) -> tuple[float, float]:
    """Two finite numbers, comma-separated (torch.optim's ``etas=(0.5, 1.2)``)."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two comma-separated numbers, got {text!r}")
    return finite_float(parts[0]), finite_float(parts[1])


def add_adam_options(parser: argparse.ArgumentParser) -> None:
    """Which optimizer, its hyperparameters, which Adam form and which gradient; the
    default run and the sweep take them."""
    parser.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZERS),
        default="adam",
        help="the optimizer every row steps with (default %(default)s; its equations, citation and "
        "library mapping: docs/optimizers.md)",
    )
    hyper = parser.add_argument_group(
        "optimizer hyperparameters (each only for the optimizers that use it; "
        "defaults are torch.optim's, momentum's 0.9 aside)"
    )
    _add_hyperparameter_options(hyper)
    parser.add_argument(
        "--adam",
        type=renamed("--adam", OLD_ADAM_FORMS),
        choices=ADAM_FORMS,
        default=None,
        help="Adam form: paper (Kingma & Ba, as torch.optim and optax; default), epshat (ε̂ added "
        "to √v, as Keras 3, TensorFlow and the ゼロから作る textbook), article (the article's constant "
        "bias correction; seed, its old name, is taken for one release)",
    )
    parser.add_argument(
        "--grad",
        choices=GRAD_CONVENTIONS,
        default=None,
        help="gradient of: mse (the logged loss; default) or half-sse (½·Σ(ŷ − y)², the article's "
        "derivation); the logged loss is the MSE either way",
    )
    parser.add_argument(
        "--recipe",
        type=renamed("--recipe", OLD_RECIPES),
        choices=tuple(RECIPES),
        default=None,
        help="article: the whole article (article-form Adam, half-sse gradient, lr 0.001, 20000 epochs, "
        "np.random.seed(seed) then randn; seed, its old name, is taken for one release)",
    )


HYPER_OPTIONS = tuple(name for name, h in HYPERPARAMETER_RECORDS.items() if name != "lr" and not h.pair)
PAIRED_OPTIONS: dict[str, tuple[str, ...]] = {}
for _name, _record in HYPERPARAMETER_RECORDS.items():
    if _record.pair:
        PAIRED_OPTIONS[_record.pair] = (*PAIRED_OPTIONS.get(_record.pair, ()), _name)


def given_hyperparameters(args) -> dict:
    """The hyperparameters set on the command line, a pair option split into its two."""
    hyper = {name: getattr(args, name) for name in HYPER_OPTIONS if getattr(args, name, None) is not None}
    for pair, names in PAIRED_OPTIONS.items():
        if getattr(args, pair, None) is not None:
            hyper |= dict(zip(names, getattr(args, pair), strict=True))
    return hyper


def config_from(args, parser: argparse.ArgumentParser) -> Config:
    adam, grad = getattr(args, "adam", None), getattr(args, "grad", None)
    optimizer = getattr(args, "optimizer", "adam")
    recipe = RECIPES.get(getattr(args, "recipe", None) or "", {})
    for name, given in (("adam", adam), ("grad", grad)):
        if recipe and given is not None and given != recipe[name]:
            parser.error(f"argument --{name}: --recipe {args.recipe} uses --{name} {recipe[name]}, not {given}")
    if recipe and optimizer != "adam":
        parser.error(f"argument --recipe: the {args.recipe} recipe is Adam's, not {optimizer}'s")
    hyper = given_hyperparameters(args)
    for name in hyper:
        if name not in OPTIMIZERS[optimizer].defaults:
            option = HYPERPARAMETER_RECORDS[name].pair or name
            parser.error(f"argument --{option.replace('_', '-')}: does not apply to --optimizer {optimizer}")
    if adam not in (None, "paper") and optimizer != "adam":
        parser.error(f"argument --adam: the Adam forms apply to --optimizer adam, not {optimizer}")
    try:
        return Config(
            hidden=args.hidden,
            lr=args.lr,
            epochs=args.epochs,
            seed=args.seed,
            dtype=args.dtype,
            adam=adam or recipe.get("adam", DEFAULTS.adam),
            grad=grad or recipe.get("grad", DEFAULTS.grad),
            optimizer=optimizer,
            **hyper,
        )
    except ValueError as exc:  # a hyperparameter out of its range
        parser.error(str(exc))


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, len(DEFAULT_ROWS)))


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Where and how rows run; later subcommands share them."""
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device of the JAX and torch rows; numpy and the language rows always run on the cpu "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=default_jobs(),
        help="rows run in this many processes at once (default: the cpu count, here %(default)s)",
    )


def add_jobs_option(parser: argparse.ArgumentParser) -> None:
    """``--jobs N``: how many rows run at once, for the commands that take no --device."""
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=default_jobs(),
        help="rows run in this many processes at once (default %(default)s)",
    )


def check_grid(parser: argparse.ArgumentParser, args) -> None:
    """Every configuration of the grid is a valid one (an lr factor can make a learning
    rate that is not: 5e-324 × 1e-3 is 0); a usage error names the first that is not."""
    from harness.engine.audit import grid_cells

    for cell in grid_cells(args.optimizers, args.dtypes, args.lr_factors, args.hidden, args.epochs):
        try:
            cell.config()
        except ValueError as exc:
            parser.error(f"argument --lr-factors: {cell.lr_factor:g} × {cell.optimizer}'s default lr: {exc}")


def add_grid_options(parser: argparse.ArgumentParser, seeds: int, epochs: int, lr_factors: list, hidden: list) -> None:
    """The grid of configurations that ``audit`` and ``power`` run, and where they run it."""
    grid = parser.add_argument_group("the grid (every combination is run)")
    grid.add_argument(
        "--seeds",
        type=positive_int,
        default=seeds,
        help="initial-weight seeds 0..N−1 per configuration (default %(default)s)",
    )
    grid.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs (default %(default)s)")
    grid.add_argument(
        "--optimizers",
        type=comma_list(str, tuple(OPTIMIZERS)),
        default=list(OPTIMIZERS),
        metavar="A,B",
        help="optimizers (default: all " + str(len(OPTIMIZERS)) + ")",
    )
    grid.add_argument(
        "--dtypes",
        type=comma_list(str, DTYPES),
        default=list(DTYPES),
        metavar="A,B",
        help="dtypes (default: " + ",".join(DTYPES) + ")",
    )
    grid.add_argument(
        "--lr-factors",
        type=comma_list(positive_float),
        default=lr_factors,
        metavar="F,G",
        help="learning rates as factors of each optimizer's default (default "
        + ",".join(f"{f:g}" for f in lr_factors)
        + ")",
    )
    grid.add_argument(
        "--hidden",
        type=comma_list(positive_int),
        default=hidden,
        metavar="H,K",
        help="hidden sizes (default " + ",".join(map(str, hidden)) + ")",
    )
    add_cluster_options(parser)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the tasks run (dask.distributed)")
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="an existing dask scheduler, e.g. tcp://10.0.0.5:8786 "
        "(default: a local cluster of --jobs worker processes)",
    )
    where.add_argument(
        "--jobs",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="local worker processes (default: the cpu count, here %(default)s)",
    )


def add_env_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "--env",
        action="append",
        metavar="NAME=PYTHON",
        required=required,
        help="also run every Python row in another environment, as ROW@NAME: PYTHON is that "
        "environment's interpreter (a virtual environment's bin/python) with this project installed "
        "(pip install -e . --no-deps) beside other library versions (repeatable)",
    )


OUTPUTS = {
    "json": ("--json", "FILE"),
    "save": ("--save", "FILE.npz"),
    "plot": ("--plot", "DIR"),
    "report": ("--report", "FILE.html"),
}


def add_output_options(parser: argparse.ArgumentParser, **written: str) -> None:
    """The output options a command offers, each with what it writes there: ``json="the
    figures"`` gives ``--json FILE`` "write the figures as JSON"; ``save=``, ``plot=``
    likewise (help text as given); ``report="the verdict"`` gives ``--report FILE.html``
    "write the verdict as one self-contained HTML file …"."""
    for key, what in written.items():
        flag, metavar = OUTPUTS[key]
        text = f"write {what} as JSON" if key == "json" else what
        if key == "report":
            text = f"write {what} as one self-contained HTML file (no network, no script)"
        parser.add_argument(flag, metavar=metavar, help=text)


def add_rows_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--backends ROWS``: the rows a command runs (``what`` says which by default)."""
    parser.add_argument("--backends", type=row_list, default=None, metavar="ROWS", help=what)
