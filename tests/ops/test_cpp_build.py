"""The C++ kernels' build cache: names that follow the sources, flags and environment, and
locks that never hang (a lock left by a dead build is taken over; one held past the timeout ends
in the plain-torch path with one warning)."""

from __future__ import annotations

import ast
import os

import pytest
import torch

from helpers import cpp_kernel_or_skip
from rectifiers.ops.cpp import pointwise as E


@pytest.fixture
def cpp(monkeypatch):
    """The C++ FReLU/PReLU kernels, built and loaded here: skip where they cannot build."""
    return cpp_kernel_or_skip(E, "FReLU kernel", monkeypatch)


def test_build_names_follow_source_flags_and_environment(tmp_path):
    """Another torch, Python, machine or flag set, or another C++ text: another build name (so
    environments on one machine do not rebuild each other's); the same inputs: the same name."""
    from rectifiers.ops.cpp import build as CB

    src = tmp_path / "k.cpp"
    src.write_text("int k() { return 1; }\n")
    base = dict(torch_version="2.13.0+cpu", python="cpython-311", machine="x86_64")
    name = CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3"], **base)
    assert name.startswith("rectifiers_frelu_cpu_")
    assert CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3"], **base) == name
    others = {
        CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O2"], **base),
        CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3", "-ffp-contract=off"], **base),
        CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3"], **{**base, "torch_version": "2.12.0+cpu"}),
        CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3"], **{**base, "python": "cpython-312"}),
        CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3"], **{**base, "machine": "aarch64"}),
    }
    src.write_text("int k() { return 2; }\n")
    others.add(CB.build_name("rectifiers_frelu_cpu", [str(src)], ["-O3"], **base))
    assert name not in others and len(others) == 6
    # The package's own extensions: named by their stems and this environment.
    assert CB.build_name(E._NAME, E._SOURCES, ["-O3"]).startswith("rectifiers_frelu_cpu_")


def _load_in_subprocess(ext_dir, prelude: str = "", timeout: float = 600):
    import subprocess
    import sys
    from pathlib import Path

    import rectifiers

    env = dict(os.environ, TORCH_EXTENSIONS_DIR=str(ext_dir))
    env.pop("RECTIFIERS_NO_CPP", None)
    src = str(Path(rectifiers.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    code = (
        f"{prelude}\nimport sys\nfrom rectifiers.ops.cpp import pointwise as E\n"
        "sys.exit(0 if E.load() else 3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_stale_lock_of_a_dead_build_is_taken_over(cpp, tmp_path):
    """A process killed during the build leaves torch's lock file behind; the next load says so,
    removes it and loads (it used to wait for it forever)."""
    import shutil

    from torch.utils import cpp_extension

    from rectifiers.ops.cpp import build as CB

    name = CB.build_name(E._NAME, E._SOURCES, ["-O3"] + CB.openmp_flags())  # as build() names it
    built = cpp_extension._get_build_directory(name, verbose=False)
    ext_dir = tmp_path / "ext"
    shutil.copytree(built, ext_dir / name)  # this build, already compiled (no 30 s rebuild)
    (ext_dir / name / "rectifiers.lock").unlink(missing_ok=True)
    lock = ext_dir / name / "lock"
    lock.touch()  # as torch's FileBaton leaves it when its process dies mid-build
    r = _load_in_subprocess(ext_dir)
    assert r.returncode == 0, r.stderr
    assert "stale build lock" in r.stderr and str(lock) in r.stderr
    assert not lock.exists()


def test_openmp_flags_make_the_kernels_use_torchs_threads(cpp):
    """Built with OpenMP where the compiler has it (else at::parallel_for runs one thread), and
    then sharing torch's own libgomp: one thread pool, set by torch.set_num_threads. Checked in
    a fresh process (other libraries, scikit-learn's for one, bring OpenMP runtimes of their
    own)."""
    import subprocess
    import sys

    from rectifiers.ops.cpp import build as CB

    assert CB.openmp_flags() in (["-fopenmp"], [])
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc/self/maps to list the loaded libraries (not Linux)")
    code = (
        "import torch\nfrom rectifiers.ops.cpp import funnel, pointwise\n"
        "assert pointwise.load() and funnel.load()\n"
        "print(sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libgomp' in l}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RECTIFIERS_NO_CPP"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    gomp = ast.literal_eval(r.stdout.strip().splitlines()[-1])
    torch_dir = os.path.dirname(torch.__file__)
    assert all(p.startswith(torch_dir) for p in gomp), gomp  # torch's runtime, no second one


def test_build_lock_held_past_the_timeout_falls_back(tmp_path):
    """Another live process holding the build past the timeout: one warning that says so, then
    the plain-torch path; never a silent wait."""
    fcntl = pytest.importorskip("fcntl")
    from torch.utils import cpp_extension

    from rectifiers.ops.cpp import build as CB

    name = CB.build_name(E._NAME, E._SOURCES, ["-O3"] + CB.openmp_flags())  # as build() names it
    ext_dir = tmp_path / "ext"
    old = os.environ.get("TORCH_EXTENSIONS_DIR")
    os.environ["TORCH_EXTENSIONS_DIR"] = str(ext_dir)
    try:
        build_dir = cpp_extension._get_build_directory(name, verbose=False)
    finally:
        if old is None:
            del os.environ["TORCH_EXTENSIONS_DIR"]
        else:
            os.environ["TORCH_EXTENSIONS_DIR"] = old
    fd = os.open(os.path.join(build_dir, "rectifiers.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a build in progress elsewhere
        r = _load_in_subprocess(
            ext_dir, "from rectifiers.ops.cpp import build\nbuild.LOCK_TIMEOUT_S = 1.0", timeout=120
        )
    finally:
        os.close(fd)
    assert r.returncode == 3, r.stderr
    assert "held the build lock" in r.stderr and "plain-torch path" in r.stderr
    assert r.stderr.count("could not be built or loaded") == 1
