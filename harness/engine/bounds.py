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
    u = float(np.finfo(cfg.dtype).eps)
    # XLA flushes subnormal results to zero: any value may be off by the smallest normal
    # number (tiny). It shows where gradients or squares underflow: saturated sigmoids,
    # Rprop's large weights, float32 squares of small gradients.
    floor = float(np.finfo(cfg.dtype).tiny) / u
    e = _floored(network_scales(ref, states.params, cfg), floor)
    bound = OPTIMIZER_BOUNDS[cfg.optimizer]
    slots = tuple(states.slots)
    e |= {phase: {} for phase in (*slots, "update", "params")}
    t = _f64(states.t) + 1
    for k in PARAM_NAMES:
        g = _f64(ref["grads"][k])
        x = StepValues(
            g=g,
            e_g=e["grads"][k],
            e_sq=_square_scale(g, e["grads"][k], u) + floor,
            old={s: _f64(states.slots[s][k]) for s in slots},
            new={s: _f64(ref[s][k]) for s in slots},
            theta=_f64(states.params[k]),
            update=_f64(ref["update"][k]),
            t=t,
            u=u,
            floor=floor,
        )
        bounds = bound(cfg, x)
        for phase in (*slots, "update"):
            e[phase][k] = bounds[phase] + floor
        e["params"][k] = bounds["update"] + np.abs(_f64(ref["params"][k])) + bounds.get("params", 0.0) + floor
    return e


def _floored(scales: dict, floor: float) -> dict:
    return {phase: {k: bound + floor for k, bound in tree.items()} for phase, tree in scales.items()}


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
    floor: float = 0.0  # the smallest normal number, in u: what a row that flushes subnormals loses


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


# A decision on the sign of a value (Lion, Rprop, Yogi) is uncertain where the value is
# within SIGN_MARGIN of its bounds from zero: another correct row may decide the other way,
# and the bound there takes the other branch's value.
SIGN_MARGIN = 16


def _uncertain(value, e_value, x: StepValues):
    """Whether another correct row may see ``value``'s sign otherwise: within its bound of
    zero, or below the smallest normal number (a row that flushes it sees 0)."""
    return np.abs(value) <= SIGN_MARGIN * x.u * e_value + x.u * x.floor


def _corrections(cfg: Config, t):
    """1 − β^t for β1 and β2, and each one's relative error in u (β^t formed in the
    dtype carries ~t·u/2 relative error from rounding β itself)."""
    bc1, bc2 = 1 - cfg.beta1**t, 1 - cfg.beta2**t
    return bc1, bc2, (t * cfg.beta1**t / 2 + 1) / bc1, (t * cfg.beta2**t / 2 + 1) / bc2


def _corrected_ratio(cfg: Config, m, e_m, v, e_v, t, u):
    """Bound of lr·(m/(1 − β1^t))/(√(v/(1 − β2^t)) + ε), m and v off by e_m and e_v."""
    bc1, bc2, rel_bc1, rel_bc2 = _corrections(cfg, t)
    m_hat, v_hat = m / bc1, v / bc2
    e_mh = e_m / bc1 + np.abs(m_hat) * (1 + rel_bc1)
    e_vh = e_v / bc2 + np.abs(v_hat) * (1 + rel_bc2)
    return _ratio_scale(cfg.lr, m_hat, e_mh, v_hat, e_vh, cfg.eps, 0.0, u)


def _moment_scales(cfg: Config, x: StepValues) -> dict:
    """Bounds of Adam's m and v (the slots NAdam and RAdam share with it)."""
    return {
        "m": _ema_scale(cfg.beta1, x.old["m"], x.g, x.e_g, x.new["m"]),
        "v": _ema_scale(cfg.beta2, x.old["v"], x.g * x.g, x.e_sq, x.new["v"]),
    }


