"""The rule of each claim: claim id -> what is measured, the effect, and the verdict (:data:`RULES`).

Minimum effects, fixed before any run (the earlier comparison's): 1 percentage point of dead
units, 0.5 point of test accuracy, 0.1 in log10 of a gradient norm (a factor of 1.26), 0.01 in
mean training cross-entropy, and 5% of step time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import _spec as S
from .claims import (CONTRADICTS, FACT, PREMISES, SUPPORTS, UNDECIDED, Finding, Premise, Runs, _cost_key,
                     _mean_param, _pct, _stat, arm_label_of, auc_loss, grad_norm0, log_ratio,
                     vanishing_share, weigh)
from .statistics import Stat, _value

__all__ = ["RULES", "findings", "kink_facts", "MIN_DEAD", "MIN_ACC", "MIN_LOG10", "MIN_LOSS", "MIN_TIME"]

MIN_DEAD, MIN_ACC, MIN_LOG10, MIN_LOSS = 0.01, 0.005, 0.1, 0.01
MIN_TIME = math.log10(1.05)


def _final_acc(r: dict[str, Any]) -> Any:
    return r["history"]["test_acc"][-1]


def _dead_end(r: dict[str, Any]) -> Any:
    return r["history"]["dead"][-1]


def _paired(g: Runs, arm: str, base: str, fn: Callable[[dict[str, Any]], Any], scale: float = 1.0) -> str:
    """Per-seed differences ``fn(arm) - fn(base)`` (the arms start from the same weights for a seed):
    a note beside the verdict, which stays with the unpaired rule."""
    other = {r["seed"]: r for r in g.get(base, [])}
    d = [scale * (_value(fn(r)) - _value(fn(other[r["seed"]]))) for r in g.get(arm, []) if r["seed"] in other]
    d = [x for x in d if not math.isnan(x)]
    if len(d) < 2:
        return ""
    return (f"; per seed (same starting weights) the difference ranges from {min(d):+.3g} to {max(d):+.3g}, "
            f"mean {sum(d) / len(d):+.3g}")


def _row(claim: str, act: str, exp: str, measured: str, a: Stat, b: Stat | None, min_effect: float,
         unit: str, direction: int = 1, aspect: str = "") -> Finding:
    v, d, lo, hi, why = weigh(a, b, min_effect, direction)
    return Finding(claim, act, aspect, exp, measured, v, why, d, lo, hi, unit)


# ----------------------------------------------------------------------- vanishing


def _vanishing(claim: str, act: str, arm: str) -> Callable[[Runs, dict[str, Any]], list[Finding]]:
    def rule(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
        if arm not in g or "relu" not in g:
            return []
        a, r = _stat(g[arm], log_ratio), _stat(g["relu"], log_ratio)
        va = _stat(g[arm], vanishing_share)
        measured = (f"log10(first/last layer gradient norm), median over steps: {arm_label_of('vanishing', arm)} "
                    f"{a.fmt(1, 2)} vs ReLU {r.fmt(1, 2)}; steps flagged vanishing: {_pct(va)} vs ReLU "
                    f"{_pct(_stat(g['relu'], vanishing_share))}" + _paired(g, arm, "relu", log_ratio))
        return [_row(claim, act, "vanishing", measured, a, r, MIN_LOG10, "decades")]
    return rule


def _relu_vanishing(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    if "relu" not in g or "sigmoid" not in g:
        return []
    r, s = _stat(g["relu"], log_ratio), _stat(g["sigmoid"], log_ratio)
    measured = (f"log10(first/last layer gradient norm), median over steps: ReLU {r.fmt(1, 2)} vs sigmoid "
                f"{s.fmt(1, 2)} (ReLU's still vanishes in this deep network, as the premise requires)")
    return [_row("relu-vanishing", "relu", "vanishing", measured, r, s, MIN_LOG10, "decades",
                 aspect="against sigmoid")]


# ----------------------------------------------------------------------- dying


def _dying(claim: str, act: str, arm: str) -> Callable[[Runs, dict[str, Any]], list[Finding]]:
    def rule(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
        if arm not in g or "relu" not in g:
            return []
        a, r = _stat(g[arm], _dead_end), _stat(g["relu"], _dead_end)
        ina = _stat(g[arm], lambda x: x["history"]["inactive"][-1])
        measured = (f"dead units at the end: {arm_label_of('dying', arm)} {_pct(a)} vs ReLU {_pct(r)} "
                    f"(units never positive: {_pct(ina)})")
        aspect = f"b = {g[arm][0]['spec']['value']:g}" if claim == "frelu-dying-b" else ""
        return [_row(claim, act, "dying", measured, r, a, MIN_DEAD, "pp", aspect=aspect)]
    return rule


def _frelu_dying_b(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    return [f for arm in ("frelu-bm1", "frelu-b1")
            for f in _dying("frelu-dying-b", "flexible_relu", arm)(g, ctx)]


def _relu_dying(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    if "relu" not in g:
        return []
    end = _stat(g["relu"], _dead_end)
    start = _stat(g["relu"], lambda r: r["history"]["dead"][0])
    measured = f"ReLU units dead: {_pct(start)} at the start, {_pct(end)} at the end"
    return [_row("relu-dying", "relu", "dying", measured, end, None, MIN_DEAD, "pp",
                 aspect="dead at the end")]


def _max_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    """The largest |difference| between two runs' recorded numbers (dead, losses, accuracies, norms)."""
    worst = 0.0
    for k in ("dead", "inactive", "test_acc", "test_loss", "train_loss", "grad_norms"):
        xa, xb = a["history"][k], b["history"][k]
        flat_a = [v for row in xa for v in row] if k == "grad_norms" else xa
        flat_b = [v for row in xb for v in row] if k == "grad_norms" else xb
        if len(flat_a) != len(flat_b):
            return math.inf
        for u, v in zip(flat_a, flat_b):
            if u is None and v is None:
                continue
            fu, fv = _value(u), _value(v)
            worst = max(worst, abs(fu - fv) if not (math.isnan(fu) or math.isnan(fv)) else math.inf)
    return worst


