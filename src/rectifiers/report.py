"""The report of ``rectifiers compare``: tables, plots and verdicts, as Markdown and HTML.

:func:`summarise` turns the per-run results of :mod:`rectifiers.compare` into per (model,
activation) statistics over seeds; :func:`verdicts` weighs the article's claims against them;
:func:`write_report` writes ``report.md``, ``report.html`` and the PNG plots.

The decision rule of every verdict (:func:`decide`): two groups of runs (one value per seed) differ
when the difference of their means exceeds ``t * se``, where
``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)`` (sample standard deviations over seeds) and ``t`` is the
two-sided 95% Student-t critical value for ``df = n_a + n_b - 2`` (4.30 for 2 + 2 seeds, 2.78 for
3 + 3; :func:`t_critical`), so that two groups drawn from one normal distribution get a verdict
about 5% of the time; and also a minimum size that matters (stated per claim). With fewer than
2 seeds in a group there is no spread and no verdict: "cannot decide". A claim whose premise did not occur in the run (no dead
ReLU units to mitigate, no vanishing gradients, a bias b that did not grow) is also "cannot decide",
with the reason; a verdict is never given that the numbers do not carry.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stat", "Verdict", "decide", "t_critical", "summarise", "verdicts", "write_report", "DISPLAY"]

DISPLAY = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "prelu": "PReLU",
    "flexible_relu": "FReLU",
    "funnel_relu": "Funnel",
}

SUPPORTS, CONTRADICTS, UNDECIDED = "supports", "contradicts", "cannot decide"


# --------------------------------------------------------------------------------------------
# Statistics


@dataclass
class Stat:
    """Values of one quantity over seeds: mean, sample standard deviation (ddof 1), n."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    def fmt(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        """``mean ± std`` (``mean`` alone with one seed)."""
        if not self.n:
            return "n/a"
        m = self.mean * scale
        if self.n < 2:
            return f"{m:.{digits}f}{unit}"
        return f"{m:.{digits}f} ± {self.std * scale:.{digits}f}{unit}"


#: Two-sided 95% critical values of Student's t distribution (the 0.975 quantile), df = 1 .. 30.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_critical(df: int) -> float:
    """The two-sided 95% Student-t critical value for ``df`` degrees of freedom (``df >= 1``).

    Tabulated for df 1..30 (12.706 .. 2.042); beyond 30, the normal value 1.96.
    """
    if df < 1:
        raise ValueError(f"t_critical: df must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def decide(a: Stat, b: Stat, min_effect: float) -> tuple[str, float, float]:
    """Compare the means of ``a`` and ``b``: ``("greater" | "less" | "same", diff, threshold)``.

    ``diff = mean(a) - mean(b)``, ``se = sqrt(s_a^2 / n_a + s_b^2 / n_b)`` and
    ``threshold = t_critical(n_a + n_b - 2) * se``. "greater"/"less" only when both have at least
    2 values, ``|diff| > threshold`` and ``|diff| >= min_effect``; otherwise "same" (no decision;
    threshold NaN with fewer than 2 values).
    """
    if a.n < 2 or b.n < 2:
        return "same", a.mean - b.mean, math.nan
    d = a.mean - b.mean
    se = math.sqrt(a.std**2 / a.n + b.std**2 / b.n)
    thr = t_critical(a.n + b.n - 2) * se
    if abs(d) > thr and abs(d) >= min_effect:
        return ("greater" if d > 0 else "less"), d, thr
    return "same", d, thr


def _geomean_log10(xs: Sequence[Any]) -> float:
    vals = [math.log10(x) for x in xs if isinstance(x, (int, float)) and x > 0 and math.isfinite(x)]
    return sum(vals) / len(vals) if vals else math.nan


def _median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    if not s:
        return math.nan
    k = len(s) // 2
    return s[k] if len(s) % 2 else 0.5 * (s[k - 1] + s[k])


@dataclass
class Group:
    """All runs of one (model, activation), and their statistics over seeds."""

    model: str
    activation: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def stat(self, fn: Any) -> Stat:
        vals = []
        for r in self.runs:
            v = fn(r)
            if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
                vals.append(float(v))
        return Stat(vals)

    # per-run quantities -------------------------------------------------------------------
    @property
    def acc(self) -> Stat:
        return self.stat(lambda r: r["history"]["test_acc"][-1])

    @property
    def best_acc(self) -> Stat:
        return self.stat(lambda r: max(r["history"]["test_acc"]))

    def dead_at(self, key: str, i: int) -> Stat:
        return self.stat(lambda r: r["history"][key][i] if r["history"][key] else None)

    @property
    def log_ratio(self) -> Stat:
        """log10 of the first layer's to the last layer's gradient norm, geometric mean over epochs."""
        return self.stat(lambda r: _geomean_log10(r["history"]["first_last_ratio"]))

    @property
    def log_max_grad(self) -> Stat:
        """log10 of the largest per-layer gradient norm over all steps."""
        def f(r: dict[str, Any]) -> float | None:
            m = max((v for row in r["history"]["grad_norms"] for v in row
                     if isinstance(v, (int, float)) and math.isfinite(v)), default=None)
            return math.log10(m) if m and m > 0 else None
        return self.stat(f)

    @property
    def vanishing_share(self) -> Stat:
        return self.stat(lambda r: _share(r["history"]["vanishing"]))

    @property
    def exploding_share(self) -> Stat:
        return self.stat(lambda r: _share(r["history"]["exploding"]))

    @property
    def step_ms(self) -> Stat:
        return self.stat(lambda r: 1000 * _median(r["history"]["step_time_s"]))

    @property
    def saved_mib(self) -> Stat:
        return self.stat(lambda r: r.get("saved_bytes", math.nan) / 2**20)

    def act_param(self, which: str, i: int, agg: str = "mean_abs") -> Stat:
        """An activation parameter (``weight`` of PReLU, ``bias`` of FReLU) at history index ``i``,
        as the mean of absolute values over layers (``mean_abs``) or the plain mean (``mean``)."""
        def f(r: dict[str, Any]) -> float | None:
            ps = r["history"]["act_params"]
            if not ps:
                return None
            vals = [v for k, vs in ps[i].items() if k.endswith("." + which) for v in vs]
            if not vals:
                return None
            return sum(abs(v) if agg == "mean_abs" else v for v in vals) / len(vals)
        return self.stat(f)


def _share(flags: Sequence[Any]) -> float | None:
    flags = [bool(f) for f in flags]
    return sum(flags) / len(flags) if flags else None


def summarise(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str], Group]:
    """Group finished runs by (model, activation), keeping the order they came in."""
    groups: dict[tuple[str, str], Group] = {}
    for r in results:
        key = (r["model"], r["activation"])
        groups.setdefault(key, Group(*key)).runs.append(r)
    return groups


# --------------------------------------------------------------------------------------------
# Verdicts


@dataclass
class Verdict:
    """One claim, tested on one model (and against one baseline): what was measured and the verdict."""

    claim: str
    model: str
    measured: str
    verdict: str
    reason: str


def _name(a: str) -> str:
    return DISPLAY.get(a, a)


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


def verdicts(groups: dict[tuple[str, str], Group], models: Sequence[str], chance: float = 0.1) -> list[Verdict]:
    """The article's claims, each weighed per model against the runs that test it.

    Claims (only those whose activations were run):
      1. LeakyReLU and PReLU mitigate dying ReLU: dead fraction at the end, lower than ReLU's.
      2. LeakyReLU and PReLU mitigate vanishing gradients: log10 first/last gradient-norm ratio,
         higher than ReLU's, where ReLU's gradients vanish (flagged in at least half the epochs).
      3. FReLU avoids dying ReLU when b != 0: dead fraction at the end, lower than ReLU's.
      4. FReLU causes exploding gradients as b grows: where |b| grew, the largest gradient norm,
         higher than ReLU's.
      5. Funnel gives better accuracy than ReLU and PReLU: final test accuracy, higher.
    """
    out: list[Verdict] = []
    for m in models:
        g = {a: grp for (mm, a), grp in groups.items() if mm == m}
        relu = g.get("relu")
        # 1 and 3: dying ReLU
        for act, claim in (("leaky_relu", "LeakyReLU mitigates dying ReLU"),
                           ("prelu", "PReLU mitigates dying ReLU"),
                           ("flexible_relu", "FReLU avoids dying ReLU when b != 0")):
            if act not in g or relu is None:
                continue
            a_dead, r_dead = g[act].dead_at("dead", -1), relu.dead_at("dead", -1)
            inact = g[act].dead_at("inactive", -1)
            measured = (f"dead units at the end: {_name(act)} {_pct(a_dead)} vs ReLU {_pct(r_dead)}; "
                        f"{_name(act)} units never positive: {_pct(inact)}")
            if act == "flexible_relu":
                b = g[act].act_param("bias", -1, "mean_abs")
                measured += f"; |b| at the end {b.fmt(1, 2)}"
            ok, why = _relu_dies(relu)
            if not ok:
                out.append(Verdict(claim, m, measured, UNDECIDED, why))
                continue
            if act == "flexible_relu":
                b = g[act].act_param("bias", -1, "mean_abs")
                if not b.n or min(b.values) < 0.01:
                    out.append(Verdict(claim, m, measured, UNDECIDED, "b was (near) 0 in some run"))
                    continue
            v, why = _compare(a_dead, r_dead, 0.01, "less")
            out.append(Verdict(claim, m, measured, v, why))
        # 2: vanishing gradients
        for act in ("leaky_relu", "prelu"):
            if act not in g or relu is None:
                continue
            claim = f"{_name(act)} mitigates vanishing gradients"
            a_r, r_r = g[act].log_ratio, relu.log_ratio
            van = relu.vanishing_share
            measured = (f"log10(first/last layer gradient norm): {_name(act)} {a_r.fmt(1, 2)} vs ReLU "
                        f"{r_r.fmt(1, 2)}; epochs flagged vanishing: {_name(act)} "
                        f"{_pct(g[act].vanishing_share)}, ReLU {_pct(van)}")
            if not van.n or van.mean < 0.5:
                out.append(Verdict(claim, m, measured, UNDECIDED,
                                   "ReLU's gradients did not vanish here (flagged in under half the "
                                   "epochs); try a larger --depth"))
                continue
            v, why = _compare(a_r, r_r, 0.1, "greater")
            out.append(Verdict(claim, m, measured, v, why))
        # 4: FReLU exploding as b grows
        if "flexible_relu" in g and relu is not None:
            fr = g["flexible_relu"]
            claim = "FReLU causes exploding gradients as b grows"
            b0, b1 = fr.act_param("bias", 0, "mean_abs"), fr.act_param("bias", -1, "mean_abs")
            growth = Stat([e - s for s, e in zip(b0.values, b1.values)])
            lf, lr_ = fr.log_max_grad, relu.log_max_grad
            measured = (f"|b| from {b0.fmt(1, 2)} to {b1.fmt(1, 2)}; log10 largest gradient norm: "
                        f"FReLU {lf.fmt(1, 2)} vs ReLU {lr_.fmt(1, 2)}; epochs flagged exploding: "
                        f"FReLU {_pct(fr.exploding_share)}, ReLU {_pct(relu.exploding_share)}")
            if growth.n < 2:
                out.append(Verdict(claim, m, measured, UNDECIDED, "fewer than 2 seeds"))
            elif min(growth.values) <= 0.05:
                out.append(Verdict(claim, m, measured, UNDECIDED,
                                   "|b| did not grow (by more than 0.05) in every seed, so the claim's "
                                   "condition was not met"))
            else:
                v, why = _compare(lf, lr_, 0.1, "greater")
                out.append(Verdict(claim, m, measured, v, why))
        # 5: Funnel accuracy
        if "funnel_relu" in g:
            for base in ("relu", "prelu"):
                if base not in g:
                    continue
                claim = f"Funnel is more accurate than {_name(base)}"
                fa, ba = g["funnel_relu"].acc, g[base].acc
                measured = f"test accuracy: Funnel {_pct(fa)} vs {_name(base)} {_pct(ba)}"
                v, why = _compare(fa, ba, 0.005, "greater")
                if ba.n and ba.mean < 2 * chance:
                    why += f"; note that {_name(base)} hardly trained in this setting"
                out.append(Verdict(claim, m, measured, v, why))
    return out


# --------------------------------------------------------------------------------------------
# Plots


def _figure(width: float, height: float) -> Any:
    """A new matplotlib figure with an Agg canvas (:func:`rectifiers._util.matplotlib_figure`)."""
    from ._util import matplotlib_figure

    Figure, Canvas = matplotlib_figure()
    fig = Figure(figsize=(width, height), layout="constrained")
    Canvas(fig)
    return fig


def _save(fig: Any, path: str) -> None:
    from ._util import save_figure

    save_figure(fig, path, "png", dpi=100)


COLORS = {"relu": "#1f77b4", "leaky_relu": "#ff7f0e", "prelu": "#2ca02c", "flexible_relu": "#d62728",
          "funnel_relu": "#9467bd"}

#: A stored value at or beyond this magnitude stands for infinity (results store inf as +-1e308).
_INF_SENTINEL = 1e300


def _value(v: Any) -> float:
    """A stored number as a float; NaN for None, NaN, infinities and the stored +-1e308."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    v = float(v)
    return v if math.isfinite(v) and abs(v) < _INF_SENTINEL else math.nan


