"""The claims weighed against their experiments: premise checks, effects with 95% intervals, verdicts.

Each experiment of :mod:`rectifiers.compare.experiments` has a premise check (:data:`PREMISES`:
experiment name -> function of its runs) and each claim id a rule (:data:`RULES`: claim id ->
function of the experiment's runs). A claim whose experiment's premise fails gets "cannot decide"
with the failed check as its reason.

The rule (:func:`weigh`): the effect ``d`` is oriented so that positive is what the claim
predicts; its 95% interval is ``d +- t * se`` with the two-sided Student-t value for the degrees of
freedom (``n_a + n_b - 2`` for two groups, as :func:`rectifiers.report.statistics.decide`, or
``n - 1`` for one group) and ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)``. "supports" when the interval
lies above 0 and ``d`` reaches the claim's minimum effect; "contradicts" when the whole interval
lies below the minimum effect (the predicted effect is absent, too small to matter, or reversed);
otherwise "cannot decide". With fewer than 2 values in a group there is no interval: "cannot
decide".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .statistics import Stat, _value, t_critical

__all__ = ["Finding", "Premise", "Runs", "weigh", "PREMISES", "SUPPORTS", "CONTRADICTS", "UNDECIDED",
           "FACT", "group_runs", "log_ratio", "vanishing_share", "grad_norm0", "auc_loss",
           "steps_per_epoch", "arm_label_of"]

SUPPORTS, CONTRADICTS, UNDECIDED, FACT = "supports", "contradicts", "cannot decide", "fact"

#: Runs of one experiment by arm name, each list in seed order.
Runs = dict[str, list[dict[str, Any]]]


@dataclass
class Premise:
    """The premise check of one experiment: each check (what, held, measured), and whether all held."""

    experiment: str
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c[1] for c in self.checks)

    def failed(self) -> str:
        return "; ".join(f"{what} ({got})" for what, ok, got in self.checks if not ok)

    def line(self) -> str:
        """One line: ``premise <experiment>: met | NOT met: ...``."""
        parts = [f"{'ok' if ok else 'FAILED'}: {what} ({got})" for what, ok, got in self.checks]
        return f"premise of {self.experiment}: {'met' if self.ok else 'NOT met'} [" + "; ".join(parts) + "]"


@dataclass
class Finding:
    """One claim on one activation, weighed: the effect with its 95% interval, and the verdict."""

    claim: str  # claim id
    activation: str  # the activation making the claim (description name)
    aspect: str  # what part of the claim this row weighs ("" when the row is the whole claim)
    experiment: str
    measured: str
    verdict: str
    reason: str
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    unit: str = ""  # "pp", "decades", "x", "loss", or "" for facts
    effect_text: str = ""  # a fact's values instead of an interval

    def effect_cell(self) -> str:
        if self.effect_text:
            return self.effect_text
        if math.isnan(self.effect):
            return "n/a"
        if self.unit == "pp":
            f = lambda v: f"{100 * v:+.1f}"  # noqa: E731
            return f"{f(self.effect)} pp [{f(self.lo)}, {f(self.hi)}]" if not math.isnan(self.lo) \
                else f"{f(self.effect)} pp"
        if self.unit == "x":
            f = lambda v: f"{10 ** v:.2f}x"  # noqa: E731
            return f"{f(self.effect)} [{f(self.lo)}, {f(self.hi)}]" if not math.isnan(self.lo) else f(self.effect)
        f = lambda v: f"{v:+.2f}"  # noqa: E731
        unit = {"decades": " decades", "loss": " nats"}.get(self.unit, "")
        return f"{f(self.effect)}{unit} [{f(self.lo)}, {f(self.hi)}]" if not math.isnan(self.lo) \
            else f"{f(self.effect)}{unit}"


def weigh(a: Stat, b: Stat | None, min_effect: float, direction: int = 1) -> tuple[str, float, float, float, str]:
    """``(verdict, d, lo, hi, reason)`` for the effect ``direction * (mean(a) - mean(b))``, or
    ``direction * mean(a)`` when ``b`` is None (one group against 0); see the module docstring."""
    if b is None:
        if a.n < 2:
            return UNDECIDED, direction * a.mean, math.nan, math.nan, "fewer than 2 seeds: no interval"
        d, se, df = direction * a.mean, a.std / math.sqrt(a.n), a.n - 1
    else:
        if a.n < 2 or b.n < 2:
            return UNDECIDED, direction * (a.mean - b.mean), math.nan, math.nan, "fewer than 2 seeds: no interval"
        d = direction * (a.mean - b.mean)
        se = math.sqrt(a.std**2 / a.n + b.std**2 / b.n)
        df = a.n + b.n - 2
    t = t_critical(df)
    lo, hi = d - t * se, d + t * se
    where = f"95% interval [{lo:.3g}, {hi:.3g}], t({df}) = {t:.2f}, minimum effect {min_effect:g}"
    if lo > 0 and d >= min_effect:
        return SUPPORTS, d, lo, hi, f"the effect the claim predicts, beyond noise and the minimum ({where})"
    if hi < min_effect:
        why = ("reversed" if hi < 0 else "smaller than the minimum that matters")
        return CONTRADICTS, d, lo, hi, f"the predicted effect is absent: {why} ({where})"
    return UNDECIDED, d, lo, hi, f"within noise over seeds ({where})"


def _stat(runs: Sequence[dict[str, Any]], fn: Callable[[dict[str, Any]], Any]) -> Stat:
    vals = []
    for r in runs:
        v = fn(r)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            vals.append(float(v))
    return Stat(vals)


# ----------------------------------------------------------------------- per-run quantities


def steps_per_epoch(r: dict[str, Any]) -> int:
    epochs = max(len(r["history"]["epoch"]) - 1, 1)
    return max(len(r["history"]["grad_norms"]) // epochs, 1)


def _ratios(r: dict[str, Any]) -> list[float]:
    out = []
    for row in r["history"]["grad_norms"]:
        first, last = _value(row[0]), _value(row[-1])
        out.append(first / last if last > 0 and not math.isnan(first) else math.nan)
    return out


def log_ratio(r: dict[str, Any]) -> float:
    """Median over steps of log10(first layer's gradient norm / last layer's)."""
    vals = sorted(math.log10(x) for x in _ratios(r) if x > 0 and math.isfinite(x))
    if not vals:
        return math.nan
    k = len(vals) // 2
    return vals[k] if len(vals) % 2 else 0.5 * (vals[k - 1] + vals[k])


def vanishing_share(r: dict[str, Any], threshold: float = 1e-3) -> float:
    """The share of steps whose first/last gradient-norm ratio is under ``threshold`` (NaN counts)."""
    rs = _ratios(r)
    return sum(not (x >= threshold) for x in rs) / len(rs) if rs else math.nan


def grad_norm0(r: dict[str, Any], layer: int | None = None) -> float:
    """log10 of the first step's gradient norm: of the whole model, or of layer ``layer``."""
    rows = r["history"]["grad_norms"]
    if not rows:
        return math.nan
    vals = [_value(v) for v in rows[0]]
    if layer is not None:
        v = vals[layer]
    else:
        v = math.sqrt(sum(x * x for x in vals)) if not any(math.isnan(x) for x in vals) else math.nan
    return math.log10(v) if v > 0 else math.nan


