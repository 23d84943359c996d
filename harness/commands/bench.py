"""``python compare.py bench``: how fast each row trains, against two yardsticks, and
where a whole default run's time goes.

- the article loop (``harness.yardsticks.article_loop``): the article's training loop, op
  for op;
- the floor: the same training as a plain C loop (``harness/yardsticks/floor.c``, package
  data), compiled here with the system's C compiler, skipped with a note when there is none.

Rows run one after another in this process, each ``repeat`` times, so they never
compete for a core; import times are measured in fresh interpreters. Figures are
µs per epoch: median, min and max over the repeats. The whole default run runs in a
fresh interpreter as a user runs it; its breakdown comes from the timeline its JSON
carries (``harness.engine.pipeline``, ``harness.engine.execution.timed``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from harness.commands import arguments, ending, row_choice
from harness.engine.execution import run_row
from harness.engine.rows import ROWS
from reference.spec import Config, flatten_params, initial_params

FLOOR_SOURCE = Path(__file__).resolve().parents[1] / "yardsticks" / "floor.c"
WARM_UP_EPOCHS = 200  # one untimed short run per row first: lazy imports, allocator, caches
DESCRIPTION = (
    "Time every row (µs per epoch: median, min, max over --repeat runs, one row at a time), with compile "
    "and import times, against the article's numpy loop and a plain C loop (the floor); then a whole "
    "default run, broken down by phase (imports, each row's training and lockstep, the envelope, the "
    "report and plots), against the article's script."
)
EPILOG = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    arguments.add_problem_options(parser)
    parser.add_argument("--repeat", type=arguments.positive_int, default=5, help="runs per row (default %(default)s)")
    arguments.add_rows_option(parser, "rows to time (default: all installed)")
    arguments.add_output_options(parser, json="the figures")
    parser.add_argument(
        "--no-wall",
        action="store_true",
        help="skip the whole runs: the default run (and its breakdown by phase) and the article's script",
    )
    parser.add_argument(
        "--sweep",
        type=arguments.positive_int,
        metavar="SEEDS",
        default=None,
        help="also time a whole sweep of SEEDS seeds (python -m harness.cli sweep --seeds SEEDS, every row, "
        "--epochs): its wall time, peak memory, and each task's seconds and CPU",
    )


def main(args, parser: argparse.ArgumentParser) -> int:
    from harness.files.environment import environment

    cfg = arguments.config_from(args, parser)
    outputs = ending.check_outputs(parser, args, files=("json",), folders=())
    names, skipped = row_choice.select_rows(args.backends, parser)
    names = names if args.backends else [n for n in names if ROWS[n].bench]
    names = list(dict.fromkeys(m for n in names for m in ((ROWS[n].runs, n) if ROWS[n].compiled else (n,))))
    ending.refuse_if_too_large(parser, "bench", cfg, 1)
    ending.notice_skipped(skipped.values())

    def progress(text: str) -> None:
        print(f"  {text} ...", file=sys.stderr, flush=True)

    result = ending.Result(run_bench(cfg, names, args.repeat, wall=not args.no_wall, progress=progress))
    if args.sweep:
        progress(f"timing a sweep of {args.sweep} seeds (python -m harness.cli sweep)")
        batched = [n for n in names if ROWS[n].batched] if args.backends else None
        result.data["sweep"] = sweep_breakdown(cfg, args.sweep, batched)
    result.data["environment"] = environment()
    print(render_bench(result.data))
    return ending.finish(parser, outputs, result)


def spread(values) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def time_row(name: str, cfg: Config, repeat: int) -> dict:
    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    run_row(name, replace(cfg, epochs=min(cfg.epochs, WARM_UP_EPOCHS)), params0)  # first-call costs
    runs = [run_row(name, cfg, params0) for _ in range(repeat)]
    result = {"us_per_epoch": spread([r.us_per_epoch for r in runs]), "final_loss": float(runs[-1].loss[-1])}
    if runs[0].compile_seconds is not None:
        result["compile_seconds"] = spread([r.compile_seconds for r in runs])
    return result


def time_article_loop(cfg: Config, repeat: int) -> dict:
    from harness.yardsticks.article_loop import article_training

    params0 = initial_params(cfg.seed, cfg.hidden)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        article_training(params0, cfg.epochs)
        times.append((time.perf_counter() - start) / cfg.epochs * 1e6)
    return {"us_per_epoch": spread(times)}


def time_floor(cfg: Config, repeat: int) -> dict:
    """Compile and run floor.c; {"skipped": why} when that cannot be done."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return {"skipped": "no C compiler on PATH"}
    if cfg.dtype != "float64" or cfg.hidden > 64:
        return {"skipped": "the C loop is float64 with at most 64 hidden units"}
    with tempfile.TemporaryDirectory() as folder:
        binary = Path(folder) / "floor"
        build = subprocess.run(
            [compiler, "-O2", "-o", str(binary), str(FLOOR_SOURCE), "-lm"], check=False, capture_output=True, text=True
        )
        if build.returncode != 0:
            return {"skipped": f"{compiler} failed: {build.stderr.strip().splitlines()[-1:]}"}
        theta0 = flatten_params(initial_params(cfg.seed, cfg.hidden))
        args = [
            str(binary),
            str(cfg.epochs),
            str(cfg.hidden),
            *(repr(float(x)) for x in (cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, *theta0)),
        ]
        times, final = [], "nan"
        for _ in range(repeat):
            run = subprocess.run(args, check=False, capture_output=True, text=True)
            if run.returncode != 0:
                return {"skipped": f"the C loop exited with status {run.returncode}"}
            seconds, final = run.stdout.split()
            times.append(float(seconds) / cfg.epochs * 1e6)
    return {"us_per_epoch": spread(times), "final_loss": float(final), "compiler": compiler}


