"""Small helpers shared by the eager backend's Functions."""

from __future__ import annotations

import torch

__all__ = ["needs_grad", "compiling", "transforming", "is_dense", "reduce_dims", "cache_blocks", "BLOCK_ELEMENTS"]


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
