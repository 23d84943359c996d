"""Lockstep: every row takes one step from the *numpy row's* recorded state, at every
epoch at once, and each phase of that step is compared.

Because every row starts each step from the same state, the error does not compound:
it measures the implementation, not the chaos of training. The steps of all recorded
epochs run as one batch along a leading axis (the backends' functions broadcast), so
checking 20000 steps costs about one training run.

How big may a phase's error be? Each phase gets a first-order rounding bound e (in
units of u, the dtype's machine epsilon) propagated through the same formulas from the
reference's own values (``rounding_scales``): a product adds the relative errors of its
factors, a sum of n terms may be off by n·u·Σ|terms|, σ'(z) = a(1 − a) inherits a's
error times |1 − 2a|, the error a − y inherits a's error whatever its own size. An
error is then reported in "ULPs at the scale of its terms", |row − numpy| / (u·e): a
gradient that is small because its terms cancel is not held to ULPs of itself. Two
correct rows each stay within ~u·e of the truth; K_LOCKSTEP allows for the bound's
constants (measured in tests/test_lockstep.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import backends
from harness.agreement import elementwise_gap
from reference.adam import AdamState
from reference.spec import GRAD_SCALE, PARAM_NAMES, Config, flatten_params, unflatten_params, xor_data

PHASES = ("forward", "loss", "grads", "m", "v", "update", "params")
K_LOCKSTEP = 8.0


@dataclass
class States:
    """A batch of Adam states: the state before each recorded step (numpy arrays)."""

    params: dict           # each (E, r, c)
    m: dict
    v: dict
    t: np.ndarray          # (E, 1, 1) steps taken before this one
    epochs: np.ndarray     # (E,) the 1-based epoch each step is


def states_from_history(cfg: Config, params: np.ndarray, m: np.ndarray, v: np.ndarray, epochs=None) -> States:
    """The states before epochs 1..E (or the given 1-based ``epochs``) from flat
    histories whose row e is the state after epoch e."""
    epochs = np.arange(1, params.shape[0]) if epochs is None else np.asarray(epochs)
    before = epochs - 1
    return States(
        params=unflatten_params(params[before], cfg.hidden),
        m=unflatten_params(m[before], cfg.hidden),
        v=unflatten_params(v[before], cfg.hidden),
        t=before.reshape(-1, 1, 1).astype(np.int64),
        epochs=epochs,
    )


# --- each row's phases ------------------------------------------------------------------------

def _hand_phases(module, cfg: Config, params, state, X, y) -> dict:
    """One step written out phase by phase with the backend's own functions."""
    forward = module.forward(params, X)
    loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
    t = state.t + 1
    m, v, update, new = {}, {}, {}, {}
    for k in PARAM_NAMES:
        m[k], v[k] = module.adam_moments(grads[k], state.m[k], state.v[k], cfg)
        update[k] = module.adam_delta(m[k], v[k], t, cfg)
        new[k] = params[k] - update[k]
    return {"forward": forward, "loss": {"loss": loss}, "grads": grads, "m": m, "v": v, "update": update, "params": new}


def _to_backend(module, states: States, dtype: str):
    params = {k: module.to_backend(states.params[k], dtype) for k in PARAM_NAMES}
    m = {k: module.to_backend(states.m[k], dtype) for k in PARAM_NAMES}
    v = {k: module.to_backend(states.v[k], dtype) for k in PARAM_NAMES}
    t = module.to_backend(states.t, np.int64)
    X, y = (module.to_backend(a) for a in xor_data(dtype))
    return params, AdamState(m=m, v=v, t=t), X, y


def _numpy_tree(module, tree) -> dict:
    return {phase: {k: np.asarray(module.to_numpy(x)) for k, x in parts.items()} for phase, parts in tree.items()}


def hand_row_phases(backend: str, cfg: Config, states: States) -> dict:
    module = backends.load(backend)
    params, state, X, y = _to_backend(module, states, cfg.dtype)
    if backend == "torch":
        import torch

        with torch.no_grad():
            return _numpy_tree(module, _hand_phases(module, cfg, params, state, X, y))
    if backend == "jax":
        import jax

        step = jax.jit(lambda p, s, X_, y_: _hand_phases(module, cfg, p, s, X_, y_))
        return _numpy_tree(module, step(params, state, X, y))
    return _numpy_tree(module, _hand_phases(module, cfg, params, state, X, y))


