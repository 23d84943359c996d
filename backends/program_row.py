"""Rows whose step is a program in another of the series' languages (the MATLAB code run
by GNU Octave, the Scilab code run by Scilab), run as a subprocess in a temporary folder.

Each language's code has two entry points that share one step function:

    xor_train(init.json, trajectory.csv)        trains from the initial state that
        ``compare.py init`` writes and writes the trajectory in the exchange format
        (``reference.exchange``); the harness checks it as it checks any --external file.
    xor_step(step.json, states.f64, phases.f64)  takes one step from each of a batch of
        recorded numpy states and writes every phase's values: the lockstep check.

step.json is an init record with ``count`` (B), ``slots`` (the optimizer's state slots,
comma-separated, in the order the states file holds them) and ``phases`` (the
optimizer's phases in the order to write them). The states and phases files are raw
little-endian float64, one record per state (``state_records``, ``PhaseLayout``): raw
binary because 20000 states of AMSGrad are 1.4 million numbers each way, and decimal text
would cost the interpreters seconds to print and parse.

An environment variable per language (``Program.code_variable``) points the row at
another folder of its code: an edited copy runs in the harness as the row itself would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference.exchange import ExternalError, init_record, read_trajectory_file
from reference.optimizers import OPTIMIZERS
from reference.spec import N_SAMPLES, Config, flatten_params, n_params, unflatten_params

TIMEOUT_SECONDS = 600  # when the caller gives none (the harness derives one from the row's cost)


@dataclass(frozen=True)
class Program:
    """One language's program: how to call an entry point of its code on some files."""

    row: str  # the row's name
    executable: str  # looked up on PATH
    code: Path  # the folder of its code (package data, installed with the package)
    code_variable: str  # environment variable naming another folder of its code
    call: Callable  # (executable, code folder, entry, files) -> argv
    install_hint: str  # how to get the executable
    marker: str  # a file every folder of its code holds
    harmless_stderr: tuple = ()  # lines the program may print on success

    def folder(self) -> Path:
        """The folder of its code, absolute: the program runs elsewhere (``run``)."""
        return Path(os.environ.get(self.code_variable) or self.code).resolve()


def quoted(path) -> str:
    """A path as a single-quoted MATLAB or Scilab string (Scilab doubles both quotes)."""
    return "'" + Path(path).as_posix().replace("'", "''").replace('"', '""') + "'"


def unavailable(program: Program) -> str | None:
    """Why the row cannot run here, or None."""
    if shutil.which(program.executable) is None:
        return f"{program.row} row unavailable: {program.executable} is not on PATH ({program.install_hint})"
    if not (program.folder() / program.marker).is_file():
        return (
            f"{program.row} row unavailable: {program.folder()} has no {program.marker} ({program.code_variable} "
            "names the folder of its code)"
        )
    return None


def run(program: Program, entry: str, files: list, timeout: float | None = None) -> float:
    """Run ``entry`` of the program's code on ``files``; the seconds it took (the
    interpreter's start included). A program that is not there is
    :class:`backends.BackendUnavailable`; one that fails is :class:`backends.RowFailed`
    with its own complaint (``complaint``), and so is one still running after ``timeout``
    seconds (it is killed)."""
    import backends

    reason = unavailable(program)
    if reason:
        raise backends.BackendUnavailable(reason)
    argv = program.call(program.executable, program.folder(), entry, files)
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    start = time.perf_counter()
    try:
        # in the temporary folder of its files: whatever else the interpreter writes (Octave's
        # octave-workspace after a crash) goes there too, and away with it
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=timeout, cwd=Path(files[0]).parent
        )
    except subprocess.TimeoutExpired:
        raise backends.RowFailed(f"{program.row} row hung: no result in {timeout:.0f} s (killed)") from None
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not Path(files[-1]).exists():
        raise backends.RowFailed(
            f"{program.row} row failed (exit {done.returncode}): "
            f"{complaint(done.stderr + chr(10) + done.stdout, program.harmless_stderr)}"
        )
    return seconds


def complaint(output: str, harmless=()) -> str:
    """The line of a failed program's output that says what went wrong, with where: Octave
    prints "error: WHAT", then "error: called from" and the frames; Scilab prints the
    frames ("at line N of function F ( FILE line M )"), then WHAT last."""
    said = [line.strip() for line in output.splitlines() if line.strip() and not any(h in line for h in harmless)]
    if not said:
        return "it wrote nothing"
    errors = [line for line in said if line.startswith("error: ") and line != "error: called from"]
    frames = [line for line in said if line.startswith("at line ")]
    if errors:
        what, where = errors[0][len("error: ") :], said[said.index(errors[0]) + 1 :]
        where = [line for line in where if not line.startswith("error:")][:1]
    else:
        what, where = said[-1], frames[:1]
    return what + (f" ({' '.join(where[0].split())})" if where else "")


