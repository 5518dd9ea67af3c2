"""A Lightning callback that watches dead units and gradient flow while a ``Trainer`` fits.

Needs the ``lightning`` extra (``pip install 'rectifiers[lightning]'``, after torch; add the
``tensorboard`` extra for ``TensorBoardLogger``); the callback derives from
``lightning.pytorch.Callback``, or from ``pytorch_lightning.Callback`` when only the older
package is installed (it also works in a ``pytorch_lightning.Trainer``). Without
either, importing this module raises :class:`rectifiers._util.MissingExtraError` (an
``ImportError``) with a one-line message naming the extra. ``import rectifiers`` never imports
Lightning.

Usage::

    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger
    from rectifiers.integrations.lightning import DiagnosticsCallback

    cb = DiagnosticsCallback(every_n_steps=100)
    trainer = pl.Trainer(max_epochs=10, logger=TensorBoardLogger("runs"), callbacks=[cb])
    trainer.fit(model, train_loader)
    print(cb.last_dead_report.to_table())        # the last window that was logged
    print(cb.flow_monitor.report().to_table())   # every logged step's gradient norms

What it does:

* at fit start, attaches a :class:`~rectifiers.diagnostics.DeadUnitMonitor` and a
  :class:`~rectifiers.diagnostics.GradientFlowMonitor` to the ``LightningModule`` (options:
  ``dead_unit_options`` / ``gradient_flow_options``, passed to their constructors; a model
  without any activation module gets a warning and no dead-unit monitor). The dead-unit
  monitor is detached while validation runs (sanity check included), so it counts the
  training batches only;
* at every optimizer step whose ``trainer.global_step`` is a multiple of ``every_n_steps``
  (default: the trainer's ``log_every_n_steps``), and at the last batch of each epoch: from
  ``on_before_optimizer_step`` (after ``backward`` and AMP unscaling, before gradient
  clipping), records the gradients (``flow_monitor.step()``), takes both reports, writes them
  at that global step to every logger of the trainer, then starts a new dead-unit window
  (``dead_monitor.reset()``): each dead-unit point covers the training batches since the
  previous one; the gradient-flow flags and ratio median cover all logged steps so far;
* loggers whose ``experiment`` has ``add_scalar`` and ``add_histogram`` (``TensorBoardLogger``)
  get the scalars and histograms of :mod:`rectifiers.integrations.tensorboard`, under the tags
  documented there; every other logger (CSV, MLflow, W&B, ...) gets the same scalars through
  ``logger.log_metrics(metrics, step)``;
* detaches both monitors when fitting ends (or fails). The monitors and the last reports stay
  on the callback: ``dead_monitor``, ``flow_monitor``, ``last_step``, ``last_dead_report``,
  ``last_flow_report``.

Only global rank 0 records and writes (the reports describe rank 0's batches); the other ranks
reset their windows and nothing else.

Cost: while attached, every activation call costs one comparison and one reduction over its
input (no device sync); the counters take two float64 numbers per unit of each activation's
feature shape. At a logged step only: one gradient norm per parameter tensor, one device sync
for the gradients and one per activation use site for the reports, and a few records per
layer to each logger. Steps in between pay nothing for the gradient flow.
"""

from __future__ import annotations

import warnings
from typing import Any

from .._util import MissingExtraError

_EXTRA = "pip install 'rectifiers[lightning]'"


def _why(e: BaseException) -> str:
    """An import failure in one line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _import_callback() -> tuple[type, str]:
    """Lightning's ``Callback`` class and the package name (``lightning`` first)."""
    broken: list[str] = []
    for pkg, mod in (("lightning", "lightning.pytorch"), ("pytorch_lightning", "pytorch_lightning")):
        try:
            module = __import__(mod, fromlist=["Callback"])
            return module.Callback, pkg
        except Exception as e:  # a broken install (or a package it imports) fails in many ways
            if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == pkg:
                continue  # not installed
            why = _why(e)
            if why not in broken:
                broken.append(why)
    if broken:
        why = "; ".join(broken)
        if "torchvision" in why:  # torchmetrics imports torchvision whenever it is installed
            fix = "torchvision does not match this torch: install its build for this torch, or uninstall it"
        else:
            fix = "reinstall it"
        raise MissingExtraError(
            f"rectifiers.integrations.lightning: Lightning ({_EXTRA}) is installed but cannot be "
            f"imported: {why}; {fix}"
        )
    raise MissingExtraError(
        f"rectifiers.integrations.lightning needs Lightning, which is not installed: {_EXTRA}"
    )


Callback, LIGHTNING_PACKAGE = _import_callback()

from ..diagnostics import (  # noqa: E402  (after the check: the one-line error comes first)
    DeadUnitMonitor,
    DeadUnitReport,
    GradientFlowMonitor,
    GradientFlowReport,
)
from . import _scalars  # noqa: E402

__all__ = ["DiagnosticsCallback", "LIGHTNING_PACKAGE"]


