"""Planted faults: ``--inject ROW:FAULT`` alters one row's computation at run time, by
swapping one function of its backend module for a wrong one while that row runs. The
backends' code stays clean; each fault is a mistake people make, and the phase of a
step it first corrupts is what the lockstep check must name.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np

import backends
from reference.optimizers import OPTIMIZERS
from reference.spec import GRAD_SCALE, Config

INJECTABLE_ROWS = ("numpy", "jax", "torch")


def _delta(kind):
    def make(module, original):
        def delta(m, v, t, cfg: Config):
            if kind == "eps-inside-sqrt":
                bc1, bc2 = module.bias_corrections(t, cfg, m)
                return cfg.lr * (m / bc1) / module.sqrt(v / bc2 + cfg.eps)
            if kind == "bias-correction-off-by-one":  # t − 1 for t: a division by zero at step 1
                bc1, bc2 = module.bias_corrections(t - 1, cfg, m)
                return cfg.lr * (m / bc1) / (module.sqrt(v / bc2) + cfg.eps)
            if kind == "no-bias-correction":
                return cfg.lr * m / (module.sqrt(v) + cfg.eps)
            if kind == "seed-bias-correction":  # the article's constant denominators
                return cfg.lr * (m / (1 - cfg.beta1)) / (module.sqrt(v / (1 - cfg.beta2)) + cfg.eps)
            raise AssertionError(kind)

        return delta

    return {"adam_delta": make}


def _swapped_betas(module, original):
    return lambda g, m, v, cfg: original(g, m, v, replace(cfg, beta1=cfg.beta2, beta2=cfg.beta1))


def _float32_moments(module, original):
    def moments(g, m, v, cfg):
        m, v = original(g, m, v, cfg)
        if module.NAME == "torch":
            return m.float(), v.float()
        if module.NAME == "jax":  # a compiled scan keeps its carry's dtype: round through float32
            return m.astype(np.float32).astype(m.dtype), v.astype(np.float32).astype(v.dtype)
        return m.astype(np.float32), v.astype(np.float32)

    return moments


def _missing_2_over_n(module, original):
    if module.NAME == "numpy":  # the hand derivation without the 2/N of the mean
        return lambda params, X, y, convention="mse": original(params, X, y, "half-sse")
    scale = GRAD_SCALE["half-sse"]  # autodiff of ½·Σ(ŷ − y)² instead of the mean: N/2 times the gradient

    def loss_and_grads(params, X, y, convention="mse"):
        loss, grads = original(params, X, y, convention)
        return loss, {k: scale * g for k, g in grads.items()}

    return loss_and_grads


def _sigmoid_grad_at_activation(module, original):
    """Patches the function that carries σ's derivative: the hand backprop in numpy,
    the sigmoid's derivative rule in the autodiff backends."""
    if module.NAME == "numpy":
        from harness.canaries import backprop

        return lambda params, X, y, convention="mse": backprop(params, X, y, derivative_at_activation=True)
    if module.NAME == "jax":
        import jax

        @jax.custom_jvp
        def sigmoid(z):
            return jax.nn.sigmoid(z)

        @sigmoid.defjvp
        def sigmoid_jvp(primals, tangents):
            a = jax.nn.sigmoid(primals[0])
            s = jax.nn.sigmoid(a)  # σ'(A) where σ'(Z) = A(1 − A) is meant
            return a, s * (1 - s) * tangents[0]

        return sigmoid
    import torch

    class Sigmoid(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z):
            a = torch.sigmoid(z)
            ctx.save_for_backward(a)
            return a

        @staticmethod
        def backward(ctx, grad):
            (a,) = ctx.saved_tensors
            s = torch.sigmoid(a)
            return grad * s * (1 - s)

    return Sigmoid.apply


def _maximum(module):
    if module.NAME == "torch":
        return module.torch.maximum
    if module.NAME == "jax":
        return module.jnp.maximum
    return np.maximum


