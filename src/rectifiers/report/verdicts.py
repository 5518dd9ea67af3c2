"""The article's claims weighed against the runs: one :class:`Verdict` per claim and model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import _spec as S
from .labels import LEARNABLE, _name
from .statistics import Group, Stat, decide

__all__ = ["Verdict", "verdicts", "WEIGHERS", "SUPPORTS", "CONTRADICTS", "UNDECIDED"]

SUPPORTS, CONTRADICTS, UNDECIDED = "supports", "contradicts", "cannot decide"


@dataclass
class Verdict:
    """One claim, tested on one model (and against one baseline): what was measured and the verdict."""

    claim: str
    model: str
    measured: str
    verdict: str
    reason: str


def _pct(s: Stat) -> str:
    return s.fmt(100, 1, "%")


def _relu_dies(relu: Group) -> tuple[bool, str]:
    """Whether ReLU units died in these runs: mean dead fraction at the end >= 1% in every seed."""
    dead = relu.dead_at("dead", -1)
    if not dead.n:
        return False, "no ReLU runs"
    if min(dead.values) < 0.01:
        return False, (f"ReLU lost almost no units here (dead at the end: {_pct(dead)}), so there "
                       f"was nothing to mitigate; run with --provoke or a larger --depth")
    return True, ""


def _compare(a: Stat, b: Stat, min_effect: float, supports_if: str) -> tuple[str, str]:
    """Verdict and reason from :func:`decide`; ``supports_if`` is "greater" or "less"."""
    out, d, thr = decide(a, b, min_effect)
    if a.n < 2 or b.n < 2:
        return UNDECIDED, "fewer than 2 seeds: no spread to weigh the difference against"
    detail = (f"difference {d:+.3g}, t({a.n + b.n - 2}) x standard error {thr:.2g}, "
              f"minimum effect {min_effect:g}")
    if out == "same":
        return UNDECIDED, f"difference within the spread over seeds ({detail})"
    return (SUPPORTS if out == supports_if else CONTRADICTS), detail


def _dying(g: dict[str, Group], act: str, m: str, claim: str) -> list[Verdict]:
    """Dying ReLU mitigated: ``act``'s dead fraction at the end, lower than ReLU's."""
    relu = g.get("relu")
    if relu is None:
        return []
    a_dead, r_dead = g[act].dead_at("dead", -1), relu.dead_at("dead", -1)
    inact = g[act].dead_at("inactive", -1)
    measured = (f"dead units at the end: {_name(act)} {_pct(a_dead)} vs ReLU {_pct(r_dead)}; "
                f"{_name(act)} units never positive: {_pct(inact)}")
    ok, why = _relu_dies(relu)
    if not ok:
        return [Verdict(claim, m, measured, UNDECIDED, why)]
    v, why = _compare(a_dead, r_dead, 0.01, "less")
    return [Verdict(claim, m, measured, v, why)]


def _weigh_dying(g: dict[str, Group], act: str, m: str, chance: float) -> list[Verdict]:
    return _dying(g, act, m, f"{_name(act)} mitigates dying ReLU")


def _weigh_dying_b(g: dict[str, Group], act: str, m: str, chance: float) -> list[Verdict]:
    """FReLU avoids dying ReLU when b != 0: as :func:`_dying`, where |b| stayed away from 0."""
    relu = g.get("relu")
    if relu is None:
        return []
    claim = f"{_name(act)} avoids dying ReLU when b != 0"
    a_dead, r_dead = g[act].dead_at("dead", -1), relu.dead_at("dead", -1)
    inact = g[act].dead_at("inactive", -1)
    b = g[act].act_param(LEARNABLE[act], -1, "mean_abs")
    measured = (f"dead units at the end: {_name(act)} {_pct(a_dead)} vs ReLU {_pct(r_dead)}; "
                f"{_name(act)} units never positive: {_pct(inact)}; |b| at the end {b.fmt(1, 2)}")
    ok, why = _relu_dies(relu)
    if not ok:
        return [Verdict(claim, m, measured, UNDECIDED, why)]
    if not b.n or min(b.values) < 0.01:
        return [Verdict(claim, m, measured, UNDECIDED, "b was (near) 0 in some run")]
    v, why = _compare(a_dead, r_dead, 0.01, "less")
    return [Verdict(claim, m, measured, v, why)]


def _weigh_vanishing(g: dict[str, Group], act: str, m: str, chance: float) -> list[Verdict]:
    """Vanishing gradients mitigated: log10 first/last gradient-norm ratio, higher than ReLU's,
    where ReLU's gradients vanish (flagged in at least half the epochs)."""
    relu = g.get("relu")
    if relu is None:
        return []
    claim = f"{_name(act)} mitigates vanishing gradients"
    a_r, r_r = g[act].log_ratio, relu.log_ratio
    van = relu.vanishing_share
    measured = (f"log10(first/last layer gradient norm): {_name(act)} {a_r.fmt(1, 2)} vs ReLU "
                f"{r_r.fmt(1, 2)}; epochs flagged vanishing: {_name(act)} "
                f"{_pct(g[act].vanishing_share)}, ReLU {_pct(van)}")
    if not van.n or van.mean < 0.5:
        return [Verdict(claim, m, measured, UNDECIDED,
                        "ReLU's gradients did not vanish here (flagged in under half the "
                        "epochs); try a larger --depth")]
    v, why = _compare(a_r, r_r, 0.1, "greater")
    return [Verdict(claim, m, measured, v, why)]


