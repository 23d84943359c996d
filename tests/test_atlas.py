"""The atlas (compare.py atlas): every library difference named at its first differing step
and confirmed by running the settings that make the two agree; a recorded difference that
does not show is reported, not failed; the verdicts are pinned per installed version."""

import json
from importlib import metadata

import numpy as np
import pytest

from harness.engine import atlas
from harness.engine.execution import Workers
from harness.engine.rows import ROWS, unavailable_reason
from reference.optimizers import OPTIMIZERS, Gap
from reference.spec import Config
from tests.test_cli import run_cli

LIBRARIES = [n for n in atlas.LIBRARY_ROWS if unavailable_reason(n) is None]

# (optimizer, row) -> {the version of the row's library: the status the atlas must give}. A
# new version is looked at, then pinned here: when optax merges its Rprop fix (optax #1725)
# the rprop/optax cell turns "refuted" and agrees, and that version is pinned as such.
PINNED = {
    ("rprop", "optax"): {"0.2.8": "confirmed"},
    ("radam", "optax"): {"0.2.8": "confirmed"},
    ("nadam", "optax"): {"0.2.8": "confirmed"},
    ("rmsprop_momentum", "optax"): {"0.2.8": "confirmed"},
    ("adamax", "optax"): {"0.2.8": "agrees"},
    ("rprop", "torch.optim"): {"2.13.0+cpu": "agrees"},
    ("radam", "torch.optim"): {"2.13.0+cpu": "agrees"},
    ("nadam", "torch.optim"): {"2.13.0+cpu": "confirmed"},  # the μ product in float32 (torch's default dtype)
    ("adamax", "keras"): {"3.15.1": "confirmed"},
    ("nadam", "keras"): {"3.15.1": "confirmed"},
    ("rmsprop_momentum", "keras"): {"3.15.1": "confirmed"},
    ("adam", "keras"): {"3.15.1": "confirmed"},
}
LIBRARY_PACKAGE = {"torch.optim": "torch", "optax": "optax", "keras": "keras"}


def _cells(out) -> dict:
    data = json.loads(out.read_text())
    return data, {(c["optimizer"], c["row"]): c for c in data["cells"]}