def _frelu_b0(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    if "frelu-b0" not in g:
        return []
    a = _stat(g["frelu-b0"], _dead_end)
    f = _row("frelu-dying-b0", "flexible_relu", "dying", "", a, None, MIN_DEAD, "pp",
             aspect="dead at the end")
    relu = {r["seed"]: r for r in g.get("relu", [])}
    pairs = [(r, relu[r["seed"]]) for r in g["frelu-b0"] if r["seed"] in relu]
    diff = max((_max_difference(x, y) for x, y in pairs), default=math.nan)
    f.measured = (f"FReLU (b = 0, held) units dead at the end: {_pct(a)}; against ReLU with the same "
                  f"seed ({len(pairs)} pairs), the largest difference in any recorded number (dead and "
                  f"never-positive fractions, losses, accuracies, gradient norms) is {diff:.3g}")
    if pairs and diff != 0.0 and f.verdict == SUPPORTS:
        f.verdict, f.reason = UNDECIDED, f"dead units as claimed, but not equal to ReLU (largest difference {diff:.3g})"
    elif pairs and diff == 0.0:
        f.reason += "; b = 0 makes it ReLU: measured equal to ReLU in every paired run"
    return [f]


# ----------------------------------------------------------------------- exploding


def _exploding(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    from ..compare.experiments import EXPERIMENTS

    exp = next(e for e in EXPERIMENTS if e.name == "exploding")
    arms = [a for a in exp.arms if a.name in g]
    if len(arms) < 2:
        return []
    lo_arm, hi_arm = arms[0], arms[-1]
    means = ", ".join(f"b = {a.value:g}: {_stat(g[a.name], grad_norm0).fmt(1, 2)}" for a in arms)
    a_hi, a_lo = _stat(g[hi_arm.name], grad_norm0), _stat(g[lo_arm.name], grad_norm0)
    size = _row("frelu-exploding", "flexible_relu", "exploding",
                f"log10 of the whole model's gradient norm at the first step: {means}", a_hi, a_lo,
                MIN_LOG10, "decades", aspect=f"gradient size, b = {hi_arm.value:g} vs {lo_arm.value:g}")

    def rel(r: dict[str, Any]) -> float:
        return grad_norm0(r, 0) - grad_norm0(r, -1)

    rels = ", ".join(f"b = {a.value:g}: {_stat(g[a.name], rel).fmt(1, 2)}" for a in arms)
    firsts = ", ".join(f"b = {a.value:g}: {_stat(g[a.name], lambda r: grad_norm0(r, 0)).fmt(1, 2)}" for a in arms)
    toward = _row("frelu-exploding", "flexible_relu", "exploding",
                  f"log10(first/last layer gradient norm) at the first step: {rels}; log10 of the first "
                  f"layer's gradient norm: {firsts}", _stat(g[hi_arm.name], rel), _stat(g[lo_arm.name], rel),
                  MIN_LOG10, "decades", aspect="growth toward the input (the exploding-gradient problem)")
    return [size, toward]


# ----------------------------------------------------------------------- learnable


def _learnable(claim: str, act: str, learned: str, fixed: str) -> Callable[[Runs, dict[str, Any]], list[Finding]]:
    def rule(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
        if learned not in g or fixed not in g:
            return []
        ll, lf = arm_label_of("learnable", learned), arm_label_of("learnable", fixed)
        a, b = _stat(g[learned], _final_acc), _stat(g[fixed], _final_acc)
        p0, p1 = _stat(g[learned], lambda r: _mean_param(r, 0)), _stat(g[learned], lambda r: _mean_param(r, -1))
        acc = _row(claim, act, "learnable", f"test accuracy at the end: {ll} {_pct(a)} vs {lf} {_pct(b)}; "
                   f"the parameter (mean over layers) went from {p0.fmt(1, 3)} to {p1.fmt(1, 3)}"
                   + _paired(g, learned, fixed, _final_acc, 100).replace("difference", "difference (pp)"),
                   a, b, MIN_ACC, "pp", aspect="accuracy")
        ca, cb = _stat(g[learned], auc_loss), _stat(g[fixed], auc_loss)
        conv = _row(claim, act, "learnable", f"mean training loss over the epochs (area under the loss "
                    f"curve): {ll} {ca.fmt(1, 3)} vs {lf} {cb.fmt(1, 3)}" + _paired(g, learned, fixed, auc_loss),
                    ca, cb, MIN_LOSS, "loss",
                    direction=-1, aspect="convergence")
        return [acc, conv]
    return rule


# ----------------------------------------------------------------------- funnel


def _funnel_acc(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    out = []
    if "funnel_relu" not in g:
        return out
    fa = _stat(g["funnel_relu"], _final_acc)
    for base in ("relu", "prelu"):
        if base not in g:
            continue
        ba = _stat(g[base], _final_acc)
        out.append(_row("funnel-acc", "funnel_relu", "funnel",
                        f"test accuracy at the end: Funnel {_pct(fa)} vs {arm_label_of('funnel', base)} {_pct(ba)}",
                        fa, ba, MIN_ACC, "pp", aspect=f"vs {S.DESCRIPTIONS[base].label}"))
    return out


def _funnel_cost(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    timing = ctx.get("step_timing") or {}
    key = _cost_key(timing)
    if key is None or "funnel_relu" not in timing["ms"][key] or "relu" not in timing["ms"][key]:
        return []
    fun, rel = timing["ms"][key]["funnel_relu"], timing["ms"][key]["relu"]
    ratios = Stat([math.log10(a / b) for a, b in zip(fun, rel) if a > 0 and b > 0])
    params = timing.get("params", {}).get(key, {})
    saved = timing.get("saved_bytes", {}).get(key, {})
    extra = params.get("funnel_relu", 0) - params.get("relu", 0)
    sb = saved.get("funnel_relu", 0) / saved["relu"] if saved.get("relu") else math.nan
    measured = (f"{key}: parameters {params.get('relu', '?')} with ReLU, {params.get('funnel_relu', '?')} with "
                f"Funnel (+{extra}); bytes kept for backward x{sb:.2f}; step time, per round Funnel / ReLU "
                f"(log10 {ratios.fmt(1, 3)}, {ratios.n} rounds)")
    f = _row("funnel-cost", "funnel_relu", "cost", measured, ratios, None, MIN_TIME, "x",
             aspect="step time")
    if f.verdict == SUPPORTS and extra <= 0:
        f.verdict, f.reason = UNDECIDED, "slower, but with no extra parameters"
    return [f]


# ----------------------------------------------------------------------- the kink (a fact)


def kink_facts() -> list[dict[str, Any]]:
    """Each activation's derivative from the left and from the right of 0, and autograd's value there.

    float64, the library's modules with their defaults; difference quotients with h = 2**-20
    (exact for these piecewise-linear functions). The funnel is taken with its condition held at
    T(x) = 0 (depthwise weight 0, BatchNorm in eval mode with its initial statistics), so that its
    kink, x = T(x), is at 0.
    """
    import torch

    from ..registry import default_module

    out = []
    h = 2.0 ** -20
    for d in S.DESCRIPTIONS.values():
        if d.claim("nondiff") is None:
            continue
        m = default_module(d.name, 1 if d.channels else None).double()
        if d.channels:
            with torch.no_grad():
                for p in m.parameters():
                    if p.dim() > 1:
                        p.zero_()
            m.eval()

        def f(x: torch.Tensor, m: torch.nn.Module = m, spatial: bool = d.channels) -> torch.Tensor:
            if spatial:
                return m(x.reshape(1, 1, 1, 1)).reshape(())
            return m(x.reshape(1, 1)).reshape(())

        zero = torch.zeros((), dtype=torch.float64)
        with torch.no_grad():
            f0 = float(f(zero))
            left = (f0 - float(f(zero - h))) / h
            right = (float(f(zero + h)) - f0) / h
        x = zero.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x), x)
        out.append({"activation": d.name, "left": left, "right": right, "autograd": float(g)})
    return out


def _nondiff(g: Runs, ctx: dict[str, Any]) -> list[Finding]:
    out = []
    for k in ctx.get("kink") or kink_facts():
        differ = k["left"] != k["right"]
        out.append(Finding(
            "nondiff", k["activation"], "", "kink",
            f"f'(0-) = {k['left']:g}, f'(0+) = {k['right']:g}; autograd uses {k['autograd']:g} at 0",
            FACT if differ else CONTRADICTS,
            "computed by the library: the one-sided derivatives " + ("differ, so there is no derivative at 0"
                                                                     if differ else "agree"),
            effect_text=f"f'(0-) = {k['left']:g}, f'(0+) = {k['right']:g}, autograd {k['autograd']:g}"))
    return out


#: Claim id -> its rule, a function of (the runs of its experiment by arm, context) -> findings.
RULES: dict[str, Callable[[Runs, dict[str, Any]], list[Finding]]] = {
    "relu-vanishing": _relu_vanishing,
    "leaky-vanishing": _vanishing("leaky-vanishing", "leaky_relu", "leaky_relu"),
    "prelu-vanishing": _vanishing("prelu-vanishing", "prelu", "prelu"),
    "frelu-vanishing": _vanishing("frelu-vanishing", "flexible_relu", "flexible_relu"),
    "relu-dying": _relu_dying,
    "leaky-dying": _dying("leaky-dying", "leaky_relu", "leaky_relu"),
    "prelu-dying": _dying("prelu-dying", "prelu", "prelu"),
    "frelu-dying-b": _frelu_dying_b,
    "frelu-dying-b0": _frelu_b0,
    "frelu-exploding": _exploding,
    "prelu-learnable": _learnable("prelu-learnable", "prelu", "prelu", "leaky-a0.25"),
    "frelu-learnable": _learnable("frelu-learnable", "flexible_relu", "frelu-b0", "relu"),
    "funnel-acc": _funnel_acc,
    "funnel-cost": _funnel_cost,
    "nondiff": _nondiff,
}


def findings(groups: dict[str, Runs], claims: list[str], ctx: dict[str, Any]) -> tuple[list[Finding], dict[str, Premise]]:
    """Weigh ``claims`` (all claim ids when empty): ``(findings, premises by experiment)``.

    A claim whose experiment's premise failed gets "cannot decide" with the failed check; a
    premise check that is itself only about one arm (FReLU's b) holds back only that arm's claim.
    """
    from ..compare.experiments import EXPERIMENTS, experiment_of

    order = {e.name: i for i, e in enumerate(EXPERIMENTS)}
    ids = sorted((c for c in S.claim_ids() if not claims or c in claims),
                 key=lambda c: order[experiment_of(c).name])
    premises: dict[str, Premise] = {}
    out: list[Finding] = []
    for cid in ids:
        exp = experiment_of(cid)
        g = groups.get(exp.name, {})
        if exp.name not in premises:
            premises[exp.name] = PREMISES[exp.name](g, ctx)
        p = premises[exp.name]
        for f in RULES[cid](g, ctx):
            failed = [c for c in p.checks if not c[1] and _applies(c[0], cid)]
            if failed and f.verdict != FACT:
                f.reason = "premise not met: " + "; ".join(f"{w} ({got})" for w, _, got in failed)
                f.verdict = UNDECIDED
            out.append(f)
    return out, premises


def _applies(check: str, claim: str) -> bool:
    """Whether a premise check holds back ``claim``: checks about one FReLU arm hold back its claim only."""
    if check.startswith("FReLU (b = -1") or check.startswith("FReLU (b = 1"):
        return claim == "frelu-dying-b"
    if check.startswith("FReLU (b = 0"):
        return claim == "frelu-dying-b0"
    if check.startswith("PReLU"):
        return claim == "prelu-learnable"
    if check.startswith("FReLU (b from"):
        return claim == "frelu-learnable"
    return True

