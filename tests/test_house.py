"""The house rules, read from the source: layers import only downward, the harness imports
no framework, there are no import circles, functions stay short, the command line only
builds parsers and dispatches, and every optimizer has what generic code reads of it."""

import ast
from pathlib import Path

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