def _moments(module, g, m, v, cfg):
    """Adam's moments through the backend's own function where it has one (plug-ins may not)."""
    if hasattr(module, "adam_moments"):
        return module.adam_moments(g, m, v, cfg)
    return cfg.beta1 * m + (1.0 - cfg.beta1) * g, cfg.beta2 * v + (1.0 - cfg.beta2) * (g * g)


def _bias_corrections(module, t, cfg, like):
    if hasattr(module, "bias_corrections"):
        return module.bias_corrections(t, cfg, like)
    return 1.0 - cfg.beta1**t, 1.0 - cfg.beta2**t


def _wrong_rule(optimizer: str, kind: str):
    """A mistake in one optimizer's rule, written with the backend's own sqrt (and
    maximum): the factory replaces that entry of the backend's UPDATES."""
    def make(module, original):
        sqrt = module.sqrt

        def nesterov(g, slots, theta, t, cfg):  # the plain heavy-ball step, no look-ahead
            buf = cfg.momentum * slots["buf"] + g
            return cfg.lr * buf, {"buf": buf}

        def momentum(g, slots, theta, t, cfg):  # the buffer as an average, (1 − μ)·g: dampening μ
            buf = cfg.momentum * slots["buf"] + (1.0 - cfg.momentum) * g
            return cfg.lr * buf, {"buf": buf}

        def rmsprop(g, slots, theta, t, cfg):  # ε inside the root (optax's default)
            v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
            return cfg.lr * g / sqrt(v + cfg.eps), {"v": v}

        def adadelta(g, slots, theta, t, cfg):  # no ε in the numerator: √u/√(v + ε) never leaves 0
            v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
            d = sqrt(slots["u"]) / sqrt(v + cfg.eps) * g
            u = cfg.rho * slots["u"] + (1.0 - cfg.rho) * (d * d)
            return cfg.lr * d, {"v": v, "u": u}

        def adamw(g, slots, theta, t, cfg):  # L2 in the gradient (coupled), not decoupled decay
            g = g + cfg.weight_decay * theta
            m, v = _moments(module, g, slots["m"], slots["v"], cfg)
            bc1, bc2 = _bias_corrections(module, t, cfg, m)
            return cfg.lr * (m / bc1) / (sqrt(v / bc2) + cfg.eps), {"m": m, "v": v}

        def amsgrad(g, slots, theta, t, cfg):  # the maximum of the bias-corrected v̂ (optax's)
            m, v = _moments(module, g, slots["m"], slots["v"], cfg)
            bc1, bc2 = _bias_corrections(module, t, cfg, m)
            vmax = _maximum(module)(slots["vmax"], v / bc2)
            return cfg.lr * (m / bc1) / (sqrt(vmax) + cfg.eps), {"m": m, "v": v, "vmax": vmax}

        wrong = {"nesterov": nesterov, "momentum": momentum, "rmsprop": rmsprop, "adadelta": adadelta,
                 "adamw": adamw, "amsgrad": amsgrad}[optimizer]
        return dict(original, **{optimizer: wrong})

    return {"UPDATES": make}


