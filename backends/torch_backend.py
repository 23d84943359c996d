"""PyTorch backend: gradients by autograd, Adam written by hand with tensor ops.
Also the ``torch.optim.Adam`` reference row.

Training records into preallocated tensors and converts to numpy once at the end, so
no epoch waits on a host round trip.
"""
from __future__ import annotations

import numpy as np
import torch

from reference.adam import AdamState
from reference.spec import PARAM_NAMES, Config, n_params, xor_data

NAME = "torch"
GRADIENT_SOURCE = "torch autograd"

# These tensors hold a few dozen numbers: thread hand-offs cost more than they save.
torch.set_num_threads(1)


def _torch_dtype(dtype: str):
    return {"float64": torch.float64, "float32": torch.float32}[dtype]


def to_backend(array, dtype=None):
    return torch.from_numpy(np.array(array, dtype=dtype))


def to_numpy(x):
    return x.detach().cpu().numpy()


def forward(params, X):
    Z1 = X @ params["W1"] + params["b1"]
    A1 = torch.sigmoid(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = torch.sigmoid(Z2)
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def mse(A2, y):
    return torch.mean((A2 - y) ** 2, dim=(-2, -1))


def loss_and_grads(params, X, y):
    leaves = {k: params[k].detach().requires_grad_(True) for k in PARAM_NAMES}
    with torch.enable_grad():
        loss = mse(forward(leaves, X)["A2"], y)
        # Independent states in a batch: the gradient of the sum is each one's own.
        grads = torch.autograd.grad(loss.sum(), [leaves[k] for k in PARAM_NAMES])
    return loss.detach(), dict(zip(PARAM_NAMES, grads))


def adam_init(params):
    zeros = {k: torch.zeros_like(params[k]) for k in PARAM_NAMES}
    return AdamState(m=zeros, v=dict(zeros), t=0)


def adam_step(params, grads, state, cfg: Config):
    # Written out here rather than shared with the other backends: a slip in one
    # backend's Adam must show up as a disagreement, not be copied into every row.
    t = state.t + 1
    if torch.is_tensor(t):
        dtype = params["W1"].dtype
        bc1 = 1.0 - torch.pow(torch.tensor(cfg.beta1, dtype=dtype), t.to(dtype))
        bc2 = 1.0 - torch.pow(torch.tensor(cfg.beta2, dtype=dtype), t.to(dtype))
    else:  # one state: corrections in Python double, as torch.optim does
        bc1, bc2 = 1.0 - cfg.beta1**t, 1.0 - cfg.beta2**t
    new_params, m, v = {}, {}, {}
    with torch.no_grad():
        for k in PARAM_NAMES:
            g = grads[k]
            m[k] = cfg.beta1 * state.m[k] + (1.0 - cfg.beta1) * g
            v[k] = cfg.beta2 * state.v[k] + (1.0 - cfg.beta2) * (g * g)
            m_hat = m[k] / bc1
            v_hat = v[k] / bc2
            new_params[k] = params[k] - cfg.lr * m_hat / (torch.sqrt(v_hat) + cfg.eps)
    return new_params, AdamState(m=m, v=v, t=t)


def train_step(params, state, X, y, cfg: Config):
    loss, grads = loss_and_grads(params, X, y)
    params, state = adam_step(params, grads, state, cfg)
    return params, state, loss


def _tensors(cfg: Config, params0):
    dtype = _torch_dtype(cfg.dtype)
    X, y = (torch.from_numpy(a) for a in xor_data(cfg.dtype))
    params = {k: torch.from_numpy(np.array(params0[k], dtype=cfg.dtype)) for k in PARAM_NAMES}
    batch = params["W1"].shape[:-2]
    losses = torch.empty((cfg.epochs, *batch), dtype=dtype)
    history = torch.empty((cfg.epochs + 1, *batch, n_params(cfg.hidden)), dtype=dtype)
    return X, y, params, losses, history


def _record(history, epoch, params):
    batch = params["W1"].shape[:-2]
    torch.cat([params[k].detach().reshape(*batch, -1) for k in PARAM_NAMES], dim=-1, out=history[epoch])


def train(cfg: Config, params0):
    X, y, params, losses, history = _tensors(cfg, params0)
    state = adam_init(params)
    _record(history, 0, params)
    for epoch in range(cfg.epochs):
        params, state, losses[epoch] = train_step(params, state, X, y, cfg)
        _record(history, epoch + 1, params)
    return losses.numpy(), history.numpy()


def train_torch_optim(cfg: Config, params0):
    """Reference row: autograd gradients stepped by ``torch.optim.Adam``."""
    X, y, params, losses, history = _tensors(cfg, params0)
    leaves = [params[k].requires_grad_(True) for k in PARAM_NAMES]
    optimizer = torch.optim.Adam(leaves, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    _record(history, 0, params)
    for epoch in range(cfg.epochs):
        optimizer.zero_grad(set_to_none=True)
        loss = mse(forward(params, X)["A2"], y)
        loss.sum().backward()
        optimizer.step()
        losses[epoch] = loss.detach()
        _record(history, epoch + 1, params)
    return losses.numpy(), history.numpy()
