"""MkDocs hook: the pages' generated parts, made from the code at build time so that they
cannot drift from it. A page asks for one with a marker comment on a line of its own:

    <!-- generated: cli -->         the --help of the default run and of every subcommand
    <!-- generated: equations -->   every optimizer's record: its equations, defaults and paper
    <!-- generated: optimizers -->  the library mapping of every optimizer's record
    <!-- generated: interface -->   the backend interface (backends/interface.py)
    <!-- generated: faults -->      every planted fault's record
    <!-- generated: variants -->    the catalogue of variants
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout, also without an install


def cli_reference() -> str:
    from harness.cli import COMMANDS, build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: the same width on every machine
    parts = []
    for name in COMMANDS:
        title = "python compare.py" + (f" {name}" if name else "")
        parts.append(f"## `{title}`\n\n```text\n{build_parser(name).format_help()}```\n")
    return "\n".join(parts)


def equation_table() -> str:
    from reference.optimizers import OPTIMIZERS, SYMBOLS

    lines = ["| optimizer | state and step Δ | defaults | paper |", "| --- | --- | --- | --- |"]
    for name, o in OPTIMIZERS.items():
        defaults = ", ".join(f"{SYMBOLS[k]} {v:g}" for k, v in o.defaults.items())
        paper = o.citation.paper if o.citation else ""
        lines.append(f"| `{name}` ({o.title}) | {'; '.join(o.equations)} | {defaults} | {paper} |")
    return "\n".join(lines)


def optimizer_table() -> str:
    from reference.optimizers import OPTIMIZERS

    lines = [
        "| optimizer | torch.optim | optax | defaults that differ | known gaps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, o in OPTIMIZERS.items():
        gaps = "; ".join(f"{row} ({gap.phase})" for row, gap in o.gaps.items()) or "none"
        torch, optax = f"`{o.torch.describe()}`", f"`{o.optax.describe()}`"
        if o.citation:
            torch, optax = f"[{torch}]({o.citation.torch})", f"[{optax}]({o.citation.optax})"
        lines.append(f"| `{name}` | {torch} | {optax} | {o.library_defaults} | {gaps} |")
    return "\n".join(lines)


def interface_table() -> str:
    from backends.interface import MEMBERS

    who = {
        "required": "every backend, a plug-in too",
        "completed": "filled in for a plug-in that leaves it out",
        "whole": "numpy, JAX, torch",
        "autodiff": "JAX, torch",
    }
    lines = ["| member | what it is | who defines it | a fault swaps it |", "| --- | --- | --- | --- |"]
    for m in MEMBERS.values():
        lines.append(f"| `{m.signature}` | {m.meaning} | {who[m.who]} | {'yes' if m.swapped else ''} |")
    return "\n".join(lines)


def fault_table() -> str:
    from harness.engine.faults import FAULTS

    lines = [
        "| fault | optimizers | what it does | swaps | caught in phase | plug-ins |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in FAULTS.items():
        optimizers = ", ".join(f.optimizers) or "all"
        lines.append(
            f"| `{name}` | {optimizers} | {f.description} | `{f.patches}` | {f.phase} | {'yes' if f.plugin else 'no'} |"
        )
    return "\n".join(lines)


def variant_table() -> str:
    from harness.engine.variants import VARIANTS

    lines = [
        "| variant | optimizers | phase | what it computes | used by | the same as |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in VARIANTS.items():
        lines.append(
            f"| `{name}` | {', '.join(v.optimizers) or 'all'} | {v.phase} | {v.description} | {v.used_by} | "
            f"{v.same_as or ''} |"
        )
    return "\n".join(lines)


GENERATORS = {
    "cli": cli_reference,
    "equations": equation_table,
    "optimizers": optimizer_table,
    "interface": interface_table,
    "faults": fault_table,
    "variants": variant_table,
}


def on_page_markdown(markdown, page, config, files):
    for name, generate in GENERATORS.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
