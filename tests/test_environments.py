"""The same row under two environments (``--env NAME=PYTHON``, ``compare.py versions``).

The quick tests use this interpreter as the "other" environment: a row run by another
process of the same libraries must be the same bits, and a fault planted there must be
caught as a change in the computation. The slow ones use a real second environment with
older numpy, jax and optax (the ``old_env`` fixture in conftest.py)."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--epochs", "200"]


def compare(*args, cwd=None):
    return subprocess.run(
        [sys.executable, str(ROOT / "compare.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


def versions_json(tmp_path, *args):
    out = tmp_path / "v.json"
    code = cli_main(["versions", *args, "--json", str(out), "--jobs", "1"])
    return code, json.loads(out.read_text())


@pytest.mark.slow
def test_the_same_libraries_in_another_process_are_the_same_bits(tmp_path, capsys):
    code, data = versions_json(tmp_path, "--env", f"same={sys.executable}", "--backends", "numpy,jax", *SHORT)
    assert code == 0
    assert set(data["rows"]) == {"numpy@same", "jax@same"}
    for row in data["rows"].values():
        assert row["bit_identical"] and row["verdict"] == "bit-identical"
        assert row["trajectory"]["first_difference"] is None and row["lockstep"]["first_difference"] is None
        assert row["lockstep"]["run"] is True
    assert data["environments"]["same"]["python_executable"] == os.path.abspath(sys.executable)
    assert data["environments"]["same"]["numpy"] == np.__version__
    assert "bit-identical: every epoch of the 200 and every phase of every step" in capsys.readouterr().out


@pytest.mark.slow
def test_a_fault_planted_in_the_other_environment_is_a_change_in_the_computation(tmp_path):
    code, data = versions_json(
        tmp_path,
        "--env",
        f"same={sys.executable}",
        "--backends",
        "numpy,jax",
        *SHORT,
        "--inject",
        "jax@same:eps-inside-sqrt",
    )
    assert code == 1 and data["passed"] is False and data["injected"] == {"jax@same": "eps-inside-sqrt"}
    assert data["rows"]["numpy@same"]["bit_identical"]
    jax = data["rows"]["jax@same"]
    assert jax["verdict"] == "computation changed (update first)"
    first = jax["lockstep"]["first_difference"]
    assert (first["epoch"], first["phase"]) == (1, "update") and first["ulps"] > 1e6
    assert jax["trajectory"]["first_difference"]["epoch"] == 1 and not jax["trajectory"]["passed"]


@pytest.mark.slow
def test_the_default_run_pairs_each_row_with_its_twin_first(tmp_path, capsys):
    out = tmp_path / "run.json"
    code = cli_main(
        ["--env", f"same={sys.executable}", "--backends", "numpy,jax", *SHORT, "--json", str(out), "--jobs", "1"]
    )
    assert code == 0
    data = json.loads(out.read_text())
    pairs = [(p["a"], p["b"]) for p in data["agreement"]]
    assert pairs == [("numpy", "numpy@same"), ("jax", "jax@same"), ("numpy", "jax"), ("numpy", "jax@same")]
    assert data["agreement"][1]["bit_identical"] and data["agreement"][1]["environment"] == "same"
    assert data["backends"]["jax@same"]["environment"] == "same"
    assert data["backends"]["jax@same"]["versions"]["jax"] == data["environments"]["same"]["jax"]
    assert data["backends"]["jax"]["versions"]["numpy"] == data["environments"]["here"]["numpy"]
    text = capsys.readouterr().out
    assert "jax vs jax@same" in text and "bit-identical" in text and "jax@same " in text.split("lockstep:")[1]


def _fake_python(tmp_path, body: str) -> str:
    """An executable that answers the worker's request as ``body`` (shell) does."""
    path = tmp_path / "fakepython"
    path.write_text('#!/bin/sh\nfolder="$3"\n' + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize(
    "value, message",
    [
        ("old", "expected NAME=PYTHON"),
        ("1x=/usr/bin/python3", "expected NAME=PYTHON"),
        ("here=/usr/bin/python3", "the name 'here' is taken by this environment"),
        ("old=/no/such/python", "no such file"),
        ("old={tmp}/plain.txt", "not an executable file"),
        ("old={tmp}/garbage", "Exec format error"),
    ],
)
def test_a_bad_env_value_is_one_line_and_exit_2(value, message, tmp_path, capsys):
    (tmp_path / "plain.txt").write_text("print(1)\n")
    (tmp_path / "garbage").write_bytes(b"\x7fELF garbage")
    (tmp_path / "garbage").chmod(0o755)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["versions", "--env", value.format(tmp=tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err.strip().splitlines()[-1] and "Traceback" not in err


def test_an_interpreter_without_the_project_is_refused_with_how_to_install(tmp_path, capsys):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(SystemExit) as exit_:
        cli_main(["versions", "--env", f"bare={bare / 'bin' / 'python'}"])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "No module named" in last and "pip install -e . --no-deps" in last


def test_an_answer_with_pickled_arrays_is_refused_unread(tmp_path):
    from backends.env_row import RemoteError, call

    pickled = tmp_path / "evil.npz"
    np.savez(pickled, loss=np.array([{"evil": 1}], dtype=object))
    python = _fake_python(tmp_path, f'echo "{{}}" > "$folder/result.json"; cp {pickled} "$folder/result.npz"')
    with pytest.raises(RemoteError, match="not an archive of plain arrays"):
        call(python, "train", {})


def test_a_trajectory_of_the_wrong_shape_is_refused(tmp_path):
    import backends
    from backends.env_row import EnvRow
    from reference.spec import Config, initial_params

    short = tmp_path / "short.npz"
    np.savez(short, loss=np.zeros(3), params=np.zeros((4, 17)))
    python = _fake_python(tmp_path, f'echo "{{}}" > "$folder/result.json"; cp {short} "$folder/result.npz"')
    with pytest.raises(backends.RowFailed, match=r"loss should be \(200,\) floats, got \(3,\)"):
        EnvRow("numpy", "fake", python).train(Config(epochs=200), initial_params(0))


def test_a_worker_that_fails_says_why_in_one_line(tmp_path):
    from backends.env_row import RemoteError, call

    python = _fake_python(tmp_path, 'echo "something broke" >&2; exit 3')
    with pytest.raises(RemoteError, match="^something broke$"):
        call(python, "probe", {})


def test_versions_compares_python_rows_only(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["versions", "--env", f"same={sys.executable}", "--backends", "numpy,octave"])
    assert exit_.value.code == 2
    assert "octave is not a Python row" in capsys.readouterr().err


# --- a real second environment: numpy 1.26, jax 0.4.30, optax 0.2.3 --------------------------


@pytest.fixture(scope="module")
def old_versions(old_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("versions") / "v.json"
    done = compare(
        "versions", "--env", f"old={old_env}", "--backends", "numpy,jax,optax", "--epochs", "2000", "--json", str(out)
    )
    return done, json.loads(out.read_text()) if out.exists() else None


def test_older_libraries_agree_to_rounding_and_say_where_they_first_differ(old_versions):
    done, data = old_versions
    assert done.returncode == 0, done.stderr[-2000:]
    old = data["environments"]["old"]
    assert (old["numpy"], old["jax"], old["jaxlib"], old["optax"]) == ("1.26.4", "0.4.30", "0.4.30", "0.2.3")
    assert data["environments"]["here"]["jax"] != old["jax"]
    for name, row in data["rows"].items():
        assert row["verdict"] in ("bit-identical", "rounding level"), (name, row["verdict"])
        assert row["lockstep"]["max_ulp"] <= row["lockstep"]["allowed_ulp"]
        first = row["lockstep"]["first_difference"]
        if not row["bit_identical"] and first is not None:  # located: an epoch, a phase, an element
            assert first["epoch"] >= 1 and first["phase"] in row["lockstep"]["phases"] and first["ulps"] > 0
    assert "rows agree across the environments" in done.stdout


def test_the_default_run_with_an_older_environment_skips_what_it_lacks(old_env, tmp_path):
    out = tmp_path / "run.json"
    done = compare("--env", f"old={old_env}", "--backends", "numpy,jax,torch", "--epochs", "300", "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "notice: skipping: torch@old row unavailable: torch is not installed in old" in done.stderr
    data = json.loads(out.read_text())
    assert [(p["a"], p["b"]) for p in data["agreement"]][:2] == [("numpy", "numpy@old"), ("jax", "jax@old")]
    assert data["backends"]["numpy@old"]["versions"]["numpy"] == "1.26.4"
    assert "numpy@old" in data["backends"] and "torch@old" not in data["backends"]


def test_goldens_made_in_the_older_environment_say_where_they_differ(old_env, tmp_path):
    """Goldens made by the other interpreter, compared here as pytest compares the stored
    ones: the environment's changes are named, and where the bits differ, the first
    step and phase."""
    from harness.files.golden import compare_with_golden
    from reference.golden import load_golden

    done = subprocess.run(
        [old_env, "-m", "harness.files.golden", "--folder", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    golden = load_golden(0, tmp_path)
    assert golden["environment"]["numpy"] == "1.26.4"
    result = compare_with_golden(golden)
    assert result["environment_changes"]["numpy"] == ["1.26.4", np.__version__]
    if not result["bit_identical"]:
        first = result["first_difference"]
        assert first["epoch"] >= 1 and first["phase"] in [str(p) for p in golden["phases"]]


@pytest.mark.slow
def test_a_float32_difference_is_counted_in_float32_ulps(tmp_path):
    code, data = versions_json(
        tmp_path,
        "--env",
        f"same={sys.executable}",
        "--backends",
        "numpy",
        "--epochs",
        "50",
        "--dtype",
        "float32",
        "--inject",
        "numpy@same:grad-missing-2-over-n",
    )
    assert code == 1
    for first in (
        data["rows"]["numpy@same"]["lockstep"]["first_difference"],
        data["rows"]["numpy@same"]["trajectory"]["first_difference"],
    ):
        spacing = float(np.spacing(np.float32(abs(first["reference"]))))
        assert first["ulps"] == pytest.approx(abs(first["value"] - first["reference"]) / spacing)
