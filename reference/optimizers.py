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

import os
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
    range: str  # "positive" (> 0), "unit" ([0, 1)), "open-unit" ((0, 1)), "above-one" (> 1), "non-negative"
    meaning: str  # what it is, for the help
    pair: str = ""  # the command-line option that sets it with another, as torch.optim names the pair

    @property
    def range_text(self) -> str:
        return RANGES[self.range][0]

    def admits(self, value: float) -> bool:
        return RANGES[self.range][1](value)


RANGES = {
    "positive": ("> 0", lambda x: x > 0),
    "unit": ("in [0, 1)", lambda x: 0 <= x < 1),
    "open-unit": ("in (0, 1)", lambda x: 0 < x < 1),
    "above-one": ("> 1", lambda x: x > 1),
    "non-negative": (">= 0", lambda x: x >= 0),
}


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
        Hyperparameter("momentum_decay", "ψ", "non-negative", "NAdam's momentum schedule"),
        Hyperparameter("eps_root", "ε_root", "non-negative", "added to the squared average, under the root"),
        Hyperparameter("eta_minus", "η−", "open-unit", "step-size factor after a sign change", "etas"),
        Hyperparameter("eta_plus", "η+", "above-one", "step-size factor while the sign holds", "etas"),
        Hyperparameter("step_size_min", "Γmin", "positive", "the smallest step size", "step_sizes"),
        Hyperparameter("step_size_max", "Γmax", "positive", "the largest step size", "step_sizes"),
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
    source: str = ""  # the library's source file that computes it (path inside the installed package)
    issue: str = ""  # the upstream issue or pull request that reports it, where one exists
    agree: dict[str, Any] = field(default_factory=dict)  # Config changes under which library and spec agree
    environment: dict[str, str] = field(default_factory=dict)  # or environment variables (the library's settings)
    dtypes: tuple[str, ...] = ("float64", "float32")  # the dtypes in which it differs

    def holds(self, cfg) -> bool:
        """Whether the library computes this difference in a run of ``cfg``: in one of its
        dtypes, and not under the settings that make the two agree."""
        if cfg.dtype not in self.dtypes:
            return False
        if not (self.agree or self.environment):
            return True
        settled = all(getattr(cfg, k) == v for k, v in self.agree.items())
        return not (settled and all(os.environ.get(k) == v for k, v in self.environment.items()))


@dataclass(frozen=True)
class Citation:
    """Where an optimizer comes from and where each library documents its call."""

    paper: str
    torch: str  # the torch.optim class's docs page ("" where torch.optim has none)
    optax: str  # the optax function's docs page
    keras: str = ""  # the Keras class's docs page, where Keras ships it


TORCH_DOCS = "https://docs.pytorch.org/docs/stable/generated/torch.optim.{}.html"
OPTAX_DOCS = "https://optax.readthedocs.io/en/latest/api/optimizers.html#optax.{}"
KERAS_DOCS = "https://keras.io/api/optimizers/{}/"


@dataclass(frozen=True)
class Optimizer:
    """One optimizer of the lineage, with everything the harness knows of it (the habit of
    PyTorch's OptimizerInfo): adding an optimizer is one record here plus its rule in
    each backend's ``UPDATES``."""

    name: str
    title: str
    defaults: dict[str, float]  # hyperparameter -> default; the keys are those it uses
    slots: tuple[str, ...]  # state slots computed before the step Δ
    torch: LibraryCall | None  # the torch.optim class that computes the spec (None: torch.optim has none)
    optax: LibraryCall  # the optax transformation that computes it (or comes closest: ``gaps``)
    equations: tuple[str, ...] = ()  # the rule, one statement each, in the order a step computes them
    citation: Citation | None = None
    slots_after: tuple[str, ...] = ()  # slots computed from Δ (adadelta's u)
    non_negative: tuple[str, ...] = ()  # slots that hold sums of squares (replay files are checked for it)
    initial: dict[str, Any] = field(default_factory=dict)  # slot -> the hyperparameter (or number) it starts at
    adam_family: bool = False  # m and v as Adam's (adam_moments), bias-corrected with t
    torch_state: dict[str, str] = field(default_factory=dict)  # slot -> torch.optim's per-parameter state key
    torch_scalars: tuple[str, ...] = ()  # slots torch.optim keeps as one number per tensor (NAdam's μ product)
    counts_steps: bool = True  # whether torch.optim's state holds a "step" entry
    optax_state: dict[str, str] = field(default_factory=dict)  # optax state field -> slot ("count" is t)
    gaps: dict[str, Gap] = field(default_factory=dict)  # library row -> Gap, where that library cannot compute the spec
    library_defaults: str = ""  # what a port that kept the libraries' own defaults would get wrong
    keras: LibraryCall | None = None  # the keras.optimizers class, where Keras ships the optimizer
    follows: str = "torch.optim"  # whose documented algorithm the hand rows follow

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

