"""Every backend computes the numpy backend's forward pass, loss and gradients, at the
initial weights and mid-trajectory, one state or a batch of them."""

import numpy as np
import pytest

from reference.spec import PARAM_NAMES, Config, initial_params, unflatten_params, xor_data
from tests.conftest import BACKEND_NAMES, load_backend, ulp_tolerance


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_backend_implements_the_interface(name):
    from backends.interface import MEMBERS, WHOLE
    from harness.engine.rows import ROWS

    module = load_backend(name)
    wanted = WHOLE + tuple(
        m for m, member in MEMBERS.items() if member.who == "autodiff" and ROWS[name].kind == "autodiff"
    )
    missing = [f for f in wanted if not hasattr(module, f)]
    assert not missing, f"{name} lacks {missing}"
    assert name == module.NAME
    from reference.optimizers import OPTIMIZERS

    assert set(module.UPDATES) == set(OPTIMIZERS)


def _points(numpy_trajectory):
    """Initial weights, a point mid-trajectory (epoch 5000) and one with saturated sigmoids."""
    mid = unflatten_params(numpy_trajectory.params[5000], 4)
    big = {k: 6.0 * v for k, v in initial_params(7).items()}
    return {"initial": initial_params(0), "epoch 5000": mid, "large weights": big}