def time_torchscript(cfg: Config, repeat: int) -> dict:
    """The torch row's loop compiled with TorchScript: is it worth the compile?"""
    from backends import torchscript_yardstick

    params0 = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    start = time.perf_counter()
    torchscript_yardstick.train_torchscript(Config(epochs=2, hidden=cfg.hidden, dtype=cfg.dtype), params0)
    compile_seconds = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        loss, _ = torchscript_yardstick.train_torchscript(cfg, params0)
        times.append((time.perf_counter() - start) / cfg.epochs * 1e6)
    return {"us_per_epoch": spread(times), "compile_seconds": compile_seconds, "final_loss": float(loss[-1])}


def import_seconds(module: str, repeat: int = 3) -> float:
    """Median time for a fresh interpreter to import ``module`` (start-up subtracted)."""

    def run(code):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return time.perf_counter() - start

    bare = statistics.median(run("pass") for _ in range(repeat))
    return max(0.0, statistics.median(run(f"import {module}") for _ in range(repeat)) - bare)


def wall_seconds(argv: list[str]) -> float:
    """A whole run of ``python argv`` in a fresh interpreter (from any folder: the
    harness is imported as installed)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, capture_output=True)
    return time.perf_counter() - start


def default_run_breakdown(cfg: Config) -> dict:
    """A whole default run (``python -m harness.cli --json --plot --report``) in a fresh
    interpreter, timed from outside, and where its time went, from the timings its JSON
    carries; with the HTML report's size."""
    with tempfile.TemporaryDirectory() as folder:
        report, figures = Path(folder) / "run.json", Path(folder) / "figures"
        launched = time.time()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "--epochs",
                str(cfg.epochs),
                "--json",
                str(report),
                "--plot",
                str(figures),
                "--report",
                str(Path(folder) / "run.html"),
            ],
            check=False,
            capture_output=True,
            text=True,
        )
        finished = time.time()
        if run.returncode not in (0, 1):  # 1: some pair disagrees, still a whole run
            raise RuntimeError(f"the default run failed: {run.stderr.strip().splitlines()[-1:]}")
        data = json.loads(report.read_text())
        page_bytes = (Path(folder) / "run.html").stat().st_size
    return breakdown(data["timings"], launched, finished, sorted(data["backends"])) | {"report_bytes": page_bytes}


