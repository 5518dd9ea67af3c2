"""The reports' data: per-layer dead-unit statistics, their aggregation over a window, and the
gradient-flow record. Tables, plots and JSON are written by :mod:`.render`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import render
from .render import _list, _nested, _num

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
        return render.dead_table(self)

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write a PNG bar chart (dead / inactive / near-dead fraction and activation rate per
        use site) to ``path``, atomically. Returns the path. Needs matplotlib."""
        return render.dead_plot(self, path, title)


@dataclass
class GradientFlowReport:
    """Per-layer gradient norms over the recorded steps, and the activation parameters.

    ``norms[s, l]`` is the L2 norm of the gradient of layer ``layers[l]`` (all its own
    parameters together) at recorded step ``steps[s]``; NaN where the layer had no gradient.
    ``first_last_ratio[s] = norms[s, i] / norms[s, j]`` with ``i`` / ``j`` the first / last layer
    that had a gradient at that step (``0`` and ``L - 1`` unless some are frozen or unused). ``params[name]`` is (S, numel): the
    parameter's values at each recorded step (before the optimizer's update). ``zero_grad``
    names the model's parameters whose gradient was zero (exactly, or up to rounding: see
    :class:`GradientFlowMonitor`) at every recorded step where they had one: they cannot
    learn. It appears in ``to_dict`` and ``to_table`` only when there are some.
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
    zero_grad: list[str] = field(default_factory=list)

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
            **({"zero_grad": list(self.zero_grad)} if self.zero_grad else {}),
        }

    def to_table(self) -> str:
        """Per-layer median / min / max / last norm, the ratio, the flags and the parameters."""
        return render.flow_table(self)

    def plot(self, path: str | os.PathLike[str], title: str | None = None) -> str:
        """Write a PNG (gradient norm per layer over steps, the first/last ratio with its
        thresholds, and the activation parameters over steps) to ``path``, atomically."""
        return render.flow_plot(self, path, title)
