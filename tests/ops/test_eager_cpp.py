"""The fused C++ FReLU and PReLU kernels of the eager backend against the reference, and their fallback.

The kernel (``rectifiers.ops.cpp.pointwise``) is built at first use; where it cannot be (no
compiler), the tests that need it fail if gcc and ninja are present (a build that should work
and silently does not is a defect) and are skipped otherwise.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import rectifiers.functional as RF
from rectifiers import reference as ref
from helpers import bits_equal, cpp_kernel_or_skip
from rectifiers.ops import _common as OC
from rectifiers.ops.cpp import pointwise as E

B = "eager"


@pytest.fixture
def cpp(monkeypatch):
    """The C++ path, on: skip where it cannot build (no compiler); yields the call counters."""
    return cpp_kernel_or_skip(E, "FReLU kernel", monkeypatch)


def _kinky(shape, dtype, seed=0) -> torch.Tensor:
    """Random values with kinks sprinkled in: 0, -0.0, tiny, NaN, +-inf."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    flat = x.view(-1)
    specials = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-38, -1e-38, float("nan"), float("inf"),
                             float("-inf"), 1e-300, -1e-300], dtype=torch.float64)
    n = min(flat.numel(), 4 * specials.numel())
    idx = torch.randperm(flat.numel(), generator=gen)[:n]
    flat[idx] = specials.repeat(4)[:n]
    return x.to(dtype)


def _bias(c: int, dtype) -> torch.Tensor:
    b = torch.linspace(-1.0, 0.5, c) if c > 1 else torch.tensor([-0.75])
    if c > 2:
        b[1] = -0.0  # relu(-0.0) + -0.0 keeps the sign: a bitwise check of the -0.0 rule
    return b.to(dtype)


def _run(x: torch.Tensor, b: torch.Tensor, dim: int, g: torch.Tensor, fn):
    x = x.detach().clone().requires_grad_()
    b = b.detach().clone().requires_grad_()
    y = fn(x, b, dim)
    dx, db = torch.autograd.grad(y, (x, b), g)
    return y.detach(), dx, db


def _ours(x, b, d):
    return RF.flexible_relu(x, b, d, backend=B)


# (shape, dim, per-channel bias?, layout)
CASES = [
    ((4, 6, 9, 31), 1, True, "contiguous"),       # segment mode (inner 279 >= 256)
    ((4, 6, 9, 31), 1, False, "contiguous"),      # one bias
    ((3, 5, 7, 9), 1, True, "contiguous"),        # row mode (inner 63)
    ((3, 5, 7, 9), 1, True, "channels_last"),
    ((3, 5, 7, 9), 1, False, "channels_last"),
    ((5, 7, 13), -1, True, "contiguous"),         # channels last dim: inner 1
    ((5, 7, 13), 1, True, "contiguous"),
    ((2000, 7, 5), 1, True, "contiguous"),        # row mode, several work blocks
    ((3, 2, 40001), 1, True, "contiguous"),       # segment mode, runs cut in pieces
    ((30001,), 0, True, "contiguous"),            # 1-D channels (one row)
    ((70001,), 1, False, "contiguous"),           # 1-D, no channel dim: one block per piece
    ((1, 1, 1), 1, True, "contiguous"),
    ((2, 3, 4, 5, 6), 1, True, "channels_last_3d"),
]


def _make(shape, layout, dtype, seed=0):
    x = _kinky(shape, dtype, seed)
    if layout in ("channels_last", "channels_last_3d"):
        x = x.contiguous(memory_format=getattr(torch, layout))
    return x


def _case_bias(x, dim, per_channel, dtype):
    c = x.shape[dim] if (per_channel and x.dim() > 1) or (x.dim() == 1 and dim == 0) else 1
    return _bias(c, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-d{c[1]}-{'ch' if c[2] else 'one'}-{c[3]}")
def test_exact_against_reference(cpp, case, dtype):
    shape, dim, per_channel, layout = case
    x = _make(shape, layout, dtype)
    b = _case_bias(x, dim, per_channel, dtype)
    g = torch.randn(shape, dtype=dtype)
    if layout != "contiguous":
        g = g.contiguous(memory_format=getattr(torch, layout))
    before = dict(cpp)
    y, dx, db = _run(x, b, dim, g, _ours)
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"] + 1
    ry, rdx, rdb = _run(x, b, dim % x.dim(), g, ref.flexible_relu)
    assert y.stride() == x.stride() and dx.stride() == x.stride()
    assert bits_equal(y, ry, nan_payload=True)
    assert bits_equal(dx, rdx, nan_payload=True)
    # The bias gradient: float64 sums in block order here, torch's sum there.
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(db, rdb, rtol=tol, atol=tol * x.numel() ** 0.5)
    assert db.dtype == b.dtype and db.shape == b.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[8], CASES[10],
                                  ((3, 32, 7, 9), 1, True, "channels_last"),
                                  ((5, 24, 3, 7), 1, True, "channels_last")],
                         ids=["seg", "one", "cl", "pieces", "flat", "cl_rows16", "cl_rows8"])
