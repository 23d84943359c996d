"""The rows of the series' other languages: the MATLAB code run by GNU Octave and the
Scilab code run by Scilab (``backends.program_row``). Each trains every optimizer of the
lineage in every Adam form and gradient convention, and steps from a batch of numpy
states for lockstep; a mistake planted in a copy of its code is found at its first epoch.

``.ci/run`` installs both programs and sets XOR_REQUIRE_LANGUAGES, so there these tests
run rather than skip."""

import argparse
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.commands import lineage, row_choice
from harness.engine.execution import run_row
from harness.engine.lockstep import lockstep_row, states_from_history
from harness.engine.pipeline import run_default
from harness.engine.rows import LANGUAGE_ROWS, load_backend
from reference.optimizers import OPTIMIZERS
from reference.spec import Config
from tests.test_cli import run_cli
from tests.test_exchange import error_lines

LANGUAGES = {"octave": "octave-cli", "scilab": "scilab-cli"}
CODE = {row: load_backend(row).PROGRAM for row in LANGUAGES}
# every configuration the code implements: each optimizer, Adam's other forms, the other gradient
CONFIGS = [Config(optimizer=o) for o in OPTIMIZERS] + [
    Config(adam="epshat"),
    Config(adam="article"),
    Config(adam="article", grad="half-sse"),
]


def installed_or_skip(row: str) -> None:
    if shutil.which(LANGUAGES[row]) is None:
        if os.environ.get("XOR_REQUIRE_LANGUAGES"):
            pytest.fail(f"XOR_REQUIRE_LANGUAGES is set (.ci/run installs them) but {LANGUAGES[row]} is not on PATH")
        pytest.skip(f"{LANGUAGES[row]} is not on PATH")


def edited_copy(row: str, folder: Path, name: str, old: str, new: str) -> Path:
    """A copy of the row's code in ``folder`` with the one occurrence of ``old`` in file
    ``name`` made ``new``."""
    copy = folder / "code"
    shutil.copytree(CODE[row].code, copy)
    source = (copy / name).read_text()
    assert source.count(old) == 1, (name, old)
    (copy / name).write_text(source.replace(old, new))
    return copy


def label(cfg: Config) -> str:
    return f"{cfg.optimizer}-{cfg.adam}-{cfg.grad}"


@pytest.mark.slow
@pytest.mark.parametrize("row", LANGUAGES)
def test_every_configuration_steps_as_numpy_does_in_lockstep(row):
    """One call of the program's xor_step per configuration, over 300 recorded numpy
    states: every phase within the lockstep bound (measured at most 0.98 ULPs at the
    scale of the terms, asserted below 2: a missed term or factor is thousands)."""
    installed_or_skip(row)
    for cfg in CONFIGS:
        cfg = Config(**{**cfg.to_dict(), "epochs": 300})
        numpy_run = run_row("numpy", cfg, record_states=True)
        states = states_from_history(cfg, numpy_run.params, numpy_run.states)
        errors = lockstep_row(row, cfg, states)["errors"]
        assert set(errors) == {"forward", "loss", "grads", *OPTIMIZERS[cfg.optimizer].phases, "params"}
        worst = max(errors.values(), key=lambda e: e.max_ulp)
        assert worst.max_ulp < 2, (label(cfg), worst.phase, worst.max_ulp)


@pytest.mark.slow
@pytest.mark.parametrize("row", LANGUAGES)
def test_the_row_agrees_with_numpy_over_2000_epochs_of_adam(row):
    installed_or_skip(row)
    results = run_default(Config(epochs=2000), ["numpy", row], "cpu", 2, {})
    assert not results.skipped, results.skipped
    (pair,) = results.pairs
    assert pair.passed and pair.agreement.max_abs_param_diff < 1e-13 and pair.lockstep_max_ulp < 2


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_agrees_in_both_languages_over_20000_epochs(optimizer):
    """The issue's acceptance: float64, seed 0, 20000 epochs, numpy against both."""
    for row in LANGUAGES:
        installed_or_skip(row)
    results = run_default(Config(optimizer=optimizer), ["numpy", *LANGUAGES], "cpu", 2, {})
    assert not results.skipped and len(results.pairs) == 2
    for pair in results.pairs:
        assert pair.passed and pair.agreement.margin < 0.1 and pair.lockstep_max_ulp < 2, pair


