"""The Triton backend's kernels and launcher (``rectifiers.ops.triton.kernels``), without a GPU:
every kernel compiles for an sm_90 GPU with Triton's bundled ptxas (where triton was not
imported in interpreter mode), the launcher picks the pre-bound or Triton's generic dispatch,
and the pre-bound launch path, on stand-ins for Triton's JIT function and compiled kernel.
"""

from __future__ import annotations

import types

import pytest
import torch

triton = pytest.importorskip("triton", reason="the Triton backend needs the 'triton' package")


@pytest.fixture(autouse=True)
def _interpreter(monkeypatch):
    # as for the other Triton tests (these launch nothing, so no launch configuration to shrink)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("RECTIFIERS_BACKEND", raising=False)


# --- the compiled (GPU) path, without a GPU ---------------------------------------------------


def _compile_for_sm90(name, sig, consts):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.runtime.jit import JITFunction

    from rectifiers.ops.triton import kernels as K

    src = ASTSource(fn=JITFunction(K._RAW[name]), signature=sig, constexprs=consts)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "enable_fp_fusion": False})


@pytest.mark.skipif(
    bool(triton.knobs.runtime.interpret),
    reason="triton was imported with TRITON_INTERPRET=1 in this process: its standard library "
    "is interpreted, so nothing can be compiled here",
)
def test_kernels_compile_for_sm90():
    """The interpreter accepts code the compiler refuses: compile one rich specialisation of
    every kernel to a cubin for an H100 (sm_90) with Triton's bundled ptxas, no GPU needed."""
    ptr = {"fp32": "*fp32", "bf16": "*bf16"}
    c = "constexpr"
    cases = [
        ("act_fwd", {"X": ptr["bf16"], "Y": ptr["bf16"], "M": "*i32", "W": ptr["bf16"], "N": "i64",
                     "C": "i32", "INNER": "i64", "slope": "fp32", "KIND": c, "PER_CHANNEL": c,
                     "WIDE": c, "WRITE_MASK": c, "FP64": c, "NEG_ZERO": c, "BLOCK": c},
         {"KIND": 2, "PER_CHANNEL": True, "WIDE": True, "WRITE_MASK": True, "FP64": False,
          "NEG_ZERO": False, "BLOCK": 2048}),
        ("act_fwd", {"X": ptr["fp32"], "Y": ptr["fp32"], "M": "*i32", "W": ptr["fp32"], "N": "i64",
                     "C": "i32", "INNER": "i64", "slope": "fp32", "KIND": c, "PER_CHANNEL": c,
                     "WIDE": c, "WRITE_MASK": c, "FP64": c, "NEG_ZERO": c, "BLOCK": c},
         {"KIND": 0, "PER_CHANNEL": False, "WIDE": False, "WRITE_MASK": True, "FP64": False,
          "NEG_ZERO": False, "BLOCK": 2048}),
        ("act_bwd_flat", {"G": ptr["fp32"], "M": "*i32", "W": ptr["fp32"], "S": ptr["fp32"],
                          "DX": ptr["fp32"], "PART": "*fp32", "N": "i64", "slope": "fp32",
                          "KIND": c, "SAVED_IS_X": c, "NEED_WGRAD": c, "FP64": c, "BLOCK": c},
         {"KIND": 2, "SAVED_IS_X": False, "NEED_WGRAD": True, "FP64": False, "BLOCK": 2048}),
        ("act_bwd_tiled", {"G": ptr["bf16"], "M": "*i32", "W": ptr["bf16"], "S": ptr["bf16"],
                           "DX": ptr["bf16"], "PART": "*fp32", "C": "i32", "INNER": "i32",
                           "OUTER": "i32", "NIB": "i32", "NOB": "i32", "SPLIT": "i32", "KIND": c,
                           "SAVED_IS_X": c, "NEED_WGRAD": c, "FP64": c, "BO": c, "BC": c, "BI": c},
         {"KIND": 2, "SAVED_IS_X": False, "NEED_WGRAD": True, "FP64": False, "BO": 2, "BC": 4,
          "BI": 256}),
        ("funnel_fwd", {"X": ptr["fp32"], "T": ptr["fp32"], "Y": ptr["fp32"], "M": "*i32",
                        "MEAN": "*fp32", "VAR": "*fp32", "W": "*fp32", "B": "*fp32", "N": "i64",
                        "C": "i32", "INNER": "i64", "eps": "fp32", "HAS_W": c, "HAS_B": c,
                        "WIDE": c, "WRITE_MASK": c, "BLOCK": c},
         {"HAS_W": True, "HAS_B": True, "WIDE": False, "WRITE_MASK": True, "BLOCK": 2048}),
        ("funnel_fwd", {"X": ptr["bf16"], "T": ptr["bf16"], "Y": ptr["bf16"], "M": "*i32",
                        "MEAN": "*fp32", "VAR": "*fp32", "W": ptr["bf16"], "B": ptr["bf16"], "N": "i64",
                        "C": "i32", "INNER": "i64", "eps": "fp32", "HAS_W": c, "HAS_B": c,
                        "WIDE": c, "WRITE_MASK": c, "BLOCK": c},
         {"HAS_W": True, "HAS_B": False, "WIDE": True, "WRITE_MASK": True, "BLOCK": 2048}),
        ("funnel_bwd", {"G": ptr["bf16"], "M": "*i32", "T": ptr["bf16"], "MEAN": "*fp32",
                        "VAR": "*fp32", "W": "*fp32", "SUMS": "*fp32", "OUT": ptr["bf16"],
                        "PART": "*fp32", "C": "i32", "INNER": "i32", "OUTER": "i32", "NIB": "i32",
                        "NOB": "i32", "SPLIT": "i32", "eps": "fp32", "count": "fp32",
                        "PHASE": c, "BATCH": c, "HAS_W": c, "BO": c, "BC": c, "BI": c},
         {"PHASE": 0, "BATCH": True, "HAS_W": True, "BO": 1, "BC": 4, "BI": 512}),
        ("funnel_bwd", {"G": ptr["fp32"], "M": "*i32", "T": ptr["fp32"], "MEAN": "*fp32",
                        "VAR": "*fp32", "W": "*fp32", "SUMS": "*fp32", "OUT": ptr["fp32"],
                        "PART": "*fp32", "C": "i32", "INNER": "i32", "OUTER": "i32", "NIB": "i32",
                        "NOB": "i32", "SPLIT": "i32", "eps": "fp32", "count": "fp32",
                        "PHASE": c, "BATCH": c, "HAS_W": c, "BO": c, "BC": c, "BI": c},
         {"PHASE": 1, "BATCH": True, "HAS_W": True, "BO": 8, "BC": 256, "BI": 1}),
        ("funnel_bwd", {"G": ptr["fp32"], "M": "*i32", "T": ptr["fp32"], "MEAN": "*fp32",
                        "VAR": "*fp32", "W": "*fp32", "SUMS": "*fp32", "OUT": ptr["fp32"],
                        "PART": "*fp32", "C": "i32", "INNER": "i32", "OUTER": "i32", "NIB": "i32",
                        "NOB": "i32", "SPLIT": "i32", "eps": "fp32", "count": "fp32",
                        "PHASE": c, "BATCH": c, "HAS_W": c, "BO": c, "BC": c, "BI": c},
         {"PHASE": 1, "BATCH": False, "HAS_W": False, "BO": 2, "BC": 4, "BI": 64}),
    ]
    for name, sig, consts in cases:
        k = _compile_for_sm90(name, sig, consts)
        assert k.asm.get("cubin"), name
        # Triton specialises an integer argument equal to 1 into a constant (a Python int in
        # the kernel, without tensor methods such as .to): compile that variant too.
        ints = [a for a, t in sig.items() if t in ("i32", "i64")]
        sig1 = {a: ("constexpr" if a in ints else t) for a, t in sig.items()}
        k = _compile_for_sm90(name, sig1, {**consts, **{a: 1 for a in ints}})
        assert k.asm.get("cubin"), (name, "ints = 1")


