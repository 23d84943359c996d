"""``python compare.py lineage``: every optimizer of the lineage from the same initial
weights, each at its conventional defaults, in every row; one table.

Per optimizer the rows are judged as in the default run by their free-running drift
against numpy (16 × the envelope of runs nudged by one ULP at the start and every step); lockstep is
left to ``compare.py --optimizer NAME``, which runs it. A known library gap
(``reference.optimizers.LIBRARY_GAPS``) that shows is reported as expected.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from harness.commands import arguments, ending, row_choice
from harness.engine.agreement import K_ENVELOPE, compare_all, envelope_of
from harness.engine.execution import CouldNotRun, Workers, config_tasks
from harness.engine.pipeline import Untold
from harness.engine.rows import DEFAULT_ROWS, LANGUAGE_ROWS, ROWS, expected_cost, expected_gap
from harness.engine.verdict import explain_gap
from harness.report.text import solved_from
from reference.optimizers import OPTIMIZERS
from reference.spec import GRAD_CONVENTIONS, Config, initial_params

DESCRIPTION = (
    "Train every optimizer (" + ", ".join(OPTIMIZERS) + ") from the same initial weights, each at its "
    "conventional default hyperparameters, in every row; one table of final loss, the epoch XOR is solved "
    "from, agreement across rows and µs/epoch."
)
LINEAGE_ROWS = DEFAULT_ROWS + LANGUAGE_ROWS  # every row that implements the whole lineage
EPILOG = (
    "exit status: 0 every optimizer agrees across its rows (known library differences aside), 1 otherwise, 2 bad usage"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser, lr=False)  # each optimizer at its own learning rate
    parser.add_argument(
        "--grad",
        choices=GRAD_CONVENTIONS,
        default=arguments.DEFAULTS.grad,
        help="gradient of: mse or half-sse (default %(default)s)",
    )
    arguments.add_execution_options(parser)
    arguments.add_rows_option(
        parser, f"rows to run, the first is the reference (default: {','.join(LINEAGE_ROWS)}, those installed)"
    )
    arguments.add_output_options(
        parser,
        json="the table",
        plot="loss curves overlaid and a grid of decision regions",
        report="the report, its figures and its JSON's tables",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.environment import environment
    from harness.report.progress import Board

    base = Config(hidden=args.hidden, epochs=args.epochs, seed=args.seed, dtype=args.dtype, grad=args.grad)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=("plot",))
    partial = [n for n in args.backends or [] if not set(ROWS[n].optimizers) >= set(OPTIMIZERS)]
    if partial:
        wrong = partial[0]
        parser.error(f"row {wrong} implements {'/'.join(ROWS[wrong].optimizers)} only, not the whole lineage")
    names, skipped = available_rows(args.backends)
    if args.backends and skipped:
        parser.error(next(iter(skipped.values())))
    if not names:
        parser.error("no row can run: none of the frameworks is installed")
    ending.refuse_if_too_large(parser, "lineage", base, len(names), runs=len(OPTIMIZERS))
    ending.notice_skipped(skipped.values())
    with Board() as board:
        result = run_lineage(base, names, args.jobs, args.device, progress=board)
    ending.notice_skipped(result["skipped"].values())
    text = "\n".join([render_lineage(result), *ending.could_not_run_lines(result.could_not_run)])
    print(text)
    return ending.finish(
        parser, outputs, result, {"environment": environment()}, plots=lambda f: plot_lineage(result, f), text=text
    )


@dataclass
class LineageResult(ending.Result):
    runs: dict  # (optimizer, row) -> Trajectory


def lineage_config(base: Config, optimizer: str) -> Config:
    """``base``'s problem (hidden, epochs, seed, dtype, gradient) with ``optimizer`` at
    its default hyperparameters."""
    return Config(
        optimizer=optimizer, hidden=base.hidden, epochs=base.epochs, seed=base.seed, dtype=base.dtype, grad=base.grad
    )


def run_lineage(base: Config, names: list, jobs: int, device: str = "cpu", progress=None) -> LineageResult:
    """Train every optimizer in every row of ``names`` that implements it (numpy first,
    with its perturbed starts for the envelope), all in one pool of ``jobs`` processes."""
    progress = progress or Untold()
    params0 = initial_params(base.seed, base.hidden, base.dtype)
    configs = {name: lineage_config(base, name) for name in OPTIMIZERS}
    tasks = []
    for name, cfg in configs.items():
        tasks += config_tasks((name,), cfg, names, params0, device, envelope=names[0] == "numpy")
    tasks.sort(key=lambda task: -expected_cost(task[0][1], unknown=4))  # the slowest rows first
    runs: dict = {}
    skipped: dict = {}
    failed: dict = {}
    for row in [*names, "perturbed"]:
        label = "numpy's nudged runs" if row == "perturbed" else row
        progress.add(row, label, total=sum(1 for key, _, _ in tasks if key[-1] == row), status="running")
    with Workers(min(jobs, len(tasks))) as workers:
        for (name, row), result in workers.run(tasks):
            progress.advance(row)
            if isinstance(result, str):
                skipped[row] = result
                continue
            if isinstance(result, CouldNotRun):
                failed.setdefault(row, result.reason)
                progress.notice(f"  {name:<9} {row:<12} could not run: {result.reason}")
                continue
            runs[(name, row)] = result

    table = {}
    for name, cfg in configs.items():
        table[name] = summarize_optimizer(cfg, names, runs, device)
    data = {
        "config": {k: v for k, v in base.to_dict().items() if k in ("hidden", "epochs", "seed", "dtype", "grad")},
        "rows": [n for n in names if n not in skipped and n not in failed],
        "skipped": skipped,
        "could_not_run": failed,
        "optimizers": table,
        "passed": all(entry["passed"] for entry in table.values()),
    }
    runs = {key: run for key, run in runs.items() if key[1] not in failed}  # a row that failed anywhere is out
    return LineageResult(data, {key: run for key, run in runs.items() if key[1] != "perturbed"})


def summarize_optimizer(cfg: Config, names: list, runs: dict, device: str = "cpu") -> dict:
    name = cfg.optimizer
    trajectories = {row: runs[(name, row)] for row in names if (name, row) in runs}
    perturbed = runs.get((name, "perturbed"))
    envelope = None
    if perturbed is not None and "numpy" in trajectories:
        envelope = envelope_of(trajectories["numpy"], perturbed)
    pairs = []
    for agreement in compare_all(trajectories, cfg.dtype, envelope):
        pair = agreement.to_dict()
        gap = expected_gap(agreement.b, cfg)
        if gap:
            pair |= explain_gap(gap, agreement.passed, None).to_json()
        elif not agreement.passed and agreement.a == "numpy" and ROWS[agreement.b].lockstep:
            pair |= lockstep_word(cfg, agreement.b, device)
        pairs.append(pair)
    judged = [p for p in pairs if not p.get("expected")]
    reference = next(iter(trajectories.values()))
    return {
        "title": OPTIMIZERS[name].title,
        "hyperparameters": {k: getattr(cfg, k) for k in OPTIMIZERS[name].defaults},
        "reference_row": reference.name,
        "final_loss": float(reference.loss[-1]),
        "solved_from_epoch": solved_from(reference.params, cfg.hidden),
        "largest_gap": max((max(p["max_abs_param_diff"], p["max_abs_loss_diff"]) for p in judged), default=0.0),
        "margin": max((p["margin"] for p in judged), default=0.0),
        "tolerance": pairs[0]["tolerance"] if pairs else None,
        "rows_agree": all(p["passed"] for p in judged),
        "pairs": pairs,
        "expected": {p["b"]: p["expected_reason"] for p in pairs if p.get("expected")},
        "us_per_epoch": {row: t.us_per_epoch for row, t in trajectories.items()},
        "passed": all(p["passed"] or p.get("explained", False) for p in pairs),
    }


def lockstep_word(cfg: Config, row: str, device: str) -> dict:
    """A pair whose drift exceeds the envelope, judged again as the default run judges it,
    with lockstep: every step at rounding level makes it rounding that training amplified
    (Rprop's saturated gradients, flushed to zero by XLA, part the JAX row), a failing
    step a difference."""
    from harness.engine.pipeline import run_default

    judged = run_default(cfg, ["numpy", row], device, 1, {}).pairs[0]
    return {
        "passed": judged.passed,
        "rounding_amplified": judged.amplified,
        "lockstep_max_ulp": judged.lockstep_max_ulp,
        "diagnosis": judged.diagnosis,
    }


def render_lineage(result: LineageResult) -> str:
    cfg = result["config"]
    rows = result["rows"]
    hypers = {
        name: ", ".join(f"{k} {v:g}" for k, v in entry["hyperparameters"].items())
        for name, entry in result["optimizers"].items()
    }
    width = max(len(h) for h in hypers.values())
    lines = [
        f"the optimizer lineage from the same initial weights: XOR 2-{cfg['hidden']}-1, seed {cfg['seed']}, "
        f"{cfg['epochs']} epochs, {cfg['dtype']}, each optimizer at its defaults (torch.optim's; momentum's μ 0.9)",
        f"rows: {', '.join(rows)}; agreement: free-running drift against {rows[0]} ({K_ENVELOPE:g} × the envelope of "
        "runs nudged by one ULP); lockstep: compare.py --optimizer NAME",
        "",
        f"{'optimizer':<10} {'hyperparameters':<{width}} {'final loss':>10} {'solved from':>11} {'largest gap':>11} "
        f"{'margin':>7} {'rows agree':<10}  µs/epoch " + " / ".join(rows),
    ]
    notes = []
    for name, entry in result["optimizers"].items():
        hyper = hypers[name]
        solved = "never" if entry["solved_from_epoch"] is None else str(entry["solved_from_epoch"])
        expected = entry["expected"]
        verdict = "yes" if entry["rows_agree"] else "NO"
        if expected:
            verdict += "*"
            shown = [p for p in entry["pairs"] if p.get("expected")]
            for p in shown:
                seen = (
                    "differs as explained" if p["explained"] else "agrees here" if p["passed"] else "DIFFERS otherwise"
                )
                notes.append(
                    f"* {name}, {p['b']} ({seen}; max|Δθ| {p['max_abs_param_diff']:.2e}): {p['expected_reason']}"
                )
        for p in entry["pairs"]:
            if p.get("rounding_amplified"):
                verdict += "†"
                notes.append(f"† {name}, {p['b']} (max|Δθ| {p['max_abs_param_diff']:.2e}): {p['diagnosis']}")
        speeds = " / ".join(f"{entry['us_per_epoch'][r]:.1f}" if r in entry["us_per_epoch"] else "-" for r in rows)
        lines.append(
            f"{name:<10} {hyper:<{width}} {entry['final_loss']:10.4e} {solved:>11} {entry['largest_gap']:11.2e} "
            f"{entry['margin']:7.3f} {verdict:<10}  {speeds}"
        )
    lines += [
        "",
        "largest gap: max |Δθ| or |Δloss| over the pairs not marked *; margin: that over the allowed; "
        "solved from: the epoch after which the numpy row's rounded outputs are 0 1 1 0 to the end; "
        "µs/epoch with rows running side by side (compare.py bench times one at a time)",
    ]
    lines += notes
    failing = [n for n, e in result["optimizers"].items() if not e["passed"]]
    lines.append("")
    lines.append(
        "every optimizer agrees across its rows" + (" (known library differences aside, *)" if notes else "")
        if not failing
        else f"disagreement in: {', '.join(failing)} (run compare.py --optimizer NAME to locate it)"
    )
    return "\n".join(lines)


def plot_lineage(result: LineageResult, folder) -> list:
    from pathlib import Path

    from harness.report.plots import draw_decision_regions, pyplot, save_figure

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hidden = result["config"]["hidden"]
    reference = result["rows"][0]
    runs = {name: result.runs[(name, reference)] for name in result["optimizers"] if (name, reference) in result.runs}
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (name, run) in enumerate(runs.items()):
        ax.plot(np.arange(1, run.loss.shape[0] + 1), run.loss, ("-", "--", ":")[i // 5 % 3], label=name)
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="MSE (log scale)", title=f"training loss per optimizer ({reference} row)")
    ax.legend(loc="best", ncol=2)
    ax.grid(True, which="both", alpha=0.4)
    written = [folder / "lineage_loss.png"]
    save_figure(fig, written[-1])
    plt.close(fig)
    columns = 3
    rows = -(-len(runs) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 4.5 * rows), squeeze=False, layout="constrained")
    for ax, (name, run) in zip(axes.ravel(), runs.items(), strict=False):  # a 3-column grid: some axes stay empty
        entry = result["optimizers"][name]
        draw_decision_regions(ax, run.params[-1], hidden, f"{name} (lr {entry['hyperparameters']['lr']:g})")
    for ax in axes.ravel()[len(runs) :]:
        ax.set_visible(False)
    written.append(folder / "lineage_decision_regions.png")
    save_figure(fig, written[-1])
    plt.close(fig)
    return written


def available_rows(requested) -> tuple[list, dict]:
    """The rows to run (requested ones, or the default ones whose framework is here)."""
    return row_choice.requested_or_default(requested, LINEAGE_ROWS)
