"""The optimizer lineage up to Adam, as a spec: one record and one update rule per
optimizer.

Every rule is element-wise. For a parameter θ with gradient g at the 1-based step t,
it maps the optimizer's state slots (zero at the start unless said otherwise) to new
slots and the step Δ that is subtracted: θ_t = θ_{t−1} − Δ. Each record writes its
equations down (``Optimizer.equations``; the docs render them) and cites its paper and
each library's page. The rules are the equations torch.optim computes (SGD, Adagrad,
RMSprop, Adadelta, Adam, AdamW, Adam(amsgrad=True)); optax can express all but two
(their records' ``gaps``). Defaults are torch.optim's (2.13), except momentum's μ = 0.9
(torch's default 0 would make it plain SGD).

The numpy functions below are the statement of the rules; the numpy backend runs them,
the JAX and torch backends and the MATLAB and Scilab code write each one again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from reference import adam as adam_spec


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of the lineage: its symbol, its range and what it is. The
    command line's options, their help and the config's checks are made from these."""

    name: str
    symbol: str
    range: str  # "positive" (> 0), "unit" ([0, 1)) or "non-negative" (>= 0)
    meaning: str  # what it is, for the help

    @property
    def range_text(self) -> str:
        return {"positive": "> 0", "unit": "in [0, 1)", "non-negative": ">= 0"}[self.range]

    def admits(self, value: float) -> bool:
        return {"positive": value > 0, "unit": 0 <= value < 1, "non-negative": value >= 0}[self.range]


HYPERPARAMETER_RECORDS = {
    h.name: h
    for h in (
        Hyperparameter("lr", "lr", "positive", "learning rate"),
        Hyperparameter("beta1", "β1", "unit", "decay of the gradient's average m"),
        Hyperparameter("beta2", "β2", "unit", "decay of the squared gradient's average v"),
        Hyperparameter("eps", "ε", "non-negative", "the denominator's guard"),
        Hyperparameter("momentum", "μ", "unit", "momentum"),
        Hyperparameter("rho", "ρ", "unit", "decay of the squared gradient's average"),
        Hyperparameter("weight_decay", "λ", "non-negative", "decoupled weight decay"),
        Hyperparameter("initial_accumulator", "a0", "non-negative", "starting sum of squares"),
    )
}
HYPERPARAMETERS = tuple(HYPERPARAMETER_RECORDS)
SYMBOLS = {name: h.symbol for name, h in HYPERPARAMETER_RECORDS.items()}


@dataclass(frozen=True)
class LibraryCall:
    """How a library is asked to compute an optimizer: ``function(*args, **kwargs)``.

    An argument that is a hyperparameter's name (or a tuple of names) takes the config's
    value; anything else is a constant passed as it is."""

    function: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def arguments(self, cfg) -> tuple[list, dict]:
        """The positional and keyword arguments for ``cfg``."""
        return [_value(a, cfg) for a in self.args], {k: _value(v, cfg) for k, v in self.kwargs.items()}

    def describe(self) -> str:
        shown = [_symbol(a) for a in self.args] + [f"{k}={_symbol(v)}" for k, v in self.kwargs.items()]
        return f"{self.function}({', '.join(shown)})"


def _value(argument, cfg):
    if isinstance(argument, tuple):
        return tuple(_value(a, cfg) for a in argument)
    return getattr(cfg, argument) if isinstance(argument, str) else argument


def _symbol(argument) -> str:
    if isinstance(argument, tuple):
        return f"({', '.join(_symbol(a) for a in argument)})"
    if isinstance(argument, str):
        return SYMBOLS[argument]
    return f"{argument:g}" if isinstance(argument, float) else str(argument)


@dataclass(frozen=True)
class Gap:
    """Why a library row cannot compute the spec, and the first phase of a step that
    differs. Phase "drift": every step agrees to rounding, but the rounding is biased the
    same way at every step, so the free-running gap grows linearly, past the envelope of
    unbiased rounding."""

    phase: str
    reason: str
    variant: str | None = None  # the catalogued variant the library computes (harness.engine.variants)


@dataclass(frozen=True)
class Citation:
    """Where an optimizer comes from and where each library documents its call."""

    paper: str
    torch: str  # the torch.optim class's docs page
    optax: str  # the optax function's docs page


