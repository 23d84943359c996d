"""The default run's results as a table for people and a dict for --json."""
from __future__ import annotations

import math

import numpy as np

from harness.plots import predict
from harness.rows import ROWS
from reference.spec import Config, unflatten_params, xor_data

XOR_TARGETS = xor_data("float64")[1][:, 0]
ADAM_LABELS = {"paper": "(Kingma & Ba)", "epshat": "(ε̂ form: Keras, TensorFlow)", "seed": "(the article's form)"}
GRAD_LABELS = {"mse": "the MSE", "half-sse": "½·Σ(ŷ − y)² (the article's)"}


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
        "implementation": ROWS[traj.name].describe(cfg),
        "kind": ROWS[traj.name].kind,
        "final_loss": float(traj.loss[-1]),
        "final_params": {k: v.tolist() for k, v in final.items()},
        "predictions": outputs.tolist(),
        "solved": solves_xor(outputs),
        "seconds": traj.seconds,
        "us_per_epoch": traj.us_per_epoch,
        "compile_seconds": traj.compile_seconds,
    }


def results_dict(results, env: dict) -> dict:
    cfg = results.cfg
    return {
        "config": cfg.to_dict(),
        "environment": env,
        "injected": results.faults,
        "backends": {name: row_summary(t, cfg) for name, t in results.trajectories.items()},
        "skipped": {str(k): v for k, v in results.skipped.items()},
        "reference_row": next(iter(results.trajectories), None),
        "tolerance_rule": (results.agreements[0].tolerance_source if results.agreements else None),
        "lockstep_seconds": results.lockstep_seconds,
        "agreement": [{k: v for k, v in p.items() if not k.startswith("_")} for p in results.pairs],
        "passed": results.passed,
    }


def optimizer_line(cfg: Config) -> str:
    """The optimizer and its hyperparameters, as the header of a report."""
    from reference.optimizers import OPTIMIZERS

    spec = OPTIMIZERS[cfg.optimizer]
    title = f"Adam {ADAM_LABELS[cfg.adam]}" if cfg.optimizer == "adam" else spec.title
    hyper = ", ".join(f"{name} {getattr(cfg, name):g}" for name in spec.defaults)
    return f"{title}: {hyper}"


def _no_lockstep_reason(name: str) -> str:
    kind = ROWS[name].kind if name in ROWS else ""
    if kind == "external":
        return "another program's trajectory, read from a file: it cannot step from a given state"
    return "its framework cannot step from a given state" if not ROWS[name].lockstep else "not run"


def _fmt(x: float, spec: str = ".2e") -> str:
    return format(x, spec) if math.isfinite(x) else str(x)