def test_every_isa_level_matches_the_reference(isa, case, dtype):
    # The AVX-512, AVX2 and portable loops: the reference's bits for y and dx, kinks included.
    shape, dim, per_channel, layout = case
    x = _make(shape, layout, torch.float32, seed=2).to(dtype)
    b = _case_bias(x, dim, per_channel, dtype)
    g = torch.randn(shape).to(dtype)
    if layout != "contiguous":
        g = g.contiguous(memory_format=getattr(torch, layout))
    y, dx, db = _run(x, b, dim, g, _ours)
    ry, rdx, rdb = _run(x, b, dim % x.dim(), g, ref.flexible_relu)
    nan = ry.isnan()  # bf16 NaN payloads differ (0x7FC0 here); where NaN is, both are NaN
    assert torch.equal(y.isnan(), nan)
    assert bits_equal(y.masked_fill(nan, 0), ry.masked_fill(nan, 0), nan_payload=True)
    assert bits_equal(dx, rdx, nan_payload=True)
    _, _, fdb = _run(x.float(), b.float(), dim % x.dim(), g.float(), ref.flexible_relu)
    torch.testing.assert_close(db.float(), fdb, rtol=1e-5 if dtype == torch.float32 else 1e-2,
                               atol=1e-5 * x.numel() ** 0.5)


def test_nan_passes_the_gradient(cpp):
    # The plain path's semantics: mask = relu(x) != 0, true where x is NaN.
    x = torch.tensor([[float("nan"), -1.0, 2.0, 0.0, -0.0]] * 3).T.contiguous()
    b = torch.tensor([0.5, -0.5, 1.0])
    g = torch.full_like(x, 3.0)
    _, dx, _ = _run(x, b, 1, g, _ours)
    assert dx[:, 0].tolist() == [3.0, 0.0, 3.0, 0.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[5], CASES[8]],
                         ids=["seg", "one", "cl", "dimlast", "pieces"])
def test_low_precision(cpp, case, dtype):
    shape, dim, per_channel, layout = case
    x = _make(shape, layout, torch.float32, seed=1).clamp(-100, 100).nan_to_num(0.0).to(dtype)
    b = _case_bias(x, dim, per_channel, dtype)
    g = torch.randn(shape).to(dtype)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    y, dx, db = _run(x, b, dim, g, _ours)
    # Forward and input gradient: exactly the plain formula in the same dtype (one rounding).
    ry, rdx, rdb = _run(x, b, dim, g, ref.flexible_relu)
    assert bits_equal(y, ry, nan_payload=True) and bits_equal(dx, rdx, nan_payload=True)
    # Bias gradient: DESIGN.md's rule, against float32, twice plain PyTorch's error + atol.
    _, _, fdb = _run(x.float(), b.float(), dim, g.float(), ref.flexible_relu)
    err, plain_err = (db.float() - fdb).abs(), (rdb.float() - fdb).abs()
    assert bool((err <= 2 * plain_err + 1e-2 * (1 + fdb.abs())).all()), (err.max(), plain_err.max())


def test_gradcheck_float64(cpp):
    x = (torch.rand(3, 4, 5, dtype=torch.float64) + 0.1) * torch.tensor([1.0, -1.0]).repeat(30)[:60].view(3, 4, 5)
    x.requires_grad_()
    for b in (torch.randn(4, dtype=torch.float64), torch.randn(1, dtype=torch.float64)):
        b.requires_grad_()
        before = cpp["backward"]
        assert torch.autograd.gradcheck(lambda x, b: RF.flexible_relu(x, b, 1, backend=B), (x, b))
        assert cpp["backward"] > before
        assert torch.autograd.gradgradcheck(lambda x, b: RF.flexible_relu(x, b, 1, backend=B), (x, b))


def test_double_backward_matches_reference(cpp):
    x = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    out = []
    for fn in (_ours, ref.flexible_relu):
        y = fn(x, b, 1)
        dx, db = torch.autograd.grad(y, (x, b), g, create_graph=True)
        out.append(torch.autograd.grad((dx * dx).sum() + db.sum(), g))
    assert torch.equal(out[0][0], out[1][0])


def test_inplace(cpp):
    x0 = _kinky((3, 4, 300), torch.float32)
    b = _bias(4, torch.float32).requires_grad_()
    h0 = x0.clone().requires_grad_()
    h = h0 * 1.0
    before = cpp["forward"]
    y = RF.flexible_relu(h, b, 1, inplace=True, backend=B)
    assert y is h and cpp["forward"] == before + 1
    g = torch.randn_like(x0)
    dh0, db = torch.autograd.grad(y, (h0, b), g)
    ry, rdh0, rdb = _run(x0, b, 1, g, ref.flexible_relu)
    assert bits_equal(y.detach(), ry, nan_payload=True) and bits_equal(dh0, rdh0, nan_payload=True)
    torch.testing.assert_close(db, rdb)


