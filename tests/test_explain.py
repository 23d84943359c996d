"""Why rows part: every planted fault, each known library gap, trajectories of an
independent program under each variant, hyperparameter mismatches, and unrelated bugs
that no catalogue holds (which must stay unexplained, never explained wrongly)."""

import json

import numpy as np
import pytest

from harness.engine import faults
from harness.engine.execution import run_row
from harness.engine.explain import explain_trajectory, lockstep_and_explain
from harness.engine.lockstep import states_from_history
from harness.engine.pipeline import run_default
from harness.engine.rows import DEFAULT_ROWS, Trajectory, register_plugin, unavailable_reason
from harness.engine.variants import VARIANTS
from harness.files.exchange import write_trajectory_csv
from reference.spec import Config, flatten_params, initial_params
from tests.independent_adam import train, train_adagrad
from tests.test_cli import ROOT, run_cli

AVAILABLE = [n for n in DEFAULT_ROWS if unavailable_reason(n) is None]
HAND_ROWS = [n for n in faults.INJECTABLE_ROWS if n in AVAILABLE]
GRADIENT_FAULT_OPTIMIZERS = ("adam", "rmsprop", "sgd")
CASES = [
    (fault, optimizer)
    for fault, record in faults.FAULTS.items()
    for optimizer in (record.optimizers or GRADIENT_FAULT_OPTIMIZERS)
]


def _explain(row, cfg, planted):
    reference = run_row("numpy", cfg, fault=planted.get("numpy"), record_states=True)
    states = states_from_history(cfg, reference.params, reference.states)
    other = row if row != "numpy" else "jax" if "jax" in AVAILABLE else "torch"
    return lockstep_and_explain(other, cfg, states, planted)["explanation"]


@pytest.mark.slow
@pytest.mark.parametrize("row", HAND_ROWS)
@pytest.mark.parametrize("fault,optimizer", CASES)
def test_every_planted_fault_is_named_in_the_row_that_has_it(fault, optimizer, row):
    if row == "numpy" and len(HAND_ROWS) < 2:
        pytest.skip("a fault in numpy needs another row to show")
    explanation = _explain(row, Config(optimizer=optimizer, epochs=12), {row: fault})
    assert explanation["verdict"] == "explained", explanation
    assert (explanation["variant"], explanation["row"]) == (fault, row)
    assert explanation["phase"] == faults.FAULTS[fault].phase
    assert explanation["max_ulp"] <= 8 and len(explanation["matched_epochs"]) >= 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "optimizer,variant", [("adagrad", "adagrad-eps-inside-sqrt"), ("amsgrad", "amsgrad-max-of-vhat")]
)
def test_the_known_optax_gaps_are_recognised_not_only_listed(optimizer, variant):
    pytest.importorskip("optax")
    results = run_default(Config(optimizer=optimizer, epochs=200), ["numpy", "optax"], "cpu", 1, {})
    (pair,) = results.pairs
    assert (pair.gap is not None) and pair.explained and results.passed
    assert pair.explanation["variant"] == variant and pair.explanation["row"] == "optax"


def _trajectory(way="paper", epochs=50, **hyper):
    loss, rows = train(way=way, epochs=epochs, **hyper)
    start = flatten_params(initial_params(0))
    return Trajectory("theirs", loss, np.vstack([start[None], rows]), float("nan"), epochs_run=epochs)


