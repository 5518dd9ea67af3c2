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
    rectifiers' own autograd Functions, lean in memory (see :mod:`rectifiers.ops.eager`), with
    fused C++ kernels on CPU (:mod:`rectifiers.ops.cpp`, built at first use). Any device.
``"triton"``
    Triton kernels for CUDA tensors (optional extra ``rectifiers[triton]``). With
    ``TRITON_INTERPRET=1`` they also run on CPU tensors, which is how they are tested.
``"auto"`` (default)
    On a CUDA tensor, when Triton imports: ``"triton"`` where the tensor is big enough for the
    fused kernels to win, ``"eager"`` below, by a fixed threshold per activation and dtype
    (:mod:`._dispatch`: no timing at run time; :func:`set_triton_threshold` and the environment
    variable ``RECTIFIERS_TRITON_MIN_NUMEL`` override it). ``"eager"`` otherwise.

The environment variable ``RECTIFIERS_BACKEND`` sets the default used when a call passes no
``backend`` (or ``backend="auto"`` is resolved): one of ``auto``, ``torch``, ``eager``,
``triton``.

Layout: one module or package per backend, :mod:`.native` (``"torch"``), :mod:`.eager`,
:mod:`.triton`; :mod:`.cpp`, the C++ host side (the eager backend's kernel provider); and
:mod:`._common`, the helpers they share. A backend imports no other backend: every re-routing
between them is decided here, in :func:`get_backend`:

* ``torch.compile`` / ``torch.export`` tracing, or a ``torch.func`` transform, with the eager
  backend: the plain formulas of ``"torch"`` (the eager Functions save from
  ``forward(ctx, ...)``, which ``torch.func`` refuses, and the compiler fuses plain formulas),
  except ReLU, LeakyReLU and FReLU on CPU with a gradient under ``torch.compile``, which trace
  :mod:`rectifiers.ops.eager.compiled`;
* an open ``torch.autograd.forward_ad`` level (dual tensors, forward-over-reverse), with the
  eager or the Triton backend: the plain formulas (their Functions have no ``jvp``; torch's
  formulas have forward derivatives);
* a ``torch.func`` transform with the Triton backend: the same (the Triton custom ops' autograd
  does not support transforms);
* a float64 funnel with the Triton backend: the eager funnel (the Triton kernels keep
  BatchNorm's statistics in fp32).

One choice cannot be made here: a backward run under autograd's own vmap
(``is_grads_batched=True``, ``jacobian(vectorize=True)``, gradcheck's batched-grad check). The
same graph may be differentiated with or without it, and this module decides at forward time, so
the eager Functions ask :func:`._common.batched_backward` in ``backward`` and then take their
differentiable branch (plain ops, which have batching rules).
"""

from __future__ import annotations

import importlib
import os
import types
from types import ModuleType
from typing import Any

import torch
import torch.autograd.forward_ad as _fwad

from .. import _spec
from .._util import env_raw, env_reader
from . import _common, _dispatch, eager, native
from ._dispatch import (  # noqa: F401  (public: the size thresholds of "auto")
    DEFAULT_TRITON_MIN_NUMEL, THRESHOLD_ENV_VAR, reset_triton_thresholds, set_triton_threshold,
    triton_threshold, triton_thresholds,
)
from .cpp import pointwise as _cpp_pointwise
from .eager import compiled as _eager_compiled  # noqa: F401  (eager.compiled, for _Traced)

__all__ = ["BACKENDS", "ENV_VAR", "resolve_backend", "get_backend", "triton_available",
           "THRESHOLD_ENV_VAR", "DEFAULT_TRITON_MIN_NUMEL", "triton_threshold", "triton_thresholds",
           "set_triton_threshold", "reset_triton_thresholds", "eager_cpu", "cpp_operators",
           "module_eager_cpu", "module_operators", "FAST_DTYPES"]

BACKENDS = ("auto", "torch", "eager", "triton")
ENV_VAR = "RECTIFIERS_BACKEND"

_triton_ok: bool | None = None
_triton_mod: ModuleType | None = None
_triton_view: type | None = None


@torch.compiler.assume_constant_result
def triton_available() -> bool:
    """Whether the Triton backend can be imported (cached after the first call).

    Under torch.compile it runs at trace time and its answer is a constant of the graph: the
    import inside cannot be traced, and a first call may come from inside a compiled function.
    """
    global _triton_ok, _triton_mod, _triton_view
    if _triton_ok is None:
        try:
            _triton_mod = importlib.import_module("rectifiers.ops.triton")
            _triton_view = _make_triton_view(_triton_mod)
            _triton_ok = True
        except ImportError:
            _triton_ok = False
    return _triton_ok


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


_EAGER_NAMES = frozenset({"", "auto", "eager"})
_is_compiling = torch.compiler.is_compiling
_transforms_active = torch._C._are_functorch_transforms_active
_backend_env = env_reader(ENV_VAR)
_backend_raw = env_raw(ENV_VAR)
_no_cpp_raw = env_raw("RECTIFIERS_NO_CPP")
_Tensor = torch.Tensor
#: The input dtypes of the fast paths (any other goes the full way, which checks it).
FAST_DTYPES = frozenset({torch.float32, torch.float64, torch.bfloat16, torch.float16})


def resolve_backend(x: torch.Tensor, backend: str | None = None, activation: str | None = None) -> str:
    """Name of the backend that will run for input ``x``: ``"torch"``, ``"eager"`` or
    ``"triton"``, never ``"auto"``.

    ``"auto"`` on a CUDA tensor (Triton installed) depends on the activation (its size
    threshold, :mod:`._dispatch`): with ``activation`` (a name of :data:`rectifiers._spec.ACTIVATIONS`)
    the answer is exact; without it, ``"triton"`` only where every activation would run Triton at
    this size and dtype, else ``"eager"``.
    """
    if backend is None:
        backend = (_backend_env() or "auto").strip().lower() or "auto"
        source = f"environment variable {ENV_VAR}"
    else:
        source = "backend"
    if backend not in BACKENDS:
        raise ValueError(f"{source} must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "auto":
        if not (x.is_cuda and triton_available()):
            return "eager"
        names = _spec.ACTIVATIONS if activation is None else (activation,)
        n = x.numel()
        return "triton" if all(_dispatch.use_triton(a, n, x.dtype, True) for a in names) else "eager"
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


def eager_cpu(x: torch.Tensor, backend: str | None) -> bool:
    """Whether this call runs the eager backend, un-rerouted, on a CPU tensor: the functionals'
    fast path, which skips :func:`get_backend`'s views (a few microseconds a call). ``False``
    whenever :func:`get_backend` might decide otherwise (another backend asked for or set in
    :data:`ENV_VAR`, a CUDA tensor, Dynamo tracing, a ``torch.func`` transform, forward-mode
    AD); the functionals then take their full path, which decides and raises as before.
    (Tensor subclasses, the fake tensors of ``torch.export``'s non-strict tracing among them,
    never reach it: the functionals' fast path takes a plain ``torch.Tensor`` only.)
    """
    if not x.is_cpu:
        return False
    if backend is None:
        env = _backend_env()
        if env is not None and env.strip().lower() not in _EAGER_NAMES:
            return False
    elif backend != "auto" and backend != "eager":
        return False
    return not (_fwad._current_level >= 0 or _is_compiling() or _transforms_active())


def module_eager_cpu(x: object) -> bool:
    """:func:`eager_cpu` for a module whose ``backend`` is ``None``, in one call, for a plain CPU
    tensor of a float dtype (anything else: ``False``, and the module calls its functional).
    See :func:`module_operators` for why the modules have their own test."""
    return (type(x) is _Tensor and x.is_cpu and x.dtype in FAST_DTYPES and not _is_compiling()  # type: ignore[attr-defined]
            and _backend_raw() is None and not (_fwad._current_level >= 0 or _transforms_active()))


def module_operators(x: object) -> Any:
    """The C++ operators for a module whose ``backend`` is ``None``, when the functional would
    hand ``x`` to them with nothing to decide: ``x`` a plain CPU tensor of a float dtype, the
    operators built and loaded, ``RECTIFIERS_BACKEND`` and ``RECTIFIERS_NO_CPP`` unset, no
    tracing, ``torch.func`` transform or forward-mode AD. Else ``None``, and the module calls its
    functional, which decides (and builds, checks, raises) as always.

    The modules' forward calls this one function and then the operator: a training step runs
    the Python of a forward cold, where each call and branch costs several times what a tight
    loop measures (the digits MLP's step with LeakyReLU: 1.04x torch.nn's through the
    functional, 1.02x this way).
    """
    ops = _cpp_pointwise._ops
    if ops is None or _no_cpp_raw() is not None or not _cpp_pointwise._state["ok"] or not module_eager_cpu(x):
        return None
    return ops


def cpp_operators(x: torch.Tensor, backend: str | None, *params: torch.Tensor) -> Any:
    """The C++ operators (:func:`rectifiers.ops.cpp.pointwise.operators`) when :func:`eager_cpu`
    holds, else ``None``. Before they are built, a call that needs a gradient (``x`` or one of
    ``params`` requires one) builds them; one that does not gets ``None`` (inference alone never
    starts the build)."""
    if not eager_cpu(x, backend):
        return None
    ops = _cpp_pointwise._ops
    if ops is not None and _no_cpp_raw() is None and _cpp_pointwise._state["ok"]:
        return ops  # loaded, and RECTIFIERS_NO_CPP unset: the common case, decided
    ops = _cpp_pointwise.loaded_operators()
    if ops is None and torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
        ops = _cpp_pointwise.operators()
    return ops


def get_backend(x: torch.Tensor, backend: str | None = None) -> Any:
    """The backend that will run for input ``x``: an object with the five functions of every
    backend (a backend module, or one of the re-routed views below)."""
    if backend is None:
        backend = (_backend_env() or "auto").strip().lower() or "auto"
        if backend not in BACKENDS:
            resolve_backend(x)  # its error, naming the environment variable
    if backend == "auto" and x.is_cuda and triton_available():
        # the choice depends on the activation and the size: a view that picks per call
        eager_side = _eager_choice()
        triton_side = _triton_choice()
        if eager_side is triton_side:
            return eager_side
        return _sized_view(eager_side, triton_side)
    name = resolve_backend(x, backend)
    if name == "torch":
        return native
    if name == "eager":
        return _eager_choice()
    return _triton_choice()


def _eager_choice() -> Any:
    return _Traced if (_common.compiling() or _common.forward_ad()) else _Eager


def _triton_choice() -> Any:
    if _common.transforming() or _common.forward_ad():
        return _Traced
    # triton_available() has been checked, which imported the module and made the view (no
    # import here: torch.compile cannot trace one).
    assert _triton_view is not None
    return _triton_view


_sized_views: dict[tuple[type, type], type] = {}


def _sized_view(eager_side: type, triton_side: type) -> type:
    """``"auto"`` on a CUDA tensor: every activation's function picks ``triton_side`` when the
    input reaches its size threshold for its dtype (:func:`._dispatch.use_triton`), else
    ``eager_side``. Made once per pair and kept."""
    view = _sized_views.get((eager_side, triton_side))
    if view is None:
        def pick(act: str) -> Any:
            small, big = getattr(eager_side, act), getattr(triton_side, act)

            def run(x: torch.Tensor, *args: Any) -> Any:
                fn = big if _dispatch.use_triton(act, x.numel(), x.dtype, True) else small
                return fn(x, *args)

            run.__name__ = run.__qualname__ = act
            return run

        view = _view("_SizedView", types.SimpleNamespace(**{a: pick(a) for a in _spec.ACTIVATIONS}),
                     "'auto' on a CUDA tensor: Triton from a size threshold on, eager below.")
        _sized_views[(eager_side, triton_side)] = view
    return view


class _TracedImpl:
    """The eager backend under tracing (torch.compile, torch.export), a torch.func transform or
    forward-mode AD: the plain formulas, except what :mod:`.eager.compiled` gives
    ``torch.compile`` on CPU."""

    @staticmethod
    def relu(x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if not inplace and _common.needs_grad(x) and eager.compiled.wanted(x):
            return eager.compiled.relu(x)
        return native.relu(x, inplace)

    @staticmethod
    def leaky_relu(x: torch.Tensor, negative_slope: float, inplace: bool) -> torch.Tensor:
        if not inplace and _common.needs_grad(x) and eager.compiled.wanted(x):
            return eager.compiled.leaky_relu(x, negative_slope)
        return native.leaky_relu(x, negative_slope, inplace)

    prelu = staticmethod(native.prelu)

    @staticmethod
    def flexible_relu(x: torch.Tensor, bias: torch.Tensor, dim: int | None, inplace: bool) -> torch.Tensor:
        if not inplace and _common.needs_grad(x, bias) and eager.compiled.wanted(x):
            return eager.compiled.flexible_relu(x, bias, dim)
        return native.flexible_relu(x, bias, dim, inplace)

    funnel_relu = staticmethod(native.funnel_relu)


def _triton_funnel_relu(
    x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps
):
    """The Triton funnel, or for a float64 input (gradient checks, not speed) the eager one,
    which keeps float64 throughout (the Triton kernels keep BatchNorm's statistics in fp32)."""
    assert _triton_mod is not None
    args = (x, conv_weight, conv_bias, bn_weight, bn_bias, running_mean, running_var, training, momentum, eps)
    if x.dtype == torch.float64:
        _triton_mod.check_funnel_input(x, training, running_mean)  # the Triton backend's own error
        return eager.funnel_relu(*args)
    return _triton_mod.funnel_relu(*args)


def _view(name: str, impl: Any, doc: str, **overrides: Any) -> type:
    """A backend as :func:`get_backend` gives it: every described activation's function from
    ``impl``, or, where ``impl`` has no fast path for one (a newly added activation), the plain
    one of :mod:`.native`; ``overrides`` re-route single functions."""
    ops = {a: staticmethod(overrides.get(a) or getattr(impl, a, None) or getattr(native, a))
           for a in _spec.ACTIVATIONS}
    return type(name, (), {"__doc__": doc, **ops})


def _make_triton_view(mod: ModuleType) -> type:
    """The Triton backend as :func:`get_backend` gives it: its functions, the funnel re-routed."""
    return _view("_TritonView", mod, "The Triton backend, a float64 funnel sent to the eager backend.",
                 funnel_relu=_triton_funnel_relu)


_Eager = _view("_Eager", eager, "The eager backend.")
_Traced = _view("_Traced", _TracedImpl, _TracedImpl.__doc__ or "")