def test_strided_view_is_copied_then_fused(cpp):
    # A view with gaps: one contiguous copy, then the kernel (autograd passes g through the copy).
    base = _kinky((3, 5, 7, 18), torch.float32).requires_grad_()
    b = _bias(5, torch.float32).requires_grad_()
    g = torch.randn(3, 5, 7, 9)
    before = dict(cpp)
    out = []
    for fn in (_ours, ref.flexible_relu):
        y = fn(base[..., ::2], b, 1)
        out.append((y.detach(),) + torch.autograd.grad(y, (base, b), g))
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"] + 1
    assert bits_equal(out[0][0], out[1][0], nan_payload=True) and bits_equal(out[0][1], out[1][1], nan_payload=True)
    torch.testing.assert_close(out[0][2], out[1][2])


def test_inplace_on_a_strided_view_falls_back(cpp):
    # In place on a view with gaps: the plain path (a bool mask), same results.
    x0 = _kinky((3, 5, 7, 18), torch.float32)
    b = _bias(5, torch.float32).requires_grad_()
    g = torch.randn(3, 5, 7, 9)
    before = dict(cpp)
    h0 = x0.clone().requires_grad_()
    h = h0 * 1.0
    y = RF.flexible_relu(h[..., ::2], b, 1, inplace=True, backend=B)
    dh0, db = torch.autograd.grad(y, (h0, b), g)
    assert cpp == before
    ry, rdx, rdb = _run(x0[..., ::2], b, 1, g, ref.flexible_relu)
    assert bits_equal(y.detach(), ry, nan_payload=True) and bits_equal(dh0[..., ::2], rdx, nan_payload=True)
    assert not dh0[..., 1::2].any()
    torch.testing.assert_close(db, rdb)


