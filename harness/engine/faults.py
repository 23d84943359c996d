"""Planted faults: ``--inject ROW:FAULT`` alters one row's computation at run time, by
swapping one function of its backend module for a wrong one while that row runs. The
backends' code stays clean; each fault is a mistake people make, and the phase of a
step it first corrupts is what the lockstep check must name.

One record per fault (``FAULTS``). The wrong functions are written here with the
backend's own primitives (``sqrt``, ``maximum``, ``as_float32``,
``sigmoid_with_derivative_at_activation``), so this module imports no framework.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from harness.engine.rows import INJECTABLE_ROWS, ROWS, load_backend
from reference.optimizers import OPTIMIZERS
from reference.spec import GRAD_SCALE, Config

ADAM_FAMILY = tuple(name for name, spec in OPTIMIZERS.items() if spec.adam_family)  # adam, adamw, amsgrad


@dataclass(frozen=True)
class Fault:
    name: str
    phase: str  # the phase of a step it first corrupts
    patches: str  # the backend attribute it swaps, for people
    make: Callable  # backend module -> {attribute: replacement}
    description: str  # what the mistake computes, for people
    optimizers: tuple = ()  # the optimizers whose step it is a mistake in; () for a gradient fault: every one
    plugin: bool = False  # whether a plug-in row can take it (it swaps only what the plug-in interface has)
    needs_float64: bool = False

    def applies_to(self, optimizer: str) -> bool:
        return not self.optimizers or optimizer in self.optimizers


# --- Adam's step Δ, in the form of reference.adam, with one mistake -----------------------------


def _eps_inside_sqrt(sqrt, corrections):
    def delta(m, v, t, cfg: Config):
        bc1, bc2 = corrections(t, cfg, m)
        return cfg.lr * (m / bc1) / sqrt(v / bc2 + cfg.eps)

    return delta


def _bias_correction_off_by_one(sqrt, corrections):
    def delta(m, v, t, cfg: Config):  # t − 1 for t: a division by zero at step 1
        bc1, bc2 = corrections(t - 1, cfg, m)
        return cfg.lr * (m / bc1) / (sqrt(v / bc2) + cfg.eps)

    return delta


def _no_bias_correction(sqrt, corrections):
    return lambda m, v, t, cfg: cfg.lr * m / (sqrt(v) + cfg.eps)


def _article_bias_correction(sqrt, corrections):  # the article's constant denominators
    return lambda m, v, t, cfg: cfg.lr * (m / (1 - cfg.beta1)) / (sqrt(v / (1 - cfg.beta2)) + cfg.eps)


def _adam_delta(wrong):
    """A fault that replaces ``adam_delta`` with ``wrong(sqrt, bias_corrections)``."""
    return lambda module: {"adam_delta": wrong(module.sqrt, module.bias_corrections)}


def _swapped_betas(module) -> dict:
    original = module.adam_moments
    return {"adam_moments": lambda g, m, v, cfg: original(g, m, v, replace(cfg, beta1=cfg.beta2, beta2=cfg.beta1))}


def _float32_moments(module) -> dict:
    original = module.adam_moments

    def moments(g, m, v, cfg):
        m, v = original(g, m, v, cfg)
        return module.as_float32(m), module.as_float32(v)

    return {"adam_moments": moments}


def _missing_2_over_n(module) -> dict:
    original = module.loss_and_grads
    if module.NAME == "numpy":  # the hand derivation without the 2/N of the mean
        return {"loss_and_grads": lambda params, X, y, convention="mse": original(params, X, y, "half-sse")}
    scale = GRAD_SCALE["half-sse"]  # autodiff of ½·Σ(ŷ − y)² instead of the mean: N/2 times the gradient

    def loss_and_grads(params, X, y, convention="mse"):
        loss, grads = original(params, X, y, convention)
        return loss, {k: scale * g for k, g in grads.items()}

    return {"loss_and_grads": loss_and_grads}


def _sigmoid_grad_at_activation(module) -> dict:
    """An autodiff backend gets a sigmoid whose derivative rule is wrong; the hand backprop
    gets the canary with that mistake."""
    if hasattr(module, "sigmoid_with_derivative_at_activation"):
        return {"sigmoid": module.sigmoid_with_derivative_at_activation()}
    from harness.engine.canaries import backprop

    return {
        "loss_and_grads": lambda params, X, y, convention="mse": backprop(params, X, y, derivative_at_activation=True)
    }


# --- one optimizer's rule with one mistake (an entry of the backend's UPDATES) ----------------


def _moments(module, g, m, v, cfg):
    """Adam's moments through the backend's own function where it has one (plug-ins may not)."""
    if hasattr(module, "adam_moments"):
        return module.adam_moments(g, m, v, cfg)
    return cfg.beta1 * m + (1.0 - cfg.beta1) * g, cfg.beta2 * v + (1.0 - cfg.beta2) * (g * g)


def _corrections(module, t, cfg, like):
    if hasattr(module, "bias_corrections"):
        return module.bias_corrections(t, cfg, like)
    return 1.0 - cfg.beta1**t, 1.0 - cfg.beta2**t


def _nesterov_without_lookahead(module):
    def rule(g, slots, theta, t, cfg):  # the plain heavy-ball step
        buf = cfg.momentum * slots["buf"] + g
        return cfg.lr * buf, {"buf": buf}

    return rule


def _momentum_dampened(module):
    def rule(g, slots, theta, t, cfg):  # the buffer as an average, (1 − μ)·g: dampening μ
        buf = cfg.momentum * slots["buf"] + (1.0 - cfg.momentum) * g
        return cfg.lr * buf, {"buf": buf}

    return rule


def _rmsprop_eps_inside_sqrt(module):
    def rule(g, slots, theta, t, cfg):  # optax's default
        v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
        return cfg.lr * g / module.sqrt(v + cfg.eps), {"v": v}

    return rule


def _adadelta_no_eps_in_numerator(module):
    def rule(g, slots, theta, t, cfg):  # √u/√(v + ε) never leaves 0
        v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
        d = module.sqrt(slots["u"]) / module.sqrt(v + cfg.eps) * g
        u = cfg.rho * slots["u"] + (1.0 - cfg.rho) * (d * d)
        return cfg.lr * d, {"v": v, "u": u}

    return rule


def _adamw_coupled_decay(module):
    def rule(g, slots, theta, t, cfg):  # L2 in the gradient, not decoupled decay
        g = g + cfg.weight_decay * theta
        m, v = _moments(module, g, slots["m"], slots["v"], cfg)
        bc1, bc2 = _corrections(module, t, cfg, m)
        return cfg.lr * (m / bc1) / (module.sqrt(v / bc2) + cfg.eps), {"m": m, "v": v}

    return rule


def _amsgrad_max_of_vhat(module):
    maximum = getattr(module, "maximum", np.maximum)

    def rule(g, slots, theta, t, cfg):  # the maximum of the bias-corrected v̂ (optax's)
        m, v = _moments(module, g, slots["m"], slots["v"], cfg)
        bc1, bc2 = _corrections(module, t, cfg, m)
        vmax = maximum(slots["vmax"], v / bc2)
        return cfg.lr * (m / bc1) / (module.sqrt(vmax) + cfg.eps), {"m": m, "v": v, "vmax": vmax}

    return rule


def _rule(optimizer: str, wrong):
    """A fault that replaces ``optimizer``'s entry of UPDATES with ``wrong(module)``."""
    return lambda module: {"UPDATES": dict(module.UPDATES, **{optimizer: wrong(module)})}


