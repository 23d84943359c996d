"""Every process the tool starts ends with it (harness.engine.lifetime): Ctrl-C and
SIGTERM sent to real runs, in a process group of their own, and then no process of the
run left, found by a tag in their environment that every descendant inherits (one that
left the group would still carry it). A row whose worker dies or whose program hangs
is reported as "could not run", with exit status 3, and every other row is still judged.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import example_plugin_with

ROOT = Path(__file__).resolve().parents[1]
# seconds from the signal to the exit that the test accepts: what it catches is a run that
# does not end; how soon it ends (the target is 2 s) is benchmarks/interrupt.py's to measure,
# since a test that times it fails on a loaded machine, not on slow code
EXIT_SECONDS = 15.0


class Run:
    """``compare.py ARGS`` in a session (process group) of its own, tagged."""

    def __init__(self, args, cwd: Path, env_extra: dict | None = None):
        self.tag = uuid.uuid4().hex
        env = dict(os.environ, XOR_TEST_RUN_TAG=self.tag, **(env_extra or {}))
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "compare.py"), *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.stderr: list[str] = []
        self.stdout = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line.rstrip("\n"))

    def send(self, signum: int, group: bool) -> float:
        """Send ``signum`` to the group or to the main process; seconds until it exits."""
        sent = time.monotonic()
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)
        self.finish()
        return time.monotonic() - sent

    def finish(self, timeout: float = 600) -> int:
        self.stdout = self.process.stdout.read()
        self.process.wait(timeout)
        self._reader.join(10)
        return self.process.returncode

    def left(self) -> list:
        """The run's processes still alive: in its process group, or carrying its tag
        (zombies are gone already: nothing runs in them)."""
        found = []
        for process in psutil.process_iter():
            try:
                ours = process.environ().get("XOR_TEST_RUN_TAG") == self.tag or _group(process) == self.process.pid
                if ours and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(f"{process.pid} {' '.join(process.cmdline()[:4])}")
            except psutil.Error:
                pass
        return found


def _group(process) -> int | None:
    try:
        return os.getpgid(process.pid)
    except OSError:
        return None


def ended_cleanly(run: Run, seconds: float, status: int, line: str, folder: Path) -> None:
    time.sleep(0.3)  # a killed process leaves the table a moment after its parent exits
    assert run.process.returncode == status, run.stderr
    assert seconds < EXIT_SECONDS, f"{seconds:.2f} s from the signal to the exit"
    assert run.stderr and run.stderr[-1].strip() == line, run.stderr[-5:]
    assert not any("Traceback" in x or "Warning" in x for x in run.stderr), run.stderr
    assert run.left() == []
    assert sorted(p.name for p in folder.iterdir()) == [], "nothing written, not even in part"


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, group, status, line",
    [
        (signal.SIGINT, True, 130, "interrupted"),
        (signal.SIGINT, False, 130, "interrupted"),
        (signal.SIGTERM, False, 143, "terminated"),
    ],
    ids=["ctrl-c to the group", "sigint to the main process", "sigterm"],
)
def test_a_signal_ends_the_default_run_and_everything_it_started(tmp_path, signum, group, status, line):
    out = tmp_path / "out"
    out.mkdir()
    args = ["--epochs", "20000", "--jobs", "2", "--json", str(out / "r.json"), "--save", str(out / "r.npz")]
    run = Run([*args, "--plot", str(out / "plots"), "--replay-dir", str(out / "replays")], tmp_path)
    # the workers are computing; numpy trains in about 2 s, then the lockstep tasks start
    # (its progress shows on a terminal only, so the test waits by the clock)
    deadline = time.monotonic() + 120
    while len(psutil.Process(run.process.pid).children(recursive=True)) < 2:
        assert run.process.poll() is None and time.monotonic() < deadline, run.stderr
        time.sleep(0.1)
    time.sleep(5.0)
    assert run.process.poll() is None, run.stderr
    seconds = run.send(signum, group)
    ended_cleanly(run, seconds, status, line, out)


AUDIT = ["audit", "--optimizers", "adam", "--seeds", "64", "--seeds-per-task", "8", "--jobs", "2"]
SWEEP = ["sweep", "--seeds", "64", "--seeds-per-task", "8", "--epochs", "20000", "--jobs", "2"]
COMPILED = ["compiled", "--backends", "torch.compile,torch.optim+compile", "--epochs", "20000", "--jobs", "2"]
VERSIONS = ["versions", "--env", f"other={sys.executable}", "--epochs", "20000", "--jobs", "2"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, least, signum, group, status",
    [
        (AUDIT, 3, signal.SIGINT, True, 130),
        (AUDIT, 3, signal.SIGTERM, False, 143),
        (SWEEP, 3, signal.SIGINT, False, 130),
        (["power", "--optimizers", "adam", "--epochs", "4000", "--jobs", "2"], 3, signal.SIGINT, True, 130),
        (["lineage", "--epochs", "20000", "--jobs", "2"], 2, signal.SIGINT, True, 130),
        (["forms", "--epochs", "20000", "--jobs", "2"], 2, signal.SIGTERM, False, 143),
        (VERSIONS, 2, signal.SIGINT, True, 130),
        (["bench", "--repeat", "3"], 0, signal.SIGINT, True, 130),
        (COMPILED, 2, signal.SIGINT, True, 130),
        (COMPILED, 2, signal.SIGTERM, False, 143),
    ],
    ids=["audit ctrl-c", "audit sigterm", "sweep sigint", "power ctrl-c", "lineage ctrl-c", "forms sigterm",
         "versions ctrl-c", "bench ctrl-c", "compiled ctrl-c", "compiled sigterm"],
)  # fmt: skip
def test_a_signal_ends_a_subcommand_its_cluster_and_its_pools(tmp_path, command, least, signum, group, status):
    """``least``: the processes it has started when it is well under way (its workers)."""
    out = tmp_path / "out"
    out.mkdir()
    run = Run([*command, "--json", str(out / "r.json")], tmp_path)
    deadline = time.monotonic() + 120
    while len(psutil.Process(run.process.pid).children(recursive=True)) < least:
        assert run.process.poll() is None and time.monotonic() < deadline, run.stderr
        time.sleep(0.1)
    time.sleep(2.0)  # and working
    seconds = run.send(signum, group)
    ended_cleanly(run, seconds, status, "interrupted" if status == 130 else "terminated", out)


KILLERS = {
    "sigkill": "import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)",
    "segfault": "import ctypes\n    ctypes.string_at(0)",
}


@pytest.mark.slow
@pytest.mark.parametrize("how", KILLERS)
def test_a_row_whose_worker_dies_could_not_run_and_the_others_are_judged(tmp_path, how):
    plugin = example_plugin_with(tmp_path, f"\ndef train(cfg, params0, **options):\n    {KILLERS[how]}\n")
    run = Run(
        ["--epochs", "300", "--jobs", "2", "--backends", "numpy,torch,jax", "--backend-file", str(plugin)], tmp_path
    )
    assert run.finish() == 3, run.stderr
    assert "example      could not run: its worker process died" in run.stdout
    assert "all 2 pairs agree" in run.stdout and "1 row(s) could not run: example (exit status 3)" in run.stdout
    assert not any("Traceback" in x for x in run.stderr), run.stderr
    assert run.left() == []


@pytest.mark.slow
def test_a_language_program_that_hangs_is_killed_after_its_timeout(tmp_path):
    """The timeout derives from the row's expected cost (rows.program_timeout: 20 s plus
    10 × its cost at these epochs, here 20.035 s); the program is killed, the row could
    not run, and the others are judged."""
    if shutil.which("octave-cli") is None:
        if os.environ.get("XOR_REQUIRE_LANGUAGES"):
            pytest.fail("XOR_REQUIRE_LANGUAGES is set but octave-cli is not on PATH")
        pytest.skip("octave-cli is not on PATH")
    from harness.engine.rows import program_timeout
    from reference.spec import Config

    code = tmp_path / "code"
    shutil.copytree(ROOT / "backends" / "octave", code)
    train = code / "xor_train.m"
    text = train.read_text()
    train.write_text(text.replace("init = jsondecode(", "pause(600);\ninit = jsondecode(", 1))
    started = time.monotonic()
    run = Run(["--epochs", "10", "--backends", "numpy,octave,torch"], tmp_path, {"XOR_OCTAVE_CODE": str(code)})
    assert run.finish() == 3, run.stderr
    seconds = time.monotonic() - started
    limit = program_timeout("octave", Config(epochs=10))
    assert limit <= seconds < limit + 60
    assert f"octave row hung: no result in {limit:.0f} s (killed)" in run.stdout
    assert "all 1 pairs agree" in run.stdout
    assert run.left() == []
