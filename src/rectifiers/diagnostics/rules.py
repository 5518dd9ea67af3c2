"""Local derivative rules, one per kind of activation module, and the kind lookup.

A rule says, for one call of an activation module, where each unit's input was in the positive
region and where its local derivative ``d act / d x`` was non-zero; the dead-unit monitor counts
both. Rules are found by the module's class (walking its MRO); the kind names of this library's
activations are their description names (:mod:`rectifiers._spec`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .. import _spec
from .. import modules as _m

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

def _kind(cls: type) -> str:
    """The kind name of one of the article's activations: its description's name (``PReLU`` and
    ``torch.nn.PReLU`` -> ``"prelu"``)."""
    return _spec.describe(cls.__name__).name


#: Rules by class; lookup walks the module's MRO, so subclasses (nn.ReLU6 < nn.Hardtanh,
#: FunnelReLU1d < _FunnelReLUNd) find the most specific entry. The article's activations take
#: their kind names from their descriptions; torch's other activations are named here.
_RULES: dict[type, _Kind] = {
    _m.ReLU: _Kind(_kind(_m.ReLU), _r_relu, needs_output=True, count_output=True),
    nn.ReLU: _Kind(_kind(nn.ReLU), _r_relu, needs_output=True, count_output=True),
    _m.LeakyReLU: _Kind(_kind(_m.LeakyReLU), _r_leaky),
    nn.LeakyReLU: _Kind(_kind(nn.LeakyReLU), _r_leaky),
    _m.PReLU: _Kind(_kind(_m.PReLU), _r_prelu, own_channel_dim=True),
    nn.PReLU: _Kind(_kind(nn.PReLU), _r_prelu),
    _m.FlexibleReLU: _Kind(_kind(_m.FlexibleReLU), _r_relu, own_channel_dim=True),
    _m._FunnelReLUNd: _Kind(_kind(_m.FunnelReLU), _r_funnel, needs_output=True, channels_first=True),
    nn.RReLU: _Kind("rrelu", _r_rrelu),
    nn.ReLU6: _Kind("relu6", _r_hardtanh),
    nn.Hardtanh: _Kind("hardtanh", _r_hardtanh),
    nn.Threshold: _Kind("threshold", _r_threshold),
    nn.ELU: _Kind("elu", _exp_rule(lambda m: float(m.alpha), lambda m: 1.0)),
    nn.CELU: _Kind("celu", _exp_rule(lambda m: 1.0, lambda m: float(m.alpha))),
    nn.SELU: _Kind("selu", _exp_rule(lambda m: _SELU_SCALE * _SELU_ALPHA, lambda m: 1.0)),
}

#: Activation modules whose parameters the gradient-flow monitor tracks over time: the learnable
#: parameter their description names (PReLU ``weight``, FReLU ``bias``).
_TRACKED_PARAMS: dict[type, tuple[str, ...]] = {
    cls: (learnable,)
    for cls in (_m.PReLU, nn.PReLU, _m.FlexibleReLU)
    if (learnable := _spec.describe(cls.__name__).learnable) is not None
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
