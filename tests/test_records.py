"""Tests generated from the records: every optimizer record has what each implementation,
the bounds, the command line, the docs and explain read of it, and every row record what
generic code reads. A new record is tested by being added; nothing here names one."""

import re
from pathlib import Path

import pytest

from harness.engine.bounds import OPTIMIZER_BOUNDS
from harness.engine.rows import INJECTABLE_ROWS, ROWS, load_backend, unavailable_reason
from reference.optimizers import HYPERPARAMETER_RECORDS, NON_NEGATIVE_SLOTS, OPTIMIZER_PHASES, OPTIMIZERS, UPDATES

ROOT = Path(__file__).resolve().parents[1]
NAMES = tuple(OPTIMIZERS)


@pytest.mark.parametrize("row", INJECTABLE_ROWS)
@pytest.mark.parametrize("optimizer", NAMES)
def test_every_whole_backend_has_a_rule_for_every_optimizer(optimizer, row):
    if unavailable_reason(row):
        pytest.skip(unavailable_reason(row))
    assert callable(load_backend(row).UPDATES.get(optimizer)), f"{row} has no rule for {optimizer}"


@pytest.mark.parametrize("optimizer", NAMES)
def test_every_optimizer_has_its_spec_rule_bound_and_library_facts(optimizer):
    record = OPTIMIZERS[optimizer]
    assert callable(UPDATES.get(optimizer)) and callable(OPTIMIZER_BOUNDS.get(optimizer))
    # torch.optim's state holds every slot where it ships the optimizer; optax's too, but
    # where its known gap is that it keeps no such slot (NAdam's μ product)
    assert set(record.torch_state) == (set(record.state_slots) if record.torch else set())
    assert set(record.torch_scalars) <= set(record.torch_state)
    missing = set(record.state_slots) - set(record.optax_state.values())
    assert set(record.optax_state.values()) <= set(record.state_slots)
    assert not missing or "optax" in record.gaps, missing
    assert set(record.non_negative) <= set(record.state_slots)
    assert set(record.initial) <= set(record.state_slots)
    assert all(start in record.defaults if isinstance(start, str) else start >= 0 for start in record.initial.values())
    assert set(record.defaults) <= set(HYPERPARAMETER_RECORDS)


@pytest.mark.parametrize("optimizer", NAMES)
def test_every_optimizer_cites_its_paper_and_the_libraries_pages_of_its_calls(optimizer):
    record = OPTIMIZERS[optimizer]
    assert record.equations and all(record.equations)
    assert record.equations[-1].startswith("Δ") or "Δ" in " ".join(record.equations)
    assert record.citation is not None and re.search(r"\b(19|20)\d\d\b", record.citation.paper)
    if record.torch:
        assert record.citation.torch.endswith(f"torch.optim.{record.torch.function}.html")
    else:
        assert record.citation.torch == "" and record.follows == "optax"
    assert record.citation.optax.endswith(f"#optax.{record.optax.function}")
    if record.citation.keras:
        assert record.keras is not None and record.citation.keras.lower().endswith(f"/{record.keras.function.lower()}/")


@pytest.mark.parametrize("optimizer", NAMES)
def test_every_optimizer_phase_is_in_lockstep_and_explain_order(optimizer):
    from harness.engine.lockstep import PHASES

    phases = OPTIMIZERS[optimizer].phases
    assert [p for p in OPTIMIZER_PHASES if p in phases] == list(phases)  # explain's order keeps the record's
    assert [p for p in PHASES if p in phases] == list(phases)
    assert set(NON_NEGATIVE_SLOTS) >= set(OPTIMIZERS[optimizer].non_negative)


@pytest.mark.parametrize("row", INJECTABLE_ROWS)
def test_every_fault_swaps_only_what_the_interface_marks_swapped(row):
    # a fault replaces members at call time; the interface's records say which may be
    from backends.interface import SWAPPED
    from harness.engine.faults import FAULTS

    if unavailable_reason(row):
        pytest.skip(unavailable_reason(row))
    module = load_backend(row)
    for name, fault in FAULTS.items():
        assert set(fault.make(module)) <= set(SWAPPED), name


def test_the_command_line_offers_every_hyperparameter_with_its_defaults():
    from harness.cli import build_parser

    parser = build_parser(None)
    options = {o for action in parser._actions for o in action.option_strings}
    for name, record in HYPERPARAMETER_RECORDS.items():  # a pair by torch.optim's name for it (--etas)
        assert f"--{(record.pair or name).replace('_', '-')}" in options
    text = parser.format_help()
    for record in OPTIMIZERS.values():
        for name, value in record.defaults.items():
            assert f"{value:g}" in text, (record.name, name)


# --- the MATLAB and Scilab code: one case per optimizer, assigning the record's slots -----------


