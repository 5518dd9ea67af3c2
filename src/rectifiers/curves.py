"""Values and derivatives of each activation on a grid, computed through the library itself.

Used by the ``table`` and ``plot`` commands. Each curve is evaluated with the public modules and
differentiated with autograd, so what is shown is what the library computes, not a formula typed
a second time.

The funnel activation depends on a neighbourhood, not on x alone. Its curve is taken in a stated
context (:data:`FUNNEL_CONTEXT`): every x is the centre of a constant 3 x 3 neighbourhood of
value x, the depthwise kernel is constant with its weights summing to ``kernel_sum``, and the
BatchNorm is in eval mode with running mean 0, running variance 1, weight 1 and bias 0, so that
``T(x) = kernel_sum * x / sqrt(1 + eps)`` and the curve is ``max(x, T(x))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import modules as M
from ._formulas import FORMULAS

__all__ = ["Curve", "NAMES", "DEFAULT_PARAMS", "FUNNEL_CONTEXT", "curve", "make_module"]

NAMES = ("relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu")

#: The parameter each activation is swept over, and its default (None: no parameter).
DEFAULT_PARAMS: dict[str, tuple[str | None, float | None]] = {
    "relu": (None, None),
    "leaky_relu": ("a", 0.01),
    "prelu": ("a", 0.25),
    "flexible_relu": ("b", -1.0),
    "funnel_relu": ("kernel_sum", 0.5),
}

FUNNEL_CONTEXT = (
    "constant 3x3 neighbourhood of value x; constant kernel summing to {kernel_sum:g}; "
    "BatchNorm in eval mode (mean 0, var 1, weight 1, bias 0)"
)


@dataclass
class Curve:
    """An activation evaluated on a grid: ``y = f(x)`` and ``dy = f'(x)`` (by autograd)."""

    name: str
    param: str | None
    value: float | None
    x: torch.Tensor
    y: torch.Tensor
    dy: torch.Tensor
    kinks: list[float] = field(default_factory=list)
    formula: str = ""
    derivative: str = ""
    context: str = ""


def make_module(name: str, value: float | None = None) -> torch.nn.Module:
    """The library's module for ``name`` with its swept parameter set to ``value``."""
    if name == "relu":
        return M.ReLU()
    if name == "leaky_relu":
        return M.LeakyReLU(0.01 if value is None else value)
    if name == "prelu":
        return M.PReLU(1, 0.25 if value is None else value)
    if name == "flexible_relu":
        return M.FlexibleReLU(1, -1.0 if value is None else value)
    if name == "funnel_relu":
        ks = 0.5 if value is None else value
        m = M.FunnelReLU(1, 3, dtype=torch.float64)
        with torch.no_grad():
            m.weight.fill_(ks / 9.0)
        return m.eval()
    raise KeyError(name)


def curve(name: str, x: torch.Tensor, value: float | None = None) -> Curve:
    """Evaluate ``name`` (one of :data:`NAMES`) on the 1-D grid ``x`` with its parameter ``value``."""
    param, default = DEFAULT_PARAMS[name]
    value = default if value is None else value
    mod = make_module(name, value)
    xs = x.detach().to(torch.float64).clone().requires_grad_(True)
    mod = mod.to(torch.float64)
    context = ""
    if name == "funnel_relu":
        # One 3x3 image per grid point, constant at that point's value.
        img = xs.reshape(-1, 1, 1, 1).expand(-1, 1, 3, 3)
        y = mod(img)[:, 0, 1, 1]
        context = FUNNEL_CONTEXT.format(kernel_sum=value)
    else:
        y = mod(xs)
    (dy,) = torch.autograd.grad(y.sum(), xs)
    formula, derivative = FORMULAS[name]
    return Curve(
        name=name,
        param=param,
        value=value,
        x=xs.detach(),
        y=y.detach(),
        dy=dy.detach(),
        kinks=[0.0],
        formula=formula,
        derivative=derivative,
        context=context,
    )
