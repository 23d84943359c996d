"""One step of every optimizer from a fixed state with a synthetic gradient: the spec
(reference.optimizers), each backend's hand-written rule, torch.optim and optax compute
the same new parameters and state, except where a library cannot express the spec
(LIBRARY_GAPS), and there they differ exactly in the phase the gap names."""

import numpy as np
import pytest

from harness.engine.rows import ROWS
from reference import optimizers
from reference.optimizers import LIBRARY_GAPS, OPTIMIZERS
from reference.spec import PARAM_NAMES, Config, initial_params
from tests.conftest import BACKEND_NAMES, load_backend

SHAPES = {k: v.shape for k, v in initial_params(0).items()}
# Larger steps than the defaults where they are small, so a wrong update shows more.
LR = {
    "sgd": 0.1,
    "momentum": 0.1,
    "nesterov": 0.1,
    "adagrad": 0.1,
    "rmsprop": 0.01,
    "adadelta": 1.0,
    "adam": 0.01,
    "adamw": 0.01,
    "amsgrad": 0.01,
}
# Within 8 units of roundoff at the tensor's magnitude: the libraries round in another
# order (torch: addcdiv with √v/√bc2; optax: m̂/(√v̂ + ε), products by reciprocals).
K_STEP = 8


def cfg_for(name):
    # an optimizer with no entry above steps at 10× its default learning rate
    return Config(optimizer=name, lr=LR.get(name, 10 * OPTIMIZERS[name].defaults["lr"]))


def gradient(kind):
    """ordinary, zero (only the state moves the step), tiny (|g| far below ε's scale,
    where ε's placement decides the step), large."""
    rng = np.random.default_rng({"ordinary": 1, "zero": 2, "tiny": 3, "large": 4}[kind])
    scale = {"ordinary": 1.0, "zero": 0.0, "tiny": 1e-12, "large": 30.0}[kind]
    return {k: scale * rng.standard_normal(s) for k, s in SHAPES.items()}


def state(name, cfg, where):
    """'fresh': θ = 0 (so the new θ is exactly −Δ) and the initial slots, t = 0;
    'mid': θ and slots drawn, t = 10 (sums of squares positive, v_max ≥ v)."""
    if where == "fresh":
        params = {k: np.zeros(s) for k, s in SHAPES.items()}
        return params, optimizers.init_state(params, cfg)
    rng = np.random.default_rng(7)
    params = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    draw = {
        "buf": lambda s: rng.standard_normal(s),
        "m": lambda s: 0.1 * rng.standard_normal(s),
        "sum": lambda s: rng.uniform(0.5, 2.0, s),
        "v": lambda s: rng.uniform(1e-4, 1e-2, s),
        "u": lambda s: rng.uniform(1e-6, 1e-4, s),
        "vmax": lambda s: rng.uniform(1e-2, 2e-2, s),
        "mu_product": lambda s: np.full(s, 0.05),
        "gavg": lambda s: (
            0.003 * rng.standard_normal(s)
        ),  # ḡ² below v: a variance stays positive  # a function of t alone: one value per tensor in torch
        "step_size": lambda s: rng.uniform(1e-3, 1e-1, s),
    }
    # a slot with no entry above: a sum of squares (the record's non_negative) or a signed value
    for slot in OPTIMIZERS[name].state_slots:
        draw.setdefault(slot, draw["v"] if slot in OPTIMIZERS[name].non_negative else draw["buf"])
    slots = {slot: {k: draw[slot](s) for k, s in SHAPES.items()} for slot in OPTIMIZERS[name].state_slots}
    return params, optimizers.OptimizerState(slots=slots, t=10)


def spec_step(cfg, params, st, grads):
    new, st = optimizers.apply_update(optimizers.UPDATES[cfg.optimizer], params, grads, st, cfg)
    return {"params": new, **st.slots}


def backend_step(backend, cfg, params, st, grads):
    module = load_backend(backend)
    to = lambda tree: {k: module.to_backend(tree[k]) for k in PARAM_NAMES}  # noqa: E731
    backend_state = optimizers.OptimizerState(slots={s: to(tree) for s, tree in st.slots.items()}, t=st.t)
    new, backend_state = module.optimizer_step(to(params), to(grads), backend_state, cfg)
    numpy = lambda tree: {k: np.asarray(module.to_numpy(tree[k])) for k in PARAM_NAMES}  # noqa: E731
    return {"params": numpy(new), **{s: numpy(tree) for s, tree in backend_state.slots.items()}}


def torch_optim_step(cfg, params, st, grads):
    torch = pytest.importorskip("torch")
    from backends import torch_optim_row

    leaves = {k: torch.tensor(params[k], requires_grad=True) for k in PARAM_NAMES}
    opt = torch_optim_row.make_optimizer(cfg, list(leaves.values()))
    for k in PARAM_NAMES:
        leaves[k].grad = torch.tensor(grads[k])
        opt.state[leaves[k]] = torch_optim_row.state_entry(
            cfg, {s: torch.tensor(st.slots[s][k]) for s in st.slots}, st.t
        )
    opt.step()
    out = {"params": {k: leaves[k].detach().numpy().copy() for k in PARAM_NAMES}}
    for s in st.slots:  # a slot torch keeps as one number per tensor is that number everywhere
        out[s] = {
            k: np.broadcast_to(torch_optim_row.state_slots(cfg, opt.state[leaves[k]])[s].numpy(), SHAPES[k]).copy()
            for k in PARAM_NAMES
        }
    return out


