"""Compiled rows (``compare.py compiled``): an eager row's own step run by a compiler,
one record each (``COMPILATIONS``). The harness derives a row from each record
(``harness.engine.rows``), opt-in, and judges it against the eager row it compiles.

- torch.compile rows: the torch row's loss (``torch.func.grad`` of the same forward
  pass) and the same rule from ``torch_backend.UPDATES``, one epoch as one compiled
  function (``fullgraph=True, dynamic=False``; the step count enters as a tensor, so
  the graph compiles once), and in lockstep the batched step compiled once per batch
  shape. ``compiler`` is the rung of torch.compile's backend ladder (``eager``: Dynamo's
  graph run eagerly; ``aot_eager``: AOT autograd's; ``aot_eager_decomp_partition``: with
  Inductor's decompositions; ``inductor``: generated C++) and ``knobs`` Inductor config
  entries (``torch.compile(options=…)``).
- torch.optim rows: the torch.optim row with ``optimizer.step`` compiled (the compiled
  optimizer PyTorch documents), or the optimizer built with ``fused=True``.
- XLA rows: the jax row run by this interpreter in a process of its own whose
  ``XLA_FLAGS`` are set before JAX is imported (``backends.env_row``).

Inductor writes what it compiles under ``TORCHINDUCTOR_CACHE_DIR``; where the user set
none, the user's cache folder (``cache_folder``), so a second run does not recompile.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import backends

LADDER = ("eager", "aot_eager", "aot_eager_decomp_partition", "inductor")  # torch.compile's backends, in order
CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


@dataclass(frozen=True)
class Compilation:
    """One compiled row: which eager row, compiled how."""

    name: str
    runs: str  # the eager row whose step it compiles: "torch", "torch.optim", "jax"
    kind: str  # "torch.compile", "compiled optimizer", "fused optimizer", "xla flags"
    what: str  # for the table
    compiler: str = "inductor"  # torch.compile's backend (LADDER), for the torch.compile kinds
    knobs: tuple = ()  # (Inductor config name, value) pairs: torch.compile(options=dict(knobs))
    xla_flags: tuple = ()  # the XLA_FLAGS of an XLA row's process
    dynamo_knobs: tuple = ()  # (torch._dynamo.config name, value) pairs, set while a compiled optimizer steps
    default_dtype: str = ""  # torch's default dtype while a compiled optimizer steps ("": torch's float32)
    optimizers: tuple = ()  # the optimizers it can run, where fewer than its eager row's (() all of them)

    @property
    def framework(self) -> str:
        """The framework it needs: "jax" for XLA's flags, "torch" for the rest."""
        return "jax" if self.kind == "xla flags" else "torch"

    @property
    def label(self) -> str:
        """How the row's environment column names the compiler."""
        parts = [self.kind if self.kind != "torch.compile" else f"torch.compile({self.compiler})"]
        parts += [f"{k}={v}" for k, v in (*self.knobs, *self.dynamo_knobs)] + list(self.xla_flags)
        parts += [f"default dtype {self.default_dtype}"] if self.default_dtype else []
        return " ".join(parts)

    @property
    def needs_compiler(self) -> bool:
        """Whether it generates C++ (a C++ compiler must be here)."""
        return self.kind in ("torch.compile", "compiled optimizer") and self.compiler == "inductor"


def _torch(name: str, what: str, compiler: str = "inductor", knobs: tuple = ()) -> Compilation:
    return Compilation(name, "torch", "torch.compile", what, compiler, knobs)


