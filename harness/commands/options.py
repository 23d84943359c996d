"""What the subcommands share: argument types and option groups, the config from the
options, choosing rows, plug-ins, externals and faults, checking outputs before any
work, the notice for skipped rows, and the one way a command finishes."""
from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass

from harness.engine.rows import DEFAULT_ROWS, ROWS, unavailable_reason
from harness.files.outputs import OutputError, check_writable_dir, check_writable_file, write_json, write_npz
from reference.optimizers import HYPERPARAMETER_RECORDS, OPTIMIZERS
from reference.spec import ADAM_FORMS, DTYPES, GRAD_CONVENTIONS, Config

EXIT_AGREE, EXIT_DISAGREE, EXIT_USAGE = 0, 1, 2
DEFAULTS = Config()


@dataclass
class Result:
    """A command's result: ``data`` is what --json writes (indexing reads it too); a
    subclass adds the runs and arrays its figures need."""

    data: dict

    def __getitem__(self, key):
        return self.data[key]

    def to_json(self) -> dict:
        return self.data

    @property
    def passed(self) -> bool:
        return self.data.get("passed", True)


def skip_notice(reason: str) -> str:
    return f"notice: skipping: {reason}"


def notice_skipped(reasons) -> None:
    """One ``notice: skipping:`` line on stderr per row that cannot run here."""
    for reason in reasons:
        print(skip_notice(reason), file=sys.stderr)


def usage_error(parser, message: str) -> int:
    """A one-line error on stderr for something found after parsing; the usage exit status."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def refuse_if_too_large(parser, command: str, cfg: Config, rows: int, runs: int = 1, every: int = 1) -> None:
    """Exit 2 with one line, before any work, when the run would not fit in memory
    (``harness.engine.memory``)."""
    from harness.engine.memory import too_large

    why = too_large(command, cfg, rows, runs, every)
    if why:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {why}\n")


def finish(parser, outputs: dict, result, json_extra: dict | None = None, npz=None, plots=None) -> int:
    """Write what was asked for (``npz()`` to --save, ``plots(folder)`` into --plot, then
    ``result.to_json()`` with ``json_extra`` to --json), then the exit status: 0 when
    ``result.passed``, 1 when not, 2 when a write failed (a one-line error)."""
    try:  # the JSON last: it may report what writing the rest cost
        if outputs.get("save") and npz is not None:
            write_npz(outputs["save"], npz())
        if outputs.get("plot") and plots is not None:
            plots(outputs["plot"])
        if outputs.get("json"):
            write_json(outputs["json"], result.to_json() | (json_extra or {}))
    except OSError as exc:
        return usage_error(parser, f"cannot write output: {exc}")
    return EXIT_AGREE if result.passed else EXIT_DISAGREE


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


def add_grid_options(parser: argparse.ArgumentParser, seeds: int, epochs: int, lr_factors: list, hidden: list) -> None:
    """The grid of configurations that ``audit`` and ``power`` run, and where they run it."""
    grid = parser.add_argument_group("the grid (every combination is run)")
    grid.add_argument("--seeds", type=positive_int, default=seeds, help="initial-weight seeds 0..N−1 per "
                      "configuration (default %(default)s)")
    grid.add_argument("--epochs", type=positive_int, default=epochs, help="training epochs (default %(default)s)")
    grid.add_argument("--optimizers", type=comma_list(str, tuple(OPTIMIZERS)), default=list(OPTIMIZERS),
                      metavar="A,B", help="optimizers (default: all " + str(len(OPTIMIZERS)) + ")")
    grid.add_argument("--dtypes", type=comma_list(str, DTYPES), default=list(DTYPES), metavar="A,B",
                      help="dtypes (default: " + ",".join(DTYPES) + ")")
    grid.add_argument("--lr-factors", type=comma_list(positive_float), default=lr_factors, metavar="F,G",
                      help="learning rates as factors of each optimizer's default (default "
                      + ",".join(f"{f:g}" for f in lr_factors) + ")")
    grid.add_argument("--hidden", type=comma_list(positive_int), default=hidden, metavar="H,K",
                      help="hidden sizes (default " + ",".join(map(str, hidden)) + ")")
    add_cluster_options(parser)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_argument_group("where the tasks run (dask.distributed)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing dask scheduler, e.g. tcp://10.0.0.5:8786 "
                       "(default: a local cluster of --jobs worker processes)")
    where.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1,
                       help="local worker processes (default: the cpu count, here %(default)s)")


def run_grid(parser, args, tasks: list, label: str, summarize) -> tuple[int | None, dict | None]:
    """The grid's ``tasks`` on the cluster the options name (``harness.engine.cluster``):
    (None, ``summarize(results in task order)`` with where and how long they ran and the
    grid), or (the usage exit status, None) when the cluster failed, with one line."""
    from harness.engine.cluster import ClusterError, run_tasks
    from harness.report.progress import Progress

    try:
        results, report, seconds = run_tasks(tasks, args.jobs, args.scheduler, Progress(len(tasks), label))
    except ClusterError as exc:
        return usage_error(parser, str(exc)), None
    grid = {name: getattr(args, name) for name in ("optimizers", "dtypes", "lr_factors", "hidden", "seeds", "epochs")}
    data = summarize([results[key] for key, _, _ in tasks])
    return None, data | report.to_json() | {"seconds": seconds, "tasks": len(tasks), "grid": grid}


def add_problem_options(parser: argparse.ArgumentParser) -> None:
    """Options that define the training problem; later subcommands share them."""
    parser.add_argument("--epochs", type=positive_int, default=DEFAULTS.epochs, help="training epochs (default %(default)s)")
    parser.add_argument("--seed", type=seed_int, default=DEFAULTS.seed, help="initial-weight seed (default %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help=f"learning rate > 0 (default: the optimizer's: {_defaults_text('lr')})")
    parser.add_argument("--hidden", type=positive_int, default=DEFAULTS.hidden, help="hidden units (default %(default)s)")
    parser.add_argument("--dtype", choices=DTYPES, default=DEFAULTS.dtype, help="floating-point type of every row (default %(default)s)")


RECIPES = {"seed": {"adam": "seed", "grad": "half-sse"}}  # lr, epochs, init: the defaults are the article's


def _defaults_text(hyper: str) -> str:
    """The optimizers' defaults of ``hyper`` from their records: "adam/adamw 0.9; …"."""
    users = {name: o.defaults[hyper] for name, o in OPTIMIZERS.items() if hyper in o.defaults}
    values: dict[float, list[str]] = {}
    for name, value in users.items():
        values.setdefault(value, []).append(name)
    return "; ".join(f"{'/'.join(names)} {value:g}" for value, names in values.items())


