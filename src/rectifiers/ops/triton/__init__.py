"""The ``"triton"`` backend: fused Triton kernels with bit-packed masks (optional extra
``rectifiers[triton]``).

Importing this package imports ``triton``: an ImportError here is how
:func:`rectifiers.ops.triton_available` learns that the backend is missing. The kernels are in
:mod:`.kernels`; this module launches them. It imports no other backend: the re-routings (a
float64 funnel, ``torch.func`` transforms) are decided in :mod:`rectifiers.ops`.

What each activation keeps for backward (beyond its parameters):

* ``relu``: ``torch.relu`` itself, which keeps only its output (nothing beyond what the next
  layer keeps); no kernel of ours could do better.
* ``leaky_relu``, ``flexible_relu``: a sign mask, 1 bit per element (32 per int32
  word), written by the forward kernel. Backward reads the incoming gradient and the mask and
  writes ``dx``; for FReLU the bias gradient ``sum g`` is reduced in the same pass.
* ``prelu``: the mask and the output ``y`` (which the next layer usually keeps anyway, so it
  costs nothing extra there). Where ``x <= 0``, ``x = y / a`` recovers the input for the slope
  gradient ``sum_{x<=0} g*x``. While a slope is 0, non-finite or tiny (then ``y`` does not
  determine ``x``), the input is kept instead of ``y``. Knowing which needs the slopes' values
  on the host: a device sync on a GPU, which would stall every training forward, so on CUDA
  tensors (and under ``torch.compile``) the input is kept, as ``torch.nn.PReLU`` keeps it; the
  check runs only for CPU tensors (the interpreter), and not when the weight needs no gradient.
* ``funnel_relu``: the input, a 2-bit code per element (x won, T(x) won, tie, NaN) and the
  per-channel batch statistics. The depthwise conv runs in PyTorch (cuDNN on GPU); one kernel
  applies BatchNorm with the statistics, takes the max and writes the codes. Backward recomputes
  the conv instead of keeping it.

Parameter gradients are accumulated in fp32 (fp64 for fp64 inputs): each program writes its
partial sums to a small buffer, which is then summed in a fixed order, so they are
deterministic run to run (no float atomics).

Layouts: the kernels work on the memory order of a dense tensor, so channels_last and other
permuted layouts run without a copy and the output keeps the input's memory format; a
non-dense input (a strided slice) is made contiguous first.

First derivatives only: a backward with ``create_graph=True`` (double backward, gradgradcheck)
is refused with a clear error; the ``"eager"`` and ``"torch"`` backends provide it.

Under ``torch.compile`` and ``torch.export`` every kernel launch sits inside a
``torch.library.custom_op`` with a fake implementation and a registered autograd formula, so
``torch.compile(fullgraph=True)`` traces through without a graph break. Eager calls run the same
Python functions through a plain ``torch.autograd.Function``, skipping the custom op's dispatch
(tens of microseconds a call, as long as the kernel itself for a few-megabyte tensor on a GPU).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
import triton  # noqa: F401  (an ImportError here means "no triton backend")
from torch import Tensor

from .._common import compiling, is_dense as _is_dense, laid_out_as, opmath
from . import kernels as K

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu"]

NS = "rectifiers_triton"
RELU, LEAKY, PRELU, FRELU = 0, 1, 2, 3

# Launch configuration. Tests shrink these to get many programs out of small tensors.
BLOCK = 2048  # elements per program of the flat kernels (a power of two, >= 32)
TILE = 2048  # elements per loop step of the per-channel reduction kernel (a power of two)
NUM_WARPS = 4
PROGRAMS_PER_SM = 4  # the per-channel reduction aims for this many programs per SM
# Slopes at least this large in magnitude (and finite, non-zero) let prelu recover x = y / a.
MIN_INVERTIBLE_SLOPE = 2.0**-64


# ---------------------------------------------------------------------------------------------
# layout helpers


def _prep(x: Tensor) -> Tensor:
    """``x`` itself when dense, else a contiguous copy."""
    return x if _is_dense(x) else x.contiguous()


def _to_layout(t: Tensor, shape, stride) -> Tensor:
    """``t`` with the given (dense) strides, copying only when they differ."""
    if laid_out_as(t, shape, stride):
        return t
    out = torch.empty_strided(shape, stride, dtype=t.dtype, device=t.device)
    return out.copy_(t)


def _opts() -> dict:
    # No FMA contraction: the interpreter has none either, and torch's element-wise kernels
    # round each product, so fp32 results stay bit-identical (this also states Triton 3.9's
    # changing default explicitly).
    return {"num_warps": NUM_WARPS, "enable_fp_fusion": False}


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


_SM: dict = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    n = _SM.get(device.index)
    if n is None:  # asked once per device: the properties call costs microseconds
        n = _SM[device.index] = torch.cuda.get_device_properties(device).multi_processor_count
    return n


def _per_channel(w: Optional[Tensor], dim: int) -> bool:
    return w is not None and dim >= 0 and w.numel() > 1


# ---------------------------------------------------------------------------------------------
# launches


def _launch_fwd(x: Tensor, y: Tensor, mask: Tensor, w: Optional[Tensor], kind: int,
                slope: float, dim: int, write_mask: bool) -> None:
    n = x.numel()
    if n == 0:
        return
    per = _per_channel(w, dim)
    c = x.shape[dim] if per else 1
    inner = x.stride(dim) if per else 1
    grid = (triton.cdiv(n, BLOCK),)
    K.launcher("act_fwd", x.device.type)(
        grid, x, y, mask, w.to(x.dtype) if w is not None else x, n, c, inner, float(slope),
        KIND=kind, PER_CHANNEL=per, WIDE=inner >= BLOCK, WRITE_MASK=write_mask, FP64=x.dtype == torch.float64,
        NEG_ZERO=x.device.type == "cpu", BLOCK=BLOCK, **_opts(),
    )


def _tile_shape(outer: int, c: int, inner: int) -> tuple[int, int, int]:
    """(BO, BC, BI) of the per-channel reduction: wide along the contiguous inner dim, with
    little padding waste, then channels, then outer rows, up to ``TILE`` elements."""
    top = min(_pow2(inner), TILE)
    bi = top
    b = top
    while b >= 32:  # a smaller block along inner if it wastes much less of the last one
        if triton.cdiv(inner, b) * b <= 1.15 * inner:
            bi = b
            break
        b //= 2
    bc = min(_pow2(c), max(1, TILE // bi))
    bo = min(_pow2(outer), max(1, TILE // (bi * bc)))
    return bo, bc, bi


def _launch_bwd(g: Tensor, mask: Tensor, w: Optional[Tensor], saved: Optional[Tensor],
                dx: Tensor, kind: int, slope: float, dim: int, saved_is_x: bool,
                need_wgrad: bool) -> Optional[Tensor]:
    """Write ``dx``; return the parameter gradient (fp32/fp64, shaped as ``w``) if asked.
    Glue: the partial sums' buffer and their sum (only when the gradient is asked)."""
    n = g.numel()
    acc = opmath(g.dtype)
    need_wgrad = need_wgrad and kind in (PRELU, FRELU) and w is not None
    if n == 0:
        return torch.zeros(w.shape, dtype=acc, device=g.device) if need_wgrad else None
    fp64 = g.dtype == torch.float64
    wp = w.to(g.dtype) if w is not None else g
    sp = saved if saved is not None else g
    if _per_channel(w, dim):
        c, inner = g.shape[dim], g.stride(dim)
        outer = n // (c * inner)
        bo, bc, bi = _tile_shape(outer, c, inner)
        nib, ncb, nob = triton.cdiv(inner, bi), triton.cdiv(c, bc), triton.cdiv(outer, bo)
        split = max(1, min(nob, 65535, triton.cdiv(PROGRAMS_PER_SM * _sm_count(g.device), ncb * nib)))
        # without a parameter gradient the kernel writes no partial sums: dx stands in
        part = torch.empty((split * nib, c), dtype=acc, device=g.device) if need_wgrad else dx
        K.launcher("act_bwd_tiled", g.device.type)(
            (ncb * nib, split), g, mask, wp, sp, dx, part, c, inner, outer, nib, nob, split,
            KIND=kind, SAVED_IS_X=saved_is_x, NEED_WGRAD=need_wgrad, FP64=fp64,
            BO=bo, BC=bc, BI=bi, **_opts(),
        )
        return _shaped(part.sum(0), w) if need_wgrad else None
    nblocks = triton.cdiv(n, BLOCK)
    part = torch.empty((nblocks,), dtype=acc, device=g.device) if need_wgrad else dx
    K.launcher("act_bwd_flat", g.device.type)(
        (nblocks,), g, mask, wp, sp, dx, part, n, float(slope),
        KIND=kind, SAVED_IS_X=saved_is_x, NEED_WGRAD=need_wgrad, FP64=fp64,
        BLOCK=BLOCK, **_opts(),
    )
    return _shaped(part.sum(0, keepdim=True), w) if need_wgrad else None


