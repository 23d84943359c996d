"""``python compare.py audit``: the harness's false-alarm rate over a grid of correct runs
(``harness.engine.audit``), on a dask.distributed cluster (``harness.engine.cluster``)."""

from __future__ import annotations

import argparse

import numpy as np

from harness.commands import arguments, ending
from harness.engine.agreement import default_every

DESCRIPTION = (
    "Measure the harness's false-alarm rate: train every row over a grid of optimizers, dtypes, learning "
    "rates, hidden sizes and seeds (every row is correct, so every disagreement is a false alarm), and "
    "report the count, the rate's 95% upper bound and the margins, on a dask.distributed cluster."
)
EPILOG = "exit status: 0 no false alarm, 1 some false alarm, 2 bad usage, an unreachable scheduler or a lost task"
SEEDS, EPOCHS, PER_TASK = 16, 2000, 128


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_grid_options(parser, SEEDS, EPOCHS, lr_factors=[0.1, 1.0, 10.0], hidden=[1, 4, 8])
    parser.add_argument(
        "--seeds-per-task",
        type=arguments.positive_int,
        default=PER_TASK,
        help="seeds trained as one batch in one task (default %(default)s)",
    )
    arguments.add_output_options(
        parser,
        json="the figures",
        plot="write the heatmap of the worst margin per lr and optimizer",
        report="the report, its figures and its JSON's tables",
    )


def tasks_of(args) -> list:
    from harness.engine.audit import audit_task, grid_cells, seed_batches

    cells = grid_cells(args.optimizers, args.dtypes, args.lr_factors, args.hidden, args.epochs)
    every = default_every(args.epochs)
    return [
        ((i, j), audit_task, (cell, seeds, every))
        for i, cell in enumerate(cells)
        for j, seeds in enumerate(seed_batches(args.seeds, args.seeds_per_task))
    ]


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.engine.audit import summarize_audit

    arguments.check_grid(parser, args)
    return ending.grid_command(parser, args, tasks_of(args), "tasks audited", summarize_audit, render_audit, plot_audit)


def render_audit(data: dict, max_listed: int = 10) -> str:
    grid = data["grid"]
    lines = [
        f"audit: {data['configurations']} configurations ({len(grid['optimizers'])} optimizers × "
        f"{len(grid['dtypes'])} dtypes × lr factors {','.join(f'{f:g}' for f in grid['lr_factors'])} × hidden "
        f"{','.join(map(str, grid['hidden']))} × {grid['seeds']} seeds), {grid['epochs']} epochs; every pair "
        "judged by lockstep at about 200 epochs (the verdict, for rows that step) and by drift alone "
        "(16 × each seed's envelope, as a trajectory-only row is judged)",
        "",
        f"{'optimizer':<10} {'dtype':<8} {'verdict median':>14} {'p99':>8} {'max':>8} "
        f"{'drift median':>12} {'p99':>8} {'max':>8}",
    ]
    for optimizer, per_dtype in data["margins"].items():
        for dtype, m in per_dtype.items():
            d = data["drift_margins"][optimizer][dtype]
            lines.append(
                f"{optimizer:<10} {dtype:<8} {m['median']:14.3g} {m['p99']:8.3g} {m['max']:8.3g} "
                f"{d['median']:12.3g} {d['p99']:8.3g} {d['max']:8.3g}"
            )
    lines += ["", f"{'judge':<9} {'alarms':>7} {'configurations':>15} {'95% bound':>10} {'largest margin':>15}"]
    for judge, j in data["judges"].items():
        lines.append(
            f"{judge:<9} {j['alarms']:7d} {j['configurations_alarmed']:15d} {j['fpr_upper_95']:10.3g} "
            f"{j['largest_margin']:15.3g}"
        )
    alarms = data["false_alarms"]
    lines += [
        "",
        f"false alarms (by the verdict): {len(alarms)} in {data['configurations']} configurations "
        f"({data['configurations_alarmed']} configurations); 95% upper bound of the rate "
        f"{data['fpr_upper_95']:.3g}; known library gaps counted apart: {data['known_gaps']}",
        f"agree — rounding amplified by training (drift past its allowance, every step at rounding level): "
        f"{len(data['rounding_amplified'])} pairs in {data['configurations_amplified']} configurations",
        f"chaotic (one-ULP nudges part by > √u): {data['chaotic_configurations']} configurations",
    ]
    for f in alarms[:max_listed]:
        lines.append(
            f"  {f['optimizer']} {f['dtype']} lr {f['lr']:g} hidden {f['hidden']} seed {f['seed']}: "
            f"{f['pair']} margin {f['margin']:.3g} ({f['judged_by']})"
        )
    if len(alarms) > max_listed:
        lines.append(f"  ... and {len(alarms) - max_listed} more (all in --json)")
    lines.append(
        f"{data['tasks']} tasks on {len(data['workers'])} workers in {data['seconds']:.1f} s; "
        f"{data['retried_tasks']} retried after a worker died"
        + (f", {len(data['tasks_failed_twice'])} of them twice or more" if data["tasks_failed_twice"] else "")
        + f"; peak worker memory {data['peak_worker_memory_mib']:.0f} MiB"
    )
    return "\n".join(lines)


def plot_audit(data: dict, folder) -> list:
    """One heatmap per dtype: log10 of the worst margin over lr factor × optimizer."""
    from pathlib import Path

    from harness.report.plots import pyplot, save_figure

    plt = pyplot()
    grid, cells = data["grid"], data["worst_margin_by_lr"]
    dtypes = grid["dtypes"]
    fig, axes = plt.subplots(1, len(dtypes), figsize=(6.5 * len(dtypes), 4.5), squeeze=False, layout="constrained")
    for ax, dtype in zip(axes[0], dtypes, strict=True):
        heat = np.full((len(grid["optimizers"]), len(grid["lr_factors"])), np.nan)
        for c in cells:
            if c["dtype"] == dtype:
                heat[grid["optimizers"].index(c["optimizer"]), grid["lr_factors"].index(c["lr_factor"])] = c["margin"]
        image = ax.imshow(np.log10(np.maximum(heat, 1e-3)), cmap="viridis", vmin=-2.0, vmax=1.0, aspect="auto")
        for (i, j), value in np.ndenumerate(heat):
            ax.text(j, i, f"{value:.2g}", ha="center", va="center", color="white" if value < 0.3 else "black")
        ax.set(
            xticks=range(len(grid["lr_factors"])),
            xticklabels=[f"{f:g}×" for f in grid["lr_factors"]],
            yticks=range(len(grid["optimizers"])),
            yticklabels=grid["optimizers"],
            xlabel="learning rate",
            title=f"{dtype}: worst margin (over 1: a false alarm)",
        )
    fig.colorbar(image, ax=axes[0].tolist(), label="log10 worst margin")
    path = Path(folder) / "audit_margins.png"
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_figure(fig, path)
    plt.close(fig)
    return [path]
