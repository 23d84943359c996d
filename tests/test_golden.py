"""Regression: the numpy row still produces the stored golden trajectories; where it
does not to the bit (another numpy, BLAS or CPU), it says at which step and phase it
first differs, and holds the run to the rows' agreement tolerance."""

import json
import warnings
from dataclasses import replace

import numpy as np
import pytest

from harness.engine.agreement import tolerance
from harness.files.golden import compare_with_golden, difference_text, make_golden
from reference.golden import COMMAND, EVERY, SEEDS, first_digest_difference, golden_path, load_golden
from reference.spec import Config, checkpoint_epochs, flatten_params, initial_params


class GoldenDrift(UserWarning):
    """The numpy row here is not the same bits as its golden (made elsewhere)."""


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_numpy_row_matches_golden(seed):
    golden = load_golden(seed)
    cfg = golden["config"]
    assert cfg.seed == seed and golden["environment"]["numpy"]
    np.testing.assert_array_equal(golden["params0"], flatten_params(initial_params(seed)))
    result = compare_with_golden(golden)
    if not result["bit_identical"]:
        warnings.warn(difference_text(seed, result), GoldenDrift, stacklevel=1)
    # Another numpy, BLAS or CPU may round differently: the rows' agreement tolerance applies.
    tol = tolerance(cfg.dtype, cfg.epochs, float(np.abs(golden["params"]).max()))
    where = "" if result["bit_identical"] else difference_text(seed, result)
    np.testing.assert_allclose(result["params"], golden["params"], rtol=0, atol=tol, err_msg=where)
    np.testing.assert_allclose(result["loss"], golden["loss"], rtol=0, atol=tol, err_msg=where)


SHORT = Config(epochs=300)


def test_a_golden_made_with_a_planted_fault_is_located_at_its_step_and_phase():
    """A golden made by a numpy row with a mistake in Adam's m (β1 and β2 swapped) parts
    from the clean row here at epoch 1 in phase m, the first phase the mistake touches."""
    from harness.engine.faults import injected

    with injected("numpy", "beta1-beta2-swapped"):
        faulty = make_golden(0, SHORT)
    clean = make_golden(0, SHORT)
    names = [str(p) for p in clean["phases"]]
    assert names == ["forward", "loss", "grads", "m", "v", "update", "params"]
    assert first_digest_difference(clean["digests"], clean["digests"], names) is None
    assert first_digest_difference(faulty["digests"], clean["digests"], names) == (1, "m")


def test_a_difference_between_checkpoints_is_located_at_its_epoch():
    """Digests locate a difference at any epoch, not only at the checkpoints: a digest
    table doctored in grads from epoch 123 on is located there."""
    clean = make_golden(0, SHORT)
    names = [str(p) for p in clean["phases"]]
    doctored = clean["digests"].copy()
    doctored[122:, 2] ^= 1  # grads from epoch 123 on
    assert first_digest_difference(doctored, clean["digests"], names) == (123, "grads")


def test_golden_files_carry_a_digest_of_every_phase_of_every_step():
    golden = load_golden(0)
    assert golden["digests"].shape == (golden["config"].epochs, len(golden["phases"]))
    assert golden["digests"].dtype == np.uint32


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
    assert load_golden(2)["config"] == replace(Config(), seed=2)


def test_a_golden_with_digests_of_the_wrong_type_is_refused(tmp_path):
    with np.load(golden_path(0), allow_pickle=False) as data:
        record = {k: data[k] for k in data.files}
    record["digests"] = record["digests"].astype(np.float64)
    np.savez(tmp_path / "seed0.npz", **record)
    with pytest.raises(ValueError, match="digests should be uint32"):
        load_golden(0, tmp_path)
