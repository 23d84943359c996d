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


def _fixed_margins(fig) -> None:
    # fixed margins wide enough for the labels: fitting them (bbox_inches="tight", or a
    # layout engine) measures every tick label's text first, most of a figure's time
    width, height = fig.get_size_inches()
    if fig.get_layout_engine() is None:  # one made with layout="constrained" lays itself out
        fig.subplots_adjust(
            left=0.9 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height, wspace=0.3
        )


def save_figure(fig, path):
    _fixed_margins(fig)
    write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100, pil_kwargs=FAST_PNG))


# zlib's fastest level: Pillow's default took a fifth of a small figure's time, for files
# about a quarter smaller
FAST_PNG = {"compress_level": 1}

# An inline figure is SVG up to this size, PNG above it (a line of thousands of points,
# a picture of pixels: SVG is then larger than the PNG and slower to show).
SVG_MOST_BYTES = 120_000


def figure_data(fig) -> tuple:
    """The figure for a page: ("svg+xml" or "png", its bytes), SVG where it is small."""
    import io

    import matplotlib

    _fixed_margins(fig)
    svg = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, not one path per glyph
        fig.savefig(svg, format="svg", metadata={"Date": None})
    if svg.tell() <= SVG_MOST_BYTES:
        return "svg+xml", svg.getvalue()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, pil_kwargs=FAST_PNG)
    return "png", png.getvalue()


# Figures redrawn with each row's data, by kind: (the figure, the artists that change).
# A new figure makes its axes and ticks again, most of a small figure's time.
_REUSED: dict = {}


def _close(fig) -> None:
    if not any(fig is kept[0] for kept in _REUSED.values()):
        pyplot().close(fig)


def drawn_to_file(draw, args: tuple, path) -> None:
    """``draw(*args)``'s figure written to ``path`` as PNG."""
    fig = draw(*args)
    try:
        save_figure(fig, Path(path))
    finally:
        _close(fig)


def drawn_to_data(draw, args: tuple) -> tuple:
    """``draw(*args)``'s figure as ``figure_data`` gives it."""
    fig = draw(*args)
    try:
        return figure_data(fig)
    finally:
        _close(fig)


def log_scale(ax, decades: float | None = None) -> None:
    """A log y axis labelled in plain text (1e-14), not in mathtext: typesetting
    $10^{-14}$ took a quarter of a drift figure's time. Minor ticks are labelled where
    the axis spans too few decades for the major ones alone, as matplotlib's default does;
    over more than 4 ``decades`` there are none (making 8 tick objects a decade was a third
    of a drift figure's time, and so many lines show nothing)."""
    from matplotlib.ticker import LogFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    if decades is not None:
        _minor_ticks(ax, decades)


def _minor_ticks(ax, decades: float) -> None:
    from matplotlib.ticker import LogLocator, NullLocator

    ax.yaxis.set_minor_locator(NullLocator() if decades > 4 else LogLocator(subs="auto"))


def titled(ax, text: str) -> None:
    """A title at a fixed height: placing it automatically measures every tick label's
    box first (a quarter of a drift figure's time)."""
    ax.set_title(text, y=1.0, pad=6)


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
    regions = decision_regions(final_flat, hidden)
    from matplotlib.colors import ListedColormap

    # one pixel per grid point, coloured by class (a filled contour of the same two levels drew 5× slower)
    extent = (axis[0] - GRID_STEP / 2, axis[-1] + GRID_STEP / 2) * 2
    ax.imshow(regions, origin="lower", extent=extent, cmap=ListedColormap(CLASS_COLOURS), vmin=0, vmax=1, aspect="auto")
    for cls, colour in ((1, "r"), (0, "g")):
        mask = y[:, 0] == cls
        ax.scatter(X[mask, 0], X[mask, 1], color=colour, label=f"class {cls}")
    ax.set(xlabel="x1", ylabel="x2")
    titled(ax, title)
    ax.legend(loc="best")
    ax.grid(True)


def decision_regions(final_flat, hidden: int) -> np.ndarray:
    """The rounded output of the network ``final_flat`` on the figure's grid."""
    axis = np.arange(-0.5, 1.5, GRID_STEP)
    x1, x2 = np.meshgrid(axis, axis)
    params = unflatten_params(np.asarray(final_flat, dtype=np.float64), hidden)
    return np.round(predict(params, np.c_[x1.ravel(), x2.ravel()])).reshape(x1.shape)


def decision_figure(traj, hidden: int):
    if "decision" not in _REUSED:
        fig, ax = pyplot().subplots(figsize=(5, 5))
        draw_decision_regions(ax, traj.params[-1], hidden, "")
        _REUSED["decision"] = (fig, ax)
    fig, ax = _REUSED["decision"]
    ax.images[0].set_data(decision_regions(traj.params[-1], hidden))
    titled(ax, f"XOR decision regions: {traj.name}")
    return fig


