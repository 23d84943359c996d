"""No input gives a traceback: Hypothesis drives the command line of every subcommand and
every file the tool reads. Each input ends in one error line and exit 2 with nothing
written, or in a correct run (exit 0, 1 or 3).

Command lines are checked where every check of the input is made: each command's work
starts at one function (``SEAMS``), which the test replaces with one that stops the run.
So thousands of command lines cost milliseconds each, and the checks are the real ones;
what the work does with a valid input is what the rest of the suite and the files and
runs below exercise. Files (trajectories, replays, plug-ins, --env interpreters) go
through real runs of a few epochs.

The quick tier tries QUICK_EXAMPLES command lines per command and a few files of each
kind; the slow tier SLOW_EXAMPLES per command and more files. Each test asserts the count
it tried (``Tried``), so the totals in the docs are what ran.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import COMMANDS, build_parser, main
from tests.conftest import example_plugin_with

ROOT = Path(__file__).resolve().parents[1]
QUICK_EXAMPLES, SLOW_EXAMPLES = 50, 850  # per command: 14 commands, 700 and 11,900 in all
FILE_EXAMPLES = {"quick": 25, "slow": 300}  # per kind of file


class WorkStarted(Exception):
    """Every check of the input passed: the command's work would start here."""


# where each command's work starts, past every check of its input (replay and init run whole)
SEAMS = {
    None: ["harness.commands.run.run_default"],
    "explain": ["harness.engine.pipeline.run_default"],
    "versions": ["harness.engine.pipeline.run_default"],
    "compiled": ["harness.engine.pipeline.run_default"],
    "audit": ["harness.commands.ending.run_grid"],
    "power": ["harness.commands.ending.run_grid"],
    "sweep": ["harness.commands.sweep.train_seeds"],
    "grads": ["harness.gradcheck.check.run_check", "harness.gradcheck.check.run_canaries"],
    "forms": ["harness.commands.forms.run_forms"],
    "lineage": ["harness.commands.lineage.run_lineage"],
    "atlas": ["harness.commands.atlas.run_atlas"],
    "bench": ["harness.commands.bench.run_bench"],
    "replay": [],
    "init": [],
}


def test_every_command_has_a_seam():
    assert set(SEAMS) == set(COMMANDS)


class Tried:
    """Counts the inputs a test tried."""

    def __init__(self):
        self.count = 0


def outcome(argv: list, folder: Path) -> tuple:
    """(exit status or "work", stderr lines) of ``main(argv)`` run in ``folder``."""
    err, out = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                status = main(argv)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            except WorkStarted:
                status = "work"
    finally:
        os.chdir(previous)
    return status, [line for line in err.getvalue().splitlines() if line.strip()]


def assert_one_error_or_a_run(status, lines: list, folder: Path, prog: str) -> None:
    said = [line for line in lines if not line.startswith("notice:")]
    if status == 2:
        assert len(said) == 1 and said[0].startswith(f"{prog}: error: "), lines
        assert list(folder.iterdir()) == [], "an input refused must write nothing"
    else:
        assert status in ("work", 0, 1, 3), (status, lines)
        assert not any("Traceback" in line for line in lines), lines


@contextlib.contextmanager
def seams_stopped(name):
    patches = pytest.MonkeyPatch()

    def stop(*args, **kwargs):
        raise WorkStarted

    for target in SEAMS[name]:
        module, _, attribute = target.rpartition(".")
        patches.setattr(f"{module}.{attribute}", stop)
    try:
        yield
    finally:
        patches.undo()


