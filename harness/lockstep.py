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
from reference.optimizers import OPTIMIZERS, OptimizerState
from reference.spec import GRAD_SCALE, PARAM_NAMES, Config, flatten_params, unflatten_params, xor_data

# Every phase any optimizer has, in the order a step computes them; each optimizer's
# phases (``phases_for``) are a subsequence of it.
PHASES = ("forward", "loss", "grads", "buf", "sum", "m", "v", "vmax", "update", "u", "params")
K_LOCKSTEP = 8.0


def phases_for(cfg: Config) -> tuple:
    return ("forward", "loss", "grads", *OPTIMIZERS[cfg.optimizer].phases, "params")


@dataclass
class States:
    """A batch of optimizer states: the state before each recorded step (numpy arrays)."""

    params: dict           # each (E, r, c)
    slots: dict            # slot name -> mapping like params
    t: np.ndarray          # (E, 1, 1) steps taken before this one
    epochs: np.ndarray     # (E,) the 1-based epoch each step is


def states_from_history(cfg: Config, params: np.ndarray, slots: dict, epochs=None) -> States:
    """The states before epochs 1..E (or the given 1-based ``epochs``) from flat
    histories (params, and each optimizer slot) whose row e is the state after epoch e."""
    epochs = np.arange(1, params.shape[0]) if epochs is None else np.asarray(epochs)
    before = epochs - 1
    return States(
        params=unflatten_params(params[before], cfg.hidden),
        slots={s: unflatten_params(slots[s][before], cfg.hidden) for s in OPTIMIZERS[cfg.optimizer].state_slots},
        t=before.reshape(-1, 1, 1).astype(np.int64),
        epochs=epochs,
    )


# --- each row's phases ------------------------------------------------------------------------

def _hand_phases(module, cfg: Config, params, state, X, y) -> dict:
    """One step written out phase by phase with the backend's own functions."""
    forward = module.forward(params, X)
    loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
    update_rule = module.UPDATES[cfg.optimizer]
    t = state.t + 1
    slots = {s: {} for s in state.slots}
    update, new = {}, {}
    for k in PARAM_NAMES:
        update[k], new_slots = update_rule(grads[k], {s: state.slots[s][k] for s in state.slots}, params[k], t, cfg)
        new[k] = params[k] - update[k]
        for s, value in new_slots.items():
            slots[s][k] = value
    return {"forward": forward, "loss": {"loss": loss}, "grads": grads, **slots, "update": update, "params": new}


def _to_backend(module, states: States, dtype: str):
    params = {k: module.to_backend(states.params[k], dtype) for k in PARAM_NAMES}
    slots = {s: {k: module.to_backend(tree[k], dtype) for k in PARAM_NAMES} for s, tree in states.slots.items()}
    t = module.to_backend(states.t, np.int64)
    X, y = (module.to_backend(a) for a in xor_data(dtype))
    return params, OptimizerState(slots=slots, t=t), X, y


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


# torch.optim's per-parameter state entries for each slot
TORCH_STATE_KEYS = {"buf": "momentum_buffer", "sum": "sum", "m": "exp_avg", "vmax": "max_exp_avg_sq"}
TORCH_V_KEY = {"rmsprop": "square_avg", "adadelta": "square_avg"}  # else exp_avg_sq
TORCH_U_KEY = "acc_delta"


def torch_state_key(cfg: Config, slot: str) -> str:
    if slot == "v":
        return TORCH_V_KEY.get(cfg.optimizer, "exp_avg_sq")
    return TORCH_U_KEY if slot == "u" else TORCH_STATE_KEYS[slot]


def torch_optim_phases(cfg: Config, states: States) -> dict:
    """The torch row's forward pass and gradients, then the torch.optim optimizer
    stepping one flat parameter per recorded epoch, each given the numpy row's step
    count and state. torch.optim does not expose its step, so the update phase is not
    observable; its state updates in place, into views of the batch read back here."""
    module = backends.load("torch")  # first: a missing torch is BackendUnavailable, not a crash
    import torch

    params, state, X, y = _to_backend(module, states, cfg.dtype)
    with torch.no_grad():
        forward = module.forward(params, X)
    loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
    flat = lambda tree: torch.from_numpy(np.ascontiguousarray(flatten_params(  # noqa: E731
        {k: module.to_numpy(tree[k]) for k in PARAM_NAMES})))
    theta, g = flat(params).clone(), flat(grads)
    slots = {s: flat(tree).clone() for s, tree in state.slots.items()}
    leaves = list(theta.unbind(0))  # views of theta: the optimizer's in-place steps land there
    optimizer = module.torch_optimizer(cfg, leaves)
    for i, leaf in enumerate(leaves):
        leaf.grad = g[i]
        entry = {torch_state_key(cfg, s): slots[s][i] for s in slots}
        if cfg.optimizer not in ("sgd", "momentum", "nesterov"):
            entry["step"] = torch.tensor(float(states.t[i, 0, 0]))
        optimizer.state[leaf] = entry
    optimizer.step()
    unflat = lambda x: unflatten_params(x.numpy(), cfg.hidden)  # noqa: E731
    tree = _numpy_tree(module, {"forward": forward, "loss": {"loss": loss}, "grads": grads})
    return tree | {s: unflat(x) for s, x in slots.items()} | {"params": unflat(theta)}


