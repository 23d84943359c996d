"""Figures: the article's two per row, all rows' loss curves overlaid, the drift of
a pair; and the two helpers every command's figures use (``pyplot``, ``save_figure``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.files.outputs import write_atomic
from reference.spec import predict, unflatten_params, xor_data

GRID_STEP = 0.01
CLASS_COLOURS = ("#CCFFCC", "#FFCCCC")  # class 0, class 1, as in the article


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100, bbox_inches="tight"))


def draw_decision_regions(ax, final_flat, hidden: int, title: str) -> None:
    """The article's figure on ``ax``: regions where the rounded output is 0 or 1,
    on a 0.01 grid over [−0.5, 1.5]², and the four points by class."""
    X, y = xor_data("float64")
    axis = np.arange(-0.5, 1.5, GRID_STEP)
    x1, x2 = np.meshgrid(axis, axis)
    params = unflatten_params(np.asarray(final_flat, dtype=np.float64), hidden)
    regions = np.round(predict(params, np.c_[x1.ravel(), x2.ravel()])).reshape(x1.shape)
    ax.contourf(x1, x2, regions, levels=1, colors=CLASS_COLOURS)
    for cls, colour in ((1, "r"), (0, "g")):
        mask = y[:, 0] == cls
        ax.scatter(X[mask, 0], X[mask, 1], color=colour, label=f"class {cls}")
    ax.set(xlabel="x1", ylabel="x2", title=title)
    ax.legend(loc="best")
    ax.grid(True)


def decision_figure(traj, hidden: int, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    draw_decision_regions(ax, traj.params[-1], hidden, f"XOR decision regions: {traj.name}")
    save_figure(fig, path)
    plt.close(fig)


def loss_figure(traj, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, traj.epochs + 1), traj.loss)
    ax.set(xlabel="epoch", ylabel="MSE", title=f"training loss: {traj.name}")
    ax.grid(True)
    save_figure(fig, path)
    plt.close(fig)


def overlay_figure(trajectories: dict, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":", "-.")
    for i, traj in enumerate(trajectories.values()):
        ax.plot(np.arange(1, traj.epochs + 1), traj.loss, styles[i % len(styles)], label=traj.name)
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="MSE (log scale)", title="training loss, all rows")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    save_figure(fig, path)
    plt.close(fig)


def write_all(trajectories: dict, hidden: int, folder) -> list:
    """Every figure into ``folder``; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, traj in trajectories.items():
        written += [folder / f"{name}_decision.png", folder / f"{name}_loss.png"]
        decision_figure(traj, hidden, written[-2])
        loss_figure(traj, written[-1])
    written.append(folder / "loss_all_rows.png")
    overlay_figure(trajectories, written[-1])
    return written


def drift_figure(path, a: str, b: str, gap: np.ndarray, allowed: np.ndarray, lockstep_gap) -> None:
    """Log-scale: the free-running gap per epoch, the allowed envelope, and the
    lockstep error of the new params per step (exact zeros are left out: a log axis
    has no place for them)."""
    plt = pyplot()
    positive = lambda x: np.where(np.asarray(x, dtype=np.float64) > 0, x, np.nan)  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [
        (np.arange(gap.shape[0]), positive(gap), "-", "free-running gap |Δθ|, |Δloss|"),
        (np.arange(gap.shape[0]), positive(np.broadcast_to(allowed, gap.shape)), "--", "allowed (derived tolerance)"),
    ]
    if lockstep_gap is not None:
        series.append(
            (np.arange(1, lockstep_gap.shape[0] + 1), positive(lockstep_gap), ":", "lockstep |Δθ| after one step")
        )
    for x, values, style, label in series:
        ax.plot(x, values, style, label=label)
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _, _ in series])
    if finite.size:
        ax.set_ylim(max(finite.min() / 10, 1e-300), finite.max() * 10)
    ax.set_yscale("log")
    ax.set(xlabel="epoch", ylabel="gap", title=f"{a} vs {b}: drift and per-step error")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    save_figure(fig, Path(path))
    plt.close(fig)
