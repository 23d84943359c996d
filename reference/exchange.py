"""The exchange formats, as a spec: what an initial-state file holds and how a trajectory
file that another program wrote is read. Reading here is syntax only (numbers, columns,
shapes); whether a trajectory fits a run is judged in ``harness.files.exchange``.

Initial state files hold the exact initial weights W1, b1, W2, b2 with their shapes,
the flat vector in the documented order (W1, b1, W2, b2, each row by row), the XOR data
and the config. Numbers are written so that they read back to the same float64 bits
(JSON: Python's shortest round-trip repr; CSV: 17 significant digits).

A trajectory file holds, per epoch 1..E, the loss logged before the update and the 4H + 1
parameters after it, in the same order:

    CSV  one line per epoch: loss, then the parameters (E lines, comma-separated; one
         header line of names may come first; lines starting with # are ignored)
    npz  arrays "loss" (E,) and "params" (E, 4H + 1), plain arrays (never unpickled)

Every problem is one line naming the file, the line and what is wrong (:class:`ExternalError`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from reference.spec import Config, flatten_params, initial_params, param_shapes, xor_data

ORDER = "W1, b1, W2, b2, each row by row (row-major)"


def flat_names(hidden: int) -> list[str]:
    """Names of the flat parameters in order: W1[0,0], W1[0,1], …, b2[0,0]."""
    return [
        f"{name}[{r},{c}]"
        for name, (rows, cols) in param_shapes(hidden).items()
        for r in range(rows)
        for c in range(cols)
    ]


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


class ExternalError(ValueError):
    """A trajectory file that cannot be used: one line naming the file, line and problem."""


def read_trajectory_file(path) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(loss (E,), params (E, n), the file line of each epoch) from a CSV or npz file."""
    path = Path(path)
    try:
        is_file = path.is_file()
    except OSError as exc:  # a name too long, a loop of links
        raise ExternalError(f"{str(path)[:80]}: {exc.strerror or exc}") from None
    if not is_file:
        raise ExternalError(f"{path}: no such file")
    if path.suffix == ".npz":
        return _read_npz(path)
    return _read_csv(path)


def _read_npz(path: Path):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # EOFError: an empty file
        raise ExternalError(f"{path}: not an .npz archive of plain arrays") from None
    missing = [k for k in ("loss", "params") if k not in arrays]
    if missing:
        raise ExternalError(f"{path}: missing array {', '.join(missing)} (expected loss (E,) and params (E, 4H+1))")
    loss, params = arrays["loss"], arrays["params"]
    if loss.ndim != 1 or params.ndim != 2 or loss.dtype.kind not in "fi" or params.dtype.kind not in "fi":
        raise ExternalError(
            f"{path}: loss must be (E,) and params (E, 4H+1) numbers, got {loss.shape} {loss.dtype} "
            f"and {params.shape} {params.dtype}"
        )
    if loss.shape[0] != params.shape[0]:
        raise ExternalError(f"{path}: loss has {loss.shape[0]} epochs, params {params.shape[0]}")
    return loss.astype(np.float64), params.astype(np.float64), [i + 1 for i in range(loss.shape[0])]


def _read_csv(path: Path):
    rows: list[list[float]] = []
    line_numbers: list[int] = []
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
