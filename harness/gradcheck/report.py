"""The gradient check's reports: the table of every source at every point, and the canaries'."""

from __future__ import annotations

from harness.gradcheck import oracle
from harness.gradcheck.check import K_FD, K_GRADIENT, TAYLOR_STEPS


def _g(x, spec=".2e"):
    return "-" if x is None else format(x, spec)


def render_check(result: dict) -> str:
    cfg = result["config"]
    lines = [
        f"gradient check: XOR 2-{cfg['hidden']}-1, {cfg['dtype']}, seed {cfg['seed']}; hand gradient: {result['hand']}",
        f"{len(result['points'])} points: " + "; ".join(result["points"]),
        f"oracle: mpmath at {oracle.DIGITS} significant digits, hand formulas in scalar loops (no float code shared)",
        "",
        f"{'':<27} {'regular points':^23} {'saturated points':^23}",
        f"{'source':<20} {'tensor':<6} {'max rel err':>11} {'max ULPs':>11} {'max rel err':>11} {'max ULPs':>11} "
        f"{'err/allowed':>12}  result",
    ]
    for name, tensors in result["sources"].items():
        for k, t in tensors.items():
            kinds = t["by_point_kind"]
            cells = []
            for kind in ("regular", "saturated"):
                part = kinds.get(kind, {})
                cells += [_g(part.get("max_rel_error_vs_oracle")), _g(part.get("max_ulp_vs_oracle"), ".3g")]
            verdict = "ok" if t["passed"] else ("WRONG: " + t["problem"] if t.get("problem") else "WRONG")
            lines.append(
                f"{name:<20} {k:<6} {cells[0]:>11} {cells[1]:>11} {cells[2]:>11} {cells[3]:>11} "
                f"{_g(t['max_error_over_allowed'], '.3g'):>12}  {verdict}"
            )
    lines.append(
        f"allowed: computed sources |g − oracle| ≤ {K_GRADIENT:g}·u·S (S: the rounding scale the oracle "
        f"computes, large where σ' or y − ŷ cancel); finite differences ≤ {K_FD:g}× their own error estimate"
    )
    lines.append("")
    if result.get("closest_to_oracle"):
        lines.append("closest to the oracle at the regular points: " + " = ".join(result["closest_to_oracle"]))
    for name, gaps in result.get("hand_vs_autodiff_max_rel_diff", {}).items():
        lines.append(
            f"hand vs {name} autodiff, largest relative difference: "
            + ", ".join(f"{gap:.2e} at {kind} points" for kind, gap in gaps.items())
        )
    for name, c in result.get("float64_comparison", {}).items():
        closer = c["float64_closer_by"]
        lines.append(
            f"{name} at the regular points: worst relative error {c['float32_max_rel_error']:.2e} in float32, "
            f"{c['float64_max_rel_error']:.2e} in float64" + (f": float64 is {closer:.3g}× closer" if closer else "")
        )
    lines += _taylor_lines(result)
    lines += ["", f"the hand gradient is {result['loss_convention']['statement']}", ""]
    if result["passed"]:
        lines.append(
            f"every source agrees with the oracle at all {len(result['points'])} points ({result['seconds']:.1f} s)"
        )
    else:
        wrong = sorted({n for n, tensors in result["sources"].items() for t in tensors.values() if not t["passed"]})
        taylor = [t["point"] for t in result["taylor"] if not t["passed"]]
        lines.append(
            "disagreement: "
            + ", ".join(wrong + (["hand gradient fails the Taylor test"] if taylor else []))
            + f" ({result['seconds']:.1f} s)"
        )
    return "\n".join(lines)


def _taylor_lines(result: dict) -> list:
    lines = [
        "",
        "Taylor test of the hand gradient (its formula, evaluated in float64): "
        "r(h) = |L(θ + h·d) − L(θ) − h·⟨g, d⟩| must shrink as h² "
        f"(h = {TAYLOR_STEPS[0]:.0e} … {TAYLOR_STEPS[-1]:.0e}, L in oracle precision)",
    ]
    for t in result["taylor"]:
        if not t["judged"]:
            verdict = (
                f"not judged: a correct float gradient may be off by {t['possible_rel_error']:.1e} here, "
                "more than the remainder resolves"
            )
        else:
            verdict = "ok" if t["passed"] else "WRONG (a right gradient gives 2, a wrong one 1)"
        lines.append(f"  {t['point']:<40} fitted order {t['order']:5.2f}  {verdict}")
    return lines


def render_canaries(result: dict) -> str:
    lines = [
        f"canaries: wrong hand gradients the check must catch, at {len(result['points'])} points",
        "",
        f"{'canary':<42} {'caught':<7} where",
    ]
    for name, c in result["canaries"].items():
        where = []
        if c["problems"]:
            where += c["problems"]
        numeric = [k for k in c["tensors"] if not any(k in p for p in c["problems"])] if c["problems"] else c["tensors"]
        if numeric:
            where.append(f"{', '.join(numeric)} (up to {c['worst_error_over_allowed']:.2g}× the allowed error)")
        where.append(f"Taylor order {min(c['taylor_orders']):.2f}-{max(c['taylor_orders']):.2f}")
        lines.append(f"{name:<42} {'yes' if c['caught'] else 'NO':<7} " + "; ".join(where))
        if c["loss_convention"]["convention"]:
            lines.append(f"{'':<50} it is {c['loss_convention']['statement']}")
    lines += [
        "",
        f"true gradient: {'passes' if result['true_gradient_passed'] else 'FAILS'}",
        f"{sum(c['caught'] for c in result['canaries'].values())} of {len(result['canaries'])} canaries caught "
        f"({result['seconds']:.1f} s)",
    ]
    return "\n".join(lines)