class DiagnosticsCallback(Callback):  # type: ignore[misc, valid-type]
    """Attach both diagnostics monitors to the ``LightningModule`` and log their reports.

    Args:
        every_n_steps: log at every optimizer step whose ``trainer.global_step`` is a multiple
            of this (default ``None``: the trainer's ``log_every_n_steps``, 50 unless set).
        log_at_epoch_end: also log at the last batch of each training epoch (default True).
        dead_units: watch dead units (default True).
        gradient_flow: watch the gradient flow (default True).
        dead_unit_options: keyword arguments for
            :class:`~rectifiers.diagnostics.DeadUnitMonitor` (``near_dead_threshold``,
            ``channel_dim``, ``extra_rules``).
        gradient_flow_options: keyword arguments for
            :class:`~rectifiers.diagnostics.GradientFlowMonitor` (thresholds,
            ``track_params``, ``include_activations``; not ``optimizer`` or ``every``, which
            the callback drives).
        dead_prefix, flow_prefix: tag prefixes (defaults ``rectifiers/dead`` and
            ``rectifiers/grad``).
        histograms: write histograms to loggers that take them (default True).

    See the module docstring for what is recorded, when, and at what cost.
    """

    def __init__(
        self,
        every_n_steps: int | None = None,
        *,
        log_at_epoch_end: bool = True,
        dead_units: bool = True,
        gradient_flow: bool = True,
        dead_unit_options: dict[str, Any] | None = None,
        gradient_flow_options: dict[str, Any] | None = None,
        dead_prefix: str = _scalars.DEAD_PREFIX,
        flow_prefix: str = _scalars.FLOW_PREFIX,
        histograms: bool = True,
    ) -> None:
        super().__init__()
        if every_n_steps is not None and (
                isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1):
            raise ValueError(f"DiagnosticsCallback: every_n_steps must be a positive int or None, got {every_n_steps!r}")
        if not (dead_units or gradient_flow):
            raise ValueError("DiagnosticsCallback: dead_units and gradient_flow are both False: nothing to watch")
        flow_opts = dict(gradient_flow_options or {})
        for k in ("optimizer", "every"):
            if k in flow_opts:
                raise ValueError(
                    f"DiagnosticsCallback: gradient_flow_options cannot set {k!r}: the callback records "
                    "the gradients itself, at the steps it logs (set every_n_steps instead)"
                )
        for name, p in (("dead_prefix", dead_prefix), ("flow_prefix", flow_prefix)):
            if not isinstance(p, str) or not p.strip("/"):
                raise ValueError(f"DiagnosticsCallback: {name} must be a non-empty string, got {p!r}")
        self.every_n_steps = every_n_steps
        self.log_at_epoch_end = bool(log_at_epoch_end)
        self.dead_units = bool(dead_units)
        self.gradient_flow = bool(gradient_flow)
        self.dead_unit_options = dict(dead_unit_options or {})
        self.gradient_flow_options = flow_opts
        self.dead_prefix = dead_prefix
        self.flow_prefix = flow_prefix
        self.histograms = bool(histograms)
        self.dead_monitor: DeadUnitMonitor | None = None
        self.flow_monitor: GradientFlowMonitor | None = None
        self.last_step: int | None = None
        self.last_dead_report: DeadUnitReport | None = None
        self.last_flow_report: GradientFlowReport | None = None
        self._every = every_n_steps or 50
        self._fitting = False

    # -- attaching and detaching ----------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._detach()
        self._every = self.every_n_steps or int(getattr(trainer, "log_every_n_steps", 50) or 50)
        self.last_step = None
        self.last_dead_report = self.last_flow_report = None
        self.dead_monitor = self.flow_monitor = None
        if self.dead_units:
            try:
                self.dead_monitor = DeadUnitMonitor(pl_module, **self.dead_unit_options)
            except ValueError as e:
                if "no recognised activation" not in str(e):
                    raise
                warnings.warn(f"DiagnosticsCallback: no dead-unit statistics: {e}", stacklevel=2)
            else:
                self.dead_monitor.attach()
        if self.gradient_flow:
            self.flow_monitor = GradientFlowMonitor(pl_module, **self.gradient_flow_options).attach()
        self._fitting = True

    def _detach(self) -> None:
        self._fitting = False
        for m in (self.dead_monitor, self.flow_monitor):
            if m is not None:
                m.detach()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._detach()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._detach()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit":
            self._detach()

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if self.dead_monitor is not None:
            self.dead_monitor.detach()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.dead_monitor is not None and self._fitting:
            self.dead_monitor.attach()

    # -- recording and logging ------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        step = int(trainer.global_step)
        due = step % self._every == 0 or (self.log_at_epoch_end and bool(getattr(trainer, "is_last_batch", False)))
        if not due or step == self.last_step:
            return
        self.last_step = step
        if getattr(trainer, "is_global_zero", True):
            drep = frep = None
            if self.flow_monitor is not None:
                self.flow_monitor.step()
                frep = self.flow_monitor.report()
            if self.dead_monitor is not None:
                drep = self.dead_monitor.report()
            self.last_dead_report, self.last_flow_report = drep, frep
            self._log(trainer, step, drep, frep)
        if self.dead_monitor is not None:
            self.dead_monitor.reset()

    def _log(self, trainer: Any, step: int, drep: DeadUnitReport | None, frep: GradientFlowReport | None) -> None:
        for logger in getattr(trainer, "loggers", None) or []:
            exp = getattr(logger, "experiment", None)
            if callable(getattr(exp, "add_scalar", None)) and callable(getattr(exp, "add_histogram", None)):
                if drep is not None:
                    _scalars.log_dead_units(exp, drep, step, self.dead_prefix, histograms=self.histograms)
                if frep is not None and frep.num_steps:
                    _scalars.log_gradient_flow(exp, frep, step, self.flow_prefix, histograms=self.histograms)
            else:
                metrics: dict[str, float] = {}
                if drep is not None:
                    metrics.update(_scalars.dead_unit_scalars(drep, self.dead_prefix))
                if frep is not None:
                    metrics.update(_scalars.gradient_flow_scalars(frep, self.flow_prefix))
                if metrics:
                    logger.log_metrics(metrics, step=step)