def _shaped(t: Tensor, w: Tensor) -> Tensor:
    return t if t.shape == w.shape else t.reshape(w.shape)


# ---------------------------------------------------------------------------------------------
# custom ops: relu, leaky_relu, prelu, flexible_relu


def _mask_words(n: int, per_word: int = 32) -> int:
    return (n + per_word - 1) // per_word


def _act_fwd_impl(x: Tensor, w: Optional[Tensor], kind: int, slope: float, dim: int,
                  write_mask: bool, save_x: bool) -> tuple[Tensor, Tensor]:
    x = _prep(x)
    y = torch.empty_like(x)
    mask = x.new_empty((_mask_words(x.numel()) if write_mask else 0,), dtype=torch.int32)
    _launch_fwd(x, y, mask, w, kind, slope, dim, write_mask)
    return y, mask


def _act_fwd_nograd(x: Tensor, w: Optional[Tensor], kind: int, slope: float, dim: int) -> Tensor:
    """The forward alone (no mask): one allocation, one launch."""
    x = _prep(x)
    y = torch.empty_like(x)
    _launch_fwd(x, y, y, w, kind, slope, dim, False)  # y stands in for the unwritten mask
    return y


_act_fwd = torch.library.custom_op(f"{NS}::act_fwd", _act_fwd_impl, mutates_args=())


