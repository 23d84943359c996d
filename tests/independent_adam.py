"""A small independent program: Adam for the XOR network written plainly, sharing no
code with the harness (only numpy's legacy generator for the same initial weights), with
one switch per convention or slip. It stands for "another implementation" whose
trajectory the harness must explain from the file alone."""

import numpy as np

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([[0.0], [1.0], [1.0], [0.0]])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def gradients(W1, b1, W2, b2, way):
    ways = set(way.split("+"))  # conventions stacked: "no-bias-correction+grad-missing-2-over-n"
    A1 = sigmoid(X @ W1 + b1)
    A2 = sigmoid(A1 @ W2 + b2)
    err = A2 - Y
    loss = np.mean(err**2)
    scale = 1.0 if "grad-missing-2-over-n" in ways else 2.0 if "grad-sse" in ways else 2.0 / 4
    at_output = "sigmoid-grad-at-activation" in ways
    d2 = sigmoid(A2) * (1 - sigmoid(A2)) if at_output else A2 * (1 - A2)
    d1 = sigmoid(A1) * (1 - sigmoid(A1)) if at_output else A1 * (1 - A1)
    delta2 = scale * err * d2
    delta1 = (delta2 @ W2.T) * d1
    gW1 = X.T @ delta1
    if "w1-gradient-times-1.01" in ways:
        gW1 = 1.01 * gW1
    bias = (
        (lambda d: d.mean(axis=0, keepdims=True))
        if "bias-gradient-averaged" in ways
        else (lambda d: d.sum(axis=0, keepdims=True))
    )
    return loss, [gW1, bias(delta1), A1.T @ delta2, bias(delta2)]


def train(seed=0, epochs=50, way="paper", lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, hidden=4):
    """(loss per epoch, flat params after each epoch)."""
    rng = np.random.RandomState(seed)
    params = [rng.randn(2, hidden), rng.randn(1, hidden), rng.randn(hidden, 1), rng.randn(1, 1)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    ways = set(way.split("+"))
    decay1, decay2 = (beta2, beta1) if "beta1-beta2-swapped" in ways else (beta1, beta2)  # in the moments only
    losses, rows = [], []
    for t in range(1, epochs + 1):
        loss, grads = gradients(*params, way)
        for i, g in enumerate(grads):
            m[i] = decay1 * m[i] + (1 - decay1) * g
            v[i] = decay2 * v[i] + (1 - decay2) * g * g
            if "float32-moments" in ways:
                m[i], v[i] = m[i].astype(np.float32), v[i].astype(np.float32)
            c1, c2 = (1 - beta1, 1 - beta2) if "article-bias-correction" in ways else (1 - beta1**t, 1 - beta2**t)
            if "no-bias-correction" in ways:
                c1 = c2 = 1.0
            if "eps-inside-sqrt" in ways:
                step = lr * (m[i] / c1) / np.sqrt(v[i] / c2 + eps)
            elif "epshat" in ways:
                step = lr * np.sqrt(c2) / c1 * m[i] / (np.sqrt(v[i]) + eps)
            else:
                step = lr * (m[i] / c1) / (np.sqrt(v[i] / c2) + eps)
            params[i] = params[i] - step
        losses.append(loss)
        rows.append(np.concatenate([p.ravel() for p in params]))
    return np.array(losses), np.array(rows)


def train_adagrad(seed=0, epochs=50, lr=1e-2, eps=1e-10, initial_accumulator=0.0, hidden=4):
    """AdaGrad the same plain way (ε outside the root): (loss per epoch, flat params)."""
    rng = np.random.RandomState(seed)
    params = [rng.randn(2, hidden), rng.randn(1, hidden), rng.randn(hidden, 1), rng.randn(1, 1)]
    total = [np.full_like(p, initial_accumulator) for p in params]
    losses, rows = [], []
    for _ in range(epochs):
        loss, grads = gradients(*params, "paper")
        for i, g in enumerate(grads):
            total[i] = total[i] + g * g
            params[i] = params[i] - lr * g / (np.sqrt(total[i]) + eps)
        losses.append(loss)
        rows.append(np.concatenate([p.ravel() for p in params]))
    return np.array(losses), np.array(rows)
