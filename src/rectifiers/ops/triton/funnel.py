"""The Triton backend's funnel activation, ``max(x, BatchNorm(depthwise conv(x)))``: its
forward and backward, their ``torch.library`` custom ops (``rectifiers_triton::funnel_fwd``,
``rectifiers_triton::funnel_bwd``) and eager ``torch.autograd.Function``, and
:func:`check_funnel_input`. Both public functions are exported by :mod:`rectifiers.ops.triton`.

What it keeps for backward: the input, a 2-bit code per element (x won, T(x) won, tie, NaN) and
the per-channel batch statistics. The depthwise conv runs in PyTorch (cuDNN on GPU); one kernel
applies BatchNorm with the statistics, takes the max and writes the codes. Backward recomputes
the conv instead of keeping it, and fuses BatchNorm's backward into two walks over the codes.

The launch configuration (``BLOCK``, ``TILE``, ``PROGRAMS_PER_SM``) is read from
:mod:`._shared` at every call, as the other activations read it.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
import triton
from torch import Tensor

from .._common import compiling, laid_out_as
from . import _shared as S
from . import kernels as K
from ._shared import NS, _mask_words, _no_double_backward, _opts, _prep, _sm_count, _tile_shape, _to_layout

__all__ = ["funnel_relu", "check_funnel_input"]


def _conv(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    conv = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
    k = w.shape[-1]
    return conv(x, w.to(x.dtype), None if b is None else b.to(x.dtype), 1, k // 2, 1, x.shape[1])


def _chan(v: Tensor, x: Tensor) -> Tensor:
    return v.reshape([1, -1] + [1] * (x.dim() - 2))


def _reduce_dims(x: Tensor) -> list[int]:
    return [0] + list(range(2, x.dim()))


def _batch_stats(t: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                 momentum: float) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of ``t`` in fp32, updating the running statistics
    when given: one native op (``batch_norm_update_stats``, fp32 accumulation without an fp32
    copy of a bf16 ``t``), except on CPU in low precision (the interpreter), where that op
    would return the input's dtype."""
    if t.is_cuda or (t.dtype == torch.float32 and (running_mean is None or running_mean.dtype == torch.float32)):
        return torch.batch_norm_update_stats(t, running_mean, running_var, momentum)
    var, mean = torch.var_mean(t.to(torch.float32), dim=_reduce_dims(t), correction=0)
    if running_mean is not None:
        _update_running(running_mean, running_var, mean, var, t.numel() // t.shape[1], momentum)
    return mean, var


def _update_running(running_mean: Tensor, running_var: Tensor, mean: Tensor, var: Tensor, m: int,
                    momentum: float) -> None:
    """``running = (1 - momentum) * running + momentum * batch``, the variance unbiased."""
    with torch.no_grad():
        running_mean.mul_(1.0 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        unbiased = var * (m / (m - 1))
        running_var.mul_(1.0 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)


def _funnel_fwd_core(x: Tensor, conv_w: Tensor, conv_b: Optional[Tensor], bn_w: Optional[Tensor],
                     bn_b: Optional[Tensor], stat_mean: Optional[Tensor], stat_var: Optional[Tensor],
                     use_batch: bool, eps: float, write_mask: bool,
                     momentum: Optional[float] = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The funnel's forward. With batch statistics (``use_batch``) and ``momentum``,
    ``stat_mean`` / ``stat_var`` are the running statistics, updated in place by the same op
    that computes the batch's; without ``momentum`` they are not used. Without batch
    statistics they are the fixed ones. Glue: the conv, the statistics (one op; two copies in
    eval mode, kept for backward), the output and the code buffer."""
    x = _prep(x)
    c = x.shape[1]
    t = _to_layout(_conv(x, conv_w, conv_b), x.shape, x.stride())
    if use_batch:
        if momentum is None:
            stat_mean = stat_var = None
        mean, var = _batch_stats(t, stat_mean, stat_var, 0.0 if momentum is None else momentum)
    else:
        # copies: backward must see these values even if the buffers change in between
        mean = stat_mean.to(torch.float32, copy=True)
        var = stat_var.to(torch.float32, copy=True)
    y = torch.empty_like(x)
    mask = x.new_empty((_mask_words(x.numel(), 16),), dtype=torch.int32) if write_mask else None
    n = x.numel()
    if n:
        K.launcher("funnel_fwd", x.device.type)(
            (triton.cdiv(n, S.BLOCK),), x, t, y, mask if write_mask else y, mean, var,
            bn_w if bn_w is not None else mean, bn_b if bn_b is not None else mean, n, c,
            x.stride(1), float(eps), HAS_W=bn_w is not None, HAS_B=bn_b is not None,
            WIDE=x.stride(1) >= S.BLOCK, WRITE_MASK=write_mask, BLOCK=S.BLOCK, **_opts(),
        )
    return y, mask, mean, var


def _funnel_fwd_impl(x: Tensor, conv_w: Tensor, conv_b: Optional[Tensor], bn_w: Optional[Tensor],
                     bn_b: Optional[Tensor], stat_mean: Optional[Tensor], stat_var: Optional[Tensor],
                     use_batch: bool, eps: float, write_mask: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The custom op's forward: the running statistics are updated outside it."""
    y, mask, mean, var = _funnel_fwd_core(x, conv_w, conv_b, bn_w, bn_b, stat_mean, stat_var, use_batch,
                                          eps, write_mask)
    return y, (x.new_empty((0,), dtype=torch.int32) if mask is None else mask), mean, var


_funnel_fwd = torch.library.custom_op(f"{NS}::funnel_fwd", _funnel_fwd_impl, mutates_args=())


@_funnel_fwd.register_fake
def _(x, conv_w, conv_b, bn_w, bn_b, stat_mean, stat_var, use_batch, eps, write_mask):
    x = _prep(x)
    c = x.shape[1]
    stats = x.new_empty((c,), dtype=torch.float32)
    return (torch.empty_like(x), x.new_empty((_mask_words(x.numel(), 16) if write_mask else 0,), dtype=torch.int32),
            stats, torch.empty_like(stats))


def _funnel_bwd_core(g: Tensor, mask: Tensor, x: Tensor, conv_w: Tensor, conv_b: Optional[Tensor],
                     bn_w: Optional[Tensor], bn_b: Optional[Tensor], mean: Tensor, var: Tensor,
                     use_batch: bool, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The funnel's backward; BatchNorm's two parameter gradients may be views of one buffer.
    Glue: the conv (recomputed instead of kept), three buffers (x's gradient, BatchNorm's
    input gradient, the partial sums), one sum, the conv's backward and one add."""
    x = _prep(x)
    g = _to_layout(g, x.shape, x.stride())
    n, c = x.numel(), x.shape[1]
    # Recompute the conv output instead of keeping it; BatchNorm's backward with the forward's
    # statistics is fused into two walks over (g, codes, t): sums, then the input gradient.
    t = _to_layout(_conv(x, conv_w, conv_b), x.shape, x.stride())
    gx = torch.empty_like(x)
    dt = torch.empty_like(x)
    inner = x.stride(1)
    outer = n // (c * inner) if n else 0
    bo, bc, bi = _tile_shape(max(outer, 1), c, inner)
    nib, ncb, nob = triton.cdiv(inner, bi), triton.cdiv(c, bc), triton.cdiv(max(outer, 1), bo)
    split = max(1, min(nob, 65535, triton.cdiv(S.PROGRAMS_PER_SM * _sm_count(x.device), ncb * nib)))
    w = bn_w if bn_w is not None else mean
    grid = (ncb * nib, split)
    if n:
        # every program writes its rows: no zero fill needed
        part = torch.empty((2, split * nib, c), dtype=torch.float32, device=x.device)
        launch = K.launcher("funnel_bwd", x.device.type)
        launch(grid, g, mask, t, mean, var, w, part, gx, part, c, inner, outer, nib, nob, split,
               float(eps), float(n // c), PHASE=0, BATCH=use_batch, HAS_W=bn_w is not None,
               BO=bo, BC=bc, BI=bi, **_opts())
        sums = part.sum(1)  # (2, c): BatchNorm's bias and weight gradients
        launch(grid, g, mask, t, mean, var, w, sums, dt, part, c, inner, outer, nib, nob, split,
               float(eps), float(n // c), PHASE=1, BATCH=use_batch, HAS_W=bn_w is not None,
               BO=bo, BC=bc, BI=bi, **_opts())
    else:
        sums = torch.zeros((2, c), dtype=torch.float32, device=x.device)
    dbb, dbw = sums.unbind(0)
    nsp = x.dim() - 2
    k = conv_w.shape[-1]
    dxc, dcw, dcb = torch.ops.aten.convolution_backward(
        dt, x, conv_w.to(x.dtype), [c] if conv_b is not None else None, [1] * nsp, [k // 2] * nsp,
        [1] * nsp, False, [0] * nsp, c, [True, True, conv_b is not None],
    )
    dx = dxc.add_(gx) if laid_out_as(dxc, x.shape, x.stride()) else gx.add_(dxc)
    return (
        dx,
        dcw.to(conv_w.dtype),
        dcb.to(conv_b.dtype) if conv_b is not None else None,
        dbw.to(bn_w.dtype) if bn_w is not None else None,
        dbb.to(bn_b.dtype) if bn_b is not None else None,
    )


def _funnel_bwd_impl(g: Tensor, mask: Tensor, x: Tensor, conv_w: Tensor, conv_b: Optional[Tensor],
                     bn_w: Optional[Tensor], bn_b: Optional[Tensor], mean: Tensor, var: Tensor,
                     use_batch: bool, eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The custom op's backward: tensors only (empty for an absent parameter), none aliasing
    another."""
    out = _funnel_bwd_core(g, mask, x, conv_w, conv_b, bn_w, bn_b, mean, var, use_batch, eps)
    return out[:2] + tuple(x.new_empty((0,)) if t is None else t.clone() if t._base is not None else t
                           for t in out[2:])


_funnel_bwd = torch.library.custom_op(f"{NS}::funnel_bwd", _funnel_bwd_impl, mutates_args=())


@_funnel_bwd.register_fake
def _(g, mask, x, conv_w, conv_b, bn_w, bn_b, mean, var, use_batch, eps):
    x = _prep(x)
    empty = x.new_empty((0,))
    return (
        torch.empty_like(x),
        torch.empty_like(conv_w),
        torch.empty_like(conv_b) if conv_b is not None else empty,
        torch.empty_like(bn_w) if bn_w is not None else empty.clone(),
        torch.empty_like(bn_b) if bn_b is not None else empty.clone(),
    )


def _funnel_setup(ctx, inputs, output) -> None:
    x, conv_w, conv_b, bn_w, bn_b, stat_mean, stat_var, use_batch, eps, write_mask = inputs[:10]
    y, mask, mean, var = output
    ctx.mark_non_differentiable(mask, mean, var)
    # Kept: the input, 2 bits per element, the statistics and the parameters. The conv output
    # and BatchNorm's are recomputed in backward.
    ctx.save_for_backward(mask, x, conv_w, conv_b, bn_w, bn_b, mean, var)
    ctx.use_batch, ctx.eps = use_batch, eps


def _funnel_grads(ctx, gy, bwd):
    _no_double_backward("funnel_relu")
    mask, x, conv_w, conv_b, bn_w, bn_b, mean, var = ctx.saved_tensors
    dx, dcw, dcb, dbw, dbb = bwd(gy, mask, x, conv_w, conv_b, bn_w, bn_b, mean, var, ctx.use_batch, ctx.eps)
    return (
        dx, dcw,
        dcb if conv_b is not None else None,
        dbw if bn_w is not None else None,
        dbb if bn_b is not None else None,
        None, None, None, None, None,
    )


def _funnel_backward(ctx, gy, gmask, gmean, gvar):
    return _funnel_grads(ctx, gy, _funnel_bwd)


_funnel_fwd.register_autograd(_funnel_backward, setup_context=_funnel_setup)


class _Funnel(torch.autograd.Function):
    """The funnel's custom ops without their dispatch cost, for eager calls (see
    :class:`rectifiers.ops.triton._Act`)."""

    @staticmethod
    def forward(ctx, *inputs):  # type: ignore[no-untyped-def]
        output = _funnel_fwd_core(*inputs)
        _funnel_setup(ctx, inputs, output)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for the code and statistics
        return output

    @staticmethod
    def backward(ctx, gy, gmask, gmean, gvar):  # type: ignore[no-untyped-def]
        if gy is None:  # grads are not materialised: nothing reached the output
            return (None,) * 11
        return _funnel_grads(ctx, gy, _funnel_bwd_core) + (None,)


def check_funnel_input(x: Tensor, training: bool, running_mean: Optional[Tensor]) -> int:
    """The values per channel, after checking that batch statistics have more than one."""
    use_batch = bool(training) or running_mean is None
    m = x.numel() // x.shape[1] if x.dim() > 1 else 0
    if use_batch and m <= 1:
        raise ValueError(
            "funnel_relu: batch statistics need more than 1 value per channel, got input shape "
            f"{tuple(x.shape)}"
        )
    return m


def funnel_relu(
    x: Tensor, conv_weight: Tensor, conv_bias: Optional[Tensor], bn_weight: Optional[Tensor],
    bn_bias: Optional[Tensor], running_mean: Optional[Tensor], running_var: Optional[Tensor],
    training: bool, momentum: float, eps: float,
) -> Tensor:
    """``max(x, T(x))``, ``T = BatchNorm(depthwise conv(x))``: conv in PyTorch, then one fused
    kernel (BatchNorm apply, max, 2-bit code); the running statistics are updated in place in
    training mode, as ``F.batch_norm`` does.

    The fused kernels keep BatchNorm's statistics in fp32: :mod:`rectifiers.ops` sends a float64
    input (gradient checks, not speed) to the eager backend's funnel instead, after
    :func:`check_funnel_input`."""
    use_batch = bool(training) or running_mean is None
    m = check_funnel_input(x, training, running_mean)
    tensors = (x, conv_weight, conv_bias, bn_weight, bn_bias)
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    update = bool(training) and running_mean is not None
    if compiling():
        # the custom op leaves the running statistics alone; the update is traced beside it
        y, _, mean, var = _funnel_fwd(
            x, conv_weight, conv_bias, bn_weight, bn_bias,
            None if use_batch else running_mean, None if use_batch else running_var,
            use_batch, float(eps), grad,
        )
        if update:
            _update_running(running_mean, running_var, mean, var, m, momentum)
        return y
    # eager calls: the running statistics are updated by the op that computes the batch's
    args = (x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var,
            use_batch, float(eps), grad, float(momentum) if update else None)
    y = (_Funnel.apply(*args) if grad else _funnel_fwd_core(*args))[0]
    return y
