"""PyTorch backend: gradients by autograd, every optimizer of ``reference.optimizers``
written by hand with tensor ops. (The torch.optim row is ``backends.torch_optim_row``.)

Training records into preallocated tensors and converts to numpy once at the end, so
no epoch waits on a host round trip.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import backends
from reference import optimizers
from reference.spec import GRAD_SCALE, PARAM_NAMES, Config, checkpoint_epochs, flatten_params, param_shapes, xor_data

NAME = "torch"
GRADIENT_SOURCE = "torch autograd"

# These tensors hold a few dozen numbers: thread hand-offs cost more than they save.
torch.set_num_threads(1)


def _torch_dtype(dtype: str):
    return {"float64": torch.float64, "float32": torch.float32}[dtype]


def check_device(device: str) -> None:
    if device not in ("cpu", "cuda"):
        raise RuntimeError(f"unknown device {device!r} (choose cpu or cuda)")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("torch sees no cuda device here")


def cuda_device_name() -> str | None:
    """The GPU the torch rows run on, for the record of a cuda run."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def to_backend(array, dtype=None):
    return torch.from_numpy(np.array(array, dtype=dtype))


def to_numpy(x):
    return x.detach().cpu().numpy()


sigmoid = torch.sigmoid
sqrt = torch.sqrt
maximum = torch.maximum
full_like = torch.full_like


def as_float32(x):
    """x rounded to float32 and kept there (a planted fault's building block)."""
    return x.float()


def custom_sigmoid(forward, backward):
    """σ as an autograd Function: ``a = forward(z)``, its derivative rule ``backward(grad,
    a)`` (the building block of a planted fault, and of a compiler variant)."""

    class Sigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            a = forward(z)
            ctx.save_for_backward(a)
            return a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            return backward(grad, a)

    return Sigmoid.apply


def sigmoid_with_derivative_at_activation():
    """σ whose derivative autograd takes at the activation, σ'(A) where σ'(Z) = A(1 − A)
    is meant: a planted fault's building block (harness.engine.faults)."""

    def backward(grad, a):
        s = torch.sigmoid(a)
        return grad * s * (1 - s)

    return custom_sigmoid(torch.sigmoid, backward)


