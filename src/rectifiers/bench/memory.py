"""Memory: the bytes autograd keeps for backward, counted per distinct storage."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["saved_bytes", "extra_bytes_per_element", "block_extra_bytes_per_element"]


def saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, dict[int, int]]:
    """Run ``fn`` recording every tensor autograd saves; returns (output, {storage ptr: bytes})."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, seen


def extra_bytes_per_element(act: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Bytes the activation keeps for backward per element of ``x``, beyond its own output.

    ``x`` is taken as the output of a previous layer that does not keep it (a conv keeps its
    input, not its output), so keeping ``x`` counts; the output is kept by the next layer anyway,
    so keeping it does not.
    """
    h = x.detach().clone().requires_grad_(x.is_floating_point())
    h2 = h * 1.0  # a non-leaf, as the output of a previous layer would be
    y, seen = saved_bytes(lambda: act(h2))
    seen.pop(y.untyped_storage().data_ptr(), None)
    seen.pop(h.untyped_storage().data_ptr(), None)  # h2 = h * 1.0 saves nothing, but be safe
    return sum(seen.values()) / x.numel()


def block_extra_bytes_per_element(act: nn.Module, x: torch.Tensor) -> float:
    """Extra bytes per activation element kept by conv -> act -> conv, over conv -> conv.

    ``x`` is (N, C, H, W); both convs are 1x1 ``nn.Conv2d(C, C)`` in x's dtype.
    """
    c = x.shape[1]
    conv1 = nn.Conv2d(c, c, 1).to(x.dtype)
    conv2 = nn.Conv2d(c, c, 1).to(x.dtype)
    xin = x.detach().requires_grad_()
    _, with_act = saved_bytes(lambda: conv2(act(conv1(xin))))
    _, without = saved_bytes(lambda: conv2(conv1(xin)))
    act_elems = x.numel()
    return (sum(with_act.values()) - sum(without.values())) / act_elems


def _extra_bytes_of(mod: nn.Module, x: torch.Tensor) -> float:
    try:
        return extra_bytes_per_element(mod, x)
    except Exception:  # noqa: BLE001 - a compiled graph may refuse saved-tensor hooks
        return float("nan")