# --- the launcher: pre-bound or Triton's generic dispatch -------------------------------------


def test_launcher_selection(monkeypatch):
    """Compiled kernels go through the pre-bound launcher, interpreted ones (CPU tensors)
    through Triton's generic dispatch; PREBOUND=False forces the generic one everywhere."""
    from rectifiers.ops.triton import kernels as K

    monkeypatch.setattr(K, "_LAUNCH", {})
    assert not isinstance(K.launcher("act_fwd", "cpu"), K.PreBound)
    assert isinstance(K.launcher("act_fwd", "cuda"), K.PreBound)
    monkeypatch.setattr(K, "PREBOUND", False)
    assert not isinstance(K.launcher("act_fwd", "cuda"), K.PreBound)


class _FakeCompiled:
    def __init__(self, names, calls):
        self.function, self.packed_metadata = "function", "packed"
        self.src = types.SimpleNamespace(signature={n: "?" for n in names})
        self._calls = calls

    @property
    def run(self):
        return lambda *a: self._calls.append(a)


class _FakeJit:
    """JITFunction's surface that PreBound uses: ``run`` compiles (here: records) and launches."""

    arg_names = ["X", "N", "slope", "KIND", "BLOCK"]

    def __init__(self, sig_names=None):
        self.compiles, self.generic, self.launches = [], [], []
        self.sig_names = self.arg_names if sig_names is None else sig_names

    def run(self, *args, grid, warmup, **meta):
        self.compiles.append((args, meta))
        return _FakeCompiled(self.sig_names, self.launches)

    def __getitem__(self, grid):
        return lambda *args, **meta: self.generic.append((grid, args, meta))


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda dev: 1234, raising=False)


