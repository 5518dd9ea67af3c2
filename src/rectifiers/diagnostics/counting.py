"""Per-unit counters of the dead-unit monitor: exact counts over the batch, and one use site's state."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .rules import _Kind

def _sign_nan_is_zero() -> bool:
    """Whether this build's CPU ``torch.sign`` maps NaN to 0 (scalar and vectorised paths)."""
    for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        for n in (1, 67):
            if not bool((torch.sign(torch.full((n,), math.nan, dtype=dt)) == 0).all()):
                return False
    return True


_SIGN_NAN_IS_ZERO = _sign_nan_is_zero()


def _count_nonzero_output(o: torch.Tensor, batched: bool) -> torch.Tensor:
    """Per-unit count of ``o > 0`` over the batch, for a ReLU's output ``o = max(0, x)`` (so
    ``o > 0`` exactly where ``x > 0``).

    On CPU, ``o != 0`` as bytes summed in uint8 over chunks of 255 samples is the fastest exact
    count torch offers (about twice as fast as sign-and-sum). ``bool(nan)`` is true, so a NaN
    output (found through the NaN-propagating ``o.sum()``) sends the batch to the comparison.
    """
    if not batched or o.device.type != "cpu":
        return _count_above(o, 0.0, batched)
    if bool(torch.isnan(o.sum())):
        return (o > 0).sum(0, dtype=torch.int32)
    b = o.bool().view(torch.uint8)
    n = b.shape[0]
    if n <= 255:
        return b.sum(0, dtype=torch.uint8)
    total = torch.zeros(b.shape[1:], dtype=torch.int32, device=b.device)
    for start in range(0, n, 255):
        total += b[start:start + 255].sum(0, dtype=torch.uint8)
    return total


def _count_above(x: torch.Tensor, c: float | None, batched: bool) -> torch.Tensor:
    """Per-unit count of ``x > c`` over the batch (dim 0), without a bool mask on CPU.

    ``c=None`` says that ``x`` is non-negative already (a ReLU's output): then ``x > 0`` is
    counted. ``sign(max(x, c) - c)`` is 1 exactly where ``x > c`` (gradual underflow keeps ``x - c`` non-zero)
    and 0 elsewhere, and its float32 sum over the batch is exact below 2**24 samples; on CPU that
    is about twice as fast as comparing and summing a bool tensor. ``torch.sign(nan)`` is 0 on
    current builds (NaN > c is false, as wanted; checked once at import); on a build where it is
    not, a NaN input makes its unit's sum NaN, and the batch is then counted again with the
    comparison.
    """
    if not batched:
        return (x > (c or 0.0)).to(torch.float64)
    if x.device.type == "cpu":
        if c is None:  # x is known to be >= 0 (or NaN)
            y = x.sign()
        else:
            y = x.clamp(min=c)
            if c != 0:
                y.sub_(c)
            y.sign_()
        s = y.sum(0, dtype=torch.float32)
        if _SIGN_NAN_IS_ZERO or not bool(torch.isnan(s).any()):  # CPU: no device sync to fear
            return s
    return (x > (c or 0.0)).sum(0, dtype=torch.int32)


class _Site:
    """Running counters of one use site (float64, exact to 2**53; on the input's device)."""

    __slots__ = ("module", "name", "index", "kind", "channel_dim", "batched", "shape", "samples",
                 "active", "grad", "prev_dead")

    def __init__(self, module: nn.Module, name: str, index: int, kind: _Kind) -> None:
        self.module = module
        self.name = name
        self.index = index
        self.kind = kind
        self.channel_dim: int | None = None
        self.batched = True
        self.shape: tuple[int, ...] | None = None
        self.samples = 0
        self.active: torch.Tensor | None = None
        self.grad: torch.Tensor | None = None  # None: equal to `active` so far
        self.prev_dead: np.ndarray | None = None

    def clear(self) -> None:
        self.shape = None
        self.samples = 0
        self.active = None
        self.grad = None