def auc_loss(r: dict[str, Any]) -> float:
    """The area under the training-loss curve per epoch: the mean of the epochs' training losses."""
    vals = [_value(v) for v in r["history"]["train_loss"][1:]]
    return sum(vals) / len(vals) if vals and not any(math.isnan(v) for v in vals) else math.nan


def _params(r: dict[str, Any], i: int) -> list[float]:
    ps = r["history"]["act_params"]
    return [v for vs in ps[i].values() for v in vs] if ps else []


def _mean_param(r: dict[str, Any], i: int) -> float:
    vals = _params(r, i)
    return sum(vals) / len(vals) if vals else math.nan


def group_runs(results: Sequence[dict[str, Any]]) -> dict[str, Runs]:
    """Experiment name -> arm name -> runs (in the order they came, that is by seed)."""
    out: dict[str, Runs] = {}
    for r in results:
        if "experiment" in r:
            out.setdefault(r["experiment"], {}).setdefault(r["arm"], []).append(r)
    return out


def _pct(s: Stat) -> str:
    return s.fmt(100, 1, "%")


def arm_label_of(exp: str, arm: str) -> str:
    """The report's label of arm ``arm`` of experiment ``exp`` (the arm name if unknown)."""
    from ..compare.experiments import EXPERIMENTS, arm_label

    for e in EXPERIMENTS:
        if e.name == exp:
            for a in e.arms:
                if a.name == arm:
                    return arm_label(a)
    return arm


# ----------------------------------------------------------------------- premises


def _min_over(runs: Sequence[dict[str, Any]], fn: Callable[[dict[str, Any]], float]) -> float:
    vals = [fn(r) for r in runs]
    return min(vals) if vals else math.nan


def _premise_vanishing(g: Runs, ctx: dict[str, Any]) -> Premise:
    p = Premise("vanishing")
    relu = g.get("relu", [])
    share = _min_over(relu, vanishing_share)
    p.checks.append(("ReLU's first/last gradient-norm ratio under 1e-3 on >= 80% of steps in every seed",
                     bool(relu) and share >= 0.8, f"lowest share over {len(relu)} seeds: {share:.0%}"
                     if relu else "no ReLU runs"))
    return p


def _b_range(runs: Sequence[dict[str, Any]], around: float = 0.0) -> tuple[float, float]:
    """(min |b - around|, max |b - around|) over every layer, recorded epoch and run."""
    vals = [abs(v - around) for r in runs for i in range(len(r["history"]["act_params"]))
            for v in _params(r, i)]
    return (min(vals), max(vals)) if vals else (math.nan, math.nan)


