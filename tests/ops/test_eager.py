"""The eager backend against the reference formulas: forward, backward, kinks, dtypes, layouts.

Every case runs ``rectifiers.functional`` with ``backend="eager"`` and compares it with
``rectifiers.reference`` (imported, never copied), forward and backward.
"""

from __future__ import annotations

import pytest
import torch

import rectifiers as R
import rectifiers.functional as RF
from rectifiers import reference as ref

B = "eager"


# --------------------------------------------------------------------------------------------
# Cases: name -> (parameter maker (channels) -> tensor | None, eager call, reference call)


def _slopes(c: int) -> torch.Tensor:
    return torch.linspace(0.05, 0.9, c) if c > 1 else torch.tensor([0.25])


def _bad_slopes(c: int) -> torch.Tensor:
    # 0, negative and > 1: the PReLU fallback that keeps the input.
    vals = torch.tensor([0.0, -0.5, 1.7, 0.3])
    return vals.repeat(c // 4 + 1)[:c] if c > 1 else torch.tensor([-0.5])


CASES = {
    "relu": (None, lambda x, p, d: RF.relu(x, backend=B), lambda x, p, d: ref.relu(x)),
    "leaky": (None, lambda x, p, d: RF.leaky_relu(x, 0.01, backend=B), lambda x, p, d: ref.leaky_relu(x, 0.01)),
    "leaky_zero": (None, lambda x, p, d: RF.leaky_relu(x, 0.0, backend=B), lambda x, p, d: ref.leaky_relu(x, 0.0)),
    "leaky_neg": (None, lambda x, p, d: RF.leaky_relu(x, -0.2, backend=B), lambda x, p, d: ref.leaky_relu(x, -0.2)),
    "leaky_steep": (None, lambda x, p, d: RF.leaky_relu(x, 1.5, backend=B), lambda x, p, d: ref.leaky_relu(x, 1.5)),
    "prelu_scalar": (lambda c: torch.tensor([0.25]), lambda x, p, d: RF.prelu(x, p, d, backend=B),
                     lambda x, p, d: ref.prelu(x, p, d)),
    "prelu_channel": (_slopes, lambda x, p, d: RF.prelu(x, p, d, backend=B), lambda x, p, d: ref.prelu(x, p, d)),
    "prelu_fallback": (_bad_slopes, lambda x, p, d: RF.prelu(x, p, d, backend=B),
                       lambda x, p, d: ref.prelu(x, p, d)),
    "frelu_scalar": (lambda c: torch.tensor([-1.0]), lambda x, p, d: RF.flexible_relu(x, p, d, backend=B),
                     lambda x, p, d: ref.flexible_relu(x, p, d)),
    "frelu_channel": (lambda c: torch.linspace(-1.0, 0.5, c) if c > 1 else torch.tensor([0.3]),
                      lambda x, p, d: RF.flexible_relu(x, p, d, backend=B),
                      lambda x, p, d: ref.flexible_relu(x, p, d)),
}
CHANNEL_CASES = [k for k in CASES if k.endswith("_channel") or k == "prelu_fallback"]


def _ref_dim(x: torch.Tensor, dim: int) -> int:
    return dim % x.dim() if x.dim() else 0


def _param(name: str, x: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor | None:
    maker = CASES[name][0]
    if maker is None:
        return None
    c = x.shape[dim] if x.dim() > 1 or (x.dim() == 1 and dim == 0) else 1
    return maker(c).to(dtype).requires_grad_()


def _run(fn, x: torch.Tensor, p: torch.Tensor | None, dim: int, g: torch.Tensor):
    """Forward and the gradients of (x, p) for the upstream gradient g."""
    y = fn(x, p, dim)
    ins = [x] + ([p] if p is not None else [])
    grads = torch.autograd.grad(y, ins, g)
    return y, grads


# Layouts: (shape, dim, how to make x from a contiguous tensor)
LAYOUTS = {
    "odd4d": ((3, 5, 7, 9), 1, lambda t: t),
    "channels_last": ((3, 5, 7, 9), 1, lambda t: t.contiguous(memory_format=torch.channels_last)),
    "strided": ((3, 5, 7, 18), 1, lambda t: t[..., ::2]),
    "transposed": ((3, 9, 7, 5), 3, lambda t: t.transpose(1, 3)),
    # a view with gaps whose strides are not in the contiguous order: the output keeps that
    # order, as torch's element-wise ops do (strides (630, 126, 1, 14) -> y (315, 63, 1, 7))
    "strided_transposed": ((3, 5, 18, 7), 1, lambda t: t.transpose(2, 3)[..., ::2]),
    "dim_last": ((2, 7, 5), -1, lambda t: t),
    "one_element": ((1, 1, 1), 1, lambda t: t),
    "1d_channels": ((11,), 0, lambda t: t),
}


def _make_x(layout: str, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, int]:
    shape, dim, how = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    x = how(base).detach().requires_grad_()
    return x, dim


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference(name: str, layout: str, dtype: torch.dtype) -> None:
    x, dim = _make_x(layout, dtype)
    p = _param(name, x, dim, dtype)
    _, fn, rfn = CASES[name]
    g = torch.randn(x.shape, dtype=dtype)
    y, grads = _run(fn, x, p, dim, g)
    yr, grads_r = _run(rfn, x, p, _ref_dim(x, dim), g)
    # Forward bit for bit, as torch.nn in fp32 and fp64.
    torch.testing.assert_close(y, yr, rtol=0, atol=0)
    assert y.dtype == x.dtype
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b)
        assert a.dtype == b.dtype
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
    elif layout in ("strided", "transposed", "strided_transposed"):
        assert y.stride() == yr.stride()


def _lowp_tol(lowp: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype) -> float:
    """Twice plain PyTorch's error in ``dtype``, plus two units of that dtype's precision at the
    scale of the values (a sum may round either way) and 1e-3."""
    lowp, exact = lowp.detach().double(), exact.detach().double()
    scale = float(exact.abs().max()) if exact.numel() else 0.0
    return 2 * float((lowp - exact).abs().max()) + 1e-3 + 2 * torch.finfo(dtype).eps * scale


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("layout", ["odd4d", "channels_last", "dim_last"])
def test_low_precision(name: str, dtype: torch.dtype, layout: str) -> None:
    """Within twice the error plain PyTorch makes in the same dtype (vs fp32), plus 1e-3."""
    x, dim = _make_x(layout, dtype, seed=1)
    p = _param(name, x, dim, dtype)
    _, fn, rfn = CASES[name]
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)).to(dtype)
    y, grads = _run(fn, x, p, dim, g)
    y = y.detach()
    d = _ref_dim(x, dim)
    yl, grads_l = _run(rfn, x, p, d, g)  # the reference in the low dtype
    yl = yl.detach()
    x32 = x.detach().float().requires_grad_()
    p32 = None if p is None else p.detach().float().requires_grad_()
    y32, grads_32 = _run(rfn, x32, p32, d, g.float())
    y32 = y32.detach()
    assert y.dtype == dtype
    assert float((y.double() - y32.double()).abs().max()) <= _lowp_tol(yl, y32, dtype)
    for a, lo, e in zip(grads, grads_l, grads_32):
        assert a.dtype == lo.dtype
        assert float((a.double() - e.double()).abs().max()) <= _lowp_tol(lo, e, dtype)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kinks(name: str, dtype: torch.dtype) -> None:
    """0, -0.0, the smallest normal and subnormal of either sign, NaN, +-inf: bit for bit."""
    fi = torch.finfo(dtype)
    sub = fi.tiny * fi.eps
    vals = [0.0, -0.0, fi.tiny, -fi.tiny, sub, -sub, float("nan"), float("inf"), float("-inf"), 1.0, -1.0, 3.0]
    row = torch.tensor(vals, dtype=dtype)
    x = row.expand(2, 3, len(vals)).clone().requires_grad_()
    dim = 1
    p = _param(name, x, dim, dtype)
    _, fn, rfn = CASES[name]
    g = torch.linspace(-2, 2, x.numel(), dtype=dtype).reshape(x.shape)
    y, grads = _run(fn, x, p, dim, g)
    yr, grads_r = _run(rfn, x, p, dim, g)
    torch.testing.assert_close(y, yr, rtol=0, atol=0, equal_nan=True)
    fin = ~torch.isnan(yr)
    assert torch.equal(torch.signbit(y[fin]), torch.signbit(yr[fin])), "signed zeros differ"
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("name", list(CASES))
def test_gradcheck(name: str) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 5, generator=gen, dtype=torch.float64)
    x = (x + 0.05 * x.sign()).requires_grad_()  # away from the kink, where no derivative exists
    p = _param(name, x, 1, torch.float64)
    _, fn, _ = CASES[name]
    ins = (x,) if p is None else (x, p)
    f = (lambda x_: fn(x_, None, 1)) if p is None else (lambda x_, p_: fn(x_, p_, 1))
    assert torch.autograd.gradcheck(f, ins)
    assert torch.autograd.gradgradcheck(f, ins)


