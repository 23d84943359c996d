"""The high-precision oracle: the network, its MSE and the MSE's exact gradient in
mpmath at 50 significant digits.

Written as scalar loops over samples and units, apart from every float64 code path, so
that a mistake shared by the backends cannot hide here.

Beside the gradient it returns S, the scale a float computation's rounding error is
proportional to: each gradient element is a sum of products, and rounding perturbs
every factor by a relative amount that is a few units of roundoff times that factor's
relative condition. So S sums, over the terms, |term| × (1 + the conditions of its
factors), where

- σ'(z) computed as a·(1 − a) has condition a/(1 − a): near saturation (a → 1) the
  subtraction loses every digit, and float sources then get σ' wrong by ~100%;
- the error a − y has condition a/|a − y|: near a converged fit it cancels;
- both also inherit the rounding of z, about |z's terms| (Σ|x·w| + |b|) absolute.

A gradient that is small because its terms cancel is still computed from large terms,
so S, not |gradient|, is what the tolerance scales with.
"""

from __future__ import annotations

import mpmath
import numpy as np

from reference.spec import PARAM_NAMES, param_shapes, xor_data

DIGITS = 50


def _sigmoid(z):
    return 1 / (1 + mpmath.exp(-z))


def _saturation(a):
    """Relative condition of 1 − a: how much a's rounding is magnified in σ' = a(1 − a)."""
    return a / (1 - a)


def _mp_params(params: dict) -> dict:
    """Exact mpf copies of float parameters (every binary float is an mpf exactly)."""
    return {
        k: [[mpmath.mpf(float(x)) for x in row] for row in np.asarray(params[k], dtype=np.float64)] for k in PARAM_NAMES
    }


def mse(params: dict, digits: int = DIGITS, direction: dict | None = None, step=0):
    """The MSE as an mpf at ``params``, or at params + step·direction formed exactly in
    high precision (for Taylor tests: no rounding of the moved point)."""
    with mpmath.workdps(digits):
        p = _mp_params(params)
        if direction is not None:
            d = _mp_params(direction)
            h = mpmath.mpf(step)
            p = {
                k: [[a + h * b for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(p[k], d[k], strict=True)]
                for k in PARAM_NAMES
            }
        return _forward_loss(p)


def _forward_loss(p):
    X, y = xor_data("float64")
    hidden = len(p["b1"][0])
    loss = mpmath.mpf(0)
    for s in range(X.shape[0]):
        a1 = [_sigmoid(X[s, 0] * p["W1"][0][j] + X[s, 1] * p["W1"][1][j] + p["b1"][0][j]) for j in range(hidden)]
        a2 = _sigmoid(mpmath.fsum(a1[j] * p["W2"][j][0] for j in range(hidden)) + p["b2"][0][0])
        loss += (a2 - int(y[s, 0])) ** 2
    return loss / X.shape[0]


def loss_and_grads(params: dict, digits: int = DIGITS):
    """(loss, gradient, S, loss scale): the loss as an mpf, the gradient and S as
    mappings of nested lists of mpf shaped like the params, and the scale of the
    loss's own rounding error (used to bound finite differences' cancellation)."""
    X, y = xor_data("float64")
    n = X.shape[0]
    with mpmath.workdps(digits):
        p = _mp_params(params)
        hidden = len(p["b1"][0])
        zero = {k: [[mpmath.mpf(0)] * c for _ in range(r)] for k, (r, c) in param_shapes(hidden).items()}
        grad = {k: [row[:] for row in v] for k, v in zero.items()}
        size = {k: [row[:] for row in v] for k, v in zero.items()}
        loss = loss_size = mpmath.mpf(0)
        for s in range(n):
            x = [int(X[s, 0]), int(X[s, 1])]
            z1 = [x[0] * p["W1"][0][j] + x[1] * p["W1"][1][j] + p["b1"][0][j] for j in range(hidden)]
            z1_size = [
                abs(x[0] * p["W1"][0][j]) + abs(x[1] * p["W1"][1][j]) + abs(p["b1"][0][j]) for j in range(hidden)
            ]
            a1 = [_sigmoid(z) for z in z1]
            z2 = mpmath.fsum(a1[j] * p["W2"][j][0] for j in range(hidden)) + p["b2"][0][0]
            z2_size = mpmath.fsum(abs(a1[j] * p["W2"][j][0]) for j in range(hidden)) + abs(p["b2"][0][0])
            a2 = _sigmoid(z2)
            err = a2 - int(y[s, 0])
            loss += err**2 / n
            # rounding scale of the loss: a2 carries ~u·a2·(1 + (1 − a2)·|z2's terms|), err² twice that
            loss_size += (err**2 + 2 * abs(err) * a2 * (1 + (1 - a2) * z2_size)) / n
            # dL/dz2 for L = (1/n)·Σ err²: (2/n)·err·σ'(z2), σ'(z) = σ(z)(1 − σ(z))
            dz2 = 2 * err * a2 * (1 - a2) / n
            output_condition = 1 + _saturation(a2) + a2 / abs(err) + z2_size * (1 + a2 / abs(err))
            grad["b2"][0][0] += dz2
            size["b2"][0][0] += abs(dz2) * output_condition
            for j in range(hidden):
                grad["W2"][j][0] += a1[j] * dz2
                size["W2"][j][0] += abs(a1[j] * dz2) * (output_condition + 1)
                dz1 = dz2 * p["W2"][j][0] * a1[j] * (1 - a1[j])
                hidden_condition = output_condition + 2 + _saturation(a1[j]) + z1_size[j]
                grad["b1"][0][j] += dz1
                size["b1"][0][j] += abs(dz1) * hidden_condition
                for i in range(2):
                    grad["W1"][i][j] += x[i] * dz1
                    size["W1"][i][j] += abs(x[i] * dz1) * hidden_condition
        return loss, grad, size, loss_size


def to_array(nested) -> np.ndarray:
    """Nested lists of mpf as a float64 array (correctly rounded)."""
    return np.array([[float(x) for x in row] for row in nested], dtype=np.float64)
