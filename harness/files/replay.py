"""Replay files: the numpy row's exact state just before the step where a pair parted,
with the config, the environment and the planted faults, so that the step can be run
again in every row (``compare.py replay``). Read back without unpickling, validated."""

from __future__ import annotations

import json
import zipfile

import numpy as np

from harness.engine.faults import FAULTS, OLD_FAULTS
from harness.engine.lockstep import States
from harness.files.outputs import write_npz
from reference.optimizers import NON_NEGATIVE_SLOTS, OPTIMIZERS
from reference.spec import Config, n_params, unflatten_params

# and one array per optimizer state slot (m and v for Adam), named as the slot
REPLAY_KEYS = ("params", "t", "epoch", "config", "environment", "faults", "pair", "phase")


def write_replay(path, cfg: Config, reference, epoch: int, pair, phase: str, faults: dict, env: dict | None) -> None:
    """The numpy row's exact state just before ``epoch`` (params, the optimizer's slots,
    t), with the config, the environment and the planted faults, so the step can be
    run again."""
    before = epoch - 1
    write_npz(
        path,
        {
            "params": reference.params[before],
            **{s: history[before] for s, history in reference.states.items()},
            "t": np.array(before, dtype=np.int64),
            "epoch": np.array(epoch, dtype=np.int64),
            "config": np.array(json.dumps(cfg.to_dict())),
            "environment": np.array(json.dumps(env)),
            "faults": np.array(json.dumps(faults)),
            "pair": np.array(",".join(pair)),
            "phase": np.array(phase),
        },
    )


class ReplayError(ValueError):
    """A replay file that cannot be used; the message is one line naming the problem."""


def read_replay(path) -> dict:
    """Load and validate a replay file (never unpickling)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            record = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise ReplayError(f"{path}: no such file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # EOFError: an empty file
        raise ReplayError(f"{path}: not a replay file (an .npz archive of plain arrays)") from None
    missing = [k for k in REPLAY_KEYS if k not in record]
    if missing:
        raise ReplayError(f"{path}: missing {', '.join(missing)}")
    try:
        cfg = Config(**json.loads(str(record["config"])))
        faults = json.loads(str(record["faults"]))
        environment = json.loads(str(record["environment"]))
    except (ValueError, TypeError) as exc:
        raise ReplayError(f"{path}: bad config, faults or environment: {exc}") from None
    n = n_params(cfg.hidden)
    slots = OPTIMIZERS[cfg.optimizer].state_slots
    missing = [s for s in slots if s not in record]
    if missing:
        raise ReplayError(f"{path}: missing the {cfg.optimizer} state {', '.join(missing)}")
    for key in ("params", *slots):
        array = record[key]
        if array.shape != (n,) or array.dtype.kind != "f":
            raise ReplayError(f"{path}: {key} should be {n} floats, got shape {array.shape} of {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise ReplayError(f"{path}: {key} holds non-finite values")
    for key in slots:
        if key in NON_NEGATIVE_SLOTS and np.any(record[key] < 0):
            raise ReplayError(f"{path}: {key} holds negative values")
    t, epoch = record["t"], record["epoch"]
    whole = all(x.shape == () and x.dtype.kind == "i" for x in (t, epoch))
    if not whole or int(t) < 0 or int(epoch) != int(t) + 1:
        raise ReplayError(f"{path}: t must be a whole number >= 0 and epoch t + 1")
    if not isinstance(faults, dict) or not all(isinstance(v, str) for v in faults.values()):
        raise ReplayError(f"{path}: faults must map rows to fault names")
    faults = {row: OLD_FAULTS.get(fault, fault) for row, fault in faults.items()}  # written before a rename
    unknown = [fault for fault in faults.values() if fault not in FAULTS]
    if unknown:  # (whether each fault fits its row is for the command, once plug-ins are loaded)
        raise ReplayError(f"{path}: faults: unknown fault {unknown[0]!r}")
    if environment is not None and not isinstance(environment, dict):
        raise ReplayError(f"{path}: environment must be a JSON object")
    return {
        "config": cfg,
        "faults": faults,
        "pair": str(record["pair"]).split(","),
        "phase": str(record["phase"]),
        "states": States(
            params=unflatten_params(record["params"].astype(cfg.dtype)[None], cfg.hidden),
            slots={s: unflatten_params(record[s].astype(cfg.dtype)[None], cfg.hidden) for s in slots},
            t=np.array([[[int(t)]]], dtype=np.int64),
            epochs=np.array([int(epoch)]),
        ),
        "environment": environment,
    }
