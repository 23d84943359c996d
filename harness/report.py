"""The default run's results as a table for people and a dict for --json."""
from __future__ import annotations

import math

import numpy as np

from harness.agreement import K_ROUNDING, trajectory_scale
from harness.plots import predict
from harness.rows import ROWS
from reference.spec import Config, unflatten_params, xor_data

XOR_TARGETS = xor_data("float64")[1][:, 0]


def predictions(traj, cfg: Config) -> np.ndarray:
    """The four outputs of the row's final network, computed in the run's dtype."""
    X, _ = xor_data(cfg.dtype)
    return predict(unflatten_params(traj.params[-1], cfg.hidden), X).astype(np.float64)


def solves_xor(outputs: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(outputs)) and np.array_equal(np.round(outputs), XOR_TARGETS))


def row_summary(traj, cfg: Config) -> dict:
    outputs = predictions(traj, cfg)
    final = unflatten_params(traj.params[-1].astype(np.float64), cfg.hidden)
    return {
        "implementation": ROWS[traj.name].implementation,
        "kind": ROWS[traj.name].kind,
        "final_loss": float(traj.loss[-1]),
        "final_params": {k: v.tolist() for k, v in final.items()},
        "predictions": outputs.tolist(),
        "solved": solves_xor(outputs),
        "seconds": traj.seconds,
        "us_per_epoch": traj.us_per_epoch,
        "compile_seconds": traj.compile_seconds,
    }


def results_dict(cfg: Config, trajectories: dict, agreements: list, skipped: dict, env: dict) -> dict:
    return {
        "config": cfg.to_dict(),
        "environment": env,
        "backends": {name: row_summary(t, cfg) for name, t in trajectories.items()},
        "skipped": skipped,
        "reference_row": next(iter(trajectories), None),
        "tolerance_rule": f"{K_ROUNDING:g} * eps(dtype) * sqrt(epochs) * max(1, max|theta| of the reference row)",
        "agreement": [a.to_dict() for a in agreements],
        "passed": all(a.passed for a in agreements),
    }


def _fmt(x: float, spec: str = ".2e") -> str:
    return format(x, spec) if math.isfinite(x) else str(x)


def render(cfg: Config, trajectories: dict, agreements: list) -> str:
    lines = [
        f"XOR 2-{cfg.hidden}-1 sigmoid network, Adam (Kingma & Ba): lr {cfg.lr:g}, "
        f"beta1 {cfg.beta1:g}, beta2 {cfg.beta2:g}, eps {cfg.eps:g}",
        f"{cfg.epochs} epochs, seed {cfg.seed}, {cfg.dtype}; every row starts from the same initial weights",
        "",
        f"{'row':<12} {'gradient + optimizer':<36} {'final loss':>10}  {'predictions for 0 1 1 0':<27} {'solved':<6} {'µs/epoch':>9}",
    ]
    for name, traj in trajectories.items():
        outputs = predictions(traj, cfg)
        shown = " ".join(_fmt(p, ".4f") for p in outputs)
        lines.append(
            f"{name:<12} {ROWS[name].implementation:<36} {_fmt(float(traj.loss[-1]), '.4e'):>10}  "
            f"{shown:<27} {'yes' if solves_xor(outputs) else 'NO':<6} {traj.us_per_epoch:9.1f}"
        )
    if agreements:
        reference = trajectories[agreements[0].a]
        u = float(np.finfo(cfg.dtype).eps)
        lines += [
            "",
            f"agreement with {agreements[0].a}: tolerance {agreements[0].tolerance:.2e} on every |Δθ| and |Δloss|"
            f" (= {K_ROUNDING:g}·u·√E·scale; u {u:.2e}, E {cfg.epochs}, scale {max(1.0, trajectory_scale(reference.params)):.3g})",
            f"{'pair':<26} {'max|Δθ|':>10} {'max|Δloss|':>11} {'first epoch over tol':>21} {'margin':>9}  result",
        ]
        for a in agreements:
            first = "none" if a.first_epoch_over_tolerance is None else str(a.first_epoch_over_tolerance)
            lines.append(
                f"{a.a + ' vs ' + a.b:<26} {_fmt(a.max_abs_param_diff):>10} {_fmt(a.max_abs_loss_diff):>11} "
                f"{first:>21} {_fmt(a.margin, '.3f' if a.margin < 1e3 else '.2e'):>9}  {'agree' if a.passed else 'DISAGREE'}"
            )
        failed = [a for a in agreements if not a.passed]
        lines.append("")
        lines.append(
            f"all {len(agreements)} pairs agree (margin = largest gap / tolerance)"
            if not failed
            else f"{len(failed)} of {len(agreements)} pairs disagree: " + ", ".join(a.b for a in failed)
        )
    return "\n".join(lines)
