"""The bench's TorchScript yardstick: the torch row's Adam loop for one run, in the subset
of Python that TorchScript compiles. Not a row and not checked by lockstep: it is timed
by ``compare.py bench`` to say whether compiling the loop would pay, and
tests/test_backends.py checks that it trains as the torch row does, to rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from reference.spec import Config, flatten_params, xor_data


def _scriptable_training(
    theta0: torch.Tensor,
    X: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    hidden: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
):
    # The loop of the torch row's ``train`` for one run, in the subset of Python TorchScript compiles.
    h = hidden
    theta = theta0.clone()
    m, v = torch.zeros_like(theta), torch.zeros_like(theta)
    losses = torch.empty([epochs], dtype=theta.dtype)
    history = torch.empty([epochs + 1, theta.shape[0]], dtype=theta.dtype)
    history[0] = theta
    for epoch in range(epochs):
        leaf = theta.detach().requires_grad_(True)
        A1 = torch.sigmoid(torch.addmm(leaf[2 * h : 3 * h], X, leaf[: 2 * h].view(2, h)))
        A2 = torch.sigmoid(torch.addmm(leaf[4 * h :], A1, leaf[3 * h : 4 * h].view(h, 1)))
        loss = torch.nn.functional.mse_loss(A2, y)
        g = torch.autograd.grad([loss], [leaf])[0]
        assert g is not None
        t = epoch + 1
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        theta = theta - lr * (m / (1.0 - beta1**t)) / (torch.sqrt(v / (1.0 - beta2**t)) + eps)
        losses[epoch] = loss.detach()
        history[epoch + 1] = theta
    return losses, history


_scripted_training = None


def train_torchscript(cfg: Config, params0):
    """The torch row's ``train`` for one run of paper-form Adam, compiled by TorchScript."""
    global _scripted_training
    if _scripted_training is None:
        _scripted_training = torch.jit.script(_scriptable_training)
    X, y = (torch.from_numpy(a) for a in xor_data(cfg.dtype))
    theta = torch.from_numpy(np.array(flatten_params(params0), dtype=cfg.dtype))
    losses, history = _scripted_training(theta, X, y, cfg.epochs, cfg.hidden, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps)
    return losses.numpy(), history.numpy()