# NAdam's and NAdamW's torch.optim gap: one class, one difference
NADAM_PRODUCT_IN_DEFAULT_DTYPE = Gap(
    "mu_product",
    "torch.optim.NAdam keeps the running product of μ in torch's default dtype, float32 unless "
    "torch.set_default_dtype(torch.float64): in a float64 run each step's product is rounded to "
    "float32 (torch/optim/nadam.py, _init_group: mu_product in _get_scalar_dtype())",
    variant="nadam-product-in-float32",
    source="torch/optim/nadam.py (_init_group, _get_scalar_dtype)",
    environment={"XOR_TORCH_DEFAULT_DTYPE": "float64"},
    dtypes=("float64",),
)

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
            keras=LibraryCall("SGD", (), {"learning_rate": "lr", "momentum": 0.0}),
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
            keras=LibraryCall("SGD", (), {"learning_rate": "lr", "momentum": "momentum"}),
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
            keras=LibraryCall("SGD", (), {"learning_rate": "lr", "momentum": "momentum", "nesterov": True}),
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
            keras=LibraryCall(
                "Adagrad",
                (),
                {"learning_rate": "lr", "initial_accumulator_value": "initial_accumulator", "epsilon": "eps"},
            ),
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
                    source="optax/_src/alias.py (adagrad), transform.py (scale_by_rss)",
                ),
                "keras": Gap(
                    "update",
                    "keras.optimizers.Adagrad adds ε inside the root, lr·g/√(s + ε)",
                    variant="adagrad-eps-inside-sqrt",
                    source="keras/src/optimizers/adagrad.py",
                    agree={"eps": 0.0},
                ),
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
            keras=LibraryCall("RMSprop", (), {"learning_rate": "lr", "rho": "rho", "epsilon": "eps"}),
            equations=("v = ρ·v + (1 − ρ)·g²", "Δ = lr·g/(√v + ε)"),
            citation=Citation(
                "Tieleman & Hinton 2012, Lecture 6.5, Neural Networks for Machine Learning (Coursera)",
                TORCH_DOCS.format("RMSprop"),
                OPTAX_DOCS.format("rmsprop"),
            ),
            non_negative=("v",),
            torch_state={"v": "square_avg"},
            optax_state={"nu": "v"},
            gaps={
                "keras": Gap(
                    "update",
                    "keras.optimizers.RMSprop adds ε inside the root, lr·g/√(v + ε)",
                    variant="rmsprop-eps-inside-sqrt",
                    source="keras/src/optimizers/rmsprop.py",
                    issue="optax #532, #595",
                    agree={"eps": 0.0},
                ),
            },
            library_defaults=(
                "ρ: torch 0.99, optax and Keras 0.9; ε: torch outside √, optax inside unless eps_in_sqrt=False, Keras"
                " inside"
            ),
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
            keras=LibraryCall("Adadelta", (), {"learning_rate": "lr", "rho": "rho", "epsilon": "eps"}),
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
            keras=LibraryCall(
                "Adam", (), {"learning_rate": "lr", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps"}
            ),
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
            gaps={
                "keras": Gap(
                    "update",
                    "keras.optimizers.Adam adds ε̂ to √v, the bias corrections folded into the step size (the ε-hat "
                    "form; its own --adam epshat)",
                    variant="epshat",
                    source="keras/src/optimizers/adam.py",
                    issue="keras #17391",
                    agree={"adam": "epshat"},
                ),
            },
            library_defaults="torch and optax the paper form, Keras the ε-hat form with ε̂ 1e-7",
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
        Optimizer(
            "nadam",
            "NAdam",
            ADAM_HYPER | {"lr": 2e-3, "momentum_decay": 4e-3},
            ("m", "v", "mu_product"),
            torch=LibraryCall("NAdam", ("lr",), ADAM_TORCH_ARGS | {"momentum_decay": "momentum_decay"}),
            optax=LibraryCall("nadam", ("lr",), ADAM_OPTAX_ARGS),
            keras=LibraryCall(
                "Nadam", (), {"learning_rate": "lr", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps"}
            ),
            equations=(
                *ADAM_MOMENTS,
                "μ_t = β1·(1 − ½·0.96^(t·ψ))  (the momentum schedule)",
                "P = P·μ_t  (the running product, P starts at 1)",
                "Δ = lr·(1 − μ_t)/(1 − P)·g/(√v̂ + ε) + lr·μ_{t+1}/(1 − P·μ_{t+1})·m/(√v̂ + ε)",
            ),
            citation=Citation(
                "Dozat 2016, Incorporating Nesterov Momentum into Adam, ICLR workshop",
                TORCH_DOCS.format("NAdam"),
                OPTAX_DOCS.format("nadam"),
                KERAS_DOCS.format("Nadam"),
            ),
            non_negative=("v", "mu_product"),
            initial={"mu_product": 1.0},
            torch_state=ADAM_TORCH_STATE | {"mu_product": "mu_product"},
            torch_scalars=("mu_product",),
            optax_state=ADAM_OPTAX_STATE,
            gaps={
                "torch.optim": NADAM_PRODUCT_IN_DEFAULT_DTYPE,
                "optax": Gap(
                    "update",
                    "optax.nadam keeps μ = β1 constant (torch's schedule with ψ → ∞): m̂ = β1·m/(1 − β1^(t+1)) + "
                    "(1 − β1)·g/(1 − β1^t)",
                    variant="nadam-constant-mu",
                    source="optax/_src/transform.py (scale_by_adam, nesterov=True)",
                    issue="rwth-i6/returnn #1440",
                ),
                "keras": Gap(
                    "update",
                    "keras.optimizers.Nadam's schedule is μ_t = β1·(1 − ½·0.96^t), torch's with ψ = 1",
                    variant="nadam-keras-schedule",
                    source="keras/src/optimizers/nadam.py",
                    issue="keras #15710, rwth-i6/returnn #1440",
                    agree={"momentum_decay": 1.0},
                ),
            },
            library_defaults="lr: torch 2e-3, Keras 1e-3; ε: Keras 1e-7; ψ: torch 4e-3, Keras 1 (fixed), optax ∞",
        ),
        Optimizer(
            "nadamw",
            "NAdamW",
            ADAM_HYPER | {"lr": 2e-3, "momentum_decay": 4e-3, "weight_decay": 1e-2},
            ("m", "v", "mu_product"),
            torch=LibraryCall(
                "NAdam",
                ("lr",),
                ADAM_TORCH_ARGS
                | {"momentum_decay": "momentum_decay", "weight_decay": "weight_decay", "decoupled_weight_decay": True},
            ),
            optax=LibraryCall("nadamw", ("lr",), ADAM_OPTAX_ARGS | {"weight_decay": "weight_decay"}),
            equations=(
                *ADAM_MOMENTS,
                "μ_t = β1·(1 − ½·0.96^(t·ψ))",
                "P = P·μ_t",
                "Δ = NAdam's step + lr·λ·θ_{t−1}  (decoupled decay)",
            ),
            citation=Citation(
                "Dozat 2016 with Loshchilov & Hutter 2019's decoupled decay",
                TORCH_DOCS.format("NAdam"),
                OPTAX_DOCS.format("nadamw"),
            ),
            non_negative=("v", "mu_product"),
            initial={"mu_product": 1.0},
            torch_state=ADAM_TORCH_STATE | {"mu_product": "mu_product"},
            torch_scalars=("mu_product",),
            optax_state=ADAM_OPTAX_STATE,
            gaps={
                "torch.optim": NADAM_PRODUCT_IN_DEFAULT_DTYPE,
                "optax": Gap(
                    "update",
                    "optax.nadamw keeps μ = β1 constant, as optax.nadam",
                    variant="nadam-constant-mu",
                    source="optax/_src/alias.py (nadamw = adamw(nesterov=True))",
                ),
            },
            library_defaults="λ: torch 1e-2 (passed; NAdam's own default is 0), optax 1e-4",
        ),
        Optimizer(
            "radam",
            "RAdam",
            ADAM_HYPER,
            ("m", "v"),
            torch=LibraryCall("RAdam", ("lr",), ADAM_TORCH_ARGS),
            optax=LibraryCall("radam", ("lr",), ADAM_OPTAX_ARGS),
            equations=(
                *ADAM_MOMENTS,
                "ρ∞ = 2/(1 − β2) − 1,  ρ_t = ρ∞ − 2t·β2^t/(1 − β2^t)",
                "r_t = √((ρ_t − 4)(ρ_t − 2)ρ∞/((ρ∞ − 4)(ρ∞ − 2)ρ_t))",
                "Δ = lr·m̂·r_t·√(1 − β2^t)/(√v + ε) where ρ_t > 5, else lr·m̂",
            ),
            citation=Citation(
                "Liu et al. 2020, On the Variance of the Adaptive Learning Rate and Beyond, ICLR",
                TORCH_DOCS.format("RAdam"),
                OPTAX_DOCS.format("radam"),
            ),
            non_negative=("v",),
            torch_state=ADAM_TORCH_STATE,
            optax_state=ADAM_OPTAX_STATE,
            gaps={
                "optax": Gap(
                    "update",
                    "optax.radam adds ε to √v̂ (m̂/(√v̂ + ε)); torch.optim.RAdam to √v (√(1 − β2^t)/(√v + ε))",
                    variant="radam-eps-on-vhat",
                    source="optax/_src/transform.py (scale_by_radam)",
                    issue="pytorch #58968",
                    agree={"eps": 0.0},
                ),
            },
            library_defaults="optax switches at ρ_t ≥ 5, torch at ρ_t > 5 (no integer t lands on 5 at β2 0.999)",
        ),
        Optimizer(
            "adamax",
            "Adamax",
            ADAM_HYPER | {"lr": 2e-3},
            ("m", "umax"),
            torch=LibraryCall("Adamax", ("lr",), ADAM_TORCH_ARGS),
            optax=LibraryCall("adamax", ("lr",), ADAM_OPTAX_ARGS),
            keras=LibraryCall(
                "Adamax", (), {"learning_rate": "lr", "beta_1": "beta1", "beta_2": "beta2", "epsilon": "eps"}
            ),
            equations=(
                "m = β1·m + (1 − β1)·g",
                "u = max(β2·u, |g| + ε)  (the slot umax)",
                "Δ = lr/(1 − β1^t)·m/u",
            ),
            citation=Citation(
                "Kingma & Ba 2015, §7.1",
                TORCH_DOCS.format("Adamax"),
                OPTAX_DOCS.format("adamax"),
                KERAS_DOCS.format("adamax"),
            ),
            non_negative=("umax",),
            torch_state={"m": "exp_avg", "umax": "exp_inf"},
            optax_state={"mu": "m", "nu": "umax"},
            gaps={
                "keras": Gap(
                    "umax",
                    "keras.optimizers.Adamax adds ε outside the maximum: u = max(β2·u, |g|), "
                    "Δ = lr·m/((1 − β1^t)(u + ε))",
                    variant="adamax-eps-outside-max",
                    source="keras/src/optimizers/adamax.py",
                    agree={"eps": 0.0},
                ),
            },
            library_defaults="ε: Keras 1e-7; lr: Keras 1e-3",
        ),
        Optimizer(
            "lion",
            "Lion",
            {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0},
            ("m",),
            torch=None,
            optax=LibraryCall("lion", ("lr",), {"b1": "beta1", "b2": "beta2", "weight_decay": "weight_decay"}),
            keras=LibraryCall(
                "Lion",
                (),
                {"learning_rate": "lr", "beta_1": "beta1", "beta_2": "beta2", "weight_decay": "weight_decay"},
            ),
            equations=(
                "c = (1 − β1)·g + β1·m  (from the m before this step)",
                "m = β2·m + (1 − β2)·g",
                "Δ = lr·(sign(c) + λ·θ_{t−1})",
            ),
            citation=Citation(
                "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms, arXiv:2302.06675",
                "",
                OPTAX_DOCS.format("lion"),
                KERAS_DOCS.format("lion"),
            ),
            optax_state={"mu": "m"},
            follows="optax",
            library_defaults="λ: optax 1e-3 (the spec's 0 is passed); lr: Keras 1e-3; torch.optim has no Lion",
        ),
        Optimizer(
            "rprop",
            "Rprop (iRprop−)",
            {"lr": 1e-2, "eta_minus": 0.5, "eta_plus": 1.2, "step_size_min": 1e-6, "step_size_max": 50.0},
            ("step_size", "prev"),
            torch=LibraryCall(
                "Rprop", ("lr",), {"etas": ("eta_minus", "eta_plus"), "step_sizes": ("step_size_min", "step_size_max")}
            ),
            optax=LibraryCall(
                "rprop",
                ("lr",),
                {
                    "eta_minus": "eta_minus",
                    "eta_plus": "eta_plus",
                    "min_step_size": "step_size_min",
                    "max_step_size": "step_size_max",
                },
            ),
            equations=(
                "s = g·g_prev;  η = η+ where s > 0, η− where s < 0, 1 where s = 0",
                "Γ = clip(Γ·η, Γmin, Γmax)  (Γ starts at lr)",
                "g_prev = 0 where s < 0, else g",
                "Δ = sign(g_prev)·Γ",
            ),
            citation=Citation(
                "Riedmiller & Braun 1993; iRprop− in Igel & Hüsken 2000, Improving the Rprop Learning Algorithm",
                TORCH_DOCS.format("Rprop"),
                OPTAX_DOCS.format("rprop"),
            ),
            non_negative=("step_size",),
            initial={"step_size": "lr"},
            torch_state={"step_size": "step_size", "prev": "prev"},
            optax_state={"step_sizes": "step_size", "prev_updates": "prev"},
            gaps={
                "optax": Gap(
                    "prev",
                    "optax.rprop returns the previous step's update, one step late, and keeps Γ·sign(g) as its "
                    "previous value",
                    variant="rprop-one-step-late",
                    source="optax/_src/transform.py (scale_by_rprop)",
                    issue="optax #1725 (open pull request)",
                ),
            },
            library_defaults="none: both default to lr 1e-2, η (0.5, 1.2), Γ in [1e-6, 50]",
        ),
        Optimizer(
            "rmsprop_centered",
            "RMSprop, centered",
            {"lr": 1e-2, "rho": 0.99, "eps": 1e-8},
            ("v", "gavg"),
            torch=LibraryCall("RMSprop", ("lr",), {"alpha": "rho", "eps": "eps", "momentum": 0.0, "centered": True}),
            optax=LibraryCall(
                "rmsprop", ("lr",), {"decay": "rho", "eps": "eps", "eps_in_sqrt": False, "centered": True}
            ),
            keras=LibraryCall("RMSprop", (), {"learning_rate": "lr", "rho": "rho", "epsilon": "eps", "centered": True}),
            equations=("v = ρ·v + (1 − ρ)·g²", "ḡ = ρ·ḡ + (1 − ρ)·g", "Δ = lr·g/(√(v − ḡ²) + ε)"),
            citation=Citation(
                "Graves 2013, Generating Sequences With Recurrent Neural Networks, arXiv:1308.0850, eq. 38-45",
                TORCH_DOCS.format("RMSprop"),
                OPTAX_DOCS.format("rmsprop"),
                KERAS_DOCS.format("rmsprop"),
            ),
            non_negative=("v",),
            torch_state={"v": "square_avg", "gavg": "grad_avg"},
            optax_state={"nu": "v", "mu": "gavg"},
            gaps={
                "keras": Gap(
                    "update",
                    "keras.optimizers.RMSprop adds ε under the root: lr·g/√(v − ḡ² + ε)",
                    variant="rmsprop-centered-eps-inside-sqrt",
                    source="keras/src/optimizers/rmsprop.py",
                    issue="optax #532, #595",
                    agree={"eps": 0.0},
                ),
            },
            library_defaults="ρ: torch 0.99, optax and Keras 0.9; ε: Keras 1e-7 under the root",
        ),
        Optimizer(
            "rmsprop_momentum",
            "RMSprop with momentum",
            {"lr": 1e-2, "rho": 0.99, "eps": 1e-8, "momentum": 0.9},
            ("v", "buf"),
            torch=LibraryCall("RMSprop", ("lr",), {"alpha": "rho", "eps": "eps", "momentum": "momentum"}),
            optax=LibraryCall(
                "rmsprop", ("lr",), {"decay": "rho", "eps": "eps", "eps_in_sqrt": False, "momentum": "momentum"}
            ),
            keras=LibraryCall(
                "RMSprop", (), {"learning_rate": "lr", "rho": "rho", "epsilon": "eps", "momentum": "momentum"}
            ),
            equations=("v = ρ·v + (1 − ρ)·g²", "b = μ·b + g/(√v + ε)", "Δ = lr·b"),
            citation=Citation(
                "Tieleman & Hinton 2012, with momentum as torch.optim.RMSprop",
                TORCH_DOCS.format("RMSprop"),
                OPTAX_DOCS.format("rmsprop"),
                KERAS_DOCS.format("rmsprop"),
            ),
            non_negative=("v",),
            torch_state={"v": "square_avg", "buf": "momentum_buffer"},
            optax_state={"nu": "v", "trace": "buf"},
            gaps={
                "optax": Gap(
                    "buf",
                    "optax.rmsprop(momentum=μ) keeps the update in the buffer, lr and its sign inside: "
                    "b = μ·b − lr·g/(√v + ε), Δ = −b",
                    variant="rmsprop-lr-in-buffer",
                    source="optax/_src/alias.py (rmsprop: scale_by_rms, scale_by_learning_rate, then trace)",
                ),
                "keras": Gap(
                    "buf",
                    "keras.optimizers.RMSprop keeps lr inside the buffer and adds ε under the root: "
                    "b = μ·b + lr·g/√(v + ε)",
                    variant="rmsprop-lr-in-buffer-eps-inside-sqrt",
                    source="keras/src/optimizers/rmsprop.py",
                    issue="optax #532, #595",
                ),
            },
            library_defaults="ρ: torch 0.99, optax and Keras 0.9; μ: torch 0, the spec 0.9",
        ),
        Optimizer(
            "adabelief",
            "AdaBelief",
            ADAM_HYPER | {"eps": 1e-16, "eps_root": 1e-16},
            ("m", "s"),
            torch=None,
            optax=LibraryCall("adabelief", ("lr",), ADAM_OPTAX_ARGS | {"eps_root": "eps_root"}),
            equations=(
                "m = β1·m + (1 − β1)·g",
                "s = β2·s + (1 − β2)·(g − m)² + ε_root",
                "Δ = lr·(m/(1 − β1^t))/(√(s/(1 − β2^t)) + ε)",
            ),
            citation=Citation(
                "Zhuang et al. 2020, AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients, "
                "NeurIPS",
                "",
                OPTAX_DOCS.format("adabelief"),
            ),
            non_negative=("s",),
            optax_state={"mu": "m", "nu": "s"},
            follows="optax",
            library_defaults="only optax ships it (torch.optim and Keras do not)",
        ),
        Optimizer(
            "yogi",
            "Yogi",
            {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-3},
            ("m", "v"),
            torch=None,
            optax=LibraryCall("yogi", ("lr",), ADAM_OPTAX_ARGS),
            equations=(
                "m = β1·m + (1 − β1)·g  (m and v start at 1e-6)",
                "v = v − (1 − β2)·sign(v − g²)·g²",
                "Δ = lr·(m/(1 − β1^t))/(√(v/(1 − β2^t)) + ε)",
            ),
            citation=Citation(
                "Zaheer et al. 2018, Adaptive Methods for Nonconvex Optimization, NeurIPS",
                "",
                OPTAX_DOCS.format("yogi"),
            ),
            non_negative=("v",),
            initial={"m": 1e-6, "v": 1e-6},
            optax_state={"mu": "m", "nu": "v"},
            follows="optax",
            library_defaults="optax has no default lr (the paper's 1e-2 here); only optax ships it",
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
    start = OPTIMIZERS[optimizer].initial.get(slot, 0.0)
    return getattr(cfg, start) if isinstance(start, str) else float(start)


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


def in_dtype(x, like):
    """A number that depends on the step count (a count, or an array of them), formed in
    double and rounded once to ``like``'s dtype, as torch.optim's Python floats are."""
    return np.asarray(x, dtype=np.float64).astype(np.asarray(like).dtype)


def nadam_mu(t, cfg):
    """NAdam's momentum at step t, in double: μ_t = β1·(1 − ½·0.96^(t·ψ))."""
    return cfg.beta1 * (1.0 - 0.5 * 0.96 ** (np.asarray(t, dtype=np.float64) * cfg.momentum_decay))


def _nadam_step(g, slots, t, cfg):
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    mu, mu_next = in_dtype(nadam_mu(t, cfg), g), in_dtype(nadam_mu(t + 1, cfg), g)
    product = slots["mu_product"] * mu
    _, bc2 = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    denom = np.sqrt(v / bc2) + cfg.eps
    delta = cfg.lr * (1.0 - mu) / (1.0 - product) * g / denom + cfg.lr * mu_next / (1.0 - product * mu_next) * m / denom
    return delta, {"m": m, "v": v, "mu_product": product}


def nadam(g, slots, theta, t, cfg):
    return _nadam_step(g, slots, t, cfg)


def nadamw(g, slots, theta, t, cfg):
    delta, new = _nadam_step(g, slots, t, cfg)
    return delta + cfg.lr * cfg.weight_decay * theta, new


def radam_rectification(t, cfg):
    """RAdam's ρ_t and r_t for the 1-based step t, in double (r_t is 0 where ρ_t <= 5,
    where the step is SGD with momentum)."""
    steps = np.asarray(t, dtype=np.float64)
    rho_inf = 2.0 / (1.0 - cfg.beta2) - 1.0
    rho = rho_inf - 2.0 * steps * cfg.beta2**steps / (1.0 - cfg.beta2**steps)
    safe = np.maximum(rho, 5.0)
    rect = np.sqrt((safe - 4.0) * (safe - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * safe))
    return rho, np.where(rho > 5.0, rect, 0.0)


def radam(g, slots, theta, t, cfg):
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    bc1, bc2 = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    rho, rect = radam_rectification(t, cfg)
    m_hat = m / bc1
    adaptive = np.sqrt(bc2) / (np.sqrt(v) + cfg.eps)
    return np.where(rho > 5.0, m_hat * cfg.lr * adaptive * in_dtype(rect, g), m_hat * cfg.lr), {"m": m, "v": v}


def adamax(g, slots, theta, t, cfg):
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    umax = np.maximum(cfg.beta2 * slots["umax"], np.abs(g) + cfg.eps)
    step_size = in_dtype(cfg.lr / (1.0 - cfg.beta1 ** np.asarray(t, dtype=np.float64)), g)
    return step_size * (m / umax), {"m": m, "umax": umax}


def lion(g, slots, theta, t, cfg):
    direction = np.sign((1.0 - cfg.beta1) * g + cfg.beta1 * slots["m"])
    m = cfg.beta2 * slots["m"] + (1.0 - cfg.beta2) * g
    return cfg.lr * (direction + cfg.weight_decay * theta), {"m": m}


def rprop(g, slots, theta, t, cfg):
    agreement = g * slots["prev"]
    factor = np.where(agreement > 0, cfg.eta_plus, np.where(agreement < 0, cfg.eta_minus, 1.0)).astype(g.dtype)
    step_size = np.clip(slots["step_size"] * factor, cfg.step_size_min, cfg.step_size_max).astype(g.dtype)
    kept = np.where(agreement < 0, 0.0, g).astype(g.dtype)
    return np.sign(kept) * step_size, {"step_size": step_size, "prev": kept}


def rmsprop_centered(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    gavg = cfg.rho * slots["gavg"] + (1.0 - cfg.rho) * g
    return cfg.lr * g / (np.sqrt(v - gavg * gavg) + cfg.eps), {"v": v, "gavg": gavg}


def rmsprop_momentum(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    buf = cfg.momentum * slots["buf"] + g / (np.sqrt(v) + cfg.eps)
    return cfg.lr * buf, {"v": v, "buf": buf}


def adabelief(g, slots, theta, t, cfg):
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    surprise = g - m
    s = cfg.beta2 * slots["s"] + (1.0 - cfg.beta2) * (surprise * surprise) + cfg.eps_root
    bc1, bc2 = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    return cfg.lr * (m / bc1) / (np.sqrt(s / bc2) + cfg.eps), {"m": m, "s": s}


def yogi(g, slots, theta, t, cfg):
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    square = g * g
    v = slots["v"] - (1.0 - cfg.beta2) * np.sign(slots["v"] - square) * square
    bc1, bc2 = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    return cfg.lr * (m / bc1) / (np.sqrt(v / bc2) + cfg.eps), {"m": m, "v": v}


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