@pytest.mark.slow
def test_the_pinned_verdicts_hold_for_the_installed_versions(tmp_path):
    optimizers = sorted({o for o, _ in PINNED})
    out = tmp_path / "atlas.json"
    done = run_cli("atlas", "--optimizers", ",".join(optimizers), "--epochs", "300", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    data, cells = _cells(out)
    assert data["passed"] and not data["unexplained"]
    for (optimizer, row), pinned in PINNED.items():
        if row not in LIBRARIES:
            continue
        version = metadata.version(LIBRARY_PACKAGE[row])
        assert version in pinned, f"{row} {version}: look at the atlas's {optimizer} cell, then pin its status"
        cell = cells[optimizer, row]
        assert cell["status"] == pinned[version], (optimizer, row, cell["status"], cell["explanation"])
        if cell["status"] == "confirmed":  # named at the first differing step as the record says
            assert cell["verdict"] == "differs" and cell["variant"] == OPTIMIZERS[optimizer].gaps[row].variant
        if "agree" in cell:  # and the recorded settings, run, make the two agree
            assert cell["agree"]["passed"] and cell["agree"]["verdict"] in ("bit-identical", "rounding level")


@pytest.mark.skipif("optax" not in LIBRARIES, reason="optax is not installed")
def test_a_small_atlas_names_optax_rprop_one_step_late_and_the_exit_status_follows(tmp_path):
    out = tmp_path / "atlas.json"
    done = run_cli("atlas", "--optimizers", "rprop,adamax", "--backends", "optax", "--epochs", "60", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    data, cells = _cells(out)
    assert cells["rprop", "optax"]["variant"] == "rprop-one-step-late"
    assert cells["rprop", "optax"]["status"] == "confirmed" and cells["rprop", "optax"]["verdict"] == "differs"
    assert cells["adamax", "optax"]["status"] == "agrees" and cells["adamax", "optax"]["variant"] is None
    assert data["verdicts"]["differs"] == 1 and data["statuses"]["confirmed"] == 1
    assert "rprop-one-step-late (confirmed)" in done.stdout and "every difference is explained" in done.stdout


@pytest.mark.slow
@pytest.mark.skipif("torch.optim" not in LIBRARIES, reason="torch is not installed")
def test_a_recorded_difference_that_does_not_show_is_refuted_not_failed(monkeypatch):
    # a library that fixed a recorded difference: planted as a gap torch.optim's Adamax does not have
    record = OPTIMIZERS["adamax"]
    fake = dict(
        record.gaps, **{"torch.optim": Gap("umax", "a difference fixed upstream", variant="adamax-eps-outside-max")}
    )
    monkeypatch.setitem(OPTIMIZERS, "adamax", type(record)(**{**record.__dict__, "gaps": fake}))
    found = atlas.run_atlas(Config(epochs=200), ["adamax"], ["torch.optim"], "cpu", 1)
    (cell,) = found["cells"]
    assert cell["status"] == "refuted" and cell["verdict"] in ("bit-identical", "rounding level")
    assert atlas.summarize(found["cells"])["passed"]


@pytest.mark.slow
@pytest.mark.skipif("torch.optim" not in LIBRARIES, reason="torch is not installed")
def test_runs_that_share_the_atlas_pool_train_what_runs_with_pools_of_their_own_train():
    """The atlas runs every optimizer in one pool (run_default's ``workers``): the same
    worker processes run each configuration, and a worker that ran one trains the next
    exactly as a fresh one does."""
    rows = [r for r in ("torch.optim", "optax") if r in LIBRARIES]
    configs = [atlas.atlas_config(Config(epochs=50), o) for o in ("adam", "nadam")]
    alone = [atlas.run_pairs(cfg, rows, "cpu", 2) for cfg in configs]
    with Workers(2) as workers:
        shared = [atlas.run_pairs(cfg, rows, "cpu", 2, workers) for cfg in configs]

    def pids(results):
        return {cost["pid"] for cost in results.timings["tasks"].values()}

    assert pids(shared[0]) == pids(shared[1]) and len(pids(shared[0])) == 2
    assert not pids(alone[0]) & pids(alone[1])  # each run its own processes
    for own, pooled in zip(alone, shared, strict=True):
        assert list(own.trajectories) == list(pooled.trajectories) and {"numpy", *rows} <= set(own.trajectories)
        for name, trajectory in own.trajectories.items():
            np.testing.assert_array_equal(trajectory.params, pooled.trajectories[name].params)
            np.testing.assert_array_equal(trajectory.loss, pooled.trajectories[name].loss)
        assert [(p.b, p.passed) for p in own.pairs] == [(p.b, p.passed) for p in pooled.pairs]
        np.testing.assert_array_equal(own.envelope, pooled.envelope)


def test_an_unexplained_difference_fails_and_a_setting_that_does_not_agree_too():
    cell = {"status": "unexplained", "verdict": "differs", "optimizer": "adam", "row": "optax"}
    assert not atlas.summarize([cell])["passed"]
    agreeing = {"status": "confirmed", "verdict": "differs", "optimizer": "adam", "row": "keras"}
    assert atlas.summarize([agreeing])["passed"]
    agreeing["agree"] = {"passed": False}
    assert atlas.summarize([agreeing])["settings_that_fail"] == ["adam/keras"]


def test_status_follows_the_verdict_the_record_and_the_name():
    gap = Gap("update", "why", variant="radam-eps-on-vhat")
    assert atlas.status_of("rounding level", None, None) == "agrees"
    assert atlas.status_of("bit-identical", gap, None) == "refuted"
    assert atlas.status_of("differs", gap, "radam-eps-on-vhat") == "confirmed"
    assert atlas.status_of("differs", gap, "hyperparameters") == "new"
    assert atlas.status_of("differs", None, "epshat") == "new"
    assert atlas.status_of("differs", gap, None) == "unexplained"


def test_every_library_row_pairs_with_the_optimizers_it_ships_or_its_gap_settings():
    found = {(p.optimizer, p.row): p for p in atlas.pairings(Config(), list(OPTIMIZERS), list(atlas.LIBRARY_ROWS))}
    for name, record in OPTIMIZERS.items():
        for row in atlas.LIBRARY_ROWS:
            call = getattr(record, ROWS[row].library)
            assert ((name, row) in found) == (call is not None), (name, row)
    # Keras's Adam is only the ε-hat form: it runs under its gap's settings, explained from its trajectory
    assert found["adam", "keras"].from_trajectory and found["adam", "keras"].runs.adam == "epshat"
    assert not found["adam", "optax"].from_trajectory


@pytest.mark.parametrize("argv", [["--backends", "numpy"], ["--optimizers", "adam,nope"], ["--epochs", "0"]])
def test_bad_usage_is_one_line_and_exit_2(argv):
    done = run_cli("atlas", *argv)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


OUTSIDE = ("nadam", "radam", "adamax", "rprop", "lion", "adabelief", "yogi")


@pytest.mark.parametrize(
    "optimizer", [pytest.param(o, marks=() if o == "radam" else pytest.mark.slow) for o in OUTSIDE]
)
def test_an_outside_program_from_the_documented_algorithms_agrees(optimizer, tmp_path):
    # written from torch.optim's and optax's docs pages, started from the exported state
    import subprocess
    import sys
    from pathlib import Path

    init, trajectory, out = tmp_path / "init.json", tmp_path / "theirs.csv", tmp_path / "run.json"
    epochs = ("--epochs", "1000")
    done = run_cli("init", "--optimizer", optimizer, *epochs, "--format", "json", "--out", str(init))
    assert done.returncode == 0, done.stderr
    program = Path(__file__).resolve().parent / "outside_optimizers.py"
    subprocess.run([sys.executable, str(program), str(init), str(trajectory)], check=True, timeout=300)
    done = run_cli(
        "--optimizer",
        optimizer,
        *epochs,
        "--backends",
        "numpy",
        "--external",
        f"theirs={trajectory}",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout[-2000:]
    (pair,) = json.loads(out.read_text())["agreement"]
    assert pair["b"] == "theirs" and pair["passed"] and pair["margin"] < 0.5
