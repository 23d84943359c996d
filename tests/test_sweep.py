"""Sweeps: a batch of seeds trains as each seed alone would, disagreements are found
per seed, and the command line writes what it says."""

import io
import json

import numpy as np
import pytest

from harness.commands.sweep import batch_params, summarize
from harness.engine.execution import run_row
from harness.engine.rows import DEFAULT_ROWS, Trajectory, unavailable_reason
from harness.report.progress import Progress
from reference.spec import Config
from tests.conftest import ulp_tolerance
from tests.test_cli import run_cli

AVAILABLE = [n for n in DEFAULT_ROWS if unavailable_reason(n) is None]
SEEDS = np.array([0, 5, 9])


@pytest.mark.slow
@pytest.mark.parametrize("name", AVAILABLE)
def test_a_sweep_matches_per_seed_runs(name):
    cfg = Config(epochs=300)
    batch = run_row(name, cfg, batch_params(SEEDS, cfg.hidden, cfg.dtype), every=50)
    assert batch.params.shape == (7, 3, 17) and batch.loss.shape == (6, 3)
    for i, seed in enumerate(SEEDS):
        alone = run_row(name, Config(epochs=300, seed=int(seed)), every=50)
        np.testing.assert_allclose(batch.params[:, i], alone.params, rtol=0, atol=ulp_tolerance(alone.params, 16))
        np.testing.assert_allclose(batch.loss[:, i], alone.loss, rtol=0, atol=ulp_tolerance(alone.loss, 16))


def _batch_trajectory(name, seeds=3, checkpoints=4):
    rng = np.random.default_rng(0)
    params = rng.standard_normal((checkpoints + 1, seeds, 17))
    loss = rng.uniform(0, 0.3, (checkpoints, seeds))
    return Trajectory(name, loss, params, seconds=1.0, epochs_run=400)


def test_summary_finds_the_seed_that_parts_and_where():
    cfg = Config(epochs=400)
    ref = _batch_trajectory("numpy")
    other = _batch_trajectory("jax")
    other.params[3:, 1, 5] += 1e-6  # seed 1 moves at checkpoint 3 (epoch 300)
    summary = summarize(cfg, np.array([10, 11, 12]), 100, {"numpy": ref, "jax": other})
    assert summary["seeds_agree_in_every_pair"] == 2 and not summary["passed"]
    (failing,) = summary["failing"]
    assert failing["seed"] == 11 and failing["first_checkpoint_over_tolerance"] == 300
    assert failing["max_abs_param_diff"] == pytest.approx(1e-6)
    assert summary["pairs"][0]["largest_gap"]["max"] == pytest.approx(1e-6)
    assert summary["pairs"][0]["largest_gap"]["median"] == 0.0


@pytest.mark.slow
def test_sweep_command_writes_its_summary(tmp_path):
    if len(AVAILABLE) < len(DEFAULT_ROWS):
        pytest.skip("not every framework is installed")
    result = run_cli(
        "sweep",
        "--seeds",
        "6",
        "--epochs",
        "400",
        "--json",
        str(tmp_path / "s.json"),
        "--plot",
        str(tmp_path / "plots"),
    )
    assert result.returncode == 0, result.stderr
    assert "6 of 6 seeds agree in every pair" in result.stdout
    assert "[" not in result.stderr  # no progress bar when stderr is not a terminal
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["seeds"] == {"first": 0, "count": 6} and data["passed"] is True
    assert set(data["rows"]) == set(DEFAULT_ROWS)
    for row in data["rows"].values():
        assert 0 <= row["solved_share"] <= 1 and row["final_loss"]["median"] > 0
    assert len(data["pairs"]) == 4 and all(p["seeds_agree"] == 6 for p in data["pairs"])
    assert data["environment"]["device"] == "cpu"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["sweep_final_loss.png", "sweep_gaps.png"]


