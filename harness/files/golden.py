"""Regenerate the golden trajectories of the numpy row (``reference.golden`` reads them):

    python -m harness.files.golden
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from backends import numpy_backend
from harness.files.outputs import write_npz
from harness.files.environment import environment
from reference.golden import COMMAND, EVERY, FOLDER, SEEDS, golden_path
from reference.spec import Config, checkpoint_epochs, initial_params


def make_golden(seed: int, cfg: Config = Config()) -> dict:
    cfg = replace(cfg, seed=seed)
    loss, params = numpy_backend.train(cfg, initial_params(seed, cfg.hidden, cfg.dtype))
    epochs = checkpoint_epochs(cfg.epochs, EVERY)
    return {
        "epochs": epochs,
        "loss": loss[epochs - 1],
        "params": params[epochs],
        "params0": params[0],
        "config": np.array(json.dumps(cfg.to_dict())),
        "environment": np.array(json.dumps(environment())),
        "command": np.array(COMMAND),
    }


def main() -> None:
    FOLDER.mkdir(exist_ok=True)
    for seed in SEEDS:
        write_npz(golden_path(seed), make_golden(seed))
        print(f"wrote {golden_path(seed)}")


if __name__ == "__main__":
    main()
