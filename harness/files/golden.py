"""Make the golden trajectories of the numpy row (``reference.golden`` reads them), and
tell where a run here first differs from one:

    python -m harness.files.golden [--folder DIR]

(regenerates all of them, into ``reference/golden`` unless DIR is given).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from backends import numpy_backend
from harness.engine.lockstep import phases_for, states_from_history
from harness.files.environment import environment
from harness.files.outputs import write_npz
from reference.golden import COMMAND, EVERY, FOLDER, SEEDS, first_digest_difference, golden_path, phase_digests
from reference.spec import Config, checkpoint_epochs, initial_params

# what a golden's environment is compared on: what it was made with, and where
ENVIRONMENT_KEYS = ("python", "numpy", "platform", "machine")


def golden_run(cfg: Config):
    """The numpy row's whole run at ``cfg`` and the digests of every phase of every step
    from its own states: (loss (E,), params (E + 1, n), digests (E, P), the phases)."""
    states: dict = {}
    loss, params = numpy_backend.train(cfg, initial_params(cfg.seed, cfg.hidden, cfg.dtype), states=states)
    steps = states_from_history(cfg, params, states)
    names = phases_for(cfg)
    phases = numpy_backend.step_phases(cfg, steps.params, steps.slots, steps.t)
    return loss, params, phase_digests(phases, names), names


def make_golden(seed: int, cfg: Config | None = None) -> dict:
    cfg = replace(cfg or Config(), seed=seed)
    loss, params, digests, names = golden_run(cfg)
    epochs = checkpoint_epochs(cfg.epochs, EVERY)
    return {
        "epochs": epochs,
        "loss": loss[epochs - 1],
        "params": params[epochs],
        "params0": params[0],
        "config": np.array(json.dumps(cfg.to_dict())),
        "environment": np.array(json.dumps(environment())),
        "command": np.array(COMMAND),
        "phases": np.array(names),
        "digests": digests,
    }


def compare_with_golden(golden: dict) -> dict:
    """The numpy row run here against a golden record (``reference.golden.load_golden``):
    its loss and params at the golden's checkpoints, whether every phase of every step is
    the same bits, and if not, the first epoch and phase that differ, with what differs
    between the environment the golden was made in and this one."""
    cfg = golden["config"]
    loss, params, digests, names = golden_run(cfg)
    first = first_digest_difference(golden["digests"], digests, [str(p) for p in golden["phases"]])
    here, made = environment(), golden["environment"]
    changed = {key: [made.get(key), here.get(key)] for key in ENVIRONMENT_KEYS if made.get(key) != here.get(key)}
    return {
        "loss": loss[golden["epochs"] - 1],
        "params": params[golden["epochs"]],
        "bit_identical": first is None,
        "first_difference": None if first is None else {"epoch": first[0], "phase": first[1]},
        "environment_changes": changed,
    }


def difference_text(seed: int, result: dict) -> str:
    """One line: where the run here first differs from the golden, and what changed."""
    first = result["first_difference"]
    changes = ", ".join(f"{k} {a} → {b}" for k, (a, b) in result["environment_changes"].items())
    where = changes or "the same environment (a CPU or BLAS that rounds differently?)"
    return (
        f"seed {seed}: the numpy row first differs from its golden at epoch {first['epoch']}, phase "
        f"{first['phase']} (golden made in another environment: {where})"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.files.golden", description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", default=str(FOLDER), help="where to write them (default %(default)s)")
    args = parser.parse_args(argv)
    for seed in SEEDS:
        path = golden_path(seed, args.folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_npz(path, make_golden(seed))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