# Dense layouts other than contiguous: the kernel reads them in memory order.
LAYOUTS = [
    ("channels_last", lambda t: t.contiguous(memory_format=torch.channels_last), 1),
    ("transposed_c_inner", lambda t: t.transpose(1, 3).contiguous().transpose(1, 3), 1),
    ("permuted", lambda t: t.permute(2, 0, 3, 1).contiguous().permute(1, 3, 0, 2), 1),
    ("channel_at_dim2_cl", lambda t: t.contiguous(memory_format=torch.channels_last), 2),
    ("channels_last_one_bias", lambda t: t.contiguous(memory_format=torch.channels_last), None),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("layout", LAYOUTS, ids=[l[0] for l in LAYOUTS])
def test_dense_layouts_use_the_kernel(cpp, layout, dtype):
    _, make, dim = layout
    shape = (3, 13, 5, 7)  # no size a multiple of 8
    x = make(_kinky(shape, torch.float32, seed=7).nan_to_num(0.0).to(dtype))
    g = make(torch.randn(shape).to(dtype))
    b = _bias(shape[dim], dtype) if dim is not None else _bias(1, dtype)
    before = dict(cpp)
    y, dx, db = _run(x, b, dim if dim is not None else 1, g, _ours)
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"] + 1
    ry, rdx, rdb = _run(x, b, dim if dim is not None else 1, g, ref.flexible_relu)
    assert y.stride() == x.stride() and dx.stride() == x.stride()
    assert bits_equal(y, ry, nan_payload=True) and bits_equal(dx, rdx, nan_payload=True)
    tol = 1e-12 if dtype == torch.float64 else (1e-5 if dtype == torch.float32 else 1e-2)
    torch.testing.assert_close(db, rdb, rtol=tol, atol=tol * x.numel() ** 0.5)


def test_gradient_in_another_layout_is_copied_then_fused(cpp):
    # g contiguous while x (and so the mask's order) is channels_last: g is copied into x's order.
    x = _kinky((3, 5, 7, 9), torch.float32).contiguous(memory_format=torch.channels_last)
    b = _bias(5, torch.float32)
    g = torch.randn(3, 5, 7, 9)
    before = dict(cpp)
    y, dx, db = _run(x, b, 1, g, _ours)
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"] + 1
    ry, rdx, rdb = _run(x, b, 1, g, ref.flexible_relu)
    assert bits_equal(y, ry, nan_payload=True) and bits_equal(dx, rdx, nan_payload=True)
    torch.testing.assert_close(db, rdb)


# --------------------------------------------------------------------------------------------
# The bit-packed mask: 1 bit per element, in memory order.


def test_mask_layout_bit_by_bit(cpp):
    # Bit i % 8 of byte i // 8 is relu(x_i) != 0 (x > 0 or NaN); the bits past the end are 0.
    vals = [1.0, -1.0, 0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-45, -1e-45, 2.0, -3.0]
    x = torch.tensor(vals)
    p = E.plan(x, None)
    m = OC.new_mask(x)
    y = torch.empty_like(x)
    E.forward(x, torch.tensor([0.5]), y, m, p)
    want = [1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 0]
    expect = [sum(bit << j for j, bit in enumerate(want[k:k + 8])) for k in range(0, len(want), 8)]
    assert m.dtype == torch.uint8 and m.tolist() == expect
    assert OC.unpack_mask(m, x.shape, x.stride()).tolist() == [bool(v) for v in want]


@pytest.fixture(params=[2, 1, 0], ids=["avx512", "avx2", "portable"])
def isa(request, cpp):
    """Each instruction-set level of the kernels in turn (the CPU's own support still applies)."""
    before = E.set_isa(request.param)
    yield request.param
    E.set_isa(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize(
    "shape,dim",
    [((1, 1, 1), 1), ((5,), 0), ((7, 3, 9), 1), ((2, 3, 301), 1), ((4, 5, 15), 1), ((3, 7, 1001), 1),
     ((300, 9, 11), 1), ((2, 40009), None), ((2, 5, 8200), 1),
     ((30, 48, 5), 1), ((50, 8, 3), 1), ((700, 32), 1)],  # rows of whole AVX-512 / AVX2 vectors
    ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else f"d{v}",
)
def test_mask_bits_on_odd_sizes(isa, shape, dim, dtype):
    # Sizes and runs that are not multiples of 8 or 16 (bytes shared by two channels, a final
    # partial byte), both bias modes, several work items: every bit against relu(x) != 0.
    x = _kinky(shape, torch.float32, seed=11).to(dtype)
    cdim = dim if dim is not None else None
    b = _bias(shape[dim] if dim is not None else 1, dtype)
    p = E.plan(x, cdim)
    assert p is not None
    m = OC.new_mask(x)
    y = torch.empty_like(x)
    E.forward(x, b, y, m, p)
    n = x.numel()
    assert m.numel() == (n + 7) // 8
    assert torch.equal(OC.unpack_mask(m, x.shape, x.stride()), torch.relu(x) != 0)
    if n % 8:
        assert int(m[-1]) >> (n % 8) == 0
    g = torch.randn(shape).to(dtype)
    dx, db = E.backward(g, m, True, True, p)
    assert bits_equal(dx, torch.where(torch.relu(x) != 0, g, torch.zeros_like(g)), nan_payload=True)
    dims = [d for d in range(x.dim()) if d != cdim]
    rdb = g.double().sum(dims) if dims else g.double()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(db, rdb.reshape(-1), rtol=tol, atol=tol * n ** 0.5)


@pytest.mark.parametrize("per_channel", [True, False])
def test_mask_keeps_one_bit_per_element(cpp, per_channel):
    # What autograd saves: the packed mask only, ceil(n / 8) bytes (x is not kept).
    shape = (3, 5, 7, 11)
    x = torch.randn(shape, requires_grad=True)
    h = x * 1.0
    b = _bias(5 if per_channel else 1, torch.float32).requires_grad_()
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = RF.flexible_relu(h, b, 1, backend=B)
    seen.pop(y.untyped_storage().data_ptr(), None)
    assert sum(seen.values()) == (x.numel() + 7) // 8


def _results(shape=(4, 6, 300), dim=1):
    x = _kinky(shape, torch.float32, seed=3)
    b = _bias(shape[dim], torch.float32)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    return _run(x, b, dim, g, _ours)


def test_env_var_disables_the_kernel(cpp, monkeypatch):
    on = _results()
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    before = dict(cpp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a deliberate opt-out
        off = _results()
    assert cpp == before
    assert bits_equal(on[0], off[0], nan_payload=True) and bits_equal(on[1], off[1], nan_payload=True)
    torch.testing.assert_close(on[2], off[2])


def test_build_failure_warns_once_and_falls_back(broken_build):
    before = dict(E.CALLS)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        first = _results()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        second = _results()
    assert E.CALLS == before
    x = _kinky((4, 6, 300), torch.float32, seed=3)
    g = torch.randn((4, 6, 300), generator=torch.Generator().manual_seed(4))
    ry, rdx, rdb = _run(x, _bias(6, torch.float32), 1, g, ref.flexible_relu)
    for got in (first, second):
        assert bits_equal(got[0], ry, nan_payload=True) and bits_equal(got[1], rdx, nan_payload=True)
    assert bits_equal(first[0], second[0], nan_payload=True) and torch.equal(first[1], second[1])


def _at_threads(n: int, fn):
    """``fn()`` run with ``n`` intra-op threads, the setting restored afterwards."""
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(n)
        return fn()
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("shape", [(8, 3, 20000), (20000, 7, 5)], ids=["segment", "row"])
def test_deterministic_across_thread_counts(cpp, shape):
    x = _kinky(shape, torch.float32, seed=5)
    b = _bias(shape[1], torch.float32)
    g = torch.randn(shape)
    one, two = (_at_threads(n, lambda: _run(x, b, 1, g, _ours)) for n in (1, 2))
    assert bits_equal(one[2], two[2], nan_payload=True)


@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_no_grad_uses_the_built_kernel_without_a_mask(cpp, layout, inplace):
    # Under no_grad the kernel, once built, writes y alone in one pass: the plain formula's bits.
    x = _make((3, 5, 7, 9), layout, torch.float32)
    b = torch.linspace(-1.0, 0.5, 5, requires_grad=True)
    want = ref.flexible_relu(x, b.detach(), 1)
    before = dict(cpp)
    h = x.clone()
    with torch.no_grad():
        y = RF.flexible_relu(h, b, 1, inplace=inplace, backend=B)
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"]
    assert (y is h) == inplace and y.stride() == x.stride()
    assert bits_equal(y, want, nan_payload=True)


def test_in_place_under_no_grad_is_seen_by_autograd(cpp):
    # Overwriting a tensor that a graph saved, in place under no_grad, must make its backward
    # fail as with torch's own in-place ops, not give a silently wrong gradient.
    w = torch.randn(4, 5, 300, requires_grad=True)
    y = torch.sigmoid(w * 1.0)  # sigmoid keeps its output y
    before = dict(cpp)
    with torch.no_grad():
        RF.flexible_relu(y, torch.randn(5), 1, inplace=True, backend=B)
    assert cpp["forward"] == before["forward"] + 1
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_in_place_on_a_dense_view_uses_the_kernel(cpp):
    # In place on a view without gaps (a slice along the first dim): the kernel, and autograd
    # rebases the view's history.
    x0 = _kinky((6, 5, 300), torch.float32)
    b = _bias(5, torch.float32).requires_grad_()
    g = torch.randn(2, 5, 300)
    h0 = x0.clone().requires_grad_()
    h = h0 * 1.0
    before = dict(cpp)
    y = RF.flexible_relu(h[2:4], b, 1, inplace=True, backend=B)
    dh0, db = torch.autograd.grad(y, (h0, b), g)
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"] + 1
    ry, rdx, rdb = _run(x0[2:4], b, 1, g, ref.flexible_relu)
    assert bits_equal(y.detach(), ry, nan_payload=True) and bits_equal(dh0[2:4], rdx, nan_payload=True)
    assert not dh0[:2].any() and not dh0[4:].any()  # y is the slice alone
    torch.testing.assert_close(db, rdb)


def test_no_grad_never_starts_the_build(monkeypatch):
    # Inference alone does not compile the kernel: the plain formula, no build attempt.
    monkeypatch.delenv("RECTIFIERS_NO_CPP", raising=False)
    monkeypatch.setitem(E._state, "tried", False)
    monkeypatch.setitem(E._state, "ok", False)

    def no_build() -> None:
        raise AssertionError("no_grad started a build")

    monkeypatch.setattr(E, "_build", no_build)
    x = torch.randn(2, 3, 300, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    before = dict(E.CALLS)
    with torch.no_grad():
        y = RF.flexible_relu(x, b, 1, backend=B)
    assert E.CALLS == before and E._state["tried"] is False
    assert torch.equal(y, ref.flexible_relu(x.detach(), b.detach(), 1))


# --------------------------------------------------------------------------------------------
# PReLU: the same kernel file, one more pair of ops.

import torch.nn.functional as F  # noqa: E402

# Slope sets: all in (0, 1] (the output is kept, x = y / a recovered), and keep-x ones
# (a slope <= 0, -0.0 included, or > 1: the input is kept).
SLOPES = ["keep_y", "keep_x"]


def _slopes(c: int, kind: str, dtype) -> torch.Tensor:
    if kind == "keep_y":
        a = torch.linspace(0.05, 1.0, c) if c > 1 else torch.tensor([0.25])
    else:
        a = torch.linspace(-0.5, 1.75, c) if c > 1 else torch.tensor([1.5])
        if c > 2:
            a[1] = -0.0
    return a.to(dtype)


def _p_ours(x, a, d):
    return RF.prelu(x, a, d, backend=B)


def _p_ref(x, a, d):
    return ref.prelu(x, a, d)


def _p_case_slopes(x, dim, per_channel, kind, dtype):
    c = x.shape[dim] if (per_channel and x.dim() > 1) or (x.dim() == 1 and dim == 0) else 1
    return _slopes(c, kind, dtype)


def _p_plain(x, a, dim, g, monkeypatch):
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    try:
        return _run(x, a, dim, g, _p_ours)
    finally:
        monkeypatch.delenv("RECTIFIERS_NO_CPP")


@pytest.mark.parametrize("kind", SLOPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-d{c[1]}-{'ch' if c[2] else 'one'}-{c[3]}")
def test_prelu_exact_against_reference(cpp, case, dtype, kind, monkeypatch):
    shape, dim, per_channel, layout = case
    x = _make(shape, layout, dtype)
    a = _p_case_slopes(x, dim, per_channel, kind, dtype)
    g = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    if layout != "contiguous":
        g = g.contiguous(memory_format=getattr(torch, layout))
    before = dict(cpp)
    y, dx, da = _run(x, a, dim, g, _p_ours)
    assert cpp["prelu_forward"] == before["prelu_forward"] + 1
    assert cpp["prelu_backward"] == before["prelu_backward"] + 1
    d = dim % x.dim()
    ry, rdx, rda = _run(x, a, d, g, _p_ref)
    assert y.stride() == x.stride() and dx.stride() == x.stride()
    assert bits_equal(y, ry, nan_payload=True)
    # The input gradient: equal values (the reference's autograd adds the where's two branch
    # gradients, 0 + a*g, which turns -0.0 into +0.0 for the slope -0.0; torch.nn's PReLU and
    # the plain path keep -0.0 like the kernel: bitwise below).
    torch.testing.assert_close(dx, rdx, rtol=0, atol=0, equal_nan=True)
    if a.numel() == 1 or d == 1:  # torch's own PReLU: the same forward and input gradient
        ty, tdx, _ = _run(x, a, d, g, lambda x, a, _d: F.prelu(x, a))
        assert bits_equal(y, ty, nan_payload=True) and bits_equal(dx, tdx, nan_payload=True)
    # The slope gradient: float64 sums in block order here, torch's sum there (NaN where a NaN
    # input, or inf against -inf, is in the channel, on both sides). The reference's autograd
    # gives 0 * x = NaN at x = +inf, outside the sum over x <= 0: it sees the largest finite
    # value there instead (the same sum), torch.nn's PReLU sees x itself.
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    xr = torch.where(x == float("inf"), torch.finfo(dtype).max, x)
    _, _, rda = _run(xr, a, d, g, _p_ref)
    torch.testing.assert_close(da, rda, rtol=tol, atol=tol * x.numel() ** 0.5, equal_nan=True)
    if a.numel() == 1 or d == 1:
        _, _, tda = _run(x, a, d, g, lambda x, a, _d: F.prelu(x, a))
        torch.testing.assert_close(da, tda, rtol=tol, atol=tol * x.numel() ** 0.5, equal_nan=True)
    assert da.dtype == a.dtype and da.shape == a.shape
    # The plain-torch path gives the same forward and input gradient, bit for bit.
    py, pdx, pda = _p_plain(x, a, dim, g, monkeypatch)
    assert bits_equal(y, py, nan_payload=True) and bits_equal(dx, pdx, nan_payload=True)
    torch.testing.assert_close(da, pda, rtol=tol, atol=tol * x.numel() ** 0.5, equal_nan=True)


def test_prelu_kinks(cpp):
    # Per channel: column c holds the kinks, slope 0.5 (keep y) or -2 (keep x).
    col = torch.tensor([float("nan"), -1.0, 2.0, 0.0, -0.0, 1e-45, -1e-45, float("inf"), float("-inf")])
    x = torch.stack([col, col], 1).contiguous()
    g = torch.full_like(x, 3.0)
    for a in (torch.tensor([0.5, 0.5]), torch.tensor([-2.0, -2.0])):
        y, dx, da = _run(x, a, 1, g, _p_ours)
        ry, rdx, rda = _run(x, a, 1, g, _p_ref)
        assert bits_equal(y, ry, nan_payload=True) and bits_equal(dx, rdx, nan_payload=True)
        s = float(a[0])
        assert dx[:, 0].tolist()[1:] == [3 * s, 3.0, 3 * s, 3 * s, 3.0, 3 * s, 3.0, 3 * s]
        assert dx[0, 0].item() == 3 * s  # a NaN input: a*g, as torch.nn.PReLU
        assert torch.isnan(da).all()  # NaN input in the channel
    finite = x[1:7]
    for a in (torch.tensor([0.5, 0.5]), torch.tensor([-2.0, -2.0])):
        _, _, da = _run(finite, a, 1, torch.full_like(finite, 3.0), _p_ours)
        assert da.tolist() == [-3.0, -3.0]  # only x = -1 counts (-1e-45 * 3 is far below)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", SLOPES)
@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[5], CASES[8]],
                         ids=["seg", "one", "cl", "dimlast", "pieces"])
def test_prelu_low_precision(cpp, case, kind, dtype):
    shape, dim, per_channel, layout = case
    x = _make(shape, layout, torch.float32, seed=1).clamp(-100, 100).nan_to_num(0.0).to(dtype)
    a = _p_case_slopes(x, dim, per_channel, kind, dtype)
    g = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    before = cpp["prelu_backward"]
    y, dx, da = _run(x, a, dim, g, _p_ours)
    assert cpp["prelu_backward"] == before + 1
    ry, rdx, rda = _run(x, a, dim, g, _p_ref)
    assert bits_equal(y, ry, nan_payload=True)
    torch.testing.assert_close(dx, rdx, rtol=0, atol=0)  # values: -0.0 as in the fp32 test
    if a.numel() == 1 or dim == 1:  # bitwise as torch.nn's PReLU in the same dtype
        ty, tdx, _ = _run(x, a, dim, g, lambda x, a, _d: F.prelu(x, a))
        assert bits_equal(y, ty, nan_payload=True) and bits_equal(dx, tdx, nan_payload=True)
    # Slope gradient: DESIGN.md's rule as test_parity applies it, against float32: at most twice
    # plain PyTorch's largest error + atol scaled by the largest gradient (with the output kept,
    # x = y / a carries y's rounding, about 2**-9 of each |g*x| in bf16: a channel whose sum
    # cancels sees it relative to the terms, not to the sum).
    _, _, fda = _run(x.float(), a.float(), dim, g.float(), _p_ref)
    err = (da.float() - fda).abs().max().item()
    plain_err = (rda.float() - fda).abs().max().item()
    atol = {torch.float16: 1e-3, torch.bfloat16: 1e-2}[dtype]
    assert err <= 2 * plain_err + atol * (fda.abs().max().item() + 1.0), (err, plain_err)


def _prelu_kept(x: torch.Tensor, a: torch.Tensor):
    """(y, the input-sized tensor autograd saved, the slope gradient for g = 1)."""
    x = x.detach().clone().requires_grad_()
    seen = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: seen.append(t) or t, lambda t: t):
        y = RF.prelu(x, a, 1, backend=B)
    kept = [t for t in seen if t.shape == x.shape]
    assert len(kept) == 1
    (da,) = torch.autograd.grad(y, a, torch.ones_like(y))
    return x, y, kept[0], da


def _underflow_cases(shape, dtype):
    """x in the normal range, then with one ``x < 0`` whose ``a*x`` (a = 0.25) is subnormal in
    ``dtype``, at the first and at the last element; with -0.0 and NaN, which do not count."""
    tiny = torch.finfo(dtype).tiny
    x = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    x = torch.where(x.abs() < 0.05, 0.5, x).to(dtype)
    x.view(-1)[1], x.view(-1)[2] = -0.0, float("nan")
    yield x, False
    for where in (0, -1):
        u = x.clone()
        u.view(-1)[where] = -2 * tiny
        yield u, True


def _check_underflow_cases(shape, dtype, checked=True):
    """``checked``: whether this path tests for underflow (the kernel always; the plain path in
    float16 only, where it is common: elsewhere it takes |x| near 1e-36 and a full extra pass)."""
    a = torch.full((shape[1],), 0.25, dtype=dtype, requires_grad=True)
    for x, underflows in _underflow_cases(shape, dtype):
        x, y, kept, da = _prelu_kept(x, a)
        assert kept.data_ptr() == (x if underflows and checked else y).data_ptr(), (underflows, shape, dtype)
        want = torch.where(x.double() > 0, 0.0, x.double()).nansum((0, 2, 3))
        want[0] = float("nan")  # the NaN at element 2 is in channel 0
        torch.testing.assert_close(da.double(), want, equal_nan=True, check_dtype=False,
                                   **({} if dtype == torch.float64 else {"rtol": 1e-2, "atol": 1e-2}))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(4, 6, 9, 31), (3, 5, 7, 9)], ids=["segment", "row"])
