"""A stand-in for torchvision's compiled-op registrations, so that the REAL torchvision (and so
timm) imports beside the CPU torch the tests run on.

Why: torchvision 0.28.0 installs beside torch 2.13.0 (``pip install --no-deps``), but the only
wheel on the registry is a CUDA build. Its compiled library (``torchvision/_C.so``) cannot load
on the CPU torch, so the operators it would register (``torchvision::nms``, ``roi_align``, ...)
do not exist, and ``import torchvision`` then fails in ``torchvision/_meta_registrations.py``,
which registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` whether the
library loaded or not.

What: :func:`install` defines the schemas of exactly the operators that import needs (``nms``
and ``qnms``; the others are only touched when the library loaded) with ``torch.library``, each
with a kernel that raises ``NotImplementedError`` if it is ever called. Nothing else is replaced:
models, layers and weights-free constructors are torchvision's own Python code. Detection ops
(NMS, RoIAlign) are not available; the classification models the tests use never call them.

Use it in-process (``install()`` before the first ``import torchvision`` or ``import timm``),
or in a subprocess through :data:`PRELUDE`.
"""

from __future__ import annotations

import os
import sys

import torch

#: Where ``make install`` puts torchvision (``pip install --target``), out of the environment's own
#: path: on the CPU torch its import fails, and it would break whatever imports it when found
#: (Lightning's torchmetrics does). Importing this module puts the folder on the path.
TARGET = os.path.join(sys.prefix, "torchvision-tests")
if os.path.isdir(TARGET) and TARGET not in sys.path:
    sys.path.append(TARGET)

#: The schemas torchvision's import needs, as its C++ library declares them.
SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_LIB: torch.library.Library | None = None
_RESULT: list[str | None] = []

#: Python source that installs the stand-in in a fresh interpreter (for subprocess tests).
PRELUDE = (
    f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
    "import _torchvision_stub; _err = _torchvision_stub.install(); "
    "assert _err is None, _err\n"
)


def _missing() -> list[str]:
    out = []
    for name in SCHEMAS:
        try:
            torch._C._get_schema(f"torchvision::{name}", "")
        except RuntimeError:
            out.append(name)
    return out


def _unavailable(name: str):  # noqa: ANN202
    def kernel(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise NotImplementedError(
            f"torchvision::{name} is a test stand-in: torchvision's compiled ops are not "
            "available on this CPU torch (tests/_torchvision_stub.py)"
        )

    return kernel


def install() -> str | None:
    """Make ``import torchvision`` work; returns None when it does, else the reason it cannot
    (torchvision not installed, or failing for another reason). Idempotent."""
    global _LIB
    if _RESULT:
        return _RESULT[0]
    try:
        import torchvision  # noqa: F401  (a working build needs no stand-in)

        _RESULT.append(None)
        return None
    except ModuleNotFoundError as e:
        if e.name == "torchvision":
            _RESULT.append("torchvision is not installed (make install puts it in .venv/torchvision-tests)")
            return _RESULT[0]
        raise
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
    # The failed import left half-initialised torchvision modules behind: drop them, define the
    # missing schemas, and import again from scratch.
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    missing = _missing()
    if missing:
        _LIB = torch.library.Library("torchvision", "FRAGMENT")
        for name in missing:
            _LIB.define(SCHEMAS[name])
            _LIB.impl(name, _unavailable(name), "CompositeExplicitAutograd")
    try:
        import torchvision  # noqa: F401,F811
    except Exception as e:  # noqa: BLE001 - reported as the reason the tests skip
        _RESULT.append(f"torchvision does not import even with the stand-in: {type(e).__name__}: {e}")
        return _RESULT[0]
    _RESULT.append(None)
    return None