def loss_figure(traj):
    if "loss" not in _REUSED:
        fig, ax = pyplot().subplots(figsize=(6, 4))
        ax.plot([], [])
        ax.set(xlabel="epoch", ylabel="MSE")
        ax.grid(True)
        _REUSED["loss"] = (fig, ax)
    fig, ax = _REUSED["loss"]
    ax.lines[0].set_data(*thinned(np.arange(1, traj.epochs + 1), traj.loss))
    ax.relim()
    ax.autoscale_view()
    titled(ax, f"training loss: {traj.name}")
    return fig


def overlay_figure(trajectories: dict):
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":", "-.")
    for i, traj in enumerate(trajectories.values()):
        ax.plot(*thinned(np.arange(1, traj.epochs + 1), traj.loss), styles[i % len(styles)], label=traj.name)
    log_scale(ax)
    ax.set(xlabel="epoch", ylabel="MSE (log scale)", title="training loss, all rows")
    ax.legend(loc="best")
    ax.grid(True, which="both", alpha=0.4)
    return fig


def row_figures(trajectories: dict, hidden: int) -> list:
    """The rows' figures, not yet drawn: (file name, draw function, its arguments), each
    function returning its figure."""
    figures: list[tuple] = []
    for name, traj in trajectories.items():
        figures += [
            (f"{name}_decision.png", decision_figure, (traj, hidden)),
            (f"{name}_loss.png", loss_figure, (traj,)),
        ]
    return figures + [("loss_all_rows.png", overlay_figure, (trajectories,))]


def drift_figure(a: str, b: str, gap: np.ndarray, allowed: np.ndarray, lockstep_gap, first_over=None):
    """Log-scale: the free-running gap per epoch, the allowed envelope, and the
    lockstep error of the new params per step (exact zeros are left out: a log axis
    has no place for them); a vertical line at ``first_over``, the first epoch whose gap
    exceeds its allowance."""
    positive = lambda x: np.where(np.asarray(x, dtype=np.float64) > 0, x, np.nan)  # noqa: E731
    fig, ax = _reused_drift_axes()
    series = [
        (np.arange(gap.shape[0]), positive(gap), "free-running gap |Δθ|, |Δloss|"),
        (np.arange(gap.shape[0]), positive(np.broadcast_to(allowed, gap.shape)), "allowed (derived tolerance)"),
    ]
    if lockstep_gap is not None:
        series.append((np.arange(1, lockstep_gap.shape[0] + 1), positive(lockstep_gap), "lockstep |Δθ| after one step"))
    for line, (x, values, label) in zip(ax.lines[:3], [*series, (np.empty(0), np.empty(0), "_none")], strict=False):
        line.set_data(*thinned(x, values))
        line.set_label(label)
    edge = ax.lines[3]
    edge.set_visible(first_over is not None)
    edge.set_xdata([first_over or 0] * 2)
    edge.set_label(f"first excess, epoch {first_over}" if first_over is not None else "_none")
    ax.set_xlim(-0.05 * gap.shape[0], 1.05 * gap.shape[0])
    finite = np.concatenate([v[np.isfinite(v)] for _, v, _ in series])
    if finite.size:
        low, high = max(finite.min() / 10, 1e-300), finite.max() * 10
        ax.set_ylim(low, high)
        _minor_ticks(ax, np.log10(high / low))
    titled(ax, f"{a} vs {b}: drift and per-step error")
    ax.legend(loc="best")
    return fig


def _reused_drift_axes() -> tuple:
    if "drift" not in _REUSED:
        fig, ax = pyplot().subplots(figsize=(7, 4.5))
        for style in ("-", "--", ":"):
            ax.plot([], [], style)
        ax.axvline(0, color="red", linewidth=1)
        log_scale(ax)
        ax.set(xlabel="epoch", ylabel="gap")
        ax.grid(True, which="both", alpha=0.4)
        _REUSED["drift"] = (fig, ax)
    return _REUSED["drift"]


def lockstep_heatmap(rows: list, phases: list, ulps: np.ndarray, allowed: float):
    """Rows × phases, each cell the worst lockstep error in ULPs at the scale of the
    value's terms, coloured on a log scale; the colour bar marks the allowance, and a
    cell over it is outlined in red (a phase a row does not have is blank)."""
    from matplotlib.colors import LogNorm

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(phases), 1.3 + 0.45 * len(rows)), layout="constrained")
    shown = np.where(np.isfinite(ulps), np.maximum(ulps, 1e-2), np.nan)
    top = max(float(np.nanmax(shown, initial=1.0)), allowed * 10)
    image = ax.imshow(shown, cmap="viridis", norm=LogNorm(1e-2, top), aspect="auto")
    for (i, j), value in np.ndenumerate(ulps):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="white" if shown[i, j] < allowed else "black")
            if value > allowed:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(phases)), phases)
    ax.set_yticks(range(len(rows)), rows)
    bar = fig.colorbar(image, ax=ax, label="ULPs (log scale)")
    bar.ax.axhline(allowed, color="red", linewidth=2)
    ax.set_title(f"lockstep: worst error per phase (allowed {allowed:g} ULPs: the red line)")
    return fig
