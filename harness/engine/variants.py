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
from reference import adam as adam_spec
from reference import optimizers
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
    parts: tuple = ()  # a composition's variants (``compose``); () for one variant of the catalogue

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


def _rules(**rules) -> Callable:
    """A patch that swaps optimizers' rules in the numpy backend's UPDATES."""
    return lambda module: {"UPDATES": dict(module.UPDATES, **rules)}


def _nadam_constant_mu(g, slots, theta, t, cfg):
    # optax.nadam: scale_by_adam(nesterov=True), μ = β1 at every step
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    bc1, bc2 = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    bc1_next, _ = adam_spec.bias_corrections(np.asarray(t) + 1, cfg.beta1, cfg.beta2, g.dtype)
    m_hat = cfg.beta1 * (m / bc1_next) + (1.0 - cfg.beta1) * (g / bc1)
    delta = cfg.lr * (m_hat / (np.sqrt(v / bc2) + cfg.eps))
    if cfg.optimizer == "nadamw":
        delta = delta + cfg.lr * cfg.weight_decay * theta
    product = slots["mu_product"] * optimizers.in_dtype(optimizers.nadam_mu(t, cfg), g)
    return delta, {"m": m, "v": v, "mu_product": product}


def _radam_eps_on_vhat(g, slots, theta, t, cfg):
    # optax.radam: r_t·m̂/(√v̂ + ε) where ρ_t >= 5
    m, v = adam_spec.adam_moments(g, slots["m"], slots["v"], cfg.beta1, cfg.beta2)
    bc1, bc2 = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    rho, rect = optimizers.radam_rectification(t, cfg)
    m_hat = m / bc1
    rectified = optimizers.in_dtype(rect, g) * m_hat / (np.sqrt(v / bc2) + cfg.eps)
    return cfg.lr * np.where(rho >= 5.0, rectified, m_hat), {"m": m, "v": v}


def _adamax_eps_outside_max(g, slots, theta, t, cfg):
    # keras.optimizers.Adamax: u = max(β2·u, |g|), then m/((1 − β1^t)(u + ε))
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    umax = np.maximum(cfg.beta2 * slots["umax"], np.abs(g))
    bc1, _ = adam_spec.bias_corrections(t, cfg.beta1, cfg.beta2, g.dtype)
    return cfg.lr * m / (bc1 * (umax + cfg.eps)), {"m": m, "umax": umax}


def _rprop_one_step_late(g, slots, theta, t, cfg):
    # optax.rprop: the slot holds the previous update Γ·sign(g), and that is what it returns
    agreement = g * slots["prev"]
    factor = np.where(agreement > 0, cfg.eta_plus, cfg.eta_minus).astype(g.dtype)
    grown = np.clip(slots["step_size"] * factor, cfg.step_size_min, cfg.step_size_max)
    step_size = np.where(agreement == 0, slots["step_size"], grown).astype(g.dtype)
    prev = np.where(agreement < 0, 0.0, step_size * np.sign(g)).astype(g.dtype)
    delta = np.where(agreement < 0, 0.0, slots["prev"]).astype(g.dtype)
    return delta, {"step_size": step_size, "prev": prev}