FMA = "cpp.enable_floating_point_contract_flag"
COMPILATIONS = {
    c.name: c
    for c in (
        _torch("torch.compile", "compiled by Inductor (C++)"),
        _torch("torch.compile+fma", "Inductor, FMA contraction on (-ffp-contract=on)", knobs=((FMA, "on"),)),
        _torch("torch.compile+fma-fast", "Inductor, FMA contraction across statements (-ffp-contract=fast)",
               knobs=((FMA, "fast"),)),
        _torch("torch.compile+scalar", "Inductor, scalar code (cpp.simdlen=1)", knobs=(("cpp.simdlen", 1),)),
        _torch("torch.compile+unsafe", "Inductor, unsafe math (-funsafe-math-optimizations)",
               knobs=(("cpp.enable_unsafe_math_opt_flag", True),)),
        _torch("torch.compile@aot_eager", "traced by AOT autograd, run eagerly", "aot_eager"),
        _torch("torch.compile@decomp", "AOT autograd with Inductor's decompositions, run eagerly",
               "aot_eager_decomp_partition"),
        Compilation("torch.optim+compile", "torch.optim", "compiled optimizer",
                    "step compiled by torch.compile, Inductor"),
        # fused kernels exist for these torch.optim classes only (torch/optim/*.py: their "fused" argument)
        Compilation("torch.optim+fused", "torch.optim", "fused optimizer", "fused=True (one C++ kernel)",
                    optimizers=("sgd", "momentum", "nesterov", "adagrad", "adam", "adamw", "amsgrad")),
        Compilation("jax+fast-math", "jax", "xla flags", "XLA_FLAGS=--xla_cpu_enable_fast_math=true",
                    xla_flags=("--xla_cpu_enable_fast_math=true",)),
        Compilation("jax+O0", "jax", "xla flags", "XLA_FLAGS=--xla_backend_optimization_level=0",
                    xla_flags=("--xla_backend_optimization_level=0",)),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Decision:
    """One compiler decision a bisection takes away: ``undo`` gives the compilation
    without it (None: the eager row itself)."""

    label: str
    undo: Callable[[Compilation], Compilation | None]


RUNG_LABELS = {
    "aot_eager_decomp_partition": "Inductor's code generation (aot_eager_decomp_partition)",
    "aot_eager": "the decompositions (aot_eager)",
    "eager": "AOT autograd's tracing (eager: Dynamo's graph alone)",
}
NO_DYNAMO_DECOMPOSITIONS = ("enable_dynamo_decompositions", False)


def _rung(rung: str) -> Decision:
    return Decision(RUNG_LABELS[rung], lambda c: replace(c, compiler=rung, knobs=()))


def _knob_removed(name: str, value) -> Decision:
    return Decision(f"{name}={value}", lambda c: replace(c, knobs=tuple(x for x in c.knobs if x[0] != name)))


def _flag_removed(flag: str) -> Decision:
    return Decision(flag, lambda c: replace(c, xla_flags=tuple(f for f in c.xla_flags if f != flag)))


def _flag_added(label: str, flag: str) -> Decision:
    return Decision(f"{label} ({flag})", lambda c: replace(c, xla_flags=(*c.xla_flags, flag)))


def decisions(c: Compilation) -> list[Decision]:
    """The compiler decisions of ``c`` that a bisection takes away, most specific first."""
    out = [_knob_removed(k, v) for k, v in c.knobs]
    if c.kind == "fused optimizer":  # its one decision: the eager row is the optimizer without it
        out.append(Decision("the fused kernel (fused=True)", lambda c: None))
    if c.kind == "compiled optimizer":
        out.append(
            Decision(
                "Dynamo's optimizer decompositions (enable_dynamo_decompositions=False)",
                lambda c: replace(c, dynamo_knobs=(*c.dynamo_knobs, NO_DYNAMO_DECOMPOSITIONS)),
            )
        )
        out.append(  # torch.optim keeps the step count in it: traced, what is formed from it is in its dtype
            Decision(
                "torch's float32 step tensor (torch.set_default_dtype(torch.float64))",
                lambda c: replace(c, default_dtype="float64"),
            )
        )
    if c.kind in ("torch.compile", "compiled optimizer"):
        if c.compiler == "inductor" and "cpp.simdlen" not in dict(c.knobs):
            scalar = ("cpp.simdlen", 1)
            out.append(Decision("vectorised code (cpp.simdlen=1)", lambda c: replace(c, knobs=(*c.knobs, scalar))))
        out += [_rung(r) for r in reversed(LADDER[: LADDER.index(c.compiler)])]
    for flag in c.xla_flags:
        out.append(_flag_removed(flag))
        if flag == "--xla_cpu_enable_fast_math=true":  # fast math is four licences; honour each back
            out += [_flag_added(f"fast math's {part} licence", f"--xla_cpu_fast_math_honor_{part}=true")
                    for part in ("nans", "infs", "division", "functions")]  # fmt: skip
    return out


def pairs(c: Compilation) -> list[tuple[str, Compilation]]:
    """Two decisions taken away together, for a difference no single one makes: (label,
    the compilation without both), each distinct compilation once."""
    found: dict = {}
    options = decisions(c)
    for i, first in enumerate(options):
        for second in options[i + 1 :]:
            once = first.undo(c)
            both = None if once is None else second.undo(once)
            if both is not None and both != c and both not in found.values():
                found[f"{first.label} + {second.label}"] = both
    return list(found.items())


def cache_folder() -> Path:
    """Where Inductor keeps what it compiled: $TORCHINDUCTOR_CACHE_DIR, else
    $XDG_CACHE_HOME/xor-crosscheck/inductor (~/.cache/… where XDG_CACHE_HOME is unset)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    return backends.user_cache_folder("inductor")


def use_cache_folder() -> None:
    """Point Inductor at ``cache_folder`` (before torch compiles anything)."""
    os.environ.setdefault(CACHE_VARIABLE, str(cache_folder()))


def unavailable(c: Compilation) -> str | None:
    """Why compiled row ``c`` cannot run here (None where it can): no torch.compile, no
    C++ compiler for Inductor. Looks without importing torch where it can."""
    import importlib.util

    framework = c.framework
    spec = importlib.util.find_spec(framework)
    if spec is None:
        return f"{c.name} row unavailable: {framework} is not installed"
    if framework == "jax":
        return None
    torch_folder = Path(spec.origin or "").parent  # not imported: only looked up
    if not (torch_folder / "_inductor").is_dir() and c.compiler != "eager":
        return f"{c.name} row unavailable: this torch has no Inductor (torch._inductor)"
    if c.needs_compiler:
        cxx = os.environ.get("CXX") or "g++"
        if shutil.which(cxx) is None:
            return f"{c.name} row unavailable: Inductor needs a C++ compiler and {cxx} is not on PATH (set CXX)"
    return None


_LOADED: dict = {}


def load(key: str):
    """The backend of compiled row ``key`` ("compiled:NAME"), one per process."""
    name = key[len("compiled:") :]
    if name not in _LOADED:
        _LOADED[name] = backend_for(COMPILATIONS[name])
    return _LOADED[name]


def forget_compiled() -> None:
    """Forget what this process compiled (Dynamo's cache), so that the next compiled call
    is traced under the config it runs with, not served from a trace made under another;
    Inductor's on-disk cache still spares the C++ compile where the code is the same."""
    if "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].reset()
    _LOADED.clear()


def backend_for(c: Compilation):
    """A backend (check_device, train, step_phases) computing as ``c`` says; also for the
    compilations a bisection makes, which are no row."""
    if c.kind == "xla flags":
        from backends.env_row import EnvRow

        row = EnvRow("jax", c.label, sys.executable, {"XLA_FLAGS": " ".join(c.xla_flags)})
        row.NAME = c.name
        return row
    use_cache_folder()
    if c.kind == "torch.compile":
        from backends.torch_compiled import CompiledTorch

        return CompiledTorch(c)
    from backends.torch_compiled import CompiledOptimizer

    return CompiledOptimizer(c)