# A realistic mistake per language, planted in a copy of its code: the MATLAB code forgets
# the MSE's factor 2 (the half-sse gradient under the MSE's name), the Scilab code puts
# Adam's ε inside the root (optax's rmsprop default, Keras' habit).
PLANTED = {
    "octave": ("xor_net.m", "net.out_scale = 2 / n;", "net.out_scale = 1 / n;", "grads"),
    "scilab": ("xor.sci", "(sqrt(v ./ bc2) + cfg.eps)", "sqrt(v ./ bc2 + cfg.eps)", "update"),
}


@pytest.mark.slow
@pytest.mark.parametrize("row", LANGUAGES)
def test_a_mistake_planted_in_a_copy_of_the_code_is_found_at_epoch_1(row, tmp_path):
    installed_or_skip(row)
    program = CODE[row]
    name, right, wrong, phase = PLANTED[row]
    copy = edited_copy(row, tmp_path, name, right, wrong)
    out = tmp_path / "r.json"
    # the copy named relative to the working folder, which gets the replay file and nothing of the program's
    result = run_cli(
        "--epochs",
        "50",
        "--backends",
        f"numpy,{row}",
        "--json",
        str(out),
        env_extra={program.code_variable: copy.name},
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    (pair,) = json.loads(out.read_text())["agreement"]
    assert not pair["passed"]
    assert pair["first_divergence"]["epoch"] == 1 and pair["first_divergence"]["phase"] == phase, pair
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([copy.name, out.name, "xorcheck-replays"])
    assert [p.name for p in (tmp_path / "xorcheck-replays").iterdir()] == [f"replay_{row}_epoch1.npz"]


@pytest.mark.parametrize("row", LANGUAGES)
def test_the_row_is_skipped_with_a_notice_without_its_program(row, monkeypatch):
    path_without = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if not shutil.which(LANGUAGES[row], path=p)
    )
    explicit = run_cli("--epochs", "50", "--backends", f"numpy,{row}", env_extra={"PATH": path_without})
    assert explicit.returncode == 2 and f"{LANGUAGES[row]} is not on PATH" in error_lines(explicit)[0]
    monkeypatch.setenv("PATH", path_without)
    reason = f"{row} row unavailable: {LANGUAGES[row]} is not on PATH"
    # the default run, lineage and forms skip it with a notice (ending.notice_skipped)
    names, skipped = row_choice.select_rows(None, argparse.ArgumentParser(), cfg=Config())
    assert row not in names and skipped[row].startswith(reason)
    for command_rows in (lineage.available_rows(None), row_choice.requested_or_default(None, LANGUAGE_ROWS)):
        assert row not in command_rows[0] and command_rows[1][row].startswith(reason)


