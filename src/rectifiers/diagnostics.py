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
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from . import _util as _io
from . import modules as _m

__all__ = [
    "DeadUnitMonitor",
    "DeadUnitReport",
    "LayerDeadUnits",
    "GradientFlowMonitor",
    "GradientFlowReport",
    "LocalRule",
    "activation_kind",
]


# --------------------------------------------------------------------------------------------
# Local derivative rules
# --------------------------------------------------------------------------------------------

#: A rule for one activation type: ``rule(module, x, out) -> (active, grad)`` with ``active`` a
#: bool tensor shaped like ``x`` (positive region), or a number ``c`` meaning ``x > c`` (counted
#: by a faster path), and ``grad`` a bool tensor shaped like ``x``
#: (local derivative non-zero), or ``None`` when it equals ``active``, or a bool tensor that
#: broadcasts against ``x`` without its batch dimension (``True`` marks units whose derivative is
#: non-zero whatever ``x``, e.g. a non-zero leaky slope; elsewhere it equals ``active``), or the
#: Python bool ``True`` (non-zero everywhere). ``out`` is the module's output, given only to
#: rules registered with ``needs_output=True``.
LocalRule = Callable[[nn.Module, torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, Any]]


@dataclass(frozen=True)
class _Kind:
    kind: str
    rule: LocalRule
    needs_output: bool = False
    own_channel_dim: bool = False  # the module's `dim` attribute is its channel dim
    channels_first: bool = False  # (N, C, *) whatever the monitor's channel_dim
    # ReLU: the output max(0, x) is > 0 exactly where x > 0, and is already non-negative, so the
    # count needs no clamp pass (and in-place modules are seen after the fact)
    count_output: bool = False


def _slope_always(x: torch.Tensor, slope: torch.Tensor, dim: int | None) -> Any:
    """Where a leaky slope is non-zero the derivative is non-zero whatever x (fp32 test)."""
    nz = slope.detach().float() != 0
    if nz.numel() == 1:
        return nz.reshape(())  # a 0-d tensor: no device sync
    if dim is None:  # per-channel slope on an input without a channel dim: cannot happen in a
        return None  # successful forward; be conservative
    shape = [1] * x.dim()
    shape[dim] = nz.numel()
    return nz.reshape(shape)


