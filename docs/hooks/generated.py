"""MkDocs hook: the pages' generated parts, made from the code at build time so that they
cannot drift from it. A page asks for one with a marker comment on a line of its own:

    <!-- generated: cli -->         the --help of the default run and of every subcommand
    <!-- generated: equations -->   every optimizer's record: its equations, defaults and paper
    <!-- generated: optimizers -->  the library mapping of every optimizer's record
    <!-- generated: interface -->   the backend interface (backends/interface.py)
    <!-- generated: faults -->      every planted fault's record
    <!-- generated: variants -->    the catalogue of variants
    <!-- generated: atlas -->       the atlas: the records and one real run (docs/atlas-run.json)
    <!-- generated: compiled -->    every compiled row's record and the decisions a bisection takes away
    <!-- generated: compiler-variants -->  the catalogue of compiler variants
    <!-- generated: compiled-run -->  one real compare.py compiled run (docs/compiled-run.json)
    <!-- generated: json-keys -->   the default run's JSON keys (harness.commands.run_report.JSON_KEYS)

The explanations' figures and the equations are docs/hooks/figures.py's.
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


def _call(call, page: str) -> str:
    if call is None:
        return "none"
    shown = f"`{call.describe()}`"
    return f"[{shown}]({page})" if page else shown


def optimizer_table() -> str:
    from reference.optimizers import OPTIMIZERS

    lines = [
        "| optimizer | hand rows follow | torch.optim | optax | Keras | defaults that differ | known gaps |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, o in OPTIMIZERS.items():
        gaps = "; ".join(f"{row} ({gap.phase})" for row, gap in o.gaps.items()) or "none"
        cite = o.citation
        torch, optax = _call(o.torch, cite.torch if cite else ""), _call(o.optax, cite.optax if cite else "")
        keras = _call(o.keras, cite.keras if cite else "")
        lines.append(f"| `{name}` | {o.follows} | {torch} | {optax} | {keras} | {o.library_defaults} | {gaps} |")
    return "\n".join(lines)


ATLAS_RUN = Path(__file__).resolve().parents[1] / "atlas-run.json"


def atlas_table() -> str:
    """The atlas from the records and the one real run kept beside the docs (atlas-run.json,
    written by ``compare.py atlas --json``): each cell's verdict, variant and settings."""
    import json

    from harness.commands.atlas import counts_text, versions_text
    from reference.optimizers import OPTIMIZERS

    run = json.loads(ATLAS_RUN.read_text())
    cfg = run["config"]
    lines = [
        f"Measured with `compare.py atlas` ({cfg['epochs']} epochs, seed {cfg['seed']}, {cfg['dtype']}) with "
        f"{versions_text(run)}. {counts_text(run)}.",
        "",
        "| optimizer | library | verdict | variant (status) | agree with (run) | lockstep ULPs | the library's source"
        " |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in run["cells"]:
        named = c["variant"] or c["recorded_variant"]
        status = f"`{named}` ({c['status']})" if named else c["status"]
        agree = "—"
        if "agree" in c:
            settings = ", ".join(f"{k} {v}" for k, v in c["agree"]["settings"].items())
            agree = f"{settings}: {c['agree']['verdict'] if c['agree']['passed'] else 'still differs'}"
        ulps = "—" if c.get("lockstep_max_ulp") is None else f"{c['lockstep_max_ulp']:.3g}"
        source = OPTIMIZERS[c["optimizer"]].gaps.get(c["row"])
        where = f"`{source.source}`" + (f"; {source.issue}" if source.issue else "") if source else ""
        lines.append(f"| `{c['optimizer']}` | {c['row']} | {c['verdict']} | {status} | {agree} | {ulps} | {where} |")
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


def compiled_table() -> str:
    from backends.compiled import COMPILATIONS, decisions

    lines = ["| row | compiles | how | decisions a bisection takes away |", "| --- | --- | --- | --- |"]
    for name, c in COMPILATIONS.items():
        taken = "; ".join(d.label for d in decisions(c))
        lines.append(f"| `{name}` | {c.runs} | {c.what} | {taken} |")
    return "\n".join(lines)


def compiler_variant_table() -> str:
    from backends.compiler_variants import VARIANTS

    lines = ["| variant | eager row | optimizers | phase | what it computes |", "| --- | --- | --- | --- | --- |"]
    for name, v in VARIANTS.items():
        lines.append(f"| `{name}` | {v.runs} | {', '.join(v.optimizers) or 'all'} | {v.phase} | {v.description} |")
    return "\n".join(lines)


def _first(row: dict) -> str:
    first = row["first_difference"]
    if first is None:
        return "none"
    where = first["phase"] if first["tensor"] == first["phase"] else f"{first['phase']} {first['tensor']}"
    return f"epoch {first['epoch']}, {where}, {first['ulps']:.2g} ULPs"


def compiled_run_table() -> str:
    import json

    data = json.loads((Path(__file__).resolve().parents[1] / "compiled-run.json").read_text())
    cfg = data["config"]
    lines = [
        f"{cfg['optimizer']}, {cfg['epochs']} epochs, seed {cfg['seed']}, {cfg['dtype']}: "
        "`python compare.py compiled --json docs/compiled-run.json`",
        "",
        "| row | vs its eager row | vs numpy | steps first differ | variant there | whole step | deciding "
        "| compile s | µs/epoch (eager) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in data["rows"].items():
        compile_s = f"{row['compile_seconds']:.1f}" if row["compile_seconds"] is not None else "-"
        explained = row["explained_phase"]
        variant = ", ".join(row["recognised"]) or ("none" if explained else "-")
        if explained and row["first_difference"] and explained != row["first_difference"]["phase"]:
            variant += f" (in {explained}, first alone)"
        lines.append(
            f"| `{name}` | {row['verdict']} | {row['against_numpy']} | {_first(row)} | {variant} | "
            f"{', '.join(row['whole_step']) or '-'} | {row['deciding'] or '-'} | {compile_s} | "
            f"{row['us_per_epoch']:.0f} ({row['eager_us_per_epoch']:.0f}) |"
        )
    return "\n".join(lines)


def json_keys_table() -> str:
    from harness.commands.run_report import JSON_KEYS

    lines = ["| key | what it holds |", "| --- | --- |"]
    return "\n".join(lines + [f"| `{key}` | {what} |" for key, what in JSON_KEYS.items()])


GENERATORS = {
    "json-keys": json_keys_table,
    "cli": cli_reference,
    "equations": equation_table,
    "optimizers": optimizer_table,
    "interface": interface_table,
    "faults": fault_table,
    "variants": variant_table,
    "atlas": atlas_table,
    "compiled": compiled_table,
    "compiler-variants": compiler_variant_table,
    "compiled-run": compiled_run_table,
}


def on_page_markdown(markdown, page, config, files):
    for name, generate in GENERATORS.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
