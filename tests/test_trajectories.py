"""Full 20000-epoch runs: every row agrees with numpy, in float64 and float32, and XOR
is solved in every row; planted Adam mistakes in one row are caught."""

import numpy as np
import pytest

from harness.engine.agreement import compare, compare_all, tolerance, trajectory_scale
from harness.engine.execution import run_row
from harness.engine.rows import DEFAULT_ROWS, Trajectory, unavailable_reason
from harness.report.text import predictions
from reference.spec import Config, solves_xor


def _run_all(cfg):
    names = [n for n in DEFAULT_ROWS if unavailable_reason(n) is None]
    if len(names) < len(DEFAULT_ROWS):
        pytest.skip("not every framework is installed")
    return {n: run_row(n, cfg) for n in names}


@pytest.fixture(scope="module")
def float64_rows():
    return _run_all(Config())


@pytest.fixture(scope="module")
def float32_rows():
    return _run_all(Config(dtype="float32"))


@pytest.mark.slow
def test_float64_rows_agree_over_20000_epochs(float64_rows):
    for t in float64_rows.values():
        assert t.params.dtype == np.float64 and t.params.shape == (20001, 17) and t.loss.shape == (20000,)
    agreements = compare_all(float64_rows, "float64")
    assert [a.b for a in agreements] == ["jax", "torch", "torch.optim", "optax"]
    for a in agreements:
        assert a.passed, a
        # Not merely inside a loose bound: float64 rows part by ~1e-14 after 20000 epochs.
        assert a.max_abs_param_diff < 1e-13, a


@pytest.mark.slow
def test_float32_rows_agree_within_their_tolerance(float32_rows, float64_rows):
    for name, t in float32_rows.items():
        # float32 really rounds in float32: apart from the float64 run by far more than
        # its rounding (whether two float32 rows round alike is the platform's business)
        assert t.params.dtype == np.float32
        assert np.abs(t.params - float64_rows["numpy"].params).max() > 1e-6, name
    for a in compare_all(float32_rows, "float32"):
        assert a.passed, a


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_xor_is_solved_in_every_row(dtype, float64_rows, float32_rows):
    rows = float64_rows if dtype == "float64" else float32_rows
    cfg = Config(dtype=dtype)
    for name, traj in rows.items():
        outputs = predictions(traj, cfg)
        np.testing.assert_array_equal(np.round(outputs), [0, 1, 1, 0], err_msg=name)
        assert solves_xor(outputs)
        assert traj.loss[-1] < 1e-4


def test_numpy_row_reproduces_the_documented_final_loss(float64_rows):
    # seed/NOTES.md: paper Adam with the MSE gradient, seed 0, 20000 epochs: 2.45e-5.
    assert float64_rows["numpy"].loss[-1] == pytest.approx(2.45e-5, rel=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("fault", ["eps-inside-sqrt", "article-bias-correction"])
def test_a_planted_adam_mistake_is_caught_by_the_fixed_rule(fault, dtype, float64_rows, float32_rows):
    """The numpy row computing with a classic mistake: its free-running pair must fail."""
    from harness.engine.faults import injected

    rows = float64_rows if dtype == "float64" else float32_rows
    with injected("numpy", fault):
        faulty = run_row("numpy", Config(dtype=dtype))
    faulty.name = "numpy with fault"
    result = compare(rows["jax"], faulty, dtype)
    assert not result.passed
    assert result.first_epoch_over_tolerance is not None and result.margin > 1


def test_disagreement_report_points_at_the_first_bad_epoch():
    base = Trajectory("a", np.zeros(10), np.zeros((11, 17)), seconds=1.0)
    moved = Trajectory("b", np.zeros(10), np.zeros((11, 17)), seconds=1.0)
    tol = tolerance("float64", 10, 1.0)
    moved.params[7:, 3] = 10 * tol
    moved.loss[4] = 0.5 * tol  # below tolerance: not the first bad epoch
    result = compare(base, moved, "float64")
    assert result.first_epoch_over_tolerance == 7
    assert result.max_abs_param_diff == pytest.approx(10 * tol)
    assert result.margin == pytest.approx(10)
    assert not result.passed


def test_non_finite_values_never_pass():
    base = Trajectory("a", np.zeros(5), np.zeros((6, 17)), seconds=1.0)
    broken = Trajectory("b", np.zeros(5), np.zeros((6, 17)), seconds=1.0)
    broken.loss[2] = np.nan
    result = compare(base, broken, "float64")
    assert not result.passed and result.first_epoch_over_tolerance == 3
    assert result.max_abs_loss_diff == np.inf


def test_tolerance_formula():
    eps = np.finfo(np.float64).eps
    assert tolerance("float64", 20000, 11.0) == pytest.approx(4 * eps * np.sqrt(20000) * 11.0)
    assert tolerance("float32", 100, 0.5) == pytest.approx(4 * np.finfo(np.float32).eps * 10)
    assert trajectory_scale(np.array([[1.0, -12.5], [np.nan, 3.0]])) == 12.5
