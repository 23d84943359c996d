"""The XOR problem, its configuration and the one initial-weight function.

Network (2-H-1, sigmoid everywhere), for a batch of the 4 XOR inputs X (4, 2):

    Z1 = X·W1 + b1      A1 = σ(Z1)        W1 (2, H), b1 (1, H)
    Z2 = A1·W2 + b2     A2 = σ(Z2)        W2 (H, 1), b2 (1, 1)

Loss, logged every epoch *before* the update, as the article does:

    L = mean over the 4 samples of (A2 − y)²

The optimizer is Adam as in Kingma & Ba, Algorithm 1 (see ``reference.adam``) unless
``Config.optimizer`` names another of the lineage (``reference.optimizers``).

A flat view of the parameters is W1, b1, W2, b2 in that order, each row-major:
4·H + 1 numbers, 17 at the default H = 4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

PARAM_NAMES = ("W1", "b1", "W2", "b2")
DTYPES = ("float64", "float32")
ADAM_FORMS = ("paper", "epshat", "article")  # see reference.adam
# an Adam form's old name -> its name now: taken for one release
OLD_ADAM_FORMS = {"seed": "article"}
GRAD_CONVENTIONS = ("mse", "half-sse")  # the loss whose gradient drives the update
N_SAMPLES = 4
# The gradient of each convention's loss over the gradient of the logged MSE:
# ½·Σ(ŷ − y)² = (N/2)·MSE.
GRAD_SCALE = {"mse": 1.0, "half-sse": N_SAMPLES / 2}


@dataclass(frozen=True)
class Config:
    """Everything that defines one training run. Defaults are the article's.

    The hyperparameters (lr … initial_accumulator) left at None take the optimizer's
    defaults (``reference.optimizers``); those the optimizer does not use stay None,
    and setting one of them is an error.
    """

    # The hyperparameters are typed float: __post_init__ fills every one the optimizer
    # uses, and a rule reads only those; the others stay None (to_dict leaves them out).
    hidden: int = 4
    lr: float = None  # type: ignore[assignment]
    beta1: float = None  # type: ignore[assignment]
    beta2: float = None  # type: ignore[assignment]
    eps: float = None  # type: ignore[assignment]
    epochs: int = 20000
    seed: int = 0
    dtype: str = "float64"
    adam: str = "paper"
    grad: str = "mse"
    optimizer: str = "adam"
    momentum: float = None  # type: ignore[assignment]
    rho: float = None  # type: ignore[assignment]
    weight_decay: float = None  # type: ignore[assignment]
    initial_accumulator: float = None  # type: ignore[assignment]
    momentum_decay: float = None  # type: ignore[assignment]
    eps_root: float = None  # type: ignore[assignment]
    eta_minus: float = None  # type: ignore[assignment]
    eta_plus: float = None  # type: ignore[assignment]
    step_size_min: float = None  # type: ignore[assignment]
    step_size_max: float = None  # type: ignore[assignment]

    def __post_init__(self):
        from reference.optimizers import OPTIMIZERS

        if self.adam in OLD_ADAM_FORMS:
            object.__setattr__(self, "adam", OLD_ADAM_FORMS[self.adam])
        if self.optimizer in OPTIMIZERS:
            for name, value in OPTIMIZERS[self.optimizer].defaults.items():
                if getattr(self, name) is None:
                    object.__setattr__(self, name, value)
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def config_problems(cfg: Config) -> list[str]:
    """Why a config cannot be run, one phrase per problem (empty when it can)."""
    from reference.optimizers import HYPERPARAMETER_RECORDS, HYPERPARAMETERS, OPTIMIZERS

    problems = []
    if cfg.optimizer not in OPTIMIZERS:
        return [f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {cfg.optimizer!r}"]
    uses = OPTIMIZERS[cfg.optimizer].defaults
    for name in HYPERPARAMETERS:
        if name not in uses and getattr(cfg, name) is not None:
            problems.append(f"{name} does not apply to the {cfg.optimizer} optimizer")
    if not _is_int(cfg.hidden) or cfg.hidden < 1:
        problems.append(f"hidden must be a whole number >= 1, got {cfg.hidden!r}")
    if not _is_int(cfg.epochs) or cfg.epochs < 1:
        problems.append(f"epochs must be a whole number >= 1, got {cfg.epochs!r}")
    if not _is_int(cfg.seed) or not 0 <= cfg.seed < 2**32:
        problems.append(f"seed must be a whole number in [0, 2**32), got {cfg.seed!r}")
    for name in uses:
        value, record = getattr(cfg, name), HYPERPARAMETER_RECORDS[name]
        if not _is_finite(value) or not record.admits(value):
            kind = "" if record.range == "unit" else "a finite number "
            problems.append(f"{name} must be {kind}{record.range_text}, got {value!r}")
    if cfg.optimizer == "adadelta" and _is_finite(cfg.eps) and cfg.eps <= 0:
        problems.append("eps must be > 0 for adadelta (its first steps are √ε/√(v + ε)·g: with ε = 0 it never moves)")
    rprop = cfg.optimizer == "rprop" and _is_finite(cfg.step_size_min) and _is_finite(cfg.step_size_max)
    if rprop and cfg.step_size_min > cfg.step_size_max:
        problems.append(f"step_size_min must be <= step_size_max, got {cfg.step_size_min!r} > {cfg.step_size_max!r}")
    if cfg.dtype not in DTYPES:
        problems.append(f"dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    if cfg.adam not in ADAM_FORMS:
        problems.append(f"adam must be one of {', '.join(ADAM_FORMS)}, got {cfg.adam!r}")
    elif cfg.adam != "paper" and cfg.optimizer != "adam":
        problems.append(f"the Adam form {cfg.adam!r} applies to the adam optimizer only, not {cfg.optimizer}")
    if cfg.grad not in GRAD_CONVENTIONS:
        problems.append(f"grad must be one of {', '.join(GRAD_CONVENTIONS)}, got {cfg.grad!r}")
    return problems


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and math.isfinite(value)


def xor_data(dtype: str = "float64") -> tuple[np.ndarray, np.ndarray]:
    """The four XOR inputs X (4, 2) and targets y (4, 1)."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    y = np.array([[0], [1], [1], [0]], dtype=dtype)
    return X, y