def _cases(source: str, opener: str, case: re.Pattern, end_of_block: re.Pattern) -> dict:
    """{optimizer: body} of every ``opener`` block (switch/select cfg.optimizer)."""
    found: dict = {}
    for block in source.split(opener)[1:]:
        body = end_of_block.split(block)[0]
        parts = case.split(body)
        for labels, text in zip(parts[1::2], parts[2::2], strict=True):
            for name in re.findall(r"['\"](\w+)['\"]", labels):
                found.setdefault(name, []).append(text)
    return found


MATLAB_CASE = re.compile(r"^\s*case\s+(\{[^}]*\}|'[^']*')", re.M)
MATLAB_END = re.compile(r"^\s*(?:otherwise|end)\b", re.M)
SCILAB_CASE = re.compile(r'^\s*case\s+("[^"]*")\s+then', re.M)
SCILAB_END = re.compile(r"^\s*(?:else|end)\b", re.M)


def _function(source: str, name: str, keyword: str) -> str:
    start = re.search(rf"^function .*\b{name}\(", source, re.M)
    assert start, f"no function {name}"
    rest = source[start.end() :]
    following = re.search(rf"^{keyword}", rest, re.M)
    return rest[: following.start()] if following else rest


def _language_cases():
    octave = ROOT / "backends" / "octave"
    scilab = (ROOT / "backends" / "scilab" / "xor.sci").read_text()
    rule_m = _function((octave / "xor_rule.m").read_text(), "xor_rule", "function")
    init_m = _function((octave / "xor_train.m").read_text(), "initial_slots", "function")
    return {
        "matlab rule": (_cases(rule_m, "switch cfg.optimizer", MATLAB_CASE, MATLAB_END), r"\bnew\.(\w+)\s*="),
        "matlab initial slots": (_cases(init_m, "switch cfg.optimizer", MATLAB_CASE, MATLAB_END), r"\bS\.(\w+)\s*="),
        "scilab rule": (
            _cases(_function(scilab, "xor_rule", "endfunction"), "select cfg.optimizer", SCILAB_CASE, SCILAB_END),
            r"\bnew\.(\w+)\s*=",
        ),
        "scilab initial slots": (
            _cases(_function(scilab, "initial_slots", "endfunction"), "select cfg.optimizer", SCILAB_CASE, SCILAB_END),
            r"\bS\.(\w+)\s*=",
        ),
    }


@pytest.mark.parametrize("where", ["matlab rule", "matlab initial slots", "scilab rule", "scilab initial slots"])
@pytest.mark.parametrize("optimizer", NAMES)
def test_the_language_code_has_a_case_for_every_optimizer_with_its_slots(optimizer, where):
    cases, assigned = _language_cases()[where]
    record = OPTIMIZERS[optimizer]
    if not record.state_slots and "initial" in where:
        assert optimizer not in cases or not re.findall(assigned, "".join(cases[optimizer]))
        return
    assert optimizer in cases, f"{where}: no case for {optimizer}"
    body = "".join(cases[optimizer])
    for helper in re.findall(r"\[delta, new\] = (\w+)\(", body):  # a rule two cases share, in its own function
        body += _helper(where, helper)
    assert set(re.findall(assigned, body)) == set(record.state_slots), (where, optimizer)
    for slot, start in record.initial.items():
        if "initial" in where:
            value = rf"cfg\.{start}\b" if isinstance(start, str) else rf"{start:g}\s*\+\s*zero\b"
            assert re.search(rf"\bS\.{slot}\s*=\s*{value}", body), (where, optimizer, slot)


def _helper(where: str, name: str) -> str:
    if "matlab" in where:
        return _function((ROOT / "backends" / "octave" / "xor_rule.m").read_text(), name, "function")
    return _function((ROOT / "backends" / "scilab" / "xor.sci").read_text(), name, "endfunction")


def test_the_case_parser_sees_a_missing_case():
    # the generated test above can fail: a case removed from a copy of the code is missed
    source = _function((ROOT / "backends" / "octave" / "xor_rule.m").read_text(), "xor_rule", "function")
    without = re.sub(r"^\s*case 'rmsprop'.*?(?=^\s*case )", "", source, flags=re.M | re.S)
    assert "rmsprop" in _cases(source, "switch cfg.optimizer", MATLAB_CASE, MATLAB_END)
    assert "rmsprop" not in _cases(without, "switch cfg.optimizer", MATLAB_CASE, MATLAB_END)


# --- rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", tuple(ROWS))
def test_every_row_record_says_what_generic_code_reads(name):
    row = ROWS[name]
    if row.compiled is not None:  # a compiled row is its eager row's record under a compiler (backends.compiled)
        assert row.backend == f"compiled:{name}" and row.opt_in and row.kind == "compiled"
        row = ROWS[row.runs]
    assert row.backend.startswith("backends.") and (ROOT / (row.backend.replace(".", "/") + ".py")).is_file()
    assert row.device in ("cpu", "any") and row.cost > 0
    assert set(row.optimizers) <= set(OPTIMIZERS)
    assert (row.library is None) == (row.kind != "library")
    if row.library is not None:
        assert row.library_label
