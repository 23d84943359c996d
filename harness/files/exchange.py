"""Exchange with programs in any language: the initial state out (``compare.py init``),
trajectories in (``compare.py --external NAME=FILE``). The formats are
``reference.exchange``; a trajectory read in is checked against the run
(``harness.engine.trajectory_check``) before it becomes a row.
"""

from __future__ import annotations

import json

import numpy as np

from harness.engine.rows import Trajectory
from harness.engine.trajectory_check import validate_trajectory
from harness.files.outputs import write_atomic, write_npz
from reference.exchange import ORDER, flat_names, init_record, read_trajectory_file
from reference.spec import PARAM_NAMES, Config, checkpoint_epochs, flatten_params, initial_params, xor_data


def _write_json_init(path, cfg: Config) -> None:
    record = init_record(cfg)
    write_atomic(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def _write_csv_init(path, cfg: Config) -> None:
    record = init_record(cfg)
    write_atomic(path, lambda f: f.write(_init_csv(record, cfg).encode()))


def _write_npz_init(path, cfg: Config) -> None:
    params = initial_params(cfg.seed, cfg.hidden, "float64")
    X, y = xor_data("float64")
    write_npz(
        path,
        {
            **params,
            "flat": flatten_params(params),
            "X": X,
            "y": y,
            "config": np.array(json.dumps(cfg.to_dict())),
            "order": np.array(ORDER),
        },
    )


# format -> writer(path, cfg); each writes the file whole or not at all
INIT_WRITERS = {"json": _write_json_init, "csv": _write_csv_init, "npz": _write_npz_init}


def write_init(path, cfg: Config, fmt: str) -> None:
    """The initial state as ``fmt`` (a key of INIT_WRITERS), written whole or not at all."""
    INIT_WRITERS[fmt](path, cfg)


def _init_csv(record: dict, cfg: Config) -> str:
    """Long format, one number per line: section,name,row,col,value (0-based indices)."""
    lines = ["section,name,row,col,value"]
    for name in PARAM_NAMES:
        for r, row in enumerate(record["params"][name]):
            lines += [f"param,{name},{r},{c},{value!r}" for c, value in enumerate(row)]
    for name in ("X", "y"):
        for r, row in enumerate(record[name]):
            lines += [f"data,{name},{r},{c},{value!r}" for c, value in enumerate(row)]
    lines += [f"config,{key},,,{value}" for key, value in record["config"].items()]
    return "\n".join(lines) + "\n"


def load_external(name: str, path, cfg: Config, first_step: float, every: int = 1):
    """A validated trajectory file as a row's Trajectory (initial weights as record 0)."""
    loss, params, lines = read_trajectory_file(path)
    validate_trajectory(path, loss, params, lines, cfg, first_step)
    start = flatten_params(initial_params(cfg.seed, cfg.hidden, "float64"))
    history = np.vstack([start[None], params]).astype(cfg.dtype)
    kept = checkpoint_epochs(cfg.epochs, every)
    return Trajectory(
        name=name,
        loss=loss[kept - 1].astype(cfg.dtype),
        params=history[np.concatenate([[0], kept])],
        seconds=float("nan"),
        epochs_run=cfg.epochs,
    )


def write_trajectory_csv(path, loss: np.ndarray, params: np.ndarray, hidden: int) -> None:
    """A trajectory in the CSV form ``read_trajectory_file`` reads (params after each
    epoch, without the initial row), 17 significant digits."""
    header = "loss," + ",".join(flat_names(hidden))
    body = "\n".join(",".join(repr(float(x)) for x in (loss_e, *row)) for loss_e, row in zip(loss, params, strict=True))
    write_atomic(path, lambda f: f.write((header + "\n" + body + "\n").encode()))
