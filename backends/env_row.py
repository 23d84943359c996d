"""Rows run by another Python interpreter (``compare.py --env NAME=PYTHON``): the same
row's code under other library versions, as ``ROW@NAME``.

The other interpreter must have this project importable (``PYTHON -m pip install -e .
--no-deps`` in that environment, or a ``.pth`` file naming the checkout); it runs
``PYTHON -m harness.files.env_worker FOLDER`` once per request, in a temporary folder so
that nothing of the current directory is on its path. Nothing crosses between the two
interpreters but JSON and ``.npz`` files of plain arrays, read with
``allow_pickle=False`` and checked for shape:

    request.json   {"format", "action": probe | train | step, "row", "config", "every",
                    "fault"}
    input.npz      train: the initial params W1, b1, W2, b2; step: a batch of states as
                   "params/W1" …, "slots/m/W1" …, "t" (the lockstep states)
    result.json    probe: {"environment": versions, "code": the project's code
                   fingerprint, "rows": {row: why it cannot run there, or null}};
                   train: {"timings"}; any action: {"error": one line} when it failed
    result.npz     train: "loss" (K,) and "params" (K + 1, n); step: "PHASE/NAME" arrays

A failure is :class:`backends.RowFailed` naming the row and what went wrong.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from reference.spec import PARAM_NAMES, Config, checkpoint_epochs, n_params

FORMAT = "xor-crosscheck env 1"
TIMEOUT_SECONDS = 600
PROBE_TIMEOUT_SECONDS = 120
WORKER = "harness.files.env_worker"


def backend_key(row: str, env: str, python) -> str:
    """The backend name (``backends.load``) of ``row`` run by ``python``, as environment ``env``."""
    return f"env:{row}@{env}={python}"


def parse_key(key: str) -> tuple[str, str, str]:
    """(row, environment name, python) from a backend name made by ``backend_key``."""
    row, _, rest = key[len("env:") :].partition("@")
    env, _, python = rest.partition("=")
    return row, env, python


class RemoteError(RuntimeError):
    """The other interpreter cannot serve a request; the message is one line."""


def call(
    python,
    action: str,
    request: dict,
    arrays: dict | None = None,
    timeout: float = TIMEOUT_SECONDS,
    variables: dict | None = None,
):
    """Run one request in ``python`` (with ``variables`` set in its environment): (result.json
    as a dict, result.npz's arrays or {})."""
    with tempfile.TemporaryDirectory(prefix="xor-env-") as name:
        folder = Path(name)
        (folder / "request.json").write_text(json.dumps({"format": FORMAT, "action": action} | request))
        if arrays is not None:
            np.savez(folder / "input.npz", **arrays)
        try:
            done = subprocess.run(
                [str(python), "-m", WORKER, str(folder)],
                cwd=folder,
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=os.environ | (variables or {}),
            )
        except subprocess.TimeoutExpired:
            raise RemoteError(f"no answer in {timeout:g} s") from None
        except OSError as exc:
            raise RemoteError(f"cannot run {python}: {exc.strerror or exc}") from None
        result = _read_result(folder, done)
        return result, _read_arrays(folder / "result.npz")


def _read_result(folder: Path, done) -> dict:
    path = folder / "result.json"
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        said = [line.strip() for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
        last = said[-1] if said else f"exit {done.returncode}, nothing said"
        if "No module named" in last and WORKER.split(".")[0] in last:
            last += " (install this project there: PYTHON -m pip install -e . --no-deps)"
        raise RemoteError(last) from None
    if not isinstance(result, dict):
        raise RemoteError("its answer is not a JSON object")
    if result.get("error"):
        raise RemoteError(str(result["error"]))
    return result


def _read_arrays(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # EOFError: an empty file
        raise RemoteError("its result.npz is not an archive of plain arrays") from None


def probe(python) -> dict:
    """What the other interpreter has: its versions, the fingerprint of the project's code
    it imports, and why each row cannot run there (None where it can)."""
    result, _ = call(python, "probe", {}, timeout=PROBE_TIMEOUT_SECONDS)
    if not isinstance(result.get("environment"), dict) or not isinstance(result.get("rows"), dict):
        raise RemoteError("its probe answer lacks environment or rows")
    return result


def _floats(arrays: dict, key: str, shape: tuple, what: str) -> np.ndarray:
    value = arrays.get(key)
    if value is None or value.shape != shape or value.dtype.kind != "f":
        got = "nothing" if value is None else f"{value.shape} {value.dtype}"
        raise RemoteError(f"its {what} {key} should be {shape} floats, got {got}")
    return value.astype(np.float64)


class EnvRow:
    """The backend interface (``backends.INTERFACE``'s part a remote row offers:
    check_device, train, step_phases) of ``row`` run by ``python``."""

    REMOTE = True

    def __init__(self, row: str, env: str, python: str, variables: dict | None = None):
        self.row, self.env, self.python, self.variables = row, env, python, variables
        self.NAME = f"{row}@{env}"
        self.GRADIENT_SOURCE = f"the {row} row's, run by {python}"
        self.fault: str | None = None

    @contextmanager
    def planted(self, fault: str | None):
        """Within the block, requests carry ``fault`` (planted there as ``--inject`` plants it here)."""
        before, self.fault = self.fault, fault
        try:
            yield
        finally:
            self.fault = before

    def check_device(self, device: str) -> None:
        if device != "cpu":
            raise RuntimeError(f"the {self.NAME} row runs on the cpu only, not {device!r}")

    def _call(self, action: str, cfg: Config, arrays: dict, **request):
        import backends

        request = {"row": self.row, "config": cfg.to_dict(), "fault": self.fault} | request
        try:
            return call(self.python, action, request, arrays, variables=self.variables)
        except RemoteError as exc:
            raise backends.RowFailed(f"{self.NAME} row failed in {self.python}: {exc}") from None

    def train(self, cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
        """(loss (K,), flat params (K + 1, n)) of one run from ``params0``."""
        import backends

        self.check_device(device)
        if np.ndim(params0["W1"]) != 2:
            raise ValueError(f"the {self.NAME} row trains one run at a time")
        result, arrays = self._call("train", cfg, {k: np.asarray(params0[k]) for k in PARAM_NAMES}, every=every)
        kept = checkpoint_epochs(cfg.epochs, every).size
        try:
            loss = _floats(arrays, "loss", (kept,), "trajectory")
            params = _floats(arrays, "params", (kept + 1, n_params(cfg.hidden)), "trajectory")
        except RemoteError as exc:
            raise backends.RowFailed(f"{self.NAME} row wrote an unusable trajectory: {exc}") from None
        if timings is not None:
            timings.update(
                {
                    k: float(v)
                    for k, v in (result.get("timings") or {}).items()
                    if k in ("run_seconds", "compile_seconds")
                }
            )
        return loss, params

    def step_phases(self, cfg: Config, params: dict, slots: dict, t) -> dict:
        """One step from each of a batch of numpy states, every phase's values."""
        import backends

        arrays = {f"params/{k}": np.asarray(params[k]) for k in PARAM_NAMES}
        arrays |= {f"slots/{s}/{k}": np.asarray(tree[k]) for s, tree in slots.items() for k in PARAM_NAMES}
        arrays["t"] = np.asarray(t)
        _, values = self._call("step", cfg, arrays)
        count = np.shape(t)[0]
        phases: dict[str, dict] = {}
        for key, value in values.items():
            phase, _, name = key.partition("/")
            if not name or value.ndim < 1 or value.shape[0] != count or value.dtype.kind != "f":
                raise backends.RowFailed(
                    f"{self.NAME} row's step wrote {key} {value.shape} {value.dtype}, not {count} states of floats"
                )
            phases.setdefault(phase, {})[name] = value
        missing = [p for p in ("forward", "loss", "grads", "params") if p not in phases]
        if missing:
            raise backends.RowFailed(f"{self.NAME} row's step wrote no {', '.join(missing)}")
        return phases


_LOADED: dict = {}


def load(key: str) -> EnvRow:
    """The remote row for a backend name made by ``backend_key`` (one per process)."""
    if key not in _LOADED:
        _LOADED[key] = EnvRow(*parse_key(key))
    return _LOADED[key]
