"""``python compare.py atlas``: for every optimizer and every library row that ships it
(torch.optim, optax, Keras), whether the library computes the hand rows' spec: the
verdict (bit-identical, rounding level or differs), the catalogued variant it computes,
the settings under which the two agree (run, not asserted) and the defaults that differ.
The engine is ``harness.engine.atlas``; docs/atlas.md is its table from one real run.
"""

from __future__ import annotations

import argparse

from harness.commands import arguments, ending, row_choice
from harness.engine.atlas import LIBRARY_ROWS, run_atlas, summarize
from harness.engine.rows import ROWS
from reference.optimizers import OPTIMIZERS
from reference.spec import Config

DESCRIPTION = (
    "For every optimizer and every library row that ships it ("
    + ", ".join(LIBRARY_ROWS)
    + "), whether it computes the hand rows' spec: bit-identical, rounding level, or a named difference, "
    "with the settings that make them agree (verified by running them) and the defaults that differ."
)
EPILOG = "exit status: 0 every difference is explained, 1 one is not, 2 bad usage, 3 a row could not run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser, lr=False)  # each optimizer at its own defaults
    parser.add_argument(
        "--optimizers",
        type=arguments.comma_list(str, tuple(OPTIMIZERS)),
        default=list(OPTIMIZERS),
        metavar="A,B",
        help=f"optimizers (default: all {len(OPTIMIZERS)})",
    )
    arguments.add_execution_options(parser)
    arguments.add_rows_option(
        parser, f"library rows to compare with numpy (default: {','.join(LIBRARY_ROWS)}, those installed)"
    )
    arguments.add_output_options(
        parser,
        json="the atlas",
        plot="the atlas as a grid of verdicts",
        report="the report, its figures and its JSON's tables",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.environment import environment, package_version
    from harness.report.progress import Board

    base = Config(hidden=args.hidden, epochs=args.epochs, seed=args.seed, dtype=args.dtype)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=("plot",))
    wrong = [n for n in args.backends or [] if n not in LIBRARY_ROWS]
    if wrong:
        parser.error(f"argument --backends: {wrong[0]} is not a library row (choose from {', '.join(LIBRARY_ROWS)})")
    rows, skipped = row_choice.requested_or_default(args.backends, LIBRARY_ROWS)
    if args.backends and skipped:
        parser.error(next(iter(skipped.values())))
    if not rows:
        parser.error("no library row can run: none of torch, optax and keras is installed")
    ending.refuse_if_too_large(parser, "atlas", base, 2, runs=len(args.optimizers))
    ending.notice_skipped(skipped.values())
    with Board() as board:
        found = run_atlas(base, args.optimizers, rows, args.device, args.jobs, progress=board)
    versions = {row: {p: package_version(p) for p in ROWS[row].packages} for row in rows}
    data: dict = {"config": base.to_dict(), "libraries": rows, "skipped": skipped, "versions": versions}
    data |= found | summarize(found["cells"])
    result = ending.Result(data)
    text = "\n".join([render_atlas(data), *ending.could_not_run_lines(data["could_not_run"])])
    print(text)
    return ending.finish(
        parser, outputs, result, {"environment": environment()}, plots=lambda f: plot_atlas(data, f), text=text
    )


def agree_text(cell: dict) -> str:
    """The settings that make the library and the spec agree, and what running them gave."""
    if "agree" not in cell:
        return "-"
    check = cell["agree"]
    shown = ", ".join(f"{k} {v}" for k, v in check["settings"].items())
    return f"{shown}: {check['verdict'] or 'not run'}" if check["passed"] else f"{shown}: STILL DIFFERS"


def versions_text(data: dict) -> str:
    """The library versions an atlas was measured with: "optax: jax 0.10.2, optax 0.2.8; …"."""
    return "; ".join(
        f"{row}: " + ", ".join(f"{p} {v}" for p, v in packages.items() if v)
        for row, packages in data["versions"].items()
    )


def counts_text(data: dict) -> str:
    """How many cells per verdict and per status: "47 pairs: 3 bit-identical, …; 30 agrees, …"."""
    verdicts = ", ".join(f"{n} {v}" for v, n in data["verdicts"].items())
    statuses = ", ".join(f"{n} {s}" for s, n in data["statuses"].items() if n)
    return f"{len(data['cells'])} pairs: {verdicts}; {statuses}"


def render_atlas(data: dict) -> str:
    cfg = data["config"]
    versions = versions_text(data)
    lines = [
        f"the atlas: each optimizer at its defaults in numpy and each library row, XOR 2-{cfg['hidden']}-1, seed "
        f"{cfg['seed']}, {cfg['epochs']} epochs, {cfg['dtype']}",
        f"libraries: {versions}",
        "",
        f"{'optimizer':<17} {'library':<12} {'verdict':<15} {'variant (status)':<50} agree with (run)",
    ]
    for cell in data["cells"]:
        named = cell["variant"] or cell["recorded_variant"] or ""
        status = f"{named} ({cell['status']})" if named or cell["status"] != "agrees" else ""
        lines.append(f"{cell['optimizer']:<17} {cell['row']:<12} {cell['verdict']:<15} {status:<50} {agree_text(cell)}")
    lines += ["", "defaults that differ (not differences of algorithm):"]
    shown = dict.fromkeys(c["optimizer"] for c in data["cells"])
    lines += [f"  {name:<17} {OPTIMIZERS[name].library_defaults}" for name in shown]
    lines += ["", counts_text(data)]
    if data["passed"]:
        lines.append("every difference is explained")
    else:
        failing = data["unexplained"] + data["settings_that_fail"]
        lines.append(f"not explained: {', '.join(failing)} (compare.py explain --optimizer NAME --backends numpy,ROW)")
    return "\n".join(lines)


def plot_atlas(data: dict, folder) -> list:
    """The atlas as a grid: optimizers down, library rows across, one colour per verdict."""
    from pathlib import Path

    import numpy as np

    from harness.engine.atlas import VERDICTS
    from harness.report.plots import pyplot, save_figure

    plt = pyplot()
    optimizers = list(dict.fromkeys(c["optimizer"] for c in data["cells"]))
    rows = data["libraries"]
    grid = np.full((len(optimizers), len(rows)), np.nan)
    for cell in data["cells"]:
        grid[optimizers.index(cell["optimizer"]), rows.index(cell["row"])] = VERDICTS.index(cell["verdict"])
    fig, ax = plt.subplots(figsize=(2 + 1.6 * len(rows), 1 + 0.4 * len(optimizers)), layout="constrained")
    ax.imshow(grid, cmap=plt.get_cmap("RdYlGn_r", len(VERDICTS)), vmin=-0.5, vmax=len(VERDICTS) - 0.5, aspect="auto")
    for cell in data["cells"]:
        label = cell["variant"] or cell["verdict"]
        ax.text(
            rows.index(cell["row"]), optimizers.index(cell["optimizer"]), label, ha="center", va="center", fontsize=7
        )
    ax.set_xticks(range(len(rows)), rows)
    ax.set_yticks(range(len(optimizers)), optimizers)
    ax.set_title("the atlas: green bit-identical, yellow rounding level, red differs (named)")
    Path(folder).mkdir(parents=True, exist_ok=True)
    written = Path(folder) / "atlas.png"
    save_figure(fig, written)
    plt.close(fig)
    return [written]
