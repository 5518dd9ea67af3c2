"""The tests' shared helpers, imported (``from helpers import ...``), never copied.

The element-wise activations as uniform cases (:data:`CASES`, which the parity, gradcheck, kink
and ``torch.func`` tests are parametrised over: adding an activation adds one entry here), the
dtypes and backends the tests cover, the C++ kernel fixture helper, and the comparisons shared
with ``benchmarks/gpu_check.py`` (:func:`rectifiers.testing.bits_equal`,
:func:`rectifiers.testing.with_kinks`), and the Triton tests' seeded inputs, saved-bytes probe
and compiled-step comparison.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
import torch

import rectifiers as R
import rectifiers.functional as RF
from rectifiers import reference as ref
from rectifiers.testing import bits_equal, with_kinks  # noqa: F401  (re-exported for the tests)

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
BACKENDS = ("torch", "eager")


@dataclass(frozen=True)
class Case:
    """An element-wise activation with its parameters made for a given input and dim."""

    name: str
    #: (x, dim) -> dict of parameter tensors (possibly empty)
    make_params: Callable[[torch.Tensor, int | None, bool], dict]
    #: (x, params, dim, backend) -> y via the public functional
    call: Callable
    #: (x, params, dim) -> y via the reference formula
    oracle: Callable


def _channels(x: torch.Tensor, dim: int | None) -> int:
    if x.dim() == 0 or (x.dim() == 1 and dim == 1):
        return 1
    return x.shape[dim]


def _slope(x, dim, per_channel):
    n = _channels(x, dim) if per_channel else 1
    # Distinct slopes per channel, some above 1, none zero.
    return {"weight": torch.linspace(0.05, 1.5, n, dtype=torch.float64).to(x.dtype)}


def _bias(x, dim, per_channel):
    n = _channels(x, dim) if per_channel else 1
    return {"bias": torch.linspace(-1.0, 0.75, n, dtype=torch.float64).to(x.dtype)}


def _refdim(x, dim):
    if x.dim() == 0 or (x.dim() == 1 and dim == 1):
        return 0
    return dim % x.dim()


CASES = {
    "relu": Case(
        "relu",
        lambda x, d, pc: {},
        lambda x, p, d, b: RF.relu(x, backend=b),
        lambda x, p, d: ref.relu(x),
    ),
    "leaky_relu": Case(
        "leaky_relu",
        lambda x, d, pc: {},
        lambda x, p, d, b: RF.leaky_relu(x, 0.01, backend=b),
        lambda x, p, d: ref.leaky_relu(x, 0.01),
    ),
    "leaky_relu_neg": Case(
        "leaky_relu_neg",
        lambda x, d, pc: {},
        lambda x, p, d, b: RF.leaky_relu(x, -0.3, backend=b),
        lambda x, p, d: ref.leaky_relu(x, -0.3),
    ),
    "prelu": Case(
        "prelu",
        _slope,
        lambda x, p, d, b: RF.prelu(x, p["weight"], d, backend=b),
        lambda x, p, d: ref.prelu(x, p["weight"], _refdim(x, d)),
    ),
    "flexible_relu": Case(
        "flexible_relu",
        _bias,
        lambda x, p, d, b: RF.flexible_relu(x, p["bias"], d, backend=b),
        lambda x, p, d: ref.flexible_relu(x, p["bias"], _refdim(x, d)),
    ),
}


def cpp_kernel_or_skip(module, what: str, monkeypatch) -> dict:
    """Turn a fused C++ CPU kernel module on and load it; its call counters.

    Skips where it cannot be built (no gcc or no ninja), fails where the toolchain is there but
    the build or load failed (that is a bug, not a missing tool). ``ninja`` counts as present
    where the build would find it: on PATH, or beside the interpreter (pip's ninja package).
    """
    import shutil

    from rectifiers.ops.cpp import build as cpp_build

    monkeypatch.delenv("RECTIFIERS_NO_CPP", raising=False)
    ok = module.load()
    has_ninja = shutil.which("ninja") or cpp_build.ninja_dir()
    if not ok and shutil.which("g++") and has_ninja:
        pytest.fail(f"gcc and ninja are present but the fused {what} did not build or load")
    if not ok:
        pytest.skip(f"no C++ toolchain: the fused {what} cannot be built here")
    return module.CALLS


#: Every module on three channels (``backend`` -> module), and an input shape for each: the
#: module-level checks (gradient contiguity, batched gradients, forward-mode AD) run over these.
MODULES = {
    "ReLU": lambda b: R.ReLU(backend=b),
    "LeakyReLU": lambda b: R.LeakyReLU(0.1, backend=b),
    "PReLU": lambda b: R.PReLU(3, backend=b),
    "FReLU": lambda b: R.FReLU(3, backend=b),
    "FunnelReLU1d": lambda b: R.FunnelReLU1d(3, backend=b),
    "FunnelReLU": lambda b: R.FunnelReLU(3, backend=b),
    "FunnelReLU3d": lambda b: R.FunnelReLU3d(3, backend=b),
}


def module_input_shape(name: str) -> tuple[int, ...]:
    """An input shape for ``MODULES[name]`` (N = 2, C = 3)."""
    return {"FunnelReLU1d": (2, 3, 5), "FunnelReLU3d": (2, 3, 3, 3, 3)}.get(name, (2, 3, 4, 4))


# --- the Triton tests' shared helpers (tests/ops/test_triton.py, test_triton_funnel.py) -------


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=gen(seed), dtype=torch.float32).to(dtype)


def nan_close(a, b, rtol, atol):
    return torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)


def saved_bytes(fn):
    """Bytes of the distinct storages saved for backward, by dtype, while running ``fn``."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = (t.dtype, t.untyped_storage().nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, list(seen.values())


def compiled_step(fn, *args):
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    ins = [a.detach().clone().requires_grad_() for a in args]
    out = compiled(*ins)
    return out.detach(), torch.autograd.grad(out, ins, torch.ones_like(out))


def compiled_matches_eager(fn, *args, tol):
    """A compiled step of ``fn`` gives eager's forward bit for bit and its gradients to ``tol``."""
    torch._dynamo.reset()
    out_c, grads_c = compiled_step(fn, *args)
    ins = [a.clone().requires_grad_() for a in args]
    out_e = fn(*ins)
    grads_e = torch.autograd.grad(out_e, ins, torch.ones_like(out_e))
    assert torch.equal(out_c, out_e.detach())
    for a, b in zip(grads_c, grads_e):
        assert torch.allclose(a, b, rtol=tol, atol=tol)