def _nadam(cfg: Config, x: StepValues) -> dict:
    e = _moment_scales(cfg, x)
    mu = cfg.beta1 * (1 - 0.5 * 0.96 ** (x.t * cfg.momentum_decay))
    mu_next = cfg.beta1 * (1 - 0.5 * 0.96 ** ((x.t + 1) * cfg.momentum_decay))
    rel_mu = 3 + 0.05 * (x.t + 1) * cfg.momentum_decay  # 0.96^x off by |ln 0.96|·x·u from x's rounding
    product = x.new["mu_product"]
    e["mu_product"] = np.abs(product) * (rel_mu + 1)
    rel_p = rel_mu + 1
    rel_c1 = mu * rel_mu / (1 - mu) + product * rel_p / (1 - product) + 4
    rel_c2 = rel_mu + product * mu_next * (rel_p + rel_mu + 1) / (1 - product * mu_next) + 4
    _, bc2, _, rel_bc2 = _corrections(cfg, x.t)
    v_hat = x.new["v"] / bc2
    e_vh = e["v"] / bc2 + v_hat * (2 + rel_bc2)
    c1 = cfg.lr * (1 - mu) / (1 - product)
    c2 = cfg.lr * mu_next / (1 - product * mu_next)
    first = _ratio_scale(c1, x.g, x.e_g, v_hat, e_vh, cfg.eps, rel_c1, x.u)
    second = _ratio_scale(c2, x.new["m"], e["m"], v_hat, e_vh, cfg.eps, rel_c2, x.u)
    e["update"] = first + second + np.abs(x.update)
    if cfg.optimizer == "nadamw":
        e = e | {"update": e["update"] + 2 * cfg.lr * cfg.weight_decay * np.abs(x.theta), "params": np.abs(x.theta)}
    return e


def _radam(cfg: Config, x: StepValues) -> dict:
    e = _moment_scales(cfg, x)
    bc1, bc2, rel_bc1, rel_bc2 = _corrections(cfg, x.t)
    rho_inf = 2 / (1 - cfg.beta2) - 1
    tail = 2 * x.t * cfg.beta2**x.t / bc2
    rho = rho_inf - tail
    e_rho = rho_inf + tail * (x.t * cfg.beta2**x.t / 2 + rel_bc2 + 4)  # absolute, in u: ρ∞ − tail cancels
    safe = np.maximum(rho, 5.0)
    rect = np.sqrt((safe - 4) * (safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * safe))
    rel_r = 0.5 * (e_rho / (safe - 4) + e_rho / (safe - 2) + e_rho / safe + 8) + 1
    pre = cfg.lr * np.sqrt(bc2) * rect / bc1
    rectified = _ratio_scale(
        pre, x.new["m"], e["m"], x.new["v"], e["v"], cfg.eps, rel_bc1 + rel_bc2 / 2 + rel_r + 4, x.u
    )
    plain = cfg.lr * e["m"] / bc1 + np.abs(x.update) * (rel_bc1 + 2)
    e["update"] = np.where(rho > 5, rectified, plain)
    return e


def _adamax(cfg: Config, x: StepValues) -> dict:
    e_m = _ema_scale(cfg.beta1, x.old["m"], x.g, x.e_g, x.new["m"])
    e_u = np.maximum(cfg.beta2 * np.abs(x.old["umax"]), x.e_g + np.abs(x.g) + cfg.eps)  # max picks one, exactly
    bc1, _, rel_bc1, _ = _corrections(cfg, x.t)
    u_ = x.new["umax"]
    e_update = cfg.lr / bc1 * (e_m / u_ + np.abs(x.new["m"]) * e_u / u_**2) + np.abs(x.update) * (rel_bc1 + 3)
    return {"m": e_m, "umax": e_u, "update": e_update}


def _lion(cfg: Config, x: StepValues) -> dict:
    c = (1 - cfg.beta1) * x.g + cfg.beta1 * x.old["m"]
    e_c = (1 - cfg.beta1) * x.e_g + 2 * ((1 - cfg.beta1) * np.abs(x.g) + cfg.beta1 * np.abs(x.old["m"])) + np.abs(c)
    flip = np.where(_uncertain(c, e_c, x), 2 * cfg.lr / x.u, 0.0)
    e_update = flip + 2 * cfg.lr * cfg.weight_decay * np.abs(x.theta) + 2 * np.abs(x.update)
    return {"m": _ema_scale(cfg.beta2, x.old["m"], x.g, x.e_g, x.new["m"]), "update": e_update}


def _rprop(cfg: Config, x: StepValues) -> dict:
    prev, old = x.old["prev"], x.old["step_size"]
    agreement = x.g * prev
    doubtful = _uncertain(agreement, np.abs(prev) * x.e_g + np.abs(agreement), x)
    widest = np.clip(old * cfg.eta_plus, cfg.step_size_min, cfg.step_size_max)
    narrowest = np.clip(old * cfg.eta_minus, cfg.step_size_min, cfg.step_size_max)
    step = x.new["step_size"]
    e_step = np.abs(step) + np.where(doubtful, (widest - narrowest) / x.u, 0.0)
    e_prev = x.e_g + np.where(doubtful, np.abs(x.g) / x.u, 0.0)
    sign_doubt = doubtful | _uncertain(x.g, x.e_g, x)
    e_update = e_step + np.where(sign_doubt, 2 * np.maximum(widest, step) / x.u, 0.0)
    return {"step_size": e_step, "prev": e_prev, "update": e_update}


