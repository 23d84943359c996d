"""JAX backend: gradients by ``jax.value_and_grad``, every optimizer of
``reference.optimizers`` written with jnp, training compiled as one ``lax.scan`` over
epochs. (The optax and keras rows are ``backends.optax_row`` and ``backends.keras_row``.)

float64 must really be float64: x64 is switched on before any array is made, and
``train`` checks the dtype that comes out.
"""

from __future__ import annotations

import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)


def _use_compilation_cache() -> None:
    """JAX's persistent compilation cache in $JAX_COMPILATION_CACHE_DIR, else the user's
    cache folder (backends.user_cache_folder("jax")), every compile kept (JAX keeps only
    those over 1 s by default; the rows' take 0.1-1 s each, every run): a second run
    loads what the first compiled. The key holds the program, the jax and jaxlib
    versions, the backend and XLA_FLAGS, so another version or flag compiles anew."""
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", str(backends.user_cache_folder("jax")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import backends  # noqa: E402
from reference.spec import GRAD_SCALE, PARAM_NAMES, Config, xor_data  # noqa: E402

_use_compilation_cache()

NAME = "jax"
GRADIENT_SOURCE = "jax.value_and_grad"


def to_backend(array, dtype=None):
    return jnp.asarray(np.asarray(array, dtype=dtype))


def to_numpy(x):
    return np.asarray(x)


sigmoid = jax.nn.sigmoid
sqrt = jnp.sqrt
maximum = jnp.maximum
full_like = jnp.full_like


def as_float32(x):
    """x rounded through float32 (a planted fault's building block: a compiled scan
    keeps its carry's dtype, so the value is rounded and the dtype kept)."""
    return x.astype(np.float32).astype(x.dtype)


def sigmoid_with_derivative_at_activation():
    """σ whose derivative rule is taken at the activation, σ'(A) where σ'(Z) = A(1 − A)
    is meant: a planted fault's building block (harness.engine.faults)."""

    @jax.custom_jvp
    def wrong_sigmoid(z):
        return jax.nn.sigmoid(z)

    @wrong_sigmoid.defjvp
    def wrong_sigmoid_jvp(primals, tangents):
        a = jax.nn.sigmoid(primals[0])
        s = jax.nn.sigmoid(a)
        return a, s * (1 - s) * tangents[0]

    return wrong_sigmoid


