"""Compiled rows (``compare.py compiled``, backends/compiled.py, the catalogue in
backends/compiler_variants.py).

The quick tier plants compiler-like changes by hand in plug-ins that stand for a compiled
torch step (an FMA in one phase, σ's backward reassociated) and checks that the command
names the phase and the variant; it needs no compiler. The slow tier runs the real
compiled rows: torch.compile under Inductor, the compiled torch.optim optimizer and JAX
under XLA fast math, and checks what each changes and which decision does it."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backends.compiled import COMPILATIONS, cache_folder, decisions, pairs, unavailable
from harness.engine.rows import COMPILED_ROWS, DEFAULT_ROWS, ROWS, rows_for
from reference.spec import Config
from tests.test_cli import run_cli

torch = pytest.importorskip("torch")

FMA_IN_M = """
import mpmath
import torch
from backends import torch_backend as tb

NAME = "fma-by-hand"
COMPILES = "torch"
GRADIENT_SOURCE = "torch autograd; Adam's m as one FMA"
to_backend, to_numpy, forward, loss_and_grads, sqrt, full_like = (
    tb.to_backend, tb.to_numpy, tb.forward, tb.loss_and_grads, tb.sqrt, tb.full_like)


def fma(a, b, c):  # a·b + c with one rounding: mpmath's product exact, its sum rounded to 53 bits
    with mpmath.workprec(53):
        out = [float(mpmath.fadd(mpmath.fmul(a, x, exact=True), y))
               for x, y in zip(b.reshape(-1).tolist(), c.reshape(-1).tolist())]
    return torch.tensor(out, dtype=c.dtype).reshape(c.shape)


def adam(g, slots, theta, t, cfg):
    m = fma(cfg.beta1, slots["m"], (1.0 - cfg.beta1) * g)
    v = cfg.beta2 * slots["v"] + (1.0 - cfg.beta2) * (g * g)
    return tb.adam_delta(m, v, t, cfg), {"m": m, "v": v}


UPDATES = {"adam": adam}
"""

SIGMOID_BACKWARD = """
import torch
from backends import torch_backend as tb

NAME = "sigmoid-by-hand"
COMPILES = "torch"
GRADIENT_SOURCE = "torch autograd; σ's derivative as g·(y·(1 − y))"
to_backend, to_numpy, sqrt, full_like, UPDATES = tb.to_backend, tb.to_numpy, tb.sqrt, tb.full_like, tb.UPDATES


class Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        a = torch.sigmoid(z)
        ctx.save_for_backward(a)
        return a

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * (a * (1 - a))


