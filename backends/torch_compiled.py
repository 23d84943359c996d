"""The torch rows under a compiler (``backends.compiled``): the torch row's step compiled
by torch.compile, and the torch.optim row with a compiled or fused optimizer.

The compiled torch step is the torch row's own functions (``forward``, ``mse``,
``differentiated``, ``UPDATES``), looked up on ``torch_backend`` when it is traced, so a
variant planted there (``backends.compiler_variants``) reaches it as it reaches the eager
row. Its gradient comes from ``torch.func.grad`` of the same loss, which torch.compile
traces in one graph (the eager row's ``torch.autograd.grad`` breaks the graph); eagerly
the two are the same bits (the ``eager`` and ``aot_eager`` rungs show it).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager

import torch
import torch._dynamo

import backends
from backends import torch_backend, torch_optim_row
from reference import optimizers
from reference.spec import PARAM_NAMES, Config

GRADIENT_SOURCE = "torch.func.grad, compiled"

# Dynamo says once per process that it drops optimizer.step's profiler annotation: nothing
# to do with the numbers, and a warning on stderr would read as one about them.
logging.getLogger("torch._dynamo.variables.ctx_manager").setLevel(logging.ERROR)


@contextmanager
def compile_failures(name: str):
    """A compile that fails (Dynamo cannot trace the step, Inductor's C++ compiler fails)
    is the row's failure, one line (:class:`backends.RowFailed`), not the run's."""
    try:
        yield
    except torch._dynamo.exc.TorchDynamoException as exc:
        said = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise backends.RowFailed(f"{name} row: the compile failed: {said[0] if said else type(exc).__name__}") from None


def _options(c) -> dict | None:
    """The Inductor config entries of compilation ``c`` (the other backends take none)."""
    return dict(c.knobs) if c.compiler == "inductor" and c.knobs else None


def _compile(function, c):
    return torch.compile(function, fullgraph=True, dynamic=False, backend=c.compiler, options=_options(c))


def _network_step(cfg: Config, params: dict, X, y):
    """(forward values, loss, grads) of the torch row's network, the gradient by torch.func."""

    def differentiated_loss(tree):
        loss = torch_backend.mse(torch_backend.forward(tree, X)["A2"], y)
        return torch_backend.differentiated(loss, cfg.grad), loss

    grads, loss = torch.func.grad(differentiated_loss, has_aux=True)(params)
    return torch_backend.forward(params, X), loss, grads


class CompiledTorch:
    """The torch row's step under torch.compile (``c``: its ``backends.compiled.Compilation``)."""

    def __init__(self, c) -> None:
        self.compilation = c
        self.NAME = c.name
        self.GRADIENT_SOURCE = GRADIENT_SOURCE
        self._steps: dict = {}

    def check_device(self, device: str) -> None:
        torch_backend.check_device(device)

    def _epoch(self, cfg: Config):
        def epoch(theta, slots, t, X, y):  # t: the 1-based step, a 0-d tensor
            _, loss, grads = _network_step(cfg, torch_backend.flat_views(theta, cfg.hidden), X, y)
            g = torch.cat([grads[k].flatten(-2) for k in PARAM_NAMES], dim=-1)
            delta, slots = torch_backend.UPDATES[cfg.optimizer](g, slots, theta, t, cfg)
            return loss, theta - delta, slots

        return _compile(epoch, self.compilation)

    def train(self, cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
        with compile_failures(self.NAME):
            return self._train(cfg, params0, every, device, timings)

    def _train(self, cfg: Config, params0, every: int, device: str, timings: dict | None):
        X, y, theta, kept, losses, history = torch_backend.setup(cfg, params0, every, device)
        slots = {
            s: torch.full_like(theta, optimizers.initial_slot(cfg.optimizer, s, cfg))
            for s in optimizers.OPTIMIZERS[cfg.optimizer].state_slots
        }
        epoch, row, compile_seconds = self._epoch(cfg), 0, 0.0
        started = time.perf_counter()
        for t in range(1, cfg.epochs + 1):
            step = torch.tensor(t, dtype=torch.int64)
            if t == 1:
                (loss, theta, slots), compile_seconds = _timed(epoch, theta, slots, step, X, y)
                started = time.perf_counter()
            else:
                loss, theta, slots = epoch(theta, slots, step, X, y)
            if t in kept:
                losses[row] = loss
                history[row + 1] = theta
                row += 1
        if timings is not None:
            timings.update(compile_seconds=compile_seconds, run_seconds=time.perf_counter() - started)
        return losses.cpu().numpy(), history.cpu().numpy()

    def _phases(self, cfg: Config):
        def phases(params, slots, t, X, y):  # t: the steps taken before, (B, 1, 1)
            forward, loss, grads = _network_step(cfg, params, X, y)
            update_rule = torch_backend.UPDATES[cfg.optimizer]
            new_slots = {s: {} for s in slots}
            update, new = {}, {}
            for k in PARAM_NAMES:
                update[k], out = update_rule(grads[k], {s: slots[s][k] for s in slots}, params[k], t + 1, cfg)
                new[k] = params[k] - update[k]
                for s, value in out.items():
                    new_slots[s][k] = value
            return {"forward": forward, "loss": {"loss": loss}, "grads": grads, **new_slots, "update": update,
                    "params": new}  # fmt: skip

        return _compile(phases, self.compilation)

    def step_phases(self, cfg: Config, params, slots, t) -> dict:
        """One step from each of a batch of states, every phase's values (lockstep), the
        batched step compiled once per configuration and batch shape."""
        if cfg not in self._steps:
            self._steps[cfg] = self._phases(cfg)
        tensors, state, X, y = backends.state_to_backend(torch_backend, params, slots, t, cfg.dtype)
        with torch.no_grad(), compile_failures(self.NAME):
            tree = self._steps[cfg](tensors, state.slots, state.t, X, y)
        return backends.numpy_tree(torch_backend, tree)


def _timed(function, *args):
    started = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - started


class CompiledOptimizer:
    """The torch.optim row with its optimizer compiled (``torch.compile(optimizer.step)``)
    or fused (``fused=True``); ``c``: its ``backends.compiled.Compilation``."""

    def __init__(self, c) -> None:
        self.compilation = c
        self.NAME = c.name
        self.GRADIENT_SOURCE = torch_optim_row.GRADIENT_SOURCE
        self.timing: dict = {}
        self._leaves: dict = {}  # lockstep: (cfg, shape, dtype) -> (leaf, optimizer, its compiled step)

    def check_device(self, device: str) -> None:
        torch_backend.check_device(device)

    def _training_optimizer(self, cfg: Config, params):
        optimizer = _EAGER_MAKE(cfg, params)
        if self.compilation.kind == "fused optimizer":
            for group in optimizer.param_groups:
                group.update(fused=True, foreach=False)
            return optimizer
        return _CompiledStep(optimizer, self.compilation, self.timing)

    @contextmanager
    def _installed(self, make):
        """Within the block, torch.optim's row builds its optimizer with ``make`` (and
        torch's default dtype is the compilation's, where it names one)."""
        before, torch_optim_row.make_optimizer = torch_optim_row.make_optimizer, make
        dtype = torch.get_default_dtype()
        if self.compilation.default_dtype:
            torch.set_default_dtype(getattr(torch, self.compilation.default_dtype))
        try:
            yield
        finally:
            torch_optim_row.make_optimizer = before
            torch.set_default_dtype(dtype)

    def train(self, cfg: Config, params0, every: int = 1, device: str = "cpu", timings: dict | None = None):
        self.timing.clear()
        with self._installed(self._training_optimizer), compile_failures(self.NAME):
            out = torch_optim_row.train(cfg, params0, every, device)
        if timings is not None and "compile_seconds" in self.timing:
            timings.update(
                compile_seconds=self.timing["compile_seconds"],
                run_seconds=time.perf_counter() - self.timing["first_step_done"],
            )
        return out

    def step_phases(self, cfg: Config, params, slots, t) -> dict:
        """torch.optim's lockstep (``torch_optim_row.step_phases``); a compiled optimizer
        steps each group of states that share a step count through one persistent
        optimizer per leaf shape, whose compiled step is traced once (a new optimizer per
        group would be traced again, and one optimizer over every group is one graph of
        thousands of tensors)."""
        if self.compilation.kind == "fused optimizer":
            with self._installed(self._training_optimizer):
                return torch_optim_row.step_phases(cfg, params, slots, t)
        with self._installed(lambda cfg, leaves: _OneLeafAtATime(cfg, leaves, self)), compile_failures(self.NAME):
            return torch_optim_row.step_phases(cfg, params, slots, t)

    def stepper(self, cfg: Config, like):
        """The persistent (leaf, optimizer, compiled step) for leaves like ``like``."""
        key = (cfg, tuple(like.shape), like.dtype)
        if key not in self._leaves:
            leaf = torch.zeros_like(like)
            optimizer = _EAGER_MAKE(cfg, [leaf])
            self._leaves[key] = (leaf, optimizer, _compiled_step(optimizer, self.compilation))
        return self._leaves[key]


_EAGER_MAKE = torch_optim_row.make_optimizer


def _compiled_step(optimizer, c):
    step = torch.compile(optimizer.step, fullgraph=False, backend=c.compiler, options=_options(c))
    if not c.dynamo_knobs:
        return step

    def patched_step():
        with torch._dynamo.config.patch(dict(c.dynamo_knobs)):
            return step()

    return patched_step


class _CompiledStep:
    """A torch.optim optimizer whose ``step`` is compiled (the rest is the optimizer's);
    its first call, the compile, timed into ``timing``."""

    def __init__(self, optimizer, c, timing: dict):
        self._optimizer, self._timing = optimizer, timing
        self._step = _compiled_step(optimizer, c)

    def __getattr__(self, name):
        return getattr(self._optimizer, name)

    def step(self):
        if "compile_seconds" in self._timing:
            self._step()
            return
        _, self._timing["compile_seconds"] = _timed(self._step)
        self._timing["first_step_done"] = time.perf_counter()


class _OneLeafAtATime:
    """What ``torch_optim_row.step_phases`` takes for an optimizer: ``state`` keyed by its
    leaves and ``step``, which copies each leaf, its gradient and its state into the
    owner's persistent optimizer, steps it compiled, and copies the results back."""

    def __init__(self, cfg: Config, leaves, owner: CompiledOptimizer):
        self.cfg, self.leaves, self.owner = cfg, list(leaves), owner
        self.state: dict = {}

    def step(self):
        for p in self.leaves:
            leaf, optimizer, step = self.owner.stepper(self.cfg, p)
            entry = self.state[p]
            leaf.copy_(p)
            leaf.grad = p.grad.clone()
            kept = optimizer.state[leaf]
            for key, value in entry.items():  # the same state tensors every time: no new trace
                if key in kept:
                    kept[key].copy_(value)
                else:
                    kept[key] = value.clone()
            step()
            p.copy_(leaf)
            for key, value in entry.items():
                value.copy_(kept[key])
