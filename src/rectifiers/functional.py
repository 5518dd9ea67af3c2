"""The functional interface: argument checks, then dispatch to a backend in :mod:`rectifiers.ops`.

Every function takes an optional ``backend`` (``"auto"``, ``"torch"``, ``"eager"``,
``"triton"``); ``None`` means the environment variable ``RECTIFIERS_BACKEND``, or ``"auto"``.
See :mod:`rectifiers.ops` for what each backend is.

Errors: ``TypeError`` for an argument of the wrong type (an integer or bool tensor, a bool where
a slope is meant), ``ValueError`` for a wrong value (a non-finite slope, an even kernel size),
:class:`~rectifiers._checks.ShapeError` (both a ``ValueError`` and, as torch raises for the
same input, a ``RuntimeError``) for a shape that does not fit (a parameter whose size does not
match the input's channels, a weight of 2 or more dims, a funnel input of the wrong rank),
``IndexError`` for a ``dim`` out of range, ``RuntimeError`` for ``inplace=True`` on a leaf tensor
that requires grad.
"""

from __future__ import annotations

import math

import torch

from . import _checks as C
from .ops import FAST_DTYPES, cpp_operators, eager_cpu, get_backend

_Tensor = torch.Tensor

# The fast paths: a plain CPU tensor of a float dtype on the eager backend, with arguments that
# need no conversion, goes straight to torch.relu or to the C++ operators (whose autograd is in
# C++ too). Anything else (another backend, a CUDA tensor, tracing, an argument to check or
# refuse) takes the full path below them, which checks every argument and asks get_backend.

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu", "frelu", "funnel_relu"]


def relu(input: torch.Tensor, inplace: bool = False, *, backend: str | None = None) -> torch.Tensor:
    """ReLU, the baseline: ``max(0, x)``; derivative ``1 if x > 0 else 0``.

    Any shape. Equal to ``torch.relu`` bit for bit.
    """
    if inplace is False and type(input) is _Tensor and input.dtype in FAST_DTYPES and eager_cpu(input, backend):
        return torch.relu(input)
    C.check_input("relu", input)
    C.check_inplace("relu", input, inplace)
    return get_backend(input, backend).relu(input, inplace)


