"""Plain-PyTorch formulas: the specification and the oracle of every test.

Each function here is the activation written as directly as PyTorch allows, with autograd
deriving its gradients. They do no argument checking and make no attempt to be fast: the
functions in :mod:`rectifiers.functional` check their arguments and dispatch to the fast paths
in :mod:`rectifiers.ops`, and the tests compare those against these.

Kinks follow PyTorch exactly: the positive branch is taken only where ``x > 0`` (strictly), so
``x = 0`` and ``x = -0.0`` take the negative branch, as in ``torch.nn``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "relu",
    "leaky_relu",
    "prelu",
    "flexible_relu",
    "funnel_relu",
    "funnel_transform",
]

def _channel_view(param: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Reshape a 1-element or per-channel parameter so it broadcasts against ``x`` along ``dim``.

    The oracle's own copy (the backends use :func:`rectifiers.ops._common.channel_view`).

    ``dim`` must already be normalised to ``0 <= dim < x.dim()`` (or ``x.dim() < 2``, in which
    case the parameter has a single element and is returned flattened to shape ``()``).
    """
    if param.numel() == 1:
        return param.reshape(())
    shape = [1] * x.dim()
    shape[dim] = param.numel()
    return param.reshape(shape)


def relu(x: torch.Tensor) -> torch.Tensor:
    """``max(0, x)``; derivative ``1 if x > 0 else 0`` (``torch.relu``, which keeps ``-0.0``)."""
    return torch.relu(x)


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01) -> torch.Tensor:
    """``x if x > 0 else a*x``; derivative ``1 if x > 0 else a``."""
    return torch.where(x > 0, x, x * negative_slope)


def prelu(x: torch.Tensor, weight: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``x if x > 0 else a*x`` with ``a = weight`` (one element, or one per channel along ``dim``)."""
    a = _channel_view(weight, x, dim)
    return torch.where(x > 0, x, a * x)


def flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """FReLU (Qiu et al. 2018): ``max(0, x) + b`` with ``b = bias`` (one element or per channel)."""
    b = _channel_view(bias, x, dim)
    return torch.relu(x) + b


def funnel_transform(
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    bn_weight: torch.Tensor | None,
    bn_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    training: bool,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """``T(x) = BatchNorm(depthwise conv(x))``, the funnel condition of Ma et al. 2020.

    ``x`` is (N, C, *spatial) with 1 to 3 spatial dims; ``conv_weight`` is (C, 1, k, ..., k) with
    odd ``k``, applied with padding ``k // 2`` so the spatial size is kept; ``conv_bias`` is (C,)
    or ``None``. The conv runs in the dtype of ``x``. Running statistics,
    when given, are updated in place in training mode exactly as ``F.batch_norm`` does.
    """
    conv = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
    k = conv_weight.shape[-1]
    w = conv_weight.to(x.dtype)
    b = None if conv_bias is None else conv_bias.to(x.dtype)
    t = conv(x, w, b, 1, k // 2, 1, x.shape[1])
    return F.batch_norm(t, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)


def funnel_relu(
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    bn_weight: torch.Tensor | None,
    bn_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Funnel activation (Ma et al. 2020): ``max(x, T(x))``, ties splitting the gradient."""
    t = funnel_transform(
        x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
    )
    return torch.maximum(x, t)
