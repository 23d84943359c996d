"""The dask engine for real: a ``dask scheduler`` and two ``dask worker`` processes on the
loopback interface, started and stopped here; an audit sent to them equals the one run on
the embedded LocalCluster, and a worker killed mid-run has its tasks finished by the
other."""

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from tests.test_cli import ROOT, run_cli

pytest.importorskip("distributed")

# 2 cells × 3 batches: 6 tasks of a few seconds each, enough for a kill to land mid-task
GRID = (
    "--optimizers",
    "sgd,adam",
    "--dtypes",
    "float64",
    "--lr-factors",
    "1",
    "--hidden",
    "2",
    "--seeds",
    "6",
    "--seeds-per-task",
    "2",
    "--epochs",
    "300",
)
FIGURES = ("configurations", "false_alarms", "known_gaps", "fpr_upper_95", "margins", "worst_margin_by_lr")


def _dask(*args, log):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=ROOT, env=env, stdout=log, stderr=log)


@contextlib.contextmanager
def loopback_cluster(tmp_path, workers: int = 2):
    """A scheduler and ``workers`` worker processes (no nanny: a killed worker stays dead)
    on 127.0.0.1: yields (address, {name: process})."""
    from distributed import Client

    info = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "w")  # noqa: SIM115 (the processes write to it until the finally below)
    processes = [
        _dask(
            "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(info), log=log
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() or not info.read_text().strip():
            assert time.monotonic() < deadline, "the dask scheduler did not start"
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        named = {
            f"w{i}": _dask(
                "worker",
                address,
                "--nthreads",
                "1",
                "--no-nanny",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--name",
                f"w{i}",
                log=log,
            )
            for i in range(workers)
        }
        processes += named.values()
        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, named
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:  # a worker busy in a task may outlive SIGTERM: it must not outlive the test
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def local_audit(tmp_path_factory):
    """The grid's audit on the embedded LocalCluster of 2 worker processes."""
    out = tmp_path_factory.mktemp("local") / "audit.json"
    result = run_cli("audit", *GRID, "--jobs", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_an_audit_through_a_scheduler_equals_the_local_run(tmp_path, local_audit):
    with loopback_cluster(tmp_path) as (address, _):
        out = tmp_path / "audit.json"
        result = run_cli("audit", *GRID, "--scheduler", address, "--json", str(out))
    assert result.returncode == 0, result.stderr
    remote = json.loads(out.read_text())
    assert {k: remote[k] for k in FIGURES} == {k: local_audit[k] for k in FIGURES}
    assert remote["configurations"] == 12 and remote["false_alarms"] == []
    assert len(remote["workers"]) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in remote["workers"])
    assert remote["retried_tasks"] == 0 and local_audit["retried_tasks"] == 0


def _kill_when_busy(address: str, victim, name: str, timeout: float = 120) -> None:
    """SIGKILL the worker ``name`` once it has been running a task for a second."""
    from distributed import Client

    with Client(address, timeout=30) as client:
        by_name = {info["name"]: a for a, info in client.scheduler_info()["workers"].items()}
        deadline, busy_since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            busy = bool(client.processing().get(by_name[name]))
            busy_since = (busy_since or time.monotonic()) if busy else None
            if busy_since and time.monotonic() - busy_since > 1.0:
                victim.kill()
                return
            time.sleep(0.1)
    raise AssertionError("the worker never picked up a task")


@pytest.mark.slow
def test_a_killed_workers_tasks_are_finished_by_the_other(tmp_path, local_audit):
    with loopback_cluster(tmp_path) as (address, workers):
        out = tmp_path / "audit.json"
        audit = subprocess.Popen(
            [sys.executable, str(ROOT / "compare.py"), "audit", *GRID, "--scheduler", address, "--json", str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _kill_when_busy(address, workers["w0"], "w0")
        stdout, stderr = audit.communicate(timeout=600)
        assert workers["w0"].poll() is not None  # it is dead
    assert audit.returncode == 0, stderr
    after = json.loads(out.read_text())
    assert after["retried_tasks"] >= 1
    assert "retried after a worker died" in stdout
    assert {k: after[k] for k in FIGURES} == {k: local_audit[k] for k in FIGURES}


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "audit.json"
    result = run_cli("audit", *GRID, "--scheduler", "tcp://127.0.0.1:9", "--json", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the dask scheduler at tcp://127.0.0.1:9" in lines[0], result.stderr
    assert not out.exists()
