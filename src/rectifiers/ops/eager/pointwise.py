"""The eager backend's ReLU, LeakyReLU, PReLU and FReLU: autograd Functions that keep little.

What each keeps for backward, and when the fused C++ kernels of :mod:`rectifiers.ops.cpp.pointwise`
run, is in the table of :mod:`rectifiers.ops.eager`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._common import (
    FLOAT_DTYPES, batched_backward, cache_blocks, channel_view, is_dense, laid_out_as, needs_grad, new_mask,
    plain_flexible_relu, plain_prelu, reduce_dims, unpack_mask,
)
from ..cpp import pointwise as kernels

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu"]

_aten = torch.ops.aten


# --------------------------------------------------------------------------------------------
# ReLU: torch.relu keeps its output, and threshold_backward(g, y, 0) is exact; nothing to add.


def _packed(x: torch.Tensor) -> torch.Tensor:
    """``x``, or a dense copy of it when it has gaps (a strided view).

    PyTorch's element-wise kernels walk a strided view several times slower than a dense tensor
    (about 10x for every other element of the last dim); one copy first and the dense kernel are
    about 3.5x faster than the strided kernel alone. Callers skip it under torch.compile (which
    picks its own loops) and for in-place calls (x itself must change). The copy keeps x's order
    of strides (``clone``'s ``preserve_format``), so the output is laid out as torch's element-wise
    ops lay out theirs for such a view.
    """
    return x if is_dense(x) else x.clone(memory_format=torch.preserve_format)


def relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
    # No packing of strided views here: torch's relu walks them well in float32 (a copy first
    # measured 1.6x slower under no_grad), and ReLU stays torch.relu exactly.
    return torch.relu_(x) if inplace else torch.relu(x)


# --------------------------------------------------------------------------------------------
# LeakyReLU


class _LeakyReLUKeepOutput(torch.autograd.Function):
    """Slope >= 0: keep only the output (which the next layer keeps anyway).

    ``y > 0`` exactly when ``x > 0`` for a slope >= 0 (NaN and -0.0 included), so
    ``dx = g if y > 0 else a*g`` is ``leaky_relu_backward(g, y, a, self_is_result=True)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
        y = F.leaky_relu(x, slope)
        ctx.slope = slope
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (y,) = ctx.saved_tensors
        return _aten.leaky_relu_backward(g, y, ctx.slope, True), None


class _LeakyReLUKeepMask(torch.autograd.Function):
    """Slope < 0: the output's sign no longer tells, so keep a 1-byte mask ``x > 0``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
        ctx.slope = slope
        ctx.save_for_backward(x > 0)
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (mask,) = ctx.saved_tensors
        # The mask as 1.0 / 0.0 in g's dtype has the sign of x for the strict x > 0 test.
        return _aten.leaky_relu_backward(g, mask.to(g.dtype), ctx.slope, False), None


def leaky_relu(x: torch.Tensor, negative_slope: float, inplace: bool) -> torch.Tensor:
    if inplace:
        # torch's in-place leaky_relu_ already keeps only its result (self_is_result=True);
        # functional.py refuses in-place with a negative slope when a gradient is needed.
        return F.leaky_relu(x, negative_slope, True)
    if needs_grad(x):
        ops = kernels.operators()  # the C++ operator, once built (on CPU and CUDA alike)
        if ops is not None:
            return ops.leaky_relu(x, negative_slope)
    x = _packed(x)
    if not needs_grad(x):
        return F.leaky_relu(x, negative_slope, False)
    if negative_slope >= 0:
        return _LeakyReLUKeepOutput.apply(x, negative_slope)
    return _LeakyReLUKeepMask.apply(x, negative_slope)


# --------------------------------------------------------------------------------------------
# PReLU


def _underflowed(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether some ``x < 0`` gave a ``y = a*x`` below the dtype's smallest normal number
    (subnormal or zero), where ``y / a`` loses x's precision (float16: ``|x| < 6e-3`` at
    ``a = 0.01``). The plain path's test; the C++ kernel makes it in its forward pass."""
    return bool(torch.logical_and(x < 0, y > -torch.finfo(y.dtype).tiny).any())


class _PReLU(torch.autograd.Function):
    """PReLU keeping the output (slopes in (0, 1]) or the input (any other slope).

    ``dx = g if s > 0 else a*g`` with ``s`` the kept tensor (same sign as x either way).
    ``dL/da = sum over x <= 0 of g*x``: with the output kept, ``x = y / a`` there, so it is
    ``sum(g * min(y, 0)) / a``, exact up to rounding for 0 < a <= 1 (``|y| <= |x|``: no
    overflow) while ``a*x`` stays in the dtype's normal range. ``check`` (the slope needs a
    gradient and the output would be kept): where some ``a*x`` underflowed (subnormal or
    zero), keep the input instead, as torch does.
    """

    @staticmethod
    def forward(  # type: ignore[no-untyped-def]
        ctx, x: torch.Tensor, w: torch.Tensor, dim: int | None, keep_output: bool, check: bool, fused
    ):
        if fused is not None:  # the C++ kernel: torch.prelu's math, one pass
            y = torch.empty_like(x)
            lost = kernels.prelu_forward(x, w.to(x.dtype), y, fused, check)
        else:
            y = plain_prelu(x, w, dim)
            # A full extra pass and a host sync: made only in float16, where a*x underflows for
            # ordinary inputs (|x| < 6e-3 at a = 0.01); in bfloat16, float32 and float64 it takes
            # |x| below about 1e-36 (the C++ kernel checks every dtype in its own pass).
            lost = check and x.dtype == torch.float16 and _underflowed(x, y)
        if lost:
            keep_output = False
        ctx.dim = dim
        ctx.keep_output = keep_output
        ctx.fused = fused
        ctx.save_for_backward(y if keep_output else x, w)
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        s, w = ctx.saved_tensors
        dim, keep_output = ctx.dim, ctx.keep_output
        nd = s.dim()
        cdim = dim if (dim is not None and w.numel() > 1) else None
        a = w.to(s.dtype)
        av = channel_view(a, s, cdim) if cdim is not None else a.reshape(())
        dx = dw = None
        if torch.is_grad_enabled() or batched_backward():
            # create_graph (double backward), or autograd's vmap (batched gradients): plain
            # differentiable formulas, which have batching rules.
            if ctx.needs_input_grad[0]:
                dx = torch.where(s > 0, g, av * g)
            if ctx.needs_input_grad[1]:
                t = g * s.clamp_max(0)
                if keep_output:
                    t = t / av
                dims = reduce_dims(nd, cdim)
                dw = t.sum(dims).reshape(w.shape).to(w.dtype) if dims else t.reshape(w.shape).to(w.dtype)
            return dx, dw, None, None, None, None
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if ctx.fused is not None and g.dtype == s.dtype and g.dtype in FLOAT_DTYPES and laid_out_as(g, s.shape, s.stride()):
            # The C++ kernel: dx and the slope gradient's float64 sums in one pass over (g, s).
            dx, dw = kernels.prelu_backward(g, s, a, need_x, need_w, ctx.fused)
            if dw is not None:
                if keep_output:  # sum(g * y) / a = sum(g * x) over x <= 0, as below
                    dw = dw / w.detach().to(torch.float64).reshape(-1)
                dw = dw.reshape(w.shape).to(w.dtype)
            return dx, dw, None, None, None, None
        dims = reduce_dims(nd, cdim)
        acc = torch.promote_types(s.dtype, torch.float32)
        dx = torch.empty_like(g, memory_format=torch.preserve_format) if need_x else None
        dw = torch.zeros(w.shape if cdim is not None else (), dtype=acc, device=s.device) if need_w else None
        slope = float(a.reshape(())) if cdim is None else 0.0
        ones = s.new_ones(())
        # Block by block along an outer dim, so that the passes over a block stay in cache.
        for idx in cache_blocks(s, cdim):
            sb, gb = s[idx], g[idx]
            if need_x:
                db = dx[idx]
                if cdim is None:
                    _aten.leaky_relu_backward.grad_input(gb, sb, slope, keep_output, grad_input=db)
                elif keep_output:
                    # max([y > 0], a) is 1 where y > 0 and a elsewhere (a <= 1). [y > 0] as
                    # 1.0 / 0.0 (0 at NaN, as torch's strict test) in one vectorised pass:
                    # leaky_relu_backward of ones with slope 0.
                    _aten.leaky_relu_backward.grad_input(ones.expand_as(sb), sb, 0.0, True, grad_input=db)
                    db.clamp_min_(av).mul_(gb)
                else:
                    db.copy_(torch.where(sb > 0, gb, av * gb))
            if need_w:
                t = sb.clamp_max(0).mul_(gb)
                dw += t.sum(dims, dtype=acc).reshape(dw.shape) if dims else t.to(acc).reshape(dw.shape)
        if need_w:
            if keep_output:
                dw = dw / w.to(acc).reshape(dw.shape)
            dw = dw.reshape(w.shape).to(w.dtype)
        return dx, dw, None, None, None, None


def prelu(x: torch.Tensor, weight: torch.Tensor, dim: int | None) -> torch.Tensor:
    ops = kernels.operators() if needs_grad(x, weight) else kernels.loaded_operators()
    if ops is not None:  # the C++ operator (on CUDA: torch's own prelu, no host sync)
        return ops.prelu(x, weight, dim)
    x = _packed(x)
    if not needs_grad(x, weight):
        return plain_prelu(x, weight, dim)
    a = weight.detach().to(x.dtype)
    lo, hi = (float(v) for v in torch.aminmax(a.reshape(-1)))
    keep_output = 0.0 < lo and hi <= 1.0
    # The fused C++ kernel (built at the first such call) when it loads and handles x's layout;
    # the plain-torch passes otherwise (same results).
    fused = kernels.plan(x, dim if weight.numel() > 1 else None)
    return _PReLU.apply(x, weight, dim, keep_output, keep_output and weight.requires_grad, fused)


# --------------------------------------------------------------------------------------------
# FReLU (flexible ReLU)


class _FlexibleReLU(torch.autograd.Function):
    """``max(0, x) + b`` keeping a mask of ``x > 0`` (y > b is not exact for tiny x).

    The mask is ``relu(x) != 0``: true where ``x > 0`` and where ``x`` is NaN, where torch's
    ReLU (whose backward tests its result) passes the gradient too. With the fused C++ kernel
    it is bit-packed (1 bit per element, in x's memory order); on the plain path a bool tensor.
    It is an intermediate saved from ``forward(ctx, ...)``, not a second output: a Function
    that works in place on a view may return one tensor only, and this form also skips
    ``Function.apply``'s per-call signature binding (tens of microseconds).
    """

    @staticmethod
    def forward(ctx, x, bias, dim, inplace, keep_mask, fused):  # type: ignore[no-untyped-def]
        cdim = dim if (dim is not None and bias.numel() > 1) else None
        y = x if inplace else torch.empty_like(x)
        if fused is not None:  # the C++ kernel: y and the bit-packed mask in one pass
            mask = new_mask(x) if keep_mask else None
            kernels.forward(x, bias.to(x.dtype), y, mask, fused)
        else:
            mask = torch.empty_like(x, dtype=torch.bool) if keep_mask else None
            b = channel_view(bias.to(x.dtype), x, cdim if cdim is not None else 0)
            # Block by block, so that the three passes (relu, mask, + b) stay in cache.
            for idx in cache_blocks(x, cdim):
                yb = y[idx]
                torch.clamp_min(x[idx], 0, out=yb)  # torch.relu is clamp_min(x, 0)
                if mask is not None:
                    torch.ne(yb, 0, out=mask[idx])
                yb.add_(b)
        if inplace:
            ctx.mark_dirty(x)
        ctx.dim, ctx.fused = dim, fused
        # The bit-packed mask follows x's memory order: keep x's layout.
        ctx.size, ctx.stride = x.shape, x.stride()
        ctx.set_materialize_grads(False)
        ctx.bias_shape, ctx.bias_dtype = bias.shape, bias.dtype
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, g):  # type: ignore[no-untyped-def]
        (mask,) = ctx.saved_tensors
        if g is None:  # y unused (grads are not materialised): nothing flows back
            return None, None, None, None, None, None
        need_x, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        cdim = ctx.dim if (ctx.dim is not None and ctx.bias_shape.numel() > 1) else None
        dims = reduce_dims(g.dim(), cdim)
        acc = torch.promote_types(g.dtype, torch.float32)
        dx = db = None
        packed = ctx.fused is not None  # the C++ kernel's bit-packed mask, else a bool tensor
        if torch.is_grad_enabled() or batched_backward():
            # create_graph, or autograd's vmap (batched gradients): differentiable, out-of-place
            if need_x:
                m = unpack_mask(mask, ctx.size, ctx.stride) if packed else mask
                dx = _aten.threshold_backward(g, m.to(g.dtype), 0)
            if need_b:
                db = (g.sum(dims, dtype=acc) if dims else g.to(acc)).reshape(ctx.bias_shape).to(ctx.bias_dtype)
            return dx, db, None, None, None, None
        if packed:
            # The C++ kernel: dx and the per-channel sum of g in one pass (float64 sums). It reads
            # g in x's memory order: a g laid out otherwise is copied so first (one pass).
            if not laid_out_as(g, ctx.size, ctx.stride):
                g = torch.empty_strided(ctx.size, ctx.stride, dtype=g.dtype, device=g.device).copy_(g)
            dx, db = kernels.backward(g, mask, need_x, need_b, ctx.fused)
            if db is not None:
                db = db.reshape(ctx.bias_shape).to(ctx.bias_dtype)
            return dx, db, None, None, None, None
        if need_x:
            dx = torch.empty_like(g)
        if need_b:
            db = torch.zeros(g.shape[cdim] if cdim is not None else (), dtype=acc, device=g.device)
        for idx in cache_blocks(g, cdim):
            gb = g[idx]
            if need_x:
                # threshold_backward(g, m, 0) = g where m > 0 else 0, in one pass (g * m would
                # give NaN for an infinite g where m = 0).
                _aten.threshold_backward.grad_input(gb, mask[idx].to(g.dtype), 0, grad_input=dx[idx])
            if need_b:
                db += gb.sum(dims, dtype=acc) if dims else gb.to(acc)
        if need_b:
            db = db.reshape(ctx.bias_shape).to(ctx.bias_dtype)
        return dx, db, None, None, None, None


def flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int | None, inplace: bool) -> torch.Tensor:
    if not inplace:
        ops = kernels.operators() if needs_grad(x, bias) else kernels.loaded_operators()
        if ops is not None:  # the C++ operator (on CUDA: ATen ops keeping a bool mask)
            return ops.flexible_relu(x, bias, dim)
    cdim = dim if bias.numel() > 1 else None
    if not needs_grad(x, bias):
        # Nothing to keep. The fused kernel writes y in one pass (relu, then + b, takes two)
        # when it is already built: inference alone never starts the build.
        fused = kernels.plan(x, cdim) if kernels.loaded() else None
        if fused is None:
            return plain_flexible_relu(x, bias, dim, inplace)
        y = x if inplace else torch.empty_like(x)
        kernels.forward(x, bias.to(x.dtype), y, None, fused)
        if inplace:  # as torch's in-place ops do: autograd then sees x changed
            torch.autograd.graph.increment_version(x)
        return y
    keep_mask = x.requires_grad
    # The fused C++ kernel (built at the first such call) when it loads and handles x's layout
    # (any dense one); the plain-torch passes otherwise (same results).
    fused = kernels.plan(x, cdim) if keep_mask else None
    if fused is None and keep_mask and not inplace and x.device.type == "cpu" and not x.is_contiguous():
        # A view with gaps (a step, a narrowed dim): one dense copy (autograd passes the
        # gradient straight through it) costs less than the plain path's passes. It keeps the
        # view's order of strides (the output is then laid out as torch lays out relu(x) + b);
        # a dense layout the kernel declined is made contiguous.
        xc = x.contiguous() if is_dense(x) else x.clone(memory_format=torch.preserve_format)
        fused = kernels.plan(xc, cdim)
        if fused is not None:
            x = xc
    return _FlexibleReLU.apply(x, bias, dim, inplace, keep_mask, fused)