# optax state fields -> the spec's slot names ("count" is t)
OPTAX_FIELDS = {"trace": "buf", "sum_of_squares": "sum", "mu": "m", "nu": "v", "e_g": "v", "e_x": "u", "nu_max": "vmax"}


def fill_optax_state(node, slots: dict, count, batch: int | None = None):
    """optax's state tree with each known field replaced by the spec's slot (or step
    count); any other leaf broadcast along the batch axis when there is one."""
    import jax
    import jax.numpy as jnp

    fields = getattr(node, "_fields", None)
    if fields is not None:
        values = {}
        for f in fields:
            if f == "count":
                values[f] = jnp.asarray(count).astype(getattr(node, f).dtype)
            elif f in OPTAX_FIELDS:
                values[f] = slots[OPTAX_FIELDS[f]]
            else:
                values[f] = fill_optax_state(getattr(node, f), slots, count, batch)
        return node._replace(**values)
    if isinstance(node, tuple):
        return tuple(fill_optax_state(n, slots, count, batch) for n in node)
    if batch is None:
        return node
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (batch, *jnp.shape(leaf))), node)


def optax_slots(node) -> dict:
    """The spec's slots read back from an optax state tree."""
    found = {}
    fields = getattr(node, "_fields", None)
    if fields is not None:
        for f in fields:
            if f in OPTAX_FIELDS:
                found[OPTAX_FIELDS[f]] = getattr(node, f)
            else:
                found |= optax_slots(getattr(node, f))
    elif isinstance(node, tuple):
        for n in node:
            found |= optax_slots(n)
    return found


def optax_phases(cfg: Config, states: States) -> dict:
    """The JAX row's forward pass and gradients, then the optax optimizer's update
    vmapped over the recorded epochs, each given the numpy row's step count and state."""
    module = backends.load("jax")  # first: a missing framework is BackendUnavailable, not a crash
    import jax
    import jax.numpy as jnp

    try:
        import optax
    except ImportError as exc:
        raise backends.BackendUnavailable(f"optax row unavailable: cannot import optax ({exc})") from exc
    params, state, X, y = _to_backend(module, states, cfg.dtype)
    optimizer = module.optax_optimizer(cfg)
    template = optimizer.init({k: params[k][0] for k in PARAM_NAMES})
    count = jnp.asarray(states.t.ravel())
    batch = len(states.epochs)

    @jax.jit
    def phases(params, slots, count):
        forward = module.forward(params, X)
        loss, grads = module.loss_and_grads(params, X, y, cfg.grad)
        opt_state = fill_optax_state(template, slots, count, batch)
        updates, new_state = jax.vmap(optimizer.update)(grads, opt_state, params)
        new_slots = {s: x for s, x in optax_slots(new_state).items() if s in slots}
        return {"forward": forward, "loss": {"loss": loss}, "grads": grads, **new_slots,
                "update": {k: -updates[k] for k in PARAM_NAMES}, "params": optax.apply_updates(params, updates)}

    return _numpy_tree(module, phases(params, state.slots, count))


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
    e |= _optimizer_scales(cfg, ref, states, e["grads"], u)
    for k in PARAM_NAMES:
        e["params"][k] = e["update"][k] + np.abs(f64(ref["params"][k]))
        if cfg.optimizer == "adamw":  # torch.optim rounds θ·(1 − lr·λ) and its factor first
            e["params"][k] = e["params"][k] + np.abs(f64(states.params[k]))
    return e


def _ema_scale(beta, old, new_term, e_new_term, value):
    """Bound of β·old + (1 − β)·term, old exact (a recorded state), term off by
    e_new_term: the term's error, and a rounding of each product and of the sum."""
    return (1 - beta) * e_new_term + 2 * (beta * np.abs(old) + (1 - beta) * np.abs(new_term)) + np.abs(value)


def _sqrt_scale(x, e_x, u):
    """Bound of √x given x's bound (first order; near x = 0 the root's slope is capped
    where x's own error leaves it undetermined)."""
    root = np.sqrt(np.maximum(x, 0))
    return e_x / (2 * np.maximum(root, np.sqrt(u * e_x) + 1e-300)) + root


def _ratio_scale(pre, num, e_num, den_arg, e_den_arg, eps, rel_pre, u):
    """Bound of Δ = pre·num/(√den_arg + ε) (pre a number with relative error rel_pre)."""
    d = np.sqrt(den_arg) + eps
    delta = pre * np.abs(num) / d
    e_s = _sqrt_scale(den_arg, e_den_arg, u)
    return pre * (e_num / d + np.abs(num) * e_s / d**2) + (2 + rel_pre) * delta


