"""Write the dead-unit and gradient-flow reports to TensorBoard.

Needs the ``tensorboard`` extra (``pip install 'rectifiers[tensorboard]'``, after torch); without
it, importing this module raises :class:`rectifiers._util.MissingExtraError` (an
``ImportError``) with a one-line message naming the extra. ``import rectifiers`` never imports
tensorboard.

Usage, in a plain training loop::

    from torch.utils.tensorboard import SummaryWriter
    from rectifiers.diagnostics import DeadUnitMonitor, GradientFlowMonitor
    from rectifiers.integrations.tensorboard import log_dead_units, log_gradient_flow, log_monitors

    writer = SummaryWriter("runs/exp1")
    dead = DeadUnitMonitor(model).attach()
    flow = GradientFlowMonitor(model).attach()
    for step, (x, y) in enumerate(loader):
        loss = loss_fn(model(x), y)
        loss.backward()
        if step % 100 == 0:
            flow.step()                                   # record this step's gradients
            log_monitors(writer, step, dead=dead, flow=flow)
            dead.reset()                                  # next window: the next 100 batches
        opt.step(); opt.zero_grad()
    writer.close()

or one report at a time: ``log_dead_units(writer, dead.report(), step)`` and
``log_gradient_flow(writer, flow.report(), step)``; ``log_gradient_flow(writer, report, None)``
writes every step the monitor recorded, at the monitor's own step numbers. The numbers can be
had without writing them: :func:`dead_unit_scalars`, :func:`gradient_flow_scalars` (and the
``*_histograms`` functions) return them by tag. For Lightning, see
:mod:`rectifiers.integrations.lightning`.

Tags (stable; ``{site}`` and ``{layer}`` are names from the report passed through
:func:`tag_part`: ``#`` becomes ``-``, so ``act#1`` is written ``act-1``)
--------------------------------------------------------------------------------------------------

Dead units, prefix ``rectifiers/dead`` (``prefix=`` to change); fractions of units, in [0, 1]:

==============================================  ==========  ===============================================
tag                                             kind        value
==============================================  ==========  ===============================================
``{prefix}/dead_fraction``                      scalar      whole model: ``report.dead_fraction``
``{prefix}/inactive_fraction``                  scalar      ``report.inactive_fraction``
``{prefix}/near_dead_fraction``                 scalar      ``report.near_dead_fraction``
``{prefix}/activation_rate``                    scalar      ``report.activation_rate``
``{prefix}/revived``, ``{prefix}/newly_dead``   scalar      unit counts, once the monitor was ``reset()``
``{prefix}/dead_fraction/{site}``               scalar      per use site: ``report.layer(site).dead_fraction``
``{prefix}/inactive_fraction/{site}``           scalar      ``.inactive_fraction``
``{prefix}/near_dead_fraction/{site}``          scalar      ``.near_dead_fraction``
``{prefix}/activation_rate/{site}``             scalar      ``.activation_rate``
``{prefix}/channel_activation_rate/{site}``     histogram   ``.channel_activation_rate`` (sites with > 1 channel)
==============================================  ==========  ===============================================

Gradient flow, prefix ``rectifiers/grad``; one recorded step (the last, unless ``step=None``)
and the report's window:

==============================================  ==========  ===============================================
tag                                             kind        value
==============================================  ==========  ===============================================
``{prefix}/norm/{layer}``                       scalar      gradient L2 norm of the layer (``report.norms``);
                                                            left out where NaN (no gradient at that step,
                                                            or a NaN gradient: ``exploding`` says so)
``{prefix}/first_last_ratio``                   scalar      ``report.first_last_ratio`` (when defined)
``{prefix}/first_last_ratio_median``            scalar      over the window (when defined)
``{prefix}/vanishing``                          scalar      1.0 if ``report.vanishing`` else 0.0
``{prefix}/exploding``                          scalar      1.0 if ``report.exploding`` else 0.0
``{prefix}/param_mean/{param}``                 scalar      mean of an activation parameter (PReLU ``weight``,
                                                            FReLU ``bias``; ``param`` is ``module.attr``)
``{prefix}/param/{param}``                      histogram   its values (one per channel)
==============================================  ==========  ===============================================

Scalars are written with ``add_scalar`` (TensorBoard stores float32), histograms with
``add_histogram``; non-finite values are left out of histograms. ``histograms=False`` writes
scalars only. The functions write nothing for an empty report (no activation called, no step
recorded). Cost: the reports' own (one device sync per use site and per report), then a few
protobuf records per layer; nothing is added to the training step itself.
"""

from __future__ import annotations

from .._util import MissingExtraError

_EXTRA = "pip install 'rectifiers[tensorboard]'"

def _why(e: BaseException) -> str:
    """An import failure in one line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


try:
    import tensorboard  # noqa: F401  (first: torch.utils.tensorboard's own message is less clear)
    from torch.utils.tensorboard import SummaryWriter
except Exception as _e:  # a broken install fails in many ways (protobuf: TypeError)
    if isinstance(_e, ModuleNotFoundError) and (_e.name or "").split(".")[0] == "tensorboard":
        raise MissingExtraError(
            f"rectifiers.integrations.tensorboard needs tensorboard, which is not installed: {_EXTRA}"
        ) from None
    raise MissingExtraError(
        f"rectifiers.integrations.tensorboard: tensorboard ({_EXTRA}) is installed but cannot be "
        f"imported: {_why(_e)}; reinstall it"
    ) from None

from ._scalars import (  # noqa: E402  (after the check: the one-line error comes first)
    DEAD_PREFIX,
    FLOW_PREFIX,
    dead_unit_histograms,
    dead_unit_scalars,
    gradient_flow_histograms,
    gradient_flow_scalars,
    log_dead_units,
    log_gradient_flow,
    log_monitors,
    tag_part,
)

__all__ = [
    "SummaryWriter",
    "DEAD_PREFIX",
    "FLOW_PREFIX",
    "log_dead_units",
    "log_gradient_flow",
    "log_monitors",
    "dead_unit_scalars",
    "dead_unit_histograms",
    "gradient_flow_scalars",
    "gradient_flow_histograms",
    "tag_part",
]
