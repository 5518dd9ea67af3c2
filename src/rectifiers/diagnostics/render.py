"""The reports' rendering: plain-text tables, PNG figures, and JSON-safe values."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _util

if TYPE_CHECKING:
    from .reports import DeadUnitReport, GradientFlowReport


def _num(v: float) -> float | None:
    """JSON-safe float: NaN and infinities become None."""
    v = float(v)
    return v if math.isfinite(v) else None


def _list(a: np.ndarray) -> list[Any]:
    return [_num(v) if isinstance(v, float) else v for v in np.asarray(a).tolist()]


def _nested(a: np.ndarray) -> list[Any]:
    return [_list(row) for row in np.asarray(a)]


def _g(v: float) -> str:
    v = float(v)
    return "-" if math.isnan(v) else f"{v:.3g}"


def _span(v: np.ndarray) -> str:
    if v.size == 1:
        return _g(v[0])
    return f"mean {_g(v.mean())} [{_g(v.min())}, {_g(v.max())}]"


def _pos(v: np.ndarray) -> np.ndarray:
    """Values a log axis can show: non-positive and non-finite become NaN (gaps)."""
    v = np.asarray(v, dtype=np.float64).copy()
    v[~(np.isfinite(v) & (v > 0))] = np.nan
    return v


def dead_table(rep: DeadUnitReport) -> str:
    """A plain-text table, one row per use site and a total row."""
    pct = f"<{rep.near_dead_threshold:.0%}"
    head = ["layer", "kind", "units", "samples", "dead", "inactive", f"near-dead({pct})", "act. rate", "revived"]
    rows = []

    def fmt(x: float) -> str:
        return "-" if not math.isfinite(x) else f"{100 * x:.1f}%"

    for l in rep.layers:
        rows.append([
            l.name, l.kind, str(l.units), str(l.samples), fmt(l.dead_fraction),
            fmt(l.inactive_fraction), fmt(l.near_dead_fraction), fmt(l.activation_rate),
            "-" if l.revived is None else str(l.revived),
        ])
    rev = rep.revived
    rows.append([
        "total", "", str(rep.units), "", fmt(rep.dead_fraction), fmt(rep.inactive_fraction),
        fmt(rep.near_dead_fraction), fmt(rep.activation_rate), "-" if rev is None else str(rev),
    ])
    title = f"dead units (window {rep.window})"
    if not rep.layers:
        return title + ": no activation was called"
    return title + "\n" + _util.text_table(head, rows)


def dead_plot(rep: DeadUnitReport, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Write a PNG bar chart (dead / inactive / near-dead fraction and activation rate per
    use site) to ``path``, atomically. Returns the path. Needs matplotlib."""
    n = max(len(rep.layers), 1)
    fig = _util.new_figure(7.5, 1.2 + 0.45 * n * 1.6)
    ax = fig.add_subplot(1, 1, 1)
    names = [l.name for l in rep.layers]
    y = np.arange(len(names))
    h = 0.2
    series = [
        ("dead", [l.dead_fraction for l in rep.layers], "#c0392b"),
        ("inactive", [l.inactive_fraction for l in rep.layers], "#e67e22"),
        (f"near-dead (<{rep.near_dead_threshold:.0%})", [l.near_dead_fraction for l in rep.layers], "#f1c40f"),
        ("activation rate", [l.activation_rate for l in rep.layers], "#2980b9"),
    ]
    for i, (label, vals, color) in enumerate(series):
        ax.barh(y + (i - 1.5) * h, vals, height=h, label=label, color=color)
    ax.set_yticks(y)
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of units")
    ax.set_title(title or f"Dead units (window {rep.window}, {rep.units} units)")
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def flow_table(rep: GradientFlowReport) -> str:
    """Per-layer median / min / max / last norm, the ratio, the flags and the parameters."""
    if not rep.num_steps:
        return "gradient flow: no step recorded"
    rows = []
    for j, name in enumerate(rep.layers):
        col = rep.norms[:, j]
        ok = col[np.isfinite(col)]
        if ok.size:
            vals = [np.median(ok), ok.min(), ok.max()]
        else:
            vals = [math.nan] * 3
        rows.append([name] + [_g(v) for v in vals] + [_g(col[-1])])
    out = [f"gradient flow ({rep.num_steps} steps)",
           _util.text_table(["layer", "median norm", "min", "max", "last"], rows)]
    out.append(f"first/last ratio: median {_g(rep.first_last_ratio_median)}")
    out.append(f"vanishing: {'YES' if rep.vanishing else 'no'}"
               f" ({int(rep.vanishing_steps.sum())}/{rep.num_steps} steps flagged)")
    out.append(f"exploding: {'YES' if rep.exploding else 'no'}"
               f" ({int(rep.exploding_steps.sum())}/{rep.num_steps} steps flagged)")
    out.extend("  - " + r for r in rep.reasons)
    if rep.params:
        prow = []
        for k, v in rep.params.items():
            first, last = v[0], v[-1]
            prow.append([k, str(v.shape[1]), _span(first), _span(last)])
        out.append(_util.text_table(["activation parameter", "numel", "first", "last"], prow))
    if rep.zero_grad:
        out.append(f"zero gradient at every step ({len(rep.zero_grad)} parameters, they cannot learn):")
        out.extend("  - " + name for name in rep.zero_grad)
    return "\n".join(out)


