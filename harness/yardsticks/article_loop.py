"""A speed yardstick: the article's training loop re-expressed operation for
operation, so the bench can say how the rows compare with what its readers run.

Same work per epoch as the article's script: the sigmoid recomputed inside its
derivative, four separate moment pairs, m̂ and v̂ materialised, the article's constant
bias correction and its ½·SSE gradient. It is not a row and is never compared; its
numbers are the article's, not the default config's.

    python -m harness.yardsticks.article_loop   # one 20000-epoch run, as the article's script does
"""

from __future__ import annotations

import time

import numpy as np

from reference.spec import PARAM_NAMES, initial_params, xor_data


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _sigmoid_derivative(x):
    return _sigmoid(x) * (1 - _sigmoid(x))


def article_training(params0: dict, epochs: int, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8):
    """Returns the per-epoch logged error and the final params."""
    X, y = xor_data("float64")
    p = {k: np.array(params0[k], dtype=np.float64) for k in PARAM_NAMES}
    m = {k: np.zeros_like(p[k]) for k in PARAM_NAMES}
    v = {k: np.zeros_like(p[k]) for k in PARAM_NAMES}
    errors = np.zeros(epochs)
    for epoch in range(epochs):
        Z1 = np.dot(X, p["W1"]) + p["b1"]
        A1 = _sigmoid(Z1)
        Z2 = np.dot(A1, p["W2"]) + p["b2"]
        A2 = _sigmoid(Z2)
        errors[epoch] = np.mean((A2 - y) ** 2)
        delta2 = (A2 - y) * _sigmoid_derivative(Z2)
        delta1 = np.dot(delta2, p["W2"].T) * _sigmoid_derivative(Z1)
        grads = {
            "W2": np.dot(A1.T, delta2),
            "b2": np.sum(delta2, axis=0),
            "W1": np.dot(X.T, delta1),
            "b1": np.sum(delta1, axis=0),
        }
        for k in PARAM_NAMES:
            m[k] = beta1 * m[k] + (1 - beta1) * grads[k]
            v[k] = beta2 * v[k] + (1 - beta2) * (grads[k] ** 2)
            m_hat = m[k] / (1 - beta1)
            v_hat = v[k] / (1 - beta2)
            p[k] -= lr * m_hat / (np.sqrt(v_hat) + eps)
    return errors, p


def main() -> None:
    start = time.perf_counter()
    errors, _ = article_training(initial_params(0), 20000)
    print(f"article loop: 20000 epochs in {time.perf_counter() - start:.2f} s, final error {errors[-1]:.5f}")


if __name__ == "__main__":
    main()