def sweep_breakdown(cfg: Config, seeds: int, rows: list | None = None) -> dict:
    """A whole sweep (``python -m harness.cli sweep``, of ``rows`` or every row) in a fresh
    interpreter, timed from outside: its wall time, its peak memory, and each task's
    (from the sweep's JSON)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "sweep.json"
        argv = ["-m", "harness.cli", "sweep", "--seeds", str(seeds), "--epochs", str(cfg.epochs), "--json", str(report)]
        argv += ["--backends", ",".join(rows)] if rows else []
        start = time.perf_counter()
        run = subprocess.run([sys.executable, *argv], check=False, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if run.returncode not in (0, 1):  # 1: some seed parts, still a whole sweep
            raise RuntimeError(f"the sweep failed: {run.stderr.strip().splitlines()[-1:]}")
        data = json.loads(report.read_text())
    return {
        "seeds": seeds,
        "epochs": cfg.epochs,
        "wall_seconds": wall,
        "tasks_seconds": data["seconds"],
        "peak_memory_mib": data["peak_memory_mib"],
        "workers": len(data["workers"]),
        "tasks": data["task_timings"],
    }


def render_sweep(sweep: dict) -> list:
    mem = sweep["peak_memory_mib"]
    workers = {address: n for n, address in enumerate(sorted({t["worker"] for t in sweep["tasks"]}), 1)}
    lines = [
        f"a sweep of {sweep['seeds']} seeds × {sweep['epochs']} epochs: {sweep['wall_seconds']:.1f} s of wall time, "
        f"peak memory {mem['main']:.0f} MiB in the main process, {mem['largest_worker']:.0f} MiB in the largest "
        f"worker; {len(sweep['tasks'])} tasks on {sweep['workers']} workers",
        f"{'task':<20} {'starts at s':>11} {'seconds':>8} {'CPU s':>7}  worker",
    ]
    lines += [
        f"{t['task']:<20} {t['start']:11.1f} {t['seconds']:8.1f} {t['cpu_seconds']:7.1f}  {workers[t['worker']]}"
        for t in sweep["tasks"]
    ]
    cpu = sum(t["cpu_seconds"] for t in sweep["tasks"])
    lines.append(f"the tasks' CPU together: {cpu:.1f} s")
    return lines


def breakdown(timings: dict, launched: float, finished: float, rows: list) -> dict:
    """Phases of a default run, each with its seconds and process ("main", or "worker N"
    for the tasks, which run in parallel): the main process's start-up and imports, each
    task (its imports apart), the main process's steps, and the rest (JSON, exit)."""
    tasks, main = timings["tasks"], timings["main"]
    workers = {pid: n for n, pid in enumerate(sorted({c["pid"] for c in tasks.values()}), 1)}
    phases: list[tuple] = [("start-up and imports", timings["started"] - launched, "main", None)]
    for label, cost in sorted(tasks.items(), key=lambda kv: kv[1]["start"]):
        where, imports = f"worker {workers[cost['pid']]}", sum(cost["imports"].values())
        if imports >= 0.01:
            phases.append((f"imports: {', '.join(cost['imports'])}", imports, where, None))
        phases.append((label, cost["end"] - cost["start"] - imports, where, cost["cpu"] + cost.get("child_cpu", 0.0)))
    phases += [(step, seconds, "main", None) for step, seconds in main.items() if step != "training and lockstep"]
    wall = finished - launched
    rest = wall - (timings["started"] - launched) - sum(main.values())
    phases.append(("the rest (replay files, JSON, exit)", rest, "main", None))
    span = main["training and lockstep"]
    busy = sum(c["end"] - c["start"] for c in tasks.values())
    return {
        "rows": rows,
        "wall_seconds": wall,
        "phases": [{"phase": p, "seconds": s, "process": w, "cpu_seconds": c} for p, s, w, c in phases],
        "imports": _imports_by_backend(tasks.values()),
        "task_cpu_seconds": sum(c["cpu"] + c.get("child_cpu", 0.0) for c in tasks.values()),
        "workers": len(workers),
        "training_and_lockstep_seconds": span,
        "workers_busy": busy / (span * len(workers)) if span > 0 and workers else None,
    }


def _imports_by_backend(costs) -> dict:
    """Backend -> the seconds of its first import in each worker process that loaded it."""
    imports: dict[str, list] = {}
    for cost in costs:
        for backend, seconds in cost["imports"].items():
            imports.setdefault(backend, []).append(seconds)
    return imports


