"""The house rules, read from the source: layers import only downward, the harness imports
no framework, there are no import circles, functions stay short, the command line only
builds parsers and dispatches, and every optimizer has what generic code reads of it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("reference", "backends", "harness")  # each may import only those before it
# inside the harness, the same rule: the engine at the bottom, the command line on top
HARNESS_LAYERS = ("engine", "files", "report", "gradcheck", "yardsticks", "commands", "cli")
FRAMEWORKS = ("torch", "jax", "jaxlib", "optax", "keras")
MAX_FUNCTION_LINES = 60


def modules():
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path, ast.parse(path.read_text())


def imported(tree):
    """(module name, line) of every absolute import, at any depth (lazy imports too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            yield from ((f"{node.module}.{alias.name}", node.lineno) for alias in node.names)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_layers_import_only_downward():
    upward = []
    for layer, path, tree in modules():
        allowed = LAYERS[: LAYERS.index(layer) + 1]
        for name, line in imported(tree):
            root = name.split(".")[0]
            if root in LAYERS and root not in allowed:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert upward == []


def test_the_harness_layers_import_only_downward():
    def layer_of(name):
        parts = name.split(".")
        return HARNESS_LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in HARNESS_LAYERS else None

    upward = []
    for layer, path, tree in modules():
        here = layer_of(module_name(path))
        if layer != "harness" or here is None:
            continue
        for name, line in imported(tree):
            there = layer_of(name) if name.startswith("harness.") else None
            if there is not None and there > here:
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert upward == []


def test_the_harness_imports_no_framework():
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for layer, path, tree in modules()
        if layer == "harness"
        for name, line in imported(tree)
        if name.split(".")[0] in FRAMEWORKS
    ]
    assert found == []


def test_no_import_circles():
    ours = {module_name(path): tree for _, path, tree in modules()}
    edges = {m: {n for n, _ in imported(tree) if n in ours and n != m} for m, tree in ours.items()}
    for m in ours:  # a package imports its __init__ implicitly: not an edge of its own
        edges[m] -= {p for p in ours if m.startswith(p + ".")}

    def cycle_from(start):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    return path + [start]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycles = [cycle_from(m) for m in ours]
    assert [c for c in cycles if c] == []


def test_no_function_over_60_lines():
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} is {node.end_lineno - node.lineno + 1} lines"
        for _, path, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_the_command_line_only_builds_parsers_and_dispatches():
    assert len((ROOT / "harness" / "cli.py").read_text().splitlines()) < 200


def test_no_whole_backend_branches_on_a_scalar_or_a_batch():
    # Training steps with one step count, lockstep with a batch of them: a branch on
    # which one it got would be a second path that lockstep never checks.
    from harness.engine.rows import BUILT_IN, ROWS

    paths = [ROOT / (ROWS[name].backend.replace(".", "/") + ".py") for name in BUILT_IN if ROWS[name].injectable]
    branches = []
    for path in [*paths, ROOT / "reference" / "adam.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called.split(".")[-1] in ("is_tensor", "isinstance", "isscalar", "ndim"):
                    branches.append(f"{path.relative_to(ROOT)}:{node.lineno} {called}")
    assert branches == []


# --- reach: a new optimizer and a new row, added in a copy of the tree ----------------------------

# Each edit: (file, the text it goes before, the text). A new optimizer: its record and
# numpy rule, its rule in JAX and torch, in MATLAB (the rule and where its slot starts) and
# Scilab, and its rounding bound. "heavyball" is momentum under new names (slot "vel"),
# so every library row can compute it and every row must agree.
OPTIMIZER_EDITS = [
    (
        "reference/optimizers.py",
        "    )\n}\n\n# Slots that hold sums of squares",
        '        Optimizer("heavyball", "heavy ball (throwaway)", {"lr": 1e-3, "momentum": 0.9}, ("vel",),\n'
        '                  torch=LibraryCall("SGD", ("lr",), {"momentum": "momentum", "dampening": 0.0}),\n'
        '                  optax=LibraryCall("sgd", ("lr",), {"momentum": "momentum"}),\n'
        '                  equations=("v = μ·v + g", "Δ = lr·v"),\n'
        '                  citation=Citation("Polyak 1964, heavy ball", TORCH_DOCS.format("SGD"),\n'
        '                                    OPTAX_DOCS.format("sgd")),\n'
        '                  torch_state={"vel": "momentum_buffer"}, counts_steps=False,\n'
        '                  optax_state={"trace": "vel"}),\n',
    ),
    (
        "reference/optimizers.py",
        "UPDATES = {name: globals()[name]",
        'def heavyball(g, slots, theta, t, cfg):\n    vel = cfg.momentum * slots["vel"] + g\n'
        '    return cfg.lr * vel, {"vel": vel}\n\n\n',
    ),
    (
        "backends/jax_backend.py",
        "UPDATES = {",
        'def _heavyball(g, slots, theta, t, cfg):\n    vel = cfg.momentum * slots["vel"] + g\n'
        '    return cfg.lr * vel, {"vel": vel}\n\n\n',
    ),
    ("backends/jax_backend.py", "}\n", '    "heavyball": _heavyball,\n', "UPDATES = {"),
    (
        "backends/torch_backend.py",
        "UPDATES = {",
        'def _heavyball(g, slots, theta, t, cfg):\n    vel = cfg.momentum * slots["vel"] + g\n'
        '    return cfg.lr * vel, {"vel": vel}\n\n\n',
    ),
    ("backends/torch_backend.py", "}\n", '    "heavyball": _heavyball,\n', "UPDATES = {"),
    (
        "backends/octave/xor_rule.m",
        "    otherwise\n        error('xor_rule:optimizer'",
        "    case 'heavyball'\n        new.vel = cfg.momentum * old.vel + g;\n        delta = cfg.lr * new.vel;\n",
    ),
    (
        "backends/octave/xor_train.m",
        "    case 'adagrad'\n        S.sum",
        "    case 'heavyball'\n        S.vel = zero;\n",
    ),
    (
        "backends/scilab/xor.sci",
        '    else\n        error("unknown optimizer "',
        '    case "heavyball" then\n        new.vel = cfg.momentum * old.vel + g;\n        delta = cfg.lr * new.vel;\n',
    ),
    (
        "backends/scilab/xor.sci",
        '    case "adagrad" then\n        S.sum',
        '    case "heavyball" then\n        S.vel = zero;\n',
    ),
    ("harness/engine/bounds.py", "}\n", '    "heavyball": _heavyball,\n', "OPTIMIZER_BOUNDS = {"),
    (
        "harness/engine/bounds.py",
        "OPTIMIZER_BOUNDS = {",
        "def _heavyball(cfg: Config, x: StepValues) -> dict:\n"
        '    e_vel = x.e_g + 2 * cfg.momentum * np.abs(x.old["vel"]) + np.abs(x.new["vel"])\n'
        '    return {"vel": e_vel, "update": cfg.lr * e_vel + np.abs(cfg.lr * x.new["vel"])}\n\n\n',
    ),
]
# A new row: its module (the example plug-in's numpy code, σ through tanh) and its record.
ROW_RECORD = (
    '        Row("tanh", "backends.tanh_row", "hand backprop, σ through tanh", "hand backprop", ("numpy",),\n'
    '            ("numpy",), forms=("paper",), optimizers=("sgd", "adam"), device="cpu", cost=1),\n'
)


def _tracked_copy(destination: Path) -> Path:
    """The checkout's files as git tracks them (or, without git, every file but caches)."""
    import shutil
    import subprocess

    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, check=False, capture_output=True, text=True)
    names = (
        listed.stdout.split()
        if listed.returncode == 0
        else [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if p.is_file() and not {".git", ".venv", "__pycache__", "site"} & set(p.relative_to(ROOT).parts)
        ]
    )
    for name in names:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination / name)
    return destination