def render(results, replay_paths: dict | None = None) -> str:
    from harness.diagnosis import paragraph
    from harness.run import pair_accepted
    from harness.lockstep import K_LOCKSTEP, phases_for

    cfg, trajectories = results.cfg, results.trajectories
    phases = phases_for(cfg)
    width = max(36, *(len(ROWS[n].describe(cfg)) for n in trajectories))
    lines = [
        f"XOR 2-{cfg.hidden}-1 sigmoid network, {optimizer_line(cfg)}; gradient of {GRAD_LABELS[cfg.grad]}",
        f"{cfg.epochs} epochs, seed {cfg.seed}, {cfg.dtype}; every row starts from the same initial weights"
        + (f"; planted: {', '.join(f'{r}:{f}' for r, f in results.faults.items())}" if results.faults else ""),
        "",
        f"{'row':<12} {'gradient + optimizer':<{width}} {'final loss':>10}  {'predictions for 0 1 1 0':<27} {'solved':<6} {'µs/epoch':>9}",
    ]
    for name, traj in trajectories.items():
        outputs = predictions(traj, cfg)
        shown = " ".join(_fmt(p, ".4f") for p in outputs)
        lines.append(
            f"{name:<12} {ROWS[name].describe(cfg):<{width}} {_fmt(float(traj.loss[-1]), '.4e'):>10}  "
            f"{shown:<27} {'yes' if solves_xor(outputs) else 'NO':<6} {_fmt(traj.us_per_epoch, '9.1f'):>9}"
        )
    if not results.pairs:
        return "\n".join(lines)
    first = results.agreements[0]
    lines += ["", f"free-running drift against {first.a}: tolerance = {first.tolerance_source} "
                  f"(allowed at the last epoch {first.tolerance:.2e})"]
    lines.append(f"{'pair':<26} {'max|Δθ|':>10} {'max|Δloss|':>11} {'first epoch over':>17} {'margin':>9}  "
                 f"{'lockstep ULPs':>13}  verdict")
    for p in results.pairs:
        first_over = "none" if p["first_epoch_over_tolerance"] is None else str(p["first_epoch_over_tolerance"])
        lock = f"{p['lockstep_max_ulp']:.3g}" if "lockstep_max_ulp" in p else "n/a"
        verdict = p["diagnosis"]
        if p.get("expected"):
            verdict = (f"expected: a known {p['b']} difference (below)" if p["explained"] else
                       f"agrees, though a known {p['b']} difference was expected" if p["passed"] else
                       f"DISAGREES beyond the known {p['b']} difference: {verdict}")
        lines.append(
            f"{p['a'] + ' vs ' + p['b']:<26} {_fmt(p['max_abs_param_diff']):>10} {_fmt(p['max_abs_loss_diff']):>11} "
            f"{first_over:>17} {_fmt(p['margin'], '.3f' if p['margin'] < 1e3 else '.2e'):>9}  {lock:>13}  {verdict}")
    if results.lockstep:
        lines += ["", f"lockstep: every row steps from numpy's state at each of the {cfg.epochs} epochs; worst error "
                      f"per phase in ULPs at the scale of the value's terms (allowed {K_LOCKSTEP:g}; "
                      f"{results.lockstep_seconds:.1f} s)",
                  f"{'row':<12} " + " ".join(f"{ph:>9}" for ph in phases)]
        where = []
        for name, result in results.lockstep.items():
            errors = result["errors"]
            cells = [(f"{errors[ph].max_ulp:9.3g}" + (" " if errors[ph].passed else "!")) if ph in errors
                     else f"{'n/a':>9} " for ph in phases]
            lines.append(f"{name:<12} " + "".join(cells))
            worst = max(errors.values(), key=lambda e: e.max_ulp)
            index = f"[{', '.join(map(str, worst.index))}]" if worst.index else ""
            where.append(f"{name} {worst.phase} at epoch {worst.epoch}, {worst.tensor}{index}")
        lines.append("worst: " + "; ".join(where))

    without = [n for n in trajectories if n != "numpy" and n not in results.lockstep]
    if "numpy" in trajectories and without:
        lines += ["", "no lockstep for " + "; ".join(f"{n} ({_no_lockstep_reason(n)})" for n in without)]
    failed = [p for p in results.pairs if not pair_accepted(p)]
    lines.append("")
    for p in results.pairs:
        if p.get("expected"):
            where = "free-running drift only" if p["expected_phase"] == "drift" else f"{p['expected_phase']} phase"
            lines.append(f"known difference, {p['b']} ({where}): {p['expected_reason']}")
    if not failed:
        judged = [p for p in results.pairs if not p.get("explained")]
        unchecked = [p["b"] for p in judged if "lockstep_max_ulp" not in p]
        if not unchecked:
            lockstep_note = "lockstep at rounding level"
        elif "numpy" not in trajectories:
            lockstep_note = "no lockstep: it needs the numpy row"
        elif len(unchecked) == len(judged):
            lockstep_note = f"no lockstep for {', '.join(unchecked)}"
        else:
            lockstep_note = f"lockstep at rounding level; none for {', '.join(unchecked)}"
        explained = [p["b"] for p in results.pairs if p.get("explained")]
        agreeing = len(results.pairs) - len(explained)
        lines.append((f"all {agreeing} pairs agree" if not explained else
                      f"{agreeing} of {len(results.pairs)} pairs agree, {', '.join(explained)} differs as explained above")
                     + f" (margin = largest gap / allowed; {lockstep_note})")
    else:
        lines.append(f"{len(failed)} of {len(results.pairs)} pairs disagree: " + ", ".join(p["b"] for p in failed))
        for p in failed:
            if "first_divergence" in p:
                lines += ["", paragraph(p["a"], p["b"], p["first_divergence"], (replay_paths or {}).get(p["b"]))]
    return "\n".join(lines)
