"""What the backends share: the one copy of the layout, dtype and bit-mask helpers, and the plain
formulas more than one backend runs.

Imported by every backend (:mod:`.native`, :mod:`.eager`, :mod:`.triton`) and by the C++ host
side (:mod:`.cpp`); it imports no backend and nothing of the package above it.

* autograd and tracing: :func:`needs_grad`, :func:`transforming`, :func:`compiling`,
  :func:`forward_ad`, :func:`batched_backward`;
* dtypes: :data:`FLOAT_DTYPES`, :func:`opmath`;
* layouts: :func:`is_dense`, :func:`laid_out_as`, :func:`contiguous_strides`,
  :func:`dense_strides`, :func:`memory_order`, :func:`channel_runs`, :func:`channel_view`,
  :func:`reduce_dims`, :func:`cache_blocks`;
* bit-packed masks (1 bit per element, in memory order): :func:`mask_bytes`, :func:`new_mask`,
  :func:`unpack_mask`, :func:`pack_mask`;
* plain formulas (bitwise the reference's; the ``"torch"`` backend is made of them, and the
  eager backend runs them where it has nothing to keep): :func:`plain_prelu`,
  :func:`plain_flexible_relu`, :func:`plain_funnel_relu`.
"""

from __future__ import annotations

from collections.abc import Sequence

import re

import torch
import torch.autograd.forward_ad as _fwad
import torch.nn.functional as F

__all__ = [
    "needs_grad", "compiling", "transforming", "forward_ad", "batched_backward", "FLOAT_DTYPES", "opmath", "is_dense", "laid_out_as",
    "contiguous_strides", "dense_strides", "memory_order", "channel_runs", "channel_view",
    "reduce_dims", "cache_blocks", "BLOCK_ELEMENTS", "mask_bytes", "new_mask", "unpack_mask",
    "pack_mask", "plain_prelu", "plain_flexible_relu", "plain_funnel_relu",
]

