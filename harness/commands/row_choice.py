"""Assembling the rows a command runs: the requested or default rows that can run here,
plug-in backends, trajectory files, other environments' rows, and planted faults; each
problem a one-line usage error before any work."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys

from harness.commands import ending
from harness.engine.rows import ROWS, unavailable_reason
from reference.spec import Config

DEFAULTS = Config()


def requested_or_default(requested, defaults) -> tuple[list, dict]:
    """The rows to run (the requested ones, else the defaults) and those that cannot run
    here (name -> reason): a caller refuses a requested one and skips a default one."""
    names = list(requested or defaults)
    reasons = {n: unavailable_reason(n) for n in names}
    return [n for n in names if not reasons[n]], {n: r for n, r in reasons.items() if r}


def select_rows(
    requested, parser: argparse.ArgumentParser, device: str = "cpu", cfg: Config = DEFAULTS
) -> tuple[list[str], dict]:
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
            parser.error(
                f"row {wrong[0].name} implements Adam in the {'/'.join(wrong[0].forms)} form only, not {cfg.adam}"
            )
    names = requested or list(rows_for(cfg))
    if getattr(requested, "with_defaults", False):  # +ROW: the defaults that can run, and ROW
        names = [n for n in rows_for(cfg) if n not in requested and not unavailable_reason(n)] + list(requested)
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


def parse_faults(specs, names, cfg, parser: argparse.ArgumentParser) -> dict:
    """--inject ROW:FAULT values as {row: fault}; a bad one is a usage error."""
    from harness.engine.faults import OLD_FAULTS, problem

    faults = {}
    for spec in specs or []:
        row, sep, fault = spec.partition(":")
        if not sep:
            parser.error(f"argument --inject: expected ROW:FAULT, got {spec!r}")
        if fault in OLD_FAULTS:
            ending.notice_renamed(f"the fault {fault}", OLD_FAULTS[fault])
            fault = OLD_FAULTS[fault]
        why = problem(row, fault, cfg)
        if why is None and row not in names:
            why = f"row {row!r} is not among the rows run"
        if why is None and row in faults:
            why = f"row {row!r} has a fault already"
        if why:
            parser.error(f"argument --inject: {why}")
        faults[row] = fault
    return faults


def load_plugins(paths, names, cfg: Config, device: str, parser: argparse.ArgumentParser) -> list:
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
            parser.error(
                f"argument --backend-file: {path}: its UPDATES have {', '.join(row.optimizers)}"
                + ("" if cfg.optimizer in row.optimizers else f", not {cfg.optimizer}")
                + ("" if cfg.optimizer != "adam" or cfg.adam in row.forms else f" (Adam form {cfg.adam})")
            )
        problem = device_problem(row.name, device)
        if problem:
            parser.error(problem)
        added.append(row.name)
    return added


def load_externals(specs, names, cfg: Config, parser: argparse.ArgumentParser, argument: str = "--external") -> dict:
    """--external NAME=FILE values as validated trajectories, before any training; a bad
    one is a usage error naming the file, the line and the problem."""
    from harness.engine.rows import register_external
    from harness.engine.trajectory_check import reference_first_step
    from harness.files.exchange import load_external
    from reference.exchange import ExternalError

    externals = {}
    first_step = reference_first_step(cfg) if specs else 0.0
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


ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")


def _env_python(name: str, python: str, parser: argparse.ArgumentParser) -> str:
    """The interpreter of ``--env NAME=PYTHON``, absolute, or a usage error."""
    found = shutil.which(os.path.expanduser(python))
    if found is None:
        exists = os.path.exists(os.path.expanduser(python))
        parser.error(f"argument --env: {name}={python}: " + ("not an executable file" if exists else "no such file"))
    return os.path.abspath(found)


def load_environments(specs, names: list, parser: argparse.ArgumentParser) -> tuple[list, dict, dict]:
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
            parser.error(
                f"argument --env: the name {name!r} is taken" + (" by this environment" if name == "here" else "")
            )
        python = _env_python(name, python, parser)
        try:
            found = probe(python)
        except RemoteError as exc:
            parser.error(f"argument --env: {name}={python}: {exc}")
        environments[name] = found["environment"] | {"python_executable": python, "code": found.get("code")}
        if found.get("code") != here:
            print(
                f"notice: {name} ({python}) imports other code of this project (fingerprint {found.get('code')}, "
                f"here {here}): a difference may be the code's, not the libraries'",
                file=sys.stderr,
            )
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
