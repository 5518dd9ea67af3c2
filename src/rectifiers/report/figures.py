"""The report's PNG plots: training curves, dead units, gradient norms, the activations."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .labels import COLORS, _name
from .statistics import Group, _median, _value, diverged

__all__ = ["plot_curves", "plot_dead", "plot_grads", "plot_activations"]


def _figure(width: float, height: float) -> Any:
    """A new matplotlib figure with an Agg canvas (:func:`rectifiers._util.matplotlib_figure`)."""
    from .._util import matplotlib_figure

    Figure, Canvas = matplotlib_figure()
    fig = Figure(figsize=(width, height), layout="constrained")
    Canvas(fig)
    return fig


def _save(fig: Any, path: str) -> None:
    from .._util import save_figure

    save_figure(fig, path, "png", dpi=100)


def _series(g: Group, key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """Epochs and the mean / min / max over seeds of history[key] over the finite values of each
    epoch; NaN (a gap in the plot) where no seed has a finite value."""
    runs = g.runs
    n = min(len(r["history"][key]) for r in runs)
    ep, mean, lo, hi = [], [], [], []
    for i in range(n):
        vals = [_value(r["history"][key][i]) for r in runs]
        vals = [v for v in vals if not math.isnan(v)]
        ep.append(runs[0]["history"]["epoch"][i])
        mean.append(sum(vals) / len(vals) if vals else math.nan)
        lo.append(min(vals) if vals else math.nan)
        hi.append(max(vals) if vals else math.nan)
    return ep, mean, lo, hi


def _log_scale_if_positive(ax: Any) -> bool:
    """Log y axis when the axes' lines hold a positive finite value, else linear; return which."""
    import numpy as np

    for line in ax.get_lines():
        y = np.asarray(line.get_ydata(), dtype=float)
        if np.any(np.isfinite(y) & (y > 0)):
            ax.set_yscale("log", nonpositive="mask")
            return True
    return False


def _no_data(ax: Any, what: str) -> None:
    """Say on an empty plot that there was nothing finite to draw."""
    import numpy as np

    if not any(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any() for line in ax.get_lines()):
        ax.text(0.5, 0.5, f"no finite {what}\n(the runs diverged)", ha="center", va="center",
                transform=ax.transAxes, color="#b00")


def _label(g: Group, a: str) -> str:
    n = sum(diverged(r) for r in g.runs)
    return _name(a) + (f" (diverged: {n} of {len(g.runs)})" if n else "")


def plot_curves(groups: dict[tuple[str, str], Group], models: Sequence[str], path: str) -> None:
    """Test accuracy and training loss per epoch: mean over seeds, band from min to max.

    NaN losses are gaps; the loss axis is logarithmic when there is a positive finite loss.
    """
    fig = _figure(5.5 * len(models), 7)
    axes = fig.subplots(2, len(models), squeeze=False)
    for j, m in enumerate(models):
        for (mm, a), g in groups.items():
            if mm != m:
                continue
            for i, (key, label) in enumerate((("test_acc", "test accuracy"), ("train_loss", "training loss"))):
                ep, mean, lo, hi = _series(g, key)
                ax = axes[i][j]
                ax.plot(ep, mean, color=COLORS.get(a), label=_label(g, a), marker="o", ms=3)
                ax.fill_between(ep, lo, hi, color=COLORS.get(a), alpha=0.15)
                ax.set_ylabel(label)
                ax.set_xlabel("epoch")
        axes[0][j].set_title(f"{m.upper()}: test accuracy (band: min-max over seeds)")
        log = _log_scale_if_positive(axes[1][j])
        axes[1][j].set_title(f"{m.upper()}: training loss" + ("" if log else " (linear axis)"))
        _no_data(axes[1][j], "training loss")
        axes[0][j].legend(fontsize=8)
    _save(fig, path)