def test_prelu_keeps_the_input_where_a_times_x_underflows(isa, shape, dtype):
    # y = a*x below the dtype's normal range (subnormal or zero) no longer gives x = y / a to
    # the dtype's precision (float16 at small activations): the kernel's forward tells, and the
    # input is kept instead of the output; in the normal range nothing is (issue 13, item 7).
    before = E.CALLS["prelu_forward"]
    _check_underflow_cases(shape, dtype)
    assert E.CALLS["prelu_forward"] == before + 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_prelu_keeps_the_input_where_a_times_x_underflows_plain(monkeypatch, dtype):
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    before = E.CALLS["prelu_forward"]
    # float32: not checked, y kept; the gradient is still right here (-2*tiny * 0.25 is exact)
    _check_underflow_cases((3, 5, 7, 9), dtype, checked=dtype == torch.float16)
    assert E.CALLS["prelu_forward"] == before


def test_prelu_gradcheck_float64(cpp):
    x = (torch.rand(3, 4, 5, dtype=torch.float64) + 0.1) * torch.tensor([1.0, -1.0]).repeat(30)[:60].view(3, 4, 5)
    x.requires_grad_()
    for a in ([0.25, 0.5, 1.0, 0.1], [-0.5, 0.0, 1.5, 0.3], [0.3], [-0.7]):
        a = torch.tensor(a, dtype=torch.float64, requires_grad=True)
        before = cpp["prelu_backward"]
        assert torch.autograd.gradcheck(lambda x, a: RF.prelu(x, a, 1, backend=B), (x, a))
        assert cpp["prelu_backward"] > before
        assert torch.autograd.gradgradcheck(lambda x, a: RF.prelu(x, a, 1, backend=B), (x, a))