@_act_fwd.register_fake
def _(x, w, kind, slope, dim, write_mask, save_x):
    x = _prep(x)
    return torch.empty_like(x), x.new_empty((_mask_words(x.numel()) if write_mask else 0,), dtype=torch.int32)


@torch.library.custom_op(f"{NS}::act_fwd_", mutates_args=("x",))
def _act_fwd_inplace(x: Tensor, w: Optional[Tensor], kind: int, slope: float, dim: int) -> None:
    _launch_fwd(x, x, x, w, kind, slope, dim, False)  # x stands in for the unwritten mask


@_act_fwd_inplace.register_fake
def _(x, w, kind, slope, dim):
    return None


def _act_bwd_core(g: Tensor, mask: Tensor, w: Optional[Tensor], saved: Optional[Tensor], kind: int,
                  slope: float, dim: int, shape: list[int], stride: list[int], saved_is_x: bool,
                  need_wgrad: bool) -> tuple[Tensor, Optional[Tensor]]:
    """``dx`` and the parameter gradient (``None`` unless asked). Glue: ``dx`` (and, with a
    parameter gradient, its partial sums and their sum)."""
    # torch.Size, not the list the custom op passes: a list never equals a tensor's shape, and
    # every backward then copied g (and PReLU's saved tensor), a full tensor each
    shape = torch.Size(shape)
    g = _to_layout(g, shape, stride)
    if saved is not None:
        saved = _to_layout(saved, shape, stride)
    dx = torch.empty_strided(shape, stride, dtype=g.dtype, device=g.device)
    dw = _launch_bwd(g, mask, w, saved, dx, kind, slope, dim, saved_is_x, need_wgrad)
    return dx, (None if dw is None else dw.to(w.dtype))


