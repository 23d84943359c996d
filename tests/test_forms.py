"""Adam forms, gradient conventions, the article's recipe and the forms table."""

import json

import numpy as np
import pytest

from harness.engine.pipeline import run_default
from harness.engine.rows import unavailable_reason
from reference.spec import ADAM_FORMS, GRAD_CONVENTIONS, PARAM_NAMES, Config, flatten_params, initial_params
from tests.article_script import run_article
from tests.conftest import BACKEND_NAMES, load_backend
from tests.test_cli import run_cli

HAND = [n for n in BACKEND_NAMES if unavailable_reason(n) is None]


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed_recipe_reproduces_the_article_to_1e_12(seed):
    from harness.engine.execution import run_row

    errors, final = run_article(seed)
    row = run_row("numpy", Config(adam="article", grad="half-sse", seed=seed))
    assert np.abs(row.loss - errors).max() <= 1e-12
    assert np.abs(row.params[-1] - flatten_params(final)).max() <= 1e-12
    # the article's own printed figures (seed/NOTES.md)
    assert errors[-1] == pytest.approx({0: 0.00409, 1: 0.00476, 2: 0.00135}[seed], abs=5e-6)


@pytest.mark.slow
@pytest.mark.parametrize("grad", GRAD_CONVENTIONS)
@pytest.mark.parametrize("adam", ADAM_FORMS)
def test_every_form_agrees_across_backends(adam, grad):
    results = run_default(Config(adam=adam, grad=grad, epochs=800), HAND, "cpu", 1, {})
    assert len(results.pairs) == len(HAND) - 1
    for pair in results.pairs:
        assert pair.passed and pair.lockstep_max_ulp < 2, pair


@pytest.mark.parametrize("name", HAND)
def test_epshat_is_paper_with_a_step_dependent_epsilon(name):
    """lr·√bc2/bc1 · m/(√v + ε̂) equals lr·(m/bc1)/(√(v/bc2) + ε_t) with ε_t = ε̂/√bc2."""
    module = load_backend(name)
    rng = np.random.default_rng(3)
    m, v = rng.standard_normal(17) * 1e-3, rng.random(17) * 1e-6
    for t in (1, 2, 10, 1000, 20000):
        eps_hat = 1e-8
        bc2 = 1 - 0.999**t
        epshat = module.to_numpy(
            module.adam_delta(module.to_backend(m), module.to_backend(v), t, Config(adam="epshat", eps=eps_hat))
        )
        paper = module.to_numpy(
            module.adam_delta(
                module.to_backend(m), module.to_backend(v), t, Config(adam="paper", eps=eps_hat / np.sqrt(bc2))
            )
        )
        np.testing.assert_allclose(epshat, paper, rtol=16 * np.finfo(float).eps, atol=0)
        if t < 1000:  # and it is not the paper form with ε̂ itself: at small t they differ
            plain = module.to_numpy(
                module.adam_delta(module.to_backend(m), module.to_backend(v), t, Config(adam="paper", eps=eps_hat))
            )
            assert np.abs(plain - epshat).max() > 1e3 * np.finfo(float).eps * np.abs(epshat).max()


def test_half_sse_gradient_is_twice_the_mse_gradient_in_every_backend():
    for name in HAND:
        module = load_backend(name)
        from reference.spec import xor_data

        X, y = (module.to_backend(a) for a in xor_data())
        params = {k: module.to_backend(v) for k, v in initial_params(1).items()}
        loss_a, mse = module.loss_and_grads(params, X, y, "mse")
        loss_b, half = module.loss_and_grads(params, X, y, "half-sse")
        assert float(module.to_numpy(loss_a)) == float(module.to_numpy(loss_b))  # the logged loss is the MSE
        for k in PARAM_NAMES:
            np.testing.assert_allclose(module.to_numpy(half[k]), 2 * module.to_numpy(mse[k]), rtol=1e-14, atol=1e-18)


