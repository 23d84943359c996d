"""Adam, Kingma & Ba (2015), Algorithm 1: the form torch.optim.Adam and optax.adam use.

For each parameter θ with gradient g at 1-based step t (state m, v start at zero):

    m_t = β1·m_{t−1} + (1 − β1)·g
    v_t = β2·v_{t−1} + (1 − β2)·g²
    m̂_t = m_t / (1 − β1^t)
    v̂_t = v_t / (1 − β2^t)
    θ_t = θ_{t−1} − lr · m̂_t / (√v̂_t + ε)

Two other forms are in use, selected by ``Config.adam``:

- ``epshat``, the paper's "efficient" form before its §2.1, as Keras 3, TensorFlow and
  the ゼロから作るDeep Learning textbook implement it:
      θ_t = θ_{t−1} − lr·√(1 − β2^t)/(1 − β1^t) · m_t/(√v_t + ε̂)
  It equals the paper's form with ε_t = ε̂/√(1 − β2^t).
- ``article``, the article's (``seed`` until now, a name still taken for one release):
  constant denominators (1 − β1) and (1 − β2) where the paper
  has (1 − β1^t) and (1 − β2^t):
      θ_t = θ_{t−1} − lr·(m_t/(1 − β1)) / (√(v_t/(1 − β2)) + ε)

Every backend writes these five lines in its own tensor library. The functions below
are the numpy statement of them, used by the numpy backend and by tests as the spec.
They work element-wise, so they apply unchanged to a batch of states.
"""

from __future__ import annotations

import numpy as np


def bias_corrections(t, beta1: float, beta2: float, dtype=None):
    """(1 − β1^t, 1 − β2^t) for the 1-based step t, a count (training) or an array of
    counts (a batch of states, lockstep), formed in double by libm's pow and rounded once
    to ``dtype``. One path for both: a float32 run stays float32, and training and
    lockstep compute the same bits."""
    steps = np.asarray(t, dtype=np.float64)
    bc1, bc2 = 1.0 - beta1**steps, 1.0 - beta2**steps
    if dtype is not None:
        bc1, bc2 = bc1.astype(dtype), bc2.astype(dtype)
    return bc1, bc2


def adam_moments(g, m, v, beta1: float, beta2: float):
    """New first and second moment estimates (m_t, v_t)."""
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * (g * g)
    return m, v


def adam_delta(m, v, t, lr: float, beta1: float, beta2: float, eps: float, form: str = "paper", corrections=None):
    """The step subtracted from θ in the chosen form (module doc); ``corrections``, when
    given, are the (1 − β1^t, 1 − β2^t) to use (a backend's own ``bias_corrections``)."""
    if form == "article":
        return lr * (m / (1.0 - beta1)) / (np.sqrt(v / (1.0 - beta2)) + eps)
    bc1, bc2 = corrections if corrections is not None else bias_corrections(t, beta1, beta2, np.asarray(m).dtype)
    if form == "epshat":
        return lr * np.sqrt(bc2) / bc1 * m / (np.sqrt(v) + eps)
    m_hat = m / bc1
    v_hat = v / bc2
    return lr * m_hat / (np.sqrt(v_hat) + eps)
