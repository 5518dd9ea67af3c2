"""Diagnostics for the article's claims: dead units and gradient flow.

API (stable)::

    from rectifiers.diagnostics import DeadUnitMonitor, GradientFlowMonitor

    with DeadUnitMonitor(model, near_dead_threshold=0.01, channel_dim=1, extra_rules=None) as dead:
        for x, _ in loader:
            model(x)                      # any mode, with or without grad, inference_mode too
    rep = dead.report()                   # DeadUnitReport (works after the with-block too)
    rep.layers                            # list[LayerDeadUnits], in call order
    rep.layer("act#1")                    # one use site by name
    rep.dead_fraction, rep.inactive_fraction, rep.near_dead_fraction, rep.activation_rate
    rep.units, rep.dead, rep.inactive, rep.near_dead, rep.revived, rep.newly_dead, rep.window
    rep.to_table() -> str;  rep.plot(path, title=None) -> path;  rep.to_dict() -> dict (JSON-able)
    dead.reset()                          # new measurement window (for revived / newly_dead)
    dead.attach(); dead.detach()          # what `with` does; counters survive detach
    activation_kind(module) -> "relu" | "prelu" | ... | None   # what the monitor recognises

    LayerDeadUnits: name (use site), module (path), call_index, kind, module_type,
        feature_shape, channel_dim, channels, samples, units, dead, inactive, near_dead,
        activation_rate, revived, newly_dead, dead_fraction, inactive_fraction,
        near_dead_fraction, channel_dead_fraction, channel_inactive_fraction,
        channel_near_dead_fraction, channel_activation_rate (numpy arrays of length channels)

    with GradientFlowMonitor(model, optimizer=None, every=1) as flow:
        for x, y in loader:
            loss = loss_fn(model(x), y)
            loss.backward()
            flow.step()                   # or pass optimizer=opt: recorded before opt.step()
            opt.step(); opt.zero_grad()
    frep = flow.report()                  # GradientFlowReport
    frep.layers (names), frep.steps (S,), frep.norms (S x L), frep.first_last_ratio (S,),
    frep.first_last_ratio_median, frep.vanishing, frep.exploding (bools),
    frep.vanishing_steps, frep.exploding_steps (S,) bools, frep.reasons (list[str]),
    frep.nonfinite_steps (S,) bools, frep.num_steps,
    frep.thresholds (dict), frep.params (dict "module.attr" -> (S x numel) array)
    frep.to_table() -> str;  frep.plot(path, title=None) -> path;  frep.to_dict() -> dict
    flow.reset()                          # forget the recorded steps
    GradientFlowMonitor(model, optimizer=None, every=1, vanish_ratio=1e-3, explode_ratio=1e3,
                        norm_floor=1e-7, norm_ceiling=1e3, track_params=True,
                        include_activations=False)

Definitions
-----------
A *unit* is one feature of one sample: for an input of shape (N, *F) to an activation, each of
the prod(F) positions (channel x spatial position) is a unit; inputs of fewer than 2 dims count
as one sample. Per-channel summaries aggregate the units of one channel (``channel_dim``,
default 1; the module's own ``dim`` for PReLU and FReLU).

For every unit the monitor streams two counters over all inputs seen, and the sample count:

* ``active``: the input was in the positive region (``x > 0``; for ReLU6/Hardtanh/Threshold,
  above the lower threshold; for the funnel activation, ``x`` won ``max(x, T(x))``);
* ``grad``: the local derivative ``d act / d x`` of the unit was non-zero, computed from the
  layer's input and parameters under ``no_grad`` (sign tests are exact in the input's dtype;
  slopes and ELU-type exponentials are evaluated in fp32).

A unit is **dead** when ``grad`` is 0 (the derivative was zero on every input: it cannot learn
through that input), **inactive** when ``active`` is 0 (never in the positive region), and
**near-dead** when ``active / samples < near_dead_threshold`` (default 1%; this includes the
inactive ones). The **activation rate** is ``active / samples`` averaged over units. Under ReLU
and FReLU, dead = inactive. Under LeakyReLU and PReLU with a non-zero slope no unit is ever dead,
though units may be inactive: they keep a gradient of slope ``a`` -- the article's claim. For the
funnel activation the derivative counted is that of the direct path, ``d max(x, T) / d x`` with
``T`` held fixed (1 where ``x`` wins, 1/2 at ties, 0 where ``T(x) > x``), so a unit is dead when
``x`` never won the max (ties count as won); gradient still reaches ``x`` through the depthwise
conv of its neighbours, which this count leaves out. A unit dead in the previous window (before
:meth:`DeadUnitMonitor.reset`) that had a non-zero derivative in the current one is
**revived**; the reverse is **newly dead**.

Rules by activation (d/dx non-zero where): ReLU, FReLU, Threshold: ``x > 0`` (threshold);
LeakyReLU, PReLU, RReLU: everywhere unless the slope is 0 (per channel for PReLU); ReLU6 and
Hardtanh: ``min < x < max`` (so a unit stuck above ``max`` is dead but active); ELU, CELU, SELU:
``x > 0`` or ``exp`` not underflowing to 0 in fp32; funnel: ``x >= T(x)``. NaN inputs follow
torch's backward conventions.

A module instance called at several places in one forward pass (one call of the monitored
model) gives one *use site* per place, named ``name#0``, ``name#1``, ... in call order (a
module with one use site is just ``name``). Only activation *modules* are seen; functional
calls such as ``torch.relu(x)`` inside a ``forward`` are not. Under activation checkpointing
the recomputed forward is counted again.

The gradient-flow monitor records, at each :meth:`GradientFlowMonitor.step` (after
``backward``), the L2 norm of the gradient of every *layer* -- every module with parameters of
its own, activations aside, in the order of the first forward pass -- and the values of the
activations' parameters (PReLU slopes, FReLU biases) before the optimizer's update. The
first/last ratio is the first layer's norm over the last's (the first and last that had a
gradient at that step). Flags (thresholds in ``report().thresholds``, reasons in
``report().reasons``):

* vanishing: on at least half of the steps, the ratio was below ``vanish_ratio`` (1e-3) or a
  layer's norm below ``norm_floor`` (1e-7);
* exploding: on any step, a gradient was non-finite, a layer's norm above ``norm_ceiling``
  (1e3), or the ratio above ``explode_ratio`` (1e3).

Layout: :mod:`.rules` (the local derivative rule of each kind of activation), :mod:`.hooks`
(the hook base both monitors share), :mod:`.counting` and :mod:`.dead` (the dead-unit counters
and monitor), :mod:`.flow` (the gradient-flow monitor), :mod:`.reports` (the reports' data and
aggregation) and :mod:`.render` (their tables, figures and JSON values).
"""

from __future__ import annotations

from .dead import DeadUnitMonitor
from .flow import GradientFlowMonitor
from .reports import DeadUnitReport, GradientFlowReport, LayerDeadUnits
from .rules import LocalRule, activation_kind

__all__ = [
    "DeadUnitMonitor",
    "DeadUnitReport",
    "LayerDeadUnits",
    "GradientFlowMonitor",
    "GradientFlowReport",
    "LocalRule",
    "activation_kind",
]
