"""One self-contained HTML report: a verdict, then sections of paragraphs, tables,
figures and commands, rendered by Jinja2 from ``templates/report.html.j2``. Figures are
inline data (SVG where small, PNG otherwise); the page loads nothing from anywhere, runs
no script, and is written whole or not at all."""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field

from harness.files.outputs import json_safe, write_atomic


@dataclass
class Table:
    headers: list
    rows: list  # each a list of cells, as text
    flagged: list = field(default_factory=list)  # per row: True where the row is a failure


@dataclass
class Figure:
    title: str
    kind: str  # "svg+xml" or "png"
    data: bytes

    @property
    def source(self) -> str:
        return f"data:image/{self.kind};base64," + base64.b64encode(self.data).decode("ascii")


@dataclass
class Section:
    title: str
    anchor: str
    paragraphs: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    failing: bool = False  # the section of a failing pair (styled, and found by its class)


@dataclass
class Report:
    title: str
    passed: bool
    verdict: str
    sections: list
    data: dict | None = None  # the JSON, shown folded at the end

    def html(self) -> str:
        template = _environment().get_template("report.html.j2")
        made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        data = json.dumps(json_safe(self.data), indent=2, allow_nan=False) if self.data is not None else None
        return template.render(report=self, made=made, data=data)

    def write(self, path) -> None:
        text = self.html().encode()
        write_atomic(path, lambda f: f.write(text))


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def key_value_table(items: dict) -> Table:
    return Table(["", ""], [[str(k), cell(v)] for k, v in items.items()])


def cell(value) -> str:
    """A value as a table shows it: numbers to 4 significant figures, lists joined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list)) for v in value):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, (dict, list)):
        return json.dumps(json_safe(value))[:200]
    return str(value)
