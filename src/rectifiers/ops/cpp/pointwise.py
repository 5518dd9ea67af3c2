"""Fused CPU kernels for FReLU's and PReLU's training steps, built at first use (C++, ``rectifiers/csrc``).

PyTorch has no kernel that writes ``max(0, x) + b`` and a mask of ``x > 0`` in one pass, or
``dx = mask ? g : 0`` and the per-channel sum of ``g`` in one pass, so the eager FReLU
otherwise makes three passes forward and two backward. The C++ of both fused passes is in
``rectifiers/csrc`` (``pointwise.cpp``, with ``frelu.h`` and ``prelu.h``); this module builds it
lazily and wraps it:

* the first FReLU or PReLU call on CPU that needs a gradient (eager, or a compiled FReLU
  training step being traced) compiles it with
  :func:`torch.utils.cpp_extension.load` (gcc and ninja; about half a minute on two cores;
  the build is cached in torch's extension directory, ``TORCH_EXTENSIONS_DIR``, and reused);
  :func:`loaded` tells whether that happened (the eager FReLU under ``torch.no_grad()`` uses the
  kernel only then: inference alone never starts a build);
* on any failure (no compiler, no ninja, a load error), or with the environment variable
  ``RECTIFIERS_NO_CPP=1``, :func:`load` returns ``False`` after one warning (none for the
  variable), and the eager backend keeps its plain-torch implementation, which gives the same
  results.

The C++ preamble (``csrc/common.h``: bfloat16 loads and stores by the bits, the AVX2 / AVX-512
run-time choice and its cap, :func:`set_isa`) and the build and load helpers are shared with the
funnel kernel; the Python helpers are in :mod:`rectifiers.ops.cpp.build`.

FReLU semantics are exactly the plain path's: ``y = relu(x) + b`` (``relu(-0.0) = -0.0``, NaN
stays NaN, the add rounded once in x's dtype), mask ``relu(x) != 0`` (true for ``x > 0`` and
NaN), ``dx = g if mask else 0``, ``db[c] = sum of g over channel c``: short runs (16 terms a vector lane) summed in the
op-math type (float for float32 / bfloat16 / float16), each run's sum then added in float64, in a
fixed order (fixed-size blocks, partial sums added in block order: deterministic whatever the
thread count). That is close to a float64 sum (a relative difference of about 1e-7 from
``g.double().sum()`` was seen), not equal to it. The mask is bit-packed (``new_mask`` and ``unpack_mask`` of
:mod:`rectifiers.ops._common`): a flat uint8 tensor of ``ceil(n / 8)`` bytes, bit ``i % 8`` of byte ``i // 8`` for the element at memory
offset ``i``, so 1/8 byte per element is kept for backward. Forward is one loop that reads x
once and writes y and the mask bytes; backward one loop that reads g and the mask once and
writes dx while summing g. On x86 CPUs with AVX-512 (F, BW, VL) or AVX2, float32 and bfloat16
run hand-vectorised loops (16 or 8 elements per step), the widest the CPU has picked at run time
(:func:`set_isa` caps it); other dtypes and CPUs run portable ones.

PReLU (:func:`prelu_forward`, :func:`prelu_backward`, the same build): ``y = x if x > 0 else
a[c]*x`` in one pass (bitwise ``torch.prelu``: the same single multiply); backward one pass over
``(g, s)``, ``s`` the kept input or output (same sign as x), writing ``dx = g if s > 0 else a[c]*g``
and the sums ``sum over s <= 0 of g*s`` (short runs in the op-math type, then float64) (the eager backend divides by ``a`` when ``s`` is
the output), in the same fixed order as FReLU's bias gradient. PyTorch's own PReLU backward makes
several passes and is many times slower than an element-wise pass.

Layouts (both activations): any dense tensor (no gaps, no overlap: contiguous, channels_last,
any permutation), whose memory is then ``(outer, C, inner)`` in order, the channel at any dim
(:func:`plan`). A view with gaps returns ``None`` from :func:`plan` (the eager FReLU copies it
to contiguous first; PReLU takes its plain path), as does the double backward.

The same build holds the C++ operators of ``csrc/operators.cpp`` (``torch.ops.rectifiers.leaky_relu``,
``prelu``, ``flexible_relu``, with their autograd nodes in C++, calling these kernels directly):
:func:`operators` binds their handles, which the functionals' fast path and the eager backend
call. :data:`CALLS` counts the kernels' calls in C++, whoever makes them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from types import SimpleNamespace

import torch

from .._common import FLOAT_DTYPES, channel_runs, opmath
from . import build as _build_mod

__all__ = ["load", "plan", "forward", "backward", "loaded", "set_isa", "prelu_forward", "prelu_backward", "build_seconds", "CALLS"]

class _Calls(Mapping):
    """Calls of the fused kernels in this process, by kernel (the tests check that the C++ path
    really ran). Counted in C++, whoever calls the kernels: the operators of ``operators.cpp``
    or the Python wrappers below. All zero while the extension is not loaded."""

    _KEYS = ("forward", "backward", "prelu_forward", "prelu_backward")

    def __getitem__(self, key: str) -> int:
        i = self._KEYS.index(key) if key in self._KEYS else None
        if i is None:
            raise KeyError(key)
        return int(torch.ops.rectifiers_cpp.calls()[i]) if _state["ok"] else 0

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)

    def __repr__(self) -> str:
        return repr(dict(self))


CALLS: Mapping[str, int] = _Calls()

#: Elements per work block (fixed: the bias-gradient summation order does not depend on threads).
_BLOCK = 1 << 15
#: A channel run at least this long is one vector loop with a constant bias ("segment" mode);
#: shorter runs go row by row with an expanded bias row ("row" mode).
_SEGMENT_MIN = 256
#: Longest row (C * inner) the row mode expands.
_ROW_MAX = 1 << 16

#: The C++ source (with the headers it includes, beside it in ``rectifiers/csrc``).
_SOURCES = [_build_mod.source_path("pointwise.cpp"), _build_mod.source_path("operators.cpp")]

#: The stem of the extension's name (:func:`rectifiers.ops.cpp.build.build_name` adds the hash
#: of its sources, flags and environment).
_NAME = "rectifiers_frelu_cpu"

_lock = threading.Lock()
_state: dict[str, object] = {"tried": False, "ok": False, "seconds": None, "module": None}


def build_seconds() -> float | None:
    """Seconds the last :func:`load` took to build or load the extension (``None`` before)."""
    s = _state["seconds"]
    return float(s) if s is not None else None  # type: ignore[arg-type]




def _build() -> None:
    _state["module"] = _build_mod.build(_NAME, _SOURCES, ["-O3"], python_module=True)


def load() -> bool:
    """Build (first time) and load the fused kernels; ``False`` if they are unavailable.

    Never raises: a failure is reported once with :func:`warnings.warn` and remembered, so later
    calls return ``False`` at once. ``RECTIFIERS_NO_CPP=1`` disables the kernels silently.
    """
    ok = _build_mod.load_once(
        _state, _lock, _build, "rectifiers_cpp", ("frelu_fwd", "prelu_fwd", "calls"), "FReLU kernel"
    )
    if ok and _ops is None:
        _bind()
    return ok


def set_isa(level: int) -> int:
    """Cap the C++ kernels' instruction set: 2 AVX-512, 1 AVX2, 0 portable loops only (for tests).

    Returns the cap before. One cap for every C++ extension of the package (these kernels and
    :mod:`rectifiers.ops.cpp.funnel`'s), loaded or not yet. The CPU's own support still
    applies (a cap of 2 on a CPU without AVX-512 runs AVX2). Results are bitwise the same at
    every level except the float64 sums of the bias and slope gradients, whose order of
    additions depends on the vector width.
    """
    return _build_mod.set_isa(level)


#: The C++ operators' call handles once the extension is loaded (see :func:`operators`).
_ops: SimpleNamespace | None = None


def operators() -> SimpleNamespace | None:
    """The C++ operators of ``csrc/operators.cpp`` (``torch.ops.rectifiers.leaky_relu``,
    ``prelu``, ``flexible_relu``; their autograd in C++), building the extension at the first
    call; ``None`` where it cannot be built (after one warning) or ``RECTIFIERS_NO_CPP`` is set.

    The handles are the extension's Python functions (``PYBIND11_MODULE`` in ``operators.cpp``):
    the same C++ as the registered operators, entered without the dispatcher's boxed call from
    Python (about 2 us a call less than ``torch.ops.rectifiers.*``); the functionals' fast path
    calls them only on plain tensors outside tracing, where the two are the same.
    """
    if _ops is not None and _state["ok"] and not _build_mod.disabled():
        return _ops
    return _ops if load() else None


def loaded_operators() -> SimpleNamespace | None:
    """:func:`operators` when the extension is loaded already, else ``None`` (never builds)."""
    return _ops if (_ops is not None and _state["ok"] and not _build_mod.disabled()) else None


def _bind() -> None:
    """Bind the operators' handles (after a successful load)."""
    global _ops
    mod = _state.get("module")
    try:
        for name in _OPERATORS:
            getattr(torch.ops.rectifiers, name)  # registered, for torch.compile and torch.export
        _ops = SimpleNamespace(**{name: getattr(mod, name) for name in _OPERATORS})
    except (AttributeError, RuntimeError):  # a build without them: the kernels alone
        _ops = None


#: The operators of ``operators.cpp``.
_OPERATORS = ("leaky_relu", "prelu", "flexible_relu")


def loaded() -> bool:
    """Whether the kernels are built and loaded already (never starts a build)."""
    return bool(_state["ok"]) and not _build_mod.disabled()


def plan(x: torch.Tensor, cdim: int | None) -> tuple[int, int, int, int] | None:
    """``(outer, C, inner, mode)`` if the fused kernels handle x (and they load), else ``None``."""
    if x.device.type != "cpu" or x.dtype not in FLOAT_DTYPES or x.numel() == 0:
        return None
    v = channel_runs(x, cdim)
    if v is None:
        return None
    outer, c, inner = v
    if c == 1 or inner >= _SEGMENT_MIN:
        mode = 0
    elif c * inner <= _ROW_MAX:
        mode = 1
    elif inner >= 16:
        mode = 0
    else:
        return None
    if not load():
        return None
    return outer, c, inner, mode


def forward(
    x: torch.Tensor, b: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
    p: tuple[int, int, int, int],
) -> None:
    """``y = relu(x) + b[c]`` and the bit-packed mask of ``relu(x) != 0`` in one pass (``y`` may be ``x``).

    ``b`` is the bias already rounded to x's dtype; ``y`` has x's strides; ``mask`` is
    :func:`new_mask`'s flat uint8 tensor (bit ``i % 8`` of byte ``i // 8`` for the element at
    memory offset ``i``; the bits past the last element are 0) or ``None``.
    """
    outer, c, inner, mode = p
    bo = b.detach().reshape(-1).to(opmath(x.dtype)).contiguous()
    torch.ops.rectifiers_cpp.frelu_fwd(x, bo, y, mask, outer, c, inner, _BLOCK, mode)


def backward(
    g: torch.Tensor, mask: torch.Tensor, need_x: bool, need_b: bool, p: tuple[int, int, int, int],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``dx = g if bit else 0`` and ``db[c] = sum of g over channel c`` (float64) in one pass.

    ``mask`` is the forward's bit-packed mask; ``g`` must lie in memory as the forward's x did
    (the caller checks); ``dx`` gets g's strides. Returns ``(dx, db)``.
    """
    outer, c, inner, mode = p
    dx = torch.empty_like(g) if need_x else None
    db = torch.empty(c, dtype=torch.float64, device=g.device) if need_b else None
    torch.ops.rectifiers_cpp.frelu_bwd(g, mask, dx, db, outer, c, inner, _BLOCK, mode)
    return dx, db


def prelu_forward(
    x: torch.Tensor, a: torch.Tensor, y: torch.Tensor, p: tuple[int, int, int, int], detect: bool = False,
) -> bool:
    """``y = x if x > 0 else a[c]*x`` in one pass, bitwise ``torch.prelu``.

    ``a`` is the slope already rounded to x's dtype (one element, or one per channel); ``y`` has
    x's strides. With ``detect``, returns whether some ``x < 0`` gave ``|a*x|`` below the
    dtype's smallest normal number (then ``y / a`` does not recover x to the dtype's precision);
    ``False`` otherwise.
    """
    outer, c, inner, mode = p
    ao = a.detach().reshape(-1).to(opmath(x.dtype)).contiguous()
    lost = torch.ops.rectifiers_cpp.prelu_fwd(x, ao, y, outer, c, inner, _BLOCK, mode, bool(detect))
    return bool(lost)


def prelu_backward(
    g: torch.Tensor, s: torch.Tensor, a: torch.Tensor, need_x: bool, need_a: bool,
    p: tuple[int, int, int, int],
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """PReLU's backward in one pass over ``(g, s)``, with ``s`` the kept input or output.

    ``dx = g if s > 0 else a[c]*g``; ``da[c] = sum over s <= 0 (NaN included) of g*s`` in
    float64 (per-thread partials in the op-math type over 256-element chunks, then float64,
    added in a fixed order). With the output kept the caller divides ``da`` by the slope.
    ``g`` must have s's dtype and strides (the caller checks); returns ``(dx, da)``.
    """
    outer, c, inner, mode = p
    ao = a.detach().reshape(-1).to(opmath(s.dtype)).contiguous()
    dx = torch.empty_like(s) if need_x else None
    da = torch.empty(c, dtype=torch.float64, device=s.device) if need_a else None
    torch.ops.rectifiers_cpp.prelu_bwd(g, s, ao, dx, da, outer, c, inner, _BLOCK, mode)
    return dx, da
