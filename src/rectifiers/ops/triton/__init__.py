"""The ``"triton"`` backend: fused Triton kernels with bit-packed masks (optional extra
``rectifiers[triton]``).

Importing this package imports ``triton``: an ImportError here is how
:func:`rectifiers.ops.triton_available` learns that the backend is missing. The package is in
four files:

* :mod:`.kernels`: the ``@triton.jit`` kernels and their pre-bound launcher;
* this module: ``relu``, ``leaky_relu``, ``prelu`` and ``flexible_relu`` (their launches,
  custom ops and autograd Function), and the backend's public names, the funnel's included;
* :mod:`.funnel`: ``funnel_relu`` and ``check_funnel_input``, with the funnel's custom ops and
  autograd Function;
* :mod:`._shared`: what both halves use: the op namespace (``rectifiers_triton``), the launch
  configuration (``BLOCK``, ``TILE``, ``NUM_WARPS``, ``PROGRAMS_PER_SM``, read from there at
  every launch and set there, not re-exported here) and the layout, tiling and mask helpers.

It imports no other backend: the re-routings (a float64 funnel, ``torch.func`` transforms) are
decided in :mod:`rectifiers.ops`.

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
* ``funnel_relu`` (:mod:`.funnel`): the input, a 2-bit code per element (x won, T(x) won,
  tie, NaN) and the per-channel batch statistics. The depthwise conv runs in PyTorch (cuDNN on
  GPU); one kernel applies BatchNorm with the statistics, takes the max and writes the codes.
  Backward recomputes the conv instead of keeping it.

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
import triton  # noqa: F401  (an ImportError here means "no triton backend")
from torch import Tensor

from .._common import compiling, is_dense as _is_dense, opmath
from . import _shared as S
from . import kernels as K
from ._shared import NS, _mask_words, _no_double_backward, _opts, _prep, _sm_count, _tile_shape, _to_layout
from .funnel import check_funnel_input, funnel_relu  # noqa: F401  (re-exported)

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu"]

RELU, LEAKY, PRELU, FRELU = 0, 1, 2, 3
# Slopes at least this large in magnitude (and finite, non-zero) let prelu recover x = y / a.
MIN_INVERTIBLE_SLOPE = 2.0**-64


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
    grid = (triton.cdiv(n, S.BLOCK),)
    K.launcher("act_fwd", x.device.type)(
        grid, x, y, mask, w.to(x.dtype) if w is not None else x, n, c, inner, float(slope),
        KIND=kind, PER_CHANNEL=per, WIDE=inner >= S.BLOCK, WRITE_MASK=write_mask, FP64=x.dtype == torch.float64,
        NEG_ZERO=x.device.type == "cpu", BLOCK=S.BLOCK, **_opts(),
    )


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
        split = max(1, min(nob, 65535, triton.cdiv(S.PROGRAMS_PER_SM * _sm_count(g.device), ncb * nib)))
        # without a parameter gradient the kernel writes no partial sums: dx stands in
        part = torch.empty((split * nib, c), dtype=acc, device=g.device) if need_wgrad else dx
        K.launcher("act_bwd_tiled", g.device.type)(
            (ncb * nib, split), g, mask, wp, sp, dx, part, c, inner, outer, nib, nob, split,
            KIND=kind, SAVED_IS_X=saved_is_x, NEED_WGRAD=need_wgrad, FP64=fp64,
            BO=bo, BC=bc, BI=bi, **_opts(),
        )
        return _shaped(part.sum(0), w) if need_wgrad else None
    nblocks = triton.cdiv(n, S.BLOCK)
    part = torch.empty((nblocks,), dtype=acc, device=g.device) if need_wgrad else dx
    K.launcher("act_bwd_flat", g.device.type)(
        (nblocks,), g, mask, wp, sp, dx, part, n, float(slope),
        KIND=kind, SAVED_IS_X=saved_is_x, NEED_WGRAD=need_wgrad, FP64=fp64,
        BLOCK=S.BLOCK, **_opts(),
    )
    return _shaped(part.sum(0, keepdim=True), w) if need_wgrad else None


def _shaped(t: Tensor, w: Tensor) -> Tensor:
    return t if t.shape == w.shape else t.reshape(w.shape)


# ---------------------------------------------------------------------------------------------
# custom ops: relu, leaky_relu, prelu, flexible_relu


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
