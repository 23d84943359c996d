"""How much memory a default run keeps, against the estimate that refuses runs too large
for the machine (``harness.engine.memory``). Prints, per (epochs, hidden), the peak
resident memory of one row's lockstep over the values it steps, and of a whole default
run over the estimate.

    python benchmarks/memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

LOCKSTEP = """
import json, resource
from harness.engine.execution import run_row
from harness.engine.lockstep import lockstep_row, states_from_history
from reference.spec import Config
cfg = Config(epochs={epochs}, hidden={hidden})
traj = run_row("numpy", cfg, record_states=True)
states = states_from_history(cfg, traj.params, traj.states)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
lockstep_row("{row}", cfg, states)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"before": before * 1024, "after": after * 1024}}))
"""


def lockstep_peak(row: str, epochs: int, hidden: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", LOCKSTEP.format(row=row, epochs=epochs, hidden=hidden)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def default_run_peak(epochs: int, hidden: int) -> float:
    """Peak resident memory of the default run's processes (the main one and its largest
    worker), in bytes."""
    subprocess.run(
        [sys.executable, "compare.py", "--epochs", str(epochs), "--hidden", str(hidden)],
        capture_output=True,
        check=True,
    )
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def main() -> None:
    from harness.engine.memory import LOCKSTEP_BYTES_PER_VALUE, estimate_bytes
    from reference.spec import Config, n_params

    print(f"lockstep: peak growth over the values stepped (estimate: {LOCKSTEP_BYTES_PER_VALUE} bytes per value)")
    print(f"{'row':<12} {'epochs':>7} {'hidden':>7} {'MiB':>8} {'bytes/value':>12}")
    for row in ("numpy", "jax", "torch", "torch.optim", "optax"):
        for epochs, hidden in ((20000, 4), (5000, 64), (2000, 256)):
            peak = lockstep_peak(row, epochs, hidden)
            values = epochs * (3 * 4 * hidden + n_params(hidden))
            grown = peak["after"] - peak["before"]
            print(f"{row:<12} {epochs:>7} {hidden:>7} {grown / 2**20:8.1f} {grown / values:12.1f}")
    print()
    print("default run: the largest process's peak against the estimate")
    for epochs, hidden in ((20000, 4), (5000, 64)):
        estimate = estimate_bytes("default", Config(epochs=epochs, hidden=hidden), 6)
        peak = default_run_peak(epochs, hidden)
        print(
            f"epochs {epochs:>6} hidden {hidden:>4}: peak {peak / 2**20:8.1f} MiB, estimate {estimate / 2**20:8.1f} MiB"
        )


if __name__ == "__main__":
    main()