def _premise_dying(g: Runs, ctx: dict[str, Any]) -> Premise:
    p = Premise("dying")
    relu = g.get("relu", [])
    dead = _min_over(relu, lambda r: r["history"]["dead"][-1])
    p.checks.append(("at least 1% of ReLU units dead at the end in every seed", bool(relu) and dead >= 0.01,
                     f"lowest over {len(relu)} seeds: {100 * dead:.1f}%" if relu else "no ReLU runs"))
    for arm, value in (("frelu-bm1", -1.0), ("frelu-b1", 1.0), ("frelu-b0", 0.0)):
        if arm in g:
            lo, hi = _b_range(g[arm], value)
            p.checks.append((f"{arm_label_of('dying', arm)}: b exactly {value:g} throughout", lo == hi == 0.0,
                             f"largest deviation {hi:.3g}"))
    return p


def _premise_exploding(g: Runs, ctx: dict[str, Any]) -> Premise:
    from ..compare.experiments import EXPERIMENTS

    p = Premise("exploding")
    exp = next(e for e in EXPERIMENTS if e.name == "exploding")
    worst = 0.0
    for arm in exp.arms:
        for r in g.get(arm.name, []):
            for i in range(len(r["history"]["act_params"])):
                worst = max([worst] + [abs(v - (arm.value or 0.0)) for v in _params(r, i)])
    p.checks.append(("b held at its sweep value in every layer throughout", worst == 0.0,
                     f"largest deviation {worst:.3g}"))
    base = g.get(exp.arms[0].name, [])
    flagged = sum(any(r["history"]["exploding"]) for r in base)
    p.checks.append((f"at b = {exp.arms[0].value:g} no epoch flagged exploding", bool(base) and not flagged,
                     f"{flagged} of {len(base)} runs flagged"))
    return p


def _trained(g: Runs, ctx: dict[str, Any], p: Premise, exp: str) -> None:
    chance = ctx.get("chance", 0.1)
    low = [f"{arm_label_of(exp, a)} {_pct(_stat(rs, lambda r: r['history']['test_acc'][-1]))}"
           for a, rs in g.items() if _stat(rs, lambda r: r["history"]["test_acc"][-1]).mean < 2 * chance]
    p.checks.append((f"every arm trained (mean test accuracy over {200 * chance:.0f}%)", not low,
                     "; ".join(low) if low else "all did"))


def _premise_learnable(g: Runs, ctx: dict[str, Any]) -> Premise:
    p = Premise("learnable")
    for arm in ("prelu", "frelu-b0"):
        rs = g.get(arm, [])
        if not rs:
            continue
        moved = _min_over(rs, lambda r: abs(_mean_param(r, -1) - _mean_param(r, 0)))
        p.checks.append((f"{arm_label_of('learnable', arm)}: the parameter moved by >= 0.01 in every seed",
                         moved >= 0.01, f"smallest move {moved:.3g}"))
    _trained(g, ctx, p, "learnable")
    return p


def _premise_funnel(g: Runs, ctx: dict[str, Any]) -> Premise:
    p = Premise("funnel")
    shape = ctx.get("input_shape")
    if shape is not None:
        import torch
        from torch import nn

        from ..compare.experiments import EXPERIMENTS
        from ..zoo import build_model

        e = next(x for x in EXPERIMENTS if x.name == "funnel")
        bad = []
        with torch.random.fork_rng(devices=[]):  # the global generator is left as it was
            for arm in e.arms:
                m = build_model("cnn", arm.activation, tuple(shape), ctx.get("num_classes", 10),
                                depth=e.depth, width=e.width, norm=e.norm)
                mods = list(m.features)
                acts = [i for i, x in enumerate(mods)
                        if not isinstance(x, (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d))]
                if not acts or any(not isinstance(mods[i - 1], nn.BatchNorm2d) for i in acts):
                    bad.append(arm.name)
        p.checks.append(("a BatchNorm right before every activation in every arm", not bad,
                         "missing in " + ", ".join(bad) if bad else f"checked in {len(e.arms)} arms"))
    _trained(g, ctx, p, "funnel")
    return p


def _premise_cost(g: Runs, ctx: dict[str, Any]) -> Premise:
    p = Premise("cost")
    timing = ctx.get("step_timing") or {}
    key = _cost_key(timing)
    n = timing.get("rounds", {}).get(key, 0) if key else 0
    p.checks.append(("at least 5 timed rounds", n >= 5, f"{n} rounds"))
    return p


def _cost_key(timing: dict[str, Any]) -> str | None:
    return next((k for k in timing.get("ms", {}) if k.startswith("cnn")), None)


#: Experiment name -> its premise check, a function of (runs by arm, context).
PREMISES: dict[str, Callable[[Runs, dict[str, Any]], Premise]] = {
    "vanishing": _premise_vanishing,
    "dying": _premise_dying,
    "exploding": _premise_exploding,
    "learnable": _premise_learnable,
    "funnel": _premise_funnel,
    "kink": lambda g, ctx: Premise("kink"),
    "cost": _premise_cost,
}
