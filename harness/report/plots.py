"""Figures: the article's two per row, all rows' loss curves overlaid, the drift of
a pair; and the two helpers every command's figures use (``pyplot``, ``save_figure``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.files.outputs import write_atomic
from reference.spec import predict, unflatten_params, xor_data

GRID_STEP = 0.01
CLASS_COLOURS = ("#CCFFCC", "#FFCCCC")  # class 0, class 1, as in the article
# Points per line: a figure 700 pixels wide shows no more, and drawing 20000 points per
# line made --plot take seconds; ``thinned`` keeps each bucket's lowest and highest point.
MAX_POINTS = 2000


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path):
    # fixed margins wide enough for the labels: fitting them (bbox_inches="tight", or a
    # layout engine) measures every tick label's text first, most of a figure's time
    width, height = fig.get_size_inches()
    if fig.get_layout_engine() is None:  # one made with layout="constrained" lays itself out
        fig.subplots_adjust(
            left=0.9 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height, wspace=0.3
        )
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100))


def log_scale(ax) -> None:
    """A log y axis labelled in plain text (1e-14), not in mathtext: typesetting
    $10^{-14}$ took a quarter of a drift figure's time. Minor ticks are labelled where
    the axis spans too few decades for the major ones alone, as matplotlib's default does."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def thinned(x, y, points: int = MAX_POINTS) -> tuple:
    """At most about ``points`` of the line (x, y): per bucket of consecutive points its
    lowest and highest, in order, so no spike or dip is lost at a figure's resolution
    (NaN, a point a log axis leaves out, stays NaN where a bucket holds nothing else)."""
    x, y = np.asarray(x), np.asarray(y, dtype=np.float64)
    n = len(y)
    if n <= points:
        return x, y
    per = -(-n // (points // 2))
    buckets = np.concatenate([y, np.full((-n) % per, np.nan)]).reshape(-1, per)
    missing = np.isnan(buckets)
    low = np.argmin(np.where(missing, np.inf, buckets), axis=1)
    high = np.argmax(np.where(missing, -np.inf, buckets), axis=1)
    picked = (np.arange(len(buckets))[:, None] * per + np.sort(np.stack([low, high], axis=1), axis=1)).ravel()
    picked = np.unique(picked[picked < n])
    return x[picked], y[picked]


def draw_decision_regions(ax, final_flat, hidden: int, title: str) -> None:
    """The article's figure on ``ax``: regions where the rounded output is 0 or 1,
    on a 0.01 grid over [−0.5, 1.5]², and the four points by class."""
    X, y = xor_data("float64")
    axis = np.arange(-0.5, 1.5, GRID_STEP)
    x1, x2 = np.meshgrid(axis, axis)
    params = unflatten_params(np.asarray(final_flat, dtype=np.float64), hidden)
    regions = np.round(predict(params, np.c_[x1.ravel(), x2.ravel()])).reshape(x1.shape)
    from matplotlib.colors import ListedColormap

    # one pixel per grid point, coloured by class (a filled contour of the same two levels drew 5× slower)
    extent = (axis[0] - GRID_STEP / 2, axis[-1] + GRID_STEP / 2) * 2
    ax.imshow(regions, origin="lower", extent=extent, cmap=ListedColormap(CLASS_COLOURS), vmin=0, vmax=1, aspect="auto")
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
    ax.plot(*thinned(np.arange(1, traj.epochs + 1), traj.loss))
    ax.set(xlabel="epoch", ylabel="MSE", title=f"training loss: {traj.name}")
    ax.grid(True)
    save_figure(fig, path)
    plt.close(fig)


def overlay_figure(trajectories: dict, path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":", "-.")
    for i, traj in enumerate(trajectories.values()):
        ax.plot(*thinned(np.arange(1, traj.epochs + 1), traj.loss), styles[i % len(styles)], label=traj.name)
    log_scale(ax)
    ax.set(xlabel="epoch", ylabel="MSE (log scale)", title="training loss, all rows")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    save_figure(fig, path)
    plt.close(fig)


def row_figures(trajectories: dict, hidden: int, folder) -> list:
    """The rows' figures for ``folder``, not yet drawn: (function, its arguments), each
    function writing its figure to the path its arguments end with."""
    folder = Path(folder)
    figures: list[tuple] = []
    for name, traj in trajectories.items():
        figures += [
            (decision_figure, (traj, hidden, folder / f"{name}_decision.png")),
            (loss_figure, (traj, folder / f"{name}_loss.png")),
        ]
    return figures + [(overlay_figure, (trajectories, folder / "loss_all_rows.png"))]


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
        ax.plot(*thinned(x, values), style, label=label)
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _, _ in series])
    if finite.size:
        ax.set_ylim(max(finite.min() / 10, 1e-300), finite.max() * 10)
    log_scale(ax)
    ax.set(xlabel="epoch", ylabel="gap", title=f"{a} vs {b}: drift and per-step error")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    save_figure(fig, Path(path))
    plt.close(fig)