def param_shapes(hidden: int) -> dict[str, tuple[int, int]]:
    return {"W1": (2, hidden), "b1": (1, hidden), "W2": (hidden, 1), "b2": (1, 1)}


def n_params(hidden: int) -> int:
    return 4 * hidden + 1


def checkpoint_epochs(epochs: int, every: int = 1) -> np.ndarray:
    """1-based epochs a run records: every ``every``-th one, the last always included."""
    kept = np.arange(every, epochs + 1, every)
    return kept if kept.size and kept[-1] == epochs else np.append(kept, epochs)


def initial_params(seed: int, hidden: int = 4, dtype: str = "float64") -> dict[str, np.ndarray]:
    """The initial weights every backend starts from, converted, never re-drawn.

    Standard normal draws from ``RandomState(seed)`` in the order W1, b1, W2, b2: the
    same numbers the seed script gets from ``np.random.randn`` after ``np.random.seed``.
    Drawn in float64 and rounded once to ``dtype``.
    """
    rng = np.random.RandomState(seed)
    return {name: rng.randn(*shape).astype(dtype) for name, shape in param_shapes(hidden).items()}


def flatten_params(params: dict) -> np.ndarray:
    """W1, b1, W2, b2 row-major into one vector; a leading batch axis is kept."""
    arrays = [np.asarray(params[name]) for name in PARAM_NAMES]
    batch = arrays[0].shape[:-2]
    return np.concatenate([a.reshape(*batch, -1) for a in arrays], axis=-1)


def unflatten_params(flat: np.ndarray, hidden: int) -> dict[str, np.ndarray]:
    """Inverse of :func:`flatten_params`."""
    flat = np.asarray(flat)
    if flat.shape[-1] != n_params(hidden):
        raise ValueError(f"expected {n_params(hidden)} parameters for hidden={hidden}, got {flat.shape[-1]}")
    batch = flat.shape[:-1]
    out, start = {}, 0
    for name, shape in param_shapes(hidden).items():
        size = shape[0] * shape[1]
        out[name] = flat[..., start : start + size].reshape(*batch, *shape)
        start += size
    return out


def predict(params: dict, inputs: np.ndarray) -> np.ndarray:
    """The network's outputs for ``inputs`` (N, 2), (…, N) for a batch of params: the
    forward pass in plain numpy, for reports, plots and the solved test. Overflow in
    exp at absurd weights saturates the sigmoid to 0 or 1, as its limit says."""
    with np.errstate(over="ignore"):
        hidden = 1.0 / (1.0 + np.exp(-(inputs @ params["W1"] + params["b1"])))
        return (1.0 / (1.0 + np.exp(-(hidden @ params["W2"] + params["b2"]))))[..., 0]


def solves_xor(outputs: np.ndarray) -> np.ndarray:
    """Whether the four outputs (…, 4) round to the XOR targets 0 1 1 0 (per run of a
    batch); non-finite outputs never do."""
    targets = xor_data("float64")[1][:, 0]
    outputs = np.asarray(outputs)
    return np.all(np.isfinite(outputs), axis=-1) & np.all(np.round(outputs) == targets, axis=-1)
