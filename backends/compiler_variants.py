"""The catalogue of compiler variants: one record per way a compiler is known, or
suspected, to compute a step differently from the eager row it compiles. Each is the
eager row's own computation with that one change, planted by swapping one function of
the row's backend module (as ``harness.engine.faults`` plants a mistake). The harness
recognises a variant where stepping the eager row with it from the state at which the
compiled row first differs gives the compiled row's bits in the first differing phase.

Sources, read in the installed torch 2.13 (site-packages/torch): Inductor decomposes σ's
backward as ``out_grad * (y * (1 - y))`` (_decomp/decompositions.py, sigmoid_backward);
Dynamo rewrites ``addcmul_(t1, t2, value=s)`` as ``fma(t1 * t2, s, self)``
(_dynamo/variables/tensor.py, method_addcmul_, while config.enable_dynamo_decompositions),
and Inductor lowers ``addcmul`` with an FMA on CUDA only, ``self + value * (t1 * t2)``
elsewhere (_inductor/lowering.py, addcmul); ``lerp``'s reference decomposition is
``coeff * (end - start) + base`` (_refs/__init__.py, lerp); a compiled optimizer is traced
as capturable, whose Adam forms ``1 − β^step`` from the step *tensor*, in its dtype
(optim/adam.py, the ``capturable or differentiable`` branches). What eager computes
instead is whatever its kernels do: each variant keeps every other operation eager's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class CompilerVariant:
    name: str
    phase: str  # the phase of a step it first changes
    runs: str  # the eager row whose module it patches: "torch" or "torch.optim"
    description: str
    make: Callable  # the eager row's backend module -> {attribute: replacement}
    optimizers: tuple = ()  # () every optimizer

    def applies_to(self, optimizer: str) -> bool:
        return not self.optimizers or optimizer in self.optimizers


# --- σ and its derivative (torch_backend.sigmoid) ----------------------------------------------


def _sigmoid_backward_reassociated(module) -> dict:
    import torch

    # forward as eager; backward g·(y(1 − y)), Inductor's decomposition
    return {"sigmoid": module.custom_sigmoid(torch.sigmoid, lambda grad, a: grad * (a * (1 - a)))}


def _exp_sigmoid(module, exp) -> Callable:
    """σ(z) = 1/(1 + exp(−z)) with ``exp``, its derivative eager's kernel (g·(1 − y)·y)."""
    import torch

    return module.custom_sigmoid(lambda z: 1.0 / (1.0 + exp(-z)), torch.ops.aten.sigmoid_backward)


def _libm_exp(x):
    import torch

    values = np.array([math.exp(v) for v in x.detach().reshape(-1).tolist()])
    return torch.from_numpy(values.astype(str(x.dtype).removeprefix("torch."))).reshape(x.shape)


def _sigmoid_by_libm_exp(module) -> dict:
    return {"sigmoid": _exp_sigmoid(module, _libm_exp)}


def _sigmoid_by_vector_exp(module) -> dict:
    import torch

    return {"sigmoid": _exp_sigmoid(module, torch.exp)}


# --- FMA: a·b + c with one rounding ------------------------------------------------------------


def _rounded(exact: Fraction, dtype) -> float:
    """``exact`` rounded once to ``dtype``, to nearest, ties to even."""
    near = np.asarray(float(exact), dtype=dtype)
    candidates = [near, np.nextafter(near, dtype(-np.inf)), np.nextafter(near, dtype(np.inf))]
    return float(min(candidates, key=lambda c: (abs(Fraction(float(c)) - exact), int(c.view(_INT[dtype])) & 1)))


_INT = {np.float64: np.int64, np.float32: np.int32}


def fma(a, b, c):
    """a·b + c rounded once, element by element, in the tensors' dtype (exact rationals)."""
    import torch

    a, b, c = torch.broadcast_tensors(*(torch.as_tensor(x, dtype=c.dtype) for x in (a, b, c)))
    dtype = np.float64 if c.dtype == torch.float64 else np.float32
    flat = zip(a.reshape(-1).tolist(), b.reshape(-1).tolist(), c.reshape(-1).tolist(), strict=True)
    out = [_rounded(Fraction(x) * Fraction(y) + Fraction(z), dtype) for x, y, z in flat]
    return torch.tensor(out, dtype=c.dtype).reshape(c.shape)


