"""How a command ends: its result, the outputs checked before any work and written after
it, notices for skipped rows, a usage error found after parsing, the exit status; and
the grid of tasks on a cluster (``harness.engine.cluster.run_grid``) as a command runs it."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from harness.engine.execution import skip_notice
from harness.files.outputs import OutputError, check_writable_dir, check_writable_file, write_json, write_npz
from reference.spec import Config

EXIT_AGREE, EXIT_DISAGREE, EXIT_USAGE, EXIT_COULD_NOT_RUN = 0, 1, 2, 3


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

    @property
    def could_not_run(self) -> dict:
        """Rows that could not run (row: why): exit status 3 when every pair judged agrees."""
        return self.data.get("could_not_run") or {}


def notice_skipped(reasons) -> None:
    """One ``notice: skipping:`` line on stderr per row that cannot run here."""
    for reason in reasons:
        print(skip_notice(reason), file=sys.stderr)


def could_not_run_lines(failed: dict) -> list:
    """One line per row that could not run, with why (the report's, on stdout)."""
    return [f"{name:<12} could not run: {reason}" for name, reason in failed.items()]


def notice_renamed(old: str, new: str) -> None:
    """The one line that says a name given is an old one, kept for one release."""
    print(f"notice: {old} is now {new}; the old name goes after this release", file=sys.stderr)


def usage_error(parser: argparse.ArgumentParser, message: str) -> int:
    """A one-line error on stderr for something found after parsing; the usage exit status."""
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def refuse_if_too_large(
    parser: argparse.ArgumentParser, command: str, cfg: Config, rows: int, runs: int = 1, every: int = 1
) -> None:
    """Exit 2 with one line, before any work, when the run would not fit in memory
    (``harness.engine.memory``)."""
    from harness.engine.memory import too_large

    why = too_large(command, cfg, rows, runs, every)
    if why:
        parser.exit(EXIT_USAGE, f"{parser.prog}: error: {why}\n")


def check_outputs(parser: argparse.ArgumentParser, args, files=("json", "save"), folders=("plot",)) -> dict:
    """Every output path checked before any work (--report's too, where the command has
    it); returns them as Paths (or None)."""
    if hasattr(args, "report"):
        files = (*files, "report")
    for name in (*files, *folders):
        if getattr(args, name, None) == "":  # given, but empty: not "not given"
            parser.error(f"argument --{name}: expected a path, got ''")
    try:
        paths = {k: check_writable_file(getattr(args, k)) if getattr(args, k) else None for k in files}
        paths.update({k: check_writable_dir(getattr(args, k)) if getattr(args, k) else None for k in folders})
    except OutputError as exc:
        parser.error(str(exc))
    return paths


def finish(
    parser: argparse.ArgumentParser,
    outputs: dict,
    result,
    json_extra: dict | None = None,
    npz=None,
    plots=None,
    text: str | None = None,
    page=None,
) -> int:
    """Write what was asked for (``npz()`` to --save, ``plots(folder)`` into --plot, the
    HTML report to --report: ``page()``, or the command's generic page of ``text``, its
    figures and its JSON; then ``result.to_json()`` with ``json_extra`` to --json), then
    the exit status: 0 when ``result.passed``, 1 when not, 2 when a write failed (a
    one-line error), 3 when every pair judged passed but a row could not run
    (``result.could_not_run``)."""
    try:  # the JSON last: it may report what writing the rest cost
        if outputs.get("save") and npz is not None:
            write_npz(outputs["save"], npz())
        if outputs.get("plot") and plots is not None:
            plots(outputs["plot"])
        if outputs.get("report"):
            _write_page(parser, outputs["report"], result.to_json() | (json_extra or {}), text, plots, page)
        if outputs.get("json"):
            write_json(outputs["json"], result.to_json() | (json_extra or {}))
    except OSError as exc:
        return usage_error(parser, f"cannot write output: {exc}")
    if not result.passed:
        return EXIT_DISAGREE
    return EXIT_COULD_NOT_RUN if getattr(result, "could_not_run", None) else EXIT_AGREE


def _write_page(parser, path, data: dict, text, plots, page) -> None:
    from harness.commands.command_page import command_report

    (page() if page is not None else command_report(parser.prog, data, text, plots)).write(path)


def run_grid(parser: argparse.ArgumentParser, args, tasks: list, label: str, summarize) -> dict | int:
    """The grid's ``tasks`` on the cluster the options name (``harness.engine.cluster.run_grid``)
    with a progress bar: the summary with the grid's options, or the usage exit status
    when the cluster failed, with one line."""
    from harness.engine.cluster import ClusterError
    from harness.engine.cluster import run_grid as run_on_cluster
    from harness.report.progress import Progress

    try:
        data = run_on_cluster(tasks, args.jobs, args.scheduler, Progress(len(tasks), label), summarize)
    except ClusterError as exc:
        return usage_error(parser, str(exc))
    grid = {name: getattr(args, name) for name in ("optimizers", "dtypes", "lr_factors", "hidden", "seeds", "epochs")}
    return data | {"grid": grid}


def grid_command(parser: argparse.ArgumentParser, args, tasks: list, label: str, summarize, render, plot) -> int:
    """A grid command (audit, power) from its tasks to its exit status: outputs checked,
    the grid run (``run_grid``), ``render(summary)`` printed, ``plot(summary, folder)``
    into --plot and the summary with the environment to --json."""
    from harness.files.environment import environment

    outputs = check_outputs(parser, args, files=("json",), folders=("plot",))
    data = run_grid(parser, args, tasks, label, summarize)
    if isinstance(data, int):  # the cluster failed: the usage exit status
        return data
    text = render(data)
    print(text)
    extra = {"environment": environment("cpu")}
    return finish(parser, outputs, Result(data), extra, plots=lambda f: plot(data, f), text=text)
