"""The benchmark's cases: one or two per activation (the ids of each description's ``bench``),
the implementations, dtypes, shapes and input layouts, and the module of each case."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .. import _spec as S

__all__ = ["ACTIVATIONS", "IMPLEMENTATIONS", "DEFAULT_IMPLS", "DEFAULT_SHAPES", "QUICK_SHAPES", "DTYPES",
           "LAYOUTS", "bench_cases", "make_module", "twin_name"]

#: Case ids of the benchmark, in the descriptions' order (``prelu``/``frelu_channel`` per
#: channel; ``prelu_scalar``/``frelu`` shared).
ACTIVATIONS: tuple[str, ...] = tuple(c for d in S.DESCRIPTIONS.values() for c in d.bench)
IMPLEMENTATIONS = ("torch", "eager", "compiled", "torch_compiled")
#: What runs when ``--impls`` is not given (``torch_compiled`` is asked for by name).
DEFAULT_IMPLS = ("torch", "eager", "compiled")
DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((32, 64, 56, 56), (16, 512, 768))
QUICK_SHAPES: tuple[tuple[int, ...], ...] = ((8, 16, 24, 24),)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def bench_cases(name: str) -> tuple[str, ...] | None:
    """The case ids ``name`` stands for, or None when it names no activation.

    A case id (``frelu``, ``prelu_scalar``, ``funnel``, in any case) is itself; any other spelling
    of an activation (``flexible_relu``, ``FReLU``, ``funnel_relu``, ``lrelu``, ...) stands for
    all the cases of its description (``flexible_relu``: ``frelu`` and ``frelu_channel``).
    """
    if not isinstance(name, str):
        return None
    if S.key(name) in ACTIVATIONS:
        return (S.key(name),)
    found = S.resolve(name)
    return None if found is None else S.DESCRIPTIONS[found].bench


#: Input layouts of ``--layouts``.
LAYOUTS = ("contiguous", "channels_last", "strided")


def _laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t``'s values in the given memory layout: contiguous, channels-last, or a strided view
    (every other element of a last dimension twice as long: not dense)."""
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    if layout == "strided":
        wide = torch.empty(t.shape[:-1] + (2 * t.shape[-1],), dtype=t.dtype)
        view = wide[..., ::2]
        view.copy_(t)
        return view
    if layout != "contiguous":
        raise ValueError(f"layouts: expected each of {', '.join(LAYOUTS)}; got {layout!r}")
    return t.contiguous()


class _PlainFReLU(nn.Module):
    """FReLU written plainly: ``relu(x) + b`` (two passes, autograd keeps a full tensor)."""

    label = "relu(x) + b"

    def __init__(self, c: int, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((c,), -1.0))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        if self.bias.numel() > 1:
            shape[self.dim] = -1
        return torch.relu(x) + self.bias.to(x.dtype).reshape(shape)


class _PlainFunnel(nn.Module):
    """The funnel's plain formula: depthwise conv + BatchNorm + ``torch.maximum``."""

    label = "conv + BN + maximum"

    def __init__(self, c: int, spatial: int, kernel_size: int = 3) -> None:
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial - 1]
        bn = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[spatial - 1]
        self.conv = conv(c, c, kernel_size, padding=kernel_size // 2, groups=c, bias=False)
        self.bn = bn(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, self.bn(self.conv(x)))


class _PlainFeatureFunnel(nn.Module):
    """The twin of the model zoo's funnel on flat features (:class:`rectifiers.zoo.FeatureFunnel`):
    the plain formula with a 1-wide depthwise conv on the view (N, F, 1)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.funnel = _PlainFunnel(features, 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.funnel(x.unsqueeze(-1)).squeeze(-1)


def twin_name(activation: str) -> str:
    """What case ``activation`` is timed against in the tables of small tensors and training steps:
    the ``torch.nn`` class, or the plain formula."""
    twin = make_module(activation, "torch", (1, 2, 1, 1), torch.float32)
    return getattr(type(twin), "label", f"nn.{type(twin).__name__}")


def make_module(activation: str, impl: str, shape: Sequence[int], dtype: torch.dtype) -> nn.Module:
    """The module of ``activation`` for implementation ``torch`` or ``eager`` (channels at dim 1);
    ``default`` is the rectifiers module with its default backend (what a user's ``R.ReLU()`` runs)."""
    import rectifiers as R

    c = shape[1] if len(shape) > 1 else 1
    backend = None if impl == "default" else "eager"
    if activation == "relu":
        m: nn.Module = nn.ReLU() if impl == "torch" else R.ReLU(backend=backend)
    elif activation == "leaky_relu":
        m = nn.LeakyReLU(0.01) if impl == "torch" else R.LeakyReLU(0.01, backend=backend)
    elif activation in ("prelu", "prelu_scalar"):
        n = c if activation == "prelu" else 1
        m = nn.PReLU(n) if impl == "torch" else R.PReLU(n, backend=backend)
        if n > 1:  # trained slopes differ per channel: do not let a constant init flatter anyone
            with torch.no_grad():
                m.weight.copy_(torch.linspace(0.05, 0.5, n))
    elif activation in ("frelu", "frelu_channel"):
        n = c if activation == "frelu_channel" else 1
        m = _PlainFReLU(n, 1) if impl == "torch" else R.FReLU(n, backend=backend)
    elif activation == "funnel":
        spatial = len(shape) - 2
        if spatial not in (1, 2, 3):
            raise ValueError(f"funnel needs a 3-D to 5-D shape, got {tuple(shape)}")
        if impl == "torch":
            m = _PlainFunnel(c, spatial)
        else:
            cls = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}[spatial]
            m = cls(c, backend=backend)
    else:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    return m.to(dtype).train()