def _add_hyperparameter_options(group) -> None:
    """One option per hyperparameter record but lr (a problem option), its help made
    from the record and the optimizers' defaults."""
    for name in HYPER_OPTIONS:
        record = HYPERPARAMETER_RECORDS[name]
        group.add_argument(f"--{name.replace('_', '-')}", type=finite_float, default=None,
                           help=f"{record.symbol}: {record.meaning}, {record.range_text} (default {_defaults_text(name)})")


def add_adam_options(parser: argparse.ArgumentParser) -> None:
    """Which optimizer, its hyperparameters, which Adam form and which gradient; the
    default run and the sweep take them."""
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam",
                        help="the optimizer every row steps with (default %(default)s; its equations, citation and "
                        "library mapping: docs/optimizers.md)")
    hyper = parser.add_argument_group("optimizer hyperparameters (each only for the optimizers that use it; "
                                      "defaults are torch.optim's, momentum's 0.9 aside)")
    _add_hyperparameter_options(hyper)
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


HYPER_OPTIONS = tuple(name for name in HYPERPARAMETER_RECORDS if name != "lr")


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


def requested_or_default(requested, defaults) -> tuple[list, dict]:
    """The rows to run (the requested ones, else the defaults) and those that cannot run
    here (name -> reason): a caller refuses a requested one and skips a default one."""
    names = list(requested or defaults)
    reasons = {n: unavailable_reason(n) for n in names}
    return [n for n in names if not reasons[n]], {n: r for n, r in reasons.items() if r}


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, len(DEFAULT_ROWS)))


def add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Where and how rows run; later subcommands share them."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="device of the JAX and torch rows; numpy and the language rows always run on the cpu "
                        "(default %(default)s)")
    parser.add_argument("--jobs", type=positive_int, default=default_jobs(),
                        help="rows run in this many processes at once (default: the cpu count, here %(default)s)")


def select_rows(requested, parser, device: str = "cpu", cfg: Config = DEFAULTS) -> tuple[list[str], dict]:
    """Rows to run and rows skipped (name -> reason). A requested row that cannot run
    is a usage error; a default row whose framework is missing is skipped. A device
    that is not here is a usage error. The default rows are those implementing
    ``cfg``'s optimizer (and Adam form)."""
    from harness.engine.rows import device_problem, rows_for

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


