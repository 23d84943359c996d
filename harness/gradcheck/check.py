"""``python compare.py grads``: is a hand-derived gradient right, and of which loss?

Every source's gradient of the MSE is compared, element by element, with a 50-digit
mpmath oracle (``harness.gradcheck.oracle``) at several points: the initial weights, points
along the default training, and points with saturated sigmoids.

Tolerances, and why
-------------------
A float gradient is a few sums of products, so its rounding error is bounded by a
small multiple of u (the dtype's machine epsilon) times S, the sum over its terms of
|term| × (1 + the relative conditions of the term's factors), which the oracle computes
beside the gradient (see ``harness.gradcheck.oracle``: σ'(z) = a(1 − a) near saturation and the
error a − y near a fit are the ill-conditioned factors). Computed sources must meet

    |g − oracle| ≤ K_GRADIENT·u·S per element,  K_GRADIENT = 4

The measured margins are in docs/gradients.md.

Central differences, (L(θ + h) − L(θ − h)) / 2h, err by truncation ~h²·|L‴| and by
cancellation ~δL/h, δL the loss's rounding error; h = u^(1/3)·max(1, |θ|) balances the
two (6.1e-6·max(1, |θ|) in float64, 4.9e-3 in float32). They are judged against their
own error estimate, E = |fd(2h) − fd(h)| / 3 (truncation, which goes as h²) +
2·u·(the oracle's loss scale) / (2h) (cancellation):

    |g_fd − oracle| ≤ K_FD·E,  K_FD = 4

(measured margins: docs/gradients.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import mpmath
import numpy as np

from harness.engine.rows import ROWS
from harness.gradcheck import oracle
from reference.spec import GRAD_SCALE, PARAM_NAMES, Config, initial_params, param_shapes, unflatten_params, xor_data

K_GRADIENT = 4.0
K_FD = 4.0
SATURATION_FACTORS = (8.0, 25.0)
TAYLOR_STEPS = tuple(10.0**-k for k in np.linspace(2, 5, 7))
CONVENTIONS = {  # name -> its gradient divided by the MSE's gradient
    "mean squared error": 1.0,
    "½·Σ(ŷ − y)²": GRAD_SCALE["half-sse"],
    "Σ(ŷ − y)²": 2 * GRAD_SCALE["half-sse"],
}


@dataclass
class Point:
    label: str
    params: dict  # float64 arrays
    saturated: bool = False


def check_points(cfg: Config, n_points: int) -> list[Point]:
    """The initial weights, ``n_points`` points spread along the numpy row's training,
    and the initial weights scaled until the sigmoids saturate."""
    from backends import numpy_backend

    p0 = initial_params(cfg.seed, cfg.hidden)
    points = [Point(f"initial weights (seed {cfg.seed})", p0)]
    if n_points:
        every = max(1, cfg.epochs // n_points)
        run = replace(cfg, dtype="float64")
        _, history = numpy_backend.train(run, p0, every=every)
        epochs = np.arange(every, cfg.epochs + 1, every)
        if epochs[-1] != cfg.epochs:
            epochs = np.append(epochs, cfg.epochs)
        for i, epoch in enumerate(epochs[:n_points]):
            index = i + 1 if epoch != cfg.epochs else len(history) - 1
            points.append(Point(f"after epoch {epoch}", unflatten_params(history[index], cfg.hidden)))
    for factor in SATURATION_FACTORS:
        points.append(Point(f"initial weights × {factor:g} (saturated)", {k: factor * v for k, v in p0.items()}, True))
    return points


def rounded(params: dict, dtype: str) -> dict:
    """The point as the dtype holds it; the oracle is evaluated there too."""
    return {k: np.asarray(v, dtype=dtype) for k, v in params.items()}


# --- the sources ---------------------------------------------------------------------------


def hand_source(convention: str = "mse"):
    from backends import numpy_backend

    def gradient(params, dtype):
        X, y = xor_data(dtype)
        return numpy_backend.loss_and_grads(rounded(params, dtype), X, y, convention)[1]

    return gradient


def function_source(fn):
    """A hand gradient given as fn(params, X, y) -> (loss, grads), e.g. a canary."""

    def gradient(params, dtype):
        X, y = xor_data(dtype)
        return fn(rounded(params, dtype), X, y)[1]

    return gradient


def backend_source(name: str):
    from harness.engine.rows import load_backend

    module = load_backend(name)

    def gradient(params, dtype):
        X, y = (module.to_backend(a) for a in xor_data(dtype))
        _, grads = module.loss_and_grads({k: module.to_backend(v, dtype) for k, v in params.items()}, X, y)
        return {k: module.to_numpy(v) for k, v in grads.items()}

    return gradient


def fd_step(theta, dtype: str):
    return np.finfo(dtype).eps ** (1 / 3) * np.maximum(1.0, np.abs(theta))


def _central_differences(params, dtype: str, factor: float = 1.0):
    """Central differences of the MSE in ``dtype`` with steps ``factor``·h, one parameter
    at a time; the step as rounded, (θ + h) − (θ − h), is the divisor. Returns the
    gradient and the steps."""
    from backends import numpy_backend

    X, y = xor_data(dtype)
    base = rounded(params, dtype)

    def loss(p):
        return numpy_backend.mse(numpy_backend.forward(p, X)["A2"], y)

    grads, steps = {}, {}
    for k in PARAM_NAMES:
        g = np.empty_like(base[k])
        step = np.empty(base[k].shape)
        for index in np.ndindex(base[k].shape):
            h = (factor * fd_step(base[k][index], dtype)).astype(dtype)
            up, down = dict(base), dict(base)
            up[k], down[k] = base[k].copy(), base[k].copy()
            up[k][index] += h
            down[k][index] -= h
            step[index] = float(up[k][index] - down[k][index])
            g[index] = (loss(up) - loss(down)) / (up[k][index] - down[k][index])
        grads[k], steps[k] = g, step
    return grads, steps


def finite_differences(params, dtype: str) -> dict:
    return _central_differences(params, dtype)[0]


def finite_difference_error_estimate(params, dtype: str, truth: OracleValues) -> dict:
    """Error bound of ``finite_differences``, from its own numbers: truncation error is
    ~c·h², so |fd(2h) − fd(h)| ≈ 3× it; cancellation is the loss's rounding error
    (≈ u × the oracle's loss scale) on each side, divided by the step."""
    fine, steps = _central_differences(params, dtype)
    coarse, _ = _central_differences(params, dtype, factor=2.0)
    noise = 2 * float(np.finfo(dtype).eps) * truth.loss_size
    return {k: np.abs(coarse[k].astype(np.float64) - fine[k]) / 3 + noise / steps[k] for k in PARAM_NAMES}


# --- comparison with the oracle ----------------------------------------------------------------


@dataclass
class OracleValues:
    loss: float
    grad: dict  # mpf nested lists
    size: dict  # float64 arrays: S per element
    loss_size: float  # scale of the loss's rounding error


def oracle_at(params: dict) -> OracleValues:
    loss, grad, size, loss_size = oracle.loss_and_grads(params)
    return OracleValues(float(loss), grad, {k: oracle.to_array(v) for k, v in size.items()}, float(loss_size))


def tensor_errors(g: np.ndarray, truth, dtype: str):
    """|g − truth| per element (taken in high precision) and in ULPs of the dtype at the truth."""
    truth_array = oracle.to_array(truth)
    with mpmath.workdps(oracle.DIGITS):
        err = np.array(
            [
                [float(abs(mpmath.mpf(float(g[i, j])) - truth[i][j])) for j in range(g.shape[1])]
                for i in range(g.shape[0])
            ]
        )
    ulp = np.spacing(np.abs(truth_array.astype(dtype))).astype(np.float64)
    ulp = np.where(ulp > 0, ulp, np.finfo(dtype).smallest_subnormal)
    return err, err / ulp, truth_array


def allowed_errors(source: str, dtype: str, point_params: dict, truth: OracleValues) -> dict:
    """The allowed |g − oracle| per element of every tensor (module doc)."""
    if source == "finite differences":
        estimate = finite_difference_error_estimate(point_params, dtype, truth)
        return {k: K_FD * estimate[k] for k in PARAM_NAMES}
    return {k: K_GRADIENT * float(np.finfo(dtype).eps) * truth.size[k] for k in PARAM_NAMES}


def judge(source: str, grads: dict, truth: OracleValues, point_params: dict, dtype: str, hidden: int) -> dict:
    """Per tensor: shape check, largest relative error, ULPs, error/allowed, passed."""
    out = {}
    allowed_by_tensor = allowed_errors(source, dtype, point_params, truth)
    for k, shape in param_shapes(hidden).items():
        g = np.asarray(grads[k])
        if g.shape != shape:
            out[k] = {
                "passed": False,
                "problem": f"{k}: gradient has shape {g.shape}, parameter has shape {shape}",
                "max_rel_error_vs_oracle": None,
                "max_ulp_vs_oracle": None,
                "max_error_over_allowed": None,
            }
            continue
        err, ulps, truth_array = tensor_errors(g, truth.grad[k], dtype)
        allowed = allowed_by_tensor[k]
        scale = np.abs(truth_array).max()
        ratio = np.where(allowed > 0, err / np.where(allowed > 0, allowed, 1), np.where(err > 0, np.inf, 0.0))
        out[k] = {
            "max_rel_error_vs_oracle": float(err.max() / scale) if scale > 0 else (0.0 if err.max() == 0 else np.inf),
            "max_ulp_vs_oracle": float(ulps.max()),
            "max_error_over_allowed": float(ratio.max()),
            "passed": bool(np.all(np.isfinite(g)) and ratio.max() <= 1.0),
        }
    return out


# --- Taylor test -------------------------------------------------------------------------------

TAYLOR_RESOLUTION = 1e-4


def taylor_resolvable(truth: OracleValues, dtype: str) -> float:
    """The relative error a correct float gradient may have at this point (K·u·S over
    the gradient's size). Where it exceeds TAYLOR_RESOLUTION the gradient's rounding,
    not its formula, decides the remainder, and the Taylor test cannot judge."""
    allowed = max(float(K_GRADIENT * np.finfo(dtype).eps * truth.size[k].max()) for k in PARAM_NAMES)
    scale = max(float(np.abs(oracle.to_array(truth.grad[k])).max()) for k in PARAM_NAMES)
    return allowed / scale if scale > 0 else np.inf


def taylor_order(params: dict, grads: dict, seed: int = 0) -> dict:
    """Fit r(h) = |L(θ + h·d) − L(θ) − h·⟨g, d⟩| ~ h^order over small h, in the oracle's
    precision, along a random unit direction d. A right gradient gives order 2, a wrong
    one order 1."""
    rng = np.random.default_rng(seed)
    direction = {k: rng.standard_normal(np.shape(params[k])) for k in PARAM_NAMES}
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in direction.values()))
    direction = {k: d / norm for k, d in direction.items()}
    with mpmath.workdps(oracle.DIGITS):
        slope = mpmath.fsum(
            mpmath.mpf(float(a)) * mpmath.mpf(float(b))
            for k in PARAM_NAMES
            for a, b in zip(np.ravel(grads[k]), np.ravel(direction[k]), strict=True)
        )
        base = oracle.mse(params)
        remainders = [abs(oracle.mse(params, direction=direction, step=h) - base - h * slope) for h in TAYLOR_STEPS]
    logs = np.log10([float(r) if r > 0 else 1e-300 for r in remainders])
    order = float(np.polyfit(np.log10(TAYLOR_STEPS), logs, 1)[0])
    return {
        "order": order,
        "steps": list(TAYLOR_STEPS),
        "remainders": [float(r) for r in remainders],
        "passed": bool(abs(order - 2.0) < 0.25),
    }


