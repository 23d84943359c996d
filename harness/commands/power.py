"""``python compare.py power``: the smallest planted error the harness catches, per phase,
kind of error and judge (``harness.engine.power``), on a dask.distributed cluster."""

from __future__ import annotations

import argparse

from harness.commands import arguments, ending

DESCRIPTION = (
    "Measure the harness's power: plant a relative error δ (systematic, or of random sign per element) in "
    "one phase of the numpy row's step, scan δ from 1 ULP to 1e-2, and report the smallest δ that lockstep "
    "and that free-running drift alone catch, with the epoch they first do, on a dask.distributed cluster."
)
EPILOG = "exit status: 0 the scan ran, 2 bad usage, an unreachable scheduler or a lost task"
SEEDS, EPOCHS = 2, 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_grid_options(parser, SEEDS, EPOCHS, lr_factors=[1.0], hidden=[4])
    arguments.add_output_options(
        parser,
        json="the thresholds and detection curves",
        plot="write the detection curves, one figure per optimizer and dtype",
        report="the report, its figures and its JSON's tables",
    )


def tasks_of(args) -> list:
    from harness.engine.audit import grid_cells
    from harness.engine.power import power_task

    cells = grid_cells(args.optimizers, args.dtypes, args.lr_factors, args.hidden, args.epochs)
    return [((i, seed), power_task, (cell.config(seed),)) for i, cell in enumerate(cells) for seed in range(args.seeds)]


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.engine.power import summarize_power

    arguments.check_grid(parser, args)
    return ending.grid_command(parser, args, tasks_of(args), "tasks scanned", summarize_power, render_power, plot_power)


def _caught(entry: dict) -> str:
    if entry["smallest_caught_ulps"] is None:
        return f"{'not caught':>22}"
    return f"{entry['smallest_caught_ulps']:>10.4g} {entry['smallest_caught_relative']:>11.2e}"


def render_power(data: dict) -> str:
    grid = data["grid"]
    lines = [
        f"power: δ from 1 ULP to 1e-2 planted in one phase of the numpy row, judged against the clean row; "
        f"{grid['epochs']} epochs, {grid['seeds']} seeds (a δ counts as caught when it and every larger δ are "
        "caught in every seed)",
        "",
        f"{'optimizer':<10} {'dtype':<8} {'phase':<8} {'kind':<11} {'judge':<9} {'ULPs':>10} {'relative':>11} "
        f"{'first epoch':>11}",
    ]
    for t in data["thresholds"]:
        first = "" if t["first_epoch"] is None else str(t["first_epoch"])
        lines.append(
            f"{t['optimizer']:<10} {t['dtype']:<8} {t['phase']:<8} {t['kind']:<11} {t['judged_by']:<9} "
            f"{_caught(t)} {first:>11}"
        )
    lines.append(
        f"{data['tasks']} tasks on {len(data['workers'])} workers in {data['seconds']:.1f} s; "
        f"{data['retried_tasks']} retried after a worker died; peak worker memory "
        f"{data['peak_worker_memory_mib']:.0f} MiB"
    )
    return "\n".join(lines)


def plot_power(data: dict, folder) -> list:
    """Per optimizer and dtype: the share of seeds that catch δ, per phase, one panel per
    kind and judge."""
    from pathlib import Path

    from harness.report.plots import pyplot, save_figure

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    groups: dict[tuple, list] = {}
    for t in data["thresholds"]:
        groups.setdefault((t["optimizer"], t["dtype"]), []).append(t)
    for (optimizer, dtype), entries in groups.items():
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True, sharey=True, layout="constrained")
        for row, judge in enumerate(("lockstep", "drift")):
            for col, kind in enumerate(("systematic", "random")):
                ax = axes[row][col]
                for t in entries:
                    if t["judged_by"] == judge and t["kind"] == kind:
                        ax.semilogx(t["deltas"], t["caught_share"], marker=".", label=t["phase"])
                ax.set(
                    title=f"{judge}, {kind}",
                    ylabel="share of seeds caught",
                    xlabel="planted relative error δ" if row else "",
                )
        axes[0][0].legend(loc="best", fontsize="small")
        fig.suptitle(f"{optimizer}, {dtype}: detection of a planted error")
        written.append(folder / f"power_{optimizer}_{dtype}.png")
        save_figure(fig, written[-1])
        plt.close(fig)
    return written