FAULTS = {
    f.name: f
    for f in (
        Fault("eps-inside-sqrt", "update", "adam_delta", _adam_delta(_eps_inside_sqrt), "m̂/√(v̂ + ε)", ("adam",)),
        Fault(
            "bias-correction-off-by-one",
            "update",
            "adam_delta",
            _adam_delta(_bias_correction_off_by_one),
            "1 − β^(t−1): a division by zero at step 1",
            ("adam",),
        ),
        Fault("no-bias-correction", "update", "adam_delta", _adam_delta(_no_bias_correction), "m/(√v + ε)", ("adam",)),
        Fault(
            "article-bias-correction",
            "update",
            "adam_delta",
            _adam_delta(_article_bias_correction),
            "the article's m/(1 − β1), v/(1 − β2) (equal to the paper's step at t = 1)",
            ("adam",),
        ),
        Fault(
            "beta1-beta2-swapped",
            "m",
            "adam_moments",
            _swapped_betas,
            "β2 for the first moment, β1 for the second",
            ADAM_FAMILY,
        ),
        Fault(
            "sigmoid-grad-at-activation",
            "grads",
            "sigmoid (autodiff rows), loss_and_grads (numpy)",
            _sigmoid_grad_at_activation,
            "σ'(A) for σ'(Z) (in JAX and torch: a wrong derivative rule for σ)",
        ),
        Fault(
            "grad-missing-2-over-n",
            "grads",
            "loss_and_grads",
            _missing_2_over_n,
            "the gradient of ½·Σ(ŷ − y)² instead of the mean",
            plugin=True,
        ),
        Fault(
            "float32-moments",
            "m",
            "adam_moments",
            _float32_moments,
            "m and v stored in float32 while params are float64",
            ADAM_FAMILY,
            needs_float64=True,
        ),
        Fault(
            "nesterov-without-lookahead",
            "update",
            "UPDATES['nesterov']",
            _rule("nesterov", _nesterov_without_lookahead),
            "the heavy-ball step lr·b for lr·(g + μ·b)",
            ("nesterov",),
            plugin=True,
        ),
        Fault(
            "momentum-dampened",
            "buf",
            "UPDATES['momentum']",
            _rule("momentum", _momentum_dampened),
            "b = μ·b + (1 − μ)·g, an average for a sum (torch's dampening = μ)",
            ("momentum",),
            plugin=True,
        ),
        Fault(
            "rmsprop-eps-inside-sqrt",
            "update",
            "UPDATES['rmsprop']",
            _rule("rmsprop", _rmsprop_eps_inside_sqrt),
            "g/√(v + ε) (optax's default, eps_in_sqrt=True)",
            ("rmsprop",),
            plugin=True,
        ),
        Fault(
            "adadelta-no-eps-in-numerator",
            "update",
            "UPDATES['adadelta']",
            _rule("adadelta", _adadelta_no_eps_in_numerator),
            "√u/√(v + ε)·g: u starts at 0, so it never moves",
            ("adadelta",),
            plugin=True,
        ),
        Fault(
            "adamw-coupled-decay",
            "m",
            "UPDATES['adamw']",
            _rule("adamw", _adamw_coupled_decay),
            "λ·θ added to the gradient (L2) instead of decoupled decay",
            ("adamw",),
            plugin=True,
        ),
        Fault(
            "amsgrad-max-of-vhat",
            "vmax",
            "UPDATES['amsgrad']",
            _rule("amsgrad", _amsgrad_max_of_vhat),
            "the maximum of the bias-corrected v̂ (optax's AMSGrad)",
            ("amsgrad",),
            plugin=True,
        ),
    )
}
PLUGIN_FAULTS = tuple(name for name, f in FAULTS.items() if f.plugin)
OLD_FAULTS = {"seed-bias-correction": "article-bias-correction"}  # an old name -> the name now, for one release


