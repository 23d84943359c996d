"""The catalogue of variants: the conventions and slips that make two implementations of a
training step part, one record each, with who uses it and its rule. A rule is written
as a change to the numpy backend (the spec's implementation): a function swapped in, as
the planted faults swap them (a variant that is also a fault is that fault's record), or
a change of the config (an Adam form, a gradient convention). The family
``hyperparameters`` (the same algorithm with other numbers) is fitted, not listed
(``harness.engine.explain``).

Sources for "used by" are the libraries' own code (torch 2.13, optax 0.2.8, Keras 3) and
the issues that report each convention; see docs/explain.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from harness.engine.faults import FAULTS, patched
from harness.engine.rows import load_backend
from reference.spec import N_SAMPLES, Config


@dataclass(frozen=True)
class Variant:
    name: str
    phase: str  # the first phase of a step it changes
    description: str  # what it computes, one line
    used_by: str  # who computes it that way: a library and version, or "a common slip"
    optimizers: tuple = ()  # the optimizers it is a variant of; () for a gradient variant: every one
    patch: Callable | None = None  # numpy backend module -> {attribute: replacement}
    config: Callable | None = None  # cfg -> the config it computes
    applies: Callable = lambda cfg: True  # whether it differs from cfg at all
    hint: str = ""  # how to compare like with like, where the harness can
    same_as: str = ""  # another explanation that is the same mathematics
    extra_bound: Callable | None = None  # (its phases, states, cfg) -> {phase: {tensor: bound in u}} beyond the spec's

    def applies_to(self, cfg: Config) -> bool:
        return (not self.optimizers or cfg.optimizer in self.optimizers) and self.applies(cfg)

    def phases(self, cfg: Config, states) -> dict:
        """The spec's step from each of ``states``, computed this variant's way."""
        with self._numpy() as module:
            return module.step_phases(self.config_for(cfg), states.params, states.slots, states.t)

    def train(self, cfg: Config, params0, epochs: int) -> tuple[np.ndarray, np.ndarray]:
        """The numpy row trained this variant's way: (loss, flat params)."""
        with self._numpy() as module:
            return module.train(replace(self.config_for(cfg), epochs=epochs), params0)

    def config_for(self, cfg: Config) -> Config:
        """The config this variant computes, for a run of ``cfg``."""
        return self.config(cfg) if self.config else cfg

    @contextlib.contextmanager
    def _numpy(self):
        """The numpy backend with this variant's functions swapped in."""
        module = load_backend("numpy")
        with patched(module, self.patch(module) if self.patch else {}):
            yield module


def _fault(name: str, used_by: str, **extra) -> Variant:
    """A variant that is also a planted fault: the fault's phase, rule and optimizers."""
    fault = FAULTS[name]
    applies = extra.pop("applies", (lambda cfg: cfg.dtype == "float64") if fault.needs_float64 else (lambda cfg: True))
    return Variant(
        name, fault.phase, fault.description, used_by, fault.optimizers, patch=fault.make, applies=applies, **extra
    )


def _grad_sse(module) -> dict:
    original = module.loss_and_grads

    def loss_and_grads(params, X, y, convention="mse"):
        loss, grads = original(params, X, y, "mse")
        return loss, {k: N_SAMPLES * g for k, g in grads.items()}

    return {"loss_and_grads": loss_and_grads}


def _adagrad_eps_inside_sqrt(module) -> dict:
    def rule(g, slots, theta, t, cfg):
        total = slots["sum"] + g * g
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(total > 0, cfg.lr * g / np.sqrt(total + cfg.eps), 0.0)
        return step, {"sum": total}

    return {"UPDATES": dict(module.UPDATES, adagrad=rule)}


def _vhat_bound(reference: dict, states, cfg: Config) -> dict:
    """v̂ = v/(1 − β2^t): 1 − β2^t is formed from a rounded β2 and cancels, so it carries
    (t·β2^t/2 + 1)/(1 − β2^t) units of roundoff, relative; libraries form it each their way."""
    t = np.asarray(states.t, np.float64) + 1
    relative = (t * cfg.beta2**t / 2 + 1) / (1 - cfg.beta2**t)
    return {"vmax": {k: relative * np.abs(np.asarray(v, np.float64)) for k, v in reference["vmax"].items()}}


