"""Fitting the hyperparameters another implementation really used, from how far its steps
are from the spec's: damped Gauss-Newton (Levenberg-Marquardt) on the optimizer's own
hyperparameters, with a Jacobian by forward differences, each hyperparameter as it is:
a step is linear in lr, the moments are linear in their decay rates, and the rest is
close to linear near the answer (in log coordinates a fit slides towards ε = 0 or β = 1,
where a column of the Jacobian vanishes, and stops there). The uncertainty of each value is
the usual one of a least-squares fit: √diag((JᵀJ)⁻¹) times the residual's rms, carried
back to the value; a hyperparameter is reported as changed only when it moved by more
than three of those and by more than a part in 10⁹.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from reference.optimizers import OPTIMIZERS
from reference.spec import Config

ITERATIONS = 60
TINY = 1e-300


def _config(cfg: Config, names, x) -> Config | None:
    try:
        fitted: dict = {n: float(xi) for n, xi in zip(names, x, strict=True)}
        return replace(cfg, **fitted)
    except ValueError:  # a value out of its range (β = 1, a negative accumulator)
        return None


def _jacobian(residual, x: np.ndarray, r0: np.ndarray) -> np.ndarray:
    columns = []
    for i in range(x.size):
        h = 1e-6 * abs(x[i]) if x[i] else 1e-10
        moved = x.copy()
        moved[i] += h
        columns.append((residual(moved) - r0) / h)
    return np.stack(columns, axis=1)


def _damped_step(J: np.ndarray, r: np.ndarray, damping: float) -> np.ndarray:
    """The step s minimising |J·s + r|² + damping·|D·s|², D the columns' norms, solved as
    one least-squares problem: forming JᵀJ would square a condition number that is
    already large (lr and ε move a step in nearly the same way)."""
    scale = np.linalg.norm(J, axis=0)
    scale[scale == 0] = 1.0
    stacked = np.vstack([J, np.sqrt(damping) * np.diag(scale)])
    return np.linalg.lstsq(stacked, np.concatenate([-r, np.zeros(J.shape[1])]), rcond=None)[0]


def _least_squares(r_of, x: np.ndarray):
    """Levenberg-Marquardt from ``x``: (x, residual there)."""
    r, damping = r_of(x), 1e-6
    for _ in range(ITERATIONS):
        J = _jacobian(r_of, x, r)
        if not (np.all(np.isfinite(J)) and np.all(np.isfinite(r))):
            break  # a hyperparameter moved where the step overflows (or a slot underflows): no fit there
        step = _damped_step(J, r, damping)
        r_new = r_of(x + step)
        if r_new @ r_new < r @ r:
            x, r, damping = x + step, r_new, damping / 10
            if np.all(np.abs(step) <= 1e-15 * np.maximum(np.abs(x), TINY)):
                break
        else:
            damping *= 10
            if damping > 1e8:
                break
    return x, r


# Where a fit may also start: the other libraries' defaults, the usual reason a port's
# numbers differ, and far enough from ours that a fit from ours may not reach them (optax:
# AdaGrad's a0 0.1 and ε 1e-7, RMSprop's decay 0.9, AdamW's λ 1e-4; Keras: ε 1e-7).
OTHER_DEFAULTS = {"initial_accumulator": (0.1,), "eps": (1e-7,), "rho": (0.9,), "weight_decay": (1e-4,)}


def fit(residual, cfg: Config, stages=(), accept: float = 1.0) -> dict | None:
    """The optimizer's hyperparameters that make ``residual(config)`` smallest, starting
    from ``cfg``'s (then, if that does not reproduce the row, from another library's
    default for one of them): {changed: name -> value, uncertainty: name -> ±,
    max_residual}, or None when nothing better than ``cfg`` was found. ``stages``, easier
    residuals, are fitted first, each from where the one before ended: a step's state
    slots alone (linear in the decay rates, which the step then depends on through its
    bias corrections), or a trajectory's first epoch, then its first 2, 4, … (each nearly
    linear from the last). A residual within ``accept`` counts as reproduced: then only
    the hyperparameters that moved significantly are reported, if the others at the
    config's values still fit."""
    names = list(OPTIMIZERS[cfg.optimizer].defaults)
    start = np.array([float(getattr(cfg, n)) for n in names])
    starts = [start] + [
        np.where(np.array(names) == n, value, start)
        for n, values in OTHER_DEFAULTS.items()
        if n in names
        for value in values
        if value != getattr(cfg, n)
    ]
    r0, best = residual(cfg), None
    for x in starts:
        x, r = _fit_from(residual, cfg, names, stages, x)
        if np.all(np.isfinite(r)) and r @ r < r0 @ r0 and (best is None or np.abs(r).max() < np.abs(best[1]).max()):
            best = (x, r)
        if best is not None and np.abs(best[1]).max() <= accept:
            break
    if best is None:
        return None
    x, r = best
    return _summary(cfg, names, x, r, _jacobian(_at(residual, cfg, names), x, r), residual, accept)


def _at(function, cfg: Config, names):
    """``function`` of a point in the hyperparameters' space (a huge residual where the
    point is no valid config)."""
    size = function(cfg).size

    def at(point):
        trial = _config(cfg, names, point)
        return np.full(size, 1e30) if trial is None else function(trial)

    return at


def _fit_from(residual, cfg: Config, names, stages, x):
    for stage in stages:
        x, _ = _least_squares(_at(stage, cfg, names), x)
    return _least_squares(_at(residual, cfg, names), x)


def _summary(cfg: Config, names, x, r, J, residual, accept: float) -> dict:
    dof = max(1, r.size - len(names))
    covariance = np.linalg.pinv(J.T @ J) * float(r @ r) / dof
    sigma = {n: float(np.sqrt(max(covariance[i, i], 0.0))) for i, n in enumerate(names)}
    fitted: dict = {n: float(xi) for n, xi in zip(names, x, strict=True)}
    changed: dict = {
        n: v
        for n, v in fitted.items()
        if abs(v - getattr(cfg, n)) > max(3 * sigma[n], 1e-9 * max(abs(getattr(cfg, n)), TINY))
    }
    # the fewest changed numbers: the others back at the config's values, if that still fits as well
    kept = replace(cfg, **changed)
    r_kept = residual(kept)
    best = r_kept if np.abs(r_kept).max() <= max(accept, np.abs(r).max()) else r
    if best is r:
        changed = fitted
    return {
        "changed": changed,
        "uncertainty": {n: sigma[n] for n in changed},
        "max_residual": float(np.abs(best).max()),
    }
