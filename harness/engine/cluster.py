"""Running many independent tasks on a dask.distributed cluster: the sweep, the audit and
the power scan split their work into tasks of batched seeds and hand them here.

The embedded default is a ``LocalCluster`` of one worker process per core, each with one
thread (dask's nanny sets OMP_NUM_THREADS=1 in its workers, so numpy and torch do not
oversubscribe the cores). ``address`` sends the same tasks to an existing scheduler
(``dask scheduler`` and ``dask worker`` on any machines that have this package installed).

A worker that dies takes its running and held tasks with it; the scheduler reruns them on
the workers left (dask gives up on a task after ``distributed.scheduler.allowed-failures``
deaths, 3 by default). Each task's ``suspicious`` count on the scheduler says how many
workers died while holding it: that is how a run reports what was retried.

Tasks are pure functions of their arguments and results are keyed, so a run gives the
same bits whichever workers ran it, in whatever order.
"""

from __future__ import annotations

import logging
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


class ClusterError(Exception):
    """The cluster could not be reached, or a task could not be finished: one line for
    the user."""


@dataclass
class TaskReport:
    """Where the tasks of one run went."""

    workers: set = field(default_factory=set)  # addresses of the workers that returned results
    retried: list = field(default_factory=list)  # keys of tasks rerun after a worker died holding them
    failed_twice: list = field(default_factory=list)  # of those, the ones that lost two workers or more
    peak_worker_mib: float = 0.0  # the largest peak resident memory a worker reported
    timings: dict = field(default_factory=dict)  # task key -> where and when it ran, its CPU (_on_worker)

    def to_json(self) -> dict:
        first = min((t["start"] for t in self.timings.values()), default=0.0)
        return {
            "workers": sorted(self.workers),
            "retried_tasks": len(self.retried),
            "tasks_failed_twice": sorted(self.failed_twice),
            "peak_worker_memory_mib": self.peak_worker_mib,
            "task_timings": [
                {"task": " ".join(map(str, key)) if isinstance(key, tuple) else str(key)}
                | {"start": t["start"] - first, "seconds": t["end"] - t["start"], "cpu_seconds": t["cpu"]}
                | {"worker": t["worker"], "peak_worker_memory_mib": t["peak_mib"]}
                for key, t in sorted(self.timings.items(), key=lambda kv: kv[1]["start"])
            ],
        }


def peak_memory_mib() -> float:
    """Peak resident memory of this process (Linux reports KiB, macOS bytes)."""
    kib = 1.0 if sys.platform != "darwin" else 1 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 1024


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the language rows' programs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _on_worker(function, args):
    """A task as a worker runs it: its result, the worker's address, and when it ran, its
    CPU seconds (this process's, and its children's: a language row's program) and the
    worker's peak memory after it."""
    from distributed import get_worker

    start, cpu = time.time(), time.process_time() + children_cpu_seconds()
    result = function(*args)
    cpu = time.process_time() + children_cpu_seconds() - cpu
    return result, get_worker().address, {"start": start, "end": time.time(), "cpu": cpu, "peak_mib": peak_memory_mib()}


def _suspicious_counts(dask_scheduler=None, keys=()) -> dict:
    """On the scheduler: per task key, how many workers died while it was running there."""
    return {key: dask_scheduler.tasks[key].suspicious for key in keys if key in dask_scheduler.tasks}


class Cluster:
    """``jobs`` local worker processes, or the scheduler at ``address``, for one block."""

    def __init__(self, jobs: int = 1, address: str | None = None, connect_timeout: float = 10.0):
        self.jobs, self.address, self.connect_timeout = jobs, address, connect_timeout
        self.client: Any = None
        self.local: Any = None

    def __enter__(self):
        from distributed import Client, LocalCluster

        try:
            if self.address:
                self.client = Client(self.address, timeout=self.connect_timeout)
            else:
                self.local = LocalCluster(
                    n_workers=self.jobs,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    worker_dashboard_address=None,
                    # the scheduler's HTTP server (health checks) starts even without a
                    # dashboard, on 8787 unless told otherwise: any free port, no warning
                    scheduler_kwargs={"dashboard_address": ":0"},
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.local)
        except (OSError, TimeoutError, ValueError) as exc:
            self.__exit__()
            raise ClusterError(f"cannot reach the dask scheduler at {self.address}: {exc}") from None
        return self

    def __exit__(self, *exc):
        for part in (self.client, self.local):
            if part is not None:
                part.close()

    def run(self, tasks, report: TaskReport, progress=None):
        """``tasks``: (key, function, args). Yields (key, result) as each finishes; a task
        that no worker could finish raises :class:`ClusterError`. ``report`` collects the
        workers, the retried tasks and the peak memory."""
        from distributed import as_completed

        run_id = uuid.uuid4().hex[:8]
        futures, keys = {}, {}
        for i, (key, function, args) in enumerate(tasks):
            future = self.client.submit(_on_worker, function, args, key=f"xorcheck-{run_id}-{i}", pure=False)
            futures[future], keys[future.key] = key, key
        for future in as_completed(list(futures)):
            if future.status != "finished":
                self._count_retries(keys, report)
                raise ClusterError(f"task {futures[future]} could not be finished: {future.exception()}")
            result, address, timing = future.result()
            report.workers.add(address)
            report.peak_worker_mib = max(report.peak_worker_mib, timing["peak_mib"])
            report.timings[futures[future]] = timing | {"worker": address}
            if progress is not None:
                progress.advance()
            yield futures[future], result
        self._count_retries(keys, report)

    def _count_retries(self, keys: dict, report: TaskReport) -> None:
        counts = self.client.run_on_scheduler(_suspicious_counts, keys=list(keys))
        for task_key, count in counts.items():
            if count >= 1:
                report.retried.append(str(keys[task_key]))
            if count >= 2:
                report.failed_twice.append(str(keys[task_key]))


def run_grid(tasks: list, jobs: int, address: str | None, progress, summarize) -> dict:
    """A grid's ``tasks`` on a cluster: ``summarize(results in task order)`` with where
    and how long they ran; :class:`ClusterError` when the cluster failed."""
    results, report, seconds = run_tasks(tasks, jobs, address, progress)
    data = summarize([results[key] for key, _, _ in tasks])
    return data | report.to_json() | {"seconds": seconds, "tasks": len(tasks)}


def run_tasks(tasks: list, jobs: int, address: str | None, progress=None) -> tuple[dict, TaskReport, float]:
    """Every task on a cluster (module doc), ``progress.advance()`` after each: ({key:
    result}, the report, the seconds the tasks took from the first submission)."""
    report = TaskReport()
    try:  # the progress display ends however the cluster does, a cluster that never started too
        with Cluster(jobs, address) as cluster:
            started = time.perf_counter()
            results = dict(cluster.run(tasks, report, progress))
    finally:
        if progress is not None:
            progress.close()
    return results, report, time.perf_counter() - started