@pytest.mark.parametrize("name", ["relu", "leaky", "leaky_zero", "leaky_steep", "frelu_scalar", "frelu_channel"])
def test_inplace(name: str) -> None:
    """In-place on a non-leaf: the input tensor is overwritten and returned, gradients as out-of-place."""
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(3, 4, 5, 6, generator=gen, dtype=torch.float64)
    g = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    p = _param(name, x0, 1, torch.float64)
    slope = {"leaky": 0.01, "leaky_zero": 0.0, "leaky_steep": 1.5}.get(name)

    def call(h: torch.Tensor, inplace: bool) -> torch.Tensor:
        if name == "relu":
            return RF.relu(h, inplace, backend=B)
        if slope is not None:
            return RF.leaky_relu(h, slope, inplace, backend=B)
        return RF.flexible_relu(h, p, 1, inplace, backend=B)

    outs = []
    for inplace in (False, True):
        x = x0.clone().requires_grad_()
        h = x * 1.0
        y = call(h, inplace)
        if inplace:
            assert y.data_ptr() == h.data_ptr()
        ins = [x] + ([p] if p is not None else [])
        outs.append((y.detach().clone(), torch.autograd.grad(y, ins, g)))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(CASES))
def test_no_grad_path_is_plain(name: str) -> None:
    x, dim = _make_x("odd4d", torch.float32)
    p = _param(name, x, dim, torch.float32)
    _, fn, rfn = CASES[name]
    with torch.no_grad():
        y = fn(x, p, dim)
    assert y.grad_fn is None
    torch.testing.assert_close(y, rfn(x, p, dim).detach(), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["prelu_scalar", "prelu_channel", "frelu_channel"])