def hostile_files(folder: Path) -> list:
    """Paths a value may name: missing, a folder, empty, binary, text, a script, a device."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.csv").write_text("")
    (folder / "junk.npz").write_bytes(bytes(range(256)) * 4)
    (folder / "text.txt").write_text("loss,w\n1,2\n")
    (folder / "script.py").write_text("raise SystemExit(3)\n")
    (folder / "a folder").mkdir(exist_ok=True)
    return [
        str(folder / "empty.csv"),
        str(folder / "junk.npz"),
        str(folder / "text.txt"),
        str(folder / "script.py"),
        str(folder / "a folder"),
        str(folder / "missing" / "x.json"),
        "/dev/null",
        "/etc/passwd",
        "/",
    ]


GENERIC = [
    "", " ", "-1", "0", "1", "2", "3", "7", "0.5", "-0.5", "1e-300", "5e-324", "1e400", "-1e400", "nan", "inf",
    "-inf", "1_000", "0x10", "１", "1,", ",", ",,", "a,b", "abc", "numpy", "numpy,numpy", "jax,numpy", "torch",
    "octave", "keras", "numpy:nan-grad", "jax:sigmoid-bias", "x=y", "=", "a=/bin/false", "a=", "ROW@ENV", "adam",
    "adam,sgd", "rmsprop", "float32", "float16", "float64,float32", "1,4", "0.1,1,10", "cpu", "cuda", "cuda:7",
    "mps", "paper", "epshat", "seed", "article", "mse", "half-sse", "--", "-", "-x", "--epochs", "x" * 3000, "🙂",
    "tcp://", "..", "../..",
]  # fmt: skip


def command_lines(name, paths: list):
    """Argument lists for subcommand ``name``: its own options (each a flag or with a value
    from the hostile pool, its choices or a path), repeated or missing, and stray words."""
    parser = build_parser(name)
    values = st.sampled_from(GENERIC + paths)
    pieces = []
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        flag = st.sampled_from(action.option_strings)
        if action.nargs == 0:
            pieces.append(flag.map(lambda f: [f]))
            continue
        choice = st.sampled_from([str(c) for c in action.choices]) if action.choices else values
        pieces.append(st.tuples(flag, st.one_of(values, choice)).map(list))
    pieces.append(values.map(lambda v: [v]))  # a stray word (a positional, for replay)
    return st.lists(st.one_of(*pieces), max_size=7).map(lambda parts: [w for p in parts for w in p])


def fuzz_command_lines(name, examples: int, tmp_path: Path) -> None:
    work, fixtures = tmp_path / "work", tmp_path / "fixtures"
    paths = hostile_files(fixtures)
    prog = "compare.py" if name is None else f"compare.py {name}"
    tried = Tried()

    @settings(max_examples=examples, suppress_health_check=list(HealthCheck), database=None)
    @given(argv=command_lines(name, paths))
    def check(argv):
        tried.count += 1
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        with seams_stopped(name):
            status, lines = outcome(([name] if name else []) + argv, work)
        assert_one_error_or_a_run(status, lines, work, prog)

    check()
    assert tried.count >= examples


@pytest.mark.parametrize("name", list(COMMANDS), ids=lambda n: n or "default")
def test_command_lines_quick(name, tmp_path):
    fuzz_command_lines(name, QUICK_EXAMPLES, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COMMANDS), ids=lambda n: n or "default")
def test_command_lines(name, tmp_path):
    fuzz_command_lines(name, SLOW_EXAMPLES, tmp_path)


# --- files ---------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e308, -1e308, 5e-324, 0.25]),
)
FIELDS = st.one_of(NUMBERS.map(repr), st.sampled_from(["", "nan", "x", "1e999", " 1 ", "0x1", "—", '"1"', "\t"]))


@st.composite
def trajectory_csv(draw) -> str:
    """Text that looks more or less like a trajectory CSV (hidden 1: 5 parameters)."""
    width = draw(st.sampled_from([6, 6, 6, 5, 7, 1, 0]))
    epochs = draw(st.sampled_from([5, 5, 4, 6, 0, 1]))
    lines = [",".join(draw(st.lists(FIELDS, min_size=width, max_size=width))) for _ in range(epochs)]
    if draw(st.booleans()):
        lines.insert(0, draw(st.sampled_from(["loss,W1_1,W1_2,b1,W2,b2", "# a comment", "", "\ufeffloss"])))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"]))


@st.composite
def trajectory_npz(draw) -> dict:
    shapes = st.sampled_from([(5,), (5, 6), (4, 6), (5, 5), (0,), (), (5, 6, 1)])
    kinds = st.sampled_from(["f8", "f4", "i8", "U3", "b", "c16"])
    arrays = {}
    for key in draw(st.sampled_from([("loss", "params"), ("loss",), ("params", "extra"), ("loss", "params", "x")])):
        shape, kind = draw(shapes), draw(kinds)
        values = draw(st.lists(NUMBERS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
        with np.errstate(all="ignore"):  # floats cast to integers: whatever comes out
            arrays[key] = np.asarray(values, dtype=np.float64).reshape(shape).astype(kind)
    return arrays


def run_external(tmp_path: Path, name: str, write) -> tuple:
    work = tmp_path / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    path = tmp_path / name
    write(path)
    argv = ["--epochs", "5", "--hidden", "1", "--backends", "numpy", "--jobs", "1", "--external", f"ext={path}"]
    return outcome(argv, work), work


def fuzz_trajectories(tmp_path: Path, examples: int) -> None:
    tried = Tried()

    @settings(max_examples=examples, suppress_health_check=list(HealthCheck), database=None)
    @given(text=trajectory_csv(), arrays=trajectory_npz())
    def check(text, arrays):
        tried.count += 2
        (status, lines), work = run_external(tmp_path, "t.csv", lambda p: p.write_text(text))
        assert_one_error_or_a_run(status, lines, work, "compare.py")
        (status, lines), work = run_external(tmp_path, "t.npz", lambda p: np.savez(p, **arrays))
        assert_one_error_or_a_run(status, lines, work, "compare.py")

    check()
    assert tried.count >= 2 * examples


def test_trajectory_files_quick(tmp_path):
    fuzz_trajectories(tmp_path, FILE_EXAMPLES["quick"])


@pytest.mark.slow
def test_trajectory_files(tmp_path):
    fuzz_trajectories(tmp_path, FILE_EXAMPLES["slow"])


def test_a_pickled_npz_is_refused_never_loaded(tmp_path):
    """An object array needs pickle to load: the tool refuses it, and nothing it holds runs."""
    marker = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    np.savez(path, loss=np.array([Exploit(str(marker))], dtype=object), params=np.zeros((1, 5)))
    for argv in (["--epochs", "1", "--hidden", "1", "--external", f"e={path}"], ["replay", str(path)]):
        (status, lines) = outcome(argv, tmp_path)
        assert status == 2 and len(lines) == 1 and "error:" in lines[0], lines
    assert not marker.exists()


class Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def replay_file(tmp_path_factory) -> Path:
    """A real replay file: the numpy state before the step where a planted fault parts."""
    from harness.engine.execution import run_row
    from harness.files.replay import write_replay
    from reference.spec import Config

    cfg = Config(epochs=5, hidden=1)
    reference = run_row("numpy", cfg, record_states=True)
    path = tmp_path_factory.mktemp("replay") / "replay.npz"
    write_replay(path, cfg, reference, 3, ("numpy", "torch"), "m", {}, {"python": "3"})
    return path


CONFIG_VALUES = st.one_of(
    NUMBERS, st.integers(-5, 10**12), st.sampled_from(GENERIC), st.none(), st.lists(st.integers(), max_size=2)
)


@st.composite
def replay_records(draw, real: dict) -> dict:
    """A real replay record with some of its entries dropped, swapped for arrays of other
    shapes and values, or its JSON (config, faults, environment) made hostile."""
    record = dict(real)
    for key in draw(st.lists(st.sampled_from(sorted(record)), max_size=3, unique=True)):
        action = draw(st.sampled_from(["drop", "array", "json"]))
        if action == "drop":
            del record[key]
        elif action == "array":
            shape = draw(st.sampled_from([(), (5,), (17,), (5, 1), (0,)]))
            values = draw(st.lists(NUMBERS, min_size=int(np.prod(shape)), max_size=int(np.prod(shape))))
            kind = draw(st.sampled_from(["f8", "f4", "i8", "U8"]))
            with np.errstate(all="ignore"):
                record[key] = np.asarray(values, dtype=np.float64).reshape(shape).astype(kind)
        else:
            base = json.loads(str(real["config"])) if key == "config" else {}
            field = draw(st.sampled_from([*base, "numpy", "torch", "lr", "bogus"]))
            base[field] = draw(CONFIG_VALUES)
            value = draw(st.sampled_from([json.dumps(base), "[]", "null", "{", '"x"', "1"]))
            record[key] = np.array(value)
    return record


def fuzz_replays(replay_file: Path, tmp_path: Path, examples: int) -> None:
    with np.load(replay_file, allow_pickle=False) as data:
        real = {k: data[k] for k in data.files}
    tried = Tried()

    @settings(max_examples=examples, suppress_health_check=list(HealthCheck), database=None)
    @given(record=replay_records(real))
    def check(record):
        tried.count += 1
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        path = tmp_path / "r.npz"
        np.savez(path, **record)
        status, lines = outcome(["replay", str(path)], work)
        assert_one_error_or_a_run(status, lines, work, "compare.py replay")

    check()
    assert tried.count >= examples


def test_replay_files_quick(replay_file, tmp_path):
    fuzz_replays(replay_file, tmp_path, FILE_EXAMPLES["quick"])


@pytest.mark.slow
def test_replay_files(replay_file, tmp_path):
    fuzz_replays(replay_file, tmp_path, FILE_EXAMPLES["slow"])


# A plug-in is Python that runs with the user's rights (docs/bring-your-own.md): the tool
# cannot make a hostile one safe, only report a broken one in one line, or as a row that
# could not run, while the other rows are judged.
PLUGIN_FAULTS = {
    "not Python": "this is not python at all (\n",
    "fails at import": "raise RuntimeError('broken at import')\n",
    "exits at import": "import sys\nsys.exit(3)\n",
    "exits at import, 0": "import sys\nsys.exit(0)\n",
    "no UPDATES": "del UPDATES\n",
    "UPDATES not a dict": "UPDATES = [1, 2]\n",
    "unknown optimizer": "UPDATES = {'adamx': UPDATES['adam']}\n",
    "no forward": "del forward\n",
    "forward not callable": "forward = 3\n",
    "exits in training": "def train(*args, **kwargs):\n    raise SystemExit(5)\n",
    "raises in training": "def train(*args, **kwargs):\n    raise ValueError('no')\n",
    "wrong shapes": "def train(cfg, params0, **kwargs):\n    return [0.0], [[0.0]]\n",
    "NaN loss": "_f = forward\n\ndef forward(params, X):\n    Z1, A1, Z2, A2 = _f(params, X)\n"
    "    return Z1, A1, Z2, A2 * float('nan')\n",
    "wrong step shapes": "def step_phases(cfg, params, slots, t):\n    return {'forward': {}}\n",
    "raises in lockstep": "def step_phases(*args, **kwargs):\n    raise KeyError('phase')\n",
    "returns None": "def train(*args, **kwargs):\n    return None\n",
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", PLUGIN_FAULTS)
def test_a_broken_plugin_is_one_line_or_a_row_that_could_not_run(fault, tmp_path):
    plugin = example_plugin_with(tmp_path, PLUGIN_FAULTS[fault])
    if fault == "not Python":
        plugin.write_text(PLUGIN_FAULTS[fault])
    work = tmp_path / "work"
    work.mkdir()
    argv = ["--epochs", "20", "--backends", "numpy,torch", "--jobs", "1", "--backend-file", str(plugin)]
    status, lines = outcome(argv, work)
    assert_one_error_or_a_run(status, lines, work, "compare.py")
    assert status in (1, 2, 3), (status, lines)


ENV_PYTHONS = {
    "not an interpreter": "#!/bin/sh\necho 'not python'\n",
    "fails": "#!/bin/sh\necho 'something broke' >&2\nexit 3\n",
    "answers garbage": '#!/bin/sh\nfor a; do folder="$a"; done\necho "[1, 2" > "$folder/result.json"\n',
    "hangs": "#!/bin/sh\nsleep 600\n",
}


@pytest.mark.parametrize("kind", ENV_PYTHONS)
def test_an_env_interpreter_that_is_not_python_or_hangs_is_one_line(kind, tmp_path, monkeypatch):
    from backends import env_row

    monkeypatch.setattr(env_row, "PROBE_TIMEOUT_SECONDS", 2)  # the real one is 120 s
    python = tmp_path / "python"
    python.write_text(ENV_PYTHONS[kind])
    python.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    with seams_stopped(None):
        status, lines = outcome(["--epochs", "5", "--env", f"other={python}"], work)
    assert status == 2, lines
    assert_one_error_or_a_run(status, lines, work, "compare.py")


@pytest.mark.slow
def test_outputs_onto_a_full_disk_are_one_line_and_nothing_half_written(tmp_path):
    """RLIMIT_FSIZE stands for a full disk: the npz of every trajectory cannot be written."""
    import subprocess

    out = tmp_path / "out"
    out.mkdir()
    argv = ["--epochs", "3000", "--backends", "numpy,torch", "--save", str(out / "r.npz")]
    argv += ["--json", str(out / "r.json")]
    # the limit set in a small launcher that then becomes compare.py (no fork of this process)
    limited = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000)); "
        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    )
    done = subprocess.run(
        [sys.executable, "-c", limited, str(ROOT / "compare.py"), *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("notice:", "  "))]
    assert done.returncode == 2 and len(lines) == 1 and "cannot write output" in lines[0], done.stderr
    assert "File too large" in lines[0]
    assert list(out.iterdir()) == []


def test_an_unwritable_folder_is_one_line_before_any_work(tmp_path):
    with seams_stopped(None):
        for target in ("/proc/r.json", "/sys/r.json", str(tmp_path / "missing" / "r.json")):
            status, lines = outcome(["--json", target], tmp_path)
            assert status == 2 and len(lines) == 1 and "cannot write" in lines[0], lines
    assert list(tmp_path.iterdir()) == []