def _optimizer_scales(cfg: Config, ref: dict, states: States, e_grads: dict, u: float) -> dict:
    """Bounds of the optimizer's slots and of the step Δ, per tensor."""
    f64 = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
    name = cfg.optimizer
    out = {phase: {} for phase in (*OPTIMIZERS[name].state_slots, "update", "params")}
    t = f64(states.t) + 1
    for k in PARAM_NAMES:
        g, e_g = f64(ref["grads"][k]), e_grads[k]
        old = {s: f64(states.slots[s][k]) for s in states.slots}
        new = {s: f64(ref[s][k]) for s in states.slots}
        e_sq = 2 * np.abs(g) * e_g + g * g  # of g²
        e = {}
        if name == "sgd":
            e["update"] = cfg.lr * e_g + np.abs(cfg.lr * g)
        elif name in ("momentum", "nesterov"):
            e["buf"] = e_g + 2 * cfg.momentum * np.abs(old["buf"]) + np.abs(new["buf"])
            direction, e_direction = new["buf"], e["buf"]
            if name == "nesterov":
                direction = g + cfg.momentum * new["buf"]
                e_direction = e_g + cfg.momentum * e["buf"] + cfg.momentum * np.abs(new["buf"]) + np.abs(direction)
            e["update"] = cfg.lr * e_direction + np.abs(cfg.lr * direction)
        elif name == "adagrad":
            e["sum"] = e_sq + new["sum"]
            e["update"] = _ratio_scale(cfg.lr, g, e_g, new["sum"], e["sum"], cfg.eps, 0.0, u)
        elif name == "rmsprop":
            e["v"] = _ema_scale(cfg.rho, old["v"], g * g, e_sq, new["v"])
            e["update"] = _ratio_scale(cfg.lr, g, e_g, new["v"], e["v"], cfg.eps, 0.0, u)
        elif name == "adadelta":
            e["v"] = _ema_scale(cfg.rho, old["v"], g * g, e_sq, new["v"])
            a, b = old["u"] + cfg.eps, new["v"] + cfg.eps
            ratio = np.sqrt(a) / np.sqrt(b)
            e_ratio = ratio * (0.5 + (e["v"] + b) / (2 * b) + 3)  # a rounded once; b off by e_v, rounded; 3 ops
            d = ratio * g
            e_d = ratio * e_g + np.abs(g) * e_ratio + np.abs(d)
            e["u"] = _ema_scale(cfg.rho, old["u"], d * d, 2 * np.abs(d) * e_d + d * d, new["u"])
            e["update"] = cfg.lr * e_d + np.abs(cfg.lr * d)
        else:  # the Adam family
            e |= _adam_scales(cfg, g, e_g, old, new, t, u)
            if name == "adamw":
                decay = cfg.lr * cfg.weight_decay * np.abs(f64(states.params[k]))
                e["update"] = e["update"] + 2 * decay + np.abs(f64(ref["update"][k]))
        for phase, value in e.items():
            out[phase][k] = value
    return out


def _adam_scales(cfg: Config, g, e_g, old: dict, new: dict, t, u) -> dict:
    bc1, bc2 = 1 - cfg.beta1**t, 1 - cfg.beta2**t
    # β^t formed in the dtype carries ~t·u/2 relative error from rounding β itself
    e_bc1, e_bc2 = t * cfg.beta1**t / 2 + 1, t * cfg.beta2**t / 2 + 1
    # Every form is  Δ = pre · (m/a1) / (√(v/a2) + ε)  (reference.adam), with
    # paper: a = the bias corrections; seed: the constants 1 − β; epshat: a2 = 1 and
    # pre = lr·√bc2. (relative errors of a1, a2 and pre, in units of u)
    form = cfg.adam if cfg.optimizer == "adam" else "paper"
    if form == "seed":
        a1, a2, pre, rel_a1, rel_a2, rel_pre = 1 - cfg.beta1, 1 - cfg.beta2, cfg.lr, 1.0, 1.0, 0.0
    elif form == "epshat":
        a1, a2, pre = bc1, 1.0, cfg.lr * np.sqrt(bc2)
        rel_a1, rel_a2, rel_pre = e_bc1 / bc1, 0.0, e_bc2 / (2 * bc2) + 1
    else:
        a1, a2, pre, rel_a1, rel_a2, rel_pre = bc1, bc2, cfg.lr, e_bc1 / bc1, e_bc2 / bc2, 0.0
    e = {"m": _ema_scale(cfg.beta1, old["m"], g, e_g, new["m"]),
         "v": _ema_scale(cfg.beta2, old["v"], g * g, 2 * np.abs(g) * e_g, new["v"])}
    v_used, e_v_used = new["v"], e["v"]
    if cfg.optimizer == "amsgrad":  # the max is exact; it is off by the v it picks
        e["vmax"] = e["v"]
        v_used = new["vmax"]
    m_hat = new["m"] / a1
    e_mh = e["m"] / a1 + np.abs(m_hat) * (1 + rel_a1)
    v_hat = v_used / a2
    e_vh = e_v_used / a2 + v_hat * (1 + rel_a2)
    e["update"] = _ratio_scale(pre, m_hat, e_mh, v_hat, e_vh, cfg.eps, rel_pre, u)
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
            with np.errstate(over="ignore"):  # a gap from exactly 0 is infinitely many ULPs of 0
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
