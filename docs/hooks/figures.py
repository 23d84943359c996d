"""MkDocs hook: the explanations' figures, from a real run the docs build makes. One
default run (numpy, jax, torch; 2000 epochs) and the same run with a fault planted in
torch (eps-inside-sqrt); their figures are drawn by the report's own functions
(harness.report.plots) into the site as SVG files, and a page asks for one with a marker:

    <!-- generated: lockstep-heatmap -->   the clean run's lockstep heatmap
    <!-- generated: gap-figure -->         numpy vs jax: the gap against its allowance
    <!-- generated: planted-fault -->      the planted run: its first divergence and its gap

And equations: pymdownx.arithmatex leaves $...$ and $$...$$ as TeX in spans; this hook
turns each into MathML (latex2mathml), which the browser renders with no script and no
network."""

from __future__ import annotations

import html
import re
import sys
from functools import cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

EPOCHS = 2000
ROWS = ["numpy", "jax", "torch"]
FAULT = ("torch", "eps-inside-sqrt")


@cache
def runs() -> dict:
    from harness.engine.pipeline import run_default
    from reference.spec import Config

    cfg = Config(epochs=EPOCHS)
    clean = run_default(cfg, ROWS, "cpu", 2, {})
    planted = run_default(cfg, ["numpy", FAULT[0]], "cpu", 2, {FAULT[0]: FAULT[1]})
    return {"clean": clean, "planted": planted}


def _svg(name: str, draw, args) -> tuple:
    from harness.report.plots import drawn_to_data

    kind, data = drawn_to_data(draw, args)
    return f"figures/{name}.{'svg' if kind == 'svg+xml' else 'png'}", data


@cache
def figures() -> dict:
    """Each figure's site path and bytes, by marker name."""
    from harness.commands import run_page, run_report

    made = runs()
    [(_, heat, heat_args)] = run_page.lockstep_heatmap_figure(made["clean"])
    clean_gaps = {name: (draw, args) for name, draw, args in run_report.pair_figures(made["clean"])}
    planted_gaps = run_report.pair_figures(made["planted"])
    return {
        "lockstep-heatmap": _svg("lockstep_heatmap", heat, heat_args),
        "gap-figure": _svg("gap_numpy_vs_jax", *clean_gaps["drift_numpy_vs_jax.png"]),
        "planted-fault": _svg("planted_fault_gap", *planted_gaps[0][1:]),
    }


def _image(key: str, alt: str, page) -> str:
    path, _ = figures()[key]
    depth = page.file.src_uri.count("/")
    return f"![{alt}]({'../' * depth}{path})"


def planted_fault_markdown(page) -> str:
    from harness.commands.run_page import divergence_items
    from harness.report.text import explanation_sentence

    pair = runs()["planted"].pairs[0]
    items = {"planted": f"`--inject {FAULT[0]}:{FAULT[1]}`, {EPOCHS} epochs"} | divergence_items(pair)
    items["explanation"] = explanation_sentence(pair.explanation)
    table = "| | |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in items.items())
    return table + "\n\n" + _image("planted-fault", "the planted fault's gap against its allowance", page)


def pair_keys_markdown(page) -> str:
    from harness.report.html import cell

    entry = runs()["clean"].pairs[0].to_json()
    lines = ["| key | value in the docs build's run |", "| --- | --- |"]
    return "\n".join(lines + [f"| `{k}` | {cell(v).replace('|', '/')[:120]} |" for k, v in entry.items()])


MARKERS = {
    "pair-keys": pair_keys_markdown,
    "lockstep-heatmap": lambda page: _image("lockstep-heatmap", "lockstep heatmap of a real run", page),
    "gap-figure": lambda page: _image("gap-figure", "numpy vs jax: the gap against its allowance", page),
    "planted-fault": planted_fault_markdown,
}


def on_page_markdown(markdown, page, config, files):
    for name, make in MARKERS.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make(page))
    return markdown


def on_files(files, config):
    from mkdocs.structure.files import File

    for path, data in figures().values():
        files.append(File.generated(config, path, content=data))
    return files


MATH = re.compile(r'<(span|div) class="arithmatex">(.*?)</\1>', re.S)


def _mathml(match) -> str:
    from latex2mathml.converter import convert

    tex = html.unescape(match.group(2)).strip()
    block = tex.startswith("\\[")
    tex = tex[2:-2] if tex[:2] in ("\\(", "\\[") else tex
    return convert(tex, display="block" if block else "inline")


def on_page_content(content, page, config, files):
    return MATH.sub(_mathml, content)