def forward(params, X):
    Z1 = X @ params["W1"] + params["b1"]
    A1 = sigmoid(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = sigmoid(Z2)
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def mse(A2, y):
    return torch.mean((A2 - y) ** 2, dim=(-2, -1))


def loss_and_grads(params, X, y, convention: str = "mse"):
    """The logged MSE and the gradient of the ``convention`` loss (GRAD_SCALE × MSE)."""
    leaves = {k: params[k].detach().requires_grad_(True) for k in PARAM_NAMES}
    with torch.enable_grad():
        loss = mse(forward(leaves, X)["A2"], y)
        grads = torch.autograd.grad(differentiated(loss, convention), [leaves[k] for k in PARAM_NAMES])
    return loss.detach(), dict(zip(PARAM_NAMES, grads, strict=True))


def differentiated(loss, convention: str):
    """The scalar autograd differentiates: the convention's loss, summed over a batch
    (independent states: the gradient of the sum is each one's own). One state's loss is
    not summed and a scale of 1 not applied: both exact, and each node costs ~10 µs of
    backward here."""
    total = loss if loss.dim() == 0 else loss.sum()
    scale = GRAD_SCALE[convention]
    return total if scale == 1.0 else scale * total


def bias_corrections(t, cfg: Config, like):
    """(1 − β1^t, 1 − β2^t) for a step count (training) or a batch of them (lockstep),
    formed in double by libm's pow, the bits of torch.optim's Python floats (torch's own
    vectorised pow can differ from them by an ULP: docs/tolerances.md), and rounded once
    to ``like``'s dtype on its device. One path for both."""
    steps = np.asarray(t, dtype=np.float64)  # a Python int, or a cpu tensor of counts
    return tuple(torch.as_tensor(1.0 - b**steps, dtype=like.dtype, device=like.device) for b in (cfg.beta1, cfg.beta2))


def adam_moments(g, m, v, cfg: Config):
    # Written out here rather than shared with the other backends: a slip in one
    # backend's Adam must show up as a disagreement, not be copied into every row.
    m = cfg.beta1 * m + (1.0 - cfg.beta1) * g
    v = cfg.beta2 * v + (1.0 - cfg.beta2) * (g * g)
    return m, v


def adam_delta(m, v, t, cfg: Config):
    """The step subtracted from θ at the 1-based step t, in the form ``cfg.adam``."""
    if cfg.adam == "article":  # the article's constant denominators
        return cfg.lr * (m / (1.0 - cfg.beta1)) / (sqrt(v / (1.0 - cfg.beta2)) + cfg.eps)
    bc1, bc2 = bias_corrections(t, cfg, m)
    if cfg.adam == "epshat":  # ε̂ added to √v, the corrections folded into the step size
        return cfg.lr * bc2**0.5 / bc1 * m / (sqrt(v) + cfg.eps)
    return cfg.lr * (m / bc1) / (sqrt(v / bc2) + cfg.eps)


# The rest of the lineage (reference.optimizers), each rule written again with torch
# ops: element-wise (g, slots, θ, t, cfg) -> (Δ, new slots).


def _sgd(g, slots, theta, t, cfg):
    return cfg.lr * g, {}


def _momentum(g, slots, theta, t, cfg):
    buf = cfg.momentum * slots["buf"] + g
    return cfg.lr * buf, {"buf": buf}


def _nesterov(g, slots, theta, t, cfg):
    buf = cfg.momentum * slots["buf"] + g
    return cfg.lr * (g + cfg.momentum * buf), {"buf": buf}


def _adagrad(g, slots, theta, t, cfg):
    total = slots["sum"] + g * g
    return cfg.lr * g / (sqrt(total) + cfg.eps), {"sum": total}


def _rmsprop(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    return cfg.lr * g / (sqrt(v) + cfg.eps), {"v": v}


def _adadelta(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    d = sqrt(slots["u"] + cfg.eps) / sqrt(v + cfg.eps) * g
    u = cfg.rho * slots["u"] + (1.0 - cfg.rho) * (d * d)
    return cfg.lr * d, {"v": v, "u": u}


def _adam(g, slots, theta, t, cfg):
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    return adam_delta(m, v, t, cfg), {"m": m, "v": v}


def _adamw(g, slots, theta, t, cfg):  # decoupled decay, from θ before the step
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    bc1, bc2 = bias_corrections(t, cfg, m)
    return cfg.lr * ((m / bc1) / (sqrt(v / bc2) + cfg.eps) + cfg.weight_decay * theta), {"m": m, "v": v}


def _amsgrad(g, slots, theta, t, cfg):  # the maximum of the raw v, corrected afterwards
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    vmax = torch.maximum(slots["vmax"], v)
    bc1, bc2 = bias_corrections(t, cfg, m)
    return cfg.lr * (m / bc1) / (sqrt(vmax / bc2) + cfg.eps), {"m": m, "v": v, "vmax": vmax}


def _per_step(values, like):
    """Numbers that depend on the step count, formed in double (numpy, as torch.optim's
    Python floats are) and rounded once to ``like``'s dtype on its device."""
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=like.dtype, device=like.device)


def _nadam_mu(t, cfg):  # μ_t = β1·(1 − ½·0.96^(t·ψ)), in double
    return cfg.beta1 * (1.0 - 0.5 * 0.96 ** (np.asarray(t, dtype=np.float64) * cfg.momentum_decay))


def _nadam_delta(g, slots, t, cfg):
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    mu, mu_next = _per_step(_nadam_mu(t, cfg), g), _per_step(_nadam_mu(np.asarray(t) + 1, cfg), g)
    product = slots["mu_product"] * mu
    _, bc2 = bias_corrections(t, cfg, g)
    denom = sqrt(v / bc2) + cfg.eps
    delta = cfg.lr * (1.0 - mu) / (1.0 - product) * g / denom + cfg.lr * mu_next / (1.0 - product * mu_next) * m / denom
    return delta, {"m": m, "v": v, "mu_product": product}


def _nadam(g, slots, theta, t, cfg):
    return _nadam_delta(g, slots, t, cfg)


def _nadamw(g, slots, theta, t, cfg):  # decoupled decay, from θ before the step
    delta, new = _nadam_delta(g, slots, t, cfg)
    return delta + cfg.lr * cfg.weight_decay * theta, new


def _radam(g, slots, theta, t, cfg):  # rectified where ρ_t > 5, SGD with momentum before
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    bc1, bc2 = bias_corrections(t, cfg, g)
    steps = np.asarray(t, dtype=np.float64)
    rho_inf = 2.0 / (1.0 - cfg.beta2) - 1.0
    rho = rho_inf - 2.0 * steps * cfg.beta2**steps / (1.0 - cfg.beta2**steps)
    safe = np.maximum(rho, 5.0)
    rect = np.sqrt((safe - 4.0) * (safe - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe))
    m_hat = m / bc1
    rectified = m_hat * cfg.lr * (sqrt(bc2) / (sqrt(v) + cfg.eps)) * _per_step(rect, g)
    return torch.where(_per_step(rho, g) > 5.0, rectified, m_hat * cfg.lr), {"m": m, "v": v}


def _adamax(g, slots, theta, t, cfg):  # the infinity norm's decaying maximum, ε inside it
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    umax = torch.maximum(cfg.beta2 * slots["umax"], g.abs() + cfg.eps)
    step_size = _per_step(cfg.lr / (1.0 - cfg.beta1 ** np.asarray(t, dtype=np.float64)), g)
    return step_size * (m / umax), {"m": m, "umax": umax}


def _lion(g, slots, theta, t, cfg):  # the sign of an interpolation, from m before the step
    direction = torch.sign((1.0 - cfg.beta1) * g + cfg.beta1 * slots["m"])
    m = cfg.beta2 * slots["m"] + (1.0 - cfg.beta2) * g
    return cfg.lr * (direction + cfg.weight_decay * theta), {"m": m}


def _rprop(g, slots, theta, t, cfg):  # iRprop−: a sign change shrinks the step and skips it
    agreement = g * slots["prev"]
    factor = torch.ones_like(g)
    factor[agreement > 0] = cfg.eta_plus
    factor[agreement < 0] = cfg.eta_minus
    step_size = (slots["step_size"] * factor).clamp(cfg.step_size_min, cfg.step_size_max)
    kept = torch.where(agreement < 0, torch.zeros_like(g), g)
    return kept.sign() * step_size, {"step_size": step_size, "prev": kept}


def _rmsprop_centered(g, slots, theta, t, cfg):  # the root of the variance, not of the mean square
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    gavg = cfg.rho * slots["gavg"] + (1.0 - cfg.rho) * g
    return cfg.lr * g / (sqrt(v - gavg * gavg) + cfg.eps), {"v": v, "gavg": gavg}


def _rmsprop_momentum(g, slots, theta, t, cfg):  # momentum on the scaled gradient, lr outside
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    buf = cfg.momentum * slots["buf"] + g / (sqrt(v) + cfg.eps)
    return cfg.lr * buf, {"v": v, "buf": buf}


def _adabelief(g, slots, theta, t, cfg):  # the variance around m: the "belief"
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    surprise = g - m
    s = cfg.beta2 * slots["s"] + (1.0 - cfg.beta2) * (surprise * surprise) + cfg.eps_root
    bc1, bc2 = bias_corrections(t, cfg, g)
    return cfg.lr * (m / bc1) / (sqrt(s / bc2) + cfg.eps), {"m": m, "s": s}


def _yogi(g, slots, theta, t, cfg):  # v moves towards g² by at most (1 − β2)·g²
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    square = g * g
    v = slots["v"] - (1.0 - cfg.beta2) * torch.sign(slots["v"] - square) * square
    bc1, bc2 = bias_corrections(t, cfg, g)
    return cfg.lr * (m / bc1) / (sqrt(v / bc2) + cfg.eps), {"m": m, "v": v}


UPDATES = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adagrad": _adagrad,
    "rmsprop": _rmsprop,
    "adadelta": _adadelta,
    "adam": _adam,
    "adamw": _adamw,
    "amsgrad": _amsgrad,
    "nadam": _nadam,
    "nadamw": _nadamw,
    "radam": _radam,
    "adamax": _adamax,
    "lion": _lion,
    "rprop": _rprop,
    "rmsprop_centered": _rmsprop_centered,
    "rmsprop_momentum": _rmsprop_momentum,
    "adabelief": _adabelief,
    "yogi": _yogi,
}


# the glue every backend shares, written once (backends.step_glue)
optimizer_init, optimizer_step, train_step = backends.step_glue(sys.modules[__name__])


def step_phases(cfg: Config, params, slots, t) -> dict:
    """One step from each of a batch of states, every phase's values (lockstep)."""
    with torch.no_grad():
        return backends.phases_of_step(sys.modules[__name__], cfg, params, slots, t)


def flat_views(theta, hidden: int) -> dict:
    """W1, b1, W2, b2 as views of the flat vector (or batch of vectors) ``theta``."""
    shapes = param_shapes(hidden)
    pieces = theta.split([r * c for r, c in shapes.values()], dim=-1)
    return {name: piece.unflatten(-1, shapes[name]) for name, piece in zip(shapes, pieces, strict=True)}


def setup(cfg: Config, params0, every: int, device: str):
    """Data, the flat params as one tensor, and preallocated records on ``device``."""
    check_device(device)
    dtype = _torch_dtype(cfg.dtype)
    X, y = (torch.from_numpy(a).to(device) for a in xor_data(cfg.dtype))
    theta = torch.from_numpy(np.array(flatten_params(params0), dtype=cfg.dtype)).to(device)
    kept = checkpoint_epochs(cfg.epochs, every)
    losses = torch.empty((kept.size, *theta.shape[:-1]), dtype=dtype, device=device)
    history = torch.empty((kept.size + 1, *theta.shape), dtype=dtype, device=device)
    history[0] = theta
    return X, y, theta, set(kept.tolist()), losses, history


def train(cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
    """Fast path of ``train_step``: the same ``loss_and_grads`` on views of one flat
    buffer, the same rule from ``UPDATES`` on that buffer and one per state slot, records
    kept on the device and copied to the host once at the end."""
    X, y, theta, kept, losses, history = setup(cfg, params0, every, device)
    params = flat_views(theta, cfg.hidden)  # views: updating theta in place updates them
    slots = {
        s: torch.full_like(theta, optimizers.initial_slot(cfg.optimizer, s, cfg))
        for s in optimizers.OPTIMIZERS[cfg.optimizer].state_slots
    }
    row = 0
    for t in range(1, cfg.epochs + 1):
        loss, grads = loss_and_grads(params, X, y, cfg.grad)
        with torch.no_grad():
            g = torch.cat([grads[k].flatten(-2) for k in PARAM_NAMES], dim=-1)
            delta, slots = UPDATES[cfg.optimizer](g, slots, theta, t, cfg)
            theta.sub_(delta)
            if t in kept:
                losses[row] = loss
                history[row + 1] = theta
                row += 1
    return losses.cpu().numpy(), history.cpu().numpy()
