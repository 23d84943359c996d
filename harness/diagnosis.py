"""Where and why two rows part: free-running drift against the derived tolerance,
lockstep errors per phase, the first divergence, and replay files of that step."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from harness.lockstep import K_LOCKSTEP, PHASES, States, first_failing, phases_for
from reference.optimizers import NON_NEGATIVE_SLOTS, OPTIMIZERS
from reference.spec import PARAM_NAMES, Config, n_params, unflatten_params

# and one array per optimizer state slot (m and v for Adam), named as the slot
REPLAY_KEYS = ("params", "t", "epoch", "config", "environment", "faults", "pair", "phase")


def lockstep_summary(errors: dict) -> dict:
    """JSON-ready lockstep figures of one row: per phase, and the worst phase."""
    if not errors:
        return {}
    worst = max(errors.values(), key=lambda e: e.max_ulp)
    return {"lockstep_max_ulp": worst.max_ulp, "lockstep_worst_phase": worst.phase,
            "lockstep_passed": all(e.passed for e in errors.values()),
            "lockstep": {p: e.to_dict() for p, e in errors.items()}}


def first_divergence(agreement, errors: dict | None, a, b) -> dict | None:
    """The first epoch, phase, tensor and element where the pair parts, with both values.
    Lockstep failures come first (they locate the computation); otherwise the first
    epoch the free-running gap exceeds its tolerance, in the parameters (or loss)."""
    failing = [e for e in (errors or {}).values() if not e.passed and e.first]
    if failing:
        e = min(failing, key=lambda x: (x.first["epoch"], PHASES.index(x.phase)))
        f = e.first
        return _divergence(f["epoch"], e.phase, f["tensor"], f["index"], f["reference"], f["value"],
                           source="lockstep", ulp=f["raw_ulp"])
    if agreement.passed or agreement.first_epoch_over_tolerance is None:
        return None
    epoch = agreement.first_epoch_over_tolerance
    hidden = (a.params.shape[-1] - 1) // 4
    pa, pb = unflatten_params(a.params[epoch], hidden), unflatten_params(b.params[epoch], hidden)
    gaps = {k: np.abs(pa[k].astype(np.float64) - pb[k]) for k in PARAM_NAMES}
    k = max(gaps, key=lambda name: np.nan_to_num(gaps[name], nan=np.inf).max())
    index = np.unravel_index(int(np.argmax(np.nan_to_num(gaps[k], nan=np.inf))), gaps[k].shape)
    phase, ref, val = "params", float(pa[k][index]), float(pb[k][index])
    if epoch >= 1 and abs(float(a.loss[epoch - 1]) - float(b.loss[epoch - 1])) > abs(ref - val):
        phase, k, index, ref, val = "loss", "loss", (), float(a.loss[epoch - 1]), float(b.loss[epoch - 1])
    ulp = abs(ref - val) / float(np.spacing(np.abs(np.asarray(ref, a.params.dtype)))) if ref == ref else float("inf")
    return _divergence(epoch, phase, k, [int(i) for i in index], ref, val, source="free-running", ulp=ulp)


def _divergence(epoch, phase, tensor, index, reference, value, source, ulp) -> dict:
    diff = abs(value - reference) if np.isfinite(value) and np.isfinite(reference) else float("inf")
    relative = diff / abs(reference) if reference and np.isfinite(diff) else float("inf")
    return {"epoch": int(epoch), "phase": phase, "tensor": tensor, "index": list(index), "reference": reference,
            "value": value, "abs_diff": diff, "rel_diff": relative,
            "ulp_diff": float(ulp), "found_by": source}


def diagnosis(agreement, errors: dict | None) -> str:
    """Which case a difference is."""
    failing = first_failing(errors or {})
    if failing is not None:
        return f"computation differs (lockstep fails first in {failing.phase})"
    if not agreement.passed:
        if errors:
            return "rounding amplified by training (lockstep at rounding level)"
        return "trajectories part (no lockstep for this pair)"
    return "agree"


def paragraph(a: str, b: str, div: dict, replay_path) -> str:
    where = div["tensor"] + (f"[{', '.join(map(str, div['index']))}]" if div["index"] else "")
    text = (f"{a} vs {b} first part at epoch {div['epoch']}, phase {div['phase']}, {where}: "
            f"{a} {div['reference']:.17g}, {b} {div['value']:.17g}; difference {div['abs_diff']:.3e} "
            f"absolute, {div['rel_diff']:.3e} relative, {div['ulp_diff']:.3g} ULPs (found by the "
            f"{div['found_by']} check).")
    if div["found_by"] == "lockstep":
        text += " Starting from the same state, the two compute this step differently."
    else:
        text += (" Every step agrees to rounding when started from the same state: the gap is rounding that "
                 "training amplified beyond the tolerance.")
    if replay_path:
        text += f" Replay that step: python compare.py replay {replay_path}"
    return text


# --- replay files ------------------------------------------------------------------------------

def write_replay(path, cfg: Config, reference, epoch: int, pair, phase: str, faults: dict, env: dict) -> None:
    """The numpy row's exact state just before ``epoch`` (params, the optimizer's slots,
    t), with the config, the environment and the planted faults, so the step can be
    run again."""
    from harness.files import write_npz

    before = epoch - 1
    write_npz(path, {
        "params": reference.params[before], **{s: history[before] for s, history in reference.states.items()},
        "t": np.array(before, dtype=np.int64), "epoch": np.array(epoch, dtype=np.int64),
        "config": np.array(json.dumps(cfg.to_dict())), "environment": np.array(json.dumps(env)),
        "faults": np.array(json.dumps(faults)), "pair": np.array(",".join(pair)), "phase": np.array(phase),
    })


class ReplayError(ValueError):
    """A replay file that cannot be used; the message is one line naming the problem."""


def read_replay(path) -> dict:
    """Load and validate a replay file (never unpickling)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            record = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ReplayError(f"{path}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile):
        raise ReplayError(f"{path}: not a replay file (an .npz archive of plain arrays)") from None
    missing = [k for k in REPLAY_KEYS if k not in record]
    if missing:
        raise ReplayError(f"{path}: missing {', '.join(missing)}")
    try:
        cfg = Config(**json.loads(str(record["config"])))
        faults = json.loads(str(record["faults"]))
    except (ValueError, TypeError) as exc:
        raise ReplayError(f"{path}: bad config or faults: {exc}") from None
    n = n_params(cfg.hidden)
    slots = OPTIMIZERS[cfg.optimizer].state_slots
    missing = [s for s in slots if s not in record]
    if missing:
        raise ReplayError(f"{path}: missing the {cfg.optimizer} state {', '.join(missing)}")
    for key in ("params", *slots):
        array = record[key]
        if array.shape != (n,) or array.dtype.kind != "f":
            raise ReplayError(f"{path}: {key} should be {n} floats, got shape {array.shape} of {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise ReplayError(f"{path}: {key} holds non-finite values")
    for key in slots:
        if key in NON_NEGATIVE_SLOTS and np.any(record[key] < 0):
            raise ReplayError(f"{path}: {key} holds negative values")
    t, epoch = record["t"], record["epoch"]
    if t.shape != () or t.dtype.kind != "i" or int(t) < 0 or epoch.shape != () or int(epoch) != int(t) + 1:
        raise ReplayError(f"{path}: t must be a whole number >= 0 and epoch t + 1")
    if not isinstance(faults, dict) or not all(isinstance(v, str) for v in faults.values()):
        raise ReplayError(f"{path}: faults must map rows to fault names")
    return {"config": cfg, "faults": faults, "pair": str(record["pair"]).split(","), "phase": str(record["phase"]),
            "states": States(
                params=unflatten_params(record["params"].astype(cfg.dtype)[None], cfg.hidden),
                slots={s: unflatten_params(record[s].astype(cfg.dtype)[None], cfg.hidden) for s in slots},
                t=np.array([[[int(t)]]], dtype=np.int64), epochs=np.array([int(epoch)])),
            "environment": json.loads(str(record["environment"]))}


def render_replay(replay: dict, results: dict) -> str:
    cfg = replay["config"]
    lines = [f"replay of epoch {int(replay['states'].epochs[0])} from the numpy row's state "
             f"(t = {int(replay['states'].t.ravel()[0])}), {cfg.optimizer}, {cfg.dtype}, seed {cfg.seed}, lr {cfg.lr:g}"
             + (f"; planted: {', '.join(f'{r}:{f}' for r, f in replay['faults'].items())}" if replay["faults"] else ""),
             f"recorded for {' vs '.join(replay['pair'])}, first parting in phase {replay['phase']}", "",
             f"error against numpy in ULPs at the scale of each value's terms (allowed {K_LOCKSTEP:g}):",
             f"{'row':<12} " + " ".join(f"{p:>9}" for p in phases_for(cfg))]
    for name, errors in results.items():
        cells = [f"{errors[p].max_ulp:9.3g}" + ("!" if not errors[p].passed else " ") if p in errors else f"{'n/a':>9} "
                 for p in phases_for(cfg)]
        lines.append(f"{name:<12} " + "".join(cells))
    failing = {n: first_failing(e) for n, e in results.items()}
    failing = {n: f for n, f in failing.items() if f is not None}
    lines.append("")
    if not failing:
        lines.append("every row computes this step as numpy does, to rounding")
    for name, f in failing.items():
        where = f.tensor + (f"[{', '.join(map(str, f.index))}]" if f.index else "")
        lines.append(f"{name}: first differs in {f.phase}, worst at {where}: numpy {f.reference:.17g}, "
                     f"{name} {f.value:.17g} ({f.max_ulp:.3g} ULPs at the scale of its terms)")
    return "\n".join(lines)


def drift_figure(path, a: str, b: str, gap: np.ndarray, allowed: np.ndarray, lockstep_gap) -> None:
    """Log-scale: the free-running gap per epoch, the allowed envelope, and the
    lockstep error of the new params per step (exact zeros are left out: a log axis
    has no place for them)."""
    from harness.plots import pyplot, save_figure

    plt = pyplot()
    positive = lambda x: np.where(np.asarray(x, dtype=np.float64) > 0, x, np.nan)  # noqa: E731
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [(np.arange(gap.shape[0]), positive(gap), "-", "free-running gap |Δθ|, |Δloss|"),
              (np.arange(gap.shape[0]), positive(np.broadcast_to(allowed, gap.shape)), "--", "allowed (derived tolerance)")]
    if lockstep_gap is not None:
        series.append((np.arange(1, lockstep_gap.shape[0] + 1), positive(lockstep_gap), ":",
                       "lockstep |Δθ| after one step"))
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
