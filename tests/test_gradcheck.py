"""The gradient check: the true gradient passes everywhere, every canary is caught, the
article's derivation is named for what it is, and the oracle and finite differences are
themselves right on a point whose gradient is known in closed form."""

import json

import mpmath
import numpy as np
import pytest

from backends import numpy_backend
from harness.engine.canaries import CANARIES, backprop
from harness.gradcheck import check as gradcheck
from harness.gradcheck import oracle, report
from reference.spec import PARAM_NAMES, Config, initial_params, xor_data
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def float64_check():
    return gradcheck.run_check(Config(), 4, gradcheck.hand_source("mse"), "hand")


@pytest.fixture(scope="module")
def canary_run():
    return gradcheck.run_canaries(Config(), 4)


def test_the_true_gradient_passes_for_every_source_at_every_point(float64_check):
    assert float64_check["passed"]
    assert len(float64_check["points"]) == 7
    expected = {"hand", "finite differences"} | {n for n in ("jax", "torch") if n not in float64_check["skipped"]}
    assert set(float64_check["sources"]) == expected
    for point in float64_check["per_point"]:
        for source, tensors in point["sources"].items():
            for k, verdict in tensors.items():
                assert verdict["passed"], (point["point"], source, k, verdict)
    regular = float64_check["sources"]["hand"]["W2"]["by_point_kind"]["regular"]
    assert regular["max_rel_error_vs_oracle"] < 1e-12
    assert all(t["passed"] and (not t["judged"] or abs(t["order"] - 2) < 0.05) for t in float64_check["taylor"])
    assert float64_check["loss_convention"]["convention"] == "mean squared error"
    for gaps in float64_check["hand_vs_autodiff_max_rel_diff"].values():
        assert gaps["regular"] < 1e-12


@pytest.mark.slow
def test_float32_sources_pass_with_their_own_tolerance_and_float64_is_closer():
    result = gradcheck.run_check(Config(dtype="float32"), 2, gradcheck.hand_source("mse"), "hand")
    assert result["passed"], report.render_check(result)
    hand32 = result["sources"]["hand"]["W1"]["by_point_kind"]["regular"]["max_rel_error_vs_oracle"]
    assert 1e-9 < hand32 < 1e-2  # really float32
    for name, comparison in result["float64_comparison"].items():
        assert comparison["float64_closer_by"] > 100, name


@pytest.mark.slow
def test_every_canary_is_caught_where_its_mistake_is(canary_run):
    assert canary_run["passed"] and canary_run["true_gradient_passed"]
    canaries = canary_run["canaries"]
    assert set(canaries) == set(CANARIES)
    assert all(c["caught"] for c in canaries.values())
    assert canaries["transposed-W2-gradient"]["tensors"] == ["W2"]
    assert "shape (1, 4)" in canaries["transposed-W2-gradient"]["problems"][0]
    assert canaries["bias-gradient-first-sample-only"]["tensors"] == ["b1", "b2"]
    assert canaries["hidden-delta-without-sigmoid-derivative"]["tensors"] == ["W1", "b1"]
    assert canaries["sigmoid-derivative-at-activation"]["tensors"] == list(PARAM_NAMES)
    for name in ("sigmoid-derivative-at-activation", "missing-2-over-N", "hidden-delta-without-sigmoid-derivative"):
        assert max(canaries[name]["taylor_orders"]) < 1.5, name


def test_the_article_derivation_is_the_gradient_of_half_the_sum_of_squares():
    result = gradcheck.run_check(Config(), 2, gradcheck.hand_source("half-sse"), "article")
    convention = result["loss_convention"]
    assert convention["convention"] == "½·Σ(ŷ − y)²" and convention["scale_vs_mse"] == 2.0
    assert "2× the gradient of the mean squared error" in convention["statement"]
    assert not result["passed"]  # it is not the gradient of the loss the run logs


def test_canary_backprop_without_a_mistake_is_the_numpy_gradient_to_the_bit():
    X, y = xor_data()
    for seed in range(3):
        params = initial_params(seed)
        want_loss, want = numpy_backend.loss_and_grads(params, X, y)
        loss, got = backprop(params, X, y)
        assert loss == want_loss
        for k in PARAM_NAMES:
            np.testing.assert_array_equal(got[k], want[k])