def _rmsprop_centered(cfg: Config, x: StepValues) -> dict:
    e_v = _ema_scale(cfg.rho, x.old["v"], x.g * x.g, x.e_sq, x.new["v"])
    e_avg = _ema_scale(cfg.rho, x.old["gavg"], x.g, x.e_g, x.new["gavg"])
    gavg = x.new["gavg"]
    var = x.new["v"] - gavg * gavg
    e_var = e_v + _square_scale(gavg, e_avg, x.u) + np.abs(var)
    return {"v": e_v, "gavg": e_avg, "update": _ratio_scale(cfg.lr, x.g, x.e_g, var, e_var, cfg.eps, 0.0, x.u)}


def _rmsprop_momentum(cfg: Config, x: StepValues) -> dict:
    e_v = _ema_scale(cfg.rho, x.old["v"], x.g * x.g, x.e_sq, x.new["v"])
    e_scaled = _ratio_scale(1.0, x.g, x.e_g, x.new["v"], e_v, cfg.eps, 0.0, x.u)
    e_buf = e_scaled + 2 * cfg.momentum * np.abs(x.old["buf"]) + np.abs(x.new["buf"])
    return {"v": e_v, "buf": e_buf, "update": cfg.lr * e_buf + np.abs(cfg.lr * x.new["buf"])}


def _adabelief(cfg: Config, x: StepValues) -> dict:
    m = x.new["m"]
    e_m = _ema_scale(cfg.beta1, x.old["m"], x.g, x.e_g, m)
    surprise = x.g - m
    e_surprise = x.e_g + e_m + np.abs(surprise)
    s = x.new["s"]
    e_s = _ema_scale(cfg.beta2, x.old["s"], surprise**2, _square_scale(surprise, e_surprise, x.u), s) + np.abs(s)
    return {"m": e_m, "s": e_s, "update": _corrected_ratio(cfg, m, e_m, s, e_s, x.t, x.u)}


def _yogi(cfg: Config, x: StepValues) -> dict:
    e_m = _ema_scale(cfg.beta1, x.old["m"], x.g, x.e_g, x.new["m"])
    square, old = x.g * x.g, x.old["v"]
    doubtful = _uncertain(old - square, x.e_sq + np.abs(old) + square, x)
    e_v = (1 - cfg.beta2) * (x.e_sq + 2 * square) + np.abs(x.new["v"])
    e_v = e_v + np.where(doubtful, 2 * (1 - cfg.beta2) * square / x.u, 0.0)
    return {"m": e_m, "v": e_v, "update": _corrected_ratio(cfg, x.new["m"], e_m, x.new["v"], e_v, x.t, x.u)}


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
    "nadam": _nadam,
    "nadamw": _nadam,
    "radam": _radam,
    "adamax": _adamax,
    "lion": _lion,
    "rprop": _rprop,
    "rmsprop_centered": _rmsprop_centered,
    "rmsprop_momentum": _rmsprop_momentum,
    "adabelief": _adabelief,
    "yogi": _yogi,
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
    bc1, bc2, rel_bc1, rel_bc2 = _corrections(cfg, t)
    # Every form is  Δ = pre · (m/a1) / (√(v/a2) + ε)  (reference.adam), with
    # paper: a = the bias corrections; seed: the constants 1 − β; epshat: a2 = 1 and
    # pre = lr·√bc2. (relative errors of a1, a2 and pre, in units of u)
    form = cfg.adam if cfg.optimizer == "adam" else "paper"
    if form == "article":
        a1, a2, pre, rel_a1, rel_a2, rel_pre = 1 - cfg.beta1, 1 - cfg.beta2, cfg.lr, 1.0, 1.0, 0.0
    elif form == "epshat":
        a1, a2, pre = bc1, 1.0, cfg.lr * np.sqrt(bc2)
        rel_a1, rel_a2, rel_pre = rel_bc1, 0.0, rel_bc2 / 2 + 1
    else:
        a1, a2, pre, rel_a1, rel_a2, rel_pre = bc1, bc2, cfg.lr, rel_bc1, rel_bc2, 0.0
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