# --- which loss is it the gradient of? ---------------------------------------------------------


def loss_convention(hand_by_point: list, truths: list, dtype: str, hidden: int) -> dict:
    """The convention (MSE, ½·SSE, SSE) whose exact gradient the hand gradient is, at
    every point, to the rounding rule; or none."""
    matches = []
    for name, factor in CONVENTIONS.items():
        ok = True
        for grads, truth in zip(hand_by_point, truths, strict=True):
            for k in PARAM_NAMES:
                g = np.asarray(grads[k])
                if g.shape != param_shapes(hidden)[k]:
                    ok = False
                    break
                with mpmath.workdps(oracle.DIGITS):
                    err = np.array(
                        [
                            [
                                float(abs(mpmath.mpf(float(g[i, j])) - factor * truth.grad[k][i][j]))
                                for j in range(g.shape[1])
                            ]
                            for i in range(g.shape[0])
                        ]
                    )
                if np.any(err > factor * K_GRADIENT * float(np.finfo(dtype).eps) * truth.size[k]):
                    ok = False
                    break
            if not ok:
                break
        if ok:
            matches.append((name, factor))
    if not matches:
        return {
            "convention": None,
            "scale_vs_mse": None,
            "statement": "not the exact gradient of the MSE, of ½·Σ(ŷ − y)² or of Σ(ŷ − y)²",
        }
    name, factor = matches[0]
    if factor == 1.0:
        statement = "the exact gradient of the mean squared error, the loss the run logs"
    else:
        statement = f"the exact gradient of {name}, {factor:g}× the gradient of the mean squared error the run logs"
    return {"convention": name, "scale_vs_mse": factor, "statement": statement}