def test_prelu_strided_input_is_packed_for_the_kernel(cpp):
    # A view with gaps is copied to a dense tensor first (faster than torch's strided loops),
    # then runs the kernel; the gradient reaches the base through the copy.
    base = _kinky((3, 5, 7, 18), torch.float32).requires_grad_()
    a = _slopes(5, "keep_y", torch.float32).requires_grad_()
    g = torch.randn(3, 5, 7, 9)
    before = dict(cpp)
    out = []
    for fn in (_p_ours, _p_ref):
        y = fn(base[..., ::2], a, 1)
        out.append((y.detach(),) + torch.autograd.grad(y, (base, a), g))
        if fn is _p_ours:
            assert cpp["prelu_forward"] == before["prelu_forward"] + 1
            assert cpp["prelu_backward"] == before["prelu_backward"] + 1
    before = dict(cpp)
    assert bits_equal(out[0][0], out[1][0], nan_payload=True) and bits_equal(out[0][1], out[1][1], nan_payload=True)
    torch.testing.assert_close(out[0][2], out[1][2], equal_nan=True)
    x = _kinky((3, 5, 7, 9), torch.float32).contiguous(memory_format=torch.channels_last)
    # g contiguous, the kept tensor channels_last: g is copied to the kept tensor's layout (one
    # pass), then the kernel runs.
    y, dx, da = _run(x, a, 1, g, _p_ours)
    assert cpp["prelu_forward"] == before["prelu_forward"] + 1
    assert cpp["prelu_backward"] == before["prelu_backward"] + 1
    ry, rdx, rda = _run(x, a, 1, g, _p_ref)
    assert bits_equal(dx, rdx, nan_payload=True)
    torch.testing.assert_close(da, rda, equal_nan=True)