def _weigh_exploding(g: dict[str, Group], act: str, m: str, chance: float) -> list[Verdict]:
    """Exploding gradients as b grows: where |b| grew, the largest gradient norm, higher than ReLU's."""
    relu = g.get("relu")
    if relu is None:
        return []
    fr = g[act]
    claim = f"{_name(act)} causes exploding gradients as b grows"
    which = LEARNABLE[act]
    b0, b1 = fr.act_param(which, 0, "mean_abs"), fr.act_param(which, -1, "mean_abs")
    growth = Stat([e - s for s, e in zip(b0.values, b1.values)])
    lf, lr_ = fr.log_max_grad, relu.log_max_grad
    measured = (f"|b| from {b0.fmt(1, 2)} to {b1.fmt(1, 2)}; log10 largest gradient norm: "
                f"{_name(act)} {lf.fmt(1, 2)} vs ReLU {lr_.fmt(1, 2)}; epochs flagged exploding: "
                f"{_name(act)} {_pct(fr.exploding_share)}, ReLU {_pct(relu.exploding_share)}")
    if growth.n < 2:
        return [Verdict(claim, m, measured, UNDECIDED, "fewer than 2 seeds")]
    if min(growth.values) <= 0.05:
        return [Verdict(claim, m, measured, UNDECIDED,
                        "|b| did not grow (by more than 0.05) in every seed, so the claim's "
                        "condition was not met")]
    v, why = _compare(lf, lr_, 0.1, "greater")
    return [Verdict(claim, m, measured, v, why)]


#: The activations the funnel paper's accuracy claim is weighed against, in the report's order.
_ACCURACY_BASELINES = ("relu", "prelu")


def _weigh_accuracy(g: dict[str, Group], act: str, m: str, chance: float) -> list[Verdict]:
    """Better accuracy than ReLU and PReLU: final test accuracy, higher."""
    out = []
    for base in _ACCURACY_BASELINES:
        if base not in g:
            continue
        claim = f"{_name(act)} is more accurate than {_name(base)}"
        fa, ba = g[act].acc, g[base].acc
        measured = f"test accuracy: {_name(act)} {_pct(fa)} vs {_name(base)} {_pct(ba)}"
        v, why = _compare(fa, ba, 0.005, "greater")
        if ba.n and ba.mean < 2 * chance:
            why += f"; note that {_name(base)} hardly trained in this setting"
        out.append(Verdict(claim, m, measured, v, why))
    return out


Weigher = Callable[[dict[str, Group], str, str, float], list[Verdict]]

#: The claims the runs can weigh, by claim id (:mod:`rectifiers._spec`), in the report's order,
#: each with the function that weighs it: ``(groups of one model by activation, the activation
#: holding the claim, the model, chance accuracy) -> verdicts``. The other claims (the kink,
#: the cost, ...) are measured by other commands.
WEIGHERS: dict[str, Weigher] = {
    "leaky-dying": _weigh_dying,
    "prelu-dying": _weigh_dying,
    "frelu-dying-b": _weigh_dying_b,
    "leaky-vanishing": _weigh_vanishing,
    "prelu-vanishing": _weigh_vanishing,
    "frelu-exploding": _weigh_exploding,
    "funnel-acc": _weigh_accuracy,
}


def _claim_holders() -> dict[str, list[str]]:
    """Claim id -> the activations whose descriptions make that claim, in their order."""
    holders: dict[str, list[str]] = {}
    for d in S.DESCRIPTIONS.values():
        for c in d.claims:
            holders.setdefault(c.id, []).append(d.name)
    return holders


def verdicts(groups: dict[tuple[str, str], Group], models: Sequence[str], chance: float = 0.1) -> list[Verdict]:
    """The article's claims, each weighed per model against the runs that test it.

    The claims weighed are those of :data:`WEIGHERS` (ids of the descriptions' claims), for the
    activations that were run:
      1. LeakyReLU and PReLU mitigate dying ReLU: dead fraction at the end, lower than ReLU's.
      2. LeakyReLU and PReLU mitigate vanishing gradients: log10 first/last gradient-norm ratio,
         higher than ReLU's, where ReLU's gradients vanish (flagged in at least half the epochs).
      3. FReLU avoids dying ReLU when b != 0: dead fraction at the end, lower than ReLU's.
      4. FReLU causes exploding gradients as b grows: where |b| grew, the largest gradient norm,
         higher than ReLU's.
      5. Funnel gives better accuracy than ReLU and PReLU: final test accuracy, higher.
    """
    holders = _claim_holders()
    out: list[Verdict] = []
    for m in models:
        g = {a: grp for (mm, a), grp in groups.items() if mm == m}
        for claim_id, weigh in WEIGHERS.items():
            for act in holders.get(claim_id, ()):
                if act in g:
                    out.extend(weigh(g, act, m, chance))
    return out
