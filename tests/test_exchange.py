"""Bring your own implementation: the exported initial state, trajectories from files,
plug-in backends and the Octave row."""

import json

import numpy as np
import pytest

import backends
from harness.engine.execution import run_row
from harness.engine.pipeline import run_default
from harness.files.exchange import write_trajectory_csv
from reference.spec import PARAM_NAMES, Config, flatten_params, initial_params, unflatten_params, xor_data
from tests.test_cli import ROOT, run_cli

EXAMPLE = ROOT / "examples" / "plugin_backend.py"


def error_lines(result):
    return [line for line in result.stderr.splitlines() if "error:" in line]


# --- the initial state out -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "csv", "npz"])
def test_init_writes_the_exact_initial_state(fmt, tmp_path):
    out = tmp_path / f"init.{fmt}"
    result = run_cli("init", "--seed", "3", "--hidden", "5", "--lr", "0.01", "--out", str(out))
    assert result.returncode == 0, result.stderr
    want = initial_params(3, 5)
    X, y = xor_data()
    if fmt == "json":
        data = json.loads(out.read_text())
        got = {k: np.array(v) for k, v in data["params"].items()}
        assert data["shapes"] == {k: list(v.shape) for k, v in want.items()}
        assert data["config"]["lr"] == 0.01 and data["config"]["hidden"] == 5
        np.testing.assert_array_equal(np.array(data["flat"]), flatten_params(want))
        np.testing.assert_array_equal(np.array(data["X"]), X)
    elif fmt == "csv":
        lines = out.read_text().splitlines()
        assert lines[0] == "section,name,row,col,value"
        got = {k: np.zeros(v.shape) for k, v in want.items()}
        for line in lines[1:]:
            section, name, r, c, value = line.split(",")
            if section == "param":
                got[name][int(r), int(c)] = float(value)
        assert "config,lr,,,0.01" in lines
    else:
        with np.load(out, allow_pickle=False) as data:
            got = {k: data[k] for k in PARAM_NAMES}
            np.testing.assert_array_equal(data["y"], y)
            assert json.loads(str(data["config"]))["seed"] == 3
    for k in PARAM_NAMES:
        np.testing.assert_array_equal(got[k], want[k])  # bit for bit


@pytest.mark.parametrize(
    "args,named",
    [
        (["--out", "x.txt"], "--format"),
        (["--out", "missing-folder/init.json"], "missing-folder"),
        (["--format", "xml", "--out", "x.xml"], "--format"),
        (["--seed", "-1", "--out", "x.json"], "--seed"),
    ],
)
def test_init_bad_input_is_one_line_and_no_file(args, named, tmp_path):
    result = run_cli("init", *args, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(error_lines(result)) == 1 and named in error_lines(result)[0]
    assert list(tmp_path.iterdir()) == []


# --- trajectories in -----------------------------------------------------------------------------

EPOCHS = 400


@pytest.fixture(scope="module")
def numpy_files(tmp_path_factory):
    """The numpy row's trajectory written as another program would, and damaged copies."""
    folder = tmp_path_factory.mktemp("external")
    run = run_row("numpy", Config(epochs=EPOCHS))
    loss, params = run.loss, run.params[1:]
    write_trajectory_csv(folder / "good.csv", loss, params, 4)
    np.savez(folder / "good.npz", loss=loss, params=params)
    lines = (folder / "good.csv").read_text().splitlines()

    def damaged(name, edit):
        copy = list(lines)
        edit(copy)
        (folder / name).write_text("\n".join(copy) + "\n")

    damaged("columns.csv", lambda c: c.__setitem__(7, c[7] + ",0.5"))
    damaged(
        "nan.csv", lambda c: c.__setitem__(12, ",".join(f if i != 5 else "nan" for i, f in enumerate(c[12].split(","))))
    )
    damaged("short.csv", lambda c: c.__delitem__(slice(300, None)))
    damaged("long.csv", lambda c: c.append(c[-1]))
    damaged("text.csv", lambda c: c.__setitem__(3, c[3].replace(",", ",abc,", 1).replace(",abc,", ",abc", 1)))
    column_major = np.array(
        [np.concatenate([unflatten_params(p, 4)[k].T.ravel() for k in PARAM_NAMES]) for p in params]
    )
    write_trajectory_csv(folder / "column_major.csv", loss, column_major, 4)
    write_trajectory_csv(folder / "shuffled.csv", loss, params[:, np.random.default_rng(0).permutation(17)], 4)
    other_seed = run_row("numpy", Config(epochs=EPOCHS, seed=1))
    write_trajectory_csv(folder / "other_seed.csv", other_seed.loss, other_seed.params[1:], 4)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "npz"])
