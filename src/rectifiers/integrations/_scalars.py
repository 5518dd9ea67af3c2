"""The numbers the logging integrations write, and the writer calls (no tensorboard import here).

:mod:`rectifiers.integrations.tensorboard` documents the tags and re-exports the public
functions; :mod:`rectifiers.integrations.lightning` uses them too, so that a Lightning logger
without TensorBoard (CSV, MLflow, ...) receives the same scalars under the same names.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..diagnostics import DeadUnitMonitor, DeadUnitReport, GradientFlowMonitor, GradientFlowReport

__all__ = [
    "DEAD_PREFIX",
    "FLOW_PREFIX",
    "tag_part",
    "dead_unit_scalars",
    "dead_unit_histograms",
    "gradient_flow_scalars",
    "gradient_flow_histograms",
    "log_dead_units",
    "log_gradient_flow",
    "log_monitors",
]

#: Default tag prefix of the dead-unit numbers.
DEAD_PREFIX = "rectifiers/dead"
#: Default tag prefix of the gradient-flow numbers.
FLOW_PREFIX = "rectifiers/grad"

#: The fractions written per use site and for the whole model, in this order.
_DEAD_FIELDS = ("dead_fraction", "inactive_fraction", "near_dead_fraction", "activation_rate")

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def tag_part(name: str) -> str:
    """A layer or parameter name as it appears in a tag.

    ``#`` (the use-site separator of :class:`~rectifiers.diagnostics.DeadUnitMonitor`,
    ``act#1``) becomes ``-``, and any other character outside ``[A-Za-z0-9_.-]`` becomes ``_``;
    module paths (``layer1.0.relu``) are kept as they are. ``-`` never occurs in a module path,
    so two different use sites never share a tag.
    """
    return _UNSAFE.sub("_", name.replace("#", "-"))


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix.strip("/"):
        raise ValueError(f"prefix must be a non-empty string such as 'rectifiers/dead', got {prefix!r}")
    return prefix.rstrip("/")


def _check_report(report: Any, cls: type, fn: str) -> None:
    if not isinstance(report, cls):
        hint = " (call .report() on the monitor, or use log_monitors)" if isinstance(
            report, (DeadUnitMonitor, GradientFlowMonitor)) else ""
        raise TypeError(f"{fn}: report must be a {cls.__name__}, got {type(report).__name__}{hint}")


def _check_step(step: Any, fn: str, allow_none: bool = False) -> None:
    if step is None and allow_none:
        return
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"{fn}: step must be a non-negative int (the global step), got {step!r}")


# --------------------------------------------------------------------------------------------
# The numbers
# --------------------------------------------------------------------------------------------


def dead_unit_scalars(report: DeadUnitReport, prefix: str = DEAD_PREFIX) -> dict[str, float]:
    """The scalars of a dead-unit report, by tag (see :mod:`rectifiers.integrations.tensorboard`).

    ``{prefix}/{field}`` for the whole model and ``{prefix}/{field}/{site}`` per use site, for
    each field of ``dead_fraction``, ``inactive_fraction``, ``near_dead_fraction`` and
    ``activation_rate``; ``{prefix}/revived`` and ``{prefix}/newly_dead`` (unit counts) once the
    monitor has had a previous window. Empty when no activation was called in the window.
    """
    _check_report(report, DeadUnitReport, "dead_unit_scalars")
    p = _check_prefix(prefix)
    out: dict[str, float] = {}
    if not report.layers:
        return out
    for f in _DEAD_FIELDS:
        out[f"{p}/{f}"] = float(getattr(report, f))
    for f in ("revived", "newly_dead"):
        v = getattr(report, f)
        if v is not None:
            out[f"{p}/{f}"] = float(v)
    for layer in report.layers:
        site = tag_part(layer.name)
        for f in _DEAD_FIELDS:
            out[f"{p}/{f}/{site}"] = float(getattr(layer, f))
    return out


def dead_unit_histograms(report: DeadUnitReport, prefix: str = DEAD_PREFIX) -> dict[str, np.ndarray]:
    """``{prefix}/channel_activation_rate/{site}``: the per-channel activation rates of each use
    site with more than one channel (finite values only)."""
    _check_report(report, DeadUnitReport, "dead_unit_histograms")
    p = _check_prefix(prefix)
    out: dict[str, np.ndarray] = {}
    for layer in report.layers:
        v = np.asarray(layer.channel_activation_rate, dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        if layer.channels > 1 and v.size:
            out[f"{p}/channel_activation_rate/{tag_part(layer.name)}"] = v
    return out


def _row(report: GradientFlowReport, row: int) -> int:
    s = report.num_steps
    if not -s <= row < s:
        raise IndexError(f"row {row} is out of range: the report has {s} recorded steps")
    return row % s


def gradient_flow_scalars(report: GradientFlowReport, prefix: str = FLOW_PREFIX, row: int = -1) -> dict[str, float]:
    """The scalars of a gradient-flow report at one recorded step (``row``, default the last),
    by tag (see :mod:`rectifiers.integrations.tensorboard`).

    That step's ``{prefix}/norm/{layer}`` (left out where NaN: no gradient at that step, or a
    NaN gradient, which ``exploding`` reports), ``{prefix}/first_last_ratio`` (when defined) and ``{prefix}/param_mean/{param}``; and
    over all the report's steps, ``{prefix}/first_last_ratio_median`` (when defined),
    ``{prefix}/vanishing`` and ``{prefix}/exploding`` (1.0 or 0.0). Empty when the report has
    no recorded step.
    """
    _check_report(report, GradientFlowReport, "gradient_flow_scalars")
    p = _check_prefix(prefix)
    out: dict[str, float] = {}
    if not report.num_steps:
        return out
    r = _row(report, row)
    for j, name in enumerate(report.layers):
        v = float(report.norms[r, j])
        if not math.isnan(v):
            out[f"{p}/norm/{tag_part(name)}"] = v
    ratio = float(report.first_last_ratio[r])
    if not math.isnan(ratio):
        out[f"{p}/first_last_ratio"] = ratio
    if not math.isnan(report.first_last_ratio_median):
        out[f"{p}/first_last_ratio_median"] = float(report.first_last_ratio_median)
    out[f"{p}/vanishing"] = float(bool(report.vanishing))
    out[f"{p}/exploding"] = float(bool(report.exploding))
    for name, values in report.params.items():
        v = np.asarray(values[r], dtype=np.float64)
        out[f"{p}/param_mean/{tag_part(name)}"] = float(v.mean()) if v.size else math.nan
    return out


def gradient_flow_histograms(report: GradientFlowReport, prefix: str = FLOW_PREFIX,
                             row: int = -1) -> dict[str, np.ndarray]:
    """``{prefix}/param/{param}``: the values of each tracked activation parameter (PReLU
    ``weight``, FReLU ``bias``) at one recorded step (finite values only)."""
    _check_report(report, GradientFlowReport, "gradient_flow_histograms")
    p = _check_prefix(prefix)
    out: dict[str, np.ndarray] = {}
    if not report.num_steps:
        return out
    r = _row(report, row)
    for name, values in report.params.items():
        v = np.asarray(values[r], dtype=np.float64).reshape(-1)
        v = v[np.isfinite(v)]
        if v.size:
            out[f"{p}/param/{tag_part(name)}"] = v
    return out


# --------------------------------------------------------------------------------------------
# Writing to a SummaryWriter (anything with add_scalar and add_histogram)
# --------------------------------------------------------------------------------------------


def _check_writer(writer: Any, fn: str, histograms: bool) -> None:
    need = ("add_scalar", "add_histogram") if histograms else ("add_scalar",)
    missing = [m for m in need if not callable(getattr(writer, m, None))]
    if missing:
        raise TypeError(
            f"{fn}: writer must be a torch.utils.tensorboard.SummaryWriter (or have "
            f"{' and '.join(need)}), got {type(writer).__name__}"
        )


def _write(writer: Any, scalars: dict[str, float], hists: dict[str, np.ndarray], step: int) -> None:
    for tag, v in scalars.items():
        writer.add_scalar(tag, v, global_step=int(step))
    for tag, v in hists.items():
        writer.add_histogram(tag, v, global_step=int(step))


def log_dead_units(writer: Any, report: DeadUnitReport, step: int, prefix: str = DEAD_PREFIX, *,
                   histograms: bool = True) -> dict[str, float]:
    """Write a :class:`~rectifiers.diagnostics.DeadUnitReport` to ``writer`` at global ``step``.

    Scalars as :func:`dead_unit_scalars`; with ``histograms``, the per-channel activation rates
    as :func:`dead_unit_histograms`. Returns the scalars written, by tag.
    """
    _check_writer(writer, "log_dead_units", histograms)
    _check_step(step, "log_dead_units")
    scalars = dead_unit_scalars(report, prefix)
    hists = dead_unit_histograms(report, prefix) if histograms else {}
    _write(writer, scalars, hists, step)
    return scalars


def log_gradient_flow(writer: Any, report: GradientFlowReport, step: int | None,
                      prefix: str = FLOW_PREFIX, *, histograms: bool = True) -> dict[str, float]:
    """Write a :class:`~rectifiers.diagnostics.GradientFlowReport` to ``writer``.

    With an int ``step``: the report's last recorded step (norms, ratio, activation
    parameters) and its window summaries (ratio median, flags), all at global ``step``. With
    ``step=None``: every recorded step at the monitor's own step number (``report.steps``), the
    window summaries with the last one. Scalars as :func:`gradient_flow_scalars`; with
    ``histograms``, the activation parameters as :func:`gradient_flow_histograms`. Returns the
    scalars written at the last step, by tag (empty when nothing was recorded).
    """
    _check_writer(writer, "log_gradient_flow", histograms)
    _check_step(step, "log_gradient_flow", allow_none=True)
    _check_report(report, GradientFlowReport, "log_gradient_flow")
    p = _check_prefix(prefix)
    summary = (f"{p}/first_last_ratio_median", f"{p}/vanishing", f"{p}/exploding")
    rows = range(report.num_steps) if step is None else range(report.num_steps - 1, report.num_steps)
    scalars: dict[str, float] = {}
    for r in rows:
        last = r == report.num_steps - 1
        scalars = gradient_flow_scalars(report, p, row=r)
        if not last:
            scalars = {k: v for k, v in scalars.items() if k not in summary}
        hists = gradient_flow_histograms(report, p, row=r) if histograms else {}
        _write(writer, scalars, hists, int(report.steps[r]) if step is None else step)
    return scalars


def log_monitors(writer: Any, step: int, *, dead: DeadUnitMonitor | None = None,
                 flow: GradientFlowMonitor | None = None, dead_prefix: str = DEAD_PREFIX,
                 flow_prefix: str = FLOW_PREFIX, histograms: bool = True,
                 ) -> tuple[DeadUnitReport | None, GradientFlowReport | None]:
    """Take each given monitor's ``report()`` and write it at global ``step`` (see
    :func:`log_dead_units` and :func:`log_gradient_flow`). Returns the two reports (``None``
    for a monitor not given). Resetting a monitor's window is left to the caller."""
    if dead is None and flow is None:
        raise ValueError("log_monitors: give dead=DeadUnitMonitor(...), flow=GradientFlowMonitor(...) or both")
    if dead is not None and not isinstance(dead, DeadUnitMonitor):
        raise TypeError(f"log_monitors: dead must be a DeadUnitMonitor, got {type(dead).__name__}")
    if flow is not None and not isinstance(flow, GradientFlowMonitor):
        raise TypeError(f"log_monitors: flow must be a GradientFlowMonitor, got {type(flow).__name__}")
    _check_writer(writer, "log_monitors", histograms)
    _check_step(step, "log_monitors")
    drep = dead.report() if dead is not None else None
    frep = flow.report() if flow is not None else None
    if drep is not None:
        log_dead_units(writer, drep, step, dead_prefix, histograms=histograms)
    if frep is not None:
        log_gradient_flow(writer, frep, step, flow_prefix, histograms=histograms)
    return drep, frep