# --- the whole check ---------------------------------------------------------------------------

# the rows whose records say the gradient check takes their gradient (jax, torch)
AUTODIFF_SOURCES = tuple(name for name, row in ROWS.items() if row.gradcheck)


def available_sources(hand_fn, hand_only: bool = False) -> tuple[dict, dict]:
    """Source name -> gradient(params, dtype); and skipped source -> reason."""
    from harness.engine.rows import unavailable_reason

    sources: dict = {"hand": hand_fn}
    skipped: dict[str, str] = {}
    if hand_only:
        return sources, skipped
    for name in AUTODIFF_SOURCES:
        reason = unavailable_reason(name)
        if reason:
            skipped[name] = reason
        else:
            sources[name] = backend_source(name)
    sources["finite differences"] = finite_differences
    return sources, skipped


def run_check(cfg: Config, n_points: int, hand_fn, hand_label: str, hand_only: bool = False) -> dict:
    """Every source at every point against the oracle; the Taylor test and the loss
    convention of the hand gradient."""
    started = time.perf_counter()
    points = check_points(cfg, n_points)
    sources, skipped = available_sources(hand_fn, hand_only)
    dtype = cfg.dtype
    result: dict = {
        "config": cfg.to_dict(),
        "hand": hand_label,
        "points": [p.label for p in points],
        "skipped": skipped,
        "sources": {},
        "taylor": [],
        "per_point": [],
    }
    truths: list = []
    hand_by_point: list = []
    autodiff_gaps: dict[str, dict] = {}
    per_source: dict[str, dict[str, list]] = {name: {k: [] for k in PARAM_NAMES} for name in sources}
    with np.errstate(over="ignore"):  # exp(−z) overflows to inf at saturated points: σ = 0, as it should
        for point in points:
            at = {k: v.astype(np.float64) for k, v in rounded(point.params, dtype).items()}
            truth = oracle_at(at)
            truths.append(truth)
            verdicts, computed = {}, {}
            kind = "saturated" if point.saturated else "regular"
            for name, gradient in sources.items():
                computed[name] = gradient(at, dtype)
                verdicts[name] = judge(name, computed[name], truth, at, dtype, cfg.hidden)
                for k in PARAM_NAMES:
                    per_source[name][k].append((kind, verdicts[name][k]))
            hand_by_point.append(computed["hand"])
            for name in AUTODIFF_SOURCES:
                if name in computed:
                    gap = relative_difference(computed["hand"], computed[name])
                    gaps = autodiff_gaps.setdefault(name, {})
                    gaps[kind] = max(gaps.get(kind, 0.0), gap)
            result["per_point"].append({"point": point.label, "oracle_loss": truth.loss, "sources": verdicts})
            # The Taylor test checks the formula, so the hand gradient is taken in float64
            # here whatever the dtype; the comparison above judged its float32 rounding.
            hand64 = computed["hand"] if dtype == "float64" else hand_fn(at, "float64")
            taylor = taylor_order(at, hand64, cfg.seed)
            taylor["possible_rel_error"] = taylor_resolvable(truth, "float64")
            taylor["judged"] = taylor["possible_rel_error"] <= TAYLOR_RESOLUTION
            taylor["passed"] = taylor["passed"] or not taylor["judged"]
            result["taylor"].append({"point": point.label, **taylor})
        for name, tensors in per_source.items():
            result["sources"][name] = {k: _summary(v) for k, v in tensors.items()}
        result["hand_vs_autodiff_max_rel_diff"] = autodiff_gaps
        result["loss_convention"] = loss_convention(hand_by_point, truths, dtype, cfg.hidden)
        result["closest_to_oracle"] = closest_source(result["sources"])
        if dtype == "float32" and not hand_only:
            result["float64_comparison"] = float64_comparison(points, sources, cfg.hidden)
    result["passed"] = bool(
        all(t["passed"] for src in result["sources"].values() for t in src.values())
        and all(t["passed"] for t in result["taylor"])
    )
    result["seconds"] = time.perf_counter() - started
    return result