def _insert(tree: Path, path: str, anchor: str, text: str, after: str | None = None) -> None:
    """``text`` before the first ``anchor`` in ``path`` (the first after ``after``)."""
    source = (tree / path).read_text()
    start = source.index(after) if after else 0
    at = source.index(anchor, start)
    (tree / path).write_text(source[:at] + text + source[at:])


def _changed(tree: Path) -> set:
    return {
        str(p.relative_to(tree))
        for p in tree.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and (not (ROOT / p.relative_to(tree)).is_file() or (ROOT / p.relative_to(tree)).read_bytes() != p.read_bytes())
    }


@pytest.mark.slow
def test_a_new_optimizer_and_a_new_row_take_only_their_own_places(tmp_path):
    import json
    import os
    import subprocess
    import sys

    tree = _tracked_copy(tmp_path / "tree")
    for edit in OPTIMIZER_EDITS:
        _insert(tree, *edit)
    optimizer_files = _changed(tree)
    (tree / "backends" / "tanh_row.py").write_text(
        (ROOT / "examples" / "plugin_backend.py").read_text().replace('NAME = "example"', 'NAME = "tanh"')
    )
    _insert(tree, "harness/engine/rows.py", "        # the series' other languages", ROW_RECORD)
    row_files = _changed(tree) - optimizer_files
    assert optimizer_files == {
        "reference/optimizers.py",
        "backends/jax_backend.py",
        "backends/torch_backend.py",
        "backends/octave/xor_rule.m",
        "backends/octave/xor_train.m",
        "backends/scilab/xor.sci",
        "harness/engine/bounds.py",
    }
    assert row_files == {"backends/tanh_row.py", "harness/engine/rows.py"}
    print(f"\nadding an optimizer touched {len(optimizer_files)} files, adding a row {len(row_files)}")

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")} | {"PYTHONPATH": str(tree)}

    def run(*args, timeout=600):
        return subprocess.run(
            [sys.executable, *args], cwd=tree, env=env, check=False, capture_output=True, text=True, timeout=timeout
        )

    # the generic tests, generated from the records, on the new ones
    tests = run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-n",
        "0",
        "-k",
        "heavyball or tanh",
        "tests/test_records.py",
        "tests/test_optimizers.py",
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "heavyball" not in tests.stdout.split("passed")[-1]
    # every row that implements it, the language rows and lockstep included, agrees on it
    out = tree / "heavyball.json"
    done = run("compare.py", "--optimizer", "heavyball", "--epochs", "300", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(out.read_text())
    assert {"numpy", "jax", "torch", "torch.optim", "optax"} <= set(data["backends"])
    assert all(p["passed"] and p["lockstep_passed"] for p in data["agreement"] if "lockstep_passed" in p)
    assert all(p["passed"] for p in data["agreement"])
    # and the new row runs as a row, lockstep included
    out = tree / "tanh.json"
    done = run("compare.py", "--backends", "numpy,tanh", "--epochs", "300", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    (pair,) = json.loads(out.read_text())["agreement"]
    assert pair["b"] == "tanh" and pair["passed"] and pair["lockstep_passed"]