@pytest.mark.parametrize("xdtype,pdtype", [(torch.bfloat16, torch.float32), (torch.float64, torch.float32),
                                           (torch.float32, torch.float64)])
def test_parameter_dtype_differs(name: str, xdtype: torch.dtype, pdtype: torch.dtype) -> None:
    x, dim = _make_x("odd4d", xdtype)
    p = _param(name, x, dim, pdtype)
    _, fn, _ = CASES[name]
    y = fn(x, p, dim)
    assert y.dtype == xdtype
    gx, gp = torch.autograd.grad(y, (x, p), torch.ones_like(y))
    assert gx.dtype == xdtype and gp.dtype == pdtype
    # Against the reference computed with the parameter cast to x's dtype.
    x32, p32 = x.detach().double(), p.detach().to(xdtype).double()
    gp_ref = torch.autograd.grad(CASES[name][2](x32, p32.requires_grad_(), dim), p32, torch.ones(x.shape, dtype=torch.float64))[0]
    torch.testing.assert_close(gp.double(), gp_ref, rtol=2e-2, atol=1e-2 * x.numel() ** 0.5)


def test_prelu_slope_changes_between_steps() -> None:
    """The kept tensor is chosen per call: a slope driven to 0 later must still give exact grads."""
    m = R.PReLU(3, backend=B).double()
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    for w in ([0.25, 0.5, 1.0], [0.0, 0.5, 1.0], [-0.3, 2.0, 0.1]):
        with torch.no_grad():
            m.weight.copy_(torch.tensor(w))
        y = m(x)
        g = torch.randn_like(y)
        a = torch.autograd.grad(y, (x, m.weight), g)
        b = torch.autograd.grad(ref.prelu(x, m.weight, 1), (x, m.weight), g)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v)


# --------------------------------------------------------------------------------------------
# Funnel


