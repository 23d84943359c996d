"""An outside program: the optimizers after Adam written from the libraries' documented
algorithms (torch.optim's docs pages for NAdam, RAdam, Adamax and Rprop; optax's for Lion,
AdaBelief and Yogi), sharing no code with the harness. It reads the initial state that
``compare.py init --format json`` writes and writes the trajectory CSV that
``compare.py --external NAME=FILE`` reads:

    python tests/outside_optimizers.py init.json trajectory.csv

Each parameter matrix is its own array and each optimizer's state a dict per matrix, as
a user's script would keep them; the network is the documented 2-H-1 sigmoid one.
"""

import json
import math
import sys

import numpy as np


def gradients(W1, b1, W2, b2, X, y):
    A1 = 1.0 / (1.0 + np.exp(-(X @ W1 + b1)))
    A2 = 1.0 / (1.0 + np.exp(-(A1 @ W2 + b2)))
    err = A2 - y
    d2 = (2.0 / X.shape[0]) * err * A2 * (1.0 - A2)
    d1 = (d2 @ W2.T) * A1 * (1.0 - A1)
    return float(np.mean(err**2)), [X.T @ d1, d1.sum(axis=0, keepdims=True), A1.T @ d2, d2.sum(axis=0, keepdims=True)]


def nadam(p, g, s, t, c):  # torch.optim.NAdam's algorithm box
    mu = c["beta1"] * (1 - 0.5 * 0.96 ** (t * c["momentum_decay"]))
    mu_next = c["beta1"] * (1 - 0.5 * 0.96 ** ((t + 1) * c["momentum_decay"]))
    s["prod"] = s.get("prod", 1.0) * mu
    s["m"] = c["beta1"] * s.get("m", 0.0) + (1 - c["beta1"]) * g
    s["v"] = c["beta2"] * s.get("v", 0.0) + (1 - c["beta2"]) * g * g
    v_hat = s["v"] / (1 - c["beta2"] ** t)
    m_hat = mu_next * s["m"] / (1 - s["prod"] * mu_next) + (1 - mu) * g / (1 - s["prod"])
    return p - c["lr"] * m_hat / (np.sqrt(v_hat) + c["eps"])


def radam(p, g, s, t, c):  # torch.optim.RAdam's algorithm box
    s["m"] = c["beta1"] * s.get("m", 0.0) + (1 - c["beta1"]) * g
    s["v"] = c["beta2"] * s.get("v", 0.0) + (1 - c["beta2"]) * g * g
    m_hat = s["m"] / (1 - c["beta1"] ** t)
    rho_inf = 2 / (1 - c["beta2"]) - 1
    rho = rho_inf - 2 * t * c["beta2"] ** t / (1 - c["beta2"] ** t)
    if rho <= 5:
        return p - c["lr"] * m_hat
    l_t = math.sqrt(1 - c["beta2"] ** t) / (np.sqrt(s["v"]) + c["eps"])
    r_t = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
    return p - c["lr"] * m_hat * l_t * r_t


def adamax(p, g, s, t, c):  # torch.optim.Adamax's algorithm box
    s["m"] = c["beta1"] * s.get("m", 0.0) + (1 - c["beta1"]) * g
    s["u"] = np.maximum(c["beta2"] * s.get("u", 0.0), np.abs(g) + c["eps"])
    return p - c["lr"] * s["m"] / ((1 - c["beta1"] ** t) * s["u"])


def rprop(p, g, s, t, c):  # torch.optim.Rprop's algorithm box (iRprop−)
    step = s.get("step", np.full_like(p, c["lr"]))
    prev = s.get("prev", np.zeros_like(p))
    product = g * prev
    step = np.where(product > 0, np.minimum(step * c["eta_plus"], c["step_size_max"]), step)
    step = np.where(product < 0, np.maximum(step * c["eta_minus"], c["step_size_min"]), step)
    g = np.where(product < 0, 0.0, g)
    s["step"], s["prev"] = step, g
    return p - np.sign(g) * step


def lion(p, g, s, t, c):  # optax.lion's documentation
    m = s.get("m", 0.0)
    update = np.sign(c["beta1"] * m + (1 - c["beta1"]) * g) + c["weight_decay"] * p
    s["m"] = c["beta2"] * m + (1 - c["beta2"]) * g
    return p - c["lr"] * update


def adabelief(p, g, s, t, c):  # optax.adabelief's documentation
    s["m"] = c["beta1"] * s.get("m", 0.0) + (1 - c["beta1"]) * g
    s["s"] = c["beta2"] * s.get("s", 0.0) + (1 - c["beta2"]) * (g - s["m"]) ** 2 + c["eps_root"]
    m_hat = s["m"] / (1 - c["beta1"] ** t)
    s_hat = s["s"] / (1 - c["beta2"] ** t)
    return p - c["lr"] * m_hat / (np.sqrt(s_hat) + c["eps"])


def yogi(p, g, s, t, c):  # optax.yogi's documentation (moments start at 1e-6)
    s["m"] = c["beta1"] * s.get("m", 1e-6) + (1 - c["beta1"]) * g
    v = s.get("v", 1e-6)
    s["v"] = v - (1 - c["beta2"]) * np.sign(v - g * g) * g * g
    m_hat = s["m"] / (1 - c["beta1"] ** t)
    v_hat = s["v"] / (1 - c["beta2"] ** t)
    return p - c["lr"] * m_hat / (np.sqrt(v_hat) + c["eps"])


RULES = {f.__name__: f for f in (nadam, radam, adamax, rprop, lion, adabelief, yogi)}


def main(init_file, out_file):
    with open(init_file) as f:
        init = json.load(f)
    c = init["config"]
    X, y = np.array(init["X"], dtype=float), np.array(init["y"], dtype=float).reshape(-1, 1)
    params = [np.array(init["params"][k], dtype=float) for k in ("W1", "b1", "W2", "b2")]
    states = [{} for _ in params]
    rule = RULES[c["optimizer"]]
    lines = []
    for t in range(1, c["epochs"] + 1):
        loss, grads = gradients(*params, X, y)
        params = [rule(p, g, s, t, c) for p, g, s in zip(params, grads, states, strict=True)]
        lines.append(",".join(repr(float(x)) for x in [loss, *np.concatenate([p.ravel() for p in params])]))
    with open(out_file, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
