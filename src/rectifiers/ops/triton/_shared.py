"""What both halves of the Triton backend share: the op namespace, the launch configuration
and the helpers that read it (layouts, the per-channel reduction's tile, the mask's size, the
refusal of double backward).

The launch configuration is read from this module at every launch, by both halves: tests
shrink ``BLOCK``, ``TILE`` and ``PROGRAMS_PER_SM`` here to get many programs out of small
tensors. The package does not re-export these names, so that a value set on it cannot
silently miss every launch.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from .._common import is_dense as _is_dense, laid_out_as

NS = "rectifiers_triton"

# Launch configuration. Tests shrink these to get many programs out of small tensors.
BLOCK = 2048  # elements per program of the flat kernels (a power of two, >= 32)
TILE = 2048  # elements per loop step of the per-channel reduction kernel (a power of two)
NUM_WARPS = 4
PROGRAMS_PER_SM = 4  # the per-channel reduction aims for this many programs per SM


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


def _mask_words(n: int, per_word: int = 32) -> int:
    return (n + per_word - 1) // per_word


def _no_double_backward(name: str) -> None:
    # The backward ops have no derivative of their own: refuse create_graph=True rather than
    # hand back gradients that silently carry no graph.
    if torch.is_grad_enabled():
        raise RuntimeError(
            f"{name}: the Triton backend gives first derivatives only, got a backward with "
            "create_graph=True (double backward); use backend='eager' or backend='torch'"
        )
