"""Wrong hand gradients that the gradient check must catch, each a mistake people
really make when deriving backprop for this network by hand.

They share one backprop with a knob per mistake, so each canary differs from the
correct derivation in exactly one place; a test checks that with no knob turned it is
the numpy backend's gradient to the bit.
"""

from __future__ import annotations

import numpy as np

from backends.numpy_backend import sigmoid


def _t(a):
    return np.swapaxes(a, -1, -2)


def backprop(
    params,
    X,
    y,
    *,
    derivative_at_activation=False,
    output_scale=None,
    transpose_w2=False,
    bias_first_sample_only=False,
    hidden_delta_without_derivative=False,
):
    """MSE and a hand gradient with the chosen mistakes (none: the correct gradient)."""
    n = X.shape[0]
    Z1 = X @ params["W1"] + params["b1"]
    A1 = sigmoid(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    A2 = sigmoid(Z2)
    err = A2 - y
    loss = np.sum(err * err, axis=(-2, -1)) / n

    def sigmoid_derivative(Z, A):
        if derivative_at_activation:  # σ'(A) where σ'(Z) = A(1 − A) is meant
            return sigmoid(A) * (1.0 - sigmoid(A))
        return A * (1.0 - A)

    def bias_gradient(delta):
        if bias_first_sample_only:  # forgot to sum over the samples
            return delta[..., :1, :]
        return delta.sum(axis=-2, keepdims=True)

    dZ2 = (2.0 / n if output_scale is None else output_scale) * err * sigmoid_derivative(Z2, A2)
    dW2 = _t(dZ2) @ A1 if transpose_w2 else _t(A1) @ dZ2  # transposed: (1, H) for (H, 1)
    dA1 = dZ2 @ _t(params["W2"])
    dZ1 = dA1 if hidden_delta_without_derivative else dA1 * sigmoid_derivative(Z1, A1)
    return loss, {"W1": _t(X) @ dZ1, "b1": bias_gradient(dZ1), "W2": dW2, "b2": bias_gradient(dZ2)}


CANARIES: dict[str, dict] = {
    "sigmoid-derivative-at-activation": {"derivative_at_activation": True},
    "transposed-W2-gradient": {"transpose_w2": True},
    "bias-gradient-first-sample-only": {"bias_first_sample_only": True},
    "missing-2-over-N": {"output_scale": 1.0},
    "hidden-delta-without-sigmoid-derivative": {"hidden_delta_without_derivative": True},
}


def canary_gradient(name: str):
    """The hand-gradient function (params, X, y) -> (loss, grads) with mistake ``name``."""
    knobs = CANARIES[name]
    return lambda params, X, y: backprop(params, X, y, **knobs)