def test_export_and_import_reproduce_the_numpy_row_exactly(fmt, numpy_files, tmp_path):
    out = tmp_path / "r.json"
    result = run_cli(
        "--backends",
        "numpy",
        "--epochs",
        str(EPOCHS),
        "--external",
        f"mine={numpy_files / f'good.{fmt}'}",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    (pair,) = json.loads(out.read_text())["agreement"]
    assert pair["b"] == "mine" and pair["max_abs_param_diff"] == 0.0 and pair["max_abs_loss_diff"] == 0.0
    assert "no lockstep for mine (another program's trajectory" in result.stdout


@pytest.mark.parametrize(
    "name,problem",
    [
        ("columns.csv", "line 8: 19 columns, the lines before have 18"),
        ("nan.csv", "line 13, column 6: NaN where a finite number is expected"),
        ("short.csv", "299 epochs, fewer than the 400 asked"),
        ("long.csv", "line 402: 401 epochs, more than the 400 asked"),
        ("text.csv", "line 4, column 2: not a number"),
        ("column_major.csv", "line 2: the parameters are in column-major order"),
        ("shuffled.csv", "line 2: the parameters are the initial weights in another order"),
        ("other_seed.csv", "line 2: epoch 1 is"),
        ("absent.csv", "no such file"),
    ],
)
@pytest.mark.slow
def test_a_malformed_trajectory_is_one_line_naming_file_line_and_problem(name, problem, numpy_files, tmp_path):
    result = run_cli(
        "--backends",
        "numpy",
        "--epochs",
        str(EPOCHS),
        "--external",
        f"mine={numpy_files / name}",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert name in line and problem in line, line
    assert list(tmp_path.iterdir()) == []


def test_an_external_row_that_differs_is_found_where_it_parts(numpy_files, tmp_path):
    run = run_row("numpy", Config(epochs=EPOCHS))
    params = run.params[1:].copy()
    params[199:, 3] += 1e-9  # from epoch 200 on, one parameter is off
    write_trajectory_csv(tmp_path / "off.csv", run.loss, params, 4)
    result = run_cli(
        "--backends",
        "numpy",
        "--epochs",
        str(EPOCHS),
        "--external",
        f"off={tmp_path / 'off.csv'}",
        "--json",
        str(tmp_path / "r.json"),
        "--replay-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
    (pair,) = json.loads((tmp_path / "r.json").read_text())["agreement"]
    assert pair["first_divergence"]["epoch"] == 200 and pair["first_divergence"]["found_by"] == "free-running"


# --- plug-in backends -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["numpy", "jax", "torch"])
def test_every_built_in_backend_implements_the_whole_interface(name):
    from tests.conftest import load_backend

    module = load_backend(name)
    assert [n for n in backends.INTERFACE if not hasattr(module, n)] == []


def test_the_example_plug_in_implements_the_interface():
    import ast

    tree = ast.parse(EXAMPLE.read_text())
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    defined |= {
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    }
    assert set(backends.REQUIRED) <= defined  # the file itself defines what is required
    module = backends.load_file(EXAMPLE)
    assert [n for n in backends.INTERFACE if not hasattr(module, n)] == []  # and is completed to the whole
    assert set(module.UPDATES) == {"sgd", "adam"}


@pytest.mark.slow
def test_the_example_plug_in_runs_as_a_full_row(tmp_path):
    out = tmp_path / "r.json"
    result = run_cli("--backends", "numpy,jax", "--epochs", "300", "--backend-file", str(EXAMPLE), "--json", str(out))
    assert result.returncode == 0, result.stderr
    pairs = {p["b"]: p for p in json.loads(out.read_text())["agreement"]}
    assert pairs["example"]["passed"] and pairs["example"]["lockstep_max_ulp"] <= 2.0
    assert set(pairs["example"]["lockstep"]) == {"forward", "loss", "grads", "m", "v", "update", "params"}


@pytest.mark.slow
def test_a_plug_in_rows_divergence_replays_in_the_plug_in(tmp_path):
    failing = run_cli(
        "--backends",
        "numpy",
        "--epochs",
        "50",
        "--backend-file",
        str(EXAMPLE),
        "--inject",
        "example:grad-missing-2-over-n",
        "--replay-dir",
        str(tmp_path),
    )
    assert failing.returncode == 1
    replay_file = tmp_path / "replay_example_epoch1.npz"
    again = run_cli("replay", str(replay_file), "--backends", "numpy,jax", "--backend-file", str(EXAMPLE))
    assert again.returncode == 1 and "example: first differs in grads" in again.stdout
    assert "\njax " in again.stdout  # the built-in rows step like numpy


def test_a_fault_planted_in_the_plug_in_is_caught_in_its_phase():
    from harness.engine.rows import register_plugin

    register_plugin(EXAMPLE)
    results = run_default(Config(epochs=60), ["numpy", "example"], "cpu", 1, {"example": "grad-missing-2-over-n"})
    (pair,) = results.pairs
    assert not pair.passed and pair.first_divergence["phase"] == "grads"
    assert pair.first_divergence["epoch"] == 1


@pytest.mark.parametrize(
    "source,problem",
    [
        (EXAMPLE.read_text().replace("def loss_and_grads(", "def loss_and_gradients("), "missing loss_and_grads"),
        ("raise RuntimeError('boom')\n", "importing it failed: RuntimeError: boom"),
        (
            EXAMPLE.read_text().replace('UPDATES = {"sgd": sgd, "adam": adam}', 'UPDATES = {"lamb": adam}'),
            "unknown optimizer 'lamb'",
        ),
        (EXAMPLE.read_text().replace('NAME = "example"', 'NAME = "jax"'), "NAME 'jax' is taken"),
    ],
)
@pytest.mark.slow
def test_a_broken_plug_in_is_one_line_naming_the_problem(source, problem, tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(source)
    result = run_cli("--backends", "numpy,jax", "--epochs", "10", "--backend-file", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = error_lines(result)
    assert "mine.py" in line and problem in line, line


def test_a_plug_in_without_the_runs_optimizer_is_refused():
    result = run_cli("--optimizer", "rmsprop", "--epochs", "10", "--backend-file", str(EXAMPLE))
    assert result.returncode == 2 and "its UPDATES have sgd, adam, not rmsprop" in error_lines(result)[0]
