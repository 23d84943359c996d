"""Is a trajectory another program wrote one of this run? Checked against the run: column
count, finite numbers, as many epochs as asked, and the parameter order, by comparing
epoch 1 with the exported initial weights (one optimizer step apart). Every problem is one
line naming the file, the line and what is wrong (``reference.exchange.ExternalError``).
Used for --external files and for the octave row's output."""

from __future__ import annotations

import math

import numpy as np

from reference.exchange import ORDER, ExternalError
from reference.spec import PARAM_NAMES, Config, flatten_params, initial_params, n_params, xor_data


def validate_trajectory(path, loss, params, lines, cfg: Config, first_step: float) -> None:
    """The checks that tie a trajectory to this run. ``first_step``: the largest move of a
    parameter in the reference row's first step (the order check's yardstick)."""
    n = n_params(cfg.hidden)
    where = "row" if str(path).endswith(".npz") else "line"
    if params.shape[1] != n:
        raise ExternalError(
            f"{path}: {where} {lines[0]}: {params.shape[1] + 1} columns, expected {n + 1} "
            f"(the loss, then the {n} parameters {ORDER} for hidden={cfg.hidden})"
        )
    table = np.column_stack([loss, params])
    bad = ~np.isfinite(table)
    if bad.any():
        i, column = np.argwhere(bad)[0]
        what = "NaN" if math.isnan(table[i, column]) else "infinite"
        raise ExternalError(
            f"{path}: {where} {lines[i]}, column {column + 1}: {what} where a finite number is expected"
        )
    if loss.shape[0] < cfg.epochs:
        raise ExternalError(f"{path}: {loss.shape[0]} epochs, fewer than the {cfg.epochs} asked (--epochs)")
    if loss.shape[0] > cfg.epochs:
        raise ExternalError(
            f"{path}: {where} {lines[cfg.epochs]}: {loss.shape[0]} epochs, more than the {cfg.epochs} asked (--epochs)"
        )
    _check_order(path, params[0], cfg, first_step, f"{where} {lines[0]}")


def _check_order(path, first: np.ndarray, cfg: Config, first_step: float, where: str) -> None:
    """Epoch 1 must be one step from the exported initial weights, element by element."""
    init = initial_params(cfg.seed, cfg.hidden, "float64")
    start = flatten_params(init)
    allowed = 100.0 * first_step + 16 * np.finfo(np.float64).eps * max(1.0, float(np.abs(start).max()))
    moved = float(np.abs(first - start).max())
    if moved <= allowed:
        return
    column_major = np.concatenate([np.asarray(init[k]).T.ravel() for k in PARAM_NAMES])
    if float(np.abs(first - column_major).max()) <= allowed:
        raise ExternalError(
            f"{path}: {where}: the parameters are in column-major order (MATLAB's W1(:)); write "
            f"them {ORDER}, e.g. reshape(W1.', 1, [])"
        )
    if float(np.abs(np.sort(first) - np.sort(start)).max()) <= allowed:
        raise ExternalError(
            f"{path}: {where}: the parameters are the initial weights in another order; expected {ORDER}"
        )
    raise ExternalError(
        f"{path}: {where}: epoch 1 is {moved:.3g} from the exported initial weights, more than one "
        f"step can move (≤ {allowed:.3g}): not started from compare.py init --seed {cfg.seed} "
        f"--hidden {cfg.hidden}, or not in the order {ORDER}"
    )


def reference_first_step(cfg: Config) -> float:
    """The largest move of a parameter in the numpy row's first step: the order check's
    yardstick."""
    from backends import numpy_backend

    params = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    X, y = xor_data(cfg.dtype)
    new, _, _ = numpy_backend.train_step(params, numpy_backend.optimizer_init(params, cfg), X, y, cfg)
    return float(np.abs(flatten_params(new) - flatten_params(params)).max())
