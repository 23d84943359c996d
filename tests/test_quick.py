"""Every subcommand once, end to end, at small sizes, in this process (``harness.cli.main``
as ``compare.py`` calls it): the quick tier's proof that each command still runs and
still judges right. The slow tier runs the same commands as a user does, in subprocesses
and at full size (test_cli.py and the test file of each command)."""

import importlib.util
import json

import numpy as np
import pytest

from harness.cli import main
from reference.spec import flatten_params, initial_params

ROWS = "numpy,torch"  # no compile and no program to start: the cheapest pair of independent rows


pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the quick pair needs torch")


def run(*argv) -> int:
    return main([str(a) for a in argv])


def read(path):
    return json.loads(path.read_text())


def test_the_default_run_agrees_and_says_by_how_much(tmp_path, capsys):
    assert run("--epochs", 300, "--backends", ROWS, "--jobs", 1, "--json", tmp_path / "r.json") == 0
    assert "all 1 pairs agree" in capsys.readouterr().out
    data = read(tmp_path / "r.json")
    (pair,) = data["agreement"]
    assert pair["passed"] and 0 <= pair["max_abs_param_diff"] < pair["tolerance"]
    assert 0 < pair["lockstep_max_ulp"] <= 8
    assert set(data["timings"]["tasks"]) == {"train numpy", "train torch", "lockstep torch", "envelope runs"}


def test_a_planted_fault_is_found_in_its_phase_and_replays(tmp_path, capsys):
    code = run(
        "--epochs",
        50,
        "--backends",
        ROWS,
        "--jobs",
        1,
        "--inject",
        "torch:eps-inside-sqrt",
        "--json",
        tmp_path / "r.json",
        "--replay-dir",
        tmp_path,
    )
    assert code == 1
    (pair,) = read(tmp_path / "r.json")["agreement"]
    assert not pair["passed"]
    assert (pair["first_divergence"]["epoch"], pair["first_divergence"]["phase"]) == (1, "update")
    (replay,) = tmp_path.glob("replay_torch_epoch1.npz")
    capsys.readouterr()
    # the replay file records the fault: replayed, torch parts from numpy again, in the same phase
    assert run("replay", replay, "--backends", ROWS, "--json", tmp_path / "replay.json") == 1
    assert "update" in capsys.readouterr().out


def test_forms_and_lineage_agree_across_the_rows(tmp_path):
    assert run("forms", "--epochs", 200, "--backends", ROWS, "--jobs", 1, "--json", tmp_path / "f.json") == 0
    assert read(tmp_path / "f.json")["passed"] is True
    assert run("lineage", "--epochs", 200, "--backends", ROWS, "--jobs", 1, "--json", tmp_path / "l.json") == 0
    assert read(tmp_path / "l.json")["passed"] is True


def test_init_writes_the_initial_state_every_row_starts_from(tmp_path):
    assert run("init", "--seed", 3, "--out", tmp_path / "init.npz") == 0
    with np.load(tmp_path / "init.npz", allow_pickle=False) as data:
        np.testing.assert_array_equal(
            np.concatenate([data[k].ravel() for k in ("W1", "b1", "W2", "b2")]), flatten_params(initial_params(3))
        )


def test_grads_finds_the_hand_gradient_exact(tmp_path):
    assert run("grads", "--points", 1, "--epochs", 200, "--json", tmp_path / "g.json") == 0
    assert read(tmp_path / "g.json")["passed"] is True


def test_bench_times_a_row_against_its_yardsticks(tmp_path):
    assert (
        run("bench", "--epochs", 100, "--repeat", 1, "--no-wall", "--backends", "numpy", "--json", tmp_path / "b.json")
        == 0
    )
    data = read(tmp_path / "b.json")
    assert data["rows"]["numpy"]["us_per_epoch"]["median"] > 0
    assert data["seed_loop"]["us_per_epoch"]["median"] > 0


@pytest.fixture(scope="module")
def one_worker():
    """A dask cluster of one worker process that the three cluster commands share, so its
    frameworks are imported once."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"},
    ) as cluster:
        yield cluster.scheduler_address


def test_sweep_agrees_in_every_seed(tmp_path, one_worker):
    assert (
        run(
            "sweep",
            "--seeds",
            3,
            "--epochs",
            200,
            "--backends",
            ROWS,
            "--scheduler",
            one_worker,
            "--json",
            tmp_path / "s.json",
        )
        == 0
    )
    data = read(tmp_path / "s.json")
    assert data["passed"] is True and data["seeds"]["count"] == 3


GRID = ("--seeds", 1, "--epochs", 100, "--optimizers", "sgd", "--dtypes", "float64", "--lr-factors", 1, "--hidden", 2)


def test_audit_finds_no_false_alarm_in_a_correct_grid(tmp_path, one_worker):
    assert run("audit", *GRID, "--scheduler", one_worker, "--json", tmp_path / "a.json") == 0
    assert read(tmp_path / "a.json")["passed"] is True


def test_power_catches_a_large_planted_error(tmp_path, one_worker):
    assert run("power", *GRID, "--scheduler", one_worker, "--json", tmp_path / "p.json") == 0
    thresholds = read(tmp_path / "p.json")["thresholds"]
    # every phase of SGD's step gets a threshold; lockstep needs at least a few ULPs, never one
    assert {t["phase"] for t in thresholds} == {"forward", "loss", "grads", "update", "params"}
    lockstep = [t for t in thresholds if t["judged_by"] == "lockstep"]
    assert lockstep and all(2 <= t["smallest_caught_ulps"] < 2**20 and t["first_epoch"] == 1 for t in lockstep)


def test_versions_finds_a_fault_planted_in_another_interpreter(tmp_path, capsys):
    """This interpreter as the "other" environment: the clean row is the same bits, a
    fault planted in the other interpreter's run is a change in the computation."""
    import sys

    argv = ["versions", "--env", f"same={sys.executable}", "--backends", "numpy", "--epochs", 50, "--jobs", 1]
    assert run(*argv, "--json", tmp_path / "v.json") == 0
    assert read(tmp_path / "v.json")["rows"]["numpy@same"]["verdict"] == "bit-identical"
    assert run(*argv, "--inject", "numpy@same:grad-missing-2-over-n", "--json", tmp_path / "f.json") == 1
    row = read(tmp_path / "f.json")["rows"]["numpy@same"]
    assert row["verdict"] == "computation changed (grads first)"
    assert (row["lockstep"]["first_difference"]["epoch"], row["lockstep"]["first_difference"]["phase"]) == (1, "grads")
