"""The C++ operators ``torch.ops.rectifiers.{leaky_relu, prelu, flexible_relu}`` (csrc/operators.cpp),
called directly and through the public API.

Against torch: the forward and the input gradient bit for bit in every float dtype and layout
(kinks, NaN and infinities included), the parameter gradients within the tolerance rule of
docs/DESIGN.md; what each keeps for backward; double backward, batched gradients, forward-mode AD,
``torch.func``, inference mode, ``torch.compile`` and ``torch.export`` through them; the number of
torch ops each launches per call (a deterministic stand-in for host time); and the Python path
that runs where the C++ build is unavailable.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import rectifiers as R
import rectifiers.functional as RF
from rectifiers.ops.cpp import pointwise as P
from rectifiers.testing import bits_equal, with_kinks

from helpers import FLOAT_DTYPES, cpp_kernel_or_skip


@pytest.fixture
def ops(monkeypatch):
    """The operators' handles (the extension built), skipping where no toolchain is found."""
    cpp_kernel_or_skip(P, "C++ operators", monkeypatch)
    ops = P.operators()
    assert ops is not None
    return ops


LAYOUTS = ("contiguous", "channels_last", "strided", "last_dim")


def _input(layout: str, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, int]:
    """A kinky input (0, -0, +-tiny, NaN, +-inf) in the layout, and its channel dim (5 channels)."""
    gen = torch.Generator().manual_seed(seed)
    if layout == "last_dim":  # (N, L, C), channels last: dim -1 -> 2
        x = torch.randn(3, 7, 5, generator=gen, dtype=torch.float64)
        dim = 2
    else:
        x = torch.randn(2, 5, 6, 6, generator=gen, dtype=torch.float64)
        dim = 1
    x = with_kinks(x.to(dtype))
    flat = x.view(-1)
    flat[8], flat[9], flat[10] = float("nan"), float("inf"), -float("inf")
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        wide = torch.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    return x, dim


def _grads(fn, x: torch.Tensor, params: list[torch.Tensor], g: torch.Tensor):
    x = x.detach().requires_grad_()
    ps = [p.detach().clone().requires_grad_() for p in params]
    y = fn(x, *ps)
    return (y.detach(),) + torch.autograd.grad(y, [x] + ps, g)


def _close_to_double(got: torch.Tensor, torch_got: torch.Tensor, exact: torch.Tensor) -> None:
    """The tolerance rule: at most twice torch's own error against the float64 result, plus a
    small absolute tolerance."""
    err = (got.double() - exact).abs().max().item()
    torch_err = (torch_got.double() - exact).abs().max().item()
    assert err <= 2 * torch_err + 1e-6 * max(1.0, exact.abs().max().item()), (err, torch_err)


def _plain_frelu(x, b, dim):
    shape = [1] * x.dim()
    shape[dim] = -1
    return torch.relu(x) + (b.to(x.dtype).reshape(shape) if b.numel() > 1 else b.to(x.dtype).reshape(()))