def closed_form_point(c=0.3, w=-0.7, hidden=4):
    """W1 = 0, b1 = c, W2 = w, b2 = 0: every sample sees a1 = σ(c) = s and a2 = σ(H·s·w) = a,
    so the MSE's gradient is, with G = a(1 − a)(2a − 1):
    b2: G; W2: s·G; b1: w·s(1 − s)·G; W1: ½·w·s(1 − s)·G."""
    params = {
        "W1": np.zeros((2, hidden)),
        "b1": np.full((1, hidden), c),
        "W2": np.full((hidden, 1), w),
        "b2": np.zeros((1, 1)),
    }
    with mpmath.workdps(60):
        s = 1 / (1 + mpmath.exp(-mpmath.mpf(c)))
        a = 1 / (1 + mpmath.exp(-hidden * s * mpmath.mpf(w)))
        G = a * (1 - a) * (2 * a - 1)
        hidden_g = mpmath.mpf(w) * s * (1 - s) * G
        exact = {
            "b2": [[G]],
            "W2": [[s * G]] * hidden,
            "b1": [[hidden_g] * hidden],
            "W1": [[hidden_g / 2] * hidden] * 2,
        }
    return params, exact


def test_the_oracle_equals_the_closed_form():
    params, exact = closed_form_point()
    _, grad, _, _ = oracle.loss_and_grads(params)
    for k in PARAM_NAMES:
        for got_row, want_row in zip(grad[k], exact[k], strict=True):
            for got, want in zip(got_row, want_row, strict=True):
                assert abs(got - want) < mpmath.mpf(10) ** -45


def test_finite_differences_equal_the_closed_form_within_their_error_estimate():
    params, exact = closed_form_point()
    truth = gradcheck.oracle_at(params)
    fd = gradcheck.finite_differences(params, "float64")
    estimate = gradcheck.finite_difference_error_estimate(params, "float64", truth)
    for k in PARAM_NAMES:
        want = oracle.to_array(exact[k])
        err = np.abs(fd[k] - want)
        assert np.all(err <= gradcheck.K_FD * estimate[k]), (k, err, estimate[k])
        assert np.all(err < 1e-9)  # and accurate to ~u^(2/3) of this O(0.1) problem


def test_every_source_equals_the_closed_form():
    params, exact = closed_form_point()
    truth = gradcheck.oracle_at(params)
    sources, _ = gradcheck.available_sources(gradcheck.hand_source("mse"))
    for name, gradient in sources.items():
        verdict = gradcheck.judge(name, gradient(params, "float64"), truth, params, "float64", 4)
        assert all(v["passed"] for v in verdict.values()), (name, verdict)


def test_taylor_test_tells_a_right_gradient_from_a_scaled_one():
    params = initial_params(1)
    X, y = xor_data()
    _, right = numpy_backend.loss_and_grads(params, X, y)
    assert abs(gradcheck.taylor_order(params, right)["order"] - 2) < 0.05
    wrong = {k: 1.5 * v for k, v in right.items()}
    assert abs(gradcheck.taylor_order(params, wrong)["order"] - 1) < 0.1


@pytest.mark.slow
def test_grads_command_report_and_json(tmp_path):
    result = run_cli("grads", "--points", "2", "--json", str(tmp_path / "g.json"))
    assert result.returncode == 0, result.stderr
    assert "every source agrees with the oracle at all 5 points" in result.stdout
    assert "exact gradient of the mean squared error" in result.stdout
    data = json.loads((tmp_path / "g.json").read_text())
    for tensors in data["sources"].values():
        for k in PARAM_NAMES:
            assert tensors[k]["max_rel_error_vs_oracle"] is not None
            assert tensors[k]["max_ulp_vs_oracle"] is not None
    assert data["loss_convention"]["convention"] == "mean squared error"
    assert data["passed"] is True and data["environment"]["python"]


@pytest.mark.slow
def test_grads_command_article_hand_and_canaries():
    article = run_cli("grads", "--hand", "article", "--points", "1")
    assert article.returncode == 1
    assert "exact gradient of ½·Σ(ŷ − y)², 2× the gradient of the mean squared error" in article.stdout
    old = run_cli("grads", "--hand", "seed", "--points", "0")  # the old name, for one release
    assert old.returncode == 1 and "notice: --hand seed is now --hand article" in old.stderr
    canary = run_cli("grads", "--canary", "--points", "1")
    assert canary.returncode == 0, canary.stderr
    assert "5 of 5 canaries caught" in canary.stdout and "true gradient: passes" in canary.stdout


@pytest.mark.parametrize(
    "args", [["--points", "-1"], ["--hand", "nosuch"], ["--dtype", "float16"], ["--json", "/nonexistent-folder/g.json"]]
)
def test_grads_bad_input(args):
    result = run_cli("grads", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "error:" in line]) == 1