def forward(params, X):
    Z1 = X @ params["W1"] + params["b1"]
    A1 = sigmoid(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = sigmoid(Z2)
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def mse(A2, y):
    return jnp.mean((A2 - y) ** 2, axis=(-2, -1))


def _loss(params, X, y):
    return mse(forward(params, X)["A2"], y)


def _summed_loss(params, X, y, convention):
    # States in a batch are independent, so the gradient of the sum is each state's
    # own gradient: one grad call serves one state or a batch of them. The convention's
    # loss is GRAD_SCALE × the MSE (½·Σ(ŷ − y)² = N/2 · MSE); the MSE is what is logged.
    loss = _loss(params, X, y)
    return GRAD_SCALE[convention] * jnp.sum(loss), loss


def loss_and_grads(params, X, y, convention: str = "mse"):
    """The logged MSE and the gradient of the ``convention`` loss."""
    (_, loss), grads = jax.value_and_grad(_summed_loss, has_aux=True)(params, X, y, convention)
    return loss, grads


def bias_corrections(t, cfg: Config, like):
    """(1 − β1^t, 1 − β2^t) in the dtype of ``like``; t may be traced or an array."""
    t = jnp.asarray(t, like.dtype)
    return 1.0 - cfg.beta1**t, 1.0 - cfg.beta2**t


def adam_moments(g, m, v, cfg: Config):
    # Written out here, not shared with the other backends, so that rows stay independent.
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


# The rest of the lineage (reference.optimizers), each rule written again in jnp:
# element-wise (g, slots, θ, t, cfg) -> (Δ, new slots).


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
    vmax = jnp.maximum(slots["vmax"], v)
    bc1, bc2 = bias_corrections(t, cfg, m)
    return cfg.lr * (m / bc1) / (sqrt(vmax / bc2) + cfg.eps), {"m": m, "v": v, "vmax": vmax}


def _nadam_mu(t, cfg, like):  # μ_t = β1·(1 − ½·0.96^(t·ψ)), in the dtype of like
    t = jnp.asarray(t, like.dtype)
    return cfg.beta1 * (1.0 - 0.5 * 0.96 ** (t * cfg.momentum_decay))


def _nadam_delta(g, slots, t, cfg):
    m, v = adam_moments(g, slots["m"], slots["v"], cfg)
    mu, mu_next = _nadam_mu(t, cfg, g), _nadam_mu(t + 1, cfg, g)
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
    steps = jnp.asarray(t, jnp.float64)  # ρ_t in double: it decides the branch
    rho_inf = 2.0 / (1.0 - cfg.beta2) - 1.0
    rho = rho_inf - 2.0 * steps * cfg.beta2**steps / (1.0 - cfg.beta2**steps)
    safe = jnp.maximum(rho, 5.0)
    rect = jnp.sqrt((safe - 4.0) * (safe - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe)).astype(g.dtype)
    m_hat = m / bc1
    rectified = m_hat * cfg.lr * (sqrt(bc2) / (sqrt(v) + cfg.eps)) * rect
    return jnp.where(rho > 5.0, rectified, m_hat * cfg.lr), {"m": m, "v": v}


def _adamax(g, slots, theta, t, cfg):  # the infinity norm's decaying maximum, ε inside it
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    umax = jnp.maximum(cfg.beta2 * slots["umax"], jnp.abs(g) + cfg.eps)
    bc1, _ = bias_corrections(t, cfg, g)
    return (cfg.lr / bc1) * (m / umax), {"m": m, "umax": umax}


def _lion(g, slots, theta, t, cfg):  # the sign of an interpolation, from m before the step
    direction = jnp.sign((1.0 - cfg.beta1) * g + cfg.beta1 * slots["m"])
    m = cfg.beta2 * slots["m"] + (1.0 - cfg.beta2) * g
    return cfg.lr * (direction + cfg.weight_decay * theta), {"m": m}


def _rprop(g, slots, theta, t, cfg):  # iRprop−: a sign change halves the step and skips it
    agreement = g * slots["prev"]
    factor = jnp.where(agreement > 0, cfg.eta_plus, jnp.where(agreement < 0, cfg.eta_minus, 1.0)).astype(g.dtype)
    step_size = jnp.clip(slots["step_size"] * factor, cfg.step_size_min, cfg.step_size_max)
    kept = jnp.where(agreement < 0, jnp.zeros_like(g), g)
    return jnp.sign(kept) * step_size, {"step_size": step_size, "prev": kept}


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
    s = cfg.beta2 * slots["s"] + (1.0 - cfg.beta2) * (g - m) ** 2 + cfg.eps_root
    bc1, bc2 = bias_corrections(t, cfg, g)
    return cfg.lr * (m / bc1) / (sqrt(s / bc2) + cfg.eps), {"m": m, "s": s}


def _yogi(g, slots, theta, t, cfg):  # v moves towards g² by at most (1 − β2)·g²
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    v = slots["v"] - (1.0 - cfg.beta2) * jnp.sign(slots["v"] - g * g) * (g * g)
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


def _flat(params):
    batch = params["W1"].shape[:-2]
    return jnp.concatenate([params[k].reshape(*batch, -1) for k in PARAM_NAMES], axis=-1)


def scan_training(step, params0, opt_state0, epochs: int, every: int):
    """Run ``step`` for ``epochs`` epochs; the loss and flat params at each checkpoint
    (``checkpoint_epochs(epochs, every)``), with the initial flat params first."""

    def one_epoch(carry, _):
        params, opt_state = carry
        params, opt_state, loss = step(params, opt_state)
        return (params, opt_state), loss

    def one_chunk(length):
        def body(carry, _):
            carry, losses = jax.lax.scan(one_epoch, carry, None, length=length)
            return carry, (losses[-1], _flat(carry[0]))

        return body

    carry = (params0, opt_state0)
    carry, (losses, flats) = jax.lax.scan(one_chunk(every), carry, None, length=epochs // every)
    if epochs % every:
        carry, (last_loss, last_flat) = one_chunk(epochs % every)(carry, None)
        losses = jnp.concatenate([losses, last_loss[None]])
        flats = jnp.concatenate([flats, last_flat[None]])
    return losses, jnp.concatenate([_flat(params0)[None], flats], axis=0)


def check_device(device: str) -> None:
    jax_device(device)


def jax_device(device: str):
    """The JAX device for "cpu" or "cuda"; a clear error when there is none."""
    platform = {"cpu": "cpu", "cuda": "gpu"}.get(device)
    if platform is None:
        raise ValueError(f"unknown device {device!r} (choose cpu or cuda)")
    try:
        return jax.devices(platform)[0]
    except RuntimeError:
        raise RuntimeError(f"JAX sees no {device} device here") from None


def run_compiled(fn, cfg: Config, params0, device: str, timings: dict | None):
    """Compile ``fn(params)`` for ``device``, then run it; compile and run seconds go
    into ``timings`` when given."""
    dev = jax_device(device)
    params = {k: jax.device_put(np.asarray(params0[k], dtype=cfg.dtype), dev) for k in PARAM_NAMES}
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(params).compile()
    compiled_at = time.perf_counter()
    losses, history = jax.block_until_ready(compiled(params))
    ran_at = time.perf_counter()
    losses, history = np.asarray(losses), np.asarray(history)
    for a in (losses, history):
        if a.dtype != np.dtype(cfg.dtype):
            raise RuntimeError(f"JAX computed in {a.dtype}, not {cfg.dtype}: is jax_enable_x64 on?")
    if timings is not None:
        timings.update(compile_seconds=compiled_at - start, run_seconds=ran_at - compiled_at)
    return losses, history


def xor_arrays(cfg: Config):
    return tuple(jnp.asarray(a) for a in xor_data(cfg.dtype))


def train(cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
    """The whole training as one compiled ``lax.scan`` of ``train_step``."""
    X, y = xor_arrays(cfg)

    def run(params):
        step = lambda p, s: train_step(p, s, X, y, cfg)  # noqa: E731
        return scan_training(step, params, optimizer_init(params, cfg), cfg.epochs, every)

    return run_compiled(run, cfg, params0, device, timings)


def step_phases(cfg: Config, params, slots, t) -> dict:
    """One step from each of a batch of states, every phase's values (lockstep), compiled."""
    module = sys.modules[__name__]
    tensors, state, X, y = backends.state_to_backend(module, params, slots, t, cfg.dtype)
    step = jax.jit(lambda p, s, X_, y_: backends.hand_phases(module, cfg, p, s, X_, y_))
    return backends.numpy_tree(module, step(tensors, state, X, y))
