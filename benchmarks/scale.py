"""The audit's scale-out, measured: the same grid on a LocalCluster of 1 and of 2 worker
processes, the speed-up, the cost of one configuration, and what an audit of 10^6
configurations would take on N workers at that cost.

    python benchmarks/scale.py [--seeds 16] [--epochs 2000] [--optimizers adam,sgd] ...

It takes audit's grid options. The speed-up counts the tasks' wall time from the first
submission to the last result; starting the cluster and importing the frameworks in
each worker are in it, as in a real run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.commands import audit  # noqa: E402
from harness.engine.audit import summarize_audit  # noqa: E402
from harness.engine.cluster import run_tasks  # noqa: E402

TARGET = 10**6


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    audit.add_arguments(p)
    p.set_defaults(seeds=16, optimizers=["adam", "sgd"], hidden=[1, 4], seeds_per_task=8)
    return p


def main() -> int:
    args = parser().parse_args()
    tasks = audit.tasks_of(args)
    timings, figures = {}, {}
    for workers in (1, 2):
        results, report, seconds = run_tasks(tasks, workers, None)
        summary = summarize_audit([results[key] for key, _, _ in tasks])
        timings[workers], figures[workers] = (
            seconds,
            {k: summary[k] for k in ("configurations", "false_alarms", "margins", "known_gaps")},
        )
        print(
            f"{workers} worker(s): {len(tasks)} tasks, {summary['configurations']} configurations in "
            f"{seconds:.1f} s; peak worker memory {report.peak_worker_mib:.0f} MiB",
            flush=True,
        )
    same = figures[1] == figures[2]
    per_config = timings[1] / figures[1]["configurations"]
    speedup = timings[1] / timings[2]
    print(
        f"speed-up 1 -> 2 workers: {speedup:.2f}× (parallel efficiency {speedup / 2:.0%}); the figures are "
        f"{'identical' if same else 'DIFFERENT'} on 1 and 2 workers"
    )
    print(
        f"one configuration ({args.epochs} epochs, every row, drift and lockstep): {per_config * 1e3:.0f} ms of one "
        "worker"
    )
    for n in (2, 16, 64, 256):
        hours = TARGET * per_config / (n * min(1.0, speedup / 2)) / 3600
        print(f"  {TARGET:.0e} configurations on {n:>3} workers at that efficiency: {hours:8.1f} h")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
