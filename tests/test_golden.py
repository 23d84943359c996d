"""Regression: the numpy row still produces the stored golden trajectories."""
import json
from dataclasses import replace

import numpy as np
import pytest

from backends import numpy_backend
from harness.engine.agreement import tolerance
from reference.golden import COMMAND, EVERY, SEEDS, golden_path, load_golden
from reference.spec import checkpoint_epochs, flatten_params, initial_params


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_numpy_row_matches_golden(seed):
    golden = load_golden(seed)
    cfg = golden["config"]
    assert cfg.seed == seed and golden["environment"]["numpy"]
    np.testing.assert_array_equal(golden["params0"], flatten_params(initial_params(seed)))
    loss, params = numpy_backend.train(cfg, initial_params(seed, cfg.hidden, cfg.dtype))
    epochs = golden["epochs"]
    # Another numpy or BLAS may round differently: the rows' agreement tolerance applies.
    tol = tolerance(cfg.dtype, cfg.epochs, float(np.abs(golden["params"]).max()))
    np.testing.assert_allclose(params[epochs], golden["params"], rtol=0, atol=tol)
    np.testing.assert_allclose(loss[epochs - 1], golden["loss"], rtol=0, atol=tol)


def test_golden_records_how_to_regenerate_it():
    with np.load(golden_path(0), allow_pickle=False) as data:
        assert str(data["command"]) == COMMAND
        assert json.loads(str(data["config"]))["epochs"] == 20000


def test_checkpoints_keep_the_last_epoch():
    assert checkpoint_epochs(250, EVERY).tolist() == [100, 200, 250]
    assert checkpoint_epochs(200, EVERY).tolist() == [100, 200]
    assert checkpoint_epochs(3).tolist() == [1, 2, 3]


def test_a_damaged_golden_file_is_refused(tmp_path, monkeypatch):
    import reference.golden as golden_module

    with np.load(golden_path(0), allow_pickle=False) as data:
        record = {k: data[k] for k in data.files}
    record["params"] = record["params"][:, :16]
    np.savez(tmp_path / "seed0.npz", **record)
    monkeypatch.setattr(golden_module, "FOLDER", tmp_path)
    with pytest.raises(ValueError, match="params should have shape"):
        load_golden(0)


def test_golden_file_with_pickled_objects_is_refused(tmp_path, monkeypatch):
    import reference.golden as golden_module

    np.savez(tmp_path / "seed0.npz", config=np.array([{"evil": 1}], dtype=object))
    monkeypatch.setattr(golden_module, "FOLDER", tmp_path)
    with pytest.raises(ValueError, match="allow_pickle"):
        load_golden(0)


def test_golden_config_is_the_default_but_for_the_seed():
    from reference.spec import Config

    assert load_golden(2)["config"] == replace(Config(), seed=2)