def _r_relu(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[Any, Any]:
    return 0.0, None


def _r_leaky(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
    a = float(getattr(m, "negative_slope", 0.01))
    return 0.0, (True if a != 0 else None)


def _prelu_dim(m: nn.Module, x: torch.Tensor) -> int | None:
    d = getattr(m, "dim", 1)
    nd = x.dim()
    if nd == 0 or (nd == 1 and d == 1):
        return None
    return int(d) % nd


def _r_prelu(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
    return 0.0, _slope_always(x, m.weight, _prelu_dim(m, x))


def _r_rrelu(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
    nonzero = not (float(m.lower) == 0.0 and float(m.upper) == 0.0)
    return 0.0, (True if nonzero else None)


def _r_hardtanh(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
    # torch's convention: the gradient is cut where x <= min or x >= max (so it passes at NaN)
    return float(m.min_val), ~((x <= m.min_val) | (x >= m.max_val))


def _r_threshold(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
    return float(m.threshold), None


def _exp_rule(scale_of: Callable[[nn.Module], float], div_of: Callable[[nn.Module], float]) -> LocalRule:
    # ELU-like: d/dx = 1 for x > 0, c * exp(x / s) below, evaluated in fp32 (it underflows to 0
    # for very negative x, which is a numerically dead unit).
    def rule(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
        c, s = scale_of(m), div_of(m)
        if c == 0:
            return 0.0, None
        return 0.0, (x > 0) | (torch.exp(x.float() / s) * c != 0)

    return rule


def _r_funnel(m: nn.Module, x: torch.Tensor, out: Any) -> tuple[torch.Tensor, Any]:
    # out = max(x, T(x)): x won (derivative of the direct path 1, or 1/2 at a tie) iff out == x.
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        raise RuntimeError(f"DeadUnitMonitor: funnel activation {type(m).__name__} gave no output tensor")
    won = out == x.to(out.dtype)
    return won, None


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805

#: Rules by class; lookup walks the module's MRO, so subclasses (nn.ReLU6 < nn.Hardtanh,
#: FunnelReLU1d < _FunnelReLUNd) find the most specific entry.
_RULES: dict[type, _Kind] = {
    _m.ReLU: _Kind("relu", _r_relu, needs_output=True, count_output=True),
    nn.ReLU: _Kind("relu", _r_relu, needs_output=True, count_output=True),
    _m.LeakyReLU: _Kind("leaky_relu", _r_leaky),
    nn.LeakyReLU: _Kind("leaky_relu", _r_leaky),
    _m.PReLU: _Kind("prelu", _r_prelu, own_channel_dim=True),
    nn.PReLU: _Kind("prelu", _r_prelu),
    _m.FlexibleReLU: _Kind("flexible_relu", _r_relu, own_channel_dim=True),
    _m._FunnelReLUNd: _Kind("funnel_relu", _r_funnel, needs_output=True, channels_first=True),
    nn.RReLU: _Kind("rrelu", _r_rrelu),
    nn.ReLU6: _Kind("relu6", _r_hardtanh),
    nn.Hardtanh: _Kind("hardtanh", _r_hardtanh),
    nn.Threshold: _Kind("threshold", _r_threshold),
    nn.ELU: _Kind("elu", _exp_rule(lambda m: float(m.alpha), lambda m: 1.0)),
    nn.CELU: _Kind("celu", _exp_rule(lambda m: 1.0, lambda m: float(m.alpha))),
    nn.SELU: _Kind("selu", _exp_rule(lambda m: _SELU_SCALE * _SELU_ALPHA, lambda m: 1.0)),
}

#: Activation modules whose parameters the gradient-flow monitor tracks over time.
_TRACKED_PARAMS: dict[type, tuple[str, ...]] = {
    _m.PReLU: ("weight",),
    nn.PReLU: ("weight",),
    _m.FlexibleReLU: ("bias",),
}


def _lookup(m: nn.Module, extra: dict[type, _Kind]) -> _Kind | None:
    for cls in type(m).__mro__:
        if cls in extra:
            return extra[cls]
        if cls in _RULES:
            return _RULES[cls]
    return None


def activation_kind(module: nn.Module) -> str | None:
    """The kind name the dead-unit monitor gives ``module`` (``"relu"``, ``"prelu"``, ...), or
    ``None`` when it is not a recognised activation."""
    k = _lookup(module, {})
    return None if k is None else k.kind


def _type_name(m: nn.Module) -> str:
    mod = type(m).__module__
    if mod.startswith("torch.nn"):
        mod = "torch.nn"
    elif mod.startswith("rectifiers"):
        mod = "rectifiers"
    return f"{mod}.{type(m).__qualname__}"


# --------------------------------------------------------------------------------------------
# Dead units
# --------------------------------------------------------------------------------------------


class _DeadCounts:
    """What a layer's and a window's dead-unit statistics share: the fractions of ``units``
    and their JSON fields. Subclasses provide ``units``, ``dead``, ``inactive``, ``near_dead``,
    ``revived``, ``newly_dead`` and ``activation_rate``."""

    units: int
    dead: int
    inactive: int
    near_dead: int
    revived: int | None
    newly_dead: int | None
    activation_rate: float

    @property
    def dead_fraction(self) -> float:
        return self.dead / self.units if self.units else math.nan

    @property
    def inactive_fraction(self) -> float:
        return self.inactive / self.units if self.units else math.nan

    @property
    def near_dead_fraction(self) -> float:
        return self.near_dead / self.units if self.units else math.nan

    def _counts_dict(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "dead": self.dead,
            "inactive": self.inactive,
            "near_dead": self.near_dead,
            "revived": self.revived,
            "newly_dead": self.newly_dead,
            "dead_fraction": _num(self.dead_fraction),
            "inactive_fraction": _num(self.inactive_fraction),
            "near_dead_fraction": _num(self.near_dead_fraction),
            "activation_rate": _num(self.activation_rate),
        }


@dataclass
class LayerDeadUnits(_DeadCounts):
    """Dead-unit statistics of one use site of one activation module.

    Counts are numbers of units (features of one sample); fractions divide by ``units``; the
    ``channel_*`` arrays have one entry per channel (length ``channels``), each over that
    channel's ``units // channels`` positions.
    """

    name: str
    module: str
    call_index: int
    kind: str
    module_type: str
    feature_shape: tuple[int, ...]
    channel_dim: int | None
    channels: int
    samples: int
    units: int
    dead: int
    inactive: int
    near_dead: int
    activation_rate: float
    revived: int | None
    newly_dead: int | None
    channel_dead_fraction: np.ndarray = field(repr=False)
    channel_inactive_fraction: np.ndarray = field(repr=False)
    channel_near_dead_fraction: np.ndarray = field(repr=False)
    channel_activation_rate: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "call_index": self.call_index,
            "kind": self.kind,
            "module_type": self.module_type,
            "feature_shape": list(self.feature_shape),
            "channel_dim": self.channel_dim,
            "channels": self.channels,
            "samples": self.samples,
            **self._counts_dict(),
            "channel_dead_fraction": _list(self.channel_dead_fraction),
            "channel_inactive_fraction": _list(self.channel_inactive_fraction),
            "channel_near_dead_fraction": _list(self.channel_near_dead_fraction),
            "channel_activation_rate": _list(self.channel_activation_rate),
        }


def _num(v: float) -> float | None:
    """JSON-safe float: NaN and infinities become None."""
    v = float(v)
    return v if math.isfinite(v) else None


def _list(a: np.ndarray) -> list[Any]:
    return [_num(v) if isinstance(v, float) else v for v in np.asarray(a).tolist()]


def _nested(a: np.ndarray) -> list[Any]:
    return [_list(row) for row in np.asarray(a)]


@dataclass
class DeadUnitReport(_DeadCounts):
    """Dead-unit statistics of one measurement window, per use site (``layers``) and overall."""

    layers: list[LayerDeadUnits]
    near_dead_threshold: float
    window: int

    @property
    def units(self) -> int:
        return sum(layer.units for layer in self.layers)

    @property
    def dead(self) -> int:
        return sum(layer.dead for layer in self.layers)

    @property
    def inactive(self) -> int:
        return sum(layer.inactive for layer in self.layers)

    @property
    def near_dead(self) -> int:
        return sum(layer.near_dead for layer in self.layers)

    @property
    def revived(self) -> int | None:
        vals = [layer.revived for layer in self.layers if layer.revived is not None]
        return sum(vals) if vals else None

    @property
    def newly_dead(self) -> int | None:
        vals = [layer.newly_dead for layer in self.layers if layer.newly_dead is not None]
        return sum(vals) if vals else None

    @property
    def activation_rate(self) -> float:
        """Mean activation rate over all units (each layer weighted by its units)."""
        u = self.units
        if not u:
            return math.nan
        return sum(layer.activation_rate * layer.units for layer in self.layers) / u

    def layer(self, name: str) -> LayerDeadUnits:
        """The use site called ``name``; ``KeyError`` listing the names otherwise."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no use site named {name!r}; the sites are {[l.name for l in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN becomes None)."""
        return {
            "window": self.window,
            "near_dead_threshold": self.near_dead_threshold,
            **self._counts_dict(),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def to_table(self) -> str:
        """A plain-text table, one row per use site and a total row."""
        pct = f"<{self.near_dead_threshold:.0%}"
        head = ["layer", "kind", "units", "samples", "dead", "inactive", f"near-dead({pct})", "act. rate", "revived"]
        rows = []

        def fmt(x: float) -> str:
            return "-" if not math.isfinite(x) else f"{100 * x:.1f}%"

        for l in self.layers:
            rows.append([
                l.name, l.kind, str(l.units), str(l.samples), fmt(l.dead_fraction),
                fmt(l.inactive_fraction), fmt(l.near_dead_fraction), fmt(l.activation_rate),
                "-" if l.revived is None else str(l.revived),
            ])
        rev = self.revived
        rows.append([
            "total", "", str(self.units), "", fmt(self.dead_fraction), fmt(self.inactive_fraction),
            fmt(self.near_dead_fraction), fmt(self.activation_rate), "-" if rev is None else str(rev),
        ])
        title = f"dead units (window {self.window})"
        if not self.layers:
            return title + ": no activation was called"
        return title + "\n" + _format_table(head, rows)

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write a PNG bar chart (dead / inactive / near-dead fraction and activation rate per
        use site) to ``path``, atomically. Returns the path. Needs matplotlib."""
        Figure, FigureCanvas = _mpl()
        n = max(len(self.layers), 1)
        fig = Figure(figsize=(7.5, 1.2 + 0.45 * n * 1.6))
        FigureCanvas(fig)
        ax = fig.add_subplot(1, 1, 1)
        names = [l.name for l in self.layers]
        y = np.arange(len(names))
        h = 0.2
        series = [
            ("dead", [l.dead_fraction for l in self.layers], "#c0392b"),
            ("inactive", [l.inactive_fraction for l in self.layers], "#e67e22"),
            (f"near-dead (<{self.near_dead_threshold:.0%})", [l.near_dead_fraction for l in self.layers], "#f1c40f"),
            ("activation rate", [l.activation_rate for l in self.layers], "#2980b9"),
        ]
        for i, (label, vals, color) in enumerate(series):
            ax.barh(y + (i - 1.5) * h, vals, height=h, label=label, color=color)
        ax.set_yticks(y)
        ax.set_yticklabels(names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("fraction of units")
        ax.set_title(title or f"Dead units (window {self.window}, {self.units} units)")
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        return _save(fig, path)


def _sign_nan_is_zero() -> bool:
    """Whether this build's CPU ``torch.sign`` maps NaN to 0 (scalar and vectorised paths)."""
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for n in (1, 67):
            if not bool((torch.sign(torch.full((n,), math.nan, dtype=dt)) == 0).all()):
                return False
    return True


_SIGN_NAN_IS_ZERO = _sign_nan_is_zero()


def _count_nonzero_output(o: torch.Tensor, batched: bool) -> torch.Tensor:
    """Per-unit count of ``o > 0`` over the batch, for a ReLU's output ``o = max(0, x)`` (so
    ``o > 0`` exactly where ``x > 0``).

    On CPU, ``o != 0`` as bytes summed in uint8 over chunks of 255 samples is the fastest exact
    count torch offers (about twice as fast as sign-and-sum). ``bool(nan)`` is true, so a NaN
    output (found through the NaN-propagating ``o.sum()``) sends the batch to the comparison.
    """
    if not batched or o.device.type != "cpu":
        return _count_above(o, 0.0, batched)
    if bool(torch.isnan(o.sum())):
        return (o > 0).sum(0, dtype=torch.int32)
    b = o.bool().view(torch.uint8)
    n = b.shape[0]
    if n <= 255:
        return b.sum(0, dtype=torch.uint8)
    total = torch.zeros(b.shape[1:], dtype=torch.int32, device=b.device)
    for start in range(0, n, 255):
        total += b[start:start + 255].sum(0, dtype=torch.uint8)
    return total


def _count_above(x: torch.Tensor, c: float | None, batched: bool) -> torch.Tensor:
    """Per-unit count of ``x > c`` over the batch (dim 0), without a bool mask on CPU.

    ``c=None`` says that ``x`` is non-negative already (a ReLU's output): then ``x > 0`` is
    counted. ``sign(max(x, c) - c)`` is 1 exactly where ``x > c`` (gradual underflow keeps ``x - c`` non-zero)
    and 0 elsewhere, and its float32 sum over the batch is exact below 2**24 samples; on CPU that
    is about twice as fast as comparing and summing a bool tensor. ``torch.sign(nan)`` is 0 on
    current builds (NaN > c is false, as wanted; checked once at import); on a build where it is
    not, a NaN input makes its unit's sum NaN, and the batch is then counted again with the
    comparison.
    """
    if not batched:
        return (x > (c or 0.0)).to(torch.float64)
    if x.device.type == "cpu":
        if c is None:  # x is known to be >= 0 (or NaN)
            y = x.sign()
        else:
            y = x.clamp(min=c)
            if c != 0:
                y.sub_(c)
            y.sign_()
        s = y.sum(0, dtype=torch.float32)
        if _SIGN_NAN_IS_ZERO or not bool(torch.isnan(s).any()):  # CPU: no device sync to fear
            return s
    return (x > (c or 0.0)).sum(0, dtype=torch.int32)


class _Site:
    """Running counters of one use site (float64, exact to 2**53; on the input's device)."""

    __slots__ = ("module", "name", "index", "kind", "channel_dim", "batched", "shape", "samples",
                 "active", "grad", "prev_dead")

    def __init__(self, module: nn.Module, name: str, index: int, kind: _Kind) -> None:
        self.module = module
        self.name = name
        self.index = index
        self.kind = kind
        self.channel_dim: int | None = None
        self.batched = True
        self.shape: tuple[int, ...] | None = None
        self.samples = 0
        self.active: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None  # None: equal to `active` so far
        self.prev_dead: np.ndarray | None = None

    def clear(self) -> None:
        self.shape = None
        self.samples = 0
        self.active = None
        self.grad = None


_M = TypeVar("_M", bound="_Hooked")


class _Hooked:
    """What both monitors share: their hook handles, ``detach`` and the context manager."""

    _handles: list[Any]

    def attach(self: _M) -> _M:  # pragma: no cover - every monitor defines its own
        raise NotImplementedError

    def _detached(self) -> None:
        """A monitor's own clean-up once its hooks are removed."""

    def detach(self) -> None:
        """Remove every hook; what was recorded is kept for ``report()``."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._detached()

    def __enter__(self: _M) -> _M:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)


class DeadUnitMonitor(_Hooked):
    """Stream dead / inactive / near-dead unit counts of every activation of ``model``.

    Args:
        model: any ``nn.Module``; its activation modules (this library's ReLU, LeakyReLU,
            PReLU, FlexibleReLU/FReLU, FunnelReLU*, and ``torch.nn``'s ReLU, LeakyReLU, PReLU,
            RReLU, ReLU6, Hardtanh, Threshold, ELU, CELU, SELU) are watched through hooks while
            the monitor is attached (inside ``with``, or between :meth:`attach` and
            :meth:`detach`). ``model`` may itself be an activation module.
        near_dead_threshold: activation rate under which a unit is near-dead (default 0.01).
        channel_dim: the channel dimension of inputs for per-channel summaries (default 1, as
            (N, C, *); -1 for channels-last (N, *, C)). PReLU and FReLU use their own ``dim``.
        extra_rules: ``{module class: rule}`` for further activation types (see
            :data:`LocalRule`); a rule receives the input (and no output).

    Memory: two float64 counters per unit of each use site (feature shape, not batch). No
    per-sample mask is kept. The counting runs under ``torch.no_grad``, never synchronises
    with the device, and costs one comparison and one reduction over the input per call.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        near_dead_threshold: float = 0.01,
        channel_dim: int = 1,
        extra_rules: dict[type, LocalRule] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"DeadUnitMonitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(near_dead_threshold, bool) or not isinstance(near_dead_threshold, (int, float)) \
                or not 0 <= near_dead_threshold <= 1:
            raise ValueError(
                f"DeadUnitMonitor: near_dead_threshold must be a number in [0, 1], got {near_dead_threshold!r}"
            )
        if isinstance(channel_dim, bool) or not isinstance(channel_dim, int) or channel_dim == 0:
            raise ValueError(
                f"DeadUnitMonitor: channel_dim must be a non-zero int (dim 0 is the batch), got {channel_dim!r}"
            )
        extra: dict[type, _Kind] = {}
        for cls, rule in (extra_rules or {}).items():
            if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or not callable(rule):
                raise TypeError(
                    "DeadUnitMonitor: extra_rules must map nn.Module subclasses to callables, "
                    f"got {cls!r}: {rule!r}"
                )
            extra[cls] = _Kind(cls.__name__.lower(), rule)
        self.model = model
        self.near_dead_threshold = float(near_dead_threshold)
        self.channel_dim = channel_dim
        self._extra = extra
        self._targets: list[tuple[str, nn.Module, _Kind]] = []
        for name, m in model.named_modules():
            k = _lookup(m, extra)
            if k is not None:
                self._targets.append((name or type(m).__name__, m, k))
        if not self._targets:
            raise ValueError(
                f"DeadUnitMonitor: model ({type(model).__name__}) contains no recognised activation "
                "module (rectifiers.ReLU/LeakyReLU/PReLU/FlexibleReLU/FunnelReLU*, torch.nn.ReLU/"
                "LeakyReLU/PReLU/RReLU/ReLU6/Hardtanh/Threshold/ELU/CELU/SELU); functional calls "
                "like torch.relu(x) cannot be watched, and other types need extra_rules"
            )
        self._sites: dict[tuple[str, int], _Site] = {}
        self._calls: dict[int, int] = {}
        self._depth = 0
        self._handles: list[Any] = []
        self._window = 0

    # -- attaching ------------------------------------------------------------------------
    def attach(self) -> "DeadUnitMonitor":
        """Register the hooks (idempotent)."""
        if self._handles:
            return self
        root = self.model
        self._handles.append(root.register_forward_pre_hook(self._root_enter, prepend=True))
        self._handles.append(root.register_forward_hook(self._root_exit, always_call=True))
        for name, m, k in self._targets:
            if k.needs_output:
                h = m.register_forward_hook(self._make_hook(name, k, post=True), with_kwargs=True)
            else:
                h = m.register_forward_pre_hook(self._make_hook(name, k, post=False), with_kwargs=True)
            self._handles.append(h)
        return self

    def _detached(self) -> None:
        self._depth = 0
        self._calls.clear()

    # -- hooks ----------------------------------------------------------------------------
    def _root_enter(self, module: nn.Module, args: Any) -> None:
        if self._depth == 0:
            self._calls.clear()
        self._depth += 1

    def _root_exit(self, module: nn.Module, args: Any, out: Any) -> None:
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0:
            self._calls.clear()

    def _make_hook(self, name: str, kind: _Kind, post: bool) -> Callable[..., None]:
        def take(module: nn.Module, args: Any, kwargs: Any) -> torch.Tensor | None:
            x = args[0] if args else kwargs.get("input", next(iter(kwargs.values()), None))
            return x if isinstance(x, torch.Tensor) else None

        if post:
            def hook(module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
                x = take(module, args, kwargs)
                if x is not None:
                    self._observe(name, module, kind, x, out)
        else:
            def hook(module: nn.Module, args: Any, kwargs: Any) -> None:  # type: ignore[misc]
                x = take(module, args, kwargs)
                if x is not None:
                    self._observe(name, module, kind, x, None)
        return hook

    def _site(self, name: str, module: nn.Module, kind: _Kind) -> _Site:
        # Calls outside a forward of the monitored model cannot be placed: they go to site #0.
        if self._depth > 0:
            idx = self._calls.get(id(module), 0)
            self._calls[id(module)] = idx + 1
        else:
            idx = 0
        key = (name, idx)
        site = self._sites.get(key)
        if site is None:
            site = self._sites[key] = _Site(module, name, idx, kind)
        return site

    def _observe(self, name: str, module: nn.Module, kind: _Kind, x: torch.Tensor, out: Any) -> None:
        site = self._site(name, module, kind)
        if not x.is_floating_point():
            return
        with torch.no_grad():
            active, grad = kind.rule(module, x.detach(), None if out is None else out.detach())
            batched = x.dim() >= 2
            n = x.shape[0] if batched else 1
            if n == 0:
                return
            shape = tuple(x.shape[1:]) if batched else tuple(x.shape)
            if site.shape is None:
                site.shape = shape
                site.batched = batched
                site.channel_dim = self._channel_dim(module, kind, x)
            elif site.shape != shape:
                raise ValueError(
                    f"DeadUnitMonitor: use site {name}#{site.index} saw inputs of feature shape "
                    f"{shape} after {site.shape}; units are counted per feature, so the feature "
                    "shape (all dims but the batch) must stay the same within a window "
                    "(call reset() between data of different shapes)"
                )
            if isinstance(active, torch.Tensor):
                act_sum = active.sum(0, dtype=torch.int32) if batched else active.to(torch.float64)
            elif kind.count_output and isinstance(out, torch.Tensor) and out.shape == x.shape:
                act_sum = _count_nonzero_output(out, batched)
            else:
                act_sum = _count_above(x, float(active), batched)
            grad_sum: torch.Tensor | int | None
            if grad is None:
                grad_sum = None
            elif grad is True:
                grad_sum = n
            elif isinstance(grad, torch.Tensor) and grad.shape == x.shape:
                grad_sum = grad.sum(0, dtype=torch.int32) if batched else grad.to(torch.float64)
            elif isinstance(grad, torch.Tensor):
                g = grad
                if batched and g.dim() == x.dim():
                    g = g.squeeze(0)
                grad_sum = torch.where(g, float(n), act_sum)
            else:
                raise TypeError(
                    f"DeadUnitMonitor: the rule for {type(module).__name__} returned grad={grad!r}; "
                    "expected None, True or a bool tensor"
                )
            # counters are normal tensors even when created under inference_mode, so that
            # later windows outside it can still update them in place
            if site.active is None or (grad_sum is not None and site.grad is None):
                with torch.inference_mode(False):
                    if site.active is None:
                        site.active = torch.zeros(shape, dtype=torch.float64, device=x.device)
                    if grad_sum is not None and site.grad is None:
                        site.grad = site.active.clone()  # all earlier batches had grad == active
            if site.grad is not None:
                site.grad += act_sum if grad_sum is None else grad_sum
            site.active += act_sum
            site.samples += n

    def _channel_dim(self, module: nn.Module, kind: _Kind, x: torch.Tensor) -> int | None:
        """The channel dim in *feature* coordinates (batch removed), or None (one channel)."""
        batched = x.dim() >= 2
        if kind.own_channel_dim:
            d = _prelu_dim(module, x)
        elif kind.channels_first:  # funnel: (N, C, *)
            d = 1
        elif batched:
            nd = x.dim()
            d = self.channel_dim % nd if -nd <= self.channel_dim < nd else None
            if d == 0:
                d = None
        else:
            d = None
        if d is None:
            return None
        return d - 1 if batched else d

    # -- windows and reports --------------------------------------------------------------
    def reset(self) -> None:
        """Start a new measurement window: clear the counters, remembering which units were
        dead, so that the next report counts the revived and newly dead ones."""
        for site in self._sites.values():
            if site.active is not None and site.samples > 0:
                g = site.grad if site.grad is not None else site.active
                site.prev_dead = (g == 0).cpu().numpy()
            site.clear()
        self._window += 1

    def report(self) -> DeadUnitReport:
        """The statistics of the current window (one device sync per use site)."""
        names_count: dict[str, int] = {}
        for (name, idx), site in self._sites.items():
            if site.samples:
                names_count[name] = names_count.get(name, 0) + 1
        layers = []
        for (name, idx), site in self._sites.items():
            if not site.samples or site.active is None:
                continue
            active = site.active.cpu().numpy()
            grad = active if site.grad is None else site.grad.cpu().numpy()
            n = site.samples
            rate = active.astype(np.float64) / n
            dead = grad == 0
            inactive = active == 0
            near = rate < self.near_dead_threshold
            cd = site.channel_dim

            def per_channel(a: np.ndarray) -> np.ndarray:
                a = np.asarray(a, dtype=np.float64)
                if a.ndim == 0:
                    return a.reshape(1)
                if cd is None:
                    return a.reshape(1, -1).mean(axis=1)
                return np.moveaxis(a, cd, 0).reshape(a.shape[cd], -1).mean(axis=1)

            revived = newly = None
            if site.prev_dead is not None and site.prev_dead.shape == dead.shape:
                revived = int((site.prev_dead & ~dead).sum())
                newly = int((~site.prev_dead & dead).sum())
            label = name if names_count.get(name, 0) <= 1 and idx == 0 else f"{name}#{idx}"
            ch_rate = per_channel(rate)
            layers.append(LayerDeadUnits(
                name=label,
                module=name,
                call_index=idx,
                kind=site.kind.kind,
                module_type=_type_name(site.module),
                feature_shape=tuple(site.shape or ()),
                channel_dim=None if cd is None else cd + 1 if site.batched else cd,
                channels=int(ch_rate.shape[0]),
                samples=n,
                units=int(dead.size),
                dead=int(dead.sum()),
                inactive=int(inactive.sum()),
                near_dead=int(near.sum()),
                activation_rate=float(rate.mean()) if rate.size else math.nan,
                revived=revived,
                newly_dead=newly,
                channel_dead_fraction=per_channel(dead),
                channel_inactive_fraction=per_channel(inactive),
                channel_near_dead_fraction=per_channel(near),
                channel_activation_rate=ch_rate,
            ))
        return DeadUnitReport(layers=layers, near_dead_threshold=self.near_dead_threshold, window=self._window)


# --------------------------------------------------------------------------------------------
# Gradient flow
# --------------------------------------------------------------------------------------------


@dataclass
class GradientFlowReport:
    """Per-layer gradient norms over the recorded steps, and the activation parameters.

    ``norms[s, l]`` is the L2 norm of the gradient of layer ``layers[l]`` (all its own
    parameters together) at recorded step ``steps[s]``; NaN where the layer had no gradient.
    ``first_last_ratio[s] = norms[s, i] / norms[s, j]`` with ``i`` / ``j`` the first / last layer
    that had a gradient at that step (``0`` and ``L - 1`` unless some are frozen or unused). ``params[name]`` is (S, numel): the
    parameter's values at each recorded step (before the optimizer's update).
    """

    layers: list[str]
    steps: np.ndarray
    norms: np.ndarray
    first_last_ratio: np.ndarray
    first_last_ratio_median: float
    vanishing: bool
    exploding: bool
    vanishing_steps: np.ndarray
    exploding_steps: np.ndarray
    nonfinite_steps: np.ndarray
    reasons: list[str]
    thresholds: dict[str, float]
    params: dict[str, np.ndarray]

    @property
    def num_steps(self) -> int:
        return int(self.norms.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (NaN and infinities become None)."""
        return {
            "layers": list(self.layers),
            "steps": [int(s) for s in self.steps],
            "norms": _nested(self.norms),
            "first_last_ratio": _list(self.first_last_ratio),
            "first_last_ratio_median": _num(self.first_last_ratio_median),
            "vanishing": bool(self.vanishing),
            "exploding": bool(self.exploding),
            "vanishing_steps": [bool(v) for v in self.vanishing_steps],
            "exploding_steps": [bool(v) for v in self.exploding_steps],
            "nonfinite_steps": [bool(v) for v in self.nonfinite_steps],
            "reasons": list(self.reasons),
            "thresholds": dict(self.thresholds),
            "params": {k: _nested(v) for k, v in self.params.items()},
        }

    def to_table(self) -> str:
        """Per-layer median / min / max / last norm, the ratio, the flags and the parameters."""
        if not self.num_steps:
            return "gradient flow: no step recorded"
        rows = []
        for j, name in enumerate(self.layers):
            col = self.norms[:, j]
            ok = col[np.isfinite(col)]
            if ok.size:
                vals = [np.median(ok), ok.min(), ok.max()]
            else:
                vals = [math.nan] * 3
            rows.append([name] + [_g(v) for v in vals] + [_g(col[-1])])
        out = [f"gradient flow ({self.num_steps} steps)",
               _format_table(["layer", "median norm", "min", "max", "last"], rows)]
        out.append(f"first/last ratio: median {_g(self.first_last_ratio_median)}")
        out.append(f"vanishing: {'YES' if self.vanishing else 'no'}"
                   f" ({int(self.vanishing_steps.sum())}/{self.num_steps} steps flagged)")
        out.append(f"exploding: {'YES' if self.exploding else 'no'}"
                   f" ({int(self.exploding_steps.sum())}/{self.num_steps} steps flagged)")
        out.extend("  - " + r for r in self.reasons)
        if self.params:
            prow = []
            for k, v in self.params.items():
                first, last = v[0], v[-1]
                prow.append([k, str(v.shape[1]), _span(first), _span(last)])
            out.append(_format_table(["activation parameter", "numel", "first", "last"], prow))
        return "\n".join(out)

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write a PNG (gradient norm per layer over steps, the first/last ratio with its
        thresholds, and the activation parameters over steps) to ``path``, atomically."""
        Figure, FigureCanvas = _mpl()
        from matplotlib.ticker import MaxNLocator

        panels = 3 if self.params else 2
        fig = Figure(figsize=(7.5, 3.0 * panels))
        FigureCanvas(fig)
        steps = self.steps
        ax = fig.add_subplot(panels, 1, 1)
        for j, name in enumerate(self.layers):
            ax.plot(steps, _pos(self.norms[:, j]), label=name, lw=1.2)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("gradient L2 norm")
        ax.set_title(title or "Gradient norm per layer")
        if len(self.layers) <= 12:
            ax.legend(fontsize="x-small", ncol=2)
        ax.grid(alpha=0.3)
        ax2 = fig.add_subplot(panels, 1, 2, sharex=ax)
        ax2.plot(steps, _pos(self.first_last_ratio), color="k", lw=1.2, label="first / last")
        ax2.axhline(self.thresholds["vanish_ratio"], color="#2980b9", ls="--", lw=1, label="vanishing below")
        ax2.axhline(self.thresholds["explode_ratio"], color="#c0392b", ls="--", lw=1, label="exploding above")
        ax2.set_yscale("log")
        ax2.set_ylabel("first / last layer norm")
        ax2.legend(fontsize="x-small")
        ax2.grid(alpha=0.3)
        if self.params:
            ax3 = fig.add_subplot(panels, 1, 3, sharex=ax)
            for k, v in self.params.items():
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


class GradientFlowMonitor(_Hooked):
    """Record per-layer gradient norms and activation parameters at every training step.

    Args:
        model: the model being trained.
        optimizer: if given, a step pre-hook on it calls :meth:`step` before every
            ``optimizer.step()``; otherwise call :meth:`step` yourself after ``backward``.
        every: record every ``every``-th step (default 1).
        vanish_ratio, explode_ratio: first/last ratio thresholds (defaults 1e-3 and 1e3).
        norm_floor, norm_ceiling: per-layer norm thresholds (defaults 1e-7 and 1e3).
        track_params: record the activations' parameters (PReLU ``weight``, FReLU ``bias``).
        include_activations: count activation modules with parameters (PReLU, FReLU, funnel)
            as layers too (default False: layers are the Linear/Conv/Norm... modules).

    Layers are the modules with parameters of their own that require grad, in the order of
    their first call in a forward pass while attached (registration order for those not
    called). One :meth:`step` costs one norm per parameter tensor and one device sync.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        every: int = 1,
        vanish_ratio: float = 1e-3,
        explode_ratio: float = 1e3,
        norm_floor: float = 1e-7,
        norm_ceiling: float = 1e3,
        track_params: bool = True,
        include_activations: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"GradientFlowMonitor: model must be a torch.nn.Module, got {type(model).__name__}")
        if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"GradientFlowMonitor: optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"GradientFlowMonitor: every must be a positive int, got {every!r}")
        th = {"vanish_ratio": vanish_ratio, "explode_ratio": explode_ratio,
              "norm_floor": norm_floor, "norm_ceiling": norm_ceiling}
        for k, v in th.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
                raise ValueError(f"GradientFlowMonitor: {k} must be a positive finite number, got {v!r}")
        if vanish_ratio >= explode_ratio:
            raise ValueError(
                f"GradientFlowMonitor: vanish_ratio ({vanish_ratio}) must be below explode_ratio ({explode_ratio})"
            )
        if norm_floor >= norm_ceiling:
            raise ValueError(
                f"GradientFlowMonitor: norm_floor ({norm_floor}) must be below norm_ceiling ({norm_ceiling})"
            )
        self.model = model
        self.optimizer = optimizer
        self.every = every
        self.thresholds = {k: float(v) for k, v in th.items()}
        self.track_params = track_params
        self.include_activations = include_activations
        self._handles: list[Any] = []
        self._order: list[str] = []
        self._order_hooks: list[Any] = []
        self._layout: tuple[list[str], list[torch.Tensor], torch.Tensor, list[str], list[torch.Tensor]] | None = None
        self._count = 0
        self._steps: list[int] = []
        self._rows: list[torch.Tensor] = []

    # -- layout ---------------------------------------------------------------------------
    def _candidates(self) -> list[tuple[str, nn.Module]]:
        out = []
        for name, m in self.model.named_modules():
            if not self.include_activations and _lookup(m, {}) is not None:
                continue
            if any(p.requires_grad for p in m.parameters(recurse=False)):
                out.append((name or type(m).__name__, m))
        return out

    def _build_layout(self) -> tuple[list[str], list[torch.Tensor], torch.Tensor, list[str], list[torch.Tensor]]:
        found = self._candidates()
        rank = {n: i for i, n in enumerate(self._order)}
        keyed = sorted(enumerate(found), key=lambda im: rank.get(im[1][0], len(rank) + im[0]))
        cands = [nm for _, nm in keyed]
        names, params, index = [], [], []
        for j, (name, m) in enumerate(cands):
            names.append(name)
            for p in m.parameters(recurse=False):
                if p.requires_grad:
                    params.append(p)
                    index.append(j)
        pnames, pvals = [], []
        if self.track_params:
            for name, m in self.model.named_modules():
                for cls in type(m).__mro__:
                    if cls in _TRACKED_PARAMS:
                        for attr in _TRACKED_PARAMS[cls]:
                            p = getattr(m, attr, None)
                            if isinstance(p, torch.Tensor) and not isinstance(p, nn.parameter.UninitializedParameter):
                                pnames.append(f"{name or type(m).__name__}.{attr}")
                                pvals.append(p)
                        break
        return (names, params, torch.tensor(index, dtype=torch.long), pnames, pvals)

    # -- attaching ------------------------------------------------------------------------
    def attach(self) -> "GradientFlowMonitor":
        """Start watching: record the forward order of the layers at the next forward pass,
        and hook the optimizer if one was given (idempotent)."""
        if self._handles:
            return self
        if not self._order:
            for name, m in self._candidates():
                self._order_hooks.append(m.register_forward_pre_hook(self._make_order_hook(name)))
            self._handles.append(self.model.register_forward_hook(self._order_done, always_call=True))
        if self.optimizer is not None:
            self._handles.append(self.optimizer.register_step_pre_hook(lambda *a: self.step()))
        if not self._handles:  # keep `attached` meaningful
            self._handles.append(_NoHandle())
        return self

    def _detached(self) -> None:
        for h in self._order_hooks:
            h.remove()
        self._order_hooks.clear()

    def _make_order_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            if name not in self._order:
                self._order.append(name)
        return hook

    def _order_done(self, module: nn.Module, args: Any, out: Any) -> None:
        for h in self._order_hooks:
            h.remove()
        self._order_hooks.clear()

    # -- recording ------------------------------------------------------------------------
    def step(self) -> None:
        """Record this step's per-layer gradient norms and activation parameters (call after
        ``backward`` and before ``zero_grad``). Every ``every``-th call is recorded."""
        self._count += 1
        if (self._count - 1) % self.every:
            return
        if self._layout is None:  # fixed at the first recorded step (lazy modules are built by then)
            self._layout = self._build_layout()
        names, params, index, pnames, pvals = self._layout
        with torch.no_grad():
            present = [i for i, p in enumerate(params) if p.grad is not None]
            L = len(names)
            dev = params[present[0]].grad.device if present else torch.device("cpu")  # type: ignore[union-attr]
            sq = torch.zeros(L, dtype=torch.float64, device=dev)
            has = torch.zeros(L, dtype=torch.float64, device=dev)
            if present:
                grads = [params[i].grad for i in present]
                if all(g.dtype in (torch.float32, torch.float64) and g.device == dev for g in grads):  # type: ignore[union-attr]
                    pn = torch.stack(torch._foreach_norm(grads)).double()  # type: ignore[arg-type]
                else:  # low precision: accumulate in fp32 so that the norm itself cannot overflow
                    pn = torch.stack([torch.linalg.vector_norm(g, dtype=torch.float32).to(dev)  # type: ignore[arg-type]
                                      for g in grads]).double()
                idx = index[present].to(dev)
                sq.index_add_(0, idx, pn * pn)
                has.index_add_(0, idx, torch.ones_like(pn))
            norms = torch.where(has > 0, sq.sqrt(), torch.full_like(sq, math.nan))
            parts = [norms, (has > 0).double()]
            if pvals:
                parts.append(torch.cat([p.detach().reshape(-1).to(dev, torch.float64) for p in pvals]))
            row = torch.cat(parts).cpu()
        self._steps.append(self._count - 1)
        self._rows.append(row)

    def reset(self) -> None:
        """Forget the recorded steps (the layer list and step counter are kept)."""
        self._steps.clear()
        self._rows.clear()

    def report(self) -> GradientFlowReport:
        """The recorded steps, the first/last ratio and the flags."""
        th = self.thresholds
        layout = self._layout if self._layout is not None else self._build_layout()
        names, _, _, pnames, pvals = layout
        L = len(names)
        S = len(self._rows)
        data = torch.stack(self._rows).numpy() if S else np.zeros((0, 2 * L + sum(p.numel() for p in pvals)))
        norms = data[:, :L].astype(np.float64)
        present = data[:, L:2 * L] > 0
        params: dict[str, np.ndarray] = {}
        off = 2 * L
        for name, p in zip(pnames, pvals):
            params[name] = data[:, off:off + p.numel()].copy()
            off += p.numel()
        # first and last layer that had a gradient at that step (frozen or unused layers aside)
        ratio = np.full(S, np.nan)
        for s_, row in enumerate(present):
            idx = np.flatnonzero(row)
            if idx.size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio[s_] = norms[s_, idx[0]] / norms[s_, idx[-1]]
        finite = np.isfinite(norms)
        nonfinite = (present & ~finite).any(axis=1) if L else np.zeros(S, bool)
        okn = np.where(finite, norms, np.nan)
        with np.errstate(all="ignore"):
            lo = np.array([np.nanmin(r) if np.isfinite(r).any() else np.nan for r in okn])
            hi = np.array([np.nanmax(r) if np.isfinite(r).any() else np.nan for r in okn])
        low_ratio = ratio < th["vanish_ratio"]
        low_norm = lo < th["norm_floor"]
        vsteps = low_ratio | low_norm
        high_ratio = ratio > th["explode_ratio"]
        high_norm = hi > th["norm_ceiling"]
        esteps = nonfinite | high_ratio | high_norm
        vanishing = bool(S and vsteps.sum() * 2 >= S)
        exploding = bool(esteps.any())
        fin_ratio = ratio[np.isfinite(ratio)]
        med = float(np.median(fin_ratio)) if fin_ratio.size else math.nan
        reasons = []
        if S:
            if low_ratio.any():
                reasons.append(f"first/last ratio below {th['vanish_ratio']:g} on {int(low_ratio.sum())}/{S} steps")
            if low_norm.any():
                reasons.append(f"a layer norm below {th['norm_floor']:g} on {int(low_norm.sum())}/{S} steps")
            if nonfinite.any():
                reasons.append(f"non-finite gradient on {int(nonfinite.sum())}/{S} steps")
            if high_ratio.any():
                reasons.append(f"first/last ratio above {th['explode_ratio']:g} on {int(high_ratio.sum())}/{S} steps")
            if high_norm.any():
                reasons.append(f"a layer norm above {th['norm_ceiling']:g} on {int(high_norm.sum())}/{S} steps")
        return GradientFlowReport(
            layers=list(names),
            steps=np.asarray(self._steps, dtype=np.int64),
            norms=norms,
            first_last_ratio=ratio,
            first_last_ratio_median=med,
            vanishing=vanishing,
            exploding=exploding,
            vanishing_steps=vsteps,
            exploding_steps=esteps,
            nonfinite_steps=nonfinite,
            reasons=reasons,
            thresholds=dict(th, vanishing_step_share=0.5),
            params=params,
        )


class _NoHandle:
    def remove(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# Shared helpers: tables and PNG files
# --------------------------------------------------------------------------------------------


def _format_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    out = [line(head), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _mpl() -> tuple[Any, Any]:
    """matplotlib's Figure and Agg canvas (no pyplot, no global backend change)."""
    return _io.matplotlib_figure()


def _save(fig: Any, path: str | os.PathLike[str]) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (folders created; see ``rectifiers._util``)."""
    return str(_io.save_figure(fig, path, "png", dpi=110))