def flow_plot(rep: GradientFlowReport, path: str | os.PathLike[str], title: str | None = None) -> str:
    """Write a PNG (gradient norm per layer over steps, the first/last ratio with its
    thresholds, and the activation parameters over steps) to ``path``, atomically."""
    panels = 3 if rep.params else 2
    fig = _util.new_figure(7.5, 3.0 * panels)
    from matplotlib.ticker import MaxNLocator  # present: new_figure checked matplotlib

    steps = rep.steps
    ax = fig.add_subplot(panels, 1, 1)
    for j, name in enumerate(rep.layers):
        ax.plot(steps, _pos(rep.norms[:, j]), label=name, lw=1.2)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("gradient L2 norm")
    ax.set_title(title or "Gradient norm per layer")
    if len(rep.layers) <= 12:
        ax.legend(fontsize="x-small", ncol=2)
    ax.grid(alpha=0.3)
    ax2 = fig.add_subplot(panels, 1, 2, sharex=ax)
    ax2.plot(steps, _pos(rep.first_last_ratio), color="k", lw=1.2, label="first / last")
    ax2.axhline(rep.thresholds["vanish_ratio"], color="#2980b9", ls="--", lw=1, label="vanishing below")
    ax2.axhline(rep.thresholds["explode_ratio"], color="#c0392b", ls="--", lw=1, label="exploding above")
    ax2.set_yscale("log")
    ax2.set_ylabel("first / last layer norm")
    ax2.legend(fontsize="x-small")
    ax2.grid(alpha=0.3)
    if rep.params:
        ax3 = fig.add_subplot(panels, 1, 3, sharex=ax)
        for k, v in rep.params.items():
            if v.shape[1] == 1:
                ax3.plot(steps, v[:, 0], label=k, lw=1.2)
            else:
                (line,) = ax3.plot(steps, v.mean(axis=1), label=f"{k} (mean, min-max)", lw=1.2)
                ax3.fill_between(steps, v.min(axis=1), v.max(axis=1), alpha=0.2, color=line.get_color())
        ax3.set_ylabel("activation parameter")
        ax3.legend(fontsize="x-small")
        ax3.grid(alpha=0.3)
        ax3.set_xlabel("step")
    else:
        ax2.set_xlabel("step")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike[str]) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (folders created), at the library's one dpi."""
    return str(_util.save_figure(fig, path, "png"))
