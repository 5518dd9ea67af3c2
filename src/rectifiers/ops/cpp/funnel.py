"""A fused C++ CPU kernel for the funnel activation's training step, built at first use.

``y = max(x, T(x))``, ``T = BatchNorm(depthwise conv(x))`` with an odd ``k`` in every spatial
dim, stride 1, padding ``k // 2``. PyTorch's depthwise convolution on CPU is slow in NCHW (a
generic loop, several times the element-wise cost), and the plain formula makes one pass per
op. This kernel works on one channel at a time, in the input's own (N, C, *spatial) layout:

* forward (training): the conv of the channel's N planes into a channel-sized float buffer (in
  cache), the batch mean and the variance from it (two passes, float64 totals), then
  ``y = max(x, T)`` in one more pass over the buffer; eval mode is one pass per plane with the
  running statistics;
* backward: the conv again, plane by plane, with ``x_hat`` and the gradient reaching T kept in
  two channel-sized buffers and ``dx = g`` where x won written at once; then, with the channel's
  BatchNorm sums known, the conv branch's gradient per plane: the conv's weight gradient and
  bias gradient (float64 totals) and the transposed depthwise conv added into ``dx``.

Only the input and per-channel statistics are kept for backward. Every loop runs along the
innermost spatial dim, in float (bfloat16 and half are converted on load; double stays double),
compiled twice (portable and AVX2, picked at run time and capped by :func:`set_isa`, as the
other fused kernels are: the preamble ``csrc/common.h``); no FMA
contraction, so the forward and the recomputation in backward round T identically and agree on
which side of the maximum won. ``y = max(x, T)`` follows ``torch.maximum`` with T rounded to
x's dtype first (as the plain formula's conv output is): NaN on either side gives NaN and both
sides the gradient, ties split it.

Build, cache and fallback as :mod:`rectifiers.ops.cpp.pointwise` (the same helpers, in
:mod:`rectifiers.ops.cpp.build`): :func:`load` compiles with
:func:`torch.utils.cpp_extension.load` (``csrc/funnel.cpp``) into torch's extension directory; any failure
warns once and returns ``False``; ``RECTIFIERS_NO_CPP=1`` turns it off silently. The caller
then keeps the plain-torch path (same results).
"""

from __future__ import annotations

import threading

import torch

from .._common import FLOAT_DTYPES, opmath
from . import build as _build_mod
from .build import set_isa

__all__ = ["load", "applies", "forward", "backward", "build_seconds", "set_isa", "CALLS"]

#: Calls of the kernel in this process (the tests check that the C++ path really ran).
CALLS = {"forward": 0, "backward": 0}

#: Largest kernel size handled (the padded plane and the weight-gradient rows grow with k).
MAX_K = 15

#: The C++ source (with the headers it includes, beside it in ``rectifiers/csrc``).
_SOURCES = [_build_mod.source_path("funnel.cpp")]

#: The stem of the extension's name (:func:`rectifiers.ops.cpp.build.build_name` adds the hash
#: of its sources, flags and environment).
_NAME = "rectifiers_funnel_cpu"
_FLAGS = ["-O3", "-ffp-contract=off"]

_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "ok": False, "seconds": None}


def build_seconds() -> float | None:
    """Seconds the last :func:`load` took to build or load the extension (``None`` before)."""
    s = _state["seconds"]
    return float(s) if s is not None else None  # type: ignore[arg-type]


def _build() -> None:
    _build_mod.build(_NAME, _SOURCES, _FLAGS)


def load() -> bool:
    """Build (first time) and load the funnel kernel; ``False`` if it is unavailable.

    Never raises: a failure is reported once with :func:`warnings.warn` and remembered, so later
    calls return ``False`` at once. ``RECTIFIERS_NO_CPP=1`` disables the kernel silently.
    """
    return _build_mod.load_once(_state, _lock, _build, "rectifiers_funnel_cpp", ("funnel_fwd",), "funnel kernel")


def applies(x: torch.Tensor, conv_weight: torch.Tensor, use_batch: bool) -> bool:
    """Whether the kernel handles this call (and loads): a CPU float tensor of 3 to 5 dims not
    in a channels-last layout (a strided one is made contiguous), an odd kernel up to
    :data:`MAX_K`, more than one value per channel in training."""
    if x.device.type != "cpu" or x.dtype not in FLOAT_DTYPES or x.dim() not in (3, 4, 5) or x.numel() == 0:
        return False
    k = conv_weight.shape[-1]
    if k % 2 == 0 or k > MAX_K or conv_weight.device.type != "cpu":
        return False
    if not x.is_contiguous() and (
        (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
        or (x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d))
    ):
        return False  # PyTorch's own depthwise conv is fast in these layouts: the caller's path
    if use_batch and x.numel() // x.shape[1] < 2:
        return False  # the plain path raises torch's error for one value per channel
    return load()