@pytest.mark.parametrize("row", LANGUAGES)
def test_a_code_folder_without_the_code_is_one_line(row, tmp_path):
    installed_or_skip(row)
    program = CODE[row]
    result = run_cli("--epochs", "10", "--backends", f"numpy,{row}", env_extra={program.code_variable: str(tmp_path)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path} has no {program.marker}" in error_lines(result)[0]


@pytest.mark.slow
@pytest.mark.parametrize("row", LANGUAGES)
def test_code_that_fails_names_the_programs_complaint(row, tmp_path):
    installed_or_skip(row)
    program = CODE[row]
    rule = "xor_rule.m" if row == "octave" else "xor.sci"
    copy = edited_copy(row, tmp_path, rule, "t, cfg, cfg.adam)", "t, cfg, cfg.beta3)")
    result = run_cli(
        "--epochs", "10", "--backends", f"numpy,{row},torch", env_extra={program.code_variable: str(copy)}
    )  # fmt: skip
    assert result.returncode == 3 and "Traceback" not in result.stderr  # a row could not run
    (line,) = [x for x in result.stdout.splitlines() if x.startswith(f"{row} ") and "could not run:" in x]
    assert f"{row} row failed (exit 1)" in line and "beta3" in line, line
    assert "all 1 pairs agree" in result.stdout  # the rows that ran are judged


def test_the_matlab_code_uses_no_octave_only_syntax():
    """The docs promise MATLAB R2016b+: none of Octave's extensions, which MATLAB rejects."""
    octave_only = {
        r"^\s*#": "# comments",
        r"!": "! and !=",
        r"\+=|-=|\*=|/=|\+\+|--": "in-place operators",
        r"\bend(function|if|for|while|switch)\b": "endfunction/endif/…",
        r"\bprintf\s*\(": "printf",
        r'"': "double-quoted strings",
        r"\bunwind_protect\b": "unwind_protect",
        r"\)\s*\(": "indexing a call",
        r"\bpagemtimes\b": "pagemtimes (R2020b)",
        r"^\s*arguments\b": "arguments blocks (R2019b)",
        r"\bstrings?\s*\(": "string arrays (R2016b's strings differ; none needed)",
    }
    for path in sorted(Path(CODE["octave"].code).glob("*.m")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("%")[0]
            for pattern, what in octave_only.items():
                assert not re.search(pattern, code), f"{path.name}:{number} uses {what}: {line.strip()}"


def test_a_batch_of_states_goes_to_the_program_and_back_in_order():
    """The records layout (backends.program_row) against numpy's own phases: the
    step of numpy's states, unpacked from the program's file, lands on the same names
    and shapes as numpy's step_phases."""
    from backends.program_row import PhaseLayout, state_records

    cfg = Config(optimizer="amsgrad", epochs=5)
    run = run_row("numpy", cfg, record_states=True)
    states = states_from_history(cfg, run.params, run.states)
    records = state_records(cfg, states.params, states.slots, states.t)
    assert records.shape == (5, 17 * 4 + 1) and records.dtype == np.dtype("<f8")
    np.testing.assert_array_equal(records[:, -1], np.arange(5))
    np.testing.assert_array_equal(records[:, 17:34], run.states["m"][:5])
    reference = load_backend("numpy").step_phases(cfg, states.params, states.slots, states.t)
    layout = PhaseLayout(cfg.hidden, OPTIMIZERS[cfg.optimizer].phases)
    flat = np.concatenate(
        [
            np.concatenate([np.asarray(reference[phase][k]).reshape(5, -1) for k in reference[phase]], axis=1)
            for phase in ("forward", "loss", "grads", "m", "v", "vmax", "update", "params")
        ],
        axis=1,
    )
    assert flat.shape == (5, layout.width)
    unpacked = layout.unpack(flat)
    for phase, parts in reference.items():
        for k, value in parts.items():
            np.testing.assert_array_equal(unpacked[phase][k], np.asarray(value).reshape(unpacked[phase][k].shape))


@pytest.mark.slow
def test_forms_finds_a_mistake_in_one_form_of_the_matlab_code(tmp_path):
    """The article form's first denominator squared: only the two article rows of the table part."""
    installed_or_skip("octave")
    copy = edited_copy("octave", tmp_path, "xor_rule.m", "(m / (1 - cfg.beta1))", "(m / (1 - cfg.beta1 ^ 2))")
    out = tmp_path / "f.json"
    result = run_cli(
        "forms",
        "--epochs",
        "200",
        "--backends",
        "octave",
        "--json",
        str(out),
        env_extra={"XOR_OCTAVE_CODE": str(copy)},
    )
    assert result.returncode == 1, result.stderr
    judged = {
        label: entry["rows"]["octave"]["passed"] for label, entry in json.loads(out.read_text())["flavors"].items()
    }
    assert judged == {"paper/mse": True, "epshat/mse": True, "article/mse": False, "article/half-sse": False}
    assert "NO " in result.stdout and "disagreement" in result.stdout


@pytest.mark.parametrize("row", LANGUAGES)
def test_inject_into_a_language_row_says_how_to_plant_one(row):
    result = run_cli("--inject", f"{row}:eps-inside-sqrt", "--epochs", "10")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"point {CODE[row].code_variable} at that folder" in error_lines(result)[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command", [["lineage", "--backends", "numpy,octave,torch"], ["forms", "--backends", "octave,torch"]]
)
def test_a_program_that_fails_in_lineage_or_forms_could_not_run(command, tmp_path):
    """The grid commands judge the other rows and exit 3, as the default run does."""
    installed_or_skip("octave")
    copy = edited_copy("octave", tmp_path, "xor_train.m", "init = jsondecode(", "error('planted');\ninit = jsondecode(")
    result = run_cli(*command, "--epochs", "200", env_extra={CODE["octave"].code_variable: str(copy)})
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if "could not run:" in x]
    assert line.startswith("octave ") and "octave row failed (exit 1): planted" in line, line
