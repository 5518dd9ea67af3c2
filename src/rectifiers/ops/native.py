"""The ``"torch"`` backend: plain PyTorch, the baseline every fast path is measured against.

``torch.nn.functional`` where torch has the activation; the plain formulas of :mod:`._common`
(bitwise the reference's) otherwise. Each op keeps what its torch ops keep for backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import plain_flexible_relu, plain_funnel_relu, plain_prelu

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu"]


def relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    return torch.relu_(x) if inplace else torch.relu(x)


def leaky_relu(x: torch.Tensor, negative_slope: float, inplace: bool) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope, inplace)


def prelu(x: torch.Tensor, weight: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``torch.prelu`` with the channels at any ``dim`` (bitwise the reference formula)."""
    return plain_prelu(x, weight, dim)


def flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int | None, inplace: bool) -> torch.Tensor:
    return plain_flexible_relu(x, bias, dim, inplace)


def funnel_relu(
    x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
):
    # The plain formula: depthwise conv, BatchNorm and torch.maximum, each keeping its own
    # tensors for backward.
    return plain_funnel_relu(
        x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
        momentum, eps,
    )