TORCH_DOCS = "https://docs.pytorch.org/docs/stable/generated/torch.optim.{}.html"
OPTAX_DOCS = "https://optax.readthedocs.io/en/latest/api/optimizers.html#optax.{}"


@dataclass(frozen=True)
class Optimizer:
    """One optimizer of the lineage, with everything the harness knows of it (the habit of
    PyTorch's OptimizerInfo): adding an optimizer is one record here plus its rule in
    each backend's ``UPDATES``."""

    name: str
    title: str
    defaults: dict[str, float]  # hyperparameter -> default; the keys are those it uses
    slots: tuple[str, ...]  # state slots computed before the step Δ
    torch: LibraryCall  # the torch.optim class that computes the spec
    optax: LibraryCall  # the optax transformation that computes it (or comes closest: ``gaps``)
    equations: tuple[str, ...] = ()  # the rule, one statement each, in the order a step computes them
    citation: Citation | None = None
    slots_after: tuple[str, ...] = ()  # slots computed from Δ (adadelta's u)
    non_negative: tuple[str, ...] = ()  # slots that hold sums of squares (replay files are checked for it)
    initial: dict[str, str] = field(default_factory=dict)  # slot -> the hyperparameter it starts at (else 0)
    adam_family: bool = False  # m and v as Adam's (adam_moments), bias-corrected with t
    torch_state: dict[str, str] = field(default_factory=dict)  # slot -> torch.optim's per-parameter state key
    counts_steps: bool = True  # whether torch.optim's state holds a "step" entry
    optax_state: dict[str, str] = field(default_factory=dict)  # optax state field -> slot ("count" is t)
    gaps: dict[str, Gap] = field(default_factory=dict)  # library row -> Gap, where that library cannot compute the spec
    library_defaults: str = ""  # what a port that kept the libraries' own defaults would get wrong

    @property
    def state_slots(self) -> tuple:
        return self.slots + self.slots_after

    @property
    def phases(self) -> tuple:
        """The order in which one step computes its optimizer values."""
        return (*self.slots, "update", *self.slots_after)


ADAM_HYPER = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
ADAM_TORCH_ARGS = {"betas": ("beta1", "beta2"), "eps": "eps"}
ADAM_OPTAX_ARGS = {"b1": "beta1", "b2": "beta2", "eps": "eps"}
ADAM_TORCH_STATE = {"m": "exp_avg", "v": "exp_avg_sq"}
ADAM_OPTAX_STATE = {"mu": "m", "nu": "v"}
ADAM_MOMENTS = ("m = β1·m + (1 − β1)·g", "v = β2·v + (1 − β2)·g²")