def _act_bwd_impl(g: Tensor, mask: Tensor, w: Optional[Tensor], saved: Optional[Tensor], kind: int,
                  slope: float, dim: int, shape: list[int], stride: list[int], saved_is_x: bool,
                  need_wgrad: bool) -> tuple[Tensor, Tensor]:
    dx, dw = _act_bwd_core(g, mask, w, saved, kind, slope, dim, shape, stride, saved_is_x, need_wgrad)
    return dx, (g.new_empty((0,)) if dw is None else dw)  # a custom op returns tensors only


_act_bwd = torch.library.custom_op(f"{NS}::act_bwd", _act_bwd_impl, mutates_args=())


@_act_bwd.register_fake
def _(g, mask, w, saved, kind, slope, dim, shape, stride, saved_is_x, need_wgrad):
    dx = torch.empty_strided(shape, stride, dtype=g.dtype, device=g.device)
    if need_wgrad and w is not None and kind in (PRELU, FRELU):
        return dx, torch.empty_like(w)
    return dx, g.new_empty((0,))


def _act_setup(ctx, inputs, output) -> None:
    x, w, kind, slope, dim, write_mask, save_x = inputs
    y, mask = output
    need_wgrad = w is not None and kind in (PRELU, FRELU) and w.requires_grad
    saved = None
    if kind == PRELU and need_wgrad:
        # Keep y (the next layer keeps it anyway) and recover x = y / a; or x when y cannot
        # determine it (see the module docstring).
        saved = x if save_x else y
    ctx.save_for_backward(mask, w, saved)
    ctx.kind, ctx.slope, ctx.dim, ctx.save_x = kind, slope, dim, save_x
    ctx.shape, ctx.stride = list(y.shape), list(y.stride())


def _no_double_backward(name: str) -> None:
    # The backward ops have no derivative of their own: refuse create_graph=True rather than
    # hand back gradients that silently carry no graph.
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{name}: the Triton backend gives first derivatives only, got a backward with "
            "create_graph=True (double backward); use backend='eager' or backend='torch'"
        )


def _act_grads(ctx, gy, bwd):
    _no_double_backward(("relu", "leaky_relu", "prelu", "flexible_relu")[ctx.kind])
    mask, w, saved = ctx.saved_tensors
    need_wgrad = w is not None and ctx.needs_input_grad[1]
    dx, dw = bwd(gy, mask, w, saved, ctx.kind, ctx.slope, ctx.dim, ctx.shape, ctx.stride,
                 ctx.save_x, need_wgrad)
    return dx, (dw if need_wgrad else None), None, None, None, None, None


def _act_backward(ctx, gy, gmask):
    return _act_grads(ctx, gy, _act_bwd)


_act_fwd.register_autograd(_act_backward, setup_context=_act_setup)


class _Act(torch.autograd.Function):
    """The same forward and backward as the custom ops, without them, for eager calls.

    A ``torch.library.custom_op`` call costs tens of microseconds of Python dispatch (argument
    defaults, redispatch, its autograd wrapper), as much as the kernel itself on a GPU for a
    few-megabyte tensor; the custom ops are kept for ``torch.compile`` and ``torch.export``,
    which need them.
    """

    # forward(ctx, ...) rather than a separate setup_context: with setup_context, every apply
    # binds its arguments through inspect.signature, more Python than the rest of the call.
    @staticmethod
    def forward(ctx, x, w, kind, slope, dim, write_mask, save_x):  # type: ignore[no-untyped-def]
        inputs = (x, w, kind, slope, dim, write_mask, save_x)
        output = _act_fwd_impl(*inputs)
        _act_setup(ctx, inputs, output)
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zero-filled gradient for the mask
        return output

    @staticmethod
    def backward(ctx, gy, gmask):  # type: ignore[no-untyped-def]
        if gy is None:  # grads are not materialised: nothing reached the output
            return (None,) * 7
        return _act_grads(ctx, gy, _act_bwd_core)