def _dims(x: torch.Tensor, k: int) -> list[int]:
    sp = list(x.shape[2:])
    nsp = len(sp)
    return [x.shape[0], x.shape[1]] + [1] * (3 - nsp) + sp + [1] * (3 - nsp) + [k] * nsp


def _kernel(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    # Rounded to x's dtype first: the plain formula runs its conv in x's dtype.
    return w.detach().to(x.dtype).to(opmath(x.dtype)).reshape(w.shape[0], -1).contiguous()


def _bn(t: torch.Tensor | None, c: int, fill: float, device: torch.device) -> torch.Tensor:
    if t is None:
        return torch.full((c,), fill, dtype=torch.float64, device=device)
    return t.detach().to(torch.float64).contiguous()


def forward(
    x: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor | None,
    bn_weight: torch.Tensor | None, bn_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
    use_batch: bool, momentum: float, eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``y = max(x, BN(depthwise conv(x)))`` for a contiguous x; returns ``(y, stats)``.

    ``stats`` is (C, 3) float64: the mean and inverse std the BatchNorm used, and the biased
    batch variance. In training (``use_batch``) the running statistics, when given, are updated
    in place as ``F.batch_norm`` does (the unbiased variance, ``momentum``).
    """
    c = x.shape[1]
    k = conv_weight.shape[-1]
    w = _kernel(conv_weight, x)
    cb = None if conv_bias is None else conv_bias.detach().to(x.dtype).to(opmath(x.dtype)).contiguous()
    stats = torch.zeros(c, 3, dtype=torch.float64, device=x.device)
    if not use_batch:
        stats[:, 0] = running_mean.detach()
        stats[:, 1] = running_var.detach()
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    torch.ops.rectifiers_funnel_cpp.funnel_fwd(
        x, w, cb, _bn(bn_weight, c, 1.0, x.device), _bn(bn_bias, c, 0.0, x.device), stats, y, _dims(x, k), bool(use_batch),
        float(eps),
    )
    CALLS["forward"] += 1
    if use_batch and running_mean is not None and running_var is not None:
        m = x.numel() // c
        with torch.no_grad():
            mean, var = stats[:, 0], stats[:, 2] * (m / (m - 1))
            running_mean.copy_(running_mean.double() * (1.0 - momentum) + mean * momentum)
            running_var.copy_(running_var.double() * (1.0 - momentum) + var * momentum)
    return y, stats


def backward(
    g: torch.Tensor, x: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor | None,
    bn_weight: torch.Tensor | None, bn_bias: torch.Tensor | None, stats: torch.Tensor,
    use_batch: bool, need: tuple[bool, bool, bool, bool, bool],
) -> tuple[torch.Tensor | None, ...]:
    """The gradients ``(dx, d conv_weight, d conv_bias, d bn_weight, d bn_bias)`` (``None``
    where not needed) from the kept x and :func:`forward`'s ``stats``; x and g contiguous."""
    c = x.shape[1]
    k = conv_weight.shape[-1]
    w = _kernel(conv_weight, x)
    cb = None if conv_bias is None else conv_bias.detach().to(x.dtype).to(opmath(x.dtype)).contiguous()
    need_dx, need_w, need_cb = need[0], need[1], need[2] and conv_bias is not None
    dx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_dx else None
    dw = torch.empty(c, w.shape[1], dtype=torch.float64, device=x.device) if need_w else None
    dcb = torch.empty(c, dtype=torch.float64, device=x.device) if need_cb else None
    dbn = torch.empty(c, 2, dtype=torch.float64, device=x.device)
    torch.ops.rectifiers_funnel_cpp.funnel_bwd(
        x, g, w, w.flip(1).contiguous(), cb, _bn(bn_weight, c, 1.0, x.device), _bn(bn_bias, c, 0.0, x.device), stats,
        dx, dw, dcb, dbn, _dims(x, k), bool(use_batch),
    )
    CALLS["backward"] += 1
    gw = None if dw is None else dw.reshape(conv_weight.shape).to(conv_weight.dtype)
    gcb = None if dcb is None else dcb.to(conv_bias.dtype)  # type: ignore[union-attr]
    # dbn's columns are views of stride 2: contiguous copies, as torch's layers return (a
    # float64 .to() would hand the view itself back).
    gbw = dbn[:, 0].to(bn_weight.dtype).contiguous() if need[3] and bn_weight is not None else None
    gbb = dbn[:, 1].to(bn_bias.dtype).contiguous() if need[4] and bn_bias is not None else None
    return dx, gw, gcb, gbw, gbb
