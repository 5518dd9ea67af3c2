"""The ``"torch"`` backend: plain PyTorch, the baseline every fast path is measured against."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import reference as ref


def relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return torch.relu_(x) if inplace else torch.relu(x)


def leaky_relu(x: torch.Tensor, negative_slope: float, inplace: bool) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope, inplace)


def prelu(x: torch.Tensor, weight: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``torch.prelu`` with the channels at any ``dim`` (bitwise the reference formula)."""
    w = weight.to(x.dtype)
    if w.numel() == 1 or dim is None or dim == 1:
        return torch.prelu(x, w.reshape(-1))
    if x.dim() == 1:  # a 1-D input of channels (dim 0)
        return torch.prelu(x.unsqueeze(0), w).squeeze(0)
    # A permuted view: torch.prelu's output follows the view's strides, so moving the dim back
    # gives x's own layout.
    return torch.prelu(x.movedim(dim, 1), w).movedim(1, dim)


def flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int | None, inplace: bool) -> torch.Tensor:
    b = ref.channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
    if not inplace:
        return torch.relu(x) + b
    if torch.is_grad_enabled() and (x.requires_grad or bias.requires_grad):
        # relu_(x).add_(b) would overwrite the output relu keeps for backward: copy back instead.
        return x.copy_(torch.relu(x) + b)
    return torch.relu_(x).add_(b)


def funnel_relu(
    x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
):
    # The plain formula: depthwise conv, BatchNorm and torch.maximum, each keeping its own
    # tensors for backward.
    return ref.funnel_relu(
        x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
        momentum, eps,
    )
