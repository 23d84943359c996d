"""The backend interface, defined once: one record per name a backend module provides.

The plug-in check (``backends.load_file``), the completion of a plug-in
(``backends.complete``), the conformance tests (tests/test_backends.py) and the docs'
interface table (docs/bring-your-own.md, generated) all read ``MEMBERS``.

Who defines a member:

- ``required``: every backend, a plug-in included, defines it itself;
- ``completed``: every whole backend defines it; a plug-in may, and what it leaves out
  is made from the required members (``backends.complete``);
- ``whole``: the three whole backends (numpy, JAX, torch) define it, a plug-in need not;
- ``autodiff``: the backends whose gradients come from autodiff (JAX, torch).

``swapped`` marks what a planted fault replaces on the module while a row runs
(``harness.engine.faults``). Every path of a step (the fast ``train``, ``train_step``,
``step_phases``) must look such a member up on the module when it is called, never
hold on to it from import time, or a fault would miss that path.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Member:
    name: str
    signature: str  # how it is called, for people
    meaning: str  # what it is or returns
    who: str  # "required", "completed", "whole" or "autodiff"
    swapped: bool = False  # a planted fault replaces it at call time


MEMBERS = {
    m.name: m
    for m in (
        Member("NAME", "NAME", "the row's name", "required"),
        Member("to_backend", "to_backend(array, dtype=None)", "a numpy array as the framework's tensor", "required"),
        Member("to_numpy", "to_numpy(x)", "a tensor as a numpy array", "required"),
        Member(
            "forward", "forward(params, X)", '{"Z1", "A1", "Z2", "A2"} for params {"W1", "b1", "W2", "b2"}', "required"
        ),
        Member(
            "loss_and_grads",
            'loss_and_grads(params, X, y, convention="mse")',
            "the logged MSE and the gradient of the convention's loss (mse or half-sse)",
            "required",
            swapped=True,
        ),
        Member(
            "UPDATES",
            "UPDATES[optimizer](g, slots, θ, t, cfg)",
            "optimizer name → element-wise rule returning (Δ, new slots), θ_t = θ − Δ (reference/optimizers.py); "
            "the row runs the optimizers it lists",
            "required",
            swapped=True,
        ),
        Member("GRADIENT_SOURCE", "GRADIENT_SOURCE", "where its gradients come from, for reports", "completed"),
        Member("sqrt", "sqrt(x)", "the framework's square root (a fault's building block)", "completed"),
        Member("full_like", "full_like(x, value)", "a tensor shaped like x, every element value", "completed"),
        Member("check_device", "check_device(device)", "raises RuntimeError when device is not here", "completed"),
        Member(
            "optimizer_init",
            "optimizer_init(params, cfg)",
            "OptimizerState(slots, t=0): the record's slots",
            "completed",
        ),
        Member(
            "optimizer_step",
            "optimizer_step(params, grads, state, cfg)",
            "(params, state) after one rule step",
            "completed",
        ),
        Member(
            "train_step",
            "train_step(params, state, X, y, cfg)",
            "(params, state, loss): one readable epoch",
            "completed",
        ),
        Member(
            "train",
            "train(cfg, params0, every=1, device='cpu', timings=None)",
            "(loss (K, *batch), flat params (K + 1, *batch, n)) at the checkpoints: the fast loop",
            "completed",
        ),
        Member(
            "step_phases",
            "step_phases(cfg, params, slots, t)",
            "{phase: {name: numpy array}}: one step from each of a batch of states (lockstep)",
            "completed",
        ),
        Member("mse", "mse(A2, y)", "the loss per state", "whole"),
        Member("sigmoid", "sigmoid(z)", "σ (the autodiff rows differentiate it)", "whole", swapped=True),
        Member("maximum", "maximum(a, b)", "element-wise maximum (a fault's building block)", "whole"),
        Member(
            "as_float32", "as_float32(x)", "x rounded to float32 and kept there (a fault's building block)", "whole"
        ),
        Member("adam_moments", "adam_moments(g, m, v, cfg)", "Adam's (m, v)", "whole", swapped=True),
        Member("adam_delta", "adam_delta(m, v, t, cfg)", "Adam's step in the form cfg.adam", "whole", swapped=True),
        Member(
            "bias_corrections", "bias_corrections(t, cfg, like)", "(1 − β1^t, 1 − β2^t); t a number or a batch", "whole"
        ),
        Member(
            "sigmoid_with_derivative_at_activation",
            "sigmoid_with_derivative_at_activation()",
            "σ whose derivative rule is wrong (a fault's building block)",
            "autodiff",
        ),
    )
}

REQUIRED = tuple(name for name, m in MEMBERS.items() if m.who == "required")
INTERFACE = tuple(name for name, m in MEMBERS.items() if m.who in ("required", "completed"))  # any backend, completed
WHOLE = tuple(name for name, m in MEMBERS.items() if m.who != "autodiff")  # numpy, JAX and torch
SWAPPED = tuple(name for name, m in MEMBERS.items() if m.swapped)
