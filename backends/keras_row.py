"""The optional keras row: the JAX backend's gradients stepped by the Keras 3 optimizer
each optimizer's record names (``reference.optimizers``: its ``keras`` call; Adam is
Keras's ε-hat form, ``--adam epshat``) through its stateless API, in one compiled scan.
Needs Keras on its JAX backend; it cannot step from a given state, so it has no lockstep.
"""

from __future__ import annotations

import os

import numpy as np

import backends
from backends import jax_backend
from reference.optimizers import OPTIMIZERS
from reference.spec import PARAM_NAMES, Config

os.environ.setdefault("KERAS_BACKEND", "jax")
try:
    import keras
except ImportError as exc:
    raise backends.BackendUnavailable(f"keras row unavailable: cannot import keras ({exc})") from exc

NAME = "keras"
GRADIENT_SOURCE = jax_backend.GRADIENT_SOURCE
check_device = jax_backend.check_device


def make_optimizer(cfg: Config):
    """The keras.optimizers optimizer configured, as ``cfg.optimizer``'s record says."""
    call = OPTIMIZERS[cfg.optimizer].keras
    if call is None:
        raise backends.BackendUnavailable(f"keras row unavailable: Keras ships no {cfg.optimizer}")
    args, kwargs = call.arguments(cfg)
    return getattr(keras.optimizers, call.function)(*args, **kwargs)


def train(cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
    if keras.backend.backend() != "jax":
        raise backends.BackendUnavailable(f"keras row needs KERAS_BACKEND=jax, not {keras.backend.backend()}")
    keras.config.set_floatx(cfg.dtype)
    X, y = jax_backend.xor_arrays(cfg)
    variables = [keras.Variable(np.asarray(params0[k], dtype=cfg.dtype), dtype=cfg.dtype) for k in PARAM_NAMES]
    optimizer = make_optimizer(cfg)
    optimizer.build(variables)

    def run(params):
        def step(p, opt_vars):
            loss, grads = jax_backend.loss_and_grads(p, X, y, cfg.grad)
            new, opt_vars = optimizer.stateless_apply(
                opt_vars, [grads[k] for k in PARAM_NAMES], [p[k] for k in PARAM_NAMES]
            )
            return dict(zip(PARAM_NAMES, new, strict=True)), opt_vars, loss

        return jax_backend.scan_training(step, params, [v.value for v in optimizer.variables], cfg.epochs, every)

    return jax_backend.run_compiled(run, cfg, params0, device, timings)
