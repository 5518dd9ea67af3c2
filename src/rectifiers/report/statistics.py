"""Statistics over seeds: one :class:`Group` per (model, activation), and the decision rule."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Stat", "Group", "t_critical", "decide", "summarise", "diverged"]


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