#: The floating dtypes the fused kernels (C++ and the compiled FReLU ops) handle.
FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def opmath(dtype: torch.dtype) -> torch.dtype:
    """The op-math dtype of the kernels: float64 for float64, float32 for the other float dtypes."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record this call: grad mode on and some tensor requires grad."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def is_dense(t: torch.Tensor) -> bool:
    """Whether ``t`` covers its memory without gaps or overlaps (any permutation of dims)."""
    if t.numel() <= 1:
        return True
    dims = sorted((st, sz) for sz, st in zip(t.shape, t.stride()) if sz != 1)
    expected = 1
    for st, sz in dims:
        if st != expected:
            return False
        expected *= sz
    return True


def transforming() -> bool:
    """Whether a ``torch.func`` transform (grad, vjp, jacrev, vmap, ...) is active."""
    return bool(torch._C._are_functorch_transforms_active())


def forward_ad() -> bool:
    """Whether a ``torch.autograd.forward_ad`` level is open (dual tensors may flow).

    The eager Functions have no ``jvp``; :func:`rectifiers.ops.get_backend` sends such calls to
    the plain formulas, whose forward derivatives torch has. A module-global read: free.
    """
    return _fwad._current_level >= 0


#: The legacy vmap's dispatch key as a whole word (not functorch's ``FuncTorchVmapMode``).
_VMAP_MODE = re.compile(r"\bVmapMode\b")


def batched_backward() -> bool:
    """Whether this backward runs under autograd's own (legacy) vmap: ``autograd.grad(...,
    is_grads_batched=True)``, ``jacobian(vectorize=True)``, gradcheck's batched-grad check.

    :func:`transforming` does not see that vmap (it is not a ``torch.func`` transform), and the
    eager backwards' fused kernels and in-place passes have no batching rules there; the eager
    Functions then take their differentiable branch (plain out-of-place ops, which have). It is
    asked in ``backward`` (the forward cannot know how its graph will be differentiated, and
    :func:`rectifiers.ops.get_backend` decides at forward time only), and only where a fused or
    in-place pass would run next: the test reads the dispatcher's thread-local keys (~2 us).
    """
    return _VMAP_MODE.search(str(torch._C._dispatch_tls_local_include_set())) is not None


def compiling() -> bool:
    """Whether to run the plain formulas: torch.compile (Dynamo) or torch.export is tracing this
    call, or a ``torch.func`` transform (grad, vjp, jacrev, vmap, ...) is active.

    The backends' own autograd Functions save what they keep from ``forward(ctx, ...)``, which
    ``torch.func`` does not accept; under a transform the plain formulas (or, for the Triton
    backend, its custom ops) run instead, with the same results.
    """
    return bool(
        torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or transforming()
    )


def reduce_dims(ndim: int, channel_dim: int | None) -> tuple[int, ...]:
    """Every dim but the channel dim (all of them for a shared, 1-element parameter)."""
    return tuple(i for i in range(ndim) if i != channel_dim)


#: Elements per block of :func:`cache_blocks` (about 0.5 MB in float32).
BLOCK_ELEMENTS = 1 << 17


def cache_blocks(t: torch.Tensor, channel_dim: int | None) -> list[tuple[slice, ...]]:
    """Index tuples splitting ``t`` into cache-sized blocks along its first non-channel dim.

    Several passes of plain kernels over one block (compare, scale, multiply, reduce) then run
    from cache rather than from memory. A tensor under :data:`BLOCK_ELEMENTS` is one block.
    """
    if t.numel() <= BLOCK_ELEMENTS:
        return [(Ellipsis,)]
    bd = next((d for d in range(t.dim()) if d != channel_dim and t.shape[d] > 1), None)
    if bd is None:
        return [(Ellipsis,)]
    per = t.numel() // t.shape[bd]
    step = max(1, BLOCK_ELEMENTS // per)
    head = (slice(None),) * bd
    return [head + (slice(i, i + step),) for i in range(0, t.shape[bd], step)]


def laid_out_as(t: torch.Tensor, size: Sequence[int], stride: Sequence[int]) -> bool:
    """Whether ``t`` has this shape and lies in memory with these strides (where the size is > 1)."""
    return t.shape == size and all(n == 1 or a == b for n, a, b in zip(size, t.stride(), stride))


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    """The strides of a contiguous tensor of this shape."""
    strides, acc = [], 1
    for n in reversed(list(shape)):
        strides.append(acc)
        acc = acc * max(n, 1)
    return strides[::-1]


def dense_strides(x: torch.Tensor) -> list[int]:
    """x's own strides if x is dense, else contiguous ones (the layout a dense copy gets)."""
    return list(x.stride()) if is_dense(x) else contiguous_strides(x.shape)


def memory_order(t: torch.Tensor) -> torch.Tensor:
    """A dense, freshly laid out tensor as the flat array of its memory (offset 0 to numel)."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def channel_runs(x: torch.Tensor, cdim: int | None) -> tuple[int, int, int] | None:
    """``(outer, C, inner)`` when x's memory is that array in order, else ``None``.

    Any dense layout (no gaps, no overlap: contiguous, channels_last, a permutation, a
    transpose) is: the dims whose strides are below the channel's make ``inner``, the others
    ``outer``. A view with gaps (a step, a narrowed dim) is not.
    """
    n = x.numel()
    if x.is_contiguous():
        if cdim is None:
            return 1, 1, n
        c = x.shape[cdim]
        inner = 1
        for s in x.shape[cdim + 1:]:
            inner *= s
        return n // (c * inner) if c * inner else 0, c, inner
    if not is_dense(x):
        return None
    if cdim is None or x.shape[cdim] == 1:
        return 1, 1, n  # one bias (or one channel): the memory is a flat array of n elements
    c, st = x.shape[cdim], x.stride(cdim)
    inner = 1
    for d in range(x.dim()):
        if d != cdim and x.shape[d] > 1 and x.stride(d) < st:
            inner *= x.shape[d]
    if inner != st:
        return None
    return n // (c * inner), c, inner


def channel_view(param: torch.Tensor, x: torch.Tensor, dim: int) -> torch.Tensor:
    """Reshape a 1-element or per-channel parameter so it broadcasts against ``x`` along ``dim``.

    ``dim`` must already be normalised to ``0 <= dim < x.dim()`` (or ``x.dim() < 2``, in which
    case the parameter has a single element and is returned flattened to shape ``()``).
    """
    if param.numel() == 1:
        return param.reshape(())
    shape = [1] * x.dim()
    shape[dim] = param.numel()
    return param.reshape(shape)


# --------------------------------------------------------------------------------------------
# Bit-packed masks: bit ``i % 8`` of byte ``i // 8`` for the element at memory offset ``i`` of
# a dense tensor (contiguous, channels_last or any other permutation); the bits past the last
# element are 0. The C++ FReLU kernel and the compiled FReLU ops use this format.


def mask_bytes(n: int) -> int:
    """Bytes of the bit-packed mask of ``n`` elements: ``ceil(n / 8)``."""
    return (n + 7) // 8


def new_mask(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised bit-packed mask for x: a flat uint8 tensor of ``ceil(numel / 8)`` bytes."""
    return torch.empty(mask_bytes(x.numel()), dtype=torch.uint8, device=x.device)


