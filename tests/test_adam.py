"""One Adam step from the same state, with the same gradient, equals torch.optim.Adam's
and optax.adam's: every backend's hand-written step, every state entry, every step."""
import numpy as np
import pytest

from reference.spec import PARAM_NAMES, Config, initial_params
from tests.conftest import BACKEND_NAMES, load_backend, ulp_tolerance

CFG = Config(lr=0.01)  # a larger step than the default, so a wrong update shows more


def gradient_sequence():
    """Synthetic gradients chosen where Adam's details show: ordinary, zero (the update
    runs on momentum alone), tiny (|g| near ε, where ε's placement matters), large."""
    rng = np.random.default_rng(11)
    shapes = {k: v.shape for k, v in initial_params(0).items()}
    normal = lambda scale: {k: scale * rng.standard_normal(s) for k, s in shapes.items()}  # noqa: E731
    return [normal(1.0), normal(0.1), {k: np.zeros(s) for k, s in shapes.items()},
            normal(1e-8), normal(1e-10), normal(30.0), normal(0.5)]


def library_torch_steps(params0, grads_seq):
    torch = pytest.importorskip("torch")
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in params0.items()}
    opt = torch.optim.Adam(leaves.values(), lr=CFG.lr, betas=(CFG.beta1, CFG.beta2), eps=CFG.eps)
    out = []
    for grads in grads_seq:
        for k in PARAM_NAMES:
            leaves[k].grad = torch.tensor(grads[k])
        opt.step()
        out.append({
            "params": {k: leaves[k].detach().numpy().copy() for k in PARAM_NAMES},
            "m": {k: opt.state[leaves[k]]["exp_avg"].numpy().copy() for k in PARAM_NAMES},
            "v": {k: opt.state[leaves[k]]["exp_avg_sq"].numpy().copy() for k in PARAM_NAMES},
        })
    return out


def library_optax_steps(params0, grads_seq):
    pytest.importorskip("jax")
    optax = pytest.importorskip("optax")
    load_backend("jax")  # x64 on
    opt = optax.adam(CFG.lr, b1=CFG.beta1, b2=CFG.beta2, eps=CFG.eps)
    params = dict(params0)
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        adam_state = state[0]
        out.append({
            "params": {k: np.asarray(params[k]) for k in PARAM_NAMES},
            "m": {k: np.asarray(adam_state.mu[k]) for k in PARAM_NAMES},
            "v": {k: np.asarray(adam_state.nu[k]) for k in PARAM_NAMES},
        })
    return out


def backend_steps(name, params0, grads_seq):
    module = load_backend(name)
    params = {k: module.to_backend(v) for k, v in params0.items()}
    state = module.adam_init(params)
    out = []
    for grads in grads_seq:
        params, state = module.adam_step(params, {k: module.to_backend(g) for k, g in grads.items()}, state, CFG)
        out.append({
            "params": {k: module.to_numpy(params[k]) for k in PARAM_NAMES},
            "m": {k: module.to_numpy(state.m[k]) for k in PARAM_NAMES},
            "v": {k: module.to_numpy(state.v[k]) for k in PARAM_NAMES},
        })
    return out


@pytest.mark.parametrize("library", ["torch.optim", "optax"])
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_hand_adam_step_equals_library(name, library):
    params0, grads_seq = initial_params(4), gradient_sequence()
    want_all = (library_torch_steps if library == "torch.optim" else library_optax_steps)(params0, grads_seq)
    got_all = backend_steps(name, params0, grads_seq)
    for step, (got, want) in enumerate(zip(got_all, want_all), start=1):
        for entry in ("params", "m", "v"):
            for k in PARAM_NAMES:
                # Rounding order differs (torch: lerp and √v/√bc2; optax: m̂/(√v̂+ε)), so
                # a few units of roundoff at the entry's magnitude, never more.
                np.testing.assert_allclose(
                    got[entry][k], want[entry][k], rtol=0, atol=ulp_tolerance(want[entry][k], 4),
                    err_msg=f"{name} vs {library}: step {step}, {entry} {k}")


def test_the_test_sees_a_wrong_epsilon():
    """The comparison above is sharp enough to see ε moved inside the square root."""
    params0, grads_seq = initial_params(4), gradient_sequence()
    want = library_torch_steps(params0, grads_seq)
    numpy_backend = load_backend("numpy")
    state = numpy_backend.adam_init(params0)
    params = params0
    worst = 0.0
    for step, grads in enumerate(grads_seq):
        t = state.t + 1
        m = {k: CFG.beta1 * state.m[k] + (1 - CFG.beta1) * grads[k] for k in PARAM_NAMES}
        v = {k: CFG.beta2 * state.v[k] + (1 - CFG.beta2) * grads[k] ** 2 for k in PARAM_NAMES}
        params = {k: params[k] - CFG.lr * (m[k] / (1 - CFG.beta1**t)) / np.sqrt(v[k] / (1 - CFG.beta2**t) + CFG.eps)
                  for k in PARAM_NAMES}
        state = state._replace(m=m, v=v, t=t)
        worst = max(worst, max(float(np.abs(params[k] - want[step]["params"][k]).max()) / ulp_tolerance(want[step]["params"][k], 4)
                               for k in PARAM_NAMES))
    assert worst > 1e3