OPTIMIZERS = {
    o.name: o
    for o in (
        Optimizer(
            "sgd",
            "SGD",
            {"lr": 1e-3},
            (),
            torch=LibraryCall("SGD", ("lr",), {"momentum": 0.0}),
            optax=LibraryCall("sgd", ("lr",)),
            counts_steps=False,
            equations=("Δ = lr·g",),
            citation=Citation(
                "Robbins & Monro 1951, A Stochastic Approximation Method, Ann. Math. Statist. 22(3)",
                TORCH_DOCS.format("SGD"),
                OPTAX_DOCS.format("sgd"),
            ),
            library_defaults="torch's lr defaults to 1e-3; optax has none",
        ),
        Optimizer(
            "momentum",
            "SGD + momentum (heavy ball)",
            {"lr": 1e-3, "momentum": 0.9},
            ("buf",),
            torch=LibraryCall("SGD", ("lr",), {"momentum": "momentum", "dampening": 0.0}),
            optax=LibraryCall("sgd", ("lr",), {"momentum": "momentum"}),
            equations=("b = μ·b + g", "Δ = lr·b"),
            citation=Citation(
                "Polyak 1964, Some methods of speeding up the convergence of iteration methods, "
                "USSR Comput. Math. Math. Phys. 4(5)",
                TORCH_DOCS.format("SGD"),
                OPTAX_DOCS.format("sgd"),
            ),
            torch_state={"buf": "momentum_buffer"},
            counts_steps=False,
            optax_state={"trace": "buf"},
            library_defaults=(
                "both keep b = μ·b + g (torch starts b at g, the same thing); torch's dampening d makes it μ·b + "
                '(1 − d)·g; the "velocity" form v = μ·v − lr·g, θ += v (Sutskever et al., Keras) equals it only'
                " for a constant lr, in another rounding"
            ),
        ),
        Optimizer(
            "nesterov",
            "SGD + Nesterov momentum",
            {"lr": 1e-3, "momentum": 0.9},
            ("buf",),
            torch=LibraryCall("SGD", ("lr",), {"momentum": "momentum", "dampening": 0.0, "nesterov": True}),
            optax=LibraryCall("sgd", ("lr",), {"momentum": "momentum", "nesterov": True}),
            equations=("b = μ·b + g", "Δ = lr·(g + μ·b)"),
            citation=Citation(
                "Nesterov 1983, A method for solving the convex programming problem with "
                "convergence rate O(1/k²); in this form Sutskever et al. 2013, On the importance of "
                "initialization and momentum in deep learning, ICML",
                TORCH_DOCS.format("SGD"),
                OPTAX_DOCS.format("sgd"),
            ),
            torch_state={"buf": "momentum_buffer"},
            counts_steps=False,
            optax_state={"trace": "buf"},
            library_defaults="both step along g + μ·b",
        ),
        Optimizer(
            "adagrad",
            "AdaGrad",
            {"lr": 1e-2, "eps": 1e-10, "initial_accumulator": 0.0},
            ("sum",),
            torch=LibraryCall(
                "Adagrad", ("lr",), {"lr_decay": 0.0, "initial_accumulator_value": "initial_accumulator", "eps": "eps"}
            ),
            optax=LibraryCall("adagrad", ("lr",), {"initial_accumulator_value": "initial_accumulator", "eps": "eps"}),
            equations=("s = s + g²  (s starts at a0)", "Δ = lr·g/(√s + ε)"),
            citation=Citation(
                "Duchi, Hazan & Singer 2011, Adaptive Subgradient Methods for Online Learning and "
                "Stochastic Optimization, JMLR 12",
                TORCH_DOCS.format("Adagrad"),
                OPTAX_DOCS.format("adagrad"),
            ),
            non_negative=("sum",),
            initial={"sum": "initial_accumulator"},
            torch_state={"sum": "sum"},
            optax_state={"sum_of_squares": "sum"},
            gaps={
                "optax": Gap(
                    "update",
                    "optax.adagrad adds ε inside the root, g·rsqrt(s + ε), and zeroes the "
                    "step where s = 0; the spec (and torch.optim.Adagrad) divides by √s + ε. The steps "
                    "differ by ~ε/√s relative, above rounding unless √s > ε/u (9e5 for ε = 1e-10): "
                    "from step 1",
                    variant="adagrad-eps-inside-sqrt",
                )
            },
            library_defaults=(
                "a0: torch 0, optax 0.1; ε: torch 1e-10 outside √, optax 1e-7 inside √ (cannot be moved: a known gap)"
            ),
        ),
        Optimizer(
            "rmsprop",
            "RMSprop",
            {"lr": 1e-2, "rho": 0.99, "eps": 1e-8},
            ("v",),
            torch=LibraryCall("RMSprop", ("lr",), {"alpha": "rho", "eps": "eps", "momentum": 0.0, "centered": False}),
            optax=LibraryCall("rmsprop", ("lr",), {"decay": "rho", "eps": "eps", "eps_in_sqrt": False}),
            equations=("v = ρ·v + (1 − ρ)·g²", "Δ = lr·g/(√v + ε)"),
            citation=Citation(
                "Tieleman & Hinton 2012, Lecture 6.5, Neural Networks for Machine Learning (Coursera)",
                TORCH_DOCS.format("RMSprop"),
                OPTAX_DOCS.format("rmsprop"),
            ),
            non_negative=("v",),
            torch_state={"v": "square_avg"},
            optax_state={"nu": "v"},
            library_defaults="ρ: torch 0.99, optax 0.9; ε: torch outside √, optax inside unless eps_in_sqrt=False",
        ),
        Optimizer(
            "adadelta",
            "AdaDelta",
            {"lr": 1.0, "rho": 0.9, "eps": 1e-6},
            ("v",),
            slots_after=("u",),
            torch=LibraryCall("Adadelta", ("lr",), {"rho": "rho", "eps": "eps"}),
            # learning_rate=None, optax's default, would apply no −lr: the step would climb
            optax=LibraryCall("adadelta", (), {"learning_rate": "lr", "rho": "rho", "eps": "eps"}),
            equations=("v = ρ·v + (1 − ρ)·g²", "d = √(u + ε)/√(v + ε)·g", "Δ = lr·d", "u = ρ·u + (1 − ρ)·d²"),
            citation=Citation(
                "Zeiler 2012, ADADELTA: An Adaptive Learning Rate Method, arXiv:1212.5701",
                TORCH_DOCS.format("Adadelta"),
                OPTAX_DOCS.format("adadelta"),
            ),
            non_negative=("v", "u"),
            torch_state={"v": "square_avg", "u": "acc_delta"},
            optax_state={"e_g": "v", "e_x": "u"},
            library_defaults=(
                "optax's default learning_rate=None applies no −lr: its update is +d, and apply_updates climbs "
                "the loss (measured: +0.00316 for g = 0.5 at step 1); torch's lr 1.0"
            ),
        ),
        Optimizer(
            "adam",
            "Adam",
            ADAM_HYPER,
            ("m", "v"),
            adam_family=True,
            torch=LibraryCall("Adam", ("lr",), ADAM_TORCH_ARGS),
            optax=LibraryCall("adam", ("lr",), ADAM_OPTAX_ARGS),
            equations=(
                *ADAM_MOMENTS,
                "Δ = lr·(m/(1 − β1^t))/(√(v/(1 − β2^t)) + ε)  (the paper form; reference.adam has the others)",
            ),
            citation=Citation(
                "Kingma & Ba 2015, Adam: A Method for Stochastic Optimization, ICLR, arXiv:1412.6980",
                TORCH_DOCS.format("Adam"),
                OPTAX_DOCS.format("adam"),
            ),
            non_negative=("v",),
            torch_state=ADAM_TORCH_STATE,
            optax_state=ADAM_OPTAX_STATE,
            library_defaults="none (both the paper form)",
        ),
        Optimizer(
            "adamw",
            "AdamW",
            ADAM_HYPER | {"weight_decay": 1e-2},
            ("m", "v"),
            adam_family=True,
            torch=LibraryCall("AdamW", ("lr",), ADAM_TORCH_ARGS | {"weight_decay": "weight_decay"}),
            optax=LibraryCall("adamw", ("lr",), ADAM_OPTAX_ARGS | {"weight_decay": "weight_decay"}),
            equations=(*ADAM_MOMENTS, "Δ = lr·(m̂/(√v̂ + ε) + λ·θ_{t−1})  (decoupled decay)"),
            citation=Citation(
                "Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization, ICLR, arXiv:1711.05101",
                TORCH_DOCS.format("AdamW"),
                OPTAX_DOCS.format("adamw"),
            ),
            non_negative=("v",),
            torch_state=ADAM_TORCH_STATE,
            optax_state=ADAM_OPTAX_STATE,
            gaps={
                "torch.optim": Gap(
                    "drift",
                    "torch.optim.AdamW multiplies θ by fl(1 − lr·λ) before the Adam "
                    "step; that factor is rounded once and reused, so every step decays θ by the "
                    "same wrong amount (at lr 1e-3, λ 1e-2 the factor is 4.6e-17 too large: λ is "
                    "effectively 4.6e-12 smaller, relative) and the gap grows linearly with the "
                    "epochs, not as a random walk (2.6e-12 after 20000 epochs at seed 0, half the "
                    "tolerance there). Each single step agrees to rounding (lockstep), and the "
                    "spec computed in torch's order reproduces torch.optim to 6e-15; the spec, "
                    "like optax, subtracts lr·(Adam step + λ·θ)",
                )
            },
            library_defaults=(
                "λ: torch 1e-2, optax 1e-4; torch multiplies θ by 1 − lr·λ first, optax adds λ·θ to the update (a"
                " known gap)"
            ),
        ),
        Optimizer(
            "amsgrad",
            "AMSGrad",
            ADAM_HYPER,
            ("m", "v", "vmax"),
            adam_family=True,
            torch=LibraryCall("Adam", ("lr",), ADAM_TORCH_ARGS | {"amsgrad": True}),
            optax=LibraryCall("amsgrad", ("lr",), ADAM_OPTAX_ARGS),
            equations=(
                *ADAM_MOMENTS,
                "v_max = max(v_max, v)  (the raw v, not v̂)",
                "Δ = lr·(m/(1 − β1^t))/(√(v_max/(1 − β2^t)) + ε)",
            ),
            citation=Citation(
                "Reddi, Kale & Kumar 2018, On the Convergence of Adam and Beyond, ICLR",
                TORCH_DOCS.format("Adam"),
                OPTAX_DOCS.format("amsgrad"),
            ),
            non_negative=("v", "vmax"),
            torch_state=ADAM_TORCH_STATE | {"vmax": "max_exp_avg_sq"},
            optax_state=ADAM_OPTAX_STATE | {"nu_max": "vmax"},
            gaps={
                "optax": Gap(
                    "vmax",
                    "optax.amsgrad keeps the maximum of the bias-corrected v̂ = v/(1 − β2^t); "
                    "the spec (and torch.optim.Adam(amsgrad=True)) keeps the maximum of the raw v and "
                    "divides by 1 − β2^t afterwards: the steps differ from step 2",
                    variant="amsgrad-max-of-vhat",
                )
            },
            library_defaults="torch keeps the maximum of the raw v, optax of the bias-corrected v̂ (a known gap)",
        ),
    )
}

