"""How well the harness says why rows part: the recognition table, counted, and what
recognition costs on a failing default run.

    python benchmarks/explain.py

Counts, over every planted fault in every injectable row under each optimizer it
applies to, the known optax gaps, an independent program's trajectories under each
variant and under four hyperparameter mismatches, and bugs in no catalogue: explained
right, explained wrong (must be 0), unexplained (right only for the bugs in no catalogue).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.engine import faults  # noqa: E402
from harness.engine.execution import run_row  # noqa: E402
from harness.engine.explain import explain_trajectory, lockstep_and_explain  # noqa: E402
from harness.engine.lockstep import states_from_history  # noqa: E402
from harness.engine.pipeline import run_default  # noqa: E402
from harness.engine.rows import Trajectory, register_plugin  # noqa: E402
from reference.spec import Config, flatten_params, initial_params  # noqa: E402
from tests.independent_adam import train, train_adagrad  # noqa: E402


def tally(counts: dict, explanation: dict | None, expected: str | None) -> None:
    """expected: the variant that should be named, or None where none should be."""
    named = explanation["variant"] if explanation and explanation["verdict"] == "explained" else None
    key = (
        ("unexplained, rightly" if expected is None else "unexplained")
        if named is None
        else ("explained right" if named == expected else "explained wrong")
    )
    counts[key] = counts.get(key, 0) + 1
    if key in ("explained wrong", "unexplained"):
        print(f"  {key}: expected {expected}, got {explanation}")


def planted(counts: dict) -> None:
    for fault, record in faults.FAULTS.items():
        for optimizer in record.optimizers or ("adam", "rmsprop", "sgd"):
            cfg = Config(optimizer=optimizer, epochs=12)
            for row in faults.INJECTABLE_ROWS:
                reference = run_row("numpy", cfg, fault=fault if row == "numpy" else None, record_states=True)
                states = states_from_history(cfg, reference.params, reference.states)
                other = "jax" if row == "numpy" else row
                explanation = lockstep_and_explain(other, cfg, states, {row: fault})["explanation"]
                tally(counts, explanation, fault)


def gaps(counts: dict) -> None:
    for optimizer, variant in (("adagrad", "adagrad-eps-inside-sqrt"), ("amsgrad", "amsgrad-max-of-vhat")):
        (pair,) = run_default(Config(optimizer=optimizer, epochs=200), ["numpy", "optax"], "cpu", 1, {}).pairs
        tally(counts, pair.explanation, variant)


def trajectories(counts: dict) -> None:
    start = flatten_params(initial_params(0))
    ways = [
        (w, {}, w)
        for w in (
            "eps-inside-sqrt",
            "epshat",
            "article-bias-correction",
            "no-bias-correction",
            "beta1-beta2-swapped",
            "float32-moments",
            "grad-missing-2-over-n",
            "grad-sse",
            "sigmoid-grad-at-activation",
        )
    ]
    ways += [("paper", h, "hyperparameters") for h in ({"eps": 1e-7}, {"lr": 2e-3}, {"beta2": 0.99})]
    ways += [(w, {}, None) for w in ("bias-gradient-averaged", "w1-gradient-times-1.01")]
    for way, hyper, expected in ways:
        loss, rows = train(way=way, epochs=50, **hyper)
        trajectory = Trajectory("theirs", loss, np.vstack([start[None], rows]), float("nan"), epochs_run=50)
        tally(counts, explain_trajectory("theirs", trajectory, Config(epochs=50)), expected)
    loss, rows = train_adagrad(initial_accumulator=0.1)  # optax's default a0
    trajectory = Trajectory("theirs", loss, np.vstack([start[None], rows]), float("nan"), epochs_run=50)
    tally(counts, explain_trajectory("theirs", trajectory, Config(optimizer="adagrad", epochs=50)), "hyperparameters")


def plugins(counts: dict) -> None:
    example = (ROOT / "examples" / "plugin_backend.py").read_text()
    edits = {
        "bias_averaged": (
            '"b1": dL_dZ1.sum(axis=-2, keepdims=True)',
            '"b1": dL_dZ1.mean(axis=-2, keepdims=True)',
            {},
            None,
        ),
        "weight_grad_1_01": ('"W1": swap(X) @ dL_dZ1', '"W1": 1.01 * (swap(X) @ dL_dZ1)', {}, None),
        "wrong_transpose": ('"W1": swap(X) @ dL_dZ1', '"W1": swap(swap(X) @ dL_dZ1)', {"hidden": 2}, None),
        "lr_doubled": ("return cfg.lr * m_hat", "return 2 * cfg.lr * m_hat", {}, "hyperparameters"),
    }
    with tempfile.TemporaryDirectory() as folder:
        for name, (old, new, extra, expected) in edits.items():
            path = Path(folder) / f"{name}.py"
            path.write_text(example.replace(old, new).replace('NAME = "example"', f'NAME = "{name}"'))
            register_plugin(path)
            (pair,) = run_default(Config(epochs=40, **extra), ["numpy", name], "cpu", 1, {}).pairs
            tally(counts, pair.explanation, expected)


def cost() -> None:
    """Recognition's share of a failing default run (20000 epochs, a fault in the torch row)."""
    started = time.perf_counter()
    results = run_default(Config(), ["numpy", "jax", "torch"], "cpu", 2, {"torch": "eps-inside-sqrt"})
    total = time.perf_counter() - started
    seconds = [p.explanation["seconds"] for p in results.pairs if p.explanation]
    print(
        f"recognition on a failing default run (numpy, jax, torch with eps-inside-sqrt, 20000 epochs): "
        f"{sum(seconds):.3f} s of {total:.1f} s for the whole run"
    )


def main() -> None:
    counts = {}
    for part in (planted, gaps, trajectories, plugins):
        started = time.perf_counter()
        part(counts)
        print(f"{part.__name__}: done in {time.perf_counter() - started:.1f} s")
    print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    cost()


if __name__ == "__main__":
    main()