def _funnel_pair(nsp: int, c: int, k: int, dtype: torch.dtype, bias: bool, seed: int = 0):
    cls = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}[nsp]
    torch.manual_seed(seed)
    m = cls(c, k, bias=bias, backend=B).to(dtype)
    with torch.no_grad():
        m.bn_weight.uniform_(0.5, 1.5)
        m.bn_bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 2.0)
    mr = cls(c, k, bias=bias, backend="torch").to(dtype)
    mr.load_state_dict(m.state_dict())
    return m, mr


def _funnel_ref_grads(mr, x, g):
    y = mr(x)
    return y, torch.autograd.grad(y, [x] + list(mr.parameters()), g)


FUNNEL_LAYOUTS = {
    1: [("contig", lambda t: t), ("strided", lambda t: t[..., ::2])],
    2: [("contig", lambda t: t), ("channels_last", lambda t: t.contiguous(memory_format=torch.channels_last)),
        ("strided", lambda t: t[..., ::2])],
    3: [("contig", lambda t: t), ("channels_last_3d", lambda t: t.contiguous(memory_format=torch.channels_last_3d))],
}
FUNNEL_CASES = [(nsp, name, how) for nsp, lst in FUNNEL_LAYOUTS.items() for name, how in lst]


@pytest.mark.parametrize("nsp,layout,how", FUNNEL_CASES, ids=[f"{n}d-{l}" for n, l, _ in FUNNEL_CASES])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("k,bias", [(3, False), (5, True)])
def test_funnel_matches_reference(nsp, layout, how, training, k, bias) -> None:
    dtype = torch.float64
    m, mr = _funnel_pair(nsp, 4, k, dtype, bias)
    m.train(training)
    mr.train(training)
    shape = (3, 4) + (7, 10, 5)[:nsp]
    base = torch.randn(shape[:-1] + (shape[-1] * (2 if layout == "strided" else 1),), dtype=dtype)
    x = how(base).detach().requires_grad_()
    g = torch.randn(x.shape, dtype=dtype)
    y = m(x)
    grads = torch.autograd.grad(y, [x] + list(m.parameters()), g)
    yr, grads_r = _funnel_ref_grads(mr, x, g)
    torch.testing.assert_close(y, yr)
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b)
    # Running statistics updated once per forward, as the formula does.
    torch.testing.assert_close(m.running_mean, mr.running_mean)
    torch.testing.assert_close(m.running_var, mr.running_var)
    assert int(m.num_batches_tracked) == int(mr.num_batches_tracked)
    if layout.startswith("channels_last"):
        fmt = torch.channels_last if nsp == 2 else torch.channels_last_3d
        assert y.is_contiguous(memory_format=fmt)
    else:
        assert y.stride() == yr.stride()


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("nsp", [1, 2])
def test_funnel_gradcheck(training: bool, nsp: int) -> None:
    torch.manual_seed(4)
    c = 2
    shape = (2, c) + (4, 3)[:nsp]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.randn((c, 1) + (3,) * nsp, dtype=torch.float64, requires_grad=True)
    cb = torch.randn(c, dtype=torch.float64, requires_grad=True)
    bw = torch.rand(c, dtype=torch.float64).add_(0.5).requires_grad_()
    bb = torch.randn(c, dtype=torch.float64, requires_grad=True)
    rm = torch.zeros(c, dtype=torch.float64)
    rv = torch.ones(c, dtype=torch.float64)

    def f(x_, w_, cb_, bw_, bb_):
        return RF.funnel_relu(x_, w_, bw_, bb_, None if training else rm, None if training else rv,
                              training, 0.1, 1e-5, conv_bias=cb_, backend=B)

    ins = (x, w, cb, bw, bb)
    assert torch.autograd.gradcheck(f, ins)
    assert torch.autograd.gradgradcheck(f, ins, fast_mode=True)