def torch_optim_phases(cfg: Config, states: States) -> dict:
    """The torch row's forward pass and gradients, then ``torch.optim.Adam`` stepping one
    flat parameter per recorded epoch, each given the numpy row's step count, m and v.
    torch.optim does not expose its step, so the update phase is not observable."""
    module = backends.load("torch")  # first: a missing torch is BackendUnavailable, not a crash
    import torch

    params, state, X, y = _to_backend(module, states, cfg.dtype)
    with torch.no_grad():
        forward = module.forward(params, X)
    loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
    flat = lambda tree: torch.from_numpy(np.ascontiguousarray(flatten_params(  # noqa: E731
        {k: module.to_numpy(tree[k]) for k in PARAM_NAMES})))
    theta, m, v, g = flat(params).clone(), flat(state.m).clone(), flat(state.v).clone(), flat(grads)
    leaves = list(theta.unbind(0))  # views of theta: the optimizer's in-place steps land there
    optimizer = torch.optim.Adam(leaves, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    for i, leaf in enumerate(leaves):
        leaf.grad = g[i]
        optimizer.state[leaf] = {"step": torch.tensor(float(states.t[i, 0, 0])), "exp_avg": m[i], "exp_avg_sq": v[i]}
    optimizer.step()
    unflat = lambda x: unflatten_params(x.numpy(), cfg.hidden)  # noqa: E731
    tree = _numpy_tree(module, {"forward": forward, "loss": {"loss": loss}, "grads": grads})
    return tree | {"m": unflat(m), "v": unflat(v), "params": unflat(theta)}


def optax_phases(cfg: Config, states: States) -> dict:
    """The JAX row's forward pass and gradients, then ``optax.adam``'s update vmapped over
    the recorded epochs, each given the numpy row's step count, m and v."""
    module = backends.load("jax")  # first: a missing framework is BackendUnavailable, not a crash
    import jax
    import jax.numpy as jnp

    try:
        import optax
    except ImportError as exc:
        raise backends.BackendUnavailable(f"optax row unavailable: cannot import optax ({exc})") from exc
    params, state, X, y = _to_backend(module, states, cfg.dtype)
    optimizer = optax.adam(cfg.lr, b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)
    template = optimizer.init({k: params[k][0] for k in PARAM_NAMES})
    count = jnp.asarray(states.t.ravel(), dtype=template[0].count.dtype)

    @jax.jit
    def phases(params, m, v, count):
        forward = module.forward(params, X)
        loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
        adam_state = template[0]._replace(count=count, mu=m, nu=v)
        updates, new_state = jax.vmap(optimizer.update)(grads, (adam_state, *template[1:]), params)
        return {"forward": forward, "loss": {"loss": loss}, "grads": grads,
                "m": new_state[0].mu, "v": new_state[0].nu,
                "update": {k: -updates[k] for k in PARAM_NAMES}, "params": optax.apply_updates(params, updates)}

    return _numpy_tree(module, phases(params, state.m, state.v, count))


def row_phases(name: str, cfg: Config, states: States) -> dict:
    if name == "torch.optim":
        return torch_optim_phases(cfg, states)
    if name == "optax":
        return optax_phases(cfg, states)
    from harness.rows import ROWS

    return hand_row_phases(ROWS[name].backend, cfg, states)


# --- rounding bounds -------------------------------------------------------------------------

def rounding_scales(ref: dict, states: States, cfg: Config) -> dict:
    """First-order rounding bound e of every phase value, in units of u (module doc)."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    X, y = xor_data("float64")
    n, hidden = X.shape[0], cfg.hidden
    W1, b1, W2, b2 = (np.abs(f64(states.params[k])) for k in PARAM_NAMES)
    Z1, A1, Z2, A2 = (f64(ref["forward"][k]) for k in ("Z1", "A1", "Z2", "A2"))
    aX, tr = np.abs(X), lambda a: np.swapaxes(a, -1, -2)  # noqa: E731

    e = {"forward": {}, "loss": {}, "grads": {}}
    e_Z1 = 3 * (aX @ W1 + b1)
    e_A1 = A1 * (1 - A1) * e_Z1 + 2 * A1
    e_Z2 = e_A1 @ W2 + (hidden + 1) * (np.abs(A1) @ W2 + b2)
    e_A2 = A2 * (1 - A2) * e_Z2 + 2 * A2
    e["forward"] = {"Z1": e_Z1, "A1": e_A1, "Z2": e_Z2, "A2": e_A2}
    err = A2 - y
    e_err = e_A2 + np.abs(err)
    e["loss"]["loss"] = np.mean(2 * np.abs(err) * e_err, axis=(-2, -1)) + (n + 1) * np.mean(err**2, axis=(-2, -1))

    s2, s1 = A2 * (1 - A2), A1 * (1 - A1)
    e_s2 = np.abs(1 - 2 * A2) * e_A2 + 3 * s2
    e_s1 = np.abs(1 - 2 * A1) * e_A1 + 3 * s1
    out_scale = 2.0 / n * GRAD_SCALE[cfg.grad]
    dZ2 = out_scale * err * s2
    e_dZ2 = out_scale * (e_err * s2 + np.abs(err) * e_s2) + 2 * np.abs(dZ2)
    dA1 = dZ2 @ tr(f64(states.params["W2"]))
    e_dA1 = e_dZ2 @ tr(W2) + np.abs(dA1)
    dZ1 = dA1 * s1
    e_dZ1 = e_dA1 * s1 + np.abs(dA1) * e_s1 + np.abs(dZ1)
    e["grads"] = {
        "W1": tr(aX) @ e_dZ1 + (n + 1) * (tr(aX) @ np.abs(dZ1)),
        "b1": e_dZ1.sum(axis=-2, keepdims=True) + n * np.abs(dZ1).sum(axis=-2, keepdims=True),
        "W2": tr(e_A1) @ np.abs(dZ2) + tr(np.abs(A1)) @ e_dZ2 + (n + 1) * (tr(np.abs(A1)) @ np.abs(dZ2)),
        "b2": e_dZ2.sum(axis=-2, keepdims=True) + n * np.abs(dZ2).sum(axis=-2, keepdims=True),
    }

    u = float(np.finfo(cfg.dtype).eps)
    t = f64(states.t) + 1
    bc1, bc2 = 1 - cfg.beta1**t, 1 - cfg.beta2**t
    # β^t formed in the dtype carries ~t·u/2 relative error from rounding β itself
    e_bc1, e_bc2 = t * cfg.beta1**t / 2 + 1, t * cfg.beta2**t / 2 + 1
    # Every form is  Δ = pre · (m/a1) / (√(v/a2) + ε)  (reference.adam), with
    # paper: a = the bias corrections; seed: the constants 1 − β; epshat: a2 = 1 and
    # pre = lr·√bc2. (relative errors of a1, a2 and pre, in units of u)
    if cfg.adam == "seed":
        a1, a2, pre, rel_a1, rel_a2, rel_pre = 1 - cfg.beta1, 1 - cfg.beta2, cfg.lr, 1.0, 1.0, 0.0
    elif cfg.adam == "epshat":
        a1, a2, pre = bc1, 1.0, cfg.lr * np.sqrt(bc2)
        rel_a1, rel_a2, rel_pre = e_bc1 / bc1, 0.0, e_bc2 / (2 * bc2) + 1
    else:
        a1, a2, pre, rel_a1, rel_a2, rel_pre = bc1, bc2, cfg.lr, e_bc1 / bc1, e_bc2 / bc2, 0.0
    for name in ("m", "v", "update", "params"):
        e[name] = {}
    for k in PARAM_NAMES:
        g, e_g = f64(ref["grads"][k]), e["grads"][k]
        m0, v0 = np.abs(f64(states.m[k])), f64(states.v[k])
        m, v = f64(ref["m"][k]), f64(ref["v"][k])
        e_m = (1 - cfg.beta1) * e_g + 2 * (cfg.beta1 * m0 + (1 - cfg.beta1) * np.abs(g)) + np.abs(m)
        e_v = (1 - cfg.beta2) * 2 * np.abs(g) * e_g + 2 * (cfg.beta2 * v0 + (1 - cfg.beta2) * g * g) + v
        m_hat, v_hat = m / a1, v / a2
        e_mh = e_m / a1 + np.abs(m_hat) * (1 + rel_a1)
        e_vh = e_v / a2 + v_hat * (1 + rel_a2)
        s = np.sqrt(v_hat)
        e_s = e_vh / (2 * np.maximum(s, np.sqrt(u * e_vh) + 1e-300)) + s
        d = s + cfg.eps
        delta = pre * np.abs(m_hat) / d
        e_delta = pre * (e_mh / d + np.abs(m_hat) * e_s / d**2) + (2 + rel_pre) * delta
        e["m"][k], e["v"][k], e["update"][k] = e_m, e_v, e_delta
        e["params"][k] = e_delta + np.abs(f64(ref["params"][k]))
    return e


# --- comparison --------------------------------------------------------------------------------

@dataclass
class PhaseError:
    phase: str
    max_ulp: float        # |row − numpy| / (u·e), worst element
    max_raw_ulp: float    # |row − numpy| / spacing(|numpy|), worst element
    epoch: int            # where the worst (scaled) error is
    tensor: str
    index: tuple
    reference: float
    value: float
    passed: bool
    first: dict | None = None  # the earliest epoch over K_LOCKSTEP: epoch, tensor, index, values, ulp

    def to_dict(self) -> dict:
        return {**self.__dict__, "index": list(self.index)}


def phase_errors(ref: dict, other: dict, scales: dict, states: States, dtype: str) -> dict:
    """Per phase: the worst error at the scale of its terms and where, and the earliest
    epoch where it exceeds K_LOCKSTEP."""
    u = float(np.finfo(dtype).eps)
    out = {}
    for phase in PHASES:
        if phase not in other:
            continue
        worst, first = None, None
        for k, want in ref[phase].items():
            want64, got64 = np.asarray(want, np.float64), np.asarray(other[phase][k], np.float64)
            gap = elementwise_gap(want64, got64)
            bound = u * scales[phase][k]
            scaled = np.where(bound > 0, gap / np.where(bound > 0, bound, 1.0), np.where(gap > 0, np.inf, 0.0))
            spacing = np.spacing(np.abs(np.asarray(want, dtype))).astype(np.float64)
            raw = gap / np.where(spacing > 0, spacing, np.finfo(dtype).smallest_subnormal)
            position = np.unravel_index(int(np.argmax(scaled)), scaled.shape)
            candidate = (float(scaled.max()), float(raw.max()), k, position, float(want64[position]), float(got64[position]))
            if worst is None or candidate[:2] > worst[:2]:
                worst = candidate
            over = (scaled > K_LOCKSTEP).reshape(scaled.shape[0], -1).any(axis=1)
            if over.any():
                e = int(np.argmax(over))
                if first is None or e < first["_row"]:
                    element = np.unravel_index(int(np.argmax(scaled[e])), scaled.shape[1:])
                    first = {"_row": e, "epoch": int(states.epochs[e]), "tensor": k, "index": [int(i) for i in element],
                             "reference": float(want64[e][element]), "value": float(got64[e][element]),
                             "ulp": float(scaled[e][element]), "raw_ulp": float(raw[e][element])}
        scaled_max, raw_max, k, position, reference, value = worst
        if first is not None:
            del first["_row"]
        out[phase] = PhaseError(
            phase=phase, max_ulp=scaled_max, max_raw_ulp=raw_max, epoch=int(states.epochs[position[0]]),
            tensor=k, index=tuple(int(i) for i in position[1:]), reference=reference, value=value,
            passed=bool(scaled_max <= K_LOCKSTEP), first=first,
        )
    return out


def first_failing(errors: dict) -> PhaseError | None:
    """The first phase, in the order a step computes them, whose error is too large;
    among its failures, the earliest epoch is the one reported by ``phase_errors``."""
    for phase in PHASES:
        if phase in errors and not errors[phase].passed:
            return errors[phase]
    return None


def lockstep_row(name: str, cfg: Config, states: States, faults: dict | None = None) -> dict:
    """One row's lockstep against numpy (each with its planted fault, if any): per phase
    errors, and per epoch the largest |Δθ| of the new params."""
    from harness.faults import injected
    from harness.rows import ROWS

    faults = faults or {}
    started = time.perf_counter()
    with injected("numpy", faults.get("numpy")):
        ref = hand_row_phases("numpy", cfg, states)
    scales = rounding_scales(ref, states, cfg)
    with injected(ROWS[name].backend, faults.get(name)):
        other = row_phases(name, cfg, states)
    errors = phase_errors(ref, other, scales, states, cfg.dtype)
    params_gap = np.max([elementwise_gap(np.asarray(ref["params"][k], np.float64),
                                         np.asarray(other["params"][k], np.float64)).reshape(len(states.epochs), -1).max(axis=1)
                         for k in PARAM_NAMES], axis=0)
    return {"errors": errors, "params_gap": params_gap, "seconds": time.perf_counter() - started}
