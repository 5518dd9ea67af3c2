"""Where ``backend="auto"`` runs the Triton kernels on a CUDA tensor: one size threshold per
activation and dtype.

On a GPU a fused Triton kernel wins only once the tensor is big enough for its memory traffic to
outweigh the host's cost per call (a Python launch and a Python autograd Function, tens of
microseconds); below that the ``"eager"`` backend (ATen's kernels, launched from C++) is faster.
So ``"auto"`` on a CUDA tensor, with Triton installed, runs

    Triton   when  x.numel() >= threshold[activation][dtype]
    eager    otherwise (and always where the threshold is ``None``: "never")

The choice depends on the input's size and dtype only: no timing at run time, so the same call
always takes the same path (a requirement for reproducible runs and for CUDA graphs).
``backend="triton"`` still forces Triton at every size.

The defaults (:data:`DEFAULTS`, as a table :data:`DEFAULT_TRITON_MIN_NUMEL`) are conservative: Triton only where the recorded
H200 runs (``benchmarks/results/gpu-nvidia-h200*-time.csv``, forward + backward against
torch.nn, two runs) show it faster in *both* runs at the measured size and at every larger
measured size; the threshold is the smallest such size. Where no measured size qualifies, or no
dtype was measured (float16, float64), the threshold is ``None``. ``benchmarks/gpu_bench.py``
re-derives the table on a lent GPU and prints it in the form below.

Overrides, strongest first:

* :func:`set_triton_threshold` (``None`` for never, ``0`` for always); :func:`reset_triton_thresholds`
  undoes every such call;
* the environment variable ``RECTIFIERS_TRITON_MIN_NUMEL``: comma-separated
  ``activation[:dtype]=value`` items, ``*`` for every activation, value an integer (``1e8`` and
  ``134_217_728`` are accepted) or ``never``; for example
  ``RECTIFIERS_TRITON_MIN_NUMEL="*=0"`` (Triton at every size), or
  ``"prelu:bfloat16=5e7,leaky_relu=never"``.

This module imports nothing of the package but :mod:`rectifiers._spec` (for the names).
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Mapping, Optional

import torch

from .. import _spec

__all__ = ["DEFAULTS", "DEFAULT_TRITON_MIN_NUMEL", "THRESHOLD_ENV_VAR", "DTYPES", "triton_threshold",
           "triton_thresholds", "set_triton_threshold", "reset_triton_thresholds", "use_triton",
           "parse_thresholds"]

THRESHOLD_ENV_VAR = "RECTIFIERS_TRITON_MIN_NUMEL"

#: The dtypes a threshold is kept for, by the names the environment variable takes.
DTYPES: Mapping[str, torch.dtype] = MappingProxyType({
    "float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
    "float64": torch.float64,
})
_DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32",
                  "float": "float32", "fp64": "float64", "double": "float64"}

_NEVER_NUMEL = 1 << 62  # what "never" compares as

#: The shipped thresholds, in the environment variable's form; every (activation, dtype) not
#: named here is "never". Derived by ``benchmarks/gpu_thresholds.py`` from
#: gpu-nvidia-h200-time.csv and gpu-nvidia-h200-f8cf184-time.csv (speedup_fwdbwd of the Triton
#: rows; sizes measured: 6.3M, 6.4M, 51.4M, 134.2M elements):
#:
#: * relu: the Triton backend's relu is torch.relu itself, nothing to gain: never
#: * leaky_relu: 0.24-0.91 everywhere: never
#: * prelu: bf16 1.37 / 1.17 at 134M, below 1 at 51M; fp32 1.22 / 0.87 at 134M: never
#: * flexible_relu: bf16 1.18 / 1.12, fp32 1.73 / 1.25 at 134M; below 1 at 51M
#: * funnel_relu: fp32 1.09 / 1.09 at 51M and 1.15 / 1.16 at 134M, below 1 at 6.4M;
#:   bf16 0.91-0.98 everywhere: never
#: * float16 and float64 were not measured: never
DEFAULTS = ("flexible_relu:bfloat16=134217728,flexible_relu:float32=134217728,"
            "funnel_relu:float32=51380224,prelu:bfloat16=134217728")


def _default_table() -> Mapping[str, Mapping[torch.dtype, Optional[int]]]:
    given = parse_thresholds(DEFAULTS)
    return MappingProxyType({a: MappingProxyType({d: given.get((a, d)) for d in DTYPES.values()})
                             for a in _spec.ACTIVATIONS})


# set_triton_threshold's overrides: (activation, dtype) -> threshold
_overrides: dict[tuple[str, torch.dtype], Optional[int]] = {}
# the table in force, as comparable ints, for the environment variable's value it was built from
_active: dict[tuple[str, torch.dtype], int] = {}
_active_for: Optional[str] = None
_active_valid = False


def _check_activation(activation: str) -> str:
    if activation not in _spec.ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_spec.ACTIVATIONS)}; got {activation!r}")
    return activation


def _check_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        name = _DTYPE_ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
        if name in DTYPES:
            return DTYPES[name]
    elif dtype in DTYPES.values():
        return dtype
    raise ValueError(f"dtype must be one of {', '.join(DTYPES)} (or a torch dtype of them); got {dtype!r}")


def _check_numel(numel, what: str = "numel") -> Optional[int]:
    if numel is None:
        return None
    if isinstance(numel, bool) or not isinstance(numel, int):
        raise TypeError(f"{what} must be a non-negative int or None (never); got {numel!r}")
    if numel < 0:
        raise ValueError(f"{what} must be a non-negative int or None (never); got {numel}")
    return numel


def _parse_value(text: str, item: str) -> Optional[int]:
    t = text.strip().lower().replace("_", "")
    if t == "never":
        return None
    try:
        v = int(t)
    except ValueError:
        try:
            f = float(t)
        except ValueError:
            f = float("nan")
        if not (f == f and f >= 0 and f != float("inf") and f == int(f)):
            raise ValueError(f"{THRESHOLD_ENV_VAR}: {item!r}: the value must be a non-negative "
                             f"integer or 'never'; got {text.strip()!r}") from None
        v = int(f)
    if v < 0:
        raise ValueError(f"{THRESHOLD_ENV_VAR}: {item!r}: the value must be a non-negative "
                         f"integer or 'never'; got {text.strip()!r}")
    return v


def parse_thresholds(text: str) -> dict[tuple[str, torch.dtype], Optional[int]]:
    """The overrides an environment-variable value gives: ``activation[:dtype]=value`` items,
    comma-separated (``*`` for every activation; value an integer or ``never``); later items
    win. Raises ``ValueError`` naming the bad item."""
    out: dict[tuple[str, torch.dtype], Optional[int]] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"{THRESHOLD_ENV_VAR}: {item.strip()!r}: expected activation[:dtype]=value, "
                             "e.g. 'prelu:bfloat16=1e8' or '*=never'")
        key, value = item.split("=", 1)
        name, _, dname = key.strip().partition(":")
        name = name.strip()
        if name == "*":
            names = list(_spec.ACTIVATIONS)
        else:
            try:
                names = [_check_activation(name)]
            except ValueError as e:
                raise ValueError(f"{THRESHOLD_ENV_VAR}: {item.strip()!r}: {e}") from None
        if dname.strip():
            try:
                dtypes = [_check_dtype(dname)]
            except ValueError as e:
                raise ValueError(f"{THRESHOLD_ENV_VAR}: {item.strip()!r}: {e}") from None
        else:
            dtypes = list(DTYPES.values())
        v = _parse_value(value, item.strip())
        for a in names:
            for d in dtypes:
                out[(a, d)] = v
    return out


#: activation -> dtype -> threshold (``None``: never), as shipped (:data:`DEFAULTS`)
DEFAULT_TRITON_MIN_NUMEL = _default_table()


def _table() -> dict[tuple[str, torch.dtype], int]:
    """The thresholds in force, rebuilt when the environment variable or an override changes."""
    global _active, _active_for, _active_valid
    raw = os.environ.get(THRESHOLD_ENV_VAR)
    if _active_valid and raw == _active_for:
        return _active
    table = {(a, d): v for a, per in DEFAULT_TRITON_MIN_NUMEL.items() for d, v in per.items()}
    if raw:
        table.update(parse_thresholds(raw))
    table.update(_overrides)
    _active = {k: (_NEVER_NUMEL if v is None else v) for k, v in table.items()}
    _active_for, _active_valid = raw, True
    return _active


def triton_threshold(activation: str, dtype) -> Optional[int]:
    """The smallest ``numel`` at which ``"auto"`` runs ``activation`` with Triton on a CUDA
    tensor of ``dtype`` (``None``: never), after every override."""
    v = _table()[(_check_activation(activation), _check_dtype(dtype))]
    return None if v >= _NEVER_NUMEL else v


def triton_thresholds() -> dict[str, dict[str, Optional[int]]]:
    """The whole table in force: activation -> dtype name -> threshold (``None``: never)."""
    return {a: {dn: triton_threshold(a, d) for dn, d in DTYPES.items()} for a in _spec.ACTIVATIONS}


def set_triton_threshold(activation: str, numel: Optional[int], dtype=None) -> None:
    """From now on, ``"auto"`` runs ``activation`` with Triton on CUDA tensors of at least
    ``numel`` elements (``None``: never; ``0``: always), for ``dtype`` or, without it, every
    dtype. Overrides the defaults and ``RECTIFIERS_TRITON_MIN_NUMEL``; undone by
    :func:`reset_triton_thresholds`. ``activation`` may be ``"*"`` for all of them."""
    global _active_valid
    names = list(_spec.ACTIVATIONS) if activation == "*" else [_check_activation(activation)]
    dtypes = list(DTYPES.values()) if dtype is None else [_check_dtype(dtype)]
    v = _check_numel(numel)
    for a in names:
        for d in dtypes:
            _overrides[(a, d)] = v
    _active_valid = False


def reset_triton_thresholds() -> None:
    """Undo every :func:`set_triton_threshold` (the environment variable still applies)."""
    global _active_valid
    _overrides.clear()
    _active_valid = False


def use_triton(activation: str, numel: int, dtype: torch.dtype, is_cuda: bool) -> bool:
    """The choice ``"auto"`` makes once Triton is known to import: Triton for a CUDA tensor of
    at least the threshold's elements, else eager. A dtype without a threshold (an integer
    tensor, which the functionals refuse earlier) never runs Triton."""
    if not is_cuda:
        return False
    return numel >= _table().get((activation, dtype), _NEVER_NUMEL)
