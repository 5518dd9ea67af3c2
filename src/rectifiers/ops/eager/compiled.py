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
* ``flexible_relu`` when the fused C++ kernel of :mod:`rectifiers.ops.cpp.pointwise` is available (decided once
  per compilation, at trace time: see :func:`fused_available`) and x's dtype is one it handles:
  two custom ops around that kernel, the eager path's own passes. ``frelu_fwd(x, b, cdim)``
  returns ``y`` and the bit-packed mask of ``relu(x) != 0`` (a flat uint8 tensor of
  ``ceil(numel / 8)`` bytes, bit ``i % 8`` of byte ``i // 8`` for x's element at memory offset
  ``i``), in one pass; ``frelu_bwd`` returns ``dx`` and the float64 per-channel sums of ``g`` in
  one pass. The compiled step keeps 1/8 byte per element, as eager does; the price is that
  Inductor cannot fuse FReLU's forward with its neighbours. ``y`` has x's strides (any dense
  layout: contiguous, channels_last, a permutation); a view with gaps is copied to contiguous
  inside the op (``y`` is then contiguous). ``dx`` has the strides the forward computed in.
* ``leaky_relu`` with a slope < 0, and ``flexible_relu`` without the fused kernel: ``y`` is the
  plain formula; the 1-byte mask comes from an opaque op (ATen's vectorised compare) and ``dx``
  from another (torch's backward kernel, block by block); FReLU's bias gradient stays a plain
  sum.

Gradients follow torch's conventions exactly (NaN, +-0, an infinite ``g``). Only ``frelu_fwd``
has an autograd formula (``register_autograd``); the backward ops have none: double backward
through a compiled graph is refused by ``torch.compile`` anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._common import (
    FLOAT_DTYPES, cache_blocks, channel_view, dense_strides, is_dense, new_mask, pack_mask,
    reduce_dims, unpack_mask,
)
from ..cpp import pointwise as kernels

__all__ = ["wanted", "fused_available", "relu", "leaky_relu", "flexible_relu"]

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
# FReLU through the fused C++ kernel (bit-packed mask): two custom ops and their autograd formula



@torch.compiler.assume_constant_result
def fused_available() -> bool:
    """Whether the fused FReLU kernel of :mod:`rectifiers.ops.cpp.pointwise` is loaded, or loads (trace time).

    Dynamo calls this once per compilation and bakes the answer into the graph, so the custom
    ops below are only traced when their kernel is there. :func:`rectifiers.ops.cpp.pointwise.load` returns at
    once when the kernel is loaded or its build is cached; on a machine that never built it, the
    first compiled FReLU training step builds it (about half a minute, once, as the first eager
    one does). ``RECTIFIERS_NO_CPP=1`` or a failed build: ``False``, the 1-byte-mask path.
    """
    return bool(kernels.loaded() or kernels.load())


@torch.library.custom_op(f"{NS}::frelu_fwd", mutates_args=(), tags=(torch.Tag.needs_exact_strides,))
def _frelu_fwd(x: Tensor, bias: Tensor, cdim: int | None) -> tuple[Tensor, Tensor]:
    """``y = relu(x) + b`` (b per channel along ``cdim``, or one value) and the packed mask.

    The mask is ``relu(x) != 0`` (x > 0 or NaN), bit-packed in the memory order of x (of x made
    contiguous when x has gaps): :func:`rectifiers.ops._common.new_mask`'s format.
    """
    if not is_dense(x):
        x = x.contiguous()
    y = torch.empty_like(x)
    mask = new_mask(x)
    p = kernels.plan(x, cdim)
    if p is not None:
        kernels.forward(x, bias.to(x.dtype), y, mask, p)
        return y, mask
    # A layout the kernel has no mode for (or no kernel): the same results with torch ops.
    b = channel_view(bias.to(x.dtype), x, cdim if cdim is not None else 0)
    torch.add(torch.relu(x), b, out=y)
    m = torch.empty_like(x, dtype=torch.bool)  # x's strides: the packing follows x's memory
    torch.ne(torch.relu(x), 0, out=m)
    mask.copy_(pack_mask(m))
    return y, mask


@_frelu_fwd.register_fake
def _(x, bias, cdim):  # type: ignore[no-untyped-def]
    y = torch.empty_strided(x.shape, dense_strides(x), dtype=x.dtype, device=x.device)
    mask = x.new_empty(((x.numel() + 7) // 8,), dtype=torch.uint8)
    return y, mask


@torch.library.custom_op(f"{NS}::frelu_bwd", mutates_args=(), tags=(torch.Tag.needs_exact_strides,))
def _frelu_bwd(
    g: Tensor, mask: Tensor, stride: Sequence[int], cdim: int | None, need_x: bool, need_b: bool
) -> tuple[Tensor, Tensor]:
    """``dx = g where the mask's bit is set, else 0`` and ``db[c] = sum of g over channel c``.

    ``stride``: the strides the forward computed in (the mask's memory order); ``dx`` has them.
    ``db`` is float64, ``(C,)`` (``(1,)`` for one bias). An output not asked for is empty.
    """
    stride = tuple(stride)
    if g.stride() != stride:
        if all(n == 1 or a == b for n, a, b in zip(g.shape, g.stride(), stride)):
            g = g.as_strided(g.shape, stride, g.storage_offset())  # same memory, size-1 dims aside
        else:  # the kernel reads g in the mask's memory order: one copy
            g = torch.empty_strided(g.shape, stride, dtype=g.dtype, device=g.device).copy_(g)
    c = g.shape[cdim] if cdim is not None else 1
    p = kernels.plan(g, cdim) if (need_x or need_b) else None
    if p is not None:
        dx, db = kernels.backward(g, mask, need_x, need_b, p)
    else:  # no kernel mode for this layout: the same results with torch ops
        dx = db = None
        if need_x:
            m = unpack_mask(mask, g.shape, stride)
            dx = torch.empty_strided(g.shape, stride, dtype=g.dtype, device=g.device)
            torch.ops.aten.threshold_backward.grad_input(g, m.to(g.dtype), 0, grad_input=dx)
        if need_b:
            dims = reduce_dims(g.dim(), cdim)
            db = (g.sum(dims, dtype=torch.float64) if dims else g.to(torch.float64)).reshape(c)
    if dx is None:
        dx = g.new_empty((0,))
    if db is None:
        db = g.new_empty((0,), dtype=torch.float64)
    return dx, db


@_frelu_bwd.register_fake
def _(g, mask, stride, cdim, need_x, need_b):  # type: ignore[no-untyped-def]
    c = g.shape[cdim] if cdim is not None else 1
    dx = torch.empty_strided(g.shape, tuple(stride), dtype=g.dtype, device=g.device) if need_x else g.new_empty((0,))
    db = g.new_empty((c,) if need_b else (0,), dtype=torch.float64)
    return dx, db


def _frelu_setup_context(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    x, bias, cdim = inputs
    ctx.save_for_backward(output[1])  # the packed mask only: 1/8 byte per element
    ctx.stride = dense_strides(x)
    ctx.cdim = cdim
    ctx.bias_shape, ctx.bias_dtype = bias.shape, bias.dtype


def _frelu_backward(ctx, gy, _gmask):  # type: ignore[no-untyped-def]
    (mask,) = ctx.saved_tensors
    need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    dx, db = torch.ops.rectifiers_compiled.frelu_bwd(gy, mask, ctx.stride, ctx.cdim, need_x, need_b)
    return (
        dx if need_x else None,
        db.reshape(ctx.bias_shape).to(ctx.bias_dtype) if need_b else None,
        None,
    )


torch.library.register_autograd(
    f"{NS}::frelu_fwd", _frelu_backward, setup_context=_frelu_setup_context
)


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
            y = torch.relu(x) + channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
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
    """``relu(x) + b``: the fused kernel's ops (a bit-packed mask kept), else a 1-byte mask.

    Only x's gradient needs a mask; with x not requiring grad the plain formula is traced.
    """
    if not x.requires_grad:  # only the bias needs a gradient: the sum of g, nothing to keep
        return torch.relu(x) + channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
    if x.dtype in FLOAT_DTYPES and x.numel() > 0 and fused_available():
        cdim = dim if bias.numel() > 1 else None
        y, _ = torch.ops.rectifiers_compiled.frelu_fwd(x, bias, cdim)
        return y
    y, _ = _KeepMask.apply(x, 0.0, bias, dim)
    return y
