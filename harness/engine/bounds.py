"""Rounding bounds for lockstep: a first-order bound e of every phase value of one step,
in units of u (the dtype's machine epsilon), propagated through the same formulas from
the reference's own values.

A product adds the relative errors of its factors, a sum of n terms may be off by
n·u·Σ|terms|, σ'(z) = a(1 − a) inherits a's error times |1 − 2a|, the error a − y
inherits a's error whatever its own size. Lockstep reports an error as
|row − numpy| / (u·e), "ULPs at the scale of its terms", and allows K_LOCKSTEP of them
(``harness.engine.lockstep``).

The network's phases are bounded in ``network_scales``; each optimizer's slots and step
in one function of ``OPTIMIZER_BOUNDS``, keyed like ``reference.optimizers.OPTIMIZERS``
(a new optimizer needs its bound here; tests/test_house.py checks that every one has).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reference.spec import GRAD_SCALE, PARAM_NAMES, Config, xor_data


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def network_scales(ref: dict, params: dict, cfg: Config) -> dict:
    """Bounds of the forward pass, the loss and the gradients at ``params`` (a batch)."""
    X, y = xor_data("float64")
    n, hidden = X.shape[0], cfg.hidden
    W1, b1, W2, b2 = (np.abs(_f64(params[k])) for k in PARAM_NAMES)
    Z1, A1, Z2, A2 = (_f64(ref["forward"][k]) for k in ("Z1", "A1", "Z2", "A2"))
    aX, tr = np.abs(X), lambda a: np.swapaxes(a, -1, -2)

    e_Z1 = 3 * (aX @ W1 + b1)
    e_A1 = A1 * (1 - A1) * e_Z1 + 2 * A1
    e_Z2 = e_A1 @ W2 + (hidden + 1) * (np.abs(A1) @ W2 + b2)
    e_A2 = A2 * (1 - A2) * e_Z2 + 2 * A2
    err = A2 - y
    e_err = e_A2 + np.abs(err)
    e_loss = np.mean(2 * np.abs(err) * e_err, axis=(-2, -1)) + (n + 1) * np.mean(err**2, axis=(-2, -1))

    s2, s1 = A2 * (1 - A2), A1 * (1 - A1)
    e_s2 = np.abs(1 - 2 * A2) * e_A2 + 3 * s2
    e_s1 = np.abs(1 - 2 * A1) * e_A1 + 3 * s1
    out_scale = 2.0 / n * GRAD_SCALE[cfg.grad]
    dZ2 = out_scale * err * s2
    e_dZ2 = out_scale * (e_err * s2 + np.abs(err) * e_s2) + 2 * np.abs(dZ2)
    dA1 = dZ2 @ tr(_f64(params["W2"]))
    e_dA1 = e_dZ2 @ tr(W2) + np.abs(dA1)
    dZ1 = dA1 * s1
    e_dZ1 = e_dA1 * s1 + np.abs(dA1) * e_s1 + np.abs(dZ1)
    grads = {
        "W1": tr(aX) @ e_dZ1 + (n + 1) * (tr(aX) @ np.abs(dZ1)),
        "b1": e_dZ1.sum(axis=-2, keepdims=True) + n * np.abs(dZ1).sum(axis=-2, keepdims=True),
        "W2": tr(e_A1) @ np.abs(dZ2) + tr(np.abs(A1)) @ e_dZ2 + (n + 1) * (tr(np.abs(A1)) @ np.abs(dZ2)),
        "b2": e_dZ2.sum(axis=-2, keepdims=True) + n * np.abs(dZ2).sum(axis=-2, keepdims=True),
    }
    return {"forward": {"Z1": e_Z1, "A1": e_A1, "Z2": e_Z2, "A2": e_A2}, "loss": {"loss": e_loss}, "grads": grads}


def rounding_scales(ref: dict, states, cfg: Config) -> dict:
    """First-order rounding bound e of every phase value, in units of u (module doc):
    ``ref`` the reference row's phases from ``states`` (a lockstep batch)."""
    e = network_scales(ref, states.params, cfg)
    u = float(np.finfo(cfg.dtype).eps)
    bound = OPTIMIZER_BOUNDS[cfg.optimizer]
    slots = tuple(states.slots)
    e |= {phase: {} for phase in (*slots, "update", "params")}
    t = _f64(states.t) + 1
    for k in PARAM_NAMES:
        g = _f64(ref["grads"][k])
        x = StepValues(
            g=g,
            e_g=e["grads"][k],
            e_sq=_square_scale(g, e["grads"][k], u),
            old={s: _f64(states.slots[s][k]) for s in slots},
            new={s: _f64(ref[s][k]) for s in slots},
            theta=_f64(states.params[k]),
            update=_f64(ref["update"][k]),
            t=t,
            u=u,
        )
        bounds = bound(cfg, x)
        for phase in (*slots, "update"):
            e[phase][k] = bounds[phase]
        e["params"][k] = bounds["update"] + np.abs(_f64(ref["params"][k])) + bounds.get("params", 0.0)
    return e


