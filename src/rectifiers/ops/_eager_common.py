"""Small helpers shared by the eager backend's Functions."""

from __future__ import annotations

import torch

__all__ = ["needs_grad", "compiling", "reduce_dims"]


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    """Whether autograd will record this call: grad mode on and some tensor requires grad."""
    if not torch.is_grad_enabled():
        return False
    return any(t is not None and t.requires_grad for t in tensors)


def compiling() -> bool:
    """Whether torch.compile (Dynamo) or torch.export is tracing this call."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting())


def reduce_dims(ndim: int, channel_dim: int | None) -> tuple[int, ...]:
    """Every dim but the channel dim (all of them for a shared, 1-element parameter)."""
    return tuple(i for i in range(ndim) if i != channel_dim)