def _rmsprop_centered_eps_inside_sqrt(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    gavg = cfg.rho * slots["gavg"] + (1.0 - cfg.rho) * g
    return cfg.lr * g / np.sqrt(v - gavg * gavg + cfg.eps), {"v": v, "gavg": gavg}


def _rmsprop_lr_in_buffer(g, slots, theta, t, cfg):
    # optax: trace after scale_by_learning_rate, so the buffer holds the update itself, −lr·…
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    buf = cfg.momentum * slots["buf"] - cfg.lr * g / (np.sqrt(v) + cfg.eps)
    return -buf, {"v": v, "buf": buf}


def _rmsprop_lr_in_buffer_eps_inside(g, slots, theta, t, cfg):
    v = cfg.rho * slots["v"] + (1.0 - cfg.rho) * (g * g)
    buf = cfg.momentum * slots["buf"] + cfg.lr * g / np.sqrt(v + cfg.eps)
    return buf, {"v": v, "buf": buf}


def _nadam_product_in_float32(g, slots, theta, t, cfg):
    # torch.optim.NAdam under torch's default dtype float32: the μ product kept in float32,
    # multiplied by μ rounded to float32; the step's coefficients formed from it in double
    product = slots["mu_product"].astype(np.float32) * optimizers.nadam_mu(t, cfg).astype(np.float32)
    rule = optimizers.nadamw if cfg.optimizer == "nadamw" else optimizers.nadam
    mu = optimizers.in_dtype(optimizers.nadam_mu(t, cfg), g)
    # the spec's rule handed the product over μ, so that the product it forms is the float32 one
    delta, new = rule(g, dict(slots, mu_product=product.astype(g.dtype) / mu), theta, t, cfg)
    return delta, dict(new, mu_product=product)


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
        # the optimizers after Adam: each library's difference from the hand rows (docs/atlas.md)
        Variant(
            "nadam-constant-mu",
            "update",
            "NAdam with μ = β1 at every step (torch's schedule with ψ → ∞): "
            "β1·m/(1 − β1^(t+1)) + (1 − β1)·g/(1 − β1^t)",
            "optax.nadam and optax.nadamw (optax 0.2.8, optax/_src/transform.py scale_by_adam(nesterov=True))",
            ("nadam", "nadamw"),
            patch=_rules(nadam=_nadam_constant_mu, nadamw=_nadam_constant_mu),
        ),
        Variant(
            "nadam-keras-schedule",
            "update",
            "NAdam's schedule μ_t = β1·(1 − ½·0.96^t): torch's with ψ = 1",
            "keras.optimizers.Nadam (Keras 3, keras/src/optimizers/nadam.py; keras #15710)",
            ("nadam",),
            config=lambda cfg: replace(cfg, momentum_decay=1.0),
            applies=lambda cfg: cfg.momentum_decay != 1.0,
            hint="--momentum-decay 1",
        ),
        Variant(
            "nadam-product-in-float32",
            "mu_product",
            "NAdam's running product of μ kept in float32 beside float64 parameters",
            "torch.optim.NAdam under torch's default dtype float32 (torch/optim/nadam.py: _get_scalar_dtype)",
            ("nadam", "nadamw"),
            patch=_rules(nadam=_nadam_product_in_float32, nadamw=_nadam_product_in_float32),
            applies=lambda cfg: cfg.dtype == "float64",
            hint="torch.set_default_dtype(torch.float64) before the optimizer is made",
        ),
        Variant(
            "radam-eps-on-vhat",
            "update",
            "RAdam with ε added to √v̂, r_t·m̂/(√v̂ + ε), and the switch at ρ_t >= 5",
            "optax.radam (optax 0.2.8, optax/_src/transform.py scale_by_radam)",
            ("radam",),
            patch=_rules(radam=_radam_eps_on_vhat),
            applies=lambda cfg: cfg.eps != 0,
            hint="eps 0 in both",
        ),
        Variant(
            "adamax-eps-outside-max",
            "umax",
            "Adamax with ε outside the maximum: u = max(β2·u, |g|), Δ = lr·m/((1 − β1^t)(u + ε))",
            "keras.optimizers.Adamax (Keras 3, keras/src/optimizers/adamax.py)",
            ("adamax",),
            patch=_rules(adamax=_adamax_eps_outside_max),
            applies=lambda cfg: cfg.eps != 0,
            hint="eps 0 in both",
        ),
        Variant(
            "rprop-one-step-late",
            "prev",
            "Rprop that returns the previous step's update Γ·sign(g) and keeps it as the previous value",
            "optax.rprop (optax 0.2.8, optax/_src/transform.py scale_by_rprop; optax #1725)",
            ("rprop",),
            patch=_rules(rprop=_rprop_one_step_late),
        ),
        Variant(
            "rmsprop-centered-eps-inside-sqrt",
            "update",
            "centered RMSprop with ε under the root: lr·g/√(v − ḡ² + ε)",
            "keras.optimizers.RMSprop(centered=True) (Keras 3, keras/src/optimizers/rmsprop.py)",
            ("rmsprop_centered",),
            patch=_rules(rmsprop_centered=_rmsprop_centered_eps_inside_sqrt),
            applies=lambda cfg: cfg.eps != 0,
        ),
        Variant(
            "rmsprop-lr-in-buffer",
            "buf",
            "RMSprop's momentum buffer holding the update, lr inside and its sign: b = μ·b − lr·g/(√v + ε), Δ = −b",
            "optax.rmsprop(momentum=μ) (optax 0.2.8, optax/_src/alias.py: trace after scale_by_learning_rate)",
            ("rmsprop_momentum",),
            patch=_rules(rmsprop_momentum=_rmsprop_lr_in_buffer),
            same_as="the spec's trajectory for a constant lr (the buffer is −lr times the spec's)",
        ),
        Variant(
            "rmsprop-lr-in-buffer-eps-inside-sqrt",
            "buf",
            "RMSprop's momentum buffer holding lr·g/√(v + ε)",
            "keras.optimizers.RMSprop(momentum=μ) (Keras 3, keras/src/optimizers/rmsprop.py)",
            ("rmsprop_momentum",),
            patch=_rules(rmsprop_momentum=_rmsprop_lr_in_buffer_eps_inside),
        ),
    )
}
HYPERPARAMETERS = "hyperparameters"  # the fitted family's name in an explanation


