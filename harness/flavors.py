"""``python compare.py flavors``: every Adam form (and both gradient conventions for the
seed's form) from one initial state, side by side.

The effective step size relative to ``paper`` is measured at the same state: the paper
run's m and v at that epoch (scaled as the convention's gradient would scale them:
m·s, v·s² with s = GRAD_SCALE) go through each form's update, and the ratio of the
update norms is printed.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from reference import adam as spec
from reference.spec import GRAD_SCALE, Config, initial_params, unflatten_params, xor_data

FLAVORS = (("paper", "mse"), ("epshat", "mse"), ("seed", "mse"), ("seed", "half-sse"))
STEP_EPOCHS = (1, 10, 100, 1000, 20000)


def solved_from(params_history: np.ndarray, hidden: int):
    """The first epoch after which XOR is solved (rounded outputs 0 1 1 0) and stays
    solved to the end; None if never."""
    from backends import numpy_backend

    X, y = xor_data("float64")
    outputs = numpy_backend.forward(unflatten_params(params_history.astype(np.float64), hidden), X)["A2"]
    solved = np.all(np.round(outputs) == y, axis=(-2, -1))          # per record, row 0 = before training
    stays = np.logical_and.accumulate(solved[::-1])[::-1]
    return int(np.argmax(stays)) if stays.any() else None


def flavor_label(adam: str, grad: str) -> str:
    return f"{adam}/{grad}"


def run_flavors(cfg: Config) -> dict:
    from harness.rows import run_row

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
    return {"config": cfg.to_dict(), "flavors": table, "_runs": runs}


def render_flavors(result: dict) -> str:
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


def plot_flavors(result: dict, folder) -> list:
    from pathlib import Path

    from harness.plots import draw_decision_regions, pyplot, save_figure

    plt = pyplot()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = result["_runs"]
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