def _paper(cfg: Config) -> bool:
    return cfg.adam == "paper"


def _mse(cfg: Config) -> bool:
    return cfg.grad == "mse"


EPS_ISSUES = "tensorflow #9047, keras #17391, pytorch #41477"
VARIANTS = {
    v.name: v
    for v in (
        _fault("eps-inside-sqrt", f"a common slip: ε added under the root ({EPS_ISSUES})", applies=_paper),
        Variant(
            "epshat",
            "update",
            "Adam in the ε-hat form: ε added to √v, not to √v̂, the bias corrections folded into the step size",
            "Keras 3 and TensorFlow (keras.optimizers.Adam; keras #17391)",
            ("adam",),
            config=lambda cfg: replace(cfg, adam="epshat"),
            applies=_paper,
            hint="--adam epshat",
            same_as="the paper form with ε_t = ε/√(1 − β2^t)",
        ),
        _fault(
            "article-bias-correction",
            "the article: constant bias corrections 1 − β1 and 1 − β2",
            applies=_paper,
            hint="--adam article (or --recipe article)",
            same_as="no bias correction with lr × √(1 − β2)/(1 − β1) and ε × √(1 − β2)",
        ),
        _fault("no-bias-correction", "a common slip: Adam without its bias corrections", applies=_paper),
        _fault("bias-correction-off-by-one", "a common slip: a step counter that starts at 0", applies=_paper),
        _fault("beta1-beta2-swapped", "a common slip: the two decay rates exchanged"),
        _fault("float32-moments", "a common slip: optimizer state kept in float32 beside float64 parameters"),
        _fault(
            "amsgrad-max-of-vhat",
            "optax.amsgrad (optax 0.2.8; optax #1389, PR #1423; pytorch #142323)",
            extra_bound=_vhat_bound,
        ),
        _fault(
            "adamw-coupled-decay",
            "L2 in the gradient, as torch.optim.Adam(weight_decay=λ) does, taken for AdamW's decoupled decay",
        ),
        _fault("momentum-dampened", "torch.optim.SGD(momentum=μ, dampening=μ)"),
        _fault("nesterov-without-lookahead", "a common slip: heavy-ball momentum under Nesterov's name"),
        _fault("rmsprop-eps-inside-sqrt", "optax.rmsprop's default (eps_in_sqrt=True)"),
        Variant(
            "adagrad-eps-inside-sqrt",
            "update",
            "AdaGrad with ε inside the root, g/√(s + ε), and no step where s = 0",
            "optax.adagrad (optax 0.2.8)",
            ("adagrad",),
            patch=_adagrad_eps_inside_sqrt,
        ),
        _fault("adadelta-no-eps-in-numerator", "a common slip: AdaDelta's ε left out of the numerator"),
        _fault(
            "grad-missing-2-over-n",
            "the article's derivation: the gradient of ½·Σ(ŷ − y)²",
            applies=_mse,
            hint="--grad half-sse",
            same_as="for Adam, the mean's gradient with ε × 2/N",
        ),
        Variant(
            "grad-sse",
            "grads",
            "the gradient of Σ(ŷ − y)², N = 4 times the mean's",
            "a common slip: the sum of squares for the mean",
            patch=_grad_sse,
            applies=_mse,
            same_as="for Adam, the mean's gradient with ε/N",
        ),
        _fault("sigmoid-grad-at-activation", "a common slip: σ's derivative taken at its output"),
    )
}
HYPERPARAMETERS = "hyperparameters"  # the fitted family's name in an explanation


def candidates(cfg: Config) -> list:
    """The variants that differ from ``cfg``'s spec."""
    return [v for v in VARIANTS.values() if v.applies_to(cfg)]