def candidates(cfg: Config) -> list:
    """The variants that differ from ``cfg``'s spec."""
    return [v for v in VARIANTS.values() if v.applies_to(cfg)]


MAX_PARTS = 3  # the most variants a composition stacks


def compose(parts: tuple) -> Variant:
    """Variants stacked (a program that drops the bias correction *and* differentiates
    ½·Σ(ŷ − y)²): each part's config change and function swaps applied in turn, each swap
    made on the module the earlier parts already changed."""
    from harness.engine.lockstep import PHASES

    def patch(module) -> dict:
        merged: dict = {}
        with contextlib.ExitStack() as stack:
            for part in parts:
                if part.patch:
                    replacements = part.patch(module)
                    merged |= replacements
                    stack.enter_context(patched(module, replacements))
        return merged

    def config(cfg: Config) -> Config:
        for part in parts:
            cfg = part.config_for(cfg)
        return cfg

    def extra_bound(reference: dict, states, cfg: Config) -> dict:
        total: dict = {}
        for part in parts:
            for phase, tree in (part.extra_bound(reference, states, cfg) if part.extra_bound else {}).items():
                for k, bound in tree.items():
                    total.setdefault(phase, {})[k] = total.get(phase, {}).get(k, 0.0) + bound
        return total

    return Variant(
        " + ".join(p.name for p in parts),
        min((p.phase for p in parts), key=PHASES.index),
        "; ".join(p.description for p in parts),
        "; ".join(dict.fromkeys(p.used_by for p in parts)),
        patch=patch,
        config=config,
        hint=", ".join(p.hint for p in parts if p.hint),
        same_as="; ".join(f"{p.name}: {p.same_as}" for p in parts if p.same_as),
        extra_bound=extra_bound,
        parts=tuple(parts),
    )


def compositions(cfg: Config, first_phase: str | None = None) -> list:
    """Every composition of two or three of ``cfg``'s candidates that can stack (no two
    change the same setting or swap the same function), smallest first; with
    ``first_phase``, only those whose first changed phase it is (the first phase where the
    row parts from the spec: nothing earlier may change)."""
    import itertools

    from harness.engine.lockstep import PHASES

    singles = candidates(cfg)
    touched = {v.name: _touches(v, cfg) for v in singles}
    found = []
    for size in range(2, MAX_PARTS + 1):
        for parts in itertools.combinations(singles, size):
            if first_phase and min((p.phase for p in parts), key=PHASES.index) != first_phase:
                continue
            marks = [touched[p.name] for p in parts]
            if len(set().union(*marks)) == sum(len(m) for m in marks):
                found.append(compose(parts))
    return found


def _touches(variant: Variant, cfg: Config) -> set:
    """What a variant changes: the config fields it sets and the functions it swaps (a rule
    as the optimizer's entry of UPDATES): two that change the same thing cannot stack."""
    changed = variant.config_for(cfg)
    marks = {
        f"config.{name}" for name in cfg.to_dict() | changed.to_dict() if getattr(changed, name) != getattr(cfg, name)
    }
    if variant.patch:
        module = load_backend("numpy")
        for name, replacement in variant.patch(module).items():
            if name == "UPDATES":
                marks |= {f"rule.{o}" for o, rule in replacement.items() if rule is not module.UPDATES.get(o)}
            else:
                marks.add(name)
    return marks