COMPILED_RUN = """
import json, sys
from harness.engine.execution import run_row
from reference.spec import Config
r = run_row(sys.argv[1], Config(**json.loads(sys.argv[2])))
print(json.dumps({"compile_seconds": r.compile_seconds, "us_per_epoch": r.us_per_epoch}))
"""


def compile_seconds_cold_and_warm(name: str, cfg: Config) -> dict:
    """A compiled row's compile time in a fresh interpreter with empty compile caches
    (Inductor's and JAX's: cold), then in another with the caches the first one filled
    (warm)."""
    with tempfile.TemporaryDirectory(prefix="xor-compile-cache-") as cache:
        caches = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "JAX_COMPILATION_CACHE_DIR": "jax"}
        env = os.environ | {variable: os.path.join(cache, folder) for variable, folder in caches.items()}
        runs = []
        for _ in ("cold", "warm"):
            done = subprocess.run(
                [sys.executable, "-c", COMPILED_RUN, name, json.dumps(cfg.to_dict())],
                check=False,
                capture_output=True,
                text=True,
                env=env,
            )
            if done.returncode != 0:
                said = (done.stderr.strip().splitlines() or ["nothing said"])[-1]
                return {"skipped": f"the {name} row failed: {said}"}
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if runs[0]["compile_seconds"] is None:
        return {"skipped": "it compiles nothing"}
    return {"cold_compile_seconds": runs[0]["compile_seconds"], "warm_compile_seconds": runs[1]["compile_seconds"]}


def run_bench(cfg: Config, rows: list[str], repeat: int, wall: bool, progress) -> dict:
    result: dict = {"config": cfg.to_dict(), "repeat": repeat, "rows": {}}
    for name in rows:
        progress(f"timing {name}")
        result["rows"][name] = time_row(name, cfg, repeat)
        if ROWS[name].compiled is not None:
            progress(f"timing {name}'s compile, cold and warm, in fresh interpreters")
            result["rows"][name] |= {"compiles": ROWS[name].runs} | compile_seconds_cold_and_warm(name, cfg)
    if "torch" in rows and cfg.epochs >= 1:
        progress("timing the torch row's loop under TorchScript")
        result["torchscript"] = time_torchscript(cfg, repeat)
    progress("timing the article loop")
    result["seed_loop"] = time_article_loop(cfg, repeat)
    progress("timing the C floor")
    result["floor"] = time_floor(cfg, repeat)
    progress("timing framework imports")
    needed = dict.fromkeys(("numpy", *(m for n in rows for m in ROWS[n].requires)))
    result["import_seconds"] = {m: import_seconds(m) for m in needed}
    seed = result["seed_loop"]["us_per_epoch"]["median"]
    floor = result["floor"].get("us_per_epoch", {}).get("median")
    for entry in result["rows"].values():
        us = entry["us_per_epoch"]["median"]
        entry["vs_seed_loop"] = us / seed
        entry["vs_floor"] = us / floor if floor else None
    if wall:
        progress(
            "timing whole runs: the default run (python -m harness.cli), python -m harness.yardsticks.article_loop"
        )
        run = result["default_run"] = default_run_breakdown(cfg)
        result["wall_seconds"] = {
            "compare_default_run": run["wall_seconds"]
            - phase_seconds(run, "plots")
            - phase_seconds(run, "html report"),
            "seed_loop_script": wall_seconds(["-m", "harness.yardsticks.article_loop"]),
        }
    return result