def problem(row: str, fault: str, cfg: Config) -> str | None:
    """Why ``fault`` cannot be planted in ``row`` for this run, or None."""
    if fault not in FAULTS:
        return f"unknown fault {fault!r} (choose from {', '.join(FAULTS)})"
    record = FAULTS[fault]
    if row in ROWS:  # (planted in another environment's run of a row: that row's)
        row = ROWS[row].runs
    plugin = row in ROWS and ROWS[row].kind == "plug-in"
    if row in ROWS and ROWS[row].program:
        variable = load_backend(row).PROGRAM.code_variable
        return (
            f"row {row!r} runs a program in another language: plant a mistake in a copy of its code and point "
            f"{variable} at that folder"
        )
    if row not in INJECTABLE_ROWS and not plugin:
        return (
            f"row {row!r} does not take injected faults (only {', '.join(INJECTABLE_ROWS)} and plug-ins: the others "
            "are libraries or files)"
        )
    if plugin and not record.plugin:
        return (
            f"a plug-in row takes the faults its interface allows: {', '.join(PLUGIN_FAULTS)} (the others swap "
            "functions only the built-in backends define)"
        )
    if record.needs_float64 and cfg.dtype != "float64":
        return f"{fault} needs --dtype float64"
    if not record.applies_to(cfg.optimizer):
        return (
            f"{fault} is a mistake in the {'/'.join(record.optimizers)} step, not in {cfg.optimizer}'s "
            "(the gradient faults apply to every optimizer)"
        )
    return None


@contextlib.contextmanager
def patched(module, patches: dict):
    """Within the block, ``module``'s attributes named in ``patches`` are replaced."""
    saved = {name: getattr(module, name) for name in patches}
    try:
        for name, replacement in patches.items():
            setattr(module, name, replacement)
        with np.errstate(all="ignore"):  # some mistakes divide by zero at step 1, as they would
            yield
    finally:
        for name, original in saved.items():
            setattr(module, name, original)


@contextlib.contextmanager
def injected(row: str, fault: str | None):
    """Within the block, row ``row``'s backend module computes with ``fault`` (None:
    unchanged). Every path of a row's step (its fast loop, ``train_step``,
    ``step_phases``) calls the swapped function, so the fault reaches them all."""
    if fault is None:
        yield
        return
    module = load_backend(row)
    if getattr(module, "REMOTE", False):  # another interpreter plants it there
        with module.planted(fault):
            yield
        return
    with patched(module, FAULTS[fault].make(module)):
        yield
