"""The optimizer lineage up to Adam, as a spec: one update rule per optimizer.

Every rule is element-wise. For a parameter θ with gradient g at the 1-based step t,
it maps the optimizer's state slots (zero at the start unless said otherwise) to new
slots and the step Δ that is subtracted: θ_t = θ_{t−1} − Δ.

    sgd       Δ = lr·g
    momentum  b = μ·b + g;                    Δ = lr·b                 (heavy ball)
    nesterov  b = μ·b + g;                    Δ = lr·(g + μ·b)
    adagrad   s = s + g²  (s_0 = a0);         Δ = lr·g / (√s + ε)
    rmsprop   v = ρ·v + (1 − ρ)·g²;           Δ = lr·g / (√v + ε)
    adadelta  v = ρ·v + (1 − ρ)·g²;           d = √(u + ε)/√(v + ε)·g;
              u = ρ·u + (1 − ρ)·d²;           Δ = lr·d
    adam      m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²;
              Δ = lr·(m/(1 − β1^t)) / (√(v/(1 − β2^t)) + ε)   (reference.adam; other forms there)
    adamw     adam's m, v;                    Δ = lr·(m̂/(√v̂ + ε) + λ·θ_{t−1})   (decoupled decay)
    amsgrad   adam's m, v;  v_max = max(v_max, v)   (the raw v, not v̂);
              Δ = lr·(m/(1 − β1^t)) / (√(v_max/(1 − β2^t)) + ε)

These are the equations torch.optim computes (SGD, Adagrad, RMSprop, Adadelta, Adam,
AdamW, Adam(amsgrad=True)), so torch.optim can express every one of them; optax can
express all but two (``LIBRARY_GAPS``). Defaults are torch.optim's (2.13), except
momentum's μ = 0.9 (torch's default 0 would make it plain SGD).

The numpy functions below are the statement of the rules; the numpy backend runs them,
the JAX and torch backends write each one again in their own library.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from reference import adam as adam_spec

HYPERPARAMETERS = ("lr", "beta1", "beta2", "eps", "momentum", "rho", "weight_decay", "initial_accumulator")


@dataclass(frozen=True)
class Optimizer:
    name: str
    title: str
    defaults: dict            # hyperparameter -> default; the keys are those it uses
    slots: tuple              # state slots computed before the step Δ
    slots_after: tuple = ()   # slots computed from Δ (adadelta's u)
    adam_family: bool = False  # m and v as Adam's (adam_moments), bias-corrected with t

    @property
    def state_slots(self) -> tuple:
        return self.slots + self.slots_after

    @property
    def phases(self) -> tuple:
        """The order in which one step computes its optimizer values."""
        return (*self.slots, "update", *self.slots_after)


OPTIMIZERS = {
    o.name: o
    for o in (
        Optimizer("sgd", "SGD", {"lr": 1e-3}, ()),
        Optimizer("momentum", "SGD + momentum (heavy ball)", {"lr": 1e-3, "momentum": 0.9}, ("buf",)),
        Optimizer("nesterov", "SGD + Nesterov momentum", {"lr": 1e-3, "momentum": 0.9}, ("buf",)),
        Optimizer("adagrad", "AdaGrad", {"lr": 1e-2, "eps": 1e-10, "initial_accumulator": 0.0}, ("sum",)),
        Optimizer("rmsprop", "RMSprop", {"lr": 1e-2, "rho": 0.99, "eps": 1e-8}, ("v",)),
        Optimizer("adadelta", "AdaDelta", {"lr": 1.0, "rho": 0.9, "eps": 1e-6}, ("v",), ("u",)),
        Optimizer("adam", "Adam", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}, ("m", "v"),
                  adam_family=True),
        Optimizer("adamw", "AdamW", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 1e-2},
                  ("m", "v"), adam_family=True),
        Optimizer("amsgrad", "AMSGrad", {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
                  ("m", "v", "vmax"), adam_family=True),
    )
}

# Slots that hold sums of squares: never negative (replay files are checked for it).
NON_NEGATIVE_SLOTS = ("v", "sum", "u", "vmax")

# How each library row is configured to compute the spec (the README's mapping table).
TORCH_OPTIM = {
    "sgd": "SGD(lr, momentum=0)",
    "momentum": "SGD(lr, momentum=μ, dampening=0)",
    "nesterov": "SGD(lr, momentum=μ, dampening=0, nesterov=True)",
    "adagrad": "Adagrad(lr, lr_decay=0, initial_accumulator_value=a0, eps=ε)",
    "rmsprop": "RMSprop(lr, alpha=ρ, eps=ε, momentum=0, centered=False)",
    "adadelta": "Adadelta(lr, rho=ρ, eps=ε)",
    "adam": "Adam(lr, betas=(β1, β2), eps=ε)",
    "adamw": "AdamW(lr, betas=(β1, β2), eps=ε, weight_decay=λ)",
    "amsgrad": "Adam(lr, betas=(β1, β2), eps=ε, amsgrad=True)",
}
OPTAX = {
    "sgd": "sgd(lr)",
    "momentum": "sgd(lr, momentum=μ)",
    "nesterov": "sgd(lr, momentum=μ, nesterov=True)",
    "adagrad": "adagrad(lr, initial_accumulator_value=a0, eps=ε)",
    "rmsprop": "rmsprop(lr, decay=ρ, eps=ε, eps_in_sqrt=False)",
    "adadelta": "adadelta(learning_rate=lr, rho=ρ, eps=ε)",
    "adam": "adam(lr, b1=β1, b2=β2, eps=ε)",
    "adamw": "adamw(lr, b1=β1, b2=β2, eps=ε, weight_decay=λ)",
    "amsgrad": "amsgrad(lr, b1=β1, b2=β2, eps=ε)",
}

# (library row, optimizer) -> (the first phase of a step that differs, why that library
# cannot compute the spec). Such a row is run as the library is; a disagreement that
# starts in that phase is reported as expected, not as a failure. Phase "drift": every
# step agrees to rounding, but the rounding is biased the same way at every step, so
# the free-running gap grows linearly, past the envelope of unbiased rounding.
LIBRARY_GAPS = {
    ("torch.optim", "adamw"): ("drift", "torch.optim.AdamW multiplies θ by fl(1 − lr·λ) before the Adam step; that "
                               "factor is rounded once and reused, so every step decays θ by the same wrong amount "
                               "(at lr 1e-3, λ 1e-2 the factor is 4.6e-17 too large: λ is effectively 4.6e-12 "
                               "smaller, relative) and the gap grows linearly with the epochs, not as a random walk "
                               "(2.6e-12 after 20000 epochs at seed 0, half the tolerance there). Each single step "
                               "agrees to rounding (lockstep), and the spec computed in torch's order reproduces "
                               "torch.optim to 6e-15; the spec, like optax, subtracts lr·(Adam step + λ·θ)"),
    ("optax", "adagrad"): ("update", "optax.adagrad adds ε inside the root, g·rsqrt(s + ε), and zeroes the step where s = 0; "
                          "the spec (and torch.optim.Adagrad) divides by √s + ε. The steps differ by ~ε/√s "
                          "relative, above rounding unless √s > ε/u (9e5 for ε = 1e-10): from step 1"),
    ("optax", "amsgrad"): ("vmax", "optax.amsgrad keeps the maximum of the bias-corrected v̂ = v/(1 − β2^t); the spec (and "
                          "torch.optim.Adam(amsgrad=True)) keeps the maximum of the raw v and divides by 1 − β2^t "
                          "afterwards: the steps differ from step 2"),
}


class OptimizerState(NamedTuple):
    """An optimizer's state: each slot a mapping like the params (or a flat array),
    and t = steps taken so far (a number, or an array broadcastable against the
    params for a batch of states at different steps)."""

    slots: dict
    t: Any


def initial_slot(optimizer: str, slot: str, cfg) -> float:
    """The value a slot starts from: AdaGrad's accumulator a0, zero otherwise."""
    return cfg.initial_accumulator if (optimizer, slot) == ("adagrad", "sum") else 0.0


