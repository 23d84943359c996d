"""``python compare.py flavors``: every Adam form (and both gradient conventions for the
seed's form) from one initial state, side by side.

The effective step size relative to ``paper`` is measured at the same state: the paper
run's m and v at that epoch (scaled as the convention's gradient would scale them:
m·s, v·s² with s = GRAD_SCALE) go through each form's update, and the ratio of the
update norms is printed.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from harness.commands import options
from harness.engine.execution import run_row
from harness.report.text import solved_from
from reference import adam as spec
from reference.spec import GRAD_SCALE, Config, initial_params

DESCRIPTION = ("Run every Adam form (paper, epshat, seed; the seed form with both gradient conventions) from one "
               "initial state and compare final loss, when XOR is solved, step size and parameter gap.")
EPILOG = None

FLAVORS = (("paper", "mse"), ("epshat", "mse"), ("seed", "mse"), ("seed", "half-sse"))
STEP_EPOCHS = (1, 10, 100, 1000, 20000)


def add_arguments(parser) -> None:
    options.add_problem_options(parser)
    parser.add_argument("--json", metavar="FILE", help="write the table as JSON")
    parser.add_argument("--plot", metavar="DIR", help="loss curves overlaid and decision regions side by side")


def main(args, parser) -> int:
    from harness.files.environment import environment

    cfg = options.config_from(args, parser)
    outputs = options.check_outputs(parser, args, files=("json",), folders=("plot",))
    options.refuse_if_too_large(parser, "flavors", cfg, len(FLAVORS))
    result = run_flavors(cfg)
    print(render_flavors(result))
    return options.finish(parser, outputs, result, {"environment": environment()},
                          plots=lambda folder: plot_flavors(result, folder))


@dataclass
class FlavorsResult(options.Result):
    runs: dict  # (adam form, gradient convention) -> the numpy row's Trajectory


def flavor_label(adam: str, grad: str) -> str:
    return f"{adam}/{grad}"


def run_flavors(cfg: Config) -> FlavorsResult:
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    runs = {}
    for adam, grad in FLAVORS:
        runs[(adam, grad)] = run_row("numpy", replace(cfg, adam=adam, grad=grad), params0, record_states=True)
    paper = runs[("paper", "mse")]
    epochs = [e for e in STEP_EPOCHS if e <= cfg.epochs]
    table = {}
    for (adam, grad), run in runs.items():
        steps = {}
        for e in epochs:
            scale = GRAD_SCALE[grad]
            m, v = paper.states["m"][e] * scale, paper.states["v"][e] * scale**2
            ours = spec.adam_delta(m, v, e, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, adam)
            theirs = spec.adam_delta(paper.states["m"][e], paper.states["v"][e], e, cfg.lr, cfg.beta1,
                                     cfg.beta2, cfg.eps, "paper")
            steps[e] = float(np.linalg.norm(ours) / np.linalg.norm(theirs))
        table[flavor_label(adam, grad)] = {
            "adam": adam, "grad": grad,
            "final_loss": float(run.loss[-1]),
            "solved_from_epoch": solved_from(run.params, cfg.hidden),
            "step_vs_paper": steps,
            "max_param_gap_to_paper": float(np.abs(run.params.astype(np.float64) - paper.params).max()),
        }
    return FlavorsResult({"config": cfg.to_dict(), "flavors": table}, runs)


def render_flavors(result: FlavorsResult) -> str:
    cfg = result["config"]
    first = next(iter(result["flavors"].values()))
    epochs = list(first["step_vs_paper"])
    lines = [f"Adam forms from the same initial weights (seed {cfg['seed']}, lr {cfg['lr']:g}, {cfg['epochs']} "
             f"epochs, {cfg['dtype']}, numpy row); the logged loss is the MSE in every row", "",
             f"{'form/gradient':<16} {'final loss':>11} {'solved from':>12}  "
             + " ".join(f"{'step@' + str(e):>10}" for e in epochs) + f"  {'max|Δθ| to paper':>17}"]
    for label, row in result["flavors"].items():
        solved = "never" if row["solved_from_epoch"] is None else str(row["solved_from_epoch"])
        steps = " ".join(f"{row['step_vs_paper'][e]:10.3f}" for e in epochs)
        lines.append(f"{label:<16} {row['final_loss']:11.4e} {solved:>12}  {steps}  {row['max_param_gap_to_paper']:17.3e}")
    lines += ["", "step@e: the form's update norm over paper's, from paper's m and v at epoch e (scaled as the "
              "gradient convention scales them); 'solved from': the epoch after which all four rounded "
              "predictions are right to the end"]
    return "\n".join(lines)


def plot_flavors(result: FlavorsResult, folder) -> list:
    from pathlib import Path

    from harness.report.plots import draw_decision_regions, pyplot, save_figure

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = result.runs
    hidden = result["config"]["hidden"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (adam, grad), run in runs.items():
        ax.plot(np.arange(1, run.loss.shape[0] + 1), run.loss, label=flavor_label(adam, grad))
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="MSE (log scale)", title="training loss per Adam form")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    written = [folder / "flavors_loss.png"]
    save_figure(fig, written[-1])
    plt.close(fig)
    fig, axes = plt.subplots(1, len(runs), figsize=(4.5 * len(runs), 4.5))
    for ax, ((adam, grad), run) in zip(np.atleast_1d(axes), runs.items()):
        draw_decision_regions(ax, run.params[-1], hidden, flavor_label(adam, grad))
    written.append(folder / "flavors_decision_regions.png")
    save_figure(fig, written[-1])
    plt.close(fig)
    return written
