"""The funnel activation of the eager backend: keep the input only, recompute the rest.

``y = max(x, T(x))`` with ``T = BatchNorm(depthwise conv(x))``. The plain formula keeps three
input-sized tensors for backward (x for the conv, the conv output for the BatchNorm, T for the
maximum). This Function keeps x and the per-channel batch statistics, and recomputes the conv
and the BatchNorm in backward. On CPU both run in channels-last layout, where PyTorch's CPU
depthwise convolution is many times faster than in NCHW; (N, C, L) inputs run as (N, C, 1, L).
On a GPU they run in the input's own layout.
Running statistics are updated once, in forward.

On CPU, for an input that is not channels-last, the fused C++ kernel of
:mod:`rectifiers.ops.cpp.funnel` does all of it instead (built at first use; the path above
where it cannot be built, or with ``RECTIFIERS_NO_CPP=1``): it computes in the input's own
(N, C, *spatial) layout, where PyTorch's depthwise convolution is slowest, and keeps the same
state for backward (the input and per-channel statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._common import batched_backward, needs_grad, plain_funnel_relu
from ..cpp import funnel as kernels

__all__ = ["funnel_relu"]

_aten = torch.ops.aten


def _work(x: torch.Tensor, conv_weight: torch.Tensor):
    """x in the working layout, the kernel in x's dtype shaped for it, and the conv's padding.

    On CPU the working layout is channels-last (4-D channels_last, 5-D channels_last_3d). On
    other devices (cuDNN has fast depthwise kernels in either layout) it is x's own: channels-last
    when x is, else contiguous.
    """
    k = conv_weight.shape[-1]
    w = conv_weight.to(x.dtype)
    xw, w, pad = (x.unsqueeze(2), w.unsqueeze(2), [0, k // 2]) if x.dim() == 3 else (x, w, [k // 2] * (x.dim() - 2))
    cl = torch.channels_last if xw.dim() == 4 else torch.channels_last_3d
    if x.device.type == "cpu" or (x.dim() > 3 and xw.is_contiguous(memory_format=cl)):
        return xw.contiguous(memory_format=cl), w, pad
    return xw.contiguous(), w, pad


def _conv(xw: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, pad: list[int]) -> torch.Tensor:
    conv = F.conv2d if xw.dim() == 4 else F.conv3d
    return conv(xw, w, b, 1, pad, 1, xw.shape[1])


def _from_work(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return t.squeeze(2) if x.dim() == 3 else t


def _forward(x, conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps):
    xw, w, pad = _work(x, conv_weight)
    b = None if conv_bias is None else conv_bias.to(x.dtype)
    t = _conv(xw, w, b, pad)
    tn, mean, invstd = _aten.native_batch_norm(t, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps)
    y = torch.empty_like(x)
    torch.maximum(x, _from_work(tn, x), out=y)
    return y, mean, invstd


def _differentiable_backward(g, ins, rmc, rvc, use_batch, eps, need):  # type: ignore[no-untyped-def]
    """The gradients recomputed through the plain formula: differentiably under create_graph,
    and under autograd's vmap (batched gradients; grad mode off), whose batching rules the
    plain ops' backwards have and the fused kernels lack. With grad mode off the saved tensors
    are detached leaves of a local graph."""
    create_graph = torch.is_grad_enabled()
    if not create_graph:
        ins = tuple(None if t is None else t.detach().requires_grad_(bool(need[i])) for i, t in enumerate(ins))
    x, cw, cb, bw, bb = ins
    with torch.enable_grad():
        y = plain_funnel_relu(x, cw, cb, bw, bb, rmc, rvc, use_batch, 0.0, eps)
    sel = [(i, t) for i, t in enumerate(ins) if need[i] and t is not None]
    gr = torch.autograd.grad(y, [t for _, t in sel], g, create_graph=create_graph, allow_unused=True)
    out: list[torch.Tensor | None] = [None] * 10
    for (i, t), gi in zip(sel, gr):
        out[i] = torch.zeros_like(t) if gi is None else gi
    return tuple(out)


class _TwoHalves(torch.autograd.Function):
    """A Function written as ``_run(*inputs)`` and ``_setup(ctx, inputs, output)``, called from
    one ``forward(ctx, ...)``: a separate ``setup_context`` would make every apply bind its
    arguments through ``inspect.signature`` (tens of microseconds of Python a call)."""

    @classmethod
    def forward(cls, ctx, *inputs):  # type: ignore[no-untyped-def, override]
        output = cls._run(*inputs)  # type: ignore[attr-defined]
        cls._setup(ctx, inputs, output)  # type: ignore[attr-defined]
        return output


class _Funnel(_TwoHalves):
    @staticmethod
    def _run(x, conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps):  # type: ignore[no-untyped-def]
        y, mean, invstd = _forward(
            x, conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps
        )
        return y, mean, invstd

    @staticmethod
    def _setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
        x, conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps = inputs
        _, mean, invstd = output
        ctx.use_batch, ctx.eps = use_batch, eps
        ctx.has_bias = conv_bias is not None
        ctx.has_bn_weight, ctx.has_bn_bias = bn_weight is not None, bn_bias is not None
        # Eval mode reads the running statistics: keep a (C-sized) copy, as a later training
        # step may update them in place before this backward runs.
        rmc = None if use_batch else rm.clone()
        rvc = None if use_batch else rv.clone()
        ctx.save_for_backward(x, conv_weight, conv_bias, bn_weight, bn_bias, mean, invstd, rmc, rvc)
        ctx.mark_non_differentiable(mean, invstd)

    @staticmethod
    def backward(ctx, g, _gm, _gi):  # type: ignore[no-untyped-def]
        x, cw, cb, bw, bb, mean, invstd, rmc, rvc = ctx.saved_tensors
        need = ctx.needs_input_grad[:5]
        use_batch, eps = ctx.use_batch, ctx.eps
        if torch.is_grad_enabled() or batched_backward():
            return _differentiable_backward(g, (x, cw, cb, bw, bb), rmc, rvc, use_batch, eps, need)

        xw, w, pad = _work(x, cw)
        b = None if cb is None else cb.to(x.dtype)
        with torch.no_grad():
            t = _conv(xw, w, b, pad)
            # The same kernel as forward, so T (and its ties with x) are the same bits.
            tn = _aten.native_batch_norm(t, bw, bb, rmc, rvc, use_batch, 0.0, eps)[0]
            gw = g.unsqueeze(2) if x.dim() == 3 else g
            gw = gw.contiguous(memory_format=_fmt(xw))
            # torch.maximum's gradient: g to the larger side, g/2 to each at ties, g to both
            # where either is NaN (threshold_backward(g, d, 0) = 0 where d <= 0 else g).
            d = xw - tn
            gx = _aten.threshold_backward(gw, d, 0)
            gt = _aten.threshold_backward(gw, d.neg_(), 0)
            # Ties (x == T) get g/2 each way. x != T gives d != 0 exactly (gradual underflow),
            # so min |d| > 0 rules them out in two cheap float passes; a NaN minimum (NaN or
            # inf - inf, where x == T == inf is a tie too) falls back to the exact test.
            m = float(d.abs_().amin()) if d.numel() else 1.0
            del d
            if not m > 0:
                tie = xw == tn
                half = gw * 0.5
                gx = torch.where(tie, half, gx)
                gt = torch.where(tie, half, gt)
                del tie
            del tn
            need_t = need[0] or need[1] or need[2]
            gtin, gbw, gbb = _aten.native_batch_norm_backward(
                gt, t, bw, rmc, rvc, mean, invstd, use_batch, eps,
                [need_t, need[3] and bw is not None, need[4] and bb is not None],
            )
            del gt, t
            dx = dcw = dcb = None
            if need_t:
                nsp = xw.dim() - 2
                gxc, gcw, gcb = _aten.convolution_backward(
                    gtin, xw, w, None if cb is None else [cb.shape[0]], [1] * nsp, pad, [1] * nsp,
                    False, [0] * nsp, xw.shape[1], [need[0], need[1], need[2] and cb is not None],
                )
                if need[0]:
                    dx = torch.empty_like(x)
                    torch.add(_from_work(gx, x), _from_work(gxc, x), out=dx)
                if need[1]:
                    dcw = gcw.reshape(cw.shape).to(cw.dtype)
                if need[2] and cb is not None:
                    dcb = gcb.to(cb.dtype)
            elif need[0]:
                dx = torch.empty_like(x)
                dx.copy_(_from_work(gx, x))
            if gbw is not None:
                gbw = gbw.to(bw.dtype)
            if gbb is not None:
                gbb = gbb.to(bb.dtype)
        return dx, dcw, dcb, gbw, gbb, None, None, None, None, None


class _FunnelFused(_TwoHalves):
    """The funnel through the fused C++ CPU kernel: x and (C, 3) statistics kept."""

    @staticmethod
    def _run(x, conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps):  # type: ignore[no-untyped-def]
        return kernels.forward(
            x.contiguous(), conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps
        )

    @staticmethod
    def _setup(ctx, inputs, output):  # type: ignore[no-untyped-def]
        x, conv_weight, conv_bias, bn_weight, bn_bias, rm, rv, use_batch, momentum, eps = inputs
        _, stats = output
        ctx.use_batch, ctx.eps = use_batch, eps
        # Eval mode: a C-sized copy of the running statistics, for the double backward only
        # (a later training step may update them in place before this backward runs).
        rmc = None if use_batch else rm.clone()
        rvc = None if use_batch else rv.clone()
        ctx.save_for_backward(x, conv_weight, conv_bias, bn_weight, bn_bias, stats, rmc, rvc)
        ctx.mark_non_differentiable(stats)

    @staticmethod
    def backward(ctx, g, _gs):  # type: ignore[no-untyped-def]
        x, cw, cb, bw, bb, stats, rmc, rvc = ctx.saved_tensors
        need = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled() or batched_backward():
            return _differentiable_backward(g, (x, cw, cb, bw, bb), rmc, rvc, ctx.use_batch, ctx.eps, need)
        with torch.no_grad():
            grads = kernels.backward(
                g.to(x.dtype).contiguous(), x.contiguous(), cw, cb, bw, bb, stats, ctx.use_batch, need
            )
        return grads + (None,) * 5


#: Planes (the spatial values of one sample and channel) of at most this many values take the
#: plain formula in training (see :func:`funnel_relu`).
_PLAIN_MAX_PLANE = 2


def _pointwise_funnel_relu(
    x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
):
    """The plain formula with a 1-wide depthwise conv written as what it is, a per-channel scale
    (and shift): ``x * w[c] (+ b[c])``. Values as the conv's (one product per output, or one
    fused multiply-add with the bias), in a fraction of the time: torch's depthwise conv has
    little to do here and takes long to do it (measured at (64, 64, 1): about 100 us of a 110 us
    forward for ``F.conv1d``, 3 us for the product)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    w = conv_weight.to(x.dtype).reshape(shape)
    if conv_bias is None:
        t = x * w
    else:  # one fused multiply-add: torch's conv rounds x * w + b once (a product, then a sum, differs)
        t = torch.addcmul(conv_bias.to(x.dtype).reshape(shape), x, w)
    t = F.batch_norm(t, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
    return torch.maximum(x, t)


def _fmt(xw: torch.Tensor) -> torch.memory_format:
    """The memory format of the working layout (see :func:`_work`)."""
    cl = torch.channels_last if xw.dim() == 4 else torch.channels_last_3d
    return cl if xw.is_contiguous(memory_format=cl) else torch.contiguous_format


def funnel_relu(
    x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
):
    use_batch = bool(training) or running_mean is None
    if torch._C._get_tracing_state() is not None:
        # torch.jit.trace: the plain formula, whose ops it can record (the fused kernel's op
        # writes its outputs in place and returns nothing, which the tracer refuses).
        return plain_funnel_relu(
            x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
            momentum, eps,
        )
    if x.numel() <= _PLAIN_MAX_PLANE * x.shape[0] * x.shape[1] and needs_grad(x, conv_weight, conv_bias, bn_weight, bn_bias):
        # Planes of one or two values (a funnel on flat features, (N, C, 1)): the per-plane work
        # of the fused kernel and of the two-halves Function outweighs the data; torch's plain
        # formula is faster there (measured: 0.72x of ours at (64, 64, 1), k = 1).
        if conv_weight.shape[-1] == 1:
            return _pointwise_funnel_relu(
                x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
                momentum, eps,
            )
        return plain_funnel_relu(
            x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
            momentum, eps,
        )
    fused = kernels.applies(x, conv_weight, use_batch)
    if not needs_grad(x, conv_weight, conv_bias, bn_weight, bn_bias):
        if fused:  # one fused pass (two over a cached channel in training)
            with torch.no_grad():
                y, _ = kernels.forward(
                    x.contiguous(), conv_weight, conv_bias, bn_weight, bn_bias, running_mean,
                    running_var, use_batch, momentum, eps,
                )
            return y
        # Nothing to keep: the plain formula, whose conv follows x's own layout, is as fast as
        # it gets without a layout change (measured: the channels-last round trip costs more
        # than it saves in a forward pass alone).
        return plain_funnel_relu(
            x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training,
            momentum, eps,
        )
    fn = _FunnelFused if fused else _Funnel
    y, _, *_ = fn.apply(
        x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, use_batch,
        momentum, eps,
    )
    return y