def diverged(run: dict[str, Any]) -> bool:
    """Whether a run diverged: a training or test loss after the start is NaN / infinite (or None,
    the stored form of NaN), or a gradient norm is."""
    h = run["history"]
    losses = list(h.get("train_loss", [])[1:]) + list(h.get("test_loss", [])[1:])
    if any(math.isnan(_value(v)) for v in losses):
        return True
    return any(math.isnan(_value(v)) for row in h.get("grad_norms", []) for v in row)


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
        from .plotting import plot_overview
    except ImportError:
        plot_overview = None
    if plot_overview is not None:
        from ._util import save_figure

        save_figure(plot_overview(list(names)), path, "png", dpi=70)
        return
    import torch

    from .curves import curve

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


# --------------------------------------------------------------------------------------------
# Documents: a list of blocks rendered as Markdown and as HTML


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


class Doc:
    """Headings, paragraphs, tables, images and code, rendered to Markdown and HTML alike."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, head: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(("table", (head, rows)))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def items(self, items: list[str]) -> None:
        self.blocks.append(("ul", items))

    def markdown(self) -> str:
        out = []
        for kind, v in self.blocks:
            if kind == "h":
                out.append("#" * v[0] + " " + v[1])
            elif kind == "p":
                out.append(v)
            elif kind == "table":
                out.append(_md_table(*v))
            elif kind == "img":
                out.append(f"![{v[1]}]({v[0]})")
            elif kind == "code":
                out.append("```\n" + v + "\n```")
            elif kind == "ul":
                out.append("\n".join(f"- {i}" for i in v))
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = []
        for kind, v in self.blocks:
            if kind == "h":
                out.append(f"<h{v[0]}>{html.escape(v[1])}</h{v[0]}>")
            elif kind == "p":
                out.append(f"<p>{_inline(v)}</p>")
            elif kind == "table":
                out.append(_html_table(*v))
            elif kind == "img":
                out.append(f'<p><img src="{html.escape(v[0])}" alt="{html.escape(v[1])}"></p>')
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(v)}</code></pre>")
            elif kind == "ul":
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in v) + "</ul>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
                 "table{border-collapse:collapse;margin:1em 0;font-size:90%}"
                 "td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}th{background:#f3f3f3}"
                 "img{max-width:100%}code{background:#f6f6f6}pre{background:#f6f6f6;padding:.6em}")
        return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def _inline(text: str) -> str:
    """Escape, then render `code` and **bold** spans."""
    import re

    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)


# --------------------------------------------------------------------------------------------
# The report


def _command(cfg: dict[str, Any]) -> str:
    from .compare import Config

    d = Config()
    parts = ["rectifiers compare"]
    if cfg["activations"] != d.activations:
        parts.append("--activations " + " ".join(cfg["activations"]))
    if cfg["models"] != d.models:
        parts.append("--models " + " ".join(cfg["models"]))
    if cfg["seeds"] != d.seeds:
        parts.append("--seeds " + " ".join(map(str, cfg["seeds"])))
    for k in ("epochs", "depth", "width", "lr", "momentum", "batch_size", "init", "provoke", "data",
              "image_size", "limit"):
        if cfg[k] != getattr(d, k):
            parts.append(f"--{k.replace('_', '-')} {cfg[k]}")
    return " ".join(parts)


def write_report(out_dir: str, cfg: dict[str, Any], results: Sequence[dict[str, Any]],
                 meta: dict[str, Any]) -> dict[str, str]:
    """Write ``report.md``, ``report.html`` and the PNGs into ``out_dir``; return their paths.

    The report is written even when a plot cannot be drawn (matplotlib missing, or data no plot
    can show): the plot is then left out and the report says why. Diverged runs (NaN or infinite
    losses or gradient norms, :func:`diverged`) are named in the report and marked in the plots.
    ``meta["step_timing"]`` (from :func:`rectifiers.compare.interleaved_step_times`) gives the step
    times; without it, the median step time of each run is shown, and the report says so.
    """
    from ._util import atomic_write_bytes

    os.makedirs(out_dir, exist_ok=True)
    models = list(cfg["models"])
    acts = list(cfg["activations"])
    groups = summarise(results)
    chance = 1 / int(meta.get("num_classes", 10))

    files = {
        "curves": "training_curves.png",
        "dead": "dead_units.png",
        "grads": "gradient_norms.png",
        "acts": "activations.png",
    }
    drawers = {
        "curves": lambda p: plot_curves(groups, models, p),
        "dead": lambda p: plot_dead(groups, models, p),
        "grads": lambda p: plot_grads(groups, models, p),
        "acts": lambda p: plot_activations(acts, p),
    }
    failed: dict[str, str] = {}
    for key, draw in drawers.items():
        try:
            draw(os.path.join(out_dir, files[key]))
        except Exception as e:  # a missing plot must not cost the report
            failed[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
    timing = meta.get("step_timing") or None

    doc = Doc()
    doc.h(1, "Rectifier comparison")
    seeds = ", ".join(map(str, cfg["seeds"]))
    doc.p(f"Data: {meta['data']}. Models: {', '.join(models)} with depth {cfg['depth']}; "
          f"{cfg['epochs']} epochs of SGD (lr {cfg['lr']:g}, momentum {cfg['momentum']:g}, global batch "
          f"{cfg['batch_size']}); initialisation `{cfg['init']}`"
          + (f"; provocation: every layer feeding an activation starts with bias {cfg['provoke']:g}"
             if cfg["provoke"] is not None else "")
          + f"; seeds {seeds}. Device {meta['device']}, {meta['world_size']} process(es), "
          f"{meta['threads']} thread(s), torch {meta['torch']}; wall time {meta['wall_s']:.0f} s"
          + (" (of the last, resumed invocation)." if meta.get("resumed") else "."))
    doc.p("Reproduce with:")
    doc.code(_command(cfg))

    doc.h(2, "Results")
    doc.p("Mean ± sample standard deviation over seeds. Dead: units whose derivative was 0 on every "
          "training image (they can no longer learn); never positive: units never in the positive region "
          "(for LeakyReLU and PReLU these still pass a gradient); both measured with "
          "`rectifiers.diagnostics.DeadUnitMonitor` on the training set (up to 2048 images, model in eval "
          "mode) before training and after the last epoch. Gradient ratio: log10 of the first layer's "
          "gradient norm over the last's (`GradientFlowMonitor`), geometric mean over epochs; 0 means equal, "
          "-1 a tenfold drop towards the input. " + _step_time_text(timing) + " Saved for backward: the bytes autograd keeps for the "
          "backward pass of one training step, counted once per distinct storage with "
          "`torch.autograd.graph.saved_tensors_hooks` (parameters excluded).")
    head = ["model", "activation", "test acc.", "dead start", "dead end", "never positive end",
            "grad ratio (log10)", "vanishing / exploding epochs",
            "step ms (x ReLU)" if timing else "step ms", "saved for backward MiB"]
    rows = []
    stalled = []
    diverged_runs = []
    for m in models:
        for a in acts:
            g = groups.get((m, a))
            if g is None:
                continue
            acc = g.acc
            if acc.n and acc.mean < 2 * chance:
                stalled.append(f"{m.upper()} {_name(a)} ({_pct(acc)})")
            div = [r["seed"] for r in g.runs if diverged(r)]
            if div:
                diverged_runs.append(f"{m.upper()} {_name(a)} (seed{'s' if len(div) > 1 else ''} "
                                     f"{', '.join(map(str, div))})")
            rows.append([
                m, _name(a), _pct(acc) + (f" **diverged {len(div)}/{len(g.runs)}**" if div else ""), _pct(g.dead_at("dead", 0)), _pct(g.dead_at("dead", -1)),
                _pct(g.dead_at("inactive", -1)), g.log_ratio.fmt(1, 2),
                f"{_pct(g.vanishing_share)} / {_pct(g.exploding_share)}",
                _step_cell(timing, m, a) if timing else g.step_ms.fmt(1, 2), g.saved_mib.fmt(1, 3),
            ])
    doc.table(head, rows)
    if diverged_runs:
        doc.p("**Diverged** (a training or test loss, or a gradient norm, became NaN or infinite; NaN "
              "values are gaps in the plots and left out of the means): " + "; ".join(diverged_runs)
              + ". Such runs say the setting is unstable (a smaller `--lr` is the usual remedy), not which "
              "activation is better.")
    if "cuda" in meta["device"]:
        peaks = [r.get("cuda_peak_bytes") for r in results if r.get("cuda_peak_bytes")]
        if peaks:
            doc.p(f"CUDA peak memory allocated in an epoch (`torch.cuda.max_memory_allocated`): "
                  f"{max(peaks) / 2**20:.1f} MiB at most over all runs.")
    doc.p(f"Process peak resident memory (`getrusage`): {meta['peak_rss_mib']:.0f} MiB "
          f"(grew by {meta['peak_rss_growth_mib']:.0f} MiB during the runs; it includes Python, torch and "
          f"the data, and is shared by all runs, so the per-run figure above is the comparable one).")
    if stalled:
        hint = ("" if cfg["init"] == "kaiming" else
                " With PyTorch's default initialisation every layer shrinks the signal (weights of variance "
                "1/(3 fan_in)), so a deep plain network barely moves from its start; `--init kaiming` "
                "(the activation's own gain) is the usual remedy.")
        doc.p("**Hardly trained** (final test accuracy under twice the chance level of "
              f"{100 * chance:.0f}%): " + "; ".join(stalled) + "." + hint)
    fparams = []
    for m in models:
        for a, which in (("prelu", "weight"), ("flexible_relu", "bias")):
            g = groups.get((m, a))
            if g is None:
                continue
            fparams.append(f"{m.upper()} {_name(a)} {'slope a' if which == 'weight' else 'bias b'} "
                           f"(mean over layers): {g.act_param(which, 0, 'mean').fmt(1, 3)} at the start, "
                           f"{g.act_param(which, -1, 'mean').fmt(1, 3)} at the end")
    if fparams:
        doc.p("Learned activation parameters: " + "; ".join(fparams) + ".")
    if "mlp" in models and "funnel_relu" in acts:
        doc.p("In the MLP there is no spatial neighbourhood: there the funnel activation is "
              "max(x, BN(w x)) per feature (kernel size 1), a much weaker condition than the CNN's 3 x 3 one.")

    doc.h(2, "Plots")
    alts = {"curves": "test accuracy and training loss per epoch",
            "dead": "dead and never-positive units per epoch",
            "grads": "gradient norm per layer, and first/last ratio over training",
            "acts": "the activations and their derivatives"}
    for key, alt in alts.items():
        if key in failed:
            doc.p(f"Plot {files[key]} ({alt}) could not be drawn: {failed[key]}.")
        else:
            doc.img(files[key], alt)

    doc.h(2, "The article's claims")
    doc.p("Each claim is weighed on each model. Rule: two groups of runs differ when the difference of "
          "their means exceeds its standard error over seeds, sqrt(s_a^2/n_a + s_b^2/n_b), times the "
          "two-sided 95% Student-t critical value for n_a + n_b - 2 degrees of freedom (4.30 for 2 + 2 "
          "seeds, 2.78 for 3 + 3; so two groups from one distribution get a verdict about 5% of the "
          "time), and also a minimum effect (1 percentage "
          "point of dead units, 0.5 point of accuracy, 0.1 in log10 gradient norm); otherwise, or with "
          "fewer than 2 seeds, or when the claim's premise did not occur in the run, the verdict is "
          "'cannot decide'. Note that a LeakyReLU or PReLU unit with a slope other than 0 cannot be dead "
          "by definition (its derivative is the slope), and that FReLU's derivative in x is 0 for x <= 0 "
          "exactly as ReLU's: b shifts the output, not the gradient.")
    if "funnel_relu" in acts:
        doc.p("The funnel activation holds a BatchNorm in its condition T(x); none of the other models has "
              "any normalisation. Part of an accuracy or trainability advantage of Funnel can therefore come "
              "from the normalisation rather than from max(x, T(x)); this comparison cannot separate the two.")
    vs = verdicts(groups, models, chance)
    doc.table(["claim", "model", "measured", "verdict", "why"],
              [[v.claim, v.model, v.measured, f"**{v.verdict}**", v.reason] for v in vs])

    md = doc.markdown()
    atomic_write_bytes(os.path.join(out_dir, "report.md"), md.encode())
    atomic_write_bytes(os.path.join(out_dir, "report.html"), doc.html("Rectifier comparison").encode())
    return {"md": os.path.join(out_dir, "report.md"), "html": os.path.join(out_dir, "report.html"),
            **{k: os.path.join(out_dir, v) for k, v in files.items() if k not in failed}}


def _step_time_text(timing: dict[str, Any] | None) -> str:
    if not timing:
        return ("Step time: median wall-clock of a training step (forward, backward, optimizer, "
                "monitors included) of each run, mean over seeds; the runs were timed one after another, "
                "so machine noise during one run lands on that run alone.")
    rounds = ", ".join(f"{m.upper()} {n}" for m, n in timing["rounds"].items())
    return ("Step time: measured side by side after training: fresh models of every activation took "
            "one training step each in turn (forward, backward, optimizer; no monitors; batch "
            f"{timing['batch']}), round after round (rounds: {rounds}), so machine noise falls on every "
            "activation alike; median ms per step over the rounds, and in parentheses its ratio to "
            "ReLU's median. Each run's own step times (monitors included) are in its runs/*.json.")


def _step_cell(timing: dict[str, Any], model: str, act: str) -> str:
    ms = timing["ms"].get(model, {})
    if not ms.get(act):
        return "n/a"
    med = _median(ms[act])
    base = ms.get("relu")
    if not base:
        return f"{med:.2f}"
    return f"{med:.2f} ({med / _median(base):.2f}x)"
