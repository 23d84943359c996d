"""What the reports share: labels, number formats, a row's final predictions and the
epoch from which XOR stays solved."""

from __future__ import annotations

import math

import numpy as np

from reference.optimizers import OPTIMIZERS
from reference.spec import Config, predict, solves_xor, unflatten_params, xor_data

ADAM_LABELS = {"paper": "(Kingma & Ba)", "epshat": "(ε̂ form: Keras, TensorFlow)", "article": "(the article's form)"}
GRAD_LABELS = {"mse": "the MSE", "half-sse": "½·Σ(ŷ − y)² (the article's)"}


def predictions(traj, cfg: Config) -> np.ndarray:
    """The four outputs of the row's final network, computed in the run's dtype."""
    X, _ = xor_data(cfg.dtype)
    return predict(unflatten_params(traj.params[-1], cfg.hidden), X).astype(np.float64)


def optimizer_line(cfg: Config) -> str:
    """The optimizer and its hyperparameters, as the header of a report."""
    spec = OPTIMIZERS[cfg.optimizer]
    title = f"Adam {ADAM_LABELS[cfg.adam]}" if cfg.optimizer == "adam" else spec.title
    hyper = ", ".join(f"{name} {getattr(cfg, name):g}" for name in spec.defaults)
    return f"{title}: {hyper}"


def element(tensor: str, index) -> str:
    """A tensor's element as people write it: W1[0, 3]; a scalar by its name alone."""
    return tensor + (f"[{', '.join(map(str, index))}]" if len(index) else "")


def fmt(x: float, spec: str = ".2e") -> str:
    return format(x, spec) if math.isfinite(x) else str(x)


def solved_from(params_history: np.ndarray, hidden: int):
    """The first epoch after which XOR is solved (rounded outputs 0 1 1 0) and stays
    solved to the end; None if never. Records on the first axis, row 0 before training."""
    X, _ = xor_data("float64")
    solved = solves_xor(predict(unflatten_params(params_history.astype(np.float64), hidden), X))
    stays = np.logical_and.accumulate(solved[::-1])[::-1]
    return int(np.argmax(stays)) if stays.any() else None


def _steps(epochs: list) -> str:
    if not epochs:
        return ""
    span = f"epoch {epochs[0]}" if len(epochs) == 1 else f"epochs {epochs[0]}-{epochs[-1]}"
    return f" over {len(epochs)} {'step' if len(epochs) == 1 else 'steps'} ({span})"


def explanation_sentence(explanation: dict | None) -> str:
    """One sentence for a failing pair: which variant (or hyperparameters) its row
    computes, to how many ULPs over which steps, and how to compare like with like."""
    if not explanation:
        return ""
    row = explanation["row"]
    if explanation["verdict"] != "explained":
        return f"Unexplained: {explanation['description']}."
    measure = f"to {explanation['max_ulp']:.2g} ULP{_steps(explanation['matched_epochs'])}"
    if explanation["variant"] == "hyperparameters":
        values = ", ".join(
            f"{k} {v:.6g} ± {explanation['uncertainty'][k]:.2g}" for k, v in explanation["hyperparameters"].items()
        )
        return (
            f"{row} matches the same algorithm with {values} {measure} (fit residual "
            f"{explanation['residual']:.2g} {explanation['residual_unit']}): set the same hyperparameters."
        )
    text = f"{row} matches {explanation['variant']} ({explanation['description']}; {explanation['used_by']}) {measure}"
    if explanation.get("contributions"):  # a composition: what each part adds
        without = ", ".join(f"without {name} {ulps:.2g} ULP" for name, ulps in explanation["contributions"].items())
        text += f", each part needed ({without})"
    if explanation.get("equivalent"):
        text += f"; as well: {', '.join(explanation['equivalent'])}"
    if explanation.get("same_as"):
        text += f"; the same steps as {explanation['same_as']}"
    if explanation.get("hint"):
        text += f": compare like with like with {explanation['hint']}"
    return text + "."