def render_bench(result: dict) -> str:
    cfg = result["config"]
    seed = result["seed_loop"]["us_per_epoch"]
    floor = result["floor"]
    lines = [
        f"µs per epoch, {cfg['epochs']} epochs, {cfg['dtype']}, hidden {cfg['hidden']}, "
        f"median (min-max) of {result['repeat']} runs, one row at a time",
        "",
        f"{'row':<22} {'median':>9} {'min':>9} {'max':>9} {'compile s':>10} {'× article loop':>15} {'× floor':>9}",
    ]

    def line(name, entry, compile_s=None):
        us = entry["us_per_epoch"]
        ratio_seed = us["median"] / seed["median"]
        ratio_floor = (
            f"{us['median'] / floor['us_per_epoch']['median']:9.0f}" if "us_per_epoch" in floor else f"{'-':>9}"
        )
        cs = f"{compile_s:10.2f}" if compile_s is not None else f"{'':>10}"
        return f"{name:<22} {us['median']:9.1f} {us['min']:9.1f} {us['max']:9.1f} {cs} {ratio_seed:15.2f} {ratio_floor}"

    for name, entry in result["rows"].items():
        lines.append(line(name, entry, entry.get("compile_seconds", {}).get("median")))
    if "torchscript" in result:
        ts = result["torchscript"]
        lines.append(line("torch, TorchScript loop", ts, ts["compile_seconds"]) + "   (not a row)")
    lines.append(line("article numpy loop", result["seed_loop"]) + "   (yardstick)")
    if "us_per_epoch" in floor:
        lines.append(line("C loop (floor)", floor) + "   (yardstick)")
    else:
        lines.append(f"C loop (floor): not measured: {floor['skipped']}")
    lines += [
        "",
        "import seconds (fresh interpreter): " + ", ".join(f"{m} {s:.2f}" for m, s in result["import_seconds"].items()),
    ]
    lines += _compiled_lines(result["rows"])
    if "wall_seconds" in result:
        w = result["wall_seconds"]
        lines.append(
            f"wall seconds: the default run {w['compare_default_run']:.2f}, "
            f"python -m harness.yardsticks.article_loop {w['seed_loop_script']:.2f} "
            f"(ratio {w['compare_default_run'] / w['seed_loop_script']:.1f})"
        )
    if "default_run" in result:
        lines += [""] + render_breakdown(result["default_run"])
    if "sweep" in result:
        lines += [""] + render_sweep(result["sweep"])
    return "\n".join(lines)


def _compiled_lines(rows: dict) -> list:
    """Each compiled row beside the eager row it compiles: compile seconds cold and warm, µs per epoch."""
    lines = []
    for name, entry in rows.items():
        if "compiles" not in entry:
            continue
        us, eager = entry["us_per_epoch"]["median"], rows[entry["compiles"]]["us_per_epoch"]["median"]
        compile_text = (
            f"compile {entry['cold_compile_seconds']:.1f} s cold, {entry['warm_compile_seconds']:.1f} s warm"
            if "cold_compile_seconds" in entry
            else f"compile not timed: {entry.get('skipped', 'no compile step')}"
        )
        lines.append(f"  {name}: {compile_text}; {us:.1f} µs/epoch, {us / eager:.2f} × eager {entry['compiles']}")
    return ["", "compiled rows beside their eager rows:", *lines] if lines else []


def phase_seconds(run: dict, phase: str) -> float:
    """The seconds of ``phase`` in a breakdown (0 where it did not happen)."""
    return sum(p["seconds"] for p in run["phases"] if p["phase"] == phase)


def render_breakdown(run: dict) -> list:
    plots, page = phase_seconds(run, "plots"), phase_seconds(run, "html report")
    lines = [
        f"where a default run's time goes ({len(run['rows'])} rows, with --plot and --report: "
        f"{run['wall_seconds']:.2f} s of wall time, of which the plots {plots:.2f} s and the HTML report "
        f"{page:.2f} s, {run.get('report_bytes', 0) / 1e6:.2f} MB; the workers' tasks run in parallel)",
        f"{'phase':<44} {'seconds':>8} {'CPU s':>7}  process   (a task's CPU: its imports included)",
    ]
    for p in run["phases"]:
        cpu = f"{p['cpu_seconds']:7.2f}" if p.get("cpu_seconds") is not None else f"{'':>7}"
        lines.append(f"{p['phase']:<44} {p['seconds']:8.2f} {cpu}  {p['process']}")
    if run["workers_busy"] is not None:
        lines.append(
            f"training and lockstep: {run['training_and_lockstep_seconds']:.2f} s of wall time, "
            f"{run['task_cpu_seconds']:.2f} s of CPU (the language rows' programs included), "
            f"{run['workers']} worker processes busy {100 * run['workers_busy']:.0f}% of it"
        )
    return lines
