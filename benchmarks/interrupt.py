"""How long a run takes to stop: the seconds from Ctrl-C (SIGINT to the process group),
SIGINT to the main process alone, and SIGTERM, to its exit, and whether anything it
started is left. The target is 2 s (docs/running.md has the figures).

    python benchmarks/interrupt.py [--repeat N] [--wait S] [-- COMPARE.PY ARGUMENTS]

Each trial starts ``compare.py`` (default: a default run of 20000 epochs with --jobs 2)
in a session of its own, waits until numpy has trained (the workers, lockstep and the
language programs are then running), or ``--wait`` seconds for a subcommand (its
cluster's workers are then computing), sends the signal and times the exit.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "ctrl-c to the group": (signal.SIGINT, True),
    "sigint to the main process": (signal.SIGINT, False),
    "sigterm to the main process": (signal.SIGTERM, False),
}


def trial(argv: list, signum: int, group: bool, wait: float | None = None) -> tuple[float, int, int]:
    """(seconds from the signal to the exit, exit status, processes of the run left)."""
    tag = uuid.uuid4().hex
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "compare.py"), *argv],
        env=dict(os.environ, XOR_BENCH_TAG=tag),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if wait is not None:
        time.sleep(wait)
    else:
        for line in process.stderr:
            if "numpy" in line and "trained" in line:
                break
    sent = time.monotonic()
    os.killpg(process.pid, signum) if group else process.send_signal(signum)
    process.stderr.read()
    status = process.wait()
    seconds = time.monotonic() - sent
    time.sleep(0.3)
    return seconds, status, len(_left(tag))


def _left(tag: str) -> list:
    left = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("XOR_BENCH_TAG") == tag and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p.pid)
        except psutil.Error:
            pass
    return left


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--wait", type=float, default=None, help="seconds to wait instead of numpy's line")
    parser.add_argument("argv", nargs="*", default=["--epochs", "20000", "--jobs", "2"])
    args = parser.parse_args()
    print(f"compare.py {' '.join(args.argv)}; {args.repeat} trials per signal")
    for name, (signum, group) in CASES.items():
        runs = [trial(args.argv, signum, group, args.wait) for _ in range(args.repeat)]
        seconds = [s for s, _, _ in runs]
        print(
            f"{name:<28} exit {sorted({st for _, st, _ in runs})}  seconds median {statistics.median(seconds):.2f} "
            f"max {max(seconds):.2f}  processes left {sum(n for _, _, n in runs)}"
        )


if __name__ == "__main__":
    main()