def parse_faults(specs, names, cfg, parser) -> dict:
    """--inject ROW:FAULT values as {row: fault}; a bad one is a usage error."""
    from harness.engine.faults import problem

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


def load_plugins(paths, names, cfg: Config, device: str, parser) -> list:
    """--backend-file values registered as rows (their NAMEs); a file that cannot be a
    backend, or does not implement the run's optimizer, is a usage error."""
    import backends
    from harness.engine.rows import device_problem, register_plugin

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


def load_externals(specs, names, cfg: Config, parser, argument: str = "--external") -> dict:
    """--external NAME=FILE values as validated trajectories, before any training; a bad
    one is a usage error naming the file, the line and the problem."""
    from harness.engine.rows import register_external
    from harness.engine.trajectory_check import reference_first_step
    from harness.files.exchange import load_external
    from reference.exchange import ExternalError

    externals = {}
    first_step = reference_first_step(cfg) if specs else None
    for spec in specs or []:
        name, sep, path = spec.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            parser.error(f"argument {argument}: expected NAME=FILE, got {spec!r}")
        if name in names or name in externals or name in ROWS:
            parser.error(f"argument {argument}: the name {name!r} is taken by another row")
        try:
            externals[name] = load_external(name, path, cfg, first_step)
        except ExternalError as exc:
            parser.error(f"argument {argument}: {exc}")
        register_external(name, path)
    return externals


def add_env_option(parser, required: bool = False) -> None:
    parser.add_argument("--env", action="append", metavar="NAME=PYTHON", required=required,
                        help="also run every Python row in another environment, as ROW@NAME: PYTHON is that "
                        "environment's interpreter (a virtual environment's bin/python) with this project installed "
                        "(pip install -e . --no-deps) beside other library versions (repeatable)")


ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def _env_python(name: str, python: str, parser) -> str:
    """The interpreter of ``--env NAME=PYTHON``, absolute, or a usage error."""
    found = shutil.which(os.path.expanduser(python))
    if found is None:
        exists = os.path.exists(os.path.expanduser(python))
        parser.error(f"argument --env: {name}={python}: " + ("not an executable file" if exists else "no such file"))
    return os.path.abspath(found)


def load_environments(specs, names: list, parser) -> tuple[list, dict, dict]:
    """--env NAME=PYTHON values: each interpreter probed (``backends.env_row.probe``) and
    every row of ``names`` that is Python code registered as ROW@NAME where it can run
    there. (the rows added, the environments by name with their versions, the interpreter
    and the code fingerprint, the rows that cannot run there with why); a bad value is a
    usage error, a row missing there a notice."""
    from backends.env_row import RemoteError, probe
    from harness.engine.rows import register_twin, twinnable
    from harness.files.environment import code_fingerprint

    twins, environments, skipped = [], {}, {}
    here = code_fingerprint() if specs else None
    for spec in specs or []:
        name, sep, python = spec.partition("=")
        if not sep or not ENV_NAME.fullmatch(name) or not python:
            parser.error(f"argument --env: expected NAME=PYTHON with NAME of letters, digits, _.- , got {spec!r}")
        if name in environments or name == "here":
            parser.error(f"argument --env: the name {name!r} is taken" + (" by this environment" if name == "here"
                                                                           else ""))
        python = _env_python(name, python, parser)
        try:
            found = probe(python)
        except RemoteError as exc:
            parser.error(f"argument --env: {name}={python}: {exc}")
        environments[name] = found["environment"] | {"python_executable": python, "code": found.get("code")}
        if found.get("code") != here:
            print(f"notice: {name} ({python}) imports other code of this project (fingerprint {found.get('code')}, "
                  f"here {here}): a difference may be the code's, not the libraries'", file=sys.stderr)
        for base in (n for n in names if twinnable(n)):
            why = found["rows"].get(base, f"{name} does not know the {base} row")
            if why:
                why = str(why).partition("unavailable: ")[2] or str(why)
                skipped[f"{base}@{name}"] = f"{base}@{name} row unavailable: {why} in {name} ({python})"
            else:
                twins.append(register_twin(base, name, python).name)
        if not any(t.endswith(f"@{name}") for t in twins):
            parser.error(f"argument --env: none of the rows {', '.join(names)} can run in {name} ({python})")
    return twins, environments, skipped