def test_prebound_launch_path(fake_cuda):
    """The first launch of a specialisation compiles through Triton's ``run``; the next ones
    call the compiled kernel's launcher directly, with every parameter in order (constexprs
    too) and no launch metadata or hooks; a different specialisation compiles again."""
    from rectifiers.ops.triton import kernels as K

    jit = _FakeJit()
    launch = K.PreBound(jit)
    x = torch.zeros(64)
    launch((3,), x, 96, 0.5, KIND=1, BLOCK=64)
    assert len(jit.compiles) == 1 and not jit.launches
    launch((5, 2), x, 96, 0.25, KIND=1, BLOCK=64)
    assert len(jit.compiles) == 1
    assert jit.launches == [(5, 2, 1, 1234, "function", "packed", None, None, None, x, 96, 0.25, 1, 64)]
    # what Triton specialises on changes the key: an int equal to 1 or not a multiple of 16,
    # another dtype, a misaligned pointer, another constexpr
    launch((1,), x, 1, 0.5, KIND=1, BLOCK=64)
    launch((1,), x, 7, 0.5, KIND=1, BLOCK=64)
    launch((1,), x.to(torch.bfloat16), 96, 0.5, KIND=1, BLOCK=64)
    launch((1,), x[1:], 96, 0.5, KIND=1, BLOCK=64)
    launch((1,), x, 96, 0.5, KIND=2, BLOCK=64)
    launch((1,), x, 2**40, 0.5, KIND=1, BLOCK=64)
    assert len(jit.compiles) == 7
    # ints of the same class share the compiled kernel
    launch((1,), x, 32, 0.5, KIND=1, BLOCK=64)
    assert len(jit.compiles) == 7 and len(jit.launches) == 2


def test_prebound_falls_back_to_the_generic_dispatch(fake_cuda):
    """A Triton whose compiled kernel does not take the parameters as expected: the generic
    path, every launch after the first."""
    from rectifiers.ops.triton import kernels as K

    jit = _FakeJit(sig_names=["X", "N"])  # neither every parameter nor the non-constexpr ones
    launch = K.PreBound(jit)
    x = torch.zeros(64)
    for _ in range(3):
        launch((3,), x, 100, 0.5, KIND=1, BLOCK=64)
    assert len(jit.compiles) == 1 and not jit.launches and len(jit.generic) == 2
    # an older Triton's launcher: the non-constexpr parameters only
    jit = _FakeJit(sig_names=["X", "N", "slope"])
    launch = K.PreBound(jit)
    launch((3,), x, 100, 0.5, KIND=1, BLOCK=64)
    launch((3,), x, 100, 0.5, KIND=1, BLOCK=64)
    assert jit.launches == [(3, 1, 1, 1234, "function", "packed", None, None, None, x, 100, 0.5)]
