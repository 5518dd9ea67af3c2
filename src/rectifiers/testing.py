"""Comparisons for testing activations against a reference, as the project's tests make them.

Floor 0: imports torch only. The test suite and ``benchmarks/gpu_check.py`` share these, so a
script on a GPU machine compares exactly as the tests do.

* :func:`bits_equal`: same shape, dtype and bits. The sign of zero counts (``-0.0`` is not
  ``0.0``); any NaN equals any NaN (payloads differ between kernels and devices).
* :func:`with_kinks`: a copy of a tensor with the values where the activations' branches meet
  (``0``, ``-0.0``, the smallest normal numbers of both signs) written at fixed places.
"""

from __future__ import annotations

import torch

__all__ = ["bits_equal", "with_kinks", "kink_values"]

_INTS = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.int8}


def bits_equal(a: torch.Tensor, b: torch.Tensor, *, nan_payload: bool = False) -> bool:
    """Whether ``a`` and ``b`` have the same shape, dtype and bits, NaNs matching any NaN.

    With ``nan_payload=True`` NaNs must match bit for bit too (two runs of one kernel).
    """
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    a, b = a.detach(), b.detach()
    if not a.is_floating_point():
        return torch.equal(a, b)
    if nan_payload:
        ints = _INTS[a.element_size()]
        return torch.equal(a.contiguous().view(ints), b.contiguous().view(ints))
    na, nb = torch.isnan(a), torch.isnan(b)
    if not torch.equal(na, nb):
        return False
    ints = _INTS[a.element_size()]
    return torch.equal(a.masked_fill(na, 0).contiguous().view(ints),
                       b.masked_fill(nb, 0).contiguous().view(ints))


def kink_values(dtype: torch.dtype) -> tuple[float, float, float, float]:
    """``(0.0, -0.0, tiny, -tiny)`` for ``dtype`` (tiny: its smallest normal number)."""
    tiny = torch.finfo(dtype).tiny
    return 0.0, -0.0, tiny, -tiny


def with_kinks(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` with :func:`kink_values` in its first four elements.

    Random inputs never land exactly on a kink; this puts them there. A tensor with fewer than 8
    elements, or not contiguous, is returned as a plain copy.
    """
    x = x.clone()
    flat = x.view(-1) if x.is_contiguous() else None
    if flat is None or flat.numel() < 8:
        return x
    for i, v in enumerate(kink_values(x.dtype)):
        flat[i] = v
    return x
