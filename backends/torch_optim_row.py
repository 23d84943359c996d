"""The torch.optim row: autograd gradients (the torch backend's forward pass), stepped by
the torch.optim optimizer that computes the spec (each optimizer's record,
``reference.optimizers``: its class, arguments and state keys).

Every rule is element-wise, so the optimizer steps one flat leaf: the same optimizer as
four leaves, and a batch of flat vectors is a batch of independent runs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import torch

# torch.optim's first optimizer imports torch._dynamo, slow to import: imported here, it is
# timed as this row's import, not as the work of the first task that makes an optimizer
import torch._dynamo

import backends
from backends import torch_backend
from reference.optimizers import OPTIMIZERS
from reference.spec import PARAM_NAMES, Config, flatten_params, unflatten_params

NAME = "torch.optim"
GRADIENT_SOURCE = torch_backend.GRADIENT_SOURCE
check_device = torch_backend.check_device


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    """The torch.optim optimizer configured, as ``cfg.optimizer``'s record says, to compute
    the spec."""
    call = OPTIMIZERS[cfg.optimizer].torch
    if call is None:
        raise backends.BackendUnavailable(f"torch.optim row unavailable: torch.optim ships no {cfg.optimizer}")
    args, kwargs = call.arguments(cfg)
    return getattr(torch.optim, call.function)(params, *args, **kwargs)


# torch's default dtype for the run, where a setting asks for another than torch's float32:
# torch.optim keeps some state in it (NAdam's μ product), as a user's script would set it
DEFAULT_DTYPE_VARIABLE = "XOR_TORCH_DEFAULT_DTYPE"


@contextmanager
def default_dtype():
    """Within the block, torch's default dtype is the one ``XOR_TORCH_DEFAULT_DTYPE`` names
    (unchanged when it names none)."""
    named = os.environ.get(DEFAULT_DTYPE_VARIABLE)
    if not named:
        yield
        return
    before = torch.get_default_dtype()
    torch.set_default_dtype({"float64": torch.float64, "float32": torch.float32}[named])
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def train(cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
    """The torch backend's loss on views of one flat leaf, stepped by torch.optim."""
    with default_dtype():
        return _train(cfg, params0, every, device)


def _train(cfg: Config, params0, every: int, device: str):
    X, y, theta, kept, losses, history = torch_backend.setup(cfg, params0, every, device)
    theta.requires_grad_(True)
    optimizer = make_optimizer(cfg, [theta])
    row = 0
    for t in range(1, cfg.epochs + 1):
        theta.grad = None  # zero_grad(set_to_none=True) for the one leaf, without its profiler hooks
        loss = torch_backend.mse(torch_backend.forward(torch_backend.flat_views(theta, cfg.hidden), X)["A2"], y)
        torch_backend.differentiated(loss, cfg.grad).backward()
        optimizer.step()
        if t in kept:
            with torch.no_grad():
                losses[row] = loss
                history[row + 1] = theta
            row += 1
    return losses.cpu().numpy(), history.cpu().numpy()


def state_entry(cfg: Config, slots: dict, t) -> dict:
    """torch.optim's per-parameter state for the spec's ``slots`` (tensors) after ``t`` steps."""
    record = OPTIMIZERS[cfg.optimizer]
    entry = {record.torch_state[s]: value for s, value in slots.items()}
    for s in record.torch_scalars:  # one number per tensor (every state of one step count has the same),
        # in the dtype torch.optim keeps it in: the default dtype's (float32 unless set to float64), a copy:
        # torch.optim updates it in place, and must not write into the batch it was read from
        entry[record.torch_state[s]] = slots[s].reshape(-1)[0].to(_scalar_dtype(), copy=True)
    if record.counts_steps:
        entry["step"] = torch.tensor(float(t))
    return entry


def _scalar_dtype():
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def state_slots(cfg: Config, entry: dict) -> dict:
    """The spec's slots read back from torch.optim's per-parameter state."""
    return {s: entry[key] for s, key in OPTIMIZERS[cfg.optimizer].torch_state.items()}


def step_phases(cfg: Config, params, slots, t) -> dict:
    """The torch row's forward pass and gradients, then the torch.optim optimizer stepping
    the batch of states, those that share a step count as one parameter (the rules are
    element-wise, so a (k, n) leaf is k independent states). torch.optim does not expose
    its step, so the update phase is not observable; its state updates in place, into
    views of the batch read back here."""
    module = torch_backend
    tensors, state, X, y = backends.state_to_backend(module, params, slots, t, cfg.dtype)
    with torch.no_grad():
        forward = module.forward(tensors, X)
    loss, grads = module.loss_and_grads(tensors, X, y, cfg.grad)
    steps = np.asarray(t).reshape(-1)
    order = np.argsort(steps, kind="stable")  # states of one step count side by side

    def flat(tree):
        return torch.from_numpy(
            np.ascontiguousarray(flatten_params({k: module.to_numpy(tree[k]) for k in PARAM_NAMES})[order])
        )

    theta, g = flat(tensors).clone(), flat(grads)
    flat_slots = {s: flat(tree).clone() for s, tree in state.slots.items()}
    counts, sizes = np.unique(steps[order], return_counts=True)
    sizes = sizes.tolist()
    leaves = theta.split(sizes)  # views of theta: the optimizer's in-place steps land there
    parts = {s: x.split(sizes) for s, x in flat_slots.items()}  # views likewise
    optimizer = make_optimizer(cfg, leaves)
    with default_dtype():
        for i, (leaf, grad, count) in enumerate(zip(leaves, g.split(sizes), counts, strict=True)):
            leaf.grad = grad
            optimizer.state[leaf] = state_entry(cfg, {s: views[i] for s, views in parts.items()}, count)
        optimizer.step()
    for s in OPTIMIZERS[cfg.optimizer].torch_scalars:  # kept apart from the batch: copied back
        for leaf, part in zip(leaves, parts[s], strict=True):
            part.copy_(optimizer.state[leaf][OPTIMIZERS[cfg.optimizer].torch_state[s]])
    tree = backends.numpy_tree(module, {"forward": forward, "loss": {"loss": loss}, "grads": grads})
    inverse = np.argsort(order)
    unflat = lambda x: unflatten_params(x.numpy()[inverse], cfg.hidden)  # noqa: E731
    return tree | {s: unflat(x) for s, x in flat_slots.items()} | {"params": unflat(theta)}