def _p_results(kind):
    x = _kinky((4, 6, 300), torch.float32, seed=3)
    a = _slopes(6, kind, torch.float32)
    g = torch.randn((4, 6, 300), generator=torch.Generator().manual_seed(4))
    return _run(x, a, 1, g, _p_ours)


@pytest.mark.parametrize("kind", SLOPES)
def test_prelu_env_var_disables_the_kernel(cpp, monkeypatch, kind):
    on = _p_results(kind)
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    before = dict(cpp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        off = _p_results(kind)
    assert cpp == before
    assert bits_equal(on[0], off[0], nan_payload=True) and bits_equal(on[1], off[1], nan_payload=True)
    torch.testing.assert_close(on[2], off[2], equal_nan=True)


def test_prelu_build_failure_falls_back(broken_build):
    before = dict(E.CALLS)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        got = _p_results("keep_y")
    assert E.CALLS == before
    x = _kinky((4, 6, 300), torch.float32, seed=3)
    g = torch.randn((4, 6, 300), generator=torch.Generator().manual_seed(4))
    ry, rdx, _ = _run(x, _slopes(6, "keep_y", torch.float32), 1, g, _p_ref)
    assert bits_equal(got[0], ry, nan_payload=True) and bits_equal(got[1], rdx, nan_payload=True)


@pytest.mark.parametrize("per_channel", [True, False])
def test_prelu_deterministic_across_thread_counts(cpp, per_channel):
    x = torch.randn(8, 3, 20000, generator=torch.Generator().manual_seed(5))
    a = _slopes(3 if per_channel else 1, "keep_y", torch.float32)
    g = torch.randn(8, 3, 20000)
    one, two = (_at_threads(n, lambda: _run(x, a, 1, g, _p_ours)) for n in (1, 2))
    assert bits_equal(one[2], two[2], nan_payload=True)


def test_prelu_no_grad_does_not_use_the_kernel(cpp):
    x = torch.randn(2, 3, 300, requires_grad=True)
    a = torch.rand(3, requires_grad=True)
    before = dict(cpp)
    with torch.no_grad():
        RF.prelu(x, a, 1, backend=B)
    assert cpp == before
