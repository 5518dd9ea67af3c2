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

The build cache (torch's extension folder, ``TORCH_EXTENSIONS_DIR``): each build is named by
:func:`build_name`, a hash of the C++ text, the flags, the torch and Python versions and the
machine, so environments on one machine never collide and an edit of the C++ renames the build.
A first build prints one line to stderr. Builds of one name in several processes take turns
under an advisory file lock that the operating system releases when its holder dies; a lock
file of torch's left by a process killed during a build is detected, reported with a warning,
and removed; another process holding the build past :data:`LOCK_TIMEOUT_S` ends the wait with
the usual one-time warning and the plain-torch path. Nothing waits forever.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ..._util import env_reader

_no_cpp = env_reader("RECTIFIERS_NO_CPP")

#: The C++ sources, shipped with the package (``src/rectifiers/csrc``).
CSRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "csrc")


def source_path(name: str) -> str:
    """The path of the C++ source file ``name`` under :data:`CSRC`."""
    return os.path.join(CSRC, name)


def disabled() -> bool:
    """Whether ``RECTIFIERS_NO_CPP`` (any value but empty or ``0``) turns the C++ kernels off."""
    v = _no_cpp()
    return v is not None and v.strip() not in ("", "0")


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


def build_name(
    stem: str, sources: Sequence[str], flags: Sequence[str], *, torch_version: str | None = None,
    python: str | None = None, machine: str | None = None,
) -> str:
    """The extension's name: ``stem`` and a hash of everything that changes the binary.

    Hashed: the text of ``sources`` and of every header in :data:`CSRC`, the compile ``flags``,
    the torch version, the Python implementation and version (with its ABI flags) and the
    machine. Two environments on one machine (another torch, another Python, other flags) thus
    get two builds instead of rebuilding each other's; a change of the C++ text renames the build.
    """
    h = hashlib.sha256()
    headers = sorted(os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".h"))
    for path in list(sources) + [p for p in headers if p not in sources]:
        with open(path, "rb") as f:
            h.update(os.path.basename(path).encode() + b"\0" + f.read() + b"\0")
    py = python or f"{sys.implementation.cache_tag}{getattr(sys, 'abiflags', '')}"
    for part in (" ".join(flags), torch_version or torch.__version__, py, machine or platform.machine()):
        h.update(part.encode() + b"\0")
    return f"{stem}_{h.hexdigest()[:16]}"


#: Seconds to wait for another process's build of the same extension before giving up (the
#: plain-torch path then runs, after the usual warning).
LOCK_TIMEOUT_S = 600.0

#: One build at a time in this process: a build may put ninja's folder on PATH for its duration,
#: and two builds in two threads would restore PATH under each other.
_build_lock = threading.Lock()


@functools.cache
def _openmp_ok() -> bool:
    """Whether the C++ compiler builds :file:`csrc/openmp_probe.cpp` with ``-fopenmp``."""
    import subprocess
    import tempfile

    cxx = os.environ.get("CXX", "c++")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return subprocess.run([cxx, "-fopenmp", source_path("openmp_probe.cpp"), "-o", os.path.join(tmp, "probe")],
                                  capture_output=True, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def openmp_flags() -> list[str]:
    """``["-fopenmp"]`` where the C++ compiler takes it, else ``[]`` (probed once per process).

    ``at::parallel_for`` is a header template whose OpenMP backend is a ``#pragma omp
    parallel``: compiled without ``-fopenmp`` it runs every loop on one thread, whatever
    ``torch.set_num_threads`` says. With it, the extension needs ``libgomp.so.1``, which the
    dynamic loader finds already loaded, torch's own (the same soname): one thread pool, the
    one ``torch.set_num_threads`` sets.
    """
    return ["-fopenmp"] if _openmp_ok() else []


def build(stem: str, sources: Sequence[str], flags: Sequence[str], python_module: bool = False) -> Any:
    """Compile (or find in torch's extension cache) and load the extension of the C++ files
    ``sources`` (paths; a compiler error names them), named by :func:`build_name`, with the
    compile ``flags`` and OpenMP where the compiler has it (:func:`openmp_flags`; the kernels'
    ``at::parallel_for`` then uses torch's threads). With ``python_module`` the extension also
    defines a Python module (``PYBIND11_MODULE``), which is returned; else ``None``."""
    flags = list(flags) + openmp_flags()
    with _build_lock:
        return _build_locked(build_name(stem, sources, flags), sources, flags, python_module)


class BuildLockTimeout(TimeoutError):
    """Another process held the build lock past :data:`LOCK_TIMEOUT_S`."""


@contextlib.contextmanager
def _process_lock(build_dir: str, name: str) -> Iterator[None]:
    """Hold an advisory file lock on ``build_dir`` for the build, across processes.

    The operating system releases it when its holder dies, so a build cut short never blocks the
    next one; a live holder past :data:`LOCK_TIMEOUT_S` raises :class:`BuildLockTimeout`.
    """
    try:
        import fcntl
    except ImportError:  # no flock (Windows): torch's own lock file only, see _clear_stale_baton
        yield
        return
    fd = os.open(os.path.join(build_dir, "rectifiers.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise BuildLockTimeout(
                        f"another process has held the build lock of {name} for over "
                        f"{LOCK_TIMEOUT_S:g} s ({build_dir})"
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _clear_stale_baton(build_dir: str, have_flock: bool) -> None:
    """Remove torch's build lock file (``lock``, a ``FileBaton``) when no live build holds it.

    torch waits for that file to go away, forever, and a process killed during a build leaves it
    behind. Under :func:`_process_lock` no other build of ours runs, so a file there is stale;
    without flock, one older than :data:`LOCK_TIMEOUT_S` is.
    """
    baton = os.path.join(build_dir, "lock")
    try:
        age = time.time() - os.path.getmtime(baton)
    except OSError:
        return  # no lock file: the usual case
    if not have_flock and age < LOCK_TIMEOUT_S:
        return
    warnings.warn(
        f"rectifiers: removing a stale build lock {baton} ({age:.0f} s old), left by a process "
        "that stopped during the build of the C++ kernels; building again",
        RuntimeWarning,
        stacklevel=2,
    )
    try:
        os.remove(baton)
    except FileNotFoundError:
        pass


def _has_flock() -> bool:
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def _build_locked(name: str, sources: Sequence[str], flags: Sequence[str], python_module: bool) -> Any:
    from torch.utils import cpp_extension  # lazy: imports setuptools machinery

    build_dir = cpp_extension._get_build_directory(name, verbose=False)  # created if missing
    old_path = os.environ.get("PATH", "")
    extra = None if shutil.which("ninja") else ninja_dir()
    with _process_lock(build_dir, name):
        _clear_stale_baton(build_dir, _has_flock())
        if not any(f.startswith(name) and f.endswith((".so", ".pyd", ".dylib")) for f in os.listdir(build_dir)):
            sys.stderr.write(f"building rectifiers' CPU kernels ({name}), first use only, about 30 s\n")
            sys.stderr.flush()
        if extra:  # for the build only; the user's PATH is restored afterwards
            os.environ["PATH"] = extra + os.pathsep + old_path
        try:
            return cpp_extension.load(
                name=name, sources=list(sources), extra_cflags=list(flags), is_python_module=python_module,
                extra_ldflags=[f for f in flags if f == "-fopenmp"],
                build_directory=build_dir, verbose=False,
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