def _to(module, params, dtype="float64"):
    return {k: module.to_backend(v, dtype) for k, v in params.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jax", "torch"])
def test_forward_loss_and_gradients_equal_numpy(name, numpy_trajectory):
    module, reference = load_backend(name), load_backend("numpy")
    X, y = xor_data()
    Xb, yb = module.to_backend(X), module.to_backend(y)
    for label, params in _points(numpy_trajectory).items():
        want_fwd = reference.forward(params, X)
        got_fwd = module.forward(_to(module, params), Xb)
        for key in ("Z1", "A1", "Z2", "A2"):
            got = module.to_numpy(got_fwd[key])
            assert got.dtype == np.float64
            np.testing.assert_allclose(
                got, want_fwd[key], rtol=0, atol=ulp_tolerance(want_fwd[key]), err_msg=f"{label} {key}"
            )
        want_loss, want_grads = reference.loss_and_grads(params, X, y)
        got_loss, got_grads = module.loss_and_grads(_to(module, params), Xb, yb)
        np.testing.assert_allclose(module.to_numpy(got_loss), want_loss, rtol=1e-14, err_msg=label)
        for key in PARAM_NAMES:
            want = want_grads[key]
            np.testing.assert_allclose(
                module.to_numpy(got_grads[key]), want, rtol=0, atol=ulp_tolerance(want, 16), err_msg=f"{label} d{key}"
            )


def test_numpy_loss_equals_mse_of_forward():
    numpy_backend = load_backend("numpy")
    X, y = xor_data()
    params = initial_params(0)
    loss, _ = numpy_backend.loss_and_grads(params, X, y)
    A2 = numpy_backend.forward(params, X)["A2"]
    assert loss == np.mean((A2 - y) ** 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_train_step_on_a_batch_equals_each_state_alone(name):
    module = load_backend(name)
    cfg = Config(epochs=3)
    X, y = (module.to_backend(a) for a in xor_data())
    singles = [_to(module, initial_params(s)) for s in range(3)]
    batch = {k: module.to_backend(np.stack([initial_params(s)[k] for s in range(3)])) for k in PARAM_NAMES}
    batch_state = module.optimizer_init(batch, cfg)
    single_states = [module.optimizer_init(p, cfg) for p in singles]
    for _ in range(cfg.epochs):
        batch, batch_state, batch_loss = module.train_step(batch, batch_state, X, y, cfg)
        for i in range(3):
            singles[i], single_states[i], loss = module.train_step(singles[i], single_states[i], X, y, cfg)
            assert float(module.to_numpy(batch_loss)[i]) == pytest.approx(float(module.to_numpy(loss)), rel=1e-14)
    for i in range(3):
        for k in PARAM_NAMES:
            np.testing.assert_allclose(module.to_numpy(batch[k])[i], module.to_numpy(singles[i][k]), rtol=0, atol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_batched_training_equals_per_seed_training(name):
    module = load_backend(name)
    cfg = Config(epochs=200)
    params0 = {k: np.stack([initial_params(s)[k] for s in range(3)]) for k in PARAM_NAMES}
    losses, history = module.train(cfg, params0)
    assert losses.shape == (200, 3) and history.shape == (201, 3, 17)
    for s in range(3):
        one_loss, one_history = module.train(cfg, initial_params(s))
        # Batched kernels may sum in another order: agreement to rounding, not bits.
        np.testing.assert_allclose(history[:, s], one_history, rtol=0, atol=ulp_tolerance(one_history, 16))
        np.testing.assert_allclose(losses[:, s], one_loss, rtol=0, atol=ulp_tolerance(one_loss, 4))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_fast_training_loop_equals_the_readable_step(name, dtype):
    """train() is the fast path of train_step(): the same trajectory, to rounding."""
    from harness.engine.agreement import tolerance

    module = load_backend(name)
    cfg = Config(epochs=300, lr=0.01, dtype=dtype)
    X, y = (module.to_backend(a) for a in xor_data(dtype))
    params0 = initial_params(2, dtype=dtype)
    params = {k: module.to_backend(v) for k, v in params0.items()}
    state = module.optimizer_init(params, cfg)
    readable_loss, readable_flat = [], [np.concatenate([params0[k].ravel() for k in PARAM_NAMES])]
    for _ in range(cfg.epochs):
        params, state, loss = module.train_step(params, state, X, y, cfg)
        readable_loss.append(float(module.to_numpy(loss)))
        readable_flat.append(np.concatenate([module.to_numpy(params[k]).ravel() for k in PARAM_NAMES]))
    fast_loss, fast_flat = module.train(cfg, params0)
    assert fast_flat.dtype == np.dtype(dtype)
    tol = tolerance(dtype, cfg.epochs, float(np.abs(fast_flat).max()))
    np.testing.assert_allclose(fast_flat, np.array(readable_flat), rtol=0, atol=tol)
    np.testing.assert_allclose(fast_loss, np.array(readable_loss), rtol=0, atol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_checkpointed_training_keeps_the_checkpoint_rows(name):
    module = load_backend(name)
    cfg = Config(epochs=250)
    full_loss, full = module.train(cfg, initial_params(1))
    kept_loss, kept = module.train(cfg, initial_params(1), every=100)
    assert kept.shape == (4, 17) and kept_loss.shape == (3,)
    np.testing.assert_allclose(kept[1:], full[[100, 200, 250]], rtol=0, atol=ulp_tolerance(full, 16))
    np.testing.assert_allclose(kept_loss, full_loss[[99, 199, 249]], rtol=0, atol=ulp_tolerance(full_loss, 16))


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_asking_for_cuda_without_one_is_a_clear_error(name):
    module = load_backend(name)
    if name == "torch" and module.torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    if name == "jax" and any(d.platform == "gpu" for d in module.jax.devices()):
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="cuda"):
        module.check_device("cuda")


@pytest.mark.parametrize(("seeds", "per_run"), [((7,), 17), ((7, 8, 2**32 + 7), 17), ((5,), 17000)])
def test_nudges_drawn_in_blocks_are_the_one_call_at_a_time_draws(seeds, per_run):
    """The envelope's nudges come from rng.bytes in blocks: the same signs, in the same
    order, as each seed drawing ⌈n/8⌉ bytes per call (as the envelope's figures were made)."""
    from backends.numpy_backend import _seeded_nudges

    directions, n = 3, 3 * per_run
    calls = 2 * max(1, min(2**14, 2**21 // (n * len(seeds)))) + 3  # across block boundaries
    draw = _seeded_nudges(np.zeros((directions * len(seeds), per_run)), seeds, directions)
    got = np.array([draw() for _ in range(calls)])
    rngs = [np.random.default_rng(s) for s in seeds]
    bits = np.array(
        [
            [np.unpackbits(np.frombuffer(rng.bytes((n + 7) // 8), dtype=np.uint8), count=n) for rng in rngs]
            for _ in range(calls)
        ]
    )  # (calls, seeds, n): seed j's n bits are its directions' runs, one after another
    direction_major = bits.reshape(calls, len(seeds), directions, per_run).transpose(0, 2, 1, 3)
    u = np.finfo(np.float64).eps
    np.testing.assert_array_equal(got, np.where(direction_major == 1, u, -u).reshape(got.shape))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_step_count_and_a_batch_of_step_counts_give_the_same_bits(name, dtype):
    # Training steps with one count t, lockstep with a batch of them: one path must give
    # the same corrections for both, or a slip in one branch would hide from lockstep.
    module = load_backend(name)
    cfg, epochs = Config(dtype=dtype), 20000
    like = module.to_backend(np.zeros((epochs, 1, 1)), dtype)
    counts = module.to_backend(np.arange(1, epochs + 1, dtype=np.int64).reshape(-1, 1, 1))
    batch = [np.asarray(module.to_numpy(c)).ravel() for c in module.bias_corrections(counts, cfg, like)]
    one = module.to_backend(np.zeros((1, 1)), dtype)
    alone = [
        [np.asarray(module.to_numpy(c)) for c in module.bias_corrections(t, cfg, one)] for t in range(1, epochs + 1, 7)
    ]
    assert {c.dtype for pair in alone for c in pair} == {np.dtype(dtype)}
    np.testing.assert_array_equal(np.array([[c.ravel()[0] for c in pair] for pair in alone]).T, np.array(batch)[:, ::7])


@pytest.mark.slow
def test_the_torchscript_yardstick_trains_as_the_torch_row_does():
    # bench times it against the torch row: it must be the same computation, to rounding
    load_backend("torch")
    from backends import torchscript_yardstick

    cfg = Config(epochs=300)
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    loss, params = torchscript_yardstick.train_torchscript(cfg, params0)
    row_loss, row_params = load_backend("torch").train(cfg, params0)
    scale = np.abs(row_params).max()
    np.testing.assert_allclose(params, row_params, rtol=0, atol=64 * np.finfo(np.float64).eps * scale)
    np.testing.assert_allclose(loss, row_loss, rtol=0, atol=64 * np.finfo(np.float64).eps)
    assert np.abs(params[-1] - params[0]).max() > 1e-3  # it trained


def test_a_seed_draws_the_nudges_and_starts_it_would_alone():
    """A seed's envelope runs are nudged and started as they would be alone, whatever seeds
    and probes share the batch (agreement.nudge_streams): power's thresholds stand, and
    the sweep may split its envelope into tasks of any size."""
    from backends.numpy_backend import _nudges
    from harness.engine.agreement import NUDGED_RUNS, nudge_streams, perturbed_starts
    from harness.engine.execution import batch_params

    seeds = np.array([4, 11, 12])
    batch = perturbed_starts(batch_params(seeds, 4, "float64"), seeds)
    together = _nudges(np.zeros((NUDGED_RUNS * 3, 17)), nudge_streams(seeds))
    alone = [_nudges(np.zeros((NUDGED_RUNS, 17)), nudge_streams(int(s))) for s in seeds]
    for j, seed in enumerate(seeds):
        single = perturbed_starts(initial_params(int(seed), 4, "float64"), int(seed))
        for k in PARAM_NAMES:
            np.testing.assert_array_equal(batch[k][j::3], single[k])
    for _ in range(4):
        both, each = together().copy(), [draw().copy() for draw in alone]
        for j in range(3):
            np.testing.assert_array_equal(both[j::3], each[j])
        assert not np.array_equal(each[0], each[1])