@dataclass
class StepValues:
    """One tensor's values in a step, for an optimizer's bound: the gradient and its bound
    e_g (and e_sq, of g²), the slots before (old, exact: a recorded state) and after
    (new, the reference's), θ before the step, the reference's Δ, the step t, and u."""

    g: np.ndarray
    e_g: np.ndarray
    e_sq: np.ndarray
    old: dict
    new: dict
    theta: np.ndarray
    update: np.ndarray
    t: np.ndarray
    u: float


# --- each optimizer's slots and step Δ -------------------------------------------------------


def _sgd(cfg: Config, x: StepValues) -> dict:
    return {"update": cfg.lr * x.e_g + np.abs(cfg.lr * x.g)}


def _momentum(cfg: Config, x: StepValues) -> dict:
    e_buf = x.e_g + 2 * cfg.momentum * np.abs(x.old["buf"]) + np.abs(x.new["buf"])
    return {"buf": e_buf, "update": cfg.lr * e_buf + np.abs(cfg.lr * x.new["buf"])}


def _nesterov(cfg: Config, x: StepValues) -> dict:
    e_buf = _momentum(cfg, x)["buf"]
    direction = x.g + cfg.momentum * x.new["buf"]
    e_direction = x.e_g + cfg.momentum * e_buf + cfg.momentum * np.abs(x.new["buf"]) + np.abs(direction)
    return {"buf": e_buf, "update": cfg.lr * e_direction + np.abs(cfg.lr * direction)}


def _adagrad(cfg: Config, x: StepValues) -> dict:
    e_sum = x.e_sq + x.new["sum"]
    return {"sum": e_sum, "update": _ratio_scale(cfg.lr, x.g, x.e_g, x.new["sum"], e_sum, cfg.eps, 0.0, x.u)}


def _rmsprop(cfg: Config, x: StepValues) -> dict:
    e_v = _ema_scale(cfg.rho, x.old["v"], x.g * x.g, x.e_sq, x.new["v"])
    return {"v": e_v, "update": _ratio_scale(cfg.lr, x.g, x.e_g, x.new["v"], e_v, cfg.eps, 0.0, x.u)}


def _adadelta(cfg: Config, x: StepValues) -> dict:
    e_v = _ema_scale(cfg.rho, x.old["v"], x.g * x.g, x.e_sq, x.new["v"])
    a, b = x.old["u"] + cfg.eps, x.new["v"] + cfg.eps
    ratio = np.sqrt(a) / np.sqrt(b)
    e_ratio = ratio * (0.5 + (e_v + b) / (2 * b) + 3)  # a rounded once; b off by e_v, rounded; 3 ops
    d = ratio * x.g
    e_d = ratio * x.e_g + np.abs(x.g) * e_ratio + np.abs(d)
    e_u = _ema_scale(cfg.rho, x.old["u"], d * d, _square_scale(d, e_d, x.u), x.new["u"])
    return {"v": e_v, "u": e_u, "update": cfg.lr * e_d + np.abs(cfg.lr * d)}


def _adamw(cfg: Config, x: StepValues) -> dict:
    e = _adam_scales(cfg, x.g, x.e_g, x.old, x.new, x.t, x.u)
    decay = cfg.lr * cfg.weight_decay * np.abs(x.theta)
    # torch.optim rounds θ·(1 − lr·λ) and its factor first: one more rounding of θ
    return e | {"update": e["update"] + 2 * decay + np.abs(x.update), "params": np.abs(x.theta)}