def _fused_moments(which: str, first: bool):
    """Adam's moments with ``which`` ("m" or "v") as one FMA: the first product fused
    (β·s + round((1 − β)·x)) or the second (round(β·s) + (1 − β)·x)."""

    def make(module) -> dict:
        original = module.adam_moments

        def moments(g, m, v, cfg):
            m_eager, v_eager = original(g, m, v, cfg)
            beta, slot, x = (cfg.beta1, m, g) if which == "m" else (cfg.beta2, v, g * g)
            fused = fma(beta, slot, (1.0 - beta) * x) if first else fma(1.0 - beta, x, beta * slot)
            return (fused, v_eager) if which == "m" else (m_eager, fused)

        return {"adam_moments": moments}

    return make


# --- torch.optim's Adam as a compiled optimizer computes it ------------------------------------


@dataclass(frozen=True)
class TracedAdam:
    """How a traced torch.optim Adam step departs from eager's (torch/optim/adam.py)."""

    addcmul: str = "kernel"  # "fma": Dynamo's rewrite, fma(g·g, w, β2·v); "product-first": β2·v + w·(g·g)
    lerp: str = "kernel"  # "decomposed": w·(g − m) + m, Inductor's decomposition, for the kernel's fmadd
    algebra: str = "floats"  # "single" / "foreach": the capturable algebra of _single/_multi_tensor_adam
    step_dtype: str = "float64"  # the step tensor's dtype the capturable algebra forms 1 − β^step in


def _traced_adam(how: TracedAdam) -> Callable:
    """A torch.optim module patch: Adam stepped as ``how`` says, eagerly."""

    def make(module) -> dict:
        original = module.make_optimizer

        def make_optimizer(cfg, params):
            return original(cfg, params) if cfg.optimizer != "adam" else _HandAdam(params, cfg, how)

        return {"make_optimizer": make_optimizer}

    return make


class _HandAdam:
    """torch.optim.Adam's step for one group, written out so that its algebra can be
    switched (``TracedAdam``); ``state`` as torch.optim keeps it."""

    def __init__(self, params, cfg, how: TracedAdam):
        self.params, self.cfg, self.how = list(params), cfg, how
        self.state: dict = {}

    def step(self):
        for p in self.params:
            self._step(p, self.state[p])

    def _step(self, p, state):
        import torch

        cfg, how = self.cfg, self.how
        m, v, g, w = state["exp_avg"], state["exp_avg_sq"], p.grad, 1.0 - cfg.beta1
        state["step"] = state["step"].to(getattr(torch, how.step_dtype)) + 1
        m.copy_(torch.lerp(m, g, w) if how.lerp == "kernel" else w * (g - m) + m)
        scaled = v * cfg.beta2
        addcmul = {
            "kernel": lambda: torch.addcmul(scaled, g, g, value=1.0 - cfg.beta2),  # (w·g)·g, eager's CPU kernel
            "fma": lambda: fma(g * g, 1.0 - cfg.beta2, scaled),
            "product-first": lambda: scaled + (1.0 - cfg.beta2) * (g * g),
        }
        v.copy_(addcmul[how.addcmul]())
        if how.algebra == "floats":
            step = float(state["step"])
            bc1, bc2 = 1.0 - cfg.beta1**step, 1.0 - cfg.beta2**step
            p.addcdiv_(m, (v.sqrt() / bc2**0.5).add_(cfg.eps), value=-(cfg.lr / bc1))
            return
        powers = (cfg.beta1 ** state["step"], cfg.beta2 ** state["step"])
        if how.algebra == "single":
            step_size_neg = (cfg.lr / (1 - powers[0])).neg()
            p.addcdiv_(m, (v.sqrt() / ((1 - powers[1]).sqrt() * step_size_neg)).add_(cfg.eps / step_size_neg))
            return
        step_size = ((powers[0] - 1) / cfg.lr).reciprocal()  # −lr/(1 − β1^t)
        denom = (v.sqrt() / (powers[1] - 1).neg().sqrt()).add_(cfg.eps) / step_size
        p.addcdiv_(m, denom)