def test_keras_row_agrees_with_epshat():
    if unavailable_reason("keras"):  # keras is an optional extra
        pytest.skip(unavailable_reason("keras"))
    results = run_default(Config(adam="epshat", epochs=3000), ["numpy", "jax", "keras"], "cpu", 1, {})
    keras_pair = [p for p in results.pairs if p.b == "keras"][0]
    assert keras_pair.passed and keras_pair.agreement.max_abs_param_diff < 1e-13


@pytest.mark.slow
def test_recipe_article_command(tmp_path):
    result = run_cli("--recipe", "article", "--backends", "numpy,jax", "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["config"]["adam"] == "article" and data["config"]["grad"] == "half-sse"
    assert data["backends"]["numpy"]["final_loss"] == pytest.approx(0.0040857, rel=1e-4)


@pytest.mark.parametrize(
    "args,named",
    [
        (["--recipe", "article", "--adam", "paper"], "--adam"),
        (["--adam", "article", "--backends", "numpy,torch.optim"], "torch.optim"),
        (["--adam", "nosuch"], "--adam"),
        (["--grad", "sse"], "--grad"),
    ],
)
def test_form_options_bad_input(args, named):
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and named in errors[0]


@pytest.mark.slow
def test_forms_table(tmp_path):
    result = run_cli("forms", "--epochs", "3000", "--json", str(tmp_path / "f.json"), "--plot", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "f.json").read_text())["flavors"]
    assert list(data) == ["paper/mse", "epshat/mse", "article/mse", "article/half-sse"]
    assert data["paper/mse"]["max_param_gap_to_paper"] == 0.0
    steps = data["article/mse"]["step_vs_paper"]
    # NOTES.md: step 1 is identical; around t = 10 the article's steps are larger; once m and v
    # have warmed up they settle at √(1 − β2)/(1 − β1) ≈ 0.316 of the paper's.
    assert steps["1"] == pytest.approx(1.0, abs=1e-6) and steps["10"] > 1.5
    assert data["epshat/mse"]["step_vs_paper"]["1000"] == pytest.approx(1.0, abs=1e-3)
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["flavors_decision_regions.png", "flavors_loss.png"]


@pytest.mark.slow
def test_forms_judges_each_row_in_the_forms_it_implements(tmp_path):
    rows = [n for n in ("jax", "torch.optim") if unavailable_reason(n) is None]
    if not rows:
        pytest.skip("neither jax nor torch is installed")
    result = run_cli("forms", "--epochs", "300", "--backends", ",".join(rows), "--json", str(tmp_path / "f.json"))
    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["rows"] == rows and data["passed"] is True
    for label, entry in data["flavors"].items():
        judged = entry["rows"]
        # torch.optim computes the paper form only; jax every form
        assert set(judged) == {n for n in rows if n == "jax" or label == "paper/mse"}, label
        assert all(r["passed"] and r["margin"] < 0.5 for r in judged.values()), (label, judged)


def test_the_old_name_flavors_still_runs_forms_with_a_notice():
    result = run_cli("flavors", "--help")
    assert result.returncode == 0
    assert "compare.py forms" in result.stdout
    assert result.stderr.strip() == (
        "notice: compare.py flavors is now compare.py forms; the old name goes after this release"
    )


@pytest.mark.parametrize(
    "args,notice",
    [
        (["--adam", "seed"], "notice: --adam seed is now --adam article"),
        (["--recipe", "seed"], "notice: --recipe seed is now --recipe article"),
        (
            ["--inject", "jax:seed-bias-correction"],
            "notice: the fault seed-bias-correction is now article-bias-correction",
        ),
    ],
)
def test_the_old_names_of_the_article_form_recipe_and_fault_still_run_with_a_notice(args, notice, tmp_path):
    out = tmp_path / "r.json"
    result = run_cli(*args, "--epochs", "20", "--backends", "numpy,jax", "--json", str(out), cwd=tmp_path)
    assert notice in result.stderr and "Traceback" not in result.stderr
    data = json.loads(out.read_text())
    if "--inject" in args:  # the fault, planted under its name now, is caught
        assert result.returncode == 1 and data["injected"] == {"jax": "article-bias-correction"}
    else:
        assert result.returncode == 0 and data["config"]["adam"] == "article"
    assert Config(adam="seed").adam == "article"  # the Python API takes the old name too
