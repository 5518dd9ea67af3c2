"""What the C++ CPU kernels share: the sources' place, the build, the lazy load, the instruction-set cap.

:mod:`rectifiers.ops.cpp.pointwise` (FReLU, PReLU) and :mod:`rectifiers.ops.cpp.funnel` (the
funnel activation) are two extensions built from the C++ files of ``rectifiers/csrc`` (:data:`CSRC`)
with :func:`torch.utils.cpp_extension.load`, each under its own name and op namespace, so both
load in one process. Each source includes ``csrc/common.h``, which holds, inside an anonymous
namespace:

* ``IO<scalar_t>``: loads into and stores from the op-math type (``opmath_t``: float for float,
  bfloat16 and half, double for double) from the raw storage type (``raw_t``; ``uint16_t`` for
  bfloat16, converted by its bits exactly as ``c10::BFloat16`` does: round to nearest even, NaN
  to the quiet NaN ``0x7FC0``, in a branch-free form the compiler vectorises);
* the run-time instruction-set choice: ``RECT_ISA_DISPATCH(f)`` defines ``f_any<scalar_t>(...)``,
  which runs ``f`` compiled for AVX2 where the CPU has it (and the cap allows), the portable
  build of ``f`` otherwise; ``cpu_has_avx2()`` / ``cpu_has_avx512()`` for hand-written loops;
  ``RECT_X86``; ``set_isa(level)``, which each extension registers as its ``set_isa`` op;
* ``RECT_INLINE`` (always inline) and the common headers.

On the Python side: :func:`disabled` (``RECTIFIERS_NO_CPP``), :func:`build` (``cpp_extension.load``
with ninja found beside the interpreter when it is not on PATH), :func:`load_once` (build once,
warn once, remember the outcome) and :func:`set_isa`, one cap for every loaded extension.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence

import torch

#: The C++ sources, shipped with the package (``src/rectifiers/csrc``).
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "csrc")


def source_path(name: str) -> str:
    """The path of the C++ source file ``name`` under :data:`CSRC`."""
    return os.path.join(CSRC, name)


def disabled() -> bool:
    """Whether ``RECTIFIERS_NO_CPP`` (any value but empty or ``0``) turns the C++ kernels off."""
    return os.environ.get("RECTIFIERS_NO_CPP", "").strip() not in ("", "0")


def ninja_dir() -> str | None:
    """A folder holding ``ninja`` when it is not on PATH: pip's ``ninja`` package puts it beside
    the interpreter of a virtual environment that was not activated."""
    dirs = [os.path.dirname(sys.executable)]
    try:
        import ninja  # type: ignore[import-not-found]

        dirs.insert(0, ninja.BIN_DIR)
    except Exception:
        pass
    return next((d for d in dirs if shutil.which("ninja", path=d)), None)


#: One build at a time in this process: a build may put ninja's folder on PATH for its duration,
#: and two builds in two threads would restore PATH under each other.
_build_lock = threading.Lock()


def build(name: str, sources: Sequence[str], flags: Sequence[str]) -> None:
    """Compile (or find in torch's extension cache) and load the extension ``name`` from the
    C++ files ``sources`` (paths; a compiler error names them)."""
    with _build_lock:
        _build_locked(name, sources, flags)


def _build_locked(name: str, sources: Sequence[str], flags: Sequence[str]) -> None:
    from torch.utils import cpp_extension  # lazy: imports setuptools machinery

    old_path = os.environ.get("PATH", "")
    extra = None if shutil.which("ninja") else ninja_dir()
    if extra:  # for the build only; the user's PATH is restored afterwards
        os.environ["PATH"] = extra + os.pathsep + old_path
    try:
        cpp_extension.load(
            name=name, sources=list(sources), extra_cflags=list(flags), is_python_module=False,
            verbose=False,
        )
    finally:
        if extra:
            os.environ["PATH"] = old_path


#: The instruction-set cap of every extension (see :func:`set_isa`), and the op namespaces
#: of the extensions loaded so far, which get it.
_isa: dict[str, object] = {"cap": 2, "namespaces": []}


def load_once(
    state: dict[str, object], lock: threading.Lock, build_fn: Callable[[], None], namespace: str,
    ops: Sequence[str], what: str,
) -> bool:
    """Run ``build_fn`` once, check that ``torch.ops.<namespace>.<op>`` resolves for each op,
    and remember the outcome in ``state`` (keys ``tried``, ``ok``, ``seconds``).

    Never raises: a failure is reported once with a :class:`RuntimeWarning` naming ``what`` and
    the cause (its location is the rectifiers line that first needed the kernel, not the user's)
    and later calls return ``False`` at once; ``RECTIFIERS_NO_CPP``
    returns ``False`` silently. A loaded extension gets the current :func:`set_isa` cap.
    """
    if disabled():
        return False
    if state["tried"]:
        return bool(state["ok"])
    with lock:
        if not state["tried"]:
            t0 = time.perf_counter()
            try:
                build_fn()
                lib = getattr(torch.ops, namespace)
                for op in ops:
                    getattr(lib, op)  # resolves the op or raises
                lib.set_isa(int(_isa["cap"]))  # type: ignore[call-overload]
                names: list[str] = _isa["namespaces"]  # type: ignore[assignment]
                if namespace not in names:
                    names.append(namespace)
                state["ok"] = True
            except Exception as e:  # any build or load failure: fall back to plain torch
                last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
                warnings.warn(
                    f"rectifiers: the fused C++ {what} could not be built or loaded "
                    f"({type(e).__name__}: {last}); using the plain-torch path (same results, "
                    f"slower). Set RECTIFIERS_NO_CPP=1 to skip the build.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                state["ok"] = False
            state["seconds"] = time.perf_counter() - t0
            state["tried"] = True
    return bool(state["ok"])


def set_isa(level: int) -> int:
    """Cap the C++ kernels' instruction set: 2 AVX-512, 1 AVX2, 0 portable loops only (for tests).

    One cap for every extension, those loaded already and those loaded later; returns the cap
    before. The CPU's own support still applies (a cap of 2 on a CPU without AVX-512 runs AVX2).
    """
    level = int(level)
    if level not in (0, 1, 2):
        raise ValueError(f"set_isa: level must be 0 (portable), 1 (AVX2) or 2 (AVX-512), got {level!r}")
    before = int(_isa["cap"])  # type: ignore[call-overload]
    _isa["cap"] = level
    for ns in _isa["namespaces"]:  # type: ignore[attr-defined]
        getattr(torch.ops, ns).set_isa(level)
    return before
