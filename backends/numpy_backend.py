"""numpy backend: hand-derived backpropagation, the optimizers as written in
``reference.adam`` and ``reference.optimizers``.

Each local derivative sits beside the forward line it differentiates. All functions
broadcast over leading axes, so a batch of parameter sets (B, 2, H), … trains at once.
"""

from __future__ import annotations

import sys

import numpy as np

import backends
from reference import adam as spec
from reference import optimizers
from reference.spec import PARAM_NAMES, Config, checkpoint_epochs, flatten_params, unflatten_params, xor_data

NAME = "numpy"
GRADIENT_SOURCE = "hand-derived backprop"


def check_device(device: str) -> None:
    if device != "cpu":
        raise RuntimeError(f"the numpy backend runs on the cpu only, not {device!r}")


def to_backend(array, dtype=None):
    return np.array(array, dtype=dtype)


def to_numpy(x):
    return np.asarray(x)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward(params, X):
    Z1 = X @ params["W1"] + params["b1"]
    A1 = sigmoid(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = sigmoid(Z2)
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def mse(A2, y):
    return np.mean((A2 - y) ** 2, axis=(-2, -1))


def _transpose(a):
    return np.swapaxes(a, -1, -2)


# How the error's derivative is scaled: the MSE is what every row logs and follows;
# "half-sse" is the article's derivation, the gradient of ½·Σ(A2 − y)², which is
# N/2 = 2 times the MSE's gradient.
OUTPUT_SCALES = {"mse": lambda n_samples: 2.0 / n_samples, "half-sse": lambda n_samples: 1.0}


def loss_and_grads(params, X, y, convention: str = "mse"):
    """The logged MSE, and the exact gradient of the ``convention`` loss with respect to
    W1, b1, W2, b2."""
    n_samples = X.shape[0]
    Z1 = X @ params["W1"] + params["b1"]
    A1 = sigmoid(Z1);                  dA1_dZ1 = A1 * (1.0 - A1)  # fmt: skip
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = sigmoid(Z2);                  dA2_dZ2 = A2 * (1.0 - A2)  # fmt: skip
    err = A2 - y
    loss = np.sum(err * err, axis=(-2, -1)) / n_samples  # the mean, as np.mean rounds it, 3 µs sooner
    dL_dA2 = OUTPUT_SCALES[convention](n_samples) * err  # d mean(err²) / dA2 = 2·err/N
    dL_dZ2 = dL_dA2 * dA2_dZ2
    dW2 = _transpose(A1) @ dL_dZ2  # Z2 = A1·W2 + b2
    db2 = dL_dZ2.sum(axis=-2, keepdims=True)
    dL_dA1 = dL_dZ2 @ _transpose(params["W2"])
    dL_dZ1 = dL_dA1 * dA1_dZ1
    dW1 = _transpose(X) @ dL_dZ1  # Z1 = X·W1 + b1
    db1 = dL_dZ1.sum(axis=-2, keepdims=True)
    return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def gradient_term_scales(params, X, y, convention: str = "mse"):
    """Per gradient element, the sum of the magnitudes of the terms it adds up: another
    correct implementation's rounding error in it is a few u times this, however much the
    terms cancel (the perturbation envelope's gradient nudge, ``train``)."""
    Z1 = X @ params["W1"] + params["b1"]
    A1 = sigmoid(Z1);                  dA1_dZ1 = A1 * (1.0 - A1)  # fmt: skip
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = sigmoid(Z2);                  dA2_dZ2 = A2 * (1.0 - A2)  # fmt: skip
    dZ2 = np.abs(OUTPUT_SCALES[convention](X.shape[0]) * (A2 - y) * dA2_dZ2)
    dZ1 = (dZ2 @ np.abs(_transpose(params["W2"]))) * dA1_dZ1
    return {
        "W1": _transpose(np.abs(X)) @ dZ1,
        "b1": dZ1.sum(axis=-2, keepdims=True),
        "W2": _transpose(A1) @ dZ2,
        "b2": dZ2.sum(axis=-2, keepdims=True),
    }


sqrt = np.sqrt
maximum = np.maximum
full_like = np.full_like


def as_float32(x):
    """x rounded to float32 and kept there, as a state stored in float32 would be (a
    planted fault's building block)."""
    return x.astype(np.float32)


def bias_corrections(t, cfg: Config, like):
    return spec.bias_corrections(t, cfg.beta1, cfg.beta2, like.dtype)


def adam_moments(g, m, v, cfg: Config):
    return spec.adam_moments(g, m, v, cfg.beta1, cfg.beta2)


def adam_delta(m, v, t, cfg: Config):
    # the spec's step with this module's bias_corrections, so that what is planted in
    # either reaches every path
    return spec.adam_delta(m, v, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.adam, bias_corrections(t, cfg, m))


def _adam(g, slots, theta, t, cfg: Config):
    # through this module's adam_moments and adam_delta, so that a planted fault in
    # either reaches every path that steps Adam
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    return adam_delta(m, v, t, cfg), {"m": m, "v": v}


def _adamw(g, slots, theta, t, cfg: Config):  # the spec's rule, with this module's moments
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    delta = spec.adam_delta(m, v, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, corrections=bias_corrections(t, cfg, m))
    return delta + cfg.lr * cfg.weight_decay * theta, {"m": m, "v": v}


def _amsgrad(g, slots, theta, t, cfg: Config):  # the spec's rule, with this module's moments
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    vmax = np.maximum(slots["vmax"], v)
    delta = spec.adam_delta(m, vmax, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, corrections=bias_corrections(t, cfg, m))
    return delta, {"m": m, "v": v, "vmax": vmax}


# optimizer -> element-wise rule (g, slots, θ, t, cfg) -> (Δ, new slots); the Adam family
# through this module's adam_moments, so that a fault planted there reaches all three
UPDATES = dict(optimizers.UPDATES, adam=_adam, adamw=_adamw, amsgrad=_amsgrad)


# the glue every backend shares, written once (backends.step_glue)
optimizer_init, optimizer_step, train_step = backends.step_glue(sys.modules[__name__])


def train(
    cfg: Config,
    params0,
    every: int = 1,
    device: str = "cpu",
    timings: dict | None = None,
    states: dict | None = None,
    nudge_seed=None,
):
    """Train from ``params0`` (one state, or a batch along leading axes).

    Returns the loss logged at each checkpoint epoch (``checkpoint_epochs(epochs,
    every)``) and the flat params: row 0 the initial ones, row i those after checkpoint i.
    Given a dict ``states``, also records the optimizer's flat state slots the same way
    (keys: the slot names, "m" and "v" for Adam), so any recorded step can be run again
    from its exact state.

    Given ``nudge_seed`` ((seed, runs) per block of runs, ``_nudges``), every gradient
    element is moved by u times the magnitude of its terms (``gradient_term_scales``) and
    every parameter by u·|θ| (about one ULP) after every step, each up or down at
    random: the model of another correct row's rounding
    that the harness's perturbation envelope is made of (``harness.engine.agreement``).

    The fast path of ``train_step``: the same hand gradients, then the optimizer's rule
    on whole flat buffers of params and state, with the matrices as views of them.
    """
    check_device(device)
    X, y = xor_data(cfg.dtype)
    theta = np.array(flatten_params(params0), dtype=cfg.dtype)
    params = unflatten_params(theta, cfg.hidden)  # views: updating theta updates them
    grad = np.empty_like(theta)
    grad_views = unflatten_params(grad, cfg.hidden)
    slots = {s: np.full_like(theta, value) for s, value in _initial_slots(cfg).items()}
    kept, losses, history = _records(cfg, theta, slots, every, states)
    nudge = None if nudge_seed is None else _nudges(theta, nudge_seed)
    # exp(−z) overflows to inf for z below about −709, and 1/(1 + inf) = 0 is σ's limit:
    # at absurd weights the overflow is the right answer, not something to warn about
    with np.errstate(over="ignore"):
        row = 0
        for t in range(1, cfg.epochs + 1):
            loss, grads = loss_and_grads(params, X, y, cfg.grad)
            for k in PARAM_NAMES:
                grad_views[k][...] = grads[k]
            if nudge is not None:
                grad += _flat(gradient_term_scales(params, X, y, cfg.grad), theta) * nudge()
            delta, slots = UPDATES[cfg.optimizer](grad, slots, theta, t, cfg)
            theta -= delta
            if nudge is not None:
                theta += theta * nudge()
            if t == kept[row]:
                losses[row] = loss
                history[row + 1] = theta
                if states is not None:
                    for s, buffer in slots.items():
                        states[s][row + 1] = buffer
                row += 1
    return losses, history


def _records(cfg: Config, theta, slots: dict, every: int, states: dict | None):
    """The checkpoint epochs, and the loss, params (the initial ones first) and, into
    ``states``, the slots to fill at each of them."""
    kept = checkpoint_epochs(cfg.epochs, every)
    losses = np.empty((kept.size, *theta.shape[:-1]), dtype=cfg.dtype)
    history = np.empty((kept.size + 1, *theta.shape), dtype=cfg.dtype)
    history[0] = theta
    if states is not None:
        for s, buffer in slots.items():
            states[s] = np.empty_like(history)
            states[s][0] = buffer
    return kept, losses, history


def step_phases(cfg: Config, params, slots, t) -> dict:
    """One step from each of a batch of states, every phase's values (lockstep)."""
    with np.errstate(over="ignore"):  # σ's saturation, as in train
        return backends.phases_of_step(sys.modules[__name__], cfg, params, slots, t)


def _flat(tree: dict, like):
    return flatten_params(tree).reshape(like.shape)


def _nudges(theta, streams):
    """Nudges for ``theta`` (a batch of runs along the first axis) from ``streams``, a
    sequence of (seeds, directions) groups (``agreement.nudge_streams``): each group holds
    ``directions`` × len(seeds) consecutive runs, direction-major (run d·N + j is seed j's
    direction d), and each seed draws its directions' nudges from a stream of its own, so
    a seed draws the same nudges whatever other seeds and groups share its batch. Each
    call fills and returns the same array: use it before the next call."""
    draws, start = [], 0
    for seeds, directions in streams:
        runs = directions * len(seeds)
        draws.append((slice(start, start + runs), _seeded_nudges(theta[start : start + runs], seeds, directions)))
        start += runs
    if start != len(theta):
        raise ValueError(f"nudge streams for {start} runs, a batch of {len(theta)}")
    out = np.empty_like(theta)

    def nudge():
        for runs, draw in draws:
            out[runs] = draw()
        return out

    return nudge


def _seeded_nudges(theta, seeds, directions: int):
    """A function giving, per call, ±u for every element of ``theta`` (``directions`` ×
    len(seeds) runs, direction-major), the signs fresh random bits: seed j's from
    ``default_rng(seeds[j])``, n = directions × (elements per run) of them per call. The
    bits come from ``rng.bytes`` in blocks of many calls' worth: its 32-bit words run on
    across calls, so call i of a block gets exactly the bytes the i-th call of
    ``rng.bytes(⌈n/8⌉)`` would have (the same nudges as drawing one call at a time, at a
    fraction of the cost, whatever the block's length)."""
    rngs = [np.random.default_rng(int(seed)) for seed in seeds]
    u = np.finfo(theta.dtype).eps
    signs = np.array([-u, u], dtype=theta.dtype)
    per_run = theta.shape[-1]
    n = directions * per_run
    used, words = (n + 7) // 8, ((n + 7) // 8 + 3) // 4
    block = max(1, min(2**14, 2**21 // (n * len(rngs))))  # calls per block: at most ~16 MiB of nudges at once
    drawn: list = []

    def draw():
        if not drawn:
            raw = np.stack([np.frombuffer(rng.bytes(4 * words * block), dtype=np.uint8) for rng in rngs])
            bits = np.unpackbits(raw.reshape(len(rngs), block, 4 * words)[:, :, :used], axis=-1, count=n)
            values = signs[bits.reshape(len(rngs), block, directions, per_run).transpose(1, 2, 0, 3)]
            drawn.extend(reversed(values.reshape(block, *theta.shape)))
        return drawn.pop()

    return draw


def _initial_slots(cfg: Config) -> dict:
    spec_ = optimizers.OPTIMIZERS[cfg.optimizer]
    return {s: optimizers.initial_slot(cfg.optimizer, s, cfg) for s in spec_.state_slots}