def _adam(cfg: Config, x: StepValues) -> dict:
    return _adam_scales(cfg, x.g, x.e_g, x.old, x.new, x.t, x.u)


OPTIMIZER_BOUNDS = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adadelta": _adadelta,
    "adam": _adam,
    "adamw": _adamw,
    "amsgrad": _adam,
}


# --- the pieces --------------------------------------------------------------------------------


def _square_scale(x, e_x, u):
    """Bound of x² given x's bound e_x: 2|x|·e_x to first order, plus u·e_x², the square
    of x's own error, which is all there is where x is 0 (a gradient whose terms cancel
    exactly in one row is u·e_x from 0 in another), plus the rounding of the square."""
    return 2 * np.abs(x) * e_x + u * e_x * e_x + x * x


def _ema_scale(beta, old, new_term, e_new_term, value):
    """Bound of β·old + (1 − β)·term, old exact (a recorded state), term off by
    e_new_term: the term's error, and a rounding of each product and of the sum."""
    return (1 - beta) * e_new_term + 2 * (beta * np.abs(old) + (1 - beta) * np.abs(new_term)) + np.abs(value)


def _sqrt_scale(x, e_x, u):
    """Bound of √x given x's bound (first order; near x = 0 the root's slope is capped
    where x's own error leaves it undetermined)."""
    root = np.sqrt(np.maximum(x, 0))
    return e_x / (2 * np.maximum(root, np.sqrt(u * e_x) + 1e-300)) + root


def _ratio_scale(pre, num, e_num, den_arg, e_den_arg, eps, rel_pre, u):
    """Bound of Δ = pre·num/(√den_arg + ε) (pre a number with relative error rel_pre)."""
    d = np.sqrt(den_arg) + eps
    delta = pre * np.abs(num) / d
    e_s = _sqrt_scale(den_arg, e_den_arg, u)
    return pre * (e_num / d + np.abs(num) * e_s / d**2) + (2 + rel_pre) * delta


def _adam_scales(cfg: Config, g, e_g, old: dict, new: dict, t, u) -> dict:
    bc1, bc2 = 1 - cfg.beta1**t, 1 - cfg.beta2**t
    # β^t formed in the dtype carries ~t·u/2 relative error from rounding β itself
    e_bc1, e_bc2 = t * cfg.beta1**t / 2 + 1, t * cfg.beta2**t / 2 + 1
    # Every form is  Δ = pre · (m/a1) / (√(v/a2) + ε)  (reference.adam), with
    # paper: a = the bias corrections; seed: the constants 1 − β; epshat: a2 = 1 and
    # pre = lr·√bc2. (relative errors of a1, a2 and pre, in units of u)
    form = cfg.adam if cfg.optimizer == "adam" else "paper"
    if form == "article":
        a1, a2, pre, rel_a1, rel_a2, rel_pre = 1 - cfg.beta1, 1 - cfg.beta2, cfg.lr, 1.0, 1.0, 0.0
    elif form == "epshat":
        a1, a2, pre = bc1, 1.0, cfg.lr * np.sqrt(bc2)
        rel_a1, rel_a2, rel_pre = e_bc1 / bc1, 0.0, e_bc2 / (2 * bc2) + 1
    else:
        a1, a2, pre, rel_a1, rel_a2, rel_pre = bc1, bc2, cfg.lr, e_bc1 / bc1, e_bc2 / bc2, 0.0
    e = {
        "m": _ema_scale(cfg.beta1, old["m"], g, e_g, new["m"]),
        "v": _ema_scale(cfg.beta2, old["v"], g * g, _square_scale(g, e_g, u), new["v"]),
    }
    v_used, e_v_used = new["v"], e["v"]
    if cfg.optimizer == "amsgrad":  # the max is exact; it is off by the v it picks
        e["vmax"] = e["v"]
        v_used = new["vmax"]
    m_hat = new["m"] / a1
    e_mh = e["m"] / a1 + np.abs(m_hat) * (1 + rel_a1)
    v_hat = v_used / a2
    e_vh = e_v_used / a2 + v_hat * (1 + rel_a2)
    e["update"] = _ratio_scale(pre, m_hat, e_mh, v_hat, e_vh, cfg.eps, rel_pre, u)
    return e