def leaky_relu(
    input: torch.Tensor,
    negative_slope: float = 0.01,
    inplace: bool = False,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Leaky ReLU: ``x if x > 0 else a*x`` with ``a = negative_slope`` (default 0.01).

    Derivative ``1 if x > 0 else a`` (so ``a`` at ``x = 0``, as in torch). Any shape. Equal to
    ``torch.nn.functional.leaky_relu`` bit for bit in float32 and float64.
    """
    if (inplace is False and type(input) is _Tensor and input.dtype in FAST_DTYPES
            and type(negative_slope) is float and math.isfinite(negative_slope)):
        ops = cpp_operators(input, backend)
        if ops is not None:
            return ops.leaky_relu(input, negative_slope)
    C.check_input("leaky_relu", input)
    a = C.check_scalar("leaky_relu", negative_slope, "negative_slope")
    C.check_inplace("leaky_relu", input, inplace)
    if inplace and a < 0 and input.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "leaky_relu: inplace=True with a negative negative_slope cannot be differentiated "
            f"(the sign of the input is lost); got negative_slope={a}: use inplace=False"
        )
    return get_backend(input, backend).leaky_relu(input, a, inplace)


def prelu(
    input: torch.Tensor, weight: torch.Tensor, dim: int = 1, *, backend: str | None = None
) -> torch.Tensor:
    """PReLU (He et al. 2015): ``x if x > 0 else a*x`` with a learnable slope ``a = weight``.

    Shapes: ``input`` is (N, C, *) with the channels along ``dim`` (default 1, as torch; use
    ``dim=-1`` for channels-last features (N, *, C)); ``weight`` has 1 element (shared) or C.
    A 0-D input, or a 1-D input with ``dim=1``, has no channel dimension, as in torch.

    Gradients: ``dL/dx = g if x > 0 else a*g``; ``dL/da = sum over x <= 0 of g*x``, per channel.
    The output has the dtype of ``input`` (the weight is cast to it).
    """
    if type(input) is _Tensor and input.dtype in FAST_DTYPES:
        d = C.fast_channel_dim(input, weight, dim)
        if d is not None:
            ops = cpp_operators(input, backend, weight)
            if ops is not None:
                return ops.prelu(input, weight, d)
    C.check_input("prelu", input)
    d = C.channel_dim("prelu", input, dim)
    C.check_channel_param("prelu", input, weight, d, "weight", at_most_1d=True)
    return get_backend(input, backend).prelu(input, weight, d)


def flexible_relu(
    input: torch.Tensor,
    bias: torch.Tensor,
    dim: int = 1,
    inplace: bool = False,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """FReLU, the flexible ReLU of Qiu et al. 2018: ``max(0, x) + b`` with a learnable bias ``b``.

    Not the funnel activation (that is :func:`funnel_relu`). Shapes as :func:`prelu`: ``bias``
    has 1 element (the authors' advice) or one per channel along ``dim``.

    Gradients: ``dL/dx = g if x > 0 else 0``; ``dL/db = sum of g``, per channel.
    """
    if inplace is False and type(input) is _Tensor and input.dtype in FAST_DTYPES:
        d = C.fast_channel_dim(input, bias, dim)
        if d is not None:
            ops = cpp_operators(input, backend, bias)
            if ops is not None:
                return ops.flexible_relu(input, bias, d)
    C.check_input("flexible_relu", input)
    d = C.channel_dim("flexible_relu", input, dim)
    C.check_channel_param("flexible_relu", input, bias, d, "bias")
    C.check_inplace("flexible_relu", input, inplace)
    return get_backend(input, backend).flexible_relu(input, bias, d, inplace)


#: The article's name for :func:`flexible_relu`.
frelu = flexible_relu


def _check_funnel_params(
    x: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    bn_weight: torch.Tensor | None,
    bn_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
) -> None:
    fn = "funnel_relu"
    if x.dim() not in (3, 4, 5):
        raise C.ShapeError(
            f"{fn}: input must be (N, C, L), (N, C, H, W) or (N, C, D, H, W), got shape "
            f"{tuple(x.shape)}"
        )
    c = x.shape[1]
    nsp = x.dim() - 2
    C.check_input(fn, conv_weight, "conv_weight")
    k = conv_weight.shape[-1] if conv_weight.dim() else 0
    expected = (c, 1) + (k,) * nsp
    if conv_weight.shape != expected or k < 1:
        raise C.ShapeError(
            f"{fn}: conv_weight must be a depthwise kernel of shape (C, 1{', k' * nsp}) with "
            f"C = {c} channels of the input, got shape {tuple(conv_weight.shape)}"
        )
    if k % 2 == 0:
        raise ValueError(f"{fn}: the kernel size must be odd (padding k // 2 keeps the size), got {k}")
    for name, t in (
        ("conv_bias", conv_bias),
        ("bn_weight", bn_weight),
        ("bn_bias", bn_bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        if t is None:
            continue
        C.check_input(fn, t, name)
        if t.dim() != 1 or t.shape[0] != c:
            raise C.ShapeError(
                f"{fn}: {name} must have shape ({c},) for an input with {c} channels, "
                f"got shape {tuple(t.shape)}"
            )
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{fn}: give both running_mean and running_var, or neither")


def funnel_relu(
    input: torch.Tensor,
    conv_weight: torch.Tensor,
    bn_weight: torch.Tensor | None = None,
    bn_bias: torch.Tensor | None = None,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    conv_bias: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Funnel activation (Ma et al. 2020): ``max(x, T(x))``, ``T = BatchNorm(depthwise conv(x))``.

    Shapes: ``input`` is (N, C, L), (N, C, H, W) or (N, C, D, H, W); ``conv_weight`` is
    (C, 1, k, ...) with odd ``k``, applied with padding ``k // 2``; the BatchNorm arguments
    are those of ``torch.nn.functional.batch_norm``, each (C,). In training mode (or without
    running statistics) the batch statistics are used and the running ones updated in place;
    they need more than one value per channel (N * L, N * H * W or N * D * H * W > 1), else
    ``ValueError`` is raised before anything changes, as ``torch.nn.BatchNorm2d`` does.

    Gradient: as ``torch.maximum`` (ties split it evenly between ``x`` and ``T(x)``), plus the
    path through the conv and the BatchNorm.
    """
    C.check_input("funnel_relu", input)
    _check_funnel_params(input, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var)
    m = C.check_scalar("funnel_relu", momentum, "momentum")
    e = C.check_scalar("funnel_relu", eps, "eps")
    if e <= 0:
        raise ValueError(f"funnel_relu: eps must be positive, got {e}")
    # Before any backend runs: some would write NaN into running_var (0 / 0) without a word.
    C.check_batch_stats("funnel_relu", input, bool(training) or running_mean is None)
    return get_backend(input, backend).funnel_relu(
        input, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var,
        bool(training), m, e,
    )
