"""A subcommand's HTML report (``--report FILE.html`` on sweep, lineage, audit, power,
versions, compiled and atlas): its verdict, the report it printed, its figures (those
``--plot`` writes, drawn into a temporary folder and inlined) and its JSON's tables,
all from the command's result, as --json writes it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness.report.html import Figure, Report, Section, Table, cell, key_value_table


def command_report(command: str, data: dict, text: str | None, plots=None) -> Report:
    sections = []
    if text:
        sections.append(Section("The report", "report", commands=[text]))
    figures = drawn_figures(plots)
    if figures:
        sections.append(Section("Figures", "figures", figures=figures))
    sections += data_sections(data)
    return Report(f"XOR cross-check: {command}", bool(data.get("passed", True)), verdict_text(data), sections, data)


def verdict_text(data: dict) -> str:
    failed = data.get("could_not_run") or {}
    head = "every check passed" if data.get("passed", True) else "some check failed: see the report below"
    return head + (f"; could not run: {', '.join(failed)}" if failed else "")


def drawn_figures(plots) -> list:
    """What ``plots(folder)`` writes, as inline figures (PNG, as --plot writes them)."""
    if plots is None:
        return []
    with tempfile.TemporaryDirectory(prefix="xorcheck-report-") as folder:
        plots(Path(folder))
        return [Figure(p.stem.replace("_", " "), "png", p.read_bytes()) for p in sorted(Path(folder).rglob("*.png"))]


def data_sections(data: dict) -> list:
    """The JSON's scalars as one table; each list of records and each mapping of records
    as a table of its own (their nested values folded into one cell)."""
    scalars = {k: v for k, v in data.items() if not isinstance(v, (dict, list))}
    sections = [Section("Figures of the run", "summary", tables=[key_value_table(scalars)])] if scalars else []
    for key, value in data.items():
        table = records_table(value)
        if table is not None:
            sections.append(Section(key.replace("_", " "), f"data-{key}", tables=[table]))
    return sections


def records_table(value) -> Table | None:
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        records = [{"": k} | v for k, v in value.items()]
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        records = value
    else:
        return None
    columns = list(dict.fromkeys(k for r in records for k in r))[:12]
    flagged = [r.get("passed") is False for r in records]
    return Table(columns, [[cell(r.get(c)) for c in columns] for r in records[:500]], flagged[:500])