TRAJECTORY_VARIANTS = (
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


@pytest.mark.parametrize("way", TRAJECTORY_VARIANTS)
def test_an_independent_programs_trajectory_is_recognised_from_its_first_epochs(way):
    explanation = explain_trajectory("theirs", _trajectory(way), Config(epochs=50))
    assert (explanation["verdict"], explanation["variant"]) == ("explained", way), explanation
    assert explanation["matched_epochs"] == list(range(1, 51))


@pytest.mark.slow
@pytest.mark.parametrize("hyper", [{"eps": 1e-7}, {"lr": 2e-3}, {"beta2": 0.99}])
def test_the_hyperparameters_another_program_used_are_fitted_from_its_trajectory(hyper):
    explanation = explain_trajectory("theirs", _trajectory(**hyper), Config(epochs=50))
    assert (explanation["verdict"], explanation["variant"]) == ("explained", "hyperparameters"), explanation
    ((name, value),) = explanation["hyperparameters"].items()
    assert name == next(iter(hyper)) and value == pytest.approx(hyper[name], rel=1e-9)
    assert explanation["uncertainty"][name] < 1e-9 * hyper[name] and explanation["residual"] <= 1


@pytest.mark.slow
def test_optax_adagrads_initial_accumulator_is_fitted_from_a_trajectory():
    # a port that kept optax's default a0 = 0.1 where the spec (and torch) start from 0
    loss, rows = train_adagrad(initial_accumulator=0.1)
    start = flatten_params(initial_params(0))
    trajectory = Trajectory("theirs", loss, np.vstack([start[None], rows]), float("nan"), epochs_run=50)
    explanation = explain_trajectory("theirs", trajectory, Config(optimizer="adagrad", epochs=50))
    assert explanation["hyperparameters"] == pytest.approx({"initial_accumulator": 0.1}, rel=1e-9), explanation


@pytest.mark.slow
@pytest.mark.parametrize("way", ["bias-gradient-averaged", "w1-gradient-times-1.01"])
def test_a_bug_in_no_catalogue_stays_unexplained_in_a_trajectory(way):
    explanation = explain_trajectory("theirs", _trajectory(way), Config(epochs=50))
    assert explanation["verdict"] == "unexplained" and explanation["variant"] is None


def test_a_trajectory_that_only_parts_later_is_not_explained_by_its_start():
    explanation = explain_trajectory("theirs", _trajectory(), Config(epochs=50))
    assert explanation["verdict"] == "unexplained" and "first 50 epochs are the spec's" in explanation["description"]


EXAMPLE = (ROOT / "examples" / "plugin_backend.py").read_text()
PLUGIN_EDITS = {  # name -> (text of the example, what it becomes, config)
    "bias_averaged": ('"b1": dL_dZ1.sum(axis=-2, keepdims=True)', '"b1": dL_dZ1.mean(axis=-2, keepdims=True)', {}),
    "weight_grad_1_01": ('"W1": swap(X) @ dL_dZ1', '"W1": 1.01 * (swap(X) @ dL_dZ1)', {}),
    "wrong_transpose": ('"W1": swap(X) @ dL_dZ1', '"W1": swap(swap(X) @ dL_dZ1)', {"hidden": 2}),
    "eps_1e_7": ("(np.sqrt(v_hat) + cfg.eps)", "(np.sqrt(v_hat) + 1e-7)", {}),
    "lr_doubled": ("return cfg.lr * m_hat", "return 2 * cfg.lr * m_hat", {}),
    "beta2_0_99": (
        'v = cfg.beta2 * slots["v"] + (1.0 - cfg.beta2) * g * g\n    m_hat = m / (1.0 - cfg.beta1**t)\n'
        "    v_hat = v / (1.0 - cfg.beta2**t)",
        'v = 0.99 * slots["v"] + 0.01 * g * g\n    m_hat = m / (1.0 - cfg.beta1**t)\n    v_hat = v / (1.0 - 0.99**t)',
        {},
    ),
}


def _plugin_pair(tmp_path, name):
    old, new, extra = PLUGIN_EDITS[name]
    assert old in EXAMPLE
    path = tmp_path / f"{name}.py"
    path.write_text(EXAMPLE.replace(old, new).replace('NAME = "example"', f'NAME = "{name}"'))
    register_plugin(path)
    (pair,) = run_default(Config(epochs=40, **extra), ["numpy", name], "cpu", 1, {}).pairs
    assert not pair.passed
    return pair.explanation


@pytest.mark.parametrize("name", ["bias_averaged", "weight_grad_1_01", "wrong_transpose"])
def test_a_bug_in_no_catalogue_stays_unexplained_in_a_row_that_steps(name, tmp_path):
    explanation = _plugin_pair(tmp_path, name)
    assert explanation["verdict"] == "unexplained" and explanation["variant"] is None


@pytest.mark.parametrize(
    "name,fitted", [("eps_1e_7", {"eps": 1e-7}), ("lr_doubled", {"lr": 2e-3}), ("beta2_0_99", {"beta2": 0.99})]
)
def test_the_hyperparameters_a_row_really_uses_are_fitted_from_its_steps(name, fitted, tmp_path):
    explanation = _plugin_pair(tmp_path, name)
    assert (explanation["verdict"], explanation["variant"]) == ("explained", "hyperparameters"), explanation
    assert explanation["hyperparameters"] == pytest.approx(fitted, rel=1e-12)
    assert explanation["residual"] <= 8


def test_the_explain_command_names_the_convention_and_exits_1(tmp_path):
    loss, rows = train(way="epshat", epochs=300)
    write_trajectory_csv(tmp_path / "mine.csv", loss, rows, 4)
    result = run_cli("explain", f"mine={tmp_path / 'mine.csv'}", "--epochs", "300", "--json", str(tmp_path / "e.json"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "mine matches epshat" in result.stdout and "compare like with like with --adam epshat" in result.stdout
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["explanation"]["variant"] == "epshat" and data["passed"] is False
    assert set(data["explanation"]) >= {
        "verdict",
        "variant",
        "phase",
        "description",
        "used_by",
        "hyperparameters",
        "matched_epochs",
        "max_ulp",
    }


def test_the_explain_command_exits_0_for_the_spec_and_2_for_bad_usage(tmp_path):
    loss, rows = train(epochs=300)
    write_trajectory_csv(tmp_path / "spec.csv", loss, rows, 4)
    agrees = run_cli("explain", f"spec={tmp_path / 'spec.csv'}", "--epochs", "300")
    assert agrees.returncode == 0 and "computes the spec" in agrees.stdout, agrees.stdout + agrees.stderr
    for args in ([], [f"a={tmp_path / 'spec.csv'}", "--backend-file", "x.py"], ["a=/no/such.csv"]):
        bad = run_cli("explain", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr and bad.stdout == ""


@pytest.mark.slow
def test_the_default_run_explains_a_failing_pair_in_its_paragraph_and_json(tmp_path):
    pytest.importorskip("jax")
    result = run_cli(
        "--backends",
        "numpy,jax",
        "--epochs",
        "200",
        "--inject",
        "jax:eps-inside-sqrt",
        "--json",
        str(tmp_path / "r.json"),
        "--replay-dir",
        str(tmp_path),
    )
    assert result.returncode == 1
    assert "jax matches eps-inside-sqrt" in result.stdout
    (pair,) = json.loads((tmp_path / "r.json").read_text())["agreement"]
    assert pair["explanation"]["variant"] == "eps-inside-sqrt"
    clean = run_cli("--backends", "numpy,jax", "--epochs", "200", "--json", str(tmp_path / "c.json"))
    assert clean.returncode == 0
    assert json.loads((tmp_path / "c.json").read_text())["agreement"][0]["explanation"] is None


def test_every_variant_of_the_catalogue_has_its_facts():
    for variant in VARIANTS.values():
        assert variant.phase and variant.description and variant.used_by, variant.name
        assert (variant.patch is None) != (variant.config is None), variant.name
    assert set(faults.FAULTS) <= set(VARIANTS)


# --- conventions stacked: the smallest composition of the catalogue ------------------------------

STACKED = ("no-bias-correction", "grad-missing-2-over-n")  # a public XOR/Adam program's two at once


def test_two_conventions_stacked_in_a_trajectory_are_named_together_with_what_each_contributes():
    for way in STACKED:  # each alone is one variant
        alone = explain_trajectory("theirs", _trajectory(way), Config(epochs=50))
        assert alone["variant"] == way and "parts" not in alone, alone
    explanation = explain_trajectory("theirs", _trajectory("+".join(STACKED)), Config(epochs=50))
    assert (explanation["verdict"], explanation["variant"]) == ("explained", " + ".join(STACKED)), explanation
    assert explanation["parts"] == list(STACKED) and explanation["max_ulp"] <= 1
    # each part is needed: without it the rest is far off
    assert set(explanation["contributions"]) == set(STACKED)
    assert all(ulps > 1e3 for ulps in explanation["contributions"].values()), explanation["contributions"]
    # bounded by what it tries; how long it takes is a benchmark's business (benchmarks/explain.py)
    assert explanation["compositions_tried"] > 10 and explanation["search_seconds"] > 0


def test_two_faults_planted_in_one_step_are_named_as_their_composition():
    from harness.engine.explain import recognize_step, subset
    from harness.engine.faults import FAULTS, patched
    from harness.engine.rows import load_backend

    cfg = Config(epochs=12)
    reference = run_row("numpy", cfg, record_states=True)
    picked = subset(states_from_history(cfg, reference.params, reference.states), 3)
    numpy = load_backend("numpy")
    with patched(numpy, FAULTS[STACKED[0]].make(numpy)), patched(numpy, FAULTS[STACKED[1]].make(numpy)):
        values = numpy.step_phases(cfg, picked.params, picked.slots, picked.t)
    explanation = recognize_step("theirs", cfg, picked, values)
    assert explanation["variant"] == " + ".join(STACKED) and explanation["max_ulp"] <= 8, explanation
    assert explanation["phase"] == "grads" and explanation["equivalent"] == []


def test_a_convention_with_other_hyperparameters_is_the_variant_with_a_fit_on_top():
    explanation = explain_trajectory("theirs", _trajectory("epshat", eps=1e-7), Config(epochs=50))
    assert explanation["verdict"] == "explained" and explanation["variant"] == "epshat", explanation
    assert explanation["hyperparameters"] == pytest.approx({"eps": 1e-7}, rel=1e-6)
