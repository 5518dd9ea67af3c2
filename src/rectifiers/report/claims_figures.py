"""The plots of the claim experiments: one PNG per experiment, two panels each."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from .claims import Runs, _ratios, arm_label_of, grad_norm0, steps_per_epoch
from .figures import _figure, _log_scale_if_positive, _save
from .labels import COLORS
from .statistics import _median, _value

__all__ = ["PLOTS"]

_EXTRA_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _colors(exp: str, arms: Sequence[str], g: Runs) -> dict[str, str]:
    out, k = {}, 0
    used: set[str] = set()
    for a in arms:
        act = g[a][0]["activation"]
        c = COLORS.get(act)
        if c is None or c in used:
            c = _EXTRA_COLORS[k % len(_EXTRA_COLORS)]
            k += 1
        used.add(c)
        out[a] = c
    return out


#: Line styles and widths by arm position, so that arms with equal numbers (FReLU with b = 0 and
#: ReLU) stay visible on top of each other.
_STYLES = ["-", "--", "-.", ":"]


def _style(i: int) -> dict[str, Any]:
    return {"ls": _STYLES[i % len(_STYLES)], "lw": max(2.6 - 0.35 * i, 0.9)}


def _mean(xs: Sequence[float]) -> float:
    vals = [x for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]
    return sum(vals) / len(vals) if vals else math.nan


def _by_epoch(ax: Any, exp: str, g: Runs, key: str, scale: float = 1.0) -> None:
    """history[key] per epoch against training step: mean over seeds, band min..max."""
    cols = _colors(exp, list(g), g)
    for i, (arm, runs) in enumerate(g.items()):
        n = min(len(r["history"][key]) for r in runs)
        spe = steps_per_epoch(runs[0])
        xs = [runs[0]["history"]["epoch"][i] * spe for i in range(n)]
        cols_i = [[_value(r["history"][key][i]) * scale for r in runs] for i in range(n)]
        mean = [_mean(c) for c in cols_i]
        lo = [min((v for v in c if not math.isnan(v)), default=math.nan) for c in cols_i]
        hi = [max((v for v in c if not math.isnan(v)), default=math.nan) for c in cols_i]
        ax.plot(xs, mean, color=cols[arm], marker="o", ms=3, label=arm_label_of(exp, arm), **_style(i))
        ax.fill_between(xs, lo, hi, color=cols[arm], alpha=0.12)
    ax.set_xlabel("training step")


def _per_layer(ax: Any, exp: str, g: Runs, rows: Callable[[dict[str, Any]], list[list[Any]]],
               ylabel: str) -> None:
    cols = _colors(exp, list(g), g)
    for i, (arm, runs) in enumerate(g.items()):
        profs = []
        for r in runs:
            rs = [[_value(v) for v in row] for row in rows(r)]
            if rs:
                profs.append([_median([row[k] for row in rs if not math.isnan(row[k])])
                              for k in range(len(rs[0]))])
        if not profs:
            continue
        prof = [_mean(c) for c in zip(*profs)]
        ax.plot(range(len(prof)), prof, color=cols[arm], marker="o", ms=3, label=arm_label_of(exp, arm),
                **_style(i))
    _log_scale_if_positive(ax)
    ax.set_xlabel("layer (0: nearest the input; last: the classifier)")
    ax.set_ylabel(ylabel)


def plot_vanishing(g: Runs, path: str) -> None:
    fig = _figure(11, 4.2)
    a, b = fig.subplots(1, 2)
    _per_layer(a, "vanishing", g, lambda r: r["history"]["grad_norms"], "median gradient norm over steps")
    a.set_title("gradient norm against depth (mean over seeds)")
    a.legend(fontsize=7)
    cols = _colors("vanishing", list(g), g)
    for i, (arm, runs) in enumerate(g.items()):
        rs = [_ratios(r) for r in runs]
        n = min(len(x) for x in rs)
        b.plot(range(n), [_mean([x[s] for x in rs]) for s in range(n)], color=cols[arm],
               label=arm_label_of("vanishing", arm), **_style(i))
    b.axhline(1e-3, color="#999", ls=":", lw=1)
    _log_scale_if_positive(b)
    b.set_xlabel("training step")
    b.set_ylabel("first / last layer gradient norm")
    b.set_title("first/last ratio per step (dotted: the vanishing flag, 1e-3)")
    _save(fig, path)


def plot_dying(g: Runs, path: str) -> None:
    fig = _figure(11, 4.2)
    a, b = fig.subplots(1, 2)
    _by_epoch(a, "dying", g, "dead", 100)
    a.set_ylabel("% of units dead")
    a.set_title("dead fraction against training step (band: min-max over seeds)")
    a.legend(fontsize=7)
    _by_epoch(b, "dying", g, "test_acc", 100)
    b.set_ylabel("test accuracy %")
    b.set_title("test accuracy against training step")
    _save(fig, path)


def plot_exploding(g: Runs, path: str) -> None:
    fig = _figure(11, 4.2)
    a, b = fig.subplots(1, 2)
    from ..compare.experiments import EXPERIMENTS

    exp = next(e for e in EXPERIMENTS if e.name == "exploding")
    bs, mean = [], []
    for arm in exp.arms:
        if arm.name not in g:
            continue
        vals = [10 ** v for v in (grad_norm0(r) for r in g[arm.name]) if math.isfinite(v)]
        a.scatter([arm.value] * len(vals), vals, color="#d62728", alpha=0.4, s=12)
        bs.append(arm.value)
        mean.append(_mean(vals))
    a.plot(bs, mean, color="#d62728", marker="o", label="whole model (mean over seeds)")
    a.set_yscale("log")
    a.set_xlabel("b (held in every layer)")
    a.set_ylabel("gradient norm at the first step")
    a.set_title("gradient norm against b")
    a.legend(fontsize=7)
    _per_layer(b, "exploding", g, lambda r: r["history"]["grad_norms"][:1], "gradient norm at the first step")
    b.set_title("gradient norm against depth, per b")
    b.legend(fontsize=7)
    _save(fig, path)


def _acc_loss(exp: str) -> Callable[[Runs, str], None]:
    def plot(g: Runs, path: str) -> None:
        fig = _figure(11, 4.2)
        a, b = fig.subplots(1, 2)
        _by_epoch(a, exp, g, "test_acc", 100)
        a.set_ylabel("test accuracy %")
        a.set_title("accuracy against training step (band: min-max over seeds)")
        a.legend(fontsize=7)
        _by_epoch(b, exp, g, "train_loss")
        log = _log_scale_if_positive(b)
        b.set_ylabel("training loss (epoch mean)")
        b.set_title("training loss against step" + ("" if log else " (linear axis)"))
        _save(fig, path)
    return plot


#: Experiment name -> (file name, alt text, drawer(runs by arm, path)).
PLOTS: dict[str, tuple[str, str, Callable[[Runs, str], None]]] = {
    "vanishing": ("vanishing.png", "gradient norm against depth, and the first/last ratio per step", plot_vanishing),
    "dying": ("dying.png", "dead fraction and accuracy against training step", plot_dying),
    "exploding": ("exploding.png", "gradient norm against b, and against depth per b", plot_exploding),
    "learnable": ("learnable.png", "accuracy and training loss against step", _acc_loss("learnable")),
    "funnel": ("funnel.png", "accuracy and training loss against step", _acc_loss("funnel")),
}
