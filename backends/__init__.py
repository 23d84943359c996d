"""One module per framework, each exporting the same small set of pure functions, and
the library rows beside their framework (torch.optim, optax, keras) and the rows of the
series' other languages (octave, scilab: ``program_row``).

The interface is defined once, in ``backends.interface`` (one record per member: who
defines it, what a planted fault swaps). ``params``, ``grads``, ``m`` and ``v`` are
mappings W1, b1, W2, b2. Every function is pure and broadcasts over leading axes, so a
batch of states (B, 2, H) … runs as one.

A module is named for what it is: ``X_backend`` computes the step with rules written in
its framework (numpy, JAX, torch: the whole backends); ``X_row`` hands the step to
something else (a library's optimizer, a program in another language, another
interpreter).

``train_step`` is the readable statement of one epoch; ``train`` is the fast loop over
epochs that must give the same trajectory to rounding. Both, and ``step_phases``, run the
same ``loss_and_grads`` and the same rule from ``UPDATES``: a row has one implementation
of its step, so a bug anywhere in it shows in lockstep in its own phase. It records the
loss logged at the K checkpoint epochs ``reference.spec.checkpoint_epochs(epochs, every)``
and the flat params (W1, b1, W2, b2 row-major) initially and after each checkpoint;
``every=1`` is the whole trajectory. A backend that compiles fills ``timings`` with
``compile_seconds`` and ``run_seconds``. The glue that is the same in every backend
(``optimizer_init``, ``optimizer_step``, ``train_step``) is written once, ``step_glue``.

Frameworks are imported only when a backend is loaded (``load``), so a missing one
costs nothing until it is asked for.

A plug-in backend (``compare.py --backend-file FILE.py``, ``load_file``), and a row's
module of our own, must define the interface's required members; what they leave out of
the rest is filled in from those (``complete``): cpu only, the glue, and a readable
training loop over ``train_step``. Its ``UPDATES`` may hold only some optimizers: the
row runs those.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from backends.interface import INTERFACE, REQUIRED

__all__ = ["INTERFACE", "REQUIRED", "BackendUnavailable", "PluginError", "load", "load_file", "step_glue"]

# Seconds each backend's first import took in this process (its framework's import,
# mostly): the default run's timeline reports them (harness.engine.execution.timed).
IMPORT_SECONDS: dict = {}


def user_cache_folder(what: str) -> Path:
    """Where this tool keeps what ``what`` (a compiler) compiled, across runs:
    $XDG_CACHE_HOME/xor-crosscheck/WHAT (~/.cache/… where XDG_CACHE_HOME is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "xor-crosscheck" / what


class BackendUnavailable(ImportError):
    """The framework a backend needs is not installed (or fails to import)."""


class RowFailed(RuntimeError):
    """The row is installed but could not run: its program failed or hung, it wrote
    something unusable. The message is one line."""


class PluginError(ValueError):
    """A plug-in backend file that cannot be used; the message is one line."""


def load(name: str) -> Any:
    """Import the backend ``name``: a module of ours ("backends.numpy_backend", what a
    row's record names), "file:PATH" for a plug-in, "env:ROW@NAME=PYTHON" for a row run by
    another interpreter (``env_row``); :class:`BackendUnavailable` names what is missing."""
    if name.startswith("file:"):
        return load_file(name[len("file:") :])
    if name.startswith("env:"):  # a row run by another interpreter
        from backends import env_row

        return env_row.load(name)
    if name.startswith("compiled:"):  # an eager row under a compiler
        from backends import compiled

        return compiled.load(name)
    if name in sys.modules:
        return sys.modules[name]
    started = time.perf_counter()
    try:
        module = importlib.import_module(name)
    except BackendUnavailable:
        raise
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        if missing.split(".")[0] in ("backends", "reference", "harness"):
            raise  # our own code is broken: that is a bug, not a missing framework
        raise BackendUnavailable(f"{name} unavailable: cannot import {missing}") from exc
    IMPORT_SECONDS[name] = time.perf_counter() - started
    if all(hasattr(module, member) for member in REQUIRED):  # a row's module needs only the required part
        complete(module)
    return module


def load_file(path) -> Any:
    """A plug-in backend from a Python file, checked and completed (module doc). The same
    file loads once per process."""
    try:
        path = Path(path).resolve()
        is_file = path.is_file()
    except OSError as exc:  # a name too long, a loop of links
        raise PluginError(f"{str(path)[:80]}: {exc.strerror or exc}") from None
    key = f"backend_plugin_{abs(hash(str(path)))}"
    if key in sys.modules:
        return sys.modules[key]
    if not is_file:
        raise PluginError(f"{path}: no such file")
    spec = importlib.util.spec_from_file_location(key, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # a plug-in is anyone's code: any failure is its own, in one line
        raise PluginError(f"{path}: importing it failed: {exc.__class__.__name__}: {exc}") from None
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise PluginError(f"{path}: missing {', '.join(missing)} (a backend defines {', '.join(REQUIRED)})")
    if not isinstance(module.UPDATES, dict) or not module.UPDATES:
        raise PluginError(f"{path}: UPDATES must map optimizer names to update rules")
    from reference.optimizers import OPTIMIZERS

    unknown = [name for name in module.UPDATES if name not in OPTIMIZERS]
    if unknown:
        raise PluginError(f"{path}: UPDATES names unknown optimizer {unknown[0]!r} (known: {', '.join(OPTIMIZERS)})")
    complete(module)
    sys.modules[key] = module
    return module


def step_glue(module) -> tuple:
    """(optimizer_init, optimizer_step, train_step) of ``module``, written once for every
    backend. Each looks ``UPDATES``, ``loss_and_grads`` and ``full_like`` up on the module
    when called, so a planted fault reaches them."""
    from reference import optimizers
    from reference.spec import PARAM_NAMES

    def optimizer_init(params, cfg):
        spec = optimizers.OPTIMIZERS[cfg.optimizer]
        slots = {
            s: {k: module.full_like(params[k], optimizers.initial_slot(cfg.optimizer, s, cfg)) for k in PARAM_NAMES}
            for s in spec.state_slots
        }
        return optimizers.OptimizerState(slots=slots, t=0)

    def optimizer_step(params, grads, state, cfg):
        return optimizers.apply_update(module.UPDATES[cfg.optimizer], params, grads, state, cfg)

    def train_step(params, state, X, y, cfg):
        loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
        params, state = module.optimizer_step(params, grads, state, cfg)
        return params, state, loss

    return optimizer_init, optimizer_step, train_step


def complete(module) -> None:
    """Fill in the interface's completed members that a plug-in leaves out."""

    def check_device(device: str) -> None:
        if device != "cpu":
            raise RuntimeError(f"the {module.NAME} backend runs on the cpu only, not {device!r}")

    def full_like(x, value):
        return module.to_backend(np.full_like(np.asarray(module.to_numpy(x)), value))

    def step_phases(cfg, params, slots, t):
        return phases_of_step(module, cfg, params, slots, t)

    optimizer_init, optimizer_step, train_step = step_glue(module)
    defaults = {
        "GRADIENT_SOURCE": "its own gradients",
        "sqrt": np.sqrt,
        "full_like": full_like,
        "check_device": check_device,
        "optimizer_init": optimizer_init,
        "optimizer_step": optimizer_step,
        "train_step": train_step,
        "train": readable_train(module),
        "step_phases": step_phases,
    }
    for name, value in defaults.items():
        if not hasattr(module, name):
            setattr(module, name, value)


def readable_train(module):
    """A training loop over the backend's readable ``train_step``, recording what ``train``
    records (for plug-ins without a fast loop, and for faults that a fast loop would
    inline away)."""
    from reference.spec import PARAM_NAMES, checkpoint_epochs, flatten_params, xor_data

    def train(cfg, params0, every: int = 1, device: str = "cpu", timings=None, states=None):
        X, y = (module.to_backend(a) for a in xor_data(cfg.dtype))
        params = {k: module.to_backend(params0[k], cfg.dtype) for k in PARAM_NAMES}
        state = module.optimizer_init(params, cfg)
        kept = set(checkpoint_epochs(cfg.epochs, every).tolist())
        losses, history = [], [flatten_params(params0).astype(cfg.dtype)]
        for t in range(1, cfg.epochs + 1):
            params, state, loss = module.train_step(params, state, X, y, cfg)
            if t in kept:
                losses.append(np.asarray(module.to_numpy(loss), dtype=cfg.dtype))
                history.append(flatten_params({k: module.to_numpy(params[k]) for k in PARAM_NAMES}).astype(cfg.dtype))
        return np.array(losses), np.array(history)

    return train


# --- one step, phase by phase (lockstep and replay) -------------------------------------------


def hand_phases(module, cfg, params, state, X, y) -> dict:
    """One step of ``module`` from ``state``, written out phase by phase with its own
    functions: the forward pass, loss and gradients, each optimizer slot, the step Δ and
    the new params (backend tensors)."""
    from reference.spec import PARAM_NAMES

    forward = module.forward(params, X)
    loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
    update_rule = module.UPDATES[cfg.optimizer]
    t = state.t + 1
    slots: dict[str, dict] = {s: {} for s in state.slots}
    update, new = {}, {}
    for k in PARAM_NAMES:
        update[k], new_slots = update_rule(grads[k], {s: state.slots[s][k] for s in state.slots}, params[k], t, cfg)
        new[k] = params[k] - update[k]
        for s, value in new_slots.items():
            slots[s][k] = value
    return {"forward": forward, "loss": {"loss": loss}, "grads": grads, **slots, "update": update, "params": new}


def state_to_backend(module, params: dict, slots: dict, t, dtype: str):
    """A batch of numpy states as ``module``'s tensors: (params, OptimizerState, X, y)."""
    from reference.optimizers import OptimizerState
    from reference.spec import PARAM_NAMES, xor_data

    params = {k: module.to_backend(params[k], dtype) for k in PARAM_NAMES}
    slots = {s: {k: module.to_backend(tree[k], dtype) for k in PARAM_NAMES} for s, tree in slots.items()}
    X, y = (module.to_backend(a) for a in xor_data(dtype))
    return params, OptimizerState(slots=slots, t=module.to_backend(t, np.int64)), X, y


def numpy_tree(module, tree: dict) -> dict:
    """{phase: {name: tensor}} as numpy arrays."""
    return {phase: {k: np.asarray(module.to_numpy(x)) for k, x in parts.items()} for phase, parts in tree.items()}


def phases_of_step(module, cfg, params: dict, slots: dict, t) -> dict:
    """``step_phases`` for a backend whose functions need no framework context."""
    tensors, state, X, y = state_to_backend(module, params, slots, t, cfg.dtype)
    return numpy_tree(module, hand_phases(module, cfg, tensors, state, X, y))
