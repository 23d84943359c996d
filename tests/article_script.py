"""A faithful transcription of the article's training script, for tests only.

Same operations in the same order as the article's numpy code: the global legacy
generator seeded with np.random.seed, randn for W1, b1, W2, b2; the sigmoid's derivative
recomputing the sigmoid; the half-SSE gradient (no 2/N); Adam with the constant
denominators (1 − β1) and (1 − β2); the error logged before the update. The plotting
is left out. It is the reference the project's `--recipe seed` must reproduce.
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(x):
    return sigmoid(x) * (1 - sigmoid(x))


def run_article(seed, epochs=20000, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """Returns (errors per epoch, final W1, b1, W2, b2)."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([[0], [1], [1], [0]])
    hidden_size, output_size, input_size = 4, 1, X.shape[1]
    np.random.seed(seed)
    W1 = np.random.randn(input_size, hidden_size)
    b1 = np.random.randn(1, hidden_size)
    W2 = np.random.randn(hidden_size, output_size)
    b2 = np.random.randn(1, output_size)
    mW1, mb1, mW2, mb2 = (np.zeros_like(a) for a in (W1, b1, W2, b2))
    vW1, vb1, vW2, vb2 = (np.zeros_like(a) for a in (W1, b1, W2, b2))
    errors = np.zeros(epochs)
    for epoch in range(epochs):
        Z1 = np.dot(X, W1) + b1
        A1 = sigmoid(Z1)
        Z2 = np.dot(A1, W2) + b2
        A2 = sigmoid(Z2)
        errors[epoch] = np.mean((A2 - y) ** 2)
        delta2 = (A2 - y) * sigmoid_derivative(Z2)
        delta1 = np.dot(delta2, W2.T) * sigmoid_derivative(Z1)
        grad_W2 = np.dot(A1.T, delta2)
        grad_b2 = np.sum(delta2, axis=0)
        grad_W1 = np.dot(X.T, delta1)
        grad_b1 = np.sum(delta1, axis=0)
        mW1 = beta1 * mW1 + (1 - beta1) * grad_W1
        mb1 = beta1 * mb1 + (1 - beta1) * grad_b1
        mW2 = beta1 * mW2 + (1 - beta1) * grad_W2
        mb2 = beta1 * mb2 + (1 - beta1) * grad_b2
        vW1 = beta2 * vW1 + (1 - beta2) * (grad_W1**2)
        vb1 = beta2 * vb1 + (1 - beta2) * (grad_b1**2)
        vW2 = beta2 * vW2 + (1 - beta2) * (grad_W2**2)
        vb2 = beta2 * vb2 + (1 - beta2) * (grad_b2**2)
        W1 -= learning_rate * (mW1 / (1 - beta1)) / (np.sqrt(vW1 / (1 - beta2)) + epsilon)
        b1 -= learning_rate * (mb1 / (1 - beta1)) / (np.sqrt(vb1 / (1 - beta2)) + epsilon)
        W2 -= learning_rate * (mW2 / (1 - beta1)) / (np.sqrt(vW2 / (1 - beta2)) + epsilon)
        b2 -= learning_rate * (mb2 / (1 - beta1)) / (np.sqrt(vb2 / (1 - beta2)) + epsilon)
    return errors, {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
