"""Exchange with programs in any language: the initial state out (``compare.py init``),
trajectories in (``compare.py --external NAME=FILE``).

Initial state files hold the exact initial weights W1, b1, W2, b2 with their shapes,
the flat vector in the documented order (W1, b1, W2, b2, each row by row), the XOR data
and the config. Numbers are written so that they read back to the same float64 bits
(JSON: Python's shortest round-trip repr; CSV: 17 significant digits).

A trajectory file holds, per epoch 1..E, the loss logged before the update and the 4H + 1
parameters after it, in the same order:

    CSV  one line per epoch: loss, then the parameters (E lines, comma-separated; one
         header line of names may come first; lines starting with # are ignored)
    npz  arrays "loss" (E,) and "params" (E, 4H + 1), plain arrays (never unpickled)

Reading one validates it against the run: column count, finite numbers, as many epochs
as asked, and the parameter order, by comparing epoch 1 with the exported initial
weights (one optimizer step apart). Every problem is one line naming the file, the line
and what is wrong (:class:`ExternalError`).
"""
from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from reference.spec import PARAM_NAMES, Config, flatten_params, initial_params, n_params, param_shapes, xor_data

INIT_FORMATS = ("json", "csv", "npz")
ORDER = "W1, b1, W2, b2, each row by row (row-major)"


def flat_names(hidden: int) -> list[str]:
    """Names of the flat parameters in order: W1[0,0], W1[0,1], …, b2[0,0]."""
    return [f"{name}[{r},{c}]" for name, (rows, cols) in param_shapes(hidden).items()
            for r in range(rows) for c in range(cols)]


def init_record(cfg: Config) -> dict:
    """Everything a program needs to start where every row starts."""
    params = initial_params(cfg.seed, cfg.hidden, "float64")
    X, y = xor_data("float64")
    return {
        "format": "xor-crosscheck init 1",
        "config": cfg.to_dict(),
        "order": ORDER,
        "shapes": {k: list(v.shape) for k, v in params.items()},
        "params": {k: v.tolist() for k, v in params.items()},
        "flat": flatten_params(params).tolist(),
        "flat_names": flat_names(cfg.hidden),
        "X": X.tolist(),
        "y": y.tolist(),
    }


def write_init(path, cfg: Config, fmt: str) -> None:
    """The initial state as ``fmt`` (json, csv or npz), written whole or not at all."""
    from harness.files import write_atomic, write_npz

    record = init_record(cfg)
    if fmt == "json":
        write_atomic(path, lambda f: f.write(json.dumps(record, indent=1).encode()))
    elif fmt == "csv":
        write_atomic(path, lambda f: f.write(_init_csv(record, cfg).encode()))
    elif fmt == "npz":
        params = initial_params(cfg.seed, cfg.hidden, "float64")
        X, y = xor_data("float64")
        write_npz(path, {**params, "flat": flatten_params(params), "X": X, "y": y,
                         "config": np.array(json.dumps(cfg.to_dict())), "order": np.array(ORDER)})
    else:
        raise ValueError(f"unknown format {fmt!r}")


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


# --- trajectories in ---------------------------------------------------------------------------

class ExternalError(ValueError):
    """A trajectory file that cannot be used: one line naming the file, line and problem."""