# fault -> (the phase it first corrupts, {module attribute: factory(module, original)})
FAULTS = {
    "eps-inside-sqrt": ("update", _delta("eps-inside-sqrt")),
    "bias-correction-off-by-one": ("update", _delta("bias-correction-off-by-one")),
    "no-bias-correction": ("update", _delta("no-bias-correction")),
    "seed-bias-correction": ("update", _delta("seed-bias-correction")),
    "beta1-beta2-swapped": ("m", {"adam_moments": _swapped_betas}),
    "sigmoid-grad-at-activation": ("grads", {}),  # the attribute depends on the backend
    "grad-missing-2-over-n": ("grads", {"loss_and_grads": _missing_2_over_n}),
    "float32-moments": ("m", {"adam_moments": _float32_moments}),
    "nesterov-without-lookahead": ("update", _wrong_rule("nesterov", "no look-ahead")),
    "momentum-dampened": ("buf", _wrong_rule("momentum", "dampening")),
    "rmsprop-eps-inside-sqrt": ("update", _wrong_rule("rmsprop", "eps inside")),
    "adadelta-no-eps-in-numerator": ("update", _wrong_rule("adadelta", "no eps")),
    "adamw-coupled-decay": ("m", _wrong_rule("adamw", "coupled")),
    "amsgrad-max-of-vhat": ("vmax", _wrong_rule("amsgrad", "v-hat")),
}
ADAM_FAMILY = tuple(name for name, spec in OPTIMIZERS.items() if spec.adam_family)  # adam, adamw, amsgrad
# fault -> the optimizers whose step it can be planted in (a gradient fault: any)
FAULT_OPTIMIZERS = {
    "eps-inside-sqrt": ("adam",), "bias-correction-off-by-one": ("adam",), "no-bias-correction": ("adam",),
    "seed-bias-correction": ("adam",), "beta1-beta2-swapped": ADAM_FAMILY, "float32-moments": ADAM_FAMILY,
    "nesterov-without-lookahead": ("nesterov",), "momentum-dampened": ("momentum",),
    "rmsprop-eps-inside-sqrt": ("rmsprop",), "adadelta-no-eps-in-numerator": ("adadelta",),
    "adamw-coupled-decay": ("adamw",), "amsgrad-max-of-vhat": ("amsgrad",),
}


def _patches(module, fault: str) -> dict:
    if fault == "sigmoid-grad-at-activation":
        attribute = "loss_and_grads" if module.NAME == "numpy" else "sigmoid"
        return {attribute: _sigmoid_grad_at_activation}
    return FAULTS[fault][1]


def problem(row: str, fault: str, cfg: Config) -> str | None:
    """Why ``fault`` cannot be planted in ``row`` for this run, or None."""
    if fault not in FAULTS:
        return f"unknown fault {fault!r} (choose from {', '.join(FAULTS)})"
    from harness.rows import ROWS

    plugin = row in ROWS and ROWS[row].kind == "plug-in"
    if row not in INJECTABLE_ROWS and not plugin:
        return (f"row {row!r} does not take injected faults (only {', '.join(INJECTABLE_ROWS)} and plug-ins: the others "
                "are libraries or files)")
    if plugin and fault not in PLUGIN_FAULTS:
        return (f"a plug-in row takes the faults its interface allows: {', '.join(PLUGIN_FAULTS)} (the others swap "
                "functions only the built-in backends define)")
    if fault == "float32-moments" and cfg.dtype != "float64":
        return "float32-moments needs --dtype float64"
    if cfg.optimizer not in FAULT_OPTIMIZERS.get(fault, (cfg.optimizer,)):
        return (f"{fault} is a mistake in the {'/'.join(FAULT_OPTIMIZERS[fault])} step, not in {cfg.optimizer}'s "
                "(the gradient faults apply to every optimizer)")
    return None


# Faults that need only the plug-in interface: the gradient's scale (loss_and_grads) and
# the optimizer rules (an entry of UPDATES, written with the module's sqrt).
PLUGIN_FAULTS = ("grad-missing-2-over-n", "nesterov-without-lookahead", "momentum-dampened", "rmsprop-eps-inside-sqrt",
                 "adadelta-no-eps-in-numerator", "adamw-coupled-decay", "amsgrad-max-of-vhat")


@contextlib.contextmanager
def injected(backend: str, fault: str | None):
    """Within the block, ``backend``'s module computes with ``fault`` (None: unchanged)."""
    if fault is None:
        yield
        return
    module = backends.load(backend)
    patches = {name: factory(module, getattr(module, name)) for name, factory in _patches(module, fault).items()}
    if backend != "numpy" and backend != "jax":  # a fast loop may inline the faulty part: train_step instead
        patches["train"] = backends.readable_train(module)
    saved = {name: getattr(module, name) for name in patches}
    try:
        for name, replacement in patches.items():
            setattr(module, name, replacement)
        with np.errstate(all="ignore"):  # some faults divide by zero at step 1, as they would
            yield
    finally:
        for name, original in saved.items():
            setattr(module, name, original)