def _slopes_invertible(w: Tensor, dtype: torch.dtype) -> bool:
    """Whether ``x = y / a`` recovers x for every slope (finite, not tiny): one device sync."""
    a = w.detach().to(dtype).to(opmath(dtype))
    return bool((torch.isfinite(a) & (a.abs() >= MIN_INVERTIBLE_SLOPE)).all())


def _pointwise(x: Tensor, w: Optional[Tensor], kind: int, slope: float, dim: Optional[int],
               inplace: bool) -> Tensor:
    d = -1 if dim is None else int(dim)
    grad = torch.is_grad_enabled() and (x.requires_grad or (w is not None and w.requires_grad))
    traced = compiling()
    if inplace and not grad and _is_dense(x):
        if traced:
            _act_fwd_inplace(x, w, kind, float(slope), d)
        else:
            _launch_fwd(x, x, x, w, kind, float(slope), d, False)  # x stands in for the mask
            # as torch's in-place ops do (and the custom op above): autograd then sees x changed
            torch.autograd.graph.increment_version(x)
        return x
    save_x = False
    if kind == PRELU and grad and w is not None and w.requires_grad:
        # On a GPU the check would stop the host until the device catches up, every forward:
        # keep x there (as torch.nn.PReLU does), y (free) where the check costs nothing.
        save_x = traced or x.is_cuda or not _slopes_invertible(w, x.dtype)
    if traced:
        y, _ = _act_fwd(x, w, kind, float(slope), d, grad, save_x)
    elif grad:
        y, _ = _Act.apply(x, w, kind, float(slope), d, True, save_x)
    else:
        y = _act_fwd_nograd(x, w, kind, float(slope), d)
    if inplace:
        return x.copy_(y)
    return y


def relu(x: Tensor, inplace: bool) -> Tensor:
    """``torch.relu`` itself: it keeps only its output, which the next layer keeps anyway, and
    runs one kernel from C++; a Triton kernel could only add a mask and Python dispatch time.
    (The relu kernel, ``KIND`` 0, stays for tests of the shared code and as FReLU's first half.)"""
    return torch.relu_(x) if inplace else torch.relu(x)


def leaky_relu(x: Tensor, negative_slope: float, inplace: bool) -> Tensor:
    """``x if x > 0 else a*x``; keeps a 1-bit mask for backward."""
    if x.dtype == torch.float64:
        # A Python float reaches a kernel as fp32; torch multiplies fp64 inputs by the slope in
        # fp64. Hand it over as a constant one-element weight instead (same formula as prelu).
        # (torch.full, not torch.tensor of a list: no host-to-device copy, so a CUDA graph
        # can capture it)
        w = torch.full((1,), negative_slope, dtype=torch.float64, device=x.device)
        return _pointwise(x, w, PRELU, 0.0, None, inplace)
    return _pointwise(x, None, LEAKY, negative_slope, None, inplace)


def prelu(x: Tensor, weight: Tensor, dim: Optional[int]) -> Tensor:
    """``x if x > 0 else a*x``, ``a = weight`` (1 element or per channel along ``dim``)."""
    return _pointwise(x, weight, PRELU, 0.0, dim, False)


def flexible_relu(x: Tensor, bias: Tensor, dim: Optional[int], inplace: bool) -> Tensor:
    """``max(0, x) + b``, ``b = bias`` (1 element or per channel along ``dim``)."""
    return _pointwise(x, bias, FRELU, 0.0, dim, inplace)


# ---------------------------------------------------------------------------------------------
# funnel


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
            (triton.cdiv(n, BLOCK),), x, t, y, mask if write_mask else y, mean, var,
            bn_w if bn_w is not None else mean, bn_b if bn_b is not None else mean, n, c,
            x.stride(1), float(eps), HAS_W=bn_w is not None, HAS_B=bn_b is not None,
            WIDE=x.stride(1) >= BLOCK, WRITE_MASK=write_mask, BLOCK=BLOCK, **_opts(),
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
    split = max(1, min(nob, 65535, triton.cdiv(PROGRAMS_PER_SM * _sm_count(x.device), ncb * nib)))
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
    """The funnel's custom ops without their dispatch cost, for eager calls (see :class:`_Act`)."""

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