# Slots that hold sums of squares: never negative (replay files are checked for it).
NON_NEGATIVE_SLOTS = tuple(dict.fromkeys(s for o in OPTIMIZERS.values() for s in o.non_negative))


def _merged_phases(records) -> tuple[str, ...]:
    """Every optimizer phase in an order that keeps each record's own order (a stable
    topological merge: ties go to the phase seen first)."""
    orders = [o.phases for o in records]
    seen = list(dict.fromkeys(p for order in orders for p in order))
    before = {p: {order[i - 1] for order in orders for i in range(1, len(order)) if order[i] == p} for p in seen}
    merged: list[str] = []
    while len(merged) < len(seen):
        ready = next(p for p in seen if p not in merged and before[p] <= set(merged))
        merged.append(ready)
    return tuple(merged)


# Every phase of any optimizer's step, in step order (lockstep's and explain's order).
OPTIMIZER_PHASES = _merged_phases(OPTIMIZERS.values())

# (library row, optimizer) -> (first differing phase, why): the records' gaps, as one table.
LIBRARY_GAPS = {(row, o.name): (gap.phase, gap.reason) for o in OPTIMIZERS.values() for row, gap in o.gaps.items()}


class OptimizerState(NamedTuple):
    """An optimizer's state: each slot a mapping like the params (or a flat array),
    and t = steps taken so far (a number, or an array broadcastable against the
    params for a batch of states at different steps)."""

    slots: dict
    t: Any


def initial_slot(optimizer: str, slot: str, cfg) -> float:
    """The value a slot starts from: the hyperparameter its record names (AdaGrad's
    accumulator a0), zero otherwise."""
    start = OPTIMIZERS[optimizer].initial.get(slot)
    return getattr(cfg, start) if start else 0.0


def init_state(params: dict, cfg) -> OptimizerState:
    spec = OPTIMIZERS[cfg.optimizer]
    slots = {
        s: {k: np.full_like(p, initial_slot(cfg.optimizer, s, cfg)) for k, p in params.items()}
        for s in spec.state_slots
    }
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
    new_params: dict = {}
    slots: dict[str, dict] = {s: {} for s in state.slots}
    for k in params:
        delta, new = update(grads[k], {s: state.slots[s][k] for s in state.slots}, params[k], t, cfg)
        new_params[k] = params[k] - delta
        for s, value in new.items():
            slots[s][k] = value
    return new_params, OptimizerState(slots=slots, t=t)