@pytest.mark.parametrize(
    "args", [["--seeds", "0"], ["--seeds", "x"], ["--every", "0"], ["--first-seed", "4294967295", "--seeds", "2"]]
)
def test_sweep_bad_input(args):
    result = run_cli("sweep", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error:" in line]) == 1


def test_progress_bar_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    quiet, shown = io.StringIO(), Terminal()
    for stream in (quiet, shown):
        bar = Progress(2, "rows trained", stream=stream)
        bar.advance("numpy")
        bar.advance("jax")
        bar.close()
    assert quiet.getvalue() == ""
    assert "rows trained" in shown.getvalue() and "2/2 jax" in shown.getvalue()


def test_summary_judges_each_seed_by_its_own_perturbation_envelope():
    cfg = Config(epochs=400)
    ref = _batch_trajectory("numpy")
    perturbed = Trajectory("numpy", np.tile(ref.loss, (1, 3)), np.tile(ref.params, (1, 3, 1)), seconds=1.0)
    for d in range(3):  # seed 0 is sensitive: its perturbed runs part by 1e-6 from checkpoint 2
        perturbed.params[2:, d * 3 + 0, 4] += 1e-6
    other = _batch_trajectory("jax")
    other.params[3:, 0, 7] += 1e-5  # 10× seed 0's envelope: inside K_ENVELOPE = 16×
    other.params[3:, 1, 7] += 1e-10  # seed 1 is not sensitive: far outside its floor
    summary = summarize(cfg, np.array([0, 1, 2]), 100, {"numpy": ref, "jax": other}, perturbed)
    assert "envelope" in summary["tolerance_rule"]
    assert [f["seed"] for f in summary["failing"]] == [1]
    assert summary["failing"][0]["first_checkpoint_over_tolerance"] == 300
    assert summary["pairs"][0]["margin"]["max"] > 1e3
    fixed = summarize(cfg, np.array([0, 1, 2]), 100, {"numpy": ref, "jax": other})
    assert sorted(f["seed"] for f in fixed["failing"]) == [0, 1] and fixed["tolerance_rule"].startswith("fixed")


@pytest.mark.slow
def test_a_sweep_split_into_tasks_keeps_every_seed_in_its_place():
    from harness.commands.sweep import train_seeds
    from harness.engine.agreement import NUDGED_RUNS

    cfg = Config(epochs=200)
    seeds = np.array([3, 4, 5, 6, 7])
    trajectories, perturbed, report = train_seeds(cfg, ["numpy", "jax"], seeds, 50, "cpu", 2, per_task=2)
    assert trajectories["numpy"].params.shape == (5, 5, 17) and perturbed.params.shape == (5, 5 * NUDGED_RUNS, 17)
    assert report.retried == [] and len(report.workers) >= 1
    for i, seed in enumerate(seeds):
        alone = run_row("numpy", Config(epochs=200, seed=int(seed)), every=50)
        np.testing.assert_allclose(
            trajectories["numpy"].params[:, i], alone.params, rtol=0, atol=ulp_tolerance(alone.params, 16)
        )
        # direction d of seed i sits at d·N + i, every direction starting one ULP from the seed's weights
        for d in range(NUDGED_RUNS):
            start = perturbed.params[0, d * 5 + i]
            assert np.all(np.abs(start - alone.params[0]) <= np.spacing(np.abs(alone.params[0])))
            assert np.any(start != alone.params[0])


@pytest.mark.slow
def test_seeds_per_task_changes_no_figure():
    """Every seed's envelope is drawn from streams of its own: one task or one per seed
    (the envelope's tasks then hold one seed each), the same bits and the same summary."""
    from harness.commands.sweep import summarize, train_seeds

    cfg, seeds = Config(epochs=300, lr=0.05), np.arange(20, 26)
    one = train_seeds(cfg, ["numpy", "jax"], seeds, 30, "cpu", 2, per_task=1000)
    many = train_seeds(cfg, ["numpy", "jax"], seeds, 30, "cpu", 2, per_task=3)
    for name in ("numpy", "jax"):
        np.testing.assert_array_equal(one[0][name].params, many[0][name].params)
    np.testing.assert_array_equal(one[1].params, many[1].params)
    np.testing.assert_array_equal(one[1].loss, many[1].loss)
    figures = [summarize(cfg, seeds, 30, trajectories, perturbed).data for trajectories, perturbed, _ in (one, many)]
    for data in figures:
        for row in data["rows"].values():
            del row["seconds"], row["us_per_epoch"], row["seed_epochs_per_second"]
    assert figures[0] == figures[1] and figures[0]["pairs"][0]["margin"]["max"] > 0