def _plain_prelu(x, w, dim):
    return torch.prelu(x.movedim(dim, 1), w.to(x.dtype)).movedim(1, dim) if w.numel() > 1 else torch.prelu(x, w.to(x.dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("slope", [0.01, 0.0, 1.5, -0.2])
def test_leaky_relu_operator_matches_torch(ops, dtype, layout, slope):
    x, _ = _input(layout, dtype)
    g = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    y, dx = _grads(lambda t: ops.leaky_relu(t, slope), x, [], g)
    ry, rdx = _grads(lambda t: F.leaky_relu(t, slope), x, [], g)
    assert bits_equal(y, ry) and bits_equal(dx, rdx)
    assert y.stride() == ry.stride() or layout == "strided"


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("slopes", ["keep_y", "keep_x"])
@pytest.mark.parametrize("per_channel", [True, False], ids=["channel", "shared"])
def test_prelu_operator_matches_torch(ops, dtype, layout, slopes, per_channel):
    x, dim = _input(layout, dtype)
    n = 5 if per_channel else 1
    w = torch.linspace(0.05, 1.0 if slopes == "keep_y" else 1.5, n)
    g = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    y, dx, dw = _grads(lambda t, a: ops.prelu(t, a, dim), x, [w], g)
    ry, rdx, rdw = _grads(lambda t, a: _plain_prelu(t, a, dim), x, [w], g)
    assert bits_equal(y, ry) and bits_equal(dx, rdx)
    # The slope gradient against float64 (NaN and infinities left out: they make it NaN).
    finite = torch.isfinite(x)
    xf, gf = torch.where(finite, x, 0), torch.where(finite, g, 0)
    _, _, edw = _grads(lambda t, a: _plain_prelu(t, a, dim), xf.double(), [w.double()], gf.double())
    _, _, odw = _grads(lambda t, a: ops.prelu(t, a, dim), xf, [w], gf)
    _, _, tdw = _grads(lambda t, a: _plain_prelu(t, a, dim), xf, [w], gf)
    _close_to_double(odw, tdw, edw)
    assert dw.shape == rdw.shape and dw.dtype == rdw.dtype


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("per_channel", [True, False], ids=["channel", "shared"])
def test_flexible_relu_operator_matches_plain_formula(ops, dtype, layout, per_channel):
    x, dim = _input(layout, dtype)
    b = torch.linspace(-1.0, 0.75, 5 if per_channel else 1)
    g = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    y, dx, db = _grads(lambda t, c: ops.flexible_relu(t, c, dim), x, [b], g)
    ry, rdx, rdb = _grads(lambda t, c: _plain_frelu(t, c, dim), x, [b], g)
    assert bits_equal(y, ry) and bits_equal(dx, rdx)
    _, _, edb = _grads(lambda t, c: _plain_frelu(t, c, dim), x.double(), [b.double()], g.double())
    finite = torch.isfinite(edb)
    assert torch.equal(finite, torch.isfinite(db))
    _close_to_double(db[finite], rdb[finite], edb[finite])


def _saved(fn):
    """The tensors autograd keeps for backward during ``fn()``: (shape, dtype, is the output)."""
    kept = []

    def pack(t):
        kept.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn()
    return y, kept


def test_what_the_operators_keep(ops):
    x = torch.randn(4, 6, 5, 5, requires_grad=True)
    n = x.numel()
    y, kept = _saved(lambda: ops.leaky_relu(x, 0.01))
    assert len(kept) == 1 and kept[0].data_ptr() == y.data_ptr()  # the output, nothing else
    assert y.grad_fn.name() == "LeakyReLUKeepOutputBackward"
    y, kept = _saved(lambda: ops.leaky_relu(x, -0.5))
    assert [(k.dtype, k.numel()) for k in kept] == [(torch.bool, n)]
    a = torch.full((6,), 0.25, requires_grad=True)
    y, kept = _saved(lambda: ops.prelu(x, a, 1))
    assert kept[0].data_ptr() == y.data_ptr() and kept[1] is not None and kept[1].numel() == 6
    assert y.grad_fn.name() == "PReLUBackward"
    y, kept = _saved(lambda: ops.prelu(x, torch.full((6,), 1.5, requires_grad=True), 1))
    assert kept[0].data_ptr() == x.data_ptr()  # a slope above 1: the input, as torch
    b = torch.zeros(6, requires_grad=True)
    y, kept = _saved(lambda: ops.flexible_relu(x, b, 1))
    assert [(k.dtype, k.numel()) for k in kept] == [(torch.uint8, (n + 7) // 8)]  # 1 bit per element
    assert y.grad_fn.name() == "FlexibleReLUBackward"
    y, kept = _saved(lambda: ops.flexible_relu(x.detach(), b, 1))  # only the bias learns: nothing
    assert all(k.numel() == 0 for k in kept)


def test_prelu_keeps_the_input_where_a_times_x_underflows(ops):
    x = torch.tensor([[-1e-3, 2.0], [-1.0, 0.5]], dtype=torch.float16, requires_grad=True)
    a = torch.tensor([0.01, 0.01], requires_grad=True)
    y, kept = _saved(lambda: ops.prelu(x, a, 1))
    assert kept[0].data_ptr() == x.data_ptr()
    g = torch.ones_like(y)
    dx, da = torch.autograd.grad(y, (x, a), g)
    rx, ra = torch.autograd.grad(_plain_prelu(x, a, 1), (x, a), g)
    assert bits_equal(dx, rx) and torch.allclose(da, ra, rtol=1e-3)


@pytest.mark.parametrize("op", ["leaky_relu", "leaky_relu_neg", "prelu", "flexible_relu"])
def test_operators_gradcheck_gradgradcheck_batched(ops, op):
    x = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    x = x + (x.detach().abs() < 0.05) * 0.1  # away from the kink: finite differences hold
    p = torch.linspace(0.1, 0.9, 4, dtype=torch.float64, requires_grad=True)
    fns = {
        "leaky_relu": (lambda t: ops.leaky_relu(t, 0.2), (x,)),
        "leaky_relu_neg": (lambda t: ops.leaky_relu(t, -0.2), (x,)),
        "prelu": (lambda t, a: ops.prelu(t, a, 1), (x, p)),
        "flexible_relu": (lambda t, b: ops.flexible_relu(t, b, 1), (x, p)),
    }
    fn, args = fns[op]
    assert torch.autograd.gradcheck(fn, args, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(fn, args)


def test_forward_ad_and_torch_func_through_the_operators(ops):
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    a = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    with fwAD.dual_level():
        out = fwAD.unpack_dual(ops.prelu(fwAD.make_dual(x, t), a, 1)).tangent
    assert torch.equal(out, torch.where(x > 0, t, a * t))
    gx = torch.func.grad(lambda v: ops.flexible_relu(v, a, 1).sum())(x)
    assert torch.equal(gx, (x > 0).double())


def test_inference_mode_and_no_grad(ops):
    x = torch.randn(4, 3, 5)
    b = torch.randn(3)
    with torch.inference_mode():
        assert bits_equal(ops.flexible_relu(x, b, 1), _plain_frelu(x, b, 1))
        assert bits_equal(ops.prelu(x, b.abs(), 1), _plain_prelu(x, b.abs(), 1))
    with torch.no_grad():
        assert bits_equal(ops.leaky_relu(x.requires_grad_(), 0.1), F.leaky_relu(x, 0.1))


def test_compile_and_export_through_the_operators(ops):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.full((3,), 0.25))
            self.b = torch.nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return torch.ops.rectifiers.flexible_relu(torch.ops.rectifiers.prelu(x, self.w, 1), self.b, 1)

    m = M()
    x = torch.randn(4, 3, 6, requires_grad=True)
    ref = m(x)
    (gref,) = torch.autograd.grad(ref.sum(), x)
    y = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    (gy,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(y, ref) and torch.equal(gy, gref)
    ep = torch.export.export(m, (torch.randn(4, 3, 6),))
    assert "rectifiers.prelu" in ep.graph_module.code
    assert torch.equal(ep.module()(x.detach()), ref.detach())


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


#: The most torch ops each operator launches per call, forward and backward (the fused kernels
#: are called directly, not through the dispatcher; ``detach``, autograd's own bookkeeping of
#: the saved tensors while a dispatch mode watches, is not counted). A regression test of the
#: host cost; each is also at most what its torch twin launches.
OP_BUDGET = {"leaky_relu": (1, 1), "prelu": (1, 3), "flexible_relu": (2, 3)}


def _launched(call, g):
    with _Count() as fwd:
        y = call()
    with _Count() as bwd:
        y.backward(g)
    return [[f for f in c.ops if f != "aten.detach.default"] for c in (fwd, bwd)]


@pytest.mark.parametrize("op", sorted(OP_BUDGET))
def test_torch_ops_per_call(ops, op):
    x = torch.randn(8, 4, 6, 6, requires_grad=True)
    p = torch.full((4,), 0.25, requires_grad=True)
    ours = {"leaky_relu": lambda: ops.leaky_relu(x, 0.01), "prelu": lambda: ops.prelu(x, p, 1),
            "flexible_relu": lambda: ops.flexible_relu(x, p, 1)}[op]
    twin = {"leaky_relu": lambda: F.leaky_relu(x, 0.01), "prelu": lambda: torch.prelu(x, p),
            "flexible_relu": lambda: torch.relu(x) + p.view(1, -1, 1, 1)}[op]
    g = torch.ones(8, 4, 6, 6)
    launched, twins = _launched(ours, g), _launched(twin, g)
    for k in (0, 1):
        assert len(launched[k]) <= OP_BUDGET[op][k], launched[k]
        assert len(launched[k]) <= len(twins[k]), (launched[k], twins[k])
    assert x.grad is not None and p.grad is not None or op == "leaky_relu"


def test_public_api_runs_the_operators(ops):
    """The functionals and modules on CPU, eager backend, call the operators (their grad_fn),
    and fall back to the full path (and the Python Functions) where the operators are off."""
    x = torch.randn(4, 3, 5, 5, requires_grad=True)
    assert R.LeakyReLU()(x).grad_fn.name() == "LeakyReLUKeepOutputBackward"
    assert R.PReLU(3)(x).grad_fn.name() == "PReLUBackward"
    assert RF.flexible_relu(x, torch.zeros(3, requires_grad=True)).grad_fn.name() == "FlexibleReLUBackward"
    assert R.FReLU(3, backend="eager")(x).grad_fn.name() == "FlexibleReLUBackward"
    assert "Backward" in R.FReLU(3, backend="torch")(x).grad_fn.name()  # the plain formula
    assert R.FReLU(3, backend="torch")(x).grad_fn.name() != "FlexibleReLUBackward"


@pytest.mark.parametrize("name", ["leaky_relu", "prelu", "flexible_relu"])
def test_python_path_gives_the_same_results(ops, monkeypatch, name):
    """With ``RECTIFIERS_NO_CPP=1`` the Python Functions run: the same values and input gradient."""
    x, dim = _input("contiguous", torch.float32)
    p = torch.linspace(0.1, 0.9, 5)
    call = {"leaky_relu": lambda t, q: RF.leaky_relu(t, 0.1) + 0 * q.sum(), "prelu": lambda t, q: RF.prelu(t, q, dim),
            "flexible_relu": lambda t, q: RF.flexible_relu(t, q, dim)}[name]
    g = torch.randn(x.shape)
    fast = _grads(call, x, [p], g)
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    before = dict(P.CALLS)
    slow = _grads(call, x, [p], g)
    y = {"leaky_relu": RF.leaky_relu, "prelu": RF.prelu, "flexible_relu": RF.flexible_relu}[name](
        x.detach().requires_grad_(), *([] if name == "leaky_relu" else [p.requires_grad_()]))
    assert y.grad_fn.name() not in ("LeakyReLUKeepOutputBackward", "PReLUBackward", "FlexibleReLUBackward")
    assert bits_equal(fast[0], slow[0]) and bits_equal(fast[1], slow[1])
    torch.testing.assert_close(fast[2], slow[2], equal_nan=True)
    assert dict(P.CALLS) == before or not P.loaded()


def test_build_failure_leaves_leaky_relu_and_prelu_working(broken_build):
    """No compiler: one warning, then LeakyReLU and PReLU run the Python Functions, same results."""
    x = torch.randn(4, 3, 5, requires_grad=True)
    a = torch.full((3,), 0.25, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        y = RF.leaky_relu(x, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        z = RF.prelu(x, a, 1)
    assert bits_equal(y, F.leaky_relu(x, 0.1)) and bits_equal(z, torch.prelu(x, a))
    (gx,) = torch.autograd.grad(y.sum() + z.sum(), x)
    torch.testing.assert_close(gx, torch.where(x > 0, 2.0, 0.35))


def test_fast_path_entry_points_are_the_registered_operators(ops):
    """The handles the functionals call (the extension's Python functions) and the registered
    ``torch.ops.rectifiers.*`` run the same C++: the same bits, the same node, a profiler
    record under the operator's name."""
    x = torch.randn(4, 3, 5, requires_grad=True)
    a = torch.linspace(0.1, 0.9, 3, requires_grad=True)
    calls = {"leaky_relu": (x, 0.1), "prelu": (x, a, 1), "flexible_relu": (x, a, 1)}
    for name, args in calls.items():
        fast, registered = getattr(ops, name)(*args), getattr(torch.ops.rectifiers, name)(*args)
        assert bits_equal(fast, registered) and fast.grad_fn.name() == registered.grad_fn.name()
        g = torch.randn(fast.shape)
        for u, v in zip(torch.autograd.grad(fast, [x, a] if name != "leaky_relu" else [x], g),
                        torch.autograd.grad(registered, [x, a] if name != "leaky_relu" else [x], g)):
            assert bits_equal(u, v)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            getattr(ops, name)(*args)
        assert f"rectifiers::{name}" in {e.name for e in prof.events()}