def read_trajectory_file(path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(loss (E,), params (E, n), the file line of each epoch) from a CSV or npz file."""
    path = Path(path)
    if not path.is_file():
        raise ExternalError(f"{path}: no such file")
    if path.suffix == ".npz":
        return _read_npz(path)
    return _read_csv(path)


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile):
        raise ExternalError(f"{path}: not an .npz archive of plain arrays") from None
    missing = [k for k in ("loss", "params") if k not in arrays]
    if missing:
        raise ExternalError(f"{path}: missing array {', '.join(missing)} (expected loss (E,) and params (E, 4H+1))")
    loss, params = arrays["loss"], arrays["params"]
    if loss.ndim != 1 or params.ndim != 2 or loss.dtype.kind not in "fi" or params.dtype.kind not in "fi":
        raise ExternalError(f"{path}: loss must be (E,) and params (E, 4H+1) numbers, got {loss.shape} {loss.dtype} "
                            f"and {params.shape} {params.dtype}")
    if loss.shape[0] != params.shape[0]:
        raise ExternalError(f"{path}: loss has {loss.shape[0]} epochs, params {params.shape[0]}")
    return loss.astype(np.float64), params.astype(np.float64), [i + 1 for i in range(loss.shape[0])]


def _read_csv(path: Path):
    rows, line_numbers = [], []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExternalError(f"{path}: cannot be read as text ({exc.__class__.__name__})") from None
    width, header = None, False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = [f.strip() for f in stripped.split(",")]
        if not rows and not header and not _is_number(fields[0]):
            header = True  # one line of names may come first
            continue
        if width is None:
            width = len(fields)
        if len(fields) != width:
            raise ExternalError(f"{path}: line {number}: {len(fields)} columns, the lines before have {width}")
        values = []
        for column, field in enumerate(fields, start=1):
            try:
                values.append(float(field))
            except ValueError:
                raise ExternalError(f"{path}: line {number}, column {column}: not a number: {field!r}") from None
        rows.append(values)
        line_numbers.append(number)
    if not rows:
        raise ExternalError(f"{path}: no epochs (expected one line per epoch: loss, then the parameters)")
    data = np.array(rows, dtype=np.float64)
    return data[:, 0], data[:, 1:], line_numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def validate_trajectory(path, loss, params, lines, cfg: Config, first_step: float) -> None:
    """The checks that tie a trajectory to this run. ``first_step``: the largest move of a
    parameter in the reference row's first step (the order check's yardstick)."""
    n = n_params(cfg.hidden)
    where = "row" if str(path).endswith(".npz") else "line"
    if params.shape[1] != n:
        raise ExternalError(f"{path}: {where} {lines[0]}: {params.shape[1] + 1} columns, expected {n + 1} "
                            f"(the loss, then the {n} parameters {ORDER} for hidden={cfg.hidden})")
    table = np.column_stack([loss, params])
    bad = ~np.isfinite(table)
    if bad.any():
        i, column = np.argwhere(bad)[0]
        what = "NaN" if math.isnan(table[i, column]) else "infinite"
        raise ExternalError(f"{path}: {where} {lines[i]}, column {column + 1}: {what} where a finite number is expected")
    if loss.shape[0] < cfg.epochs:
        raise ExternalError(f"{path}: {loss.shape[0]} epochs, fewer than the {cfg.epochs} asked (--epochs)")
    if loss.shape[0] > cfg.epochs:
        raise ExternalError(f"{path}: {where} {lines[cfg.epochs]}: {loss.shape[0]} epochs, more than the {cfg.epochs} "
                            "asked (--epochs)")
    _check_order(path, params[0], cfg, first_step, f"{where} {lines[0]}")


def _check_order(path, first: np.ndarray, cfg: Config, first_step: float, where: str) -> None:
    """Epoch 1 must be one step from the exported initial weights, element by element."""
    init = initial_params(cfg.seed, cfg.hidden, "float64")
    start = flatten_params(init)
    allowed = 100.0 * first_step + 16 * np.finfo(np.float64).eps * max(1.0, float(np.abs(start).max()))
    moved = float(np.abs(first - start).max())
    if moved <= allowed:
        return
    column_major = np.concatenate([np.asarray(init[k]).T.ravel() for k in PARAM_NAMES])
    if float(np.abs(first - column_major).max()) <= allowed:
        raise ExternalError(f"{path}: {where}: the parameters are in column-major order (MATLAB's W1(:)); write "
                            f"them {ORDER}, e.g. reshape(W1.', 1, [])")
    if float(np.abs(np.sort(first) - np.sort(start)).max()) <= allowed:
        raise ExternalError(f"{path}: {where}: the parameters are the initial weights in another order; expected "
                            f"{ORDER}")
    raise ExternalError(f"{path}: {where}: epoch 1 is {moved:.3g} from the exported initial weights, more than one "
                        f"step can move (≤ {allowed:.3g}): not started from compare.py init --seed {cfg.seed} "
                        f"--hidden {cfg.hidden}, or not in the order {ORDER}")


def reference_first_step(cfg: Config) -> float:
    """The largest move of a parameter in the numpy row's first step: the order check's
    yardstick."""
    from backends import numpy_backend

    params = initial_params(cfg.seed, cfg.hidden, cfg.dtype)
    X, y = xor_data(cfg.dtype)
    new, _, _ = numpy_backend.train_step(params, numpy_backend.optimizer_init(params, cfg), X, y, cfg)
    return float(np.abs(flatten_params(new) - flatten_params(params)).max())


def load_external(name: str, path, cfg: Config, first_step: float, every: int = 1):
    """A validated trajectory file as a row's Trajectory (initial weights as record 0)."""
    from harness.rows import Trajectory
    from reference.spec import checkpoint_epochs

    loss, params, lines = read_trajectory_file(path)
    validate_trajectory(path, loss, params, lines, cfg, first_step)
    start = flatten_params(initial_params(cfg.seed, cfg.hidden, "float64"))
    history = np.vstack([start[None], params]).astype(cfg.dtype)
    kept = checkpoint_epochs(cfg.epochs, every)
    return Trajectory(name=name, loss=loss[kept - 1].astype(cfg.dtype), params=history[np.concatenate([[0], kept])],
                      seconds=float("nan"), epochs_run=cfg.epochs)


def write_trajectory_csv(path, loss: np.ndarray, params: np.ndarray, hidden: int) -> None:
    """A trajectory in the CSV form ``read_trajectory_file`` reads (params after each
    epoch, without the initial row), 17 significant digits."""
    from harness.files import write_atomic

    header = "loss," + ",".join(flat_names(hidden))
    body = "\n".join(",".join(repr(float(x)) for x in (loss_e, *row)) for loss_e, row in zip(loss, params))
    write_atomic(path, lambda f: f.write((header + "\n" + body + "\n").encode()))