@pytest.mark.parametrize("training", [True, False])
def test_funnel_ties_and_nan(training: bool) -> None:
    """Ties split the gradient (x == T where T is 0), NaN follows torch.maximum: bit for bit."""
    m, mr = _funnel_pair(2, 3, 3, torch.float64, False)
    with torch.no_grad():
        for mod in (m, mr):
            mod.weight.zero_()
            mod.bn_weight.zero_()
            mod.bn_bias.zero_()
    m.train(training)
    mr.train(training)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    x[0, :, 1, :] = 0.0
    x[1, 0, 0, 0] = -0.0
    x[1, 1, 2, 3] = float("inf")
    if not training:  # in training a NaN spreads to the whole channel through the batch statistics
        x[1, 2, 3, 4] = float("nan")
    x.requires_grad_()
    g = torch.randn(x.shape, dtype=torch.float64)
    y = m(x)
    grads = torch.autograd.grad(y, [x] + list(m.parameters()), g)
    yr, grads_r = _funnel_ref_grads(mr, x, g)
    torch.testing.assert_close(y, yr, equal_nan=True, rtol=0, atol=0)
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_funnel_low_precision(dtype: torch.dtype) -> None:
    m, mr = _funnel_pair(2, 4, 3, dtype, False)
    m32, _ = _funnel_pair(2, 4, 3, torch.float32, False)
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in m.state_dict().items()})
    x = torch.randn(2, 4, 6, 7).to(dtype).requires_grad_()
    g = torch.randn(x.shape).to(dtype)
    y = m(x)
    grads = torch.autograd.grad(y, [x] + list(m.parameters()), g)
    y = y.detach()
    yl, grads_l = _funnel_ref_grads(mr, x, g)
    x32 = x.detach().float().requires_grad_()
    y32, grads_32 = _funnel_ref_grads(m32, x32, g.float())
    y32, yl = y32.detach(), yl.detach()
    assert y.dtype == dtype
    assert float((y.double() - y32.double()).abs().max()) <= _lowp_tol(yl, y32, dtype)
    for a, lo, e in zip(grads, grads_l, grads_32):
        scale = max(1.0, float(e.abs().max()))
        assert float((a.double() - e.double()).abs().max()) <= _lowp_tol(lo, e, dtype) + 1e-2 * scale


def test_funnel_no_grad_and_eval() -> None:
    m, mr = _funnel_pair(2, 4, 3, torch.float32, False)
    x = torch.randn(2, 4, 6, 7)
    with torch.no_grad():
        y = m(x)
        yr = mr(x)
    assert y.grad_fn is None
    torch.testing.assert_close(y, yr)
    torch.testing.assert_close(m.running_mean, mr.running_mean)


@pytest.mark.parametrize("layout", ["odd4d", "channels_last", "transposed", "dim_last"])
@pytest.mark.parametrize("name", list(CASES))
def test_cache_blocked_paths(name: str, layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large tensors run block by block: force tiny blocks and compare again."""
    import rectifiers.ops._common as common

    monkeypatch.setattr(common, "BLOCK_ELEMENTS", 16)
    assert len(common.cache_blocks(torch.empty(3, 5, 7, 9), 1)) > 1
    x, dim = _make_x(layout, torch.float64, seed=6)
    p = _param(name, x, dim, torch.float64)
    _, fn, rfn = CASES[name]
    g = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    y, grads = _run(fn, x, p, dim, g)
    yr, grads_r = _run(rfn, x, p, _ref_dim(x, dim), g)
    torch.testing.assert_close(y, yr, rtol=0, atol=0)
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b)


def test_cpu_inputs_under_another_default_device():
    """With ``torch.device('meta')`` as the default device, CPU inputs still run on CPU: every
    buffer the fused kernels allocate follows the input's device, not the default one."""
    import rectifiers.functional as RF

    c = 3
    x = torch.randn(2, c, 5, 6, requires_grad=True)
    cw = torch.randn(c, 1, 3, 3, requires_grad=True)
    bw, bb = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
    wp, b = torch.full((c,), 0.3, requires_grad=True), torch.zeros(c, requires_grad=True)
    with torch.device("meta"):
        outs = [RF.funnel_relu(x, cw, bw, bb, backend="eager"), RF.prelu(x, wp, 1, backend="eager"),
                RF.flexible_relu(x, b, 1, backend="eager")]
        sum(o.sum() for o in outs).backward()
    for t in (*outs, x.grad, cw.grad, bw.grad, bb.grad, wp.grad, b.grad):
        assert t.device.type == "cpu" and torch.isfinite(t).all()