def optax_step(cfg, params, st, grads, optimizer=None):
    pytest.importorskip("optax")
    load_backend("jax")  # x64 on
    from backends import optax_row

    optimizer = optimizer or optax_row.make_optimizer(cfg)
    opt_state = optax_row.fill_state(cfg, optimizer.init(params), st.slots, st.t)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    new = {k: np.asarray(params[k] + updates[k]) for k in PARAM_NAMES}
    slots = optax_row.state_slots(cfg, opt_state)  # (optax keeps no NAdam μ product: its known gap)
    return {"params": new, **{s: {k: np.asarray(slots[s][k]) for k in PARAM_NAMES} for s in st.slots if s in slots}}


def differing_entries(got, want, ulps=K_STEP):
    """The entries (params and slots) where ``got`` is off by more than ``ulps`` units
    of roundoff at each tensor's magnitude, with the worst ratio."""
    u = np.finfo(np.float64).eps
    out = {}
    for entry, tree in want.items():
        if entry not in got:  # a slot the library does not keep (its gap)
            continue
        for k in PARAM_NAMES:
            assert np.all(np.isfinite(tree[k])), (entry, k)  # a case that makes NaN would compare as equal
            scale = float(np.abs(tree[k]).max())
            gap = float(np.abs(np.asarray(got[entry][k]) - tree[k]).max())
            allowed = ulps * u * scale
            if gap > allowed:
                out[(entry, k)] = gap / allowed if allowed else np.inf
    return out


CASES = [(g, where) for where in ("fresh", "mid") for g in ("ordinary", "zero", "tiny", "large")]


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("backend", BACKEND_NAMES)
def test_hand_rule_equals_the_spec(backend, name):
    cfg = cfg_for(name)
    for kind, where in CASES:
        params, st = state(name, cfg, where)
        grads = gradient(kind)
        assert not differing_entries(
            backend_step(backend, cfg, params, st, grads), spec_step(cfg, params, st, grads)
        ), f"{backend} {name}: {kind} gradient from the {where} state"


LIBRARIES = {"torch.optim": torch_optim_step, "optax": optax_step}


SHIPPED = [  # each library with the optimizers it ships (torch.optim has no Lion, AdaBelief or Yogi)
    (library, name)
    for library in LIBRARIES
    for name in OPTIMIZERS
    if getattr(OPTIMIZERS[name], ROWS[library].library) is not None
]


@pytest.mark.parametrize("library,name", SHIPPED)
def test_library_step_equals_the_spec_or_differs_as_explained(library, name):
    cfg = cfg_for(name)
    gap = LIBRARY_GAPS.get((library, name))
    seen = {}
    for kind, where in CASES:
        params, st = state(name, cfg, where)
        grads = gradient(kind)
        seen[(kind, where)] = differing_entries(
            LIBRARIES[library](cfg, params, st, grads), spec_step(cfg, params, st, grads)
        )
    if gap is None or gap[0] == "drift":  # a drift gap is invisible in one step, by its nature
        assert not any(seen.values()), f"{library} {name}: {seen}"
        return
    # Exactly the explained difference: it shows, first in the phase the gap names in some
    # step, and in no step in an earlier phase (in the order a step computes them). A gap in
    # what a slot means (optax's Rprop and RMSprop-momentum buffers) may show in a zero
    # gradient's step first in Δ, which the slot's meaning decides.
    # A step's Δ is seen here through the new params (θ − Δ).
    phase = "params" if gap[0] == "update" else gap[0]
    assert any(seen.values()), f"{library} {name} was expected to differ in {phase}"
    order = tuple("params" if p == "update" else p for p in OPTIMIZERS[name].phases)
    firsts = {case: min((entry for entry, _ in d), key=order.index) for case, d in seen.items() if d}
    assert phase in firsts.values(), f"{library} {name}: never first in {phase}: {firsts}"
    for case, first in firsts.items():
        assert order.index(first) >= order.index(phase), f"{library} {name}, {case}: {first} before {phase}"


def test_epsilon_placement_shows_in_one_step():
    """The comparison is sharp enough to see ε inside the root: optax.rmsprop's own
    default (eps_in_sqrt=True) differs from the spec on the tiny gradient from a
    fresh state, by far more than rounding, and agrees on an ordinary one from mid-run."""
    optax = pytest.importorskip("optax")
    cfg = cfg_for("rmsprop")
    inside = optax.rmsprop(cfg.lr, decay=cfg.rho, eps=cfg.eps)  # eps_in_sqrt defaults to True
    params, st = state("rmsprop", cfg, "fresh")
    tiny = gradient("tiny")
    differing = differing_entries(optax_step(cfg, params, st, tiny, inside), spec_step(cfg, params, st, tiny))
    assert differing and max(differing.values()) > 1e6
    assert {entry for entry, _ in differing} == {"params"}  # v agrees: only the step moved


def test_adagrad_zero_gradient_from_an_empty_accumulator_is_a_zero_step():
    """s = 0 and g = 0: 0/(0 + ε) in the spec and torch; optax's where(s > 0, …, 0)."""
    cfg = cfg_for("adagrad")
    params, st = state("adagrad", cfg, "fresh")
    zero = gradient("zero")
    for step in (
        spec_step(cfg, params, st, zero),
        torch_optim_step(cfg, params, st, zero),
        optax_step(cfg, params, st, zero),
    ):
        for k in PARAM_NAMES:
            assert np.all(step["params"][k] == 0.0) and np.all(np.isfinite(step["sum"][k]))