def train(program: Program, cfg: Config, params0, timings: dict | None = None, timeout: float | None = None):
    """Write the initial state as ``compare.py init`` does (with ``params0``), run the
    program's xor_train on it and read its trajectory back: (loss (E,), params (E + 1,
    n), the initial weights first), every epoch."""
    import backends

    if np.ndim(params0["W1"]) != 2 or cfg.dtype != "float64":
        raise ValueError(f"the {program.row} row trains one float64 run at a time")
    flat0 = flatten_params(params0).astype(np.float64)
    record = init_record(cfg) | {
        "params": {k: np.asarray(v, dtype=np.float64).tolist() for k, v in params0.items()},
        "flat": flat0.tolist(),
    }
    with tempfile.TemporaryDirectory(prefix=f"xor-{program.row}-") as folder:
        init_file, out_file = Path(folder) / "init.json", Path(folder) / "trajectory.csv"
        init_file.write_text(json.dumps(record))
        seconds = run(program, "xor_train", [init_file, out_file], timeout)
        try:
            loss, params, _ = read_trajectory_file(out_file)
        except ExternalError as exc:
            raise backends.RowFailed(f"{program.row} row wrote an unusable trajectory: {exc}") from None
    if timings is not None:
        timings["run_seconds"] = seconds
    return loss, np.vstack([flat0[None], params])


def state_records(cfg: Config, params: dict, slots: dict, t) -> np.ndarray:
    """A batch of E states as (E, width) float64 records: the flat params, each slot of
    the optimizer's in order, then the steps taken."""
    columns = [flatten_params(params)] + [flatten_params(slots[s]) for s in OPTIMIZERS[cfg.optimizer].state_slots]
    count = columns[0].shape[0]
    columns.append(np.asarray(t, dtype=np.float64).reshape(count, 1))
    return np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f8")


@dataclass(frozen=True)
class PhaseLayout:
    """Where each phase's values lie in a record of the phases file."""

    hidden: int
    optimizer_phases: tuple

    def parts(self) -> list:
        """(phase, name, shape of one state's value) in file order."""
        h, n = self.hidden, n_params(self.hidden)
        forward = [
            ("forward", "Z1", (N_SAMPLES, h)),
            ("forward", "A1", (N_SAMPLES, h)),
            ("forward", "Z2", (N_SAMPLES, 1)),
            ("forward", "A2", (N_SAMPLES, 1)),
            ("loss", "loss", ()),
        ]
        flat = ["grads", *self.optimizer_phases, "params"]
        return forward + [(phase, "flat", (n,)) for phase in flat]

    @property
    def width(self) -> int:
        return sum(int(np.prod(shape)) for _, _, shape in self.parts())

    def unpack(self, records: np.ndarray) -> dict:
        """{phase: {name: array (E, …)}} from (E, width) records."""
        out, start = {}, 0
        count = records.shape[0]
        for phase, name, shape in self.parts():
            size = int(np.prod(shape))
            values = records[:, start : start + size].reshape(count, *shape)
            start += size
            if name == "flat":
                out[phase] = unflatten_params(values, self.hidden)
            else:
                out.setdefault(phase, {})[name] = values
        return out


def row_functions(program: Program):
    """The backend interface a language row's module exports (``backends.INTERFACE``'s
    part that a program can offer): check_device, train, step_phases."""

    def check_device(device: str) -> None:
        if device != "cpu":
            raise RuntimeError(f"the {program.row} row runs on the cpu only, not {device!r}")

    def train_row(
        cfg: Config,
        params0,
        every: int = 1,
        device: str = "cpu",
        timings: dict | None = None,
        timeout: float | None = None,
    ):
        """The whole trajectory from ``params0`` (every epoch, whatever ``every`` is)."""
        check_device(device)
        return train(program, cfg, params0, timings, timeout)

    def step_row(cfg: Config, params: dict, slots: dict, t, timeout: float | None = None) -> dict:
        return step_phases(program, cfg, params, slots, t, timeout)

    return check_device, train_row, step_row


def step_phases(program: Program, cfg: Config, params: dict, slots: dict, t, timeout: float | None = None) -> dict:
    """One step of the program from each of a batch of numpy states (params (E, r, c) per
    tensor, slots likewise, t (E, 1, 1)): every phase's values, as the backends'
    ``step_phases`` returns them."""
    import backends

    if cfg.dtype != "float64":
        raise ValueError(f"the {program.row} row computes in float64 only")
    records = state_records(cfg, params, slots, t)
    spec = OPTIMIZERS[cfg.optimizer]
    layout = PhaseLayout(cfg.hidden, spec.phases)
    request = init_record(cfg) | {
        "count": records.shape[0],
        "slots": ",".join(spec.state_slots),
        "phases": ",".join(spec.phases),
    }
    with tempfile.TemporaryDirectory(prefix=f"xor-{program.row}-step-") as folder:
        files = [Path(folder) / "step.json", Path(folder) / "states.f64", Path(folder) / "phases.f64"]
        files[0].write_text(json.dumps(request))
        records.tofile(files[1])
        run(program, "xor_step", files, timeout)
        values = np.fromfile(files[2], dtype="<f8")
    if values.size != records.shape[0] * layout.width:
        raise backends.RowFailed(
            f"{program.row} row's step wrote {values.size} numbers, not {records.shape[0]} records of {layout.width}"
        )
    return layout.unpack(values.reshape(records.shape[0], layout.width).astype(np.float64))
