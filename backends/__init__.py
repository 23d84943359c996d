"""One module per framework, each exporting the same small set of pure functions.

The interface every backend module implements (``harness.interface`` checks it):

    NAME, GRADIENT_SOURCE               strings for reports
    to_backend(array) / to_numpy(x)     conversion at the boundary
    forward(params, X) -> {"Z1", "A1", "Z2", "A2"}
    mse(A2, y) -> loss (per state when batched)
    loss_and_grads(params, X, y, convention="mse") -> (logged MSE, gradient of the
        convention's loss: "mse" or "half-sse")
    UPDATES: optimizer name -> its element-wise rule, written in the framework:
        rule(g, slots, θ, t, cfg) -> (Δ, new slots), θ_t = θ − Δ (reference.optimizers)
    optimizer_init(params, cfg) -> OptimizerState(slots, t)   (slots: name -> mapping)
    optimizer_step(params, grads, state, cfg) -> (params, state)
    adam_moments(g, m, v, cfg) -> (m, v);  adam_delta(m, v, t, cfg) -> Adam's step in
        the form cfg.adam;  bias_corrections(t, cfg, like)   (Adam's pieces: faults swap them)
    train_step(params, state, X, y, cfg) -> (params, state, loss)
    check_device(device)                raises RuntimeError when ``device`` is not here
    train(cfg, params0, every=1, device="cpu", timings=None)
        -> (loss (K, *batch), flat params (K + 1, *batch, n))

``params``, ``grads``, ``m`` and ``v`` are mappings W1, b1, W2, b2. Every function is
pure and broadcasts over leading axes, so a batch of states (B, 2, H) … runs as one.

``train_step`` is the readable statement of one epoch; ``train`` is the fast loop over
epochs that must give the same trajectory to rounding. It records the loss logged at
the K checkpoint epochs ``reference.spec.checkpoint_epochs(epochs, every)`` and the
flat params (W1, b1, W2, b2 row-major) initially and after each checkpoint; ``every=1``
is the whole trajectory. A backend that compiles fills ``timings`` with
``compile_seconds`` and ``run_seconds``.

Frameworks are imported only when a backend is loaded (``load``), so a missing one
costs nothing until it is asked for.
"""
from __future__ import annotations

import importlib

MODULES = {
    "numpy": "backends.numpy_backend",
    "jax": "backends.jax_backend",
    "torch": "backends.torch_backend",
}


class BackendUnavailable(ImportError):
    """The framework a backend needs is not installed (or fails to import)."""


def load(name: str):
    """Import backend ``name``; :class:`BackendUnavailable` names what is missing."""
    try:
        return importlib.import_module(MODULES[name])
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if missing.split(".")[0] in ("backends", "reference", "harness"):
            raise  # our own code is broken: that is a bug, not a missing framework
        raise BackendUnavailable(f"{name} backend unavailable: cannot import {missing}") from exc
