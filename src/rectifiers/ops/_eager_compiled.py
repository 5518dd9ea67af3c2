"""What the eager backend gives ``torch.compile`` to trace on CPU when a gradient is needed.

Why not the plain formulas: for ``relu(x)``, ``leaky_relu(x, a)`` and ``relu(x) + b`` the
compiler's partitioner keeps a bool mask (``x <= 0`` or ``x > 0``) for backward, and Inductor's
C++ code writes and reads that bool tensor through scalar byte loops (torch 2.13:
``at::vec::VecMask<float, 1>::store(bool*)`` converts through a 64-lane generic
``Vectorized<bool>``; the load goes element by element). A (32, 64, 56, 56) float32 ReLU then
takes 67 ms forward and 21 ms backward on one thread instead of 3.5 and 5; ``torch.nn.ReLU``
compiled the same way is just as slow (``benchmarks/results/compiled-cpu-analysis.md``).

What is traced instead:

* ``relu``, ``leaky_relu`` with a slope >= 0: the forward stays the plain formula (the compiler
  fuses it with its neighbours); the output is kept, which the next layer keeps anyway (0 extra
  bytes), and the backward is one opaque op on ``(g, y)`` running torch's own kernel, so that
  the partitioner cannot trade the output for a bool mask.
* ``leaky_relu`` with a slope < 0, ``flexible_relu``: ``y`` is the plain formula; the 1-byte
  mask comes from an opaque op (ATen's vectorised compare) and ``dx`` from another (torch's
  backward kernel, block by block); FReLU's bias gradient stays a plain sum.

Gradients follow torch's conventions exactly (NaN, +-0, an infinite ``g``). The ops have no
autograd formula of their own: double backward through a compiled graph is refused by
``torch.compile`` anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import reference as ref
from ._eager_common import cache_blocks, reduce_dims

__all__ = ["wanted", "relu", "leaky_relu", "flexible_relu"]

NS = "rectifiers_compiled"
_aten = torch.ops.aten


def wanted(x: Tensor) -> bool:
    """Whether to trace these formulations: Dynamo compiling (not exporting) a CPU tensor.

    ``torch.export`` keeps the plain aten ops (ONNX and other consumers understand them); on
    GPU the generated code handles bool masks well.
    """
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting() and x.device.type == "cpu"


# --------------------------------------------------------------------------------------------
# Opaque ops


@torch.library.custom_op(f"{NS}::grad_from_output", mutates_args=())
def _grad_from_output(g: Tensor, y: Tensor, slope: float, relu: bool) -> Tensor:
    """dx from the kept output: ``g if y > 0 else slope*g`` (ReLU: ``threshold_backward``)."""
    dx = torch.empty_like(y)
    if relu:
        _aten.threshold_backward.grad_input(g, y, 0, grad_input=dx)
    else:
        _aten.leaky_relu_backward.grad_input(g, y, slope, True, grad_input=dx)
    return dx


@_grad_from_output.register_fake
def _(g, y, slope, relu):  # type: ignore[no-untyped-def]
    return torch.empty_like(y)


@torch.library.custom_op(f"{NS}::pass_mask", mutates_args=())
def _pass_mask(x: Tensor, nan_passes: bool) -> Tensor:
    """Where the gradient passes: ``x > 0``, NaN included when ``nan_passes`` (``relu(x) != 0``)."""
    m = torch.empty_like(x, dtype=torch.bool)
    if nan_passes:
        torch.le(x, 0, out=m).logical_not_()
    else:
        torch.gt(x, 0, out=m)
    return m


@_pass_mask.register_fake
def _(x, nan_passes):  # type: ignore[no-untyped-def]
    return torch.empty_like(x, dtype=torch.bool)


@torch.library.custom_op(f"{NS}::grad_from_mask", mutates_args=())
def _grad_from_mask(g: Tensor, mask: Tensor, slope: float) -> Tensor:
    """dx = ``g`` where mask, ``slope*g`` elsewhere (0 for slope 0, also for an infinite g)."""
    dx = torch.empty_like(g)
    # Block by block, so that the mask's conversion and the kernel's pass stay in cache.
    for idx in cache_blocks(dx, None):
        m = mask[idx].to(g.dtype)
        if slope == 0.0:
            _aten.threshold_backward.grad_input(g[idx], m, 0, grad_input=dx[idx])
        else:
            _aten.leaky_relu_backward.grad_input(g[idx], m, slope, False, grad_input=dx[idx])
    return dx


@_grad_from_mask.register_fake
def _(g, mask, slope):  # type: ignore[no-untyped-def]
    return torch.empty_like(g)


# --------------------------------------------------------------------------------------------
# Functions traced by Dynamo


class _KeepOutput(torch.autograd.Function):
    """ReLU, or LeakyReLU with a slope >= 0 (``sign(y) = sign(x)``): keep only the output."""

    @staticmethod
    def forward(x: Tensor, slope: float, relu: bool) -> Tensor:
        return torch.relu(x) if relu else F.leaky_relu(x, slope)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        _, ctx.slope, ctx.relu = inputs
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (y,) = ctx.saved_tensors
        return torch.ops.rectifiers_compiled.grad_from_output(g, y, ctx.slope, ctx.relu), None, None


class _KeepMask(torch.autograd.Function):
    """LeakyReLU with a slope < 0 (bias None), or FReLU ``relu(x) + b``: keep a 1-byte mask."""

    @staticmethod
    def forward(x: Tensor, slope: float, bias: Tensor | None, dim: int | None):  # type: ignore[no-untyped-def]
        if bias is None:
            y = F.leaky_relu(x, slope)
        else:
            y = torch.relu(x) + ref.channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
        # FReLU passes the gradient at NaN as torch's ReLU does; LeakyReLU's test is strict.
        return y, torch.ops.rectifiers_compiled.pass_mask(x, bias is not None)

    @staticmethod
    def setup_context(ctx, inputs, output):  # type: ignore[no-untyped-def]
        _, ctx.slope, bias, dim = inputs
        mask = output[1]
        ctx.mark_non_differentiable(mask)
        ctx.cdim = dim if (bias is not None and dim is not None and bias.numel() > 1) else None
        ctx.bias_shape = None if bias is None else bias.shape
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(mask)

    @staticmethod
    def backward(ctx, g, _gmask):  # type: ignore[no-untyped-def]
        (mask,) = ctx.saved_tensors
        dx = db = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.rectifiers_compiled.grad_from_mask(g, mask, ctx.slope)
        if ctx.bias_shape is not None and ctx.needs_input_grad[2]:
            dims = reduce_dims(g.dim(), ctx.cdim)
            acc = torch.promote_types(g.dtype, torch.float32)
            s = g.sum(dims, dtype=acc) if dims else g.to(acc)
            db = s.reshape(ctx.bias_shape).to(ctx.bias_dtype)
        return dx, None, db, None


def relu(x: Tensor) -> Tensor:
    """``max(0, x)``, keeping the output (see the module docstring)."""
    return _KeepOutput.apply(x, 0.0, True)


def leaky_relu(x: Tensor, negative_slope: float) -> Tensor:
    """``x if x > 0 else a*x``: the output kept for a >= 0, a 1-byte mask otherwise."""
    if negative_slope >= 0:
        return _KeepOutput.apply(x, negative_slope, False)
    y, _ = _KeepMask.apply(x, negative_slope, None, None)
    return y


def flexible_relu(x: Tensor, bias: Tensor, dim: int | None) -> Tensor:
    """``relu(x) + b`` keeping a 1-byte mask (only x's gradient needs one)."""
    if not x.requires_grad:  # only the bias needs a gradient: the sum of g, nothing to keep
        return torch.relu(x) + ref.channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
    y, _ = _KeepMask.apply(x, 0.0, bias, dim)
    return y