def plot_dead(groups: dict[tuple[str, str], Group], models: Sequence[str], path: str) -> None:
    """Dead (solid) and inactive (dashed) unit fractions per epoch, epoch 0 = before training."""
    fig = _figure(5.5 * len(models), 4.2)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for j, m in enumerate(models):
        ax = axes[j]
        for (mm, a), g in groups.items():
            if mm != m:
                continue
            ep, dead, lo, hi = _series(g, "dead")
            ax.plot(ep, [100 * v for v in dead], color=COLORS.get(a), label=f"{_label(g, a)} dead",
                    marker="o", ms=3)
            ax.fill_between(ep, [100 * v for v in lo], [100 * v for v in hi], color=COLORS.get(a), alpha=0.15)
            ep, ina, _, _ = _series(g, "inactive")
            ax.plot(ep, [100 * v for v in ina], color=COLORS.get(a), ls="--", alpha=0.7,
                    label=f"{_name(a)} never positive")
        ax.set_title(f"{m.upper()}: units dead (solid) / never positive (dashed)")
        ax.set_xlabel("epoch (0: before training)")
        ax.set_ylabel("% of units")
        ax.legend(fontsize=7, ncol=2)
    _save(fig, path)


def _mean_finite(xs: Sequence[float]) -> float:
    vals = [x for x in xs if math.isfinite(x)]
    return sum(vals) / len(vals) if vals else math.nan


def plot_grads(groups: dict[tuple[str, str], Group], models: Sequence[str], path: str) -> None:
    """Per-layer gradient norms: the median over steps (top), the first/last ratio over steps (bottom).

    Non-finite norms (a diverged run) are left out of the medians and are gaps in the ratio; an
    axis is logarithmic only when it has a positive finite value.
    """
    from matplotlib.ticker import MaxNLocator

    fig = _figure(5.5 * len(models), 7.5)
    axes = fig.subplots(2, len(models), squeeze=False)
    for j, m in enumerate(models):
        for (mm, a), g in groups.items():
            if mm != m:
                continue
            layers = g.runs[0]["history"].get("grad_layers") or []
            if not layers:
                continue
            per_run = []
            ratio_runs = []
            for r in g.runs:
                norms = [[_value(v) for v in row] for row in r["history"]["grad_norms"]]
                if not norms:
                    continue
                per_run.append([_median([row[k] for row in norms if not math.isnan(row[k])])
                                for k in range(len(layers))])
                ratio_runs.append([row[0] / row[-1] if row[-1] > 0 else math.nan for row in norms])
            if not per_run:
                continue
            prof = [_mean_finite(col) for col in zip(*per_run)]
            axes[0][j].plot(range(len(layers)), prof, color=COLORS.get(a), marker="o", ms=3,
                            label=_label(g, a))
            steps = min(len(x) for x in ratio_runs)
            ratio = [_mean_finite([x[s] for x in ratio_runs]) for s in range(steps)]
            axes[1][j].plot(range(steps), ratio, color=COLORS.get(a), lw=1, label=_name(a))
        axes[0][j].xaxis.set_major_locator(MaxNLocator(integer=True))
        _log_scale_if_positive(axes[0][j])
        axes[0][j].set_xlabel("layer (0: nearest the input)")
        axes[0][j].set_ylabel("median gradient norm over steps")
        axes[0][j].set_title(f"{m.upper()}: gradient norm per layer (mean over seeds)")
        axes[0][j].legend(fontsize=8)
        _no_data(axes[0][j], "gradient norms")
        _log_scale_if_positive(axes[1][j])
        axes[1][j].set_xlabel("training step")
        axes[1][j].set_ylabel("first / last layer gradient norm")
        axes[1][j].set_title(f"{m.upper()}: gradient ratio first/last layer over training")
    _save(fig, path)


def plot_activations(names: Sequence[str], path: str) -> None:
    """The activation graphs: :func:`rectifiers.plotting.plot_overview` if present, else f and f'."""
    try:
        from ..plotting import plot_overview
    except ImportError:
        plot_overview = None
    if plot_overview is not None:
        from .._util import save_figure

        save_figure(plot_overview(list(names)), path, "png", dpi=70)
        return
    import torch

    from ..curves import curve

    fig = _figure(3.2 * len(names), 5.5)
    axes = fig.subplots(2, len(names), squeeze=False)
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for j, n in enumerate(names):
        c = curve(n, x)
        axes[0][j].plot(c.x, c.y, color=COLORS.get(n))
        axes[1][j].plot(c.x, c.dy, color=COLORS.get(n))
        axes[0][j].set_title(f"{_name(n)}: {c.formula}", fontsize=8)
        axes[1][j].set_title("f'(x)", fontsize=8)
    _save(fig, path)