def relative_difference(a: dict, b: dict) -> float:
    """Largest |a − b| over a tensor divided by the tensor's largest |b|, worst tensor."""
    worst = 0.0
    for k in PARAM_NAMES:
        x, z = np.asarray(a[k], dtype=np.float64), np.asarray(b[k], dtype=np.float64)
        if x.shape != z.shape:
            return np.inf
        scale = np.abs(z).max()
        worst = max(worst, float(np.abs(x - z).max() / scale) if scale > 0 else float(np.abs(x).max() > 0) * np.inf)
    return worst


SUMMARY_KEYS = ("max_rel_error_vs_oracle", "max_ulp_vs_oracle", "max_error_over_allowed")


def _worst(verdicts: list) -> dict:
    def worst(key):
        values = [v[key] for v in verdicts if v[key] is not None]
        return max(values) if values else None

    out = {key: worst(key) for key in SUMMARY_KEYS}
    out["passed"] = all(v["passed"] for v in verdicts)
    problems = [v["problem"] for v in verdicts if v.get("problem")]
    if problems:
        out["problem"] = problems[0]
    return out


def _summary(kinds_and_verdicts: list) -> dict:
    """Worst over all points, and apart for regular and saturated points."""
    out = _worst([v for _, v in kinds_and_verdicts])
    out["by_point_kind"] = {
        kind: _worst([v for k, v in kinds_and_verdicts if k == kind])
        for kind in ("regular", "saturated")
        if any(k == kind for k, _ in kinds_and_verdicts)
    }
    return out