_BITS = (1, 2, 4, 8, 16, 32, 64, 128)
_BIT_WEIGHTS = torch.tensor(_BITS, dtype=torch.uint8)


def unpack_mask(mask: torch.Tensor, size: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """The bit-packed mask as a bool tensor of this shape and these strides (the forward's x's).

    Plain torch ops: for the double backward and other rare paths.
    """
    n = 1
    for s in size:
        n *= s
    flat = mask.unsqueeze(-1).bitwise_and(_BIT_WEIGHTS.to(mask.device)).ne(0).reshape(-1)
    return flat[:n].as_strided(tuple(size), tuple(stride))


def pack_mask(m: torch.Tensor) -> torch.Tensor:
    """Bit-pack a dense bool tensor in memory order: ``ceil(n / 8)`` uint8 bytes, zero padded."""
    flat = memory_order(m).to(torch.uint8)
    flat = F.pad(flat, (0, (-flat.numel()) % 8)).view(-1, 8)
    weights = torch.tensor(_BITS, dtype=torch.uint8, device=m.device)
    return flat.mul_(weights).sum(1, dtype=torch.uint8)


# --------------------------------------------------------------------------------------------
# Plain formulas


def plain_prelu(x: torch.Tensor, weight: torch.Tensor, dim: int | None) -> torch.Tensor:
    """``torch.prelu`` with the channels at any ``dim`` (bitwise the reference formula)."""
    w = weight.to(x.dtype)
    if w.numel() == 1 or dim is None or dim == 1:
        return torch.prelu(x, w.reshape(-1))
    if x.dim() == 1:  # a 1-D input of channels (dim 0)
        return torch.prelu(x.unsqueeze(0), w).squeeze(0)
    # A permuted view: torch.prelu's output follows the view's strides, so moving the dim back
    # gives x's own layout.
    return torch.prelu(x.movedim(dim, 1), w).movedim(1, dim)


def plain_flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int | None, inplace: bool) -> torch.Tensor:
    """``relu(x) + b``, in place when asked (bitwise the reference formula)."""
    b = channel_view(bias.to(x.dtype), x, dim if dim is not None else 0)
    if not inplace:
        return torch.relu(x) + b
    if torch.is_grad_enabled() and (x.requires_grad or bias.requires_grad):
        # relu_(x).add_(b) would overwrite the output relu keeps for backward: copy back instead.
        return x.copy_(torch.relu(x) + b)
    return torch.relu_(x).add_(b)


def plain_funnel_relu(
    x: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor | None,
    bn_weight: torch.Tensor | None, bn_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None, running_var: torch.Tensor | None,
    training: bool, momentum: float, eps: float,
) -> torch.Tensor:
    """``max(x, BatchNorm(depthwise conv(x)))`` as the reference writes it: the conv (padding
    ``k // 2``, in x's dtype), ``F.batch_norm`` (running statistics updated in place in
    training) and ``torch.maximum``, each keeping its own tensors for backward."""
    conv = (F.conv1d, F.conv2d, F.conv3d)[x.dim() - 3]
    k = conv_weight.shape[-1]
    w = conv_weight.to(x.dtype)
    b = None if conv_bias is None else conv_bias.to(x.dtype)
    t = conv(x, w, b, 1, k // 2, 1, x.shape[1])
    t = F.batch_norm(t, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
    return torch.maximum(x, t)