def _lr_in_float32(module) -> dict:
    """torch.optim's optimizer built with the learning rate rounded to float32: what a
    step forms from torch's float32 step tensor when tracing makes ``_get_value(step)`` the
    tensor (Adagrad's lr/(1 + (step − 1)·lr_decay), optim/adagrad.py)."""
    from dataclasses import replace

    original = module.make_optimizer
    return {"make_optimizer": lambda cfg, params: original(replace(cfg, lr=float(np.float32(cfg.lr))), params)}


# --- XLA: the mean's sum in another order -------------------------------------------------------


def _pairwise_mean(module) -> dict:
    import jax.numpy as jnp

    def mse(A2, y):  # ((d0² + d1²) + (d2² + d3²))/4 for XLA's ((d0² + d1²) + d2²) + d3²
        d = ((A2 - y) ** 2).reshape(*jnp.shape(A2)[:-2], -1)
        return ((d[..., 0] + d[..., 1]) + (d[..., 2] + d[..., 3])) / d.shape[-1]

    return {"mse": mse}


def _fma_chain(d: np.ndarray) -> np.ndarray:
    """Σ d_i² over the last axis as fma(d_n, d_n, … fma(d_1, d_1, d_0²)): one rounding per term."""
    dtype = d.dtype.type
    flat = d.reshape(-1, d.shape[-1])
    out = np.empty(flat.shape[0], dtype=d.dtype)
    for i, row in enumerate(flat):
        total = float(dtype(row[0]) * dtype(row[0]))
        for x in row[1:]:
            total = _rounded(Fraction(float(x)) ** 2 + Fraction(total), dtype)
        out[i] = total
    return out.reshape(d.shape[:-1])


def _squares_by_fma(module) -> dict:
    """The loss's Σd² contracted into a chain of FMAs, the value computed outside XLA
    (``pure_callback``); its gradient is the unchanged mean's (the value's change, a few
    ULPs, is added under ``stop_gradient``: exact, the two being within a factor 2)."""
    import jax
    import jax.numpy as jnp

    original = module.mse

    def mse(A2, y):
        plain = original(A2, y)
        d = (A2 - y).reshape(*jnp.shape(A2)[:-2], -1)
        chained = jax.pure_callback(_fma_chain, jax.ShapeDtypeStruct(d.shape[:-1], d.dtype), jax.lax.stop_gradient(d))
        chained = chained / d.shape[-1]
        return plain + jax.lax.stop_gradient(chained - plain)

    return {"mse": mse}