def init_state(params: dict, cfg) -> OptimizerState:
    spec = OPTIMIZERS[cfg.optimizer]
    slots = {s: {k: np.full_like(p, initial_slot(cfg.optimizer, s, cfg)) for k, p in params.items()}
             for s in spec.state_slots}
    return OptimizerState(slots=slots, t=0)


# --- the update rules, element-wise: (g, slots, θ, t, cfg) -> (Δ, new slots) ---------------

def sgd(g, slots, theta, t, cfg):
    return cfg.lr * g, {}


def momentum(g, slots, theta, t, cfg):
    buf = cfg.momentum * slots["buf"] + g
    return cfg.lr * buf, {"buf": buf}


def nesterov(g, slots, theta, t, cfg):
    buf = cfg.momentum * slots["buf"] + g
    return cfg.lr * (g + cfg.momentum * buf), {"buf": buf}


def adagrad(g, slots, theta, t, cfg):
    total = slots["sum"] + g * g
    return cfg.lr * g / (np.sqrt(total) + cfg.eps), {"sum": total}


def rmsprop(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    return cfg.lr * g / (np.sqrt(v) + cfg.eps), {"v": v}


def adadelta(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    d = np.sqrt(slots["u"] + cfg.eps) / np.sqrt(v + cfg.eps) * g
    u = cfg.rho * slots["u"] + (1.0 - cfg.rho) * (d * d)
    return cfg.lr * d, {"v": v, "u": u}


def adam(g, slots, theta, t, cfg):
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    return adam_spec.adam_delta(m, v, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.adam), {"m": m, "v": v}


def adamw(g, slots, theta, t, cfg):
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    delta = adam_spec.adam_delta(m, v, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps)
    return delta + cfg.lr * cfg.weight_decay * theta, {"m": m, "v": v}


def amsgrad(g, slots, theta, t, cfg):
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    vmax = np.maximum(slots["vmax"], v)
    return adam_spec.adam_delta(m, vmax, t, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps), {"m": m, "v": v, "vmax": vmax}


UPDATES = {name: globals()[name] for name in OPTIMIZERS}


def apply_update(update, params: dict, grads: dict, state: OptimizerState, cfg):
    """One step of the element-wise rule ``update`` over the tensors W1, b1, W2, b2:
    (new params, new state). Plain Python over mappings, so every backend uses it with
    its own ``update``."""
    t = state.t + 1
    new_params, slots = {}, {s: {} for s in state.slots}
    for k in params:
        delta, new = update(grads[k], {s: state.slots[s][k] for s in state.slots}, params[k], t, cfg)
        new_params[k] = params[k] - delta
        for s, value in new.items():
            slots[s][k] = value
    return new_params, OptimizerState(slots=slots, t=t)
