"""``python compare.py`` as a user runs it: in a subprocess, output files, exit codes,
bad input and missing frameworks."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the default rows; the language rows join them where their programs are on PATH
ROW_NAMES = ["numpy", "jax", "torch", "torch.optim", "optax"] + [
    row for row, program in (("octave", "octave-cli"), ("scilab", "scilab-cli")) if shutil.which(program)
]


def run_cli(*args, env_extra=None, cwd=ROOT):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), *args],
        cwd=cwd,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    pytest.importorskip("torch"), pytest.importorskip("jax"), pytest.importorskip("optax")
    out = tmp_path_factory.mktemp("run")
    result = run_cli(
        "--epochs",
        "3000",
        "--seed",
        "1",
        "--json",
        str(out / "r.json"),
        "--save",
        str(out / "t.npz"),
        "--plot",
        str(out / "plots"),
    )
    return result, out


@pytest.mark.slow
def test_default_run_prints_the_table_and_exits_0(full_run):
    result, _ = full_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ROW_NAMES:
        assert f"\n{name} " in result.stdout
        assert f"numpy vs {name}" in result.stdout or name == "numpy"
    assert f"all {len(ROW_NAMES) - 1} pairs agree" in result.stdout


def test_json_carries_the_documented_names(full_run):
    _, out = full_run
    data = json.loads((out / "r.json").read_text())
    assert {"config", "environment", "backends", "agreement", "passed"} <= set(data)
    assert data["passed"] is True
    assert data["config"]["epochs"] == 3000 and data["config"]["seed"] == 1
    for key in ("python", "numpy", "jax", "jaxlib", "torch", "optax", "platform"):
        assert data["environment"][key], key
    assert list(data["backends"]) == ROW_NAMES
    for row in data["backends"].values():
        assert {"final_loss", "final_params", "predictions", "seconds", "us_per_epoch"} <= set(row)
        assert np.array(row["final_params"]["W1"]).shape == (2, 4)
        assert np.array(row["final_params"]["b1"]).shape == (1, 4)
        assert np.array(row["final_params"]["W2"]).shape == (4, 1)
        assert np.array(row["final_params"]["b2"]).shape == (1, 1)
        assert len(row["predictions"]) == 4
    assert len(data["agreement"]) == len(ROW_NAMES) - 1
    for entry in data["agreement"]:
        assert set(entry) >= {
            "a",
            "b",
            "max_abs_param_diff",
            "max_abs_loss_diff",
            "first_epoch_over_tolerance",
            "tolerance",
            "passed",
        }
        assert entry["a"] == "numpy" and entry["passed"] is True
        assert entry["max_abs_param_diff"] < entry["tolerance"]


def test_npz_holds_every_rows_trajectory(full_run):
    _, out = full_run
    with np.load(out / "t.npz", allow_pickle=False) as data:
        assert sorted(data.files) == sorted(f"{n}/{k}" for n in ROW_NAMES for k in ("loss", "params"))
        for name in ROW_NAMES:
            assert data[f"{name}/loss"].shape == (3000,)
            assert data[f"{name}/params"].shape == (3001, 17)
        from reference.spec import flatten_params, initial_params

        np.testing.assert_array_equal(data["torch/params"][0], flatten_params(initial_params(1)))
        json_loss = json.loads((out / "r.json").read_text())["backends"]["jax"]["final_loss"]
        assert data["jax/loss"][-1] == json_loss


def test_plot_writes_png_figures(full_run):
    _, out = full_run
    names = sorted(p.name for p in (out / "plots").iterdir())
    expected = sorted(
        [f"{n}_{k}.png" for n in ROW_NAMES for k in ("decision", "loss")]
        + ["loss_all_rows.png"]
        + [f"drift_numpy_vs_{n}.png" for n in ROW_NAMES[1:]]
    )
    assert names == expected
    for path in (out / "plots").iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000


@pytest.mark.slow
def test_chaotic_training_is_told_apart_from_a_real_difference(tmp_path):
    # lr 0.05, seed 3: training is chaotic, so rounding differences between two correct
    # rows grow until the trajectories part by ~0.5 (here). The envelope of one-ULP
    # perturbations grows with them, and lockstep stays at rounding level: the rows agree.
    # Whether numpy and JAX round apart at all is the platform's business; that the
    # numpy row's own one-ULP nudges part by O(1) is the case's mechanism, and is asserted.
    pytest.importorskip("jax")
    result = run_cli("--backends", "numpy,jax", "--lr", "0.05", "--seed", "3", "--json", str(tmp_path / "c.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    (pair,) = json.loads((tmp_path / "c.json").read_text())["agreement"]
    assert pair["chaotic"] and pair["tolerance"] > 1e-2
    assert pair["passed"] and pair["lockstep_max_ulp"] < 8


@pytest.mark.slow
def test_a_planted_fault_exits_1_with_where_and_a_replay_file(tmp_path):
    pytest.importorskip("jax")
    result = run_cli(
        "--backends",
        "numpy,jax",
        "--epochs",
        "300",
        "--inject",
        "jax:eps-inside-sqrt",
        "--json",
        str(tmp_path / "f.json"),
        "--replay-dir",
        str(tmp_path),
    )
    assert result.returncode == 1, result.stderr
    assert "numpy vs jax first part at epoch 1, phase update" in result.stdout
    (pair,) = json.loads((tmp_path / "f.json").read_text())["agreement"]
    divergence = pair["first_divergence"]
    assert (divergence["epoch"], divergence["phase"]) == (1, "update")
    assert divergence["tensor"] in ("W1", "b1", "W2", "b2") and len(divergence["index"]) == 2
    assert "16 × the envelope" in pair["tolerance_source"] and pair["margin"] >= 0
    assert pair["lockstep_max_ulp"] > 8 and not pair["passed"]
    replay = tmp_path / "replay_jax_epoch1.npz"
    assert replay.exists()
    again = run_cli("replay", str(replay), "--backends", "numpy,jax")
    assert again.returncode == 1 and "jax: first differs in update" in again.stdout


BAD_INPUTS = {
    "epochs zero": (["--epochs", "0"], "--epochs"),
    "epochs negative": (["--epochs", "-5"], "--epochs"),
    "epochs not a number": (["--epochs", "abc"], "--epochs"),
    "lr nan": (["--lr", "nan"], "--lr"),
    "lr negative": (["--lr", "-1"], "--lr"),
    "dtype float16": (["--dtype", "float16"], "--dtype"),
    "unknown backend": (["--backends", "numpy,nosuch"], "nosuch"),
    "hidden zero": (["--hidden", "0"], "--hidden"),
    "unknown option": (["--nosuch"], "--nosuch"),
    "unknown optimizer": (["--optimizer", "lamb"], "--optimizer"),
    "negative momentum": (["--optimizer", "momentum", "--momentum", "-0.5"], "momentum must be in [0, 1)"),
    "rho at 1": (["--optimizer", "rmsprop", "--rho", "1"], "rho must be in [0, 1)"),
    "rho above 1 for adadelta": (["--optimizer", "adadelta", "--rho", "1.5"], "rho must be in [0, 1)"),
    "negative weight decay": (["--optimizer", "adamw", "--weight-decay", "-0.1"], "weight_decay"),
    "negative initial accumulator": (["--optimizer", "adagrad", "--initial-accumulator", "-1"], "initial_accumulator"),
    "adadelta without eps": (["--optimizer", "adadelta", "--eps", "0"], "eps must be > 0 for adadelta"),
    "beta1 at 1": (["--beta1", "1"], "beta1 must be in [0, 1)"),
    "momentum for adam": (["--momentum", "0.9"], "--momentum: does not apply to --optimizer adam"),
    "rho for sgd": (["--optimizer", "sgd", "--rho", "0.9"], "--rho: does not apply"),
    "adam form for sgd": (["--optimizer", "sgd", "--adam", "seed"], "--adam"),
    "recipe for rmsprop": (["--optimizer", "rmsprop", "--recipe", "seed"], "--recipe"),
    "adam fault in rmsprop": (["--optimizer", "rmsprop", "--inject", "numpy:eps-inside-sqrt"], "--inject"),
    "keras for radam": (["--optimizer", "radam", "--backends", "numpy,keras"], "keras"),
    "lineage with a learning rate": (["lineage", "--lr", "0.1"], "--lr"),
    "lineage on keras": (["lineage", "--backends", "numpy,keras"], "keras"),
    "too large for memory": (["--hidden", "100000"], "GiB of memory"),
    "sweep too large for memory": (["sweep", "--seeds", "1000000", "--every", "1"], "--every"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_exit_2_and_no_file(case, tmp_path):
    args, named = BAD_INPUTS[case]
    target = tmp_path / "out.json"
    result = run_cli(*args, "--json", str(target))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and named in errors[0], result.stderr
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_a_run_too_large_is_refused_with_its_estimate_and_what_to_change(tmp_path):
    result = run_cli("--hidden", "100000", "--save", str(tmp_path / "t.npz"))
    assert result.returncode == 2 and result.stdout == "" and list(tmp_path.iterdir()) == []
    (line,) = result.stderr.splitlines()
    assert "would need about" in line and "GiB available here" in line and "--epochs" in line


@pytest.mark.slow
def test_absurd_learning_rates_leak_no_numpy_warning(tmp_path):
    pytest.importorskip("jax")
    result = run_cli("--lr", "1e300", "--epochs", "200", "--backends", "numpy,jax", "--plot", str(tmp_path))
    assert result.returncode in (0, 1), result.stderr
    assert "Warning" not in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "numpy_decision.png").exists()


@pytest.mark.parametrize("path", ["missing-folder/out.json", "."])
def test_unwritable_json_path_fails_before_any_work(path, tmp_path):
    result = run_cli("--epochs", "10", "--json", path, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "error:" in result.stderr and result.stdout == ""
    assert [p.name for p in tmp_path.iterdir()] == []


def _blocking(tmp_path, *modules):
    """A folder that, put first on PYTHONPATH, makes ``modules`` fail to import."""
    for module in modules:
        package = tmp_path / "blocked" / module
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n"
        )
    return {"PYTHONPATH": str(tmp_path / "blocked") + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.slow
def test_missing_framework_rows_are_skipped_with_a_notice(tmp_path):
    pytest.importorskip("jax"), pytest.importorskip("optax")
    result = run_cli("--epochs", "200", env_extra=_blocking(tmp_path, "torch"))
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if line.startswith("notice:")]
    assert len(notices) == 2 and all("torch" in line for line in notices)
    assert "numpy vs jax" in result.stdout and "numpy vs optax" in result.stdout
    assert "numpy vs torch" not in result.stdout


def test_naming_a_missing_framework_is_an_error(tmp_path):
    result = run_cli("--epochs", "200", "--backends", "numpy,jax", env_extra=_blocking(tmp_path, "jax"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "cannot import jax" in result.stderr
    assert result.stdout == ""


def test_help_lists_every_option():
    result = run_cli("--help")
    assert result.returncode == 0
    for option in ("--epochs", "--seed", "--lr", "--hidden", "--dtype", "--backends", "--json", "--save", "--plot"):
        assert option in result.stdout


@pytest.mark.slow
def test_rows_in_parallel_processes_give_the_same_trajectories(tmp_path):
    pytest.importorskip("torch"), pytest.importorskip("jax")
    runs = {}
    for jobs in ("1", "2"):
        result = run_cli(
            "--epochs", "300", "--backends", "numpy,torch,jax", "--jobs", jobs, "--save", str(tmp_path / f"j{jobs}.npz")
        )
        assert result.returncode == 0, result.stderr
        with np.load(tmp_path / f"j{jobs}.npz", allow_pickle=False) as data:
            runs[jobs] = {k: data[k] for k in data.files}
    assert runs["1"].keys() == runs["2"].keys()
    for key in runs["1"]:
        np.testing.assert_array_equal(runs["1"][key], runs["2"][key])


def test_cuda_without_a_gpu_is_a_one_line_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = run_cli("--device", "cuda", "--epochs", "10", "--backends", "numpy,torch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "cuda" in errors[0]


def test_the_json_times_every_task_and_bench_breaks_the_run_down(full_run):
    """The default run's timeline: every row's training and lockstep, the envelope runs,
    in worker processes, and the main process's steps; bench's breakdown reads it."""
    from harness.commands.bench import breakdown, render_breakdown

    _, out = full_run
    data = json.loads((out / "r.json").read_text())
    timings = data["timings"]
    expected = {f"train {n}" for n in ROW_NAMES} | {f"lockstep {n}" for n in ROW_NAMES[1:]} | {"envelope runs"}
    assert set(timings["tasks"]) == expected
    span = timings["main"]["training and lockstep"]
    for label, cost in timings["tasks"].items():
        assert timings["started"] <= cost["start"] <= cost["end"] <= timings["started"] + span + 1e-3, label
        assert 0 <= cost["thread_cpu"] <= cost["cpu"] + 1e-3, label
    assert sum(sum(c["imports"].values()) for c in timings["tasks"].values()) > 0  # torch and jax, at least
    for step in ("envelope and comparison", "verdicts", "report", "plots"):
        assert timings["main"][step] >= 0, step
    run = breakdown(
        timings,
        timings["started"] - 0.5,
        timings["started"] + sum(timings["main"].values()) + 1.0,
        sorted(data["backends"]),
    )
    phases = {p["phase"]: p for p in run["phases"]}
    assert phases["start-up and imports"]["seconds"] == pytest.approx(0.5)
    assert phases["the rest (replay files, JSON, exit)"]["seconds"] == pytest.approx(1.0)
    assert {p["process"] for p in run["phases"]} == {"main"} | {f"worker {i + 1}" for i in range(run["workers"])}
    assert (
        phases["train numpy"]["seconds"]
        <= timings["tasks"]["train numpy"]["end"] - timings["tasks"]["train numpy"]["start"]
    )
    assert 0 < run["workers_busy"] <= 1
    assert phases["train numpy"]["cpu_seconds"] > 0 and phases["verdicts"]["cpu_seconds"] is None
    text = "\n".join(render_breakdown(run))
    assert "lockstep torch" in text and "envelope runs" in text and "plots" in text


@pytest.mark.slow
def test_bench_prints_its_figures(tmp_path):
    pytest.importorskip("torch"), pytest.importorskip("jax")
    result = run_cli(
        "bench",
        "--epochs",
        "100",
        "--repeat",
        "2",
        "--no-wall",
        "--backends",
        "numpy,torch,jax",
        "--sweep",
        "3",
        "--json",
        str(tmp_path / "b.json"),
    )
    assert result.returncode == 0, result.stderr
    for label in ("numpy", "torch", "jax", "TorchScript", "article numpy loop", "import seconds", "a sweep of 3"):
        assert label in result.stdout
    data = json.loads((tmp_path / "b.json").read_text())
    sweep = data["sweep"]  # every task of the sweep, timed in the worker that ran it
    assert {t["task"] for t in sweep["tasks"]} == {"numpy 0", "torch 0", "jax 0", "perturbed 0"}
    assert all(t["seconds"] > 0 and t["cpu_seconds"] > 0 and t["start"] >= 0 for t in sweep["tasks"])
    assert sweep["wall_seconds"] > max(t["seconds"] for t in sweep["tasks"]) and sweep["peak_memory_mib"]["main"] > 0
    for name in ("numpy", "torch", "jax"):
        us = data["rows"][name]["us_per_epoch"]
        assert 0 < us["min"] <= us["median"] <= us["max"] and us["runs"] == 2
        assert data["rows"][name]["vs_seed_loop"] > 0
    assert data["rows"]["jax"]["compile_seconds"]["median"] > 0
    assert data["import_seconds"]["torch"] > 0
    if "us_per_epoch" in data["floor"]:  # a C compiler was found
        # The C loop trains the same network: the same final loss to rounding.
        assert data["floor"]["final_loss"] == pytest.approx(data["rows"]["numpy"]["final_loss"], rel=1e-12)
        assert "C loop (floor)" in result.stdout
    else:
        assert "not measured" in result.stdout


@pytest.mark.slow
def test_without_the_numpy_row_the_fixed_rule_applies_and_no_lockstep_is_claimed(tmp_path):
    pytest.importorskip("torch"), pytest.importorskip("jax")
    result = run_cli("--backends", "jax,torch", "--epochs", "200", "--json", str(tmp_path / "j.json"))
    assert result.returncode == 0, result.stderr
    assert "no lockstep: it needs the numpy row" in result.stdout
    (pair,) = json.loads((tmp_path / "j.json").read_text())["agreement"]
    assert pair["tolerance_source"] == "fixed rule" and "lockstep_max_ulp" not in pair
    flipped = run_cli("--backends", "torch,numpy", "--epochs", "200", "--json", str(tmp_path / "f.json"))
    (pair,) = json.loads((tmp_path / "f.json").read_text())["agreement"]
    assert flipped.returncode == 0 and pair["lockstep_max_ulp"] < 8  # torch vs numpy: lockstep applies
