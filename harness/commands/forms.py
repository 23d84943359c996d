"""``python compare.py forms`` (``flavors``, its old name, for one release): every Adam
form (and both gradient conventions for the article's form) from one initial state, side by
side, and whether other rows compute each form as the numpy row does.

The effective step size relative to ``paper`` is measured at the same state: the paper
run's m and v at that epoch (scaled as the convention's gradient would scale them:
m·s, v·s² with s = GRAD_SCALE) go through each form's update, and the ratio of the
update norms is printed.

Per form, every other row that implements it (by default the series' other languages,
octave and scilab, where installed) is judged against numpy by its free-running drift:
16 × the envelope of numpy runs nudged by one ULP, as ``lineage`` judges.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import numpy as np

from harness.commands import arguments, ending, row_choice
from harness.engine.agreement import K_ENVELOPE, compare_all, envelope_of
from harness.engine.execution import CouldNotRun, Workers, config_tasks
from harness.engine.rows import LANGUAGE_ROWS, device_problem, expected_cost
from harness.report.text import solved_from
from reference import adam as spec
from reference.spec import GRAD_SCALE, Config, initial_params

DESCRIPTION = (
    "Run every Adam form (paper, epshat, article; the article's form with both gradient conventions) from one "
    "initial state and compare final loss, when XOR is solved, step size and parameter gap; judge other rows "
    "(by default the series' other languages) in each form against numpy."
)
EPILOG = "exit status: 0 every row computes every form as numpy does, 1 otherwise, 2 bad usage"

FORMS = (("paper", "mse"), ("epshat", "mse"), ("article", "mse"), ("article", "half-sse"))
STEP_EPOCHS = (1, 10, 100, 1000, 20000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    arguments.add_execution_options(parser)
    arguments.add_rows_option(
        parser,
        f"rows to judge against numpy per form (default: {','.join(LANGUAGE_ROWS)}, those "
        "installed); a row joins the forms it implements",
    )
    arguments.add_output_options(
        parser, json="the table", plot="loss curves overlaid and decision regions side by side"
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.environment import environment

    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=("plot",))
    names, skipped = row_choice.requested_or_default([n for n in args.backends or [] if n != "numpy"], LANGUAGE_ROWS)
    if args.backends and skipped:
        parser.error(next(iter(skipped.values())))
    problems = [p for p in (device_problem(n, args.device) for n in names) if p]
    if problems:
        parser.error(problems[0])
    ending.refuse_if_too_large(parser, "forms", cfg, len(FORMS) * (2 + len(names)))
    ending.notice_skipped(skipped.values())
    result = run_forms(cfg, names, args.jobs, args.device)
    ending.notice_skipped(result["skipped"].values())
    print("\n".join([render_forms(result), *ending.could_not_run_lines(result.could_not_run)]))
    return ending.finish(
        parser, outputs, result, {"environment": environment()}, plots=lambda folder: plot_forms(result, folder)
    )


@dataclass
class FormsResult(ending.Result):
    runs: dict  # (adam form, gradient convention) -> the numpy row's Trajectory


def form_label(adam: str, grad: str) -> str:
    return f"{adam}/{grad}"


def form_tasks(cfg: Config, names: list, device: str) -> list:
    """Per form: the numpy row with its states, its perturbed runs (the envelope) and
    every row of ``names`` that implements the form; the slowest first."""
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    tasks = []
    for adam, grad in FORMS:
        tasks += config_tasks(
            (adam, grad),
            replace(cfg, adam=adam, grad=grad),
            ["numpy", *names],
            params0,
            device,
            envelope=bool(names),
            numpy_states=True,
        )
    return sorted(tasks, key=lambda task: -expected_cost(task[0][2], unknown=4))


def judge_rows(cfg: Config, trained: dict) -> dict:
    """Each row against numpy in one form: {row: its pair's verdict and margin}."""
    rows = {name: run for name, run in trained.items() if name != "perturbed"}
    if len(rows) < 2:
        return {}
    envelope = envelope_of(rows["numpy"], trained["perturbed"])
    ordered = {"numpy": rows["numpy"]} | rows  # numpy first: the reference
    return {
        a.b: {
            "passed": a.passed,
            "margin": a.margin,
            "max_abs_param_diff": a.max_abs_param_diff,
            "max_abs_loss_diff": a.max_abs_loss_diff,
            "tolerance": a.tolerance,
        }
        for a in compare_all(ordered, cfg.dtype, envelope)
    }


def run_forms(cfg: Config, names: tuple | list = (), jobs: int = 1, device: str = "cpu") -> FormsResult:
    trained: dict = {}
    skipped: dict = {}
    failed: dict = {}
    tasks = form_tasks(cfg, list(names), device)
    with Workers(min(jobs, len(tasks))) as workers:
        for (adam, grad, row), result in workers.run(tasks):
            if isinstance(result, str):
                skipped[row] = result
            elif isinstance(result, CouldNotRun):
                failed.setdefault(row, result.reason)
            else:
                trained.setdefault((adam, grad), {})[row] = result
    for rows_of_form in trained.values():  # a row that failed anywhere is out
        for row in failed:
            rows_of_form.pop(row, None)
    runs = {form: trained[form]["numpy"] for form in FORMS}
    paper = runs[("paper", "mse")]
    epochs = [e for e in STEP_EPOCHS if e <= cfg.epochs]
    table = {}
    for (adam, grad), run in runs.items():
        steps = {}
        for e in epochs:
            scale = GRAD_SCALE[grad]
            m, v = paper.states["m"][e] * scale, paper.states["v"][e] * scale**2
            ours = spec.adam_delta(m, v, e, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, adam)
            theirs = spec.adam_delta(
                paper.states["m"][e], paper.states["v"][e], e, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, "paper"
            )
            steps[e] = float(np.linalg.norm(ours) / np.linalg.norm(theirs))
        table[form_label(adam, grad)] = {
            "adam": adam,
            "grad": grad,
            "final_loss": float(run.loss[-1]),
            "solved_from_epoch": solved_from(run.params, cfg.hidden),
            "step_vs_paper": steps,
            "max_param_gap_to_paper": float(np.abs(run.params.astype(np.float64) - paper.params).max()),
            "rows": judge_rows(cfg, trained[(adam, grad)]),
        }
    passed = all(r["passed"] for entry in table.values() for r in entry["rows"].values())
    rows = [n for n in names if n not in skipped and n not in failed]
    data = {"config": cfg.to_dict(), "rows": rows, "skipped": skipped, "could_not_run": failed}
    return FormsResult(data | {"flavors": table, "passed": passed}, runs)


def render_forms(result: FormsResult) -> str:
    cfg = result["config"]
    first = next(iter(result["flavors"].values()))
    epochs = list(first["step_vs_paper"])
    lines = [
        f"Adam forms from the same initial weights (seed {cfg['seed']}, lr {cfg['lr']:g}, {cfg['epochs']} "
        f"epochs, {cfg['dtype']}, numpy row); the logged loss is the MSE in every row",
        "",
        f"{'form/gradient':<16} {'final loss':>11} {'solved from':>12}  "
        + " ".join(f"{'step@' + str(e):>10}" for e in epochs)
        + f"  {'max|Δθ| to paper':>17}",
    ]
    rows = result["rows"]
    lines[-1] += "".join(f"  {n:>8}" for n in rows)
    for label, row in result["flavors"].items():
        solved = "never" if row["solved_from_epoch"] is None else str(row["solved_from_epoch"])
        steps = " ".join(f"{row['step_vs_paper'][e]:10.3f}" for e in epochs)
        judged = "".join(f"  {_margin_cell(row['rows'].get(n)):>8}" for n in rows)
        lines.append(
            f"{label:<16} {row['final_loss']:11.4e} {solved:>12}  {steps}  "
            f"{row['max_param_gap_to_paper']:17.3e}{judged}"
        )
    lines += [
        "",
        "step@e: the form's update norm over paper's, from paper's m and v at epoch e (scaled as the "
        "gradient convention scales them); 'solved from': the epoch after which all four rounded "
        "predictions are right to the end",
    ]
    if rows:
        lines += [
            f"{', '.join(rows)}: each row's margin against numpy in that form (largest gap over {K_ENVELOPE:g} × the "
            "envelope of runs nudged by one ULP; over 1 is NO); - where the row does not implement the form",
            "",
            "every row computes every form as numpy does" if result.passed else "disagreement (see NO above)",
        ]
    return "\n".join(lines)


def _margin_cell(judged) -> str:
    if judged is None:
        return "-"
    return f"{judged['margin']:.3f}" if judged["passed"] else f"NO {judged['margin']:.3g}"


def plot_forms(result: FormsResult, folder) -> list:
    from pathlib import Path

    from harness.report.plots import draw_decision_regions, pyplot, save_figure

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = result.runs
    hidden = result["config"]["hidden"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (adam, grad), run in runs.items():
        ax.plot(np.arange(1, run.loss.shape[0] + 1), run.loss, label=form_label(adam, grad))
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="MSE (log scale)", title="training loss per Adam form")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    written = [folder / "flavors_loss.png"]
    save_figure(fig, written[-1])
    plt.close(fig)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.5))
    for ax, ((adam, grad), run) in zip(np.atleast_1d(axes), runs.items(), strict=True):
        draw_decision_regions(ax, run.params[-1], hidden, form_label(adam, grad))
    written.append(folder / "flavors_decision_regions.png")
    save_figure(fig, written[-1])
    plt.close(fig)
    return written
