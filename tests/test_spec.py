import numpy as np
import pytest

from reference.spec import Config, flatten_params, initial_params, n_params, unflatten_params, xor_data


@pytest.mark.parametrize("seed", [0, 1, 2, 12345])
def test_initial_params_are_what_the_seed_script_draws(seed):
    # The seed script: np.random.seed(s), then randn for W1, b1, W2, b2 in that order.
    np.random.seed(seed)
    drawn = [np.random.randn(2, 4), np.random.randn(1, 4), np.random.randn(4, 1), np.random.randn(1, 1)]
    params = initial_params(seed)
    for name, expected in zip(("W1", "b1", "W2", "b2"), drawn, strict=True):
        assert params[name].dtype == np.float64
        np.testing.assert_array_equal(params[name], expected)


def test_float32_initial_params_are_the_float64_ones_rounded_once():
    p64, p32 = initial_params(3), initial_params(3, dtype="float32")
    for name in p64:
        assert p32[name].dtype == np.float32
        np.testing.assert_array_equal(p32[name], p64[name].astype(np.float32))


def test_xor_data():
    X, y = xor_data()
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y[:, 0], [0, 1, 1, 0])


@pytest.mark.parametrize("hidden", [1, 4, 7])
def test_flatten_is_row_major_in_the_documented_order_and_round_trips(hidden):
    params = initial_params(5, hidden)
    flat = flatten_params(params)
    assert flat.shape == (n_params(hidden),)
    np.testing.assert_array_equal(flat[: 2 * hidden], params["W1"].ravel())
    np.testing.assert_array_equal(flat[2 * hidden : 3 * hidden], params["b1"].ravel())
    np.testing.assert_array_equal(flat[3 * hidden : 4 * hidden], params["W2"].ravel())
    assert flat[-1] == params["b2"][0, 0]
    back = unflatten_params(flat, hidden)
    for name in params:
        np.testing.assert_array_equal(back[name], params[name])


def test_flatten_keeps_a_batch_axis():
    batch = {k: np.stack([initial_params(s)[k] for s in range(3)]) for k in ("W1", "b1", "W2", "b2")}
    flat = flatten_params(batch)
    assert flat.shape == (3, 17)
    np.testing.assert_array_equal(flat[2], flatten_params(initial_params(2)))


def test_default_config_is_the_seed_articles():
    cfg = Config()
    assert (cfg.hidden, cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.epochs, cfg.seed, cfg.dtype) == (
        4,
        0.001,
        0.9,
        0.999,
        1e-8,
        20000,
        0,
        "float64",
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"epochs": -5},
        {"hidden": 0},
        {"lr": float("nan")},
        {"lr": -1.0},
        {"beta1": 1.0},
        {"beta2": -0.1},
        {"eps": -1e-8},
        {"dtype": "float16"},
        {"seed": -1},
    ],
)
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Config(**bad)