def closest_source(sources: dict) -> list:
    """The sources with the smallest worst relative error at the regular points
    (several when they tie)."""
    scores = {}
    for name, tensors in sources.items():
        errors = [t["by_point_kind"].get("regular", t)["max_rel_error_vs_oracle"] for t in tensors.values()]
        if all(e is not None for e in errors):
            scores[name] = max(errors)
    if not scores:
        return []
    best = min(scores.values())
    return [name for name, score in scores.items() if score == best]


def float64_comparison(points: list, sources: dict, hidden: int) -> dict:
    """At the float32-rounded regular points: how much closer to the oracle each
    source's float64 computation is than its float32 one (ratio of worst relative errors)."""
    ratios = {}
    for name, gradient in sources.items():
        worst = {"float32": 0.0, "float64": 0.0}
        for point in (p for p in points if not p.saturated):  # saturated: both are 100% off
            at = {k: v.astype(np.float64) for k, v in rounded(point.params, "float32").items()}
            truth = oracle_at(at)
            for dtype in worst:
                verdict = judge(name, gradient(at, dtype), truth, at, dtype, hidden)
                worst[dtype] = max([worst[dtype]] + [t["max_rel_error_vs_oracle"] or 0.0 for t in verdict.values()])
        ratios[name] = {
            "float32_max_rel_error": worst["float32"],
            "float64_max_rel_error": worst["float64"],
            "float64_closer_by": worst["float32"] / worst["float64"] if worst["float64"] > 0 else None,
        }
    return ratios


def run_canaries(cfg: Config, n_points: int) -> dict:
    """Each canary as the hand gradient: caught where, and does the true gradient pass?"""
    from harness.engine.canaries import CANARIES, canary_gradient

    started = time.perf_counter()
    truth_run = run_check(cfg, n_points, hand_source("mse"), "hand backprop of the MSE", hand_only=True)
    canaries = {}
    for name in CANARIES:
        check = run_check(cfg, n_points, function_source(canary_gradient(name)), name, hand_only=True)
        failing = {k: t for k, t in check["sources"]["hand"].items() if not t["passed"]}
        orders = [t["order"] for t in check["taylor"] if t["judged"]]
        canaries[name] = {
            "caught": bool(failing) or not all(t["passed"] for t in check["taylor"]),
            "tensors": sorted(failing, key=PARAM_NAMES.index),
            "worst_error_over_allowed": max((t["max_error_over_allowed"] or 0.0) for t in failing.values())
            if failing
            else 0.0,
            "problems": sorted({t["problem"] for t in failing.values() if t.get("problem")}),
            "taylor_orders": orders,
            "loss_convention": check["loss_convention"],
        }
    caught = all(c["caught"] for c in canaries.values())
    return {
        "config": cfg.to_dict(),
        "points": truth_run["points"],
        "canaries": canaries,
        "true_gradient_passed": truth_run["passed"],
        "passed": bool(caught and truth_run["passed"]),
        "seconds": time.perf_counter() - started,
    }


# --- reports -----------------------------------------------------------------------------------