VARIANTS = {
    v.name: v
    for v in (
        CompilerVariant(
            "sigmoid-backward-reassociated", "grads", "torch",
            "σ's backward as g·(y(1 − y)) (Inductor's decomposition) for eager's g·(1 − y)·y",
            _sigmoid_backward_reassociated,
        ),
        CompilerVariant(
            "sigmoid-by-vector-exp", "forward", "torch",
            "σ as 1/(1 + exp(−z)) with torch's vectorised exp (Sleef where a vector is full) for torch.sigmoid",
            _sigmoid_by_vector_exp,
        ),
        CompilerVariant(
            "sigmoid-by-libm-exp", "forward", "torch",
            "σ as 1/(1 + exp(−z)) with libm's scalar exp for torch.sigmoid",
            _sigmoid_by_libm_exp,
        ),
        CompilerVariant("fma-in-m", "m", "torch", "m = fma(β1, m, (1 − β1)·g): the first product fused",
                        _fused_moments("m", True), ("adam", "adamw", "amsgrad")),
        CompilerVariant("fma-in-m-second", "m", "torch", "m = fma(1 − β1, g, β1·m): the second product fused",
                        _fused_moments("m", False), ("adam", "adamw", "amsgrad")),
        CompilerVariant("fma-in-v", "v", "torch", "v = fma(β2, v, (1 − β2)·g²): the first product fused",
                        _fused_moments("v", True), ("adam", "adamw", "amsgrad")),
        CompilerVariant("fma-in-v-second", "v", "torch", "v = fma(1 − β2, g², β2·v): the second product fused",
                        _fused_moments("v", False), ("adam", "adamw", "amsgrad")),
        CompilerVariant(
            "addcmul-as-fma", "v", "torch.optim",
            "v.mul_(β2).addcmul_(g, g, value=1 − β2) as fma(g·g, 1 − β2, β2·v): Dynamo's rewrite of addcmul_ "
            "(torch/_dynamo/variables/tensor.py, method_addcmul_; config.enable_dynamo_decompositions)",
            _traced_adam(TracedAdam(addcmul="fma")), ("adam",),
        ),
        CompilerVariant(
            "addcmul-product-first", "v", "torch.optim",
            "addcmul_(g, g, value=1 − β2) as β2·v + (1 − β2)·(g·g), two roundings: Inductor's CPU lowering "
            "(torch/_inductor/lowering.py, addcmul: FMA on CUDA only) for eager's (w·g)·g",
            _traced_adam(TracedAdam(addcmul="product-first")), ("adam",),
        ),
        CompilerVariant(
            "lerp-decomposed", "m", "torch.optim",
            "m.lerp_(g, 1 − β1) as w·(g − m) + m, two roundings (the decomposition) for the kernel's fmadd",
            _traced_adam(TracedAdam(lerp="decomposed")), ("adam",),
        ),
        CompilerVariant(
            "capturable-adam", "params", "torch.optim",
            "the capturable algebra of _single_tensor_adam, √v/(√bc2·(−s)) + ε/(−s), from a float64 step tensor, "
            "with addcmul as fma",
            _traced_adam(TracedAdam(addcmul="fma", algebra="single")), ("adam",),
        ),
        CompilerVariant(
            "capturable-adam-foreach", "params", "torch.optim",
            "the capturable algebra of _multi_tensor_adam, (√v/√bc2 + ε)/s with s = 1/((β1^t − 1)/lr), from a "
            "float64 step tensor, with addcmul as fma",
            _traced_adam(TracedAdam(addcmul="fma", algebra="foreach")), ("adam",),
        ),
        CompilerVariant(
            "bias-corrections-in-float32", "params", "torch.optim",
            "the capturable algebra (single-tensor) with 1 − β^step formed from torch's float32 step tensor, "
            "with addcmul as fma",
            _traced_adam(TracedAdam(addcmul="fma", algebra="single", step_dtype="float32")), ("adam",),
        ),
        CompilerVariant(
            "bias-corrections-in-float32-foreach", "params", "torch.optim",
            "the capturable algebra (foreach) with 1 − β^step formed from torch's float32 step tensor, "
            "with addcmul as fma",
            _traced_adam(TracedAdam(addcmul="fma", algebra="foreach", step_dtype="float32")), ("adam",),
        ),
        CompilerVariant(
            "lr-in-float32", "params", "torch.optim",
            "the learning rate rounded to float32, as a step formed from torch's float32 step tensor has it "
            "(Adagrad's lr/(1 + (step − 1)·lr_decay))",
            _lr_in_float32,
        ),
        CompilerVariant(
            "loss-sum-pairwise", "loss", "jax",
            "the loss's Σd² summed pairwise, (d0² + d1²) + (d2² + d3²): a reassociated reduction",
            _pairwise_mean,
        ),
        CompilerVariant(
            "loss-squares-fma", "loss", "jax",
            "the loss's Σd² contracted into FMAs, fma(d3, d3, fma(d2, d2, fma(d1, d1, d0²))): fast math's "
            "licence to contract",
            _squares_by_fma,
        ),
    )
}  # fmt: skip


def for_row(runs: str, optimizer: str) -> list[CompilerVariant]:
    """The variants that can explain a compiled row of eager row ``runs``."""
    return [v for v in VARIANTS.values() if v.runs == runs and v.applies_to(optimizer)]
