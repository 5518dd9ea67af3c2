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
    weight = weight.to(x.dtype)
    if dim in (None, 1) or weight.numel() == 1:
        # torch.prelu wants the channels at dim 1 (or no channel dim at all).
        return torch.prelu(x, weight.reshape(-1))
    return ref.prelu(x, weight, dim)


def flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int | None, inplace: bool) -> torch.Tensor:
    b = ref.channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
    y = torch.relu(x) + b
    # relu_(x).add_(b) would overwrite the output relu keeps for backward: copy back instead.
    return x.copy_(y) if inplace else y


def funnel_relu(
    x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
):
    # The plain formula: depthwise conv, BatchNorm and torch.maximum, each keeping its own
    # tensors for backward.
    return ref.funnel_relu(
        x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
        momentum, eps,
    )
