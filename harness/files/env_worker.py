"""The worker of another interpreter's rows (``backends.env_row``): run as

    PYTHON -m harness.files.env_worker FOLDER

by the interpreter of another environment, it answers the one request in FOLDER
(request.json, input.npz) with result.json and result.npz, in the formats that
``backends.env_row`` documents, and exits 0; or writes ``{"error": one line}`` and exits 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from backends.env_row import FORMAT


def _inputs(folder: Path) -> dict:
    with np.load(folder / "input.npz", allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _config(request: dict):
    from reference.spec import Config

    return Config(**request["config"])


def probe(request: dict, folder: Path):
    from harness.engine.rows import ROWS, unavailable_reason
    from harness.files.environment import code_fingerprint, environment

    rows = {name: unavailable_reason(name) for name, row in ROWS.items() if not row.program}
    return {"environment": environment(), "code": code_fingerprint(), "rows": rows}, None


def train(request: dict, folder: Path):
    from harness.engine.execution import run_row

    cfg, params0 = _config(request), _inputs(folder)
    traj = run_row(request["row"], cfg, params0, int(request.get("every", 1)), "cpu", request.get("fault"))
    timings = {"run_seconds": traj.seconds}
    if traj.compile_seconds is not None:
        timings["compile_seconds"] = traj.compile_seconds
    return {"timings": timings}, {"loss": traj.loss, "params": traj.params}


def step(request: dict, folder: Path):
    from harness.engine.faults import injected
    from harness.engine.rows import load_backend
    from reference.spec import PARAM_NAMES

    cfg, arrays = _config(request), _inputs(folder)
    params = {k: arrays[f"params/{k}"] for k in PARAM_NAMES}
    slot_names = sorted({key.split("/")[1] for key in arrays if key.startswith("slots/")})
    slots = {s: {k: arrays[f"slots/{s}/{k}"] for k in PARAM_NAMES} for s in slot_names}
    with injected(request["row"], request.get("fault")):
        phases = load_backend(request["row"]).step_phases(cfg, params, slots, arrays["t"])
    return {}, {
        f"{phase}/{name}": np.asarray(value) for phase, parts in phases.items() for name, value in parts.items()
    }


ACTIONS = {"probe": probe, "train": train, "step": step}


def answer(folder: Path) -> dict:
    """The request in ``folder`` answered: result.json's dict, result.npz written."""
    from harness.files.outputs import write_npz

    request = json.loads((folder / "request.json").read_text())
    if request.get("format") != FORMAT or request.get("action") not in ACTIONS:
        return {"error": f"not a request this worker answers (format {FORMAT!r}, actions {', '.join(ACTIONS)})"}
    result, arrays = ACTIONS[request["action"]](request, folder)
    if arrays is not None:
        write_npz(folder / "result.npz", arrays)
    return result


def main(argv: list) -> int:
    from harness.files.outputs import write_json

    if len(argv) != 1:
        print("usage: python -m harness.files.env_worker FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    try:
        result = answer(folder)
    except Exception as exc:
        text = " ".join(str(exc).split())
        said = exc.__class__.__name__ not in ("BackendUnavailable", "PluginError")
        result = {"error": f"{exc.__class__.__name__}: {text}" if said else text}
    write_json(folder / "result.json", result)
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
