"""An example plug-in backend: run it as a row with

    python compare.py --backend-file examples/plugin_backend.py

A backend is a Python module that defines the six names below (REQUIRED in
backends/__init__.py). Everything else the harness needs (optimizer state, a training
loop, the device check) is filled in from these; define any of them yourself to
replace it (see backends/numpy_backend.py for a full backend).

This one computes in plain numpy, like the numpy row, but writes the sigmoid another
way, σ(z) = (1 + tanh(z/2))/2, with its derivative σ' = (1 − tanh²(z/2))/4: the same
function in other rounding, so it agrees with the other rows to rounding, and lockstep
checks it step by step. It implements two optimizers; its row runs for those.
"""

import numpy as np

NAME = "example"
GRADIENT_SOURCE = "hand backprop, tanh-form sigmoid"


def to_backend(array, dtype=None):
    """A numpy array in, this backend's array out (here: numpy again)."""
    return np.array(array, dtype=dtype)


def to_numpy(x):
    return np.asarray(x)


sqrt = np.sqrt  # lets the harness plant the optimizer faults in this row


def forward(params, X):
    """Z1, A1, Z2, A2 for the batch of inputs X (4, 2); params W1 (2,H), b1 (1,H), W2 (H,1), b2 (1,1).
    Every function may be given a batch of parameter sets along leading axes."""
    Z1 = X @ params["W1"] + params["b1"]
    A1 = 0.5 * (1.0 + np.tanh(0.5 * Z1))
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = 0.5 * (1.0 + np.tanh(0.5 * Z2))
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def loss_and_grads(params, X, y, convention="mse"):
    """The MSE (logged) and the gradient of the convention's loss: "mse", or "half-sse"
    (½·Σ(ŷ − y)², N/2 times the MSE's gradient)."""
    n = X.shape[0]
    swap = lambda a: np.swapaxes(a, -1, -2)  # noqa: E731
    Z1 = X @ params["W1"] + params["b1"]
    T1 = np.tanh(0.5 * Z1)
    A1 = 0.5 * (1.0 + T1)
    dA1_dZ1 = 0.25 * (1.0 - T1 * T1)
    Z2 = A1 @ params["W2"] + params["b2"]
    T2 = np.tanh(0.5 * Z2)
    A2 = 0.5 * (1.0 + T2)
    dA2_dZ2 = 0.25 * (1.0 - T2 * T2)
    err = A2 - y
    loss = np.mean(err * err, axis=(-2, -1))
    dL_dZ2 = (2.0 / n if convention == "mse" else 1.0) * err * dA2_dZ2
    dL_dZ1 = (dL_dZ2 @ swap(params["W2"])) * dA1_dZ1
    grads = {
        "W1": swap(X) @ dL_dZ1,
        "b1": dL_dZ1.sum(axis=-2, keepdims=True),
        "W2": swap(A1) @ dL_dZ2,
        "b2": dL_dZ2.sum(axis=-2, keepdims=True),
    }
    return loss, grads


def sgd(g, slots, theta, t, cfg):
    return cfg.lr * g, {}


def adam(g, slots, theta, t, cfg):
    """Kingma & Ba: the step Δ (θ −= Δ) and the new m, v. t is the 1-based step."""
    m = cfg.beta1 * slots["m"] + (1.0 - cfg.beta1) * g
    v = cfg.beta2 * slots["v"] + (1.0 - cfg.beta2) * g * g
    m_hat = m / (1.0 - cfg.beta1**t)
    v_hat = v / (1.0 - cfg.beta2**t)
    return cfg.lr * m_hat / (np.sqrt(v_hat) + cfg.eps), {"m": m, "v": v}


# optimizer name (as --optimizer) -> update rule (g, state slots, θ, t, cfg) -> (Δ, new slots)
UPDATES = {"sgd": sgd, "adam": adam}
