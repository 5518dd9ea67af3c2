"""Backends: the implementations the functionals dispatch to.

Every backend module provides the same five functions with the same signatures, taking
arguments already checked by :mod:`rectifiers.functional` (``dim`` normalised, or ``None`` when
the input has no channel dimension)::

    relu(x, inplace)
    leaky_relu(x, negative_slope, inplace)
    prelu(x, weight, dim)
    flexible_relu(x, bias, dim, inplace)
    funnel_relu(x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var,
                training, momentum, eps)

Backends:

``"torch"``
    Plain PyTorch: ``torch.nn.functional`` where torch has the activation, the reference formula
    otherwise. The baseline of the benchmarks.
``"eager"``
    rectifiers' own autograd Functions, lean in memory (see :mod:`rectifiers.ops.eager_ops`).
    Any device.
``"triton"``
    Triton kernels for CUDA tensors (optional extra ``rectifiers[triton]``). With
    ``TRITON_INTERPRET=1`` they also run on CPU tensors, which is how they are tested.
``"auto"`` (default)
    ``"triton"`` for CUDA tensors when Triton imports, ``"eager"`` otherwise.

The environment variable ``RECTIFIERS_BACKEND`` sets the default used when a call passes no
``backend`` (or ``backend="auto"`` is resolved): one of ``auto``, ``torch``, ``eager``,
``triton``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

__all__ = ["BACKENDS", "ENV_VAR", "resolve_backend", "get_backend", "triton_available"]

BACKENDS = ("auto", "torch", "eager", "triton")
ENV_VAR = "RECTIFIERS_BACKEND"

_triton_ok: bool | None = None
_triton_mod: ModuleType | None = None


@torch.compiler.assume_constant_result
def triton_available() -> bool:
    """Whether the Triton backend can be imported (cached after the first call).

    Under torch.compile it runs at trace time and its answer is a constant of the graph: the
    import inside cannot be traced, and a first call may come from inside a compiled function.
    """
    global _triton_ok, _triton_mod
    if _triton_ok is None:
        try:
            _triton_mod = importlib.import_module("rectifiers.ops.triton_ops")
            _triton_ok = True
        except ImportError:
            _triton_ok = False
    return _triton_ok


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def resolve_backend(x: torch.Tensor, backend: str | None = None) -> str:
    """Name of the backend that will run for input ``x``."""
    if backend is None:
        backend = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
        source = f"environment variable {ENV_VAR}"
    else:
        source = "backend"
    if backend not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        return "triton" if x.is_cuda and triton_available() else "eager"
    if backend == "triton":
        if not triton_available():
            raise ImportError(
                "the Triton backend needs the 'triton' package: pip install 'rectifiers[triton]'"
            )
        if not (x.is_cuda or _interpret()):
            raise ValueError(
                "the Triton backend runs on CUDA tensors (or on CPU tensors with "
                f"TRITON_INTERPRET=1); got a tensor on {x.device}"
            )
    return backend


def get_backend(x: torch.Tensor, backend: str | None = None) -> ModuleType:
    """The backend module that will run for input ``x``."""
    name = resolve_backend(x, backend)
    if name == "eager" or (name == "triton" and _eager_common.transforming()):
        # torch.func transforms: the Triton custom ops' autograd does not support them; the
        # eager backend runs the plain formulas there
        return eager_ops
    if name == "torch":
        return torch_ops
    # resolve_backend has checked triton_available(), which imported and cached the module
    # (no import here: torch.compile cannot trace one).
    assert _triton_mod is not None
    return _triton_mod


from . import _eager_common, eager_ops, torch_ops  # noqa: E402  (after the helpers they may use)
