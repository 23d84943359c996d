"""The optax row: the JAX backend's gradients stepped by the optax transformation that
computes the spec (each optimizer's record, ``reference.optimizers``: its call and state
fields; the two it cannot compute are the records' ``gaps``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import backends
from backends import jax_backend
from reference.optimizers import OPTIMIZERS
from reference.spec import PARAM_NAMES, Config

try:
    import optax
except ImportError as exc:  # jax is here (the import above), optax is not
    raise backends.BackendUnavailable(f"optax row unavailable: cannot import optax ({exc})") from exc

NAME = "optax"
GRADIENT_SOURCE = jax_backend.GRADIENT_SOURCE
check_device = jax_backend.check_device


def make_optimizer(cfg: Config) -> optax.GradientTransformation:
    """The optax transformation configured, as ``cfg.optimizer``'s record says."""
    call = OPTIMIZERS[cfg.optimizer].optax
    args, kwargs = call.arguments(cfg)
    return getattr(optax, call.function)(*args, **kwargs)


def train(cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
    """The JAX backend's gradients, stepped by optax, in one compiled scan."""
    X, y = jax_backend.xor_arrays(cfg)
    optimizer = make_optimizer(cfg)

    def run(params):
        def step(p, opt_state):
            loss, grads = jax_backend.loss_and_grads(p, X, y, cfg.grad)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        return jax_backend.scan_training(step, params, optimizer.init(params), cfg.epochs, every)

    return jax_backend.run_compiled(run, cfg, params0, device, timings)


def fill_state(cfg: Config, node, slots: dict, count, batch: int | None = None):
    """optax's state tree with each field the record maps replaced by the spec's slot (and
    "count" by the step count); any other leaf broadcast along the batch axis when there
    is one."""
    fields = getattr(node, "_fields", None)
    mapped = OPTIMIZERS[cfg.optimizer].optax_state
    if fields is not None:
        values = {}
        for f in fields:
            if f == "count":
                values[f] = jnp.asarray(count).astype(getattr(node, f).dtype)
            elif f in mapped:
                values[f] = slots[mapped[f]]
            else:
                values[f] = fill_state(cfg, getattr(node, f), slots, count, batch)
        return node._replace(**values)
    if isinstance(node, tuple):
        return tuple(fill_state(cfg, n, slots, count, batch) for n in node)
    if batch is None:
        return node
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (batch, *jnp.shape(leaf))), node)


def state_slots(cfg: Config, node) -> dict:
    """The spec's slots read back from an optax state tree."""
    found = {}
    mapped = OPTIMIZERS[cfg.optimizer].optax_state
    fields = getattr(node, "_fields", None)
    if fields is not None:
        for f in fields:
            if f in mapped:
                found[mapped[f]] = getattr(node, f)
            else:
                found |= state_slots(cfg, getattr(node, f))
    elif isinstance(node, tuple):
        for n in node:
            found |= state_slots(cfg, n)
    return found


def step_phases(cfg: Config, params, slots, t) -> dict:
    """The JAX row's forward pass and gradients, then the optax update vmapped over the
    batch of states, each given its step count and state."""
    module = jax_backend
    tensors, state, X, y = backends.state_to_backend(module, params, slots, t, cfg.dtype)
    optimizer = make_optimizer(cfg)
    template = optimizer.init({k: tensors[k][0] for k in PARAM_NAMES})
    count = jnp.asarray(t.ravel())
    batch = t.shape[0]

    @jax.jit
    def phases(params, slots, count):
        forward = module.forward(params, X)
        loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
        opt_state = fill_state(cfg, template, slots, count, batch)
        updates, new_state = jax.vmap(optimizer.update)(grads, opt_state, params)
        new_slots = {s: x for s, x in state_slots(cfg, new_state).items() if s in slots}
        return {
            "forward": forward,
            "loss": {"loss": loss},
            "grads": grads,
            **new_slots,
            "update": {k: -updates[k] for k in PARAM_NAMES},
            "params": optax.apply_updates(params, updates),
        }

    return backends.numpy_tree(module, phases(tensors, state.slots, count))