def forward(params, X):
    Z1 = X @ params["W1"] + params["b1"]
    A1 = Sigmoid.apply(Z1)
    Z2 = A1 @ params["W2"] + params["b2"]
    return {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": Sigmoid.apply(Z2)}


def loss_and_grads(params, X, y, convention="mse"):
    leaves = {k: params[k].detach().requires_grad_(True) for k in ("W1", "b1", "W2", "b2")}
    with torch.enable_grad():
        loss = tb.mse(forward(leaves, X)["A2"], y)
        grads = torch.autograd.grad(tb.differentiated(loss, convention), list(leaves.values()))
    return loss.detach(), dict(zip(leaves, grads))
"""


def _compiled(tmp_path, *args, env_extra=None):
    out = tmp_path / "compiled.json"
    result = run_cli("compiled", *args, "--json", str(out), env_extra=env_extra)
    assert "Traceback" not in result.stderr, result.stderr
    return result, (json.loads(out.read_text()) if out.exists() else None)


def _plugin(tmp_path, source: str, name: str):
    path = tmp_path / name
    path.write_text(source)
    return path


# --- the records ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED_ROWS)
def test_a_compiled_row_is_opt_in_and_judged_against_the_eager_row_it_compiles(name):
    row, c = ROWS[name], COMPILATIONS[name]
    assert row.opt_in and row.compiled is c and row.twin == (c.runs, c.label)
    assert name not in DEFAULT_ROWS and name not in rows_for(Config())
    assert row.implements(Config()), "every compiled row runs Adam"
    assert set(row.optimizers) <= set(ROWS[c.runs].optimizers)
    assert row.describe(Config()).startswith(ROWS[c.runs].describe(Config()))


@pytest.mark.parametrize("name", COMPILED_ROWS)
def test_each_decision_a_bisection_takes_away_is_a_different_compilation(name):
    c = COMPILATIONS[name]
    taken = decisions(c)
    assert taken, f"{name} has no decision to bisect"
    assert len({d.label for d in taken}) == len(taken)
    assert all(d.undo(c) != c for d in taken)
    for knob, _ in c.knobs:  # a knob row's own knob comes first
        assert taken[0].label.startswith(knob)
    assert all(both != c for _, both in pairs(c))


def test_the_compile_cache_is_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_folder() == tmp_path / "xor-crosscheck" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"


def test_without_a_cpp_compiler_the_inductor_rows_say_so(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert "needs a C++ compiler" in unavailable(COMPILATIONS["torch.compile"])
    assert "no-such-compiler-here" in unavailable(COMPILATIONS["torch.compile"])
    assert unavailable(COMPILATIONS["torch.compile@aot_eager"]) is None  # no C++ there
    assert unavailable(COMPILATIONS["torch.optim+fused"]) is None


# --- the FMA the catalogue plants, against an independent oracle --------------------------------


def _exact_fma(a: float, b: float, c: float, bits: int) -> float:
    with mpmath.workprec(bits):
        return float(mpmath.fadd(mpmath.fmul(a, b, exact=True), c))


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(finite, finite, finite)
def test_the_catalogues_fma_rounds_once_in_float64(a, b, c):
    from backends.compiler_variants import fma

    got = fma(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64),
              torch.tensor([c], dtype=torch.float64))  # fmt: skip
    assert got.item() == _exact_fma(a, b, c, 53)


@given(finite, finite, finite)
def test_the_catalogues_fma_rounds_once_in_float32(a, b, c):
    from backends.compiler_variants import fma

    a, b, c = (float(np.float32(x)) for x in (a, b, c))
    got = fma(*(torch.tensor([x], dtype=torch.float32) for x in (a, b, c)))
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    want = np.float32(_exact_fma(a, b, c, 24)) if abs(exact) > 1e-30 else np.float32(float(exact))
    assert got.item() == float(want)


def test_an_fma_differs_from_two_roundings_somewhere():  # the variants are not vacuous
    from backends.compiler_variants import fma

    g = torch.linspace(-1e-3, 1e-3, 1001, dtype=torch.float64)
    m = torch.linspace(2e-4, -3e-4, 1001, dtype=torch.float64)
    differs = int((fma(0.9, m, 0.1 * g) != 0.9 * m + 0.1 * g).sum())
    assert 0 < differs < 1001


# --- planted by hand in a plug-in: the phase and the variant named ------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One compiled run of three plug-ins standing for compiled torch steps: an FMA in
    Adam's m, σ's backward reassociated, and the torch row's step unchanged."""
    folder = tmp_path_factory.mktemp("planted")
    same = FMA_IN_M.replace('NAME = "fma-by-hand"', 'NAME = "unchanged"') + "\nUPDATES = tb.UPDATES\n"
    plugins = [_plugin(folder, FMA_IN_M, "fma_by_hand.py"), _plugin(folder, SIGMOID_BACKWARD, "sigmoid_by_hand.py"),
               _plugin(folder, same, "same.py")]  # fmt: skip
    return _compiled(folder, *(x for p in plugins for x in ("--backend-file", str(p))), "--epochs", "300")


@pytest.mark.xdist_group("compiled-planted")
def test_an_fma_planted_in_m_is_named_with_its_phase(planted):
    result, data = planted
    assert result.returncode == 0, result.stderr
    row = data["rows"]["fma-by-hand"]
    assert row["compiles"] == "torch" and row["verdict"] == "rounding level" and row["passed"]
    assert row["first_difference"]["phase"] == "m" and row["explained_phase"] == "m"
    assert row["first_difference"]["ulps"] > 0
    assert row["recognised"] == ["fma-in-m"], row["variants"]
    assert row["whole_step"] == ["fma-in-m"]
    assert not row["variants"]["fma-in-m-second"]["reproduces"]
    assert row["bisection"] == [] and row["deciding"] is None  # a plug-in has no compiler decisions
    assert "variant: fma-in-m" in result.stdout and "m W" in result.stdout


@pytest.mark.xdist_group("compiled-planted")
def test_sigmoids_backward_reassociated_by_hand_is_named_in_grads(planted):
    _, data = planted
    row = data["rows"]["sigmoid-by-hand"]
    assert row["first_difference"]["phase"] == "grads"
    assert row["recognised"] == ["sigmoid-backward-reassociated"]
    assert row["variants"]["sigmoid-by-libm-exp"]["reproduces"] is False


@pytest.mark.xdist_group("compiled-planted")
def test_the_unchanged_step_is_bit_identical_and_needs_no_variant(planted):
    _, data = planted
    row = data["rows"]["unchanged"]
    assert row["verdict"] == "bit-identical" and row["first_difference"] is None and row["variants"] == {}


@pytest.mark.parametrize(
    "args, message",
    [
        (("--backends", "numpy"), "numpy is not a compiled row"),
        (("--backends", "torch.optim+fused", "--optimizer", "lion"), "row torch.optim+fused implements"),
        (("--backends", "numpy,+torch.compile"), "either name the rows"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, args, message):
    result, data = _compiled(tmp_path, *args)
    assert result.returncode == 2 and data is None
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_plugin_must_name_the_row_it_compiles(tmp_path):
    source = FMA_IN_M.replace('COMPILES = "torch"', 'COMPILES = "octave"')
    result, _ = _compiled(tmp_path, "--backend-file", str(_plugin(tmp_path, source, "bad.py")))
    assert result.returncode == 2 and "COMPILES must name the eager Python row" in result.stderr


def test_without_a_cpp_compiler_a_requested_inductor_row_is_refused(tmp_path):
    result, _ = _compiled(tmp_path, "--backends", "torch.compile", env_extra={"CXX": "no-such-compiler-here"})
    assert result.returncode == 2 and "needs a C++ compiler" in result.stderr


def test_plus_adds_a_compiled_row_to_the_default_run():
    from harness.commands.arguments import row_list

    names = row_list("+torch.compile")
    assert list(names) == ["torch.compile"] and names.with_defaults
    assert not row_list("numpy,torch.compile").with_defaults


# --- the real compilers (slow: each Inductor compile takes seconds to tens of seconds) ----------

needs_cxx = pytest.mark.skipif(shutil.which(os.environ.get("CXX") or "g++") is None, reason="no C++ compiler")


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compiled")
    rows = "torch.compile,torch.optim+compile,torch.optim+fused,jax+fast-math"
    # the session's Inductor cache (conftest): what other tests compiled is not compiled again
    return _compiled(folder, "--backends", rows, "--epochs", "200")


@pytest.mark.slow
@needs_cxx
def test_inductor_reassociates_sigmoids_backward_and_the_decompositions_decide(compiled_run):
    result, data = compiled_run
    row = data["rows"]["torch.compile"]
    assert row["verdict"] == "rounding level" and row["against_numpy"] == "agrees"
    assert row["first_difference"]["phase"] == "grads"
    assert row["recognised"] == ["sigmoid-backward-reassociated"]
    gone = {b["removed"]: b["gone"] for b in row["bisection"]}
    assert gone["Inductor's code generation (aot_eager_decomp_partition)"] is False
    assert gone["the decompositions (aot_eager)"] is True
    assert row["deciding"] == "the decompositions (aot_eager)"
    assert row["compile_seconds"] > 0


@pytest.mark.slow
@needs_cxx
def test_the_compiled_optimizer_forms_bias_corrections_in_float32(compiled_run):
    result, data = compiled_run
    row = data["rows"]["torch.optim+compile"]
    assert row["verdict"].startswith("computation changed") and not row["passed"]
    assert row["first_difference"]["phase"] == "v"
    assert "addcmul-as-fma" in row["recognised"]
    assert row["whole_step"] == ["bias-corrections-in-float32"]
    gone = {b["removed"]: b["gone"] for b in row["bisection"]}
    dynamo = "Dynamo's optimizer decompositions (enable_dynamo_decompositions=False)"
    assert gone[dynamo] is False  # Inductor's lowering of addcmul reorders the product too
    assert gone[f"{dynamo} + Inductor's code generation (aot_eager_decomp_partition)"] is True
    assert row["deciding"] == f"{dynamo} + Inductor's code generation (aot_eager_decomp_partition)"
    assert result.returncode == 1


@pytest.mark.slow
def test_the_fused_optimizer_is_rounding_level_and_xla_fast_math_contracts_the_loss(compiled_run):
    _, data = compiled_run
    fused = data["rows"]["torch.optim+fused"]
    assert fused["verdict"] in ("rounding level", "bit-identical") and fused["passed"]
    fast = data["rows"]["jax+fast-math"]
    assert fast["passed"] and fast["explained_phase"] == "loss"
    assert fast["recognised"] == ["loss-squares-fma"]
    assert fast["variants"]["loss-sum-pairwise"]["reproduces"] is False
    assert fast["deciding"] == "--xla_cpu_enable_fast_math=true"


@pytest.mark.slow
@needs_cxx
def test_a_compiled_row_leaves_no_process_behind(tmp_path):
    from tests.test_lifetime import Run

    run = Run(["compiled", "--backends", "torch.compile", "--epochs", "50", "--no-bisect"], tmp_path,
              {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")})  # fmt: skip
    assert run.finish() == 0, run.stderr
    assert run.left() == []


@pytest.mark.slow
def test_bench_times_a_compiled_rows_compile_cold_and_warm_beside_its_eager_row(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--backends", "jax+fast-math", "--epochs", "100", "--repeat", "1", "--no-wall",
                     "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"jax", "jax+fast-math"}  # the eager row it compiles is timed beside it
    entry = rows["jax+fast-math"]
    assert entry["compiles"] == "jax" and entry["cold_compile_seconds"] > 0 and entry["warm_compile_seconds"] > 0
    assert "jax+fast-math: compile" in result.stdout and "× eager jax" in result.stdout


@pytest.mark.slow
def test_a_compile_that_fails_is_that_rows_failure_the_others_go_on(tmp_path):
    env = {"CXX": shutil.which("false") or "false", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "empty-cache")}
    result, data = _compiled(tmp_path, "--backends", "torch.compile,jax+O0", "--epochs", "50", "--no-bisect",
                             env_extra=env)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "torch.compile" in data["could_not_run"] and "the compile failed" in data["could_not_run"]["torch.compile"]
    assert "jax+O0" in data["rows"] and data["rows"]["jax+O0"]["passed"]
    assert "torch.compile could not run" in result.stdout
