"""The fused C++ funnel kernel of the eager backend against the plain formula, and its fallback.

The kernel (``rectifiers.ops.cpp.funnel``) is built at first use; where it cannot be (no
compiler), the tests that need it fail if gcc and ninja are present (a build that should work
and silently does not is a defect) and are skipped otherwise.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import rectifiers as R
import rectifiers.functional as RF
from helpers import bits_equal, cpp_kernel_or_skip
from rectifiers.ops.cpp import funnel as FC
from rectifiers.ops.eager import funnel as eager_funnel

CLASSES = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}


@pytest.fixture
def cpp(monkeypatch):
    """The C++ path, on: skip where it cannot build (no compiler); yields the call counters.

    Planes of one or two values run the kernel too here (by default the eager backend gives
    them the plain formula, :func:`test_tiny_planes_take_the_plain_formula`): these tests are of
    the kernel, its edge shapes included."""
    monkeypatch.setattr(eager_funnel, "_PLAIN_MAX_PLANE", 0)
    return cpp_kernel_or_skip(FC, "funnel kernel", monkeypatch)


@pytest.mark.parametrize("shape", [(64, 8, 1), (16, 4, 2), (8, 3, 1, 1), (8, 3, 1, 2)])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_tiny_planes_take_the_plain_formula(monkeypatch, shape, k, bias) -> None:
    """A funnel on flat features ((N, C, 1)) trains through torch's plain formula, faster there
    than the fused kernel's per-plane work, with a 1-wide conv as the per-channel product it is
    (far cheaper than torch's depthwise conv). The output, the input's gradient and the running
    statistics have the torch backend's bits; a parameter's gradient, a sum over the batch, is
    the same sum in another order (k = 1) and meets the tolerance rule against float64."""
    counts = cpp_kernel_or_skip(FC, "funnel kernel", monkeypatch)
    nsp = len(shape) - 2
    m, mr = _pair(nsp, shape[1], k, torch.float32, bias=bias)
    m64, _ = _pair(nsp, shape[1], k, torch.float64, bias=bias)  # the reference, torch backend
    m64.backend = "torch"
    x = torch.randn(shape, requires_grad=True)
    g = torch.randn(shape)
    before = dict(counts)
    for _ in range(2):
        m64.load_state_dict({n: v.double() if v.is_floating_point() else v for n, v in mr.state_dict().items()})
        y, grads = _step(m, x, g)
        yr, grads_r = _step(mr, x, g)
        _, grads_64 = _step(m64, x.detach().double().requires_grad_(), g.double())
        assert bits_equal(y, yr) and bits_equal(grads[0], grads_r[0])
        for a, b, ref in zip(grads[1:], grads_r[1:], grads_64[1:]):
            if k > 1:
                assert bits_equal(a, b)
            else:  # the tolerance rule (docs/DESIGN.md): twice the plain formula's own error
                ours, plain = float((a.double() - ref).abs().max()), float((b.double() - ref).abs().max())
                scale = max(1.0, float(ref.abs().max()))
                assert ours <= 2 * plain + 1e-6 * scale, (ours, plain)
    assert bits_equal(m.running_mean, mr.running_mean) and bits_equal(m.running_var, mr.running_var)
    assert int(m.num_batches_tracked) == int(mr.num_batches_tracked) == 2
    assert dict(counts) == before


def _pair(nsp, c, k, dtype, bias, seed=0, momentum=0.1):
    """An eager module and a torch-backend copy with the same (non-trivial) state."""
    torch.manual_seed(seed)
    m = CLASSES[nsp](c, k, bias=bias, momentum=momentum, backend="eager").to(dtype)
    with torch.no_grad():
        m.weight.normal_(0, 0.5)
        m.bn_weight.uniform_(0.5, 1.5)
        m.bn_bias.uniform_(-0.5, 0.5)
        m.running_mean.uniform_(-0.2, 0.2)
        m.running_var.uniform_(0.5, 2.0)
        if bias:
            m.bias.uniform_(-0.5, 0.5)
    mr = CLASSES[nsp](c, k, bias=bias, momentum=momentum, backend="torch").to(dtype)
    mr.load_state_dict(m.state_dict())
    return m, mr


def _step(m, x, g):
    y = m(x)
    return y, torch.autograd.grad(y, [x] + list(m.parameters()), g)


def _compare(m, mr, x, g, steps=1, **tol):
    for _ in range(steps):
        y, grads = _step(m, x, g)
        yr, grads_r = _step(mr, x, g)
        torch.testing.assert_close(y, yr, **tol)
        for a, b in zip(grads, grads_r):
            torch.testing.assert_close(a, b, **tol)
    torch.testing.assert_close(m.running_mean, mr.running_mean, **tol)
    torch.testing.assert_close(m.running_var, mr.running_var, **tol)
    assert int(m.num_batches_tracked) == int(mr.num_batches_tracked)
    return y, yr


# Odd sizes: shorter than the kernel, one row, one column, a row longer than 16 lanes with a
# remainder, more rows per channel than one flush of the row sums (64).
SHAPES = {
    1: [(2, 3, 1), (3, 2, 4), (2, 3, 37), (5, 2, 19)],
    2: [(2, 3, 1, 1), (3, 2, 1, 7), (2, 2, 9, 1), (3, 2, 23, 19), (2, 1, 70, 3)],
    3: [(2, 2, 1, 1, 3), (2, 2, 3, 4, 5), (1, 2, 5, 3, 17)],
}
CASES = [(nsp, s) for nsp, lst in SHAPES.items() for s in lst]


@pytest.mark.parametrize("nsp,shape", CASES, ids=["x".join(map(str, s)) for _, s in CASES])
@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_matches_plain_formula_fp64(cpp, nsp, shape, k, training) -> None:
    m, mr = _pair(nsp, shape[1], k, torch.float64, bias=k % 4 == 1, seed=k)
    m.train(training)
    mr.train(training)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape, dtype=torch.float64)
    before = dict(cpp)
    _compare(m, mr, x, g, steps=2, rtol=1e-10, atol=1e-12)
    assert cpp["forward"] == before["forward"] + 2 and cpp["backward"] == before["backward"] + 2


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_strided_input_runs_fused(cpp, nsp) -> None:
    m, mr = _pair(nsp, 3, 3, torch.float64, bias=True)
    base = torch.randn((2, 3) + (5, 6, 8)[:nsp], dtype=torch.float64)
    x = base[..., ::2].detach().requires_grad_()  # every other element along the last dim
    assert not x.is_contiguous()
    g = torch.randn(x.shape, dtype=torch.float64).transpose(0, 1).contiguous().transpose(0, 1)
    before = dict(cpp)
    y, yr = _compare(m, mr, x, g, rtol=1e-10, atol=1e-12)
    assert y.stride() == yr.stride()
    assert cpp["forward"] == before["forward"] + 1 and cpp["backward"] == before["backward"] + 1


@pytest.mark.parametrize("nsp", [2, 3])
def test_channels_last_keeps_torch_conv_path(cpp, nsp) -> None:
    """Channels-last inputs keep the path with PyTorch's (fast, channels-last) depthwise conv."""
    m, mr = _pair(nsp, 4, 3, torch.float64, bias=False)
    fmt = torch.channels_last if nsp == 2 else torch.channels_last_3d
    x = torch.randn((2, 4) + (5, 6, 7)[:nsp], dtype=torch.float64)
    x = x.contiguous(memory_format=fmt).requires_grad_()
    g = torch.randn(x.shape, dtype=torch.float64)
    before = dict(cpp)
    y, _ = _compare(m, mr, x, g, rtol=1e-10, atol=1e-12)
    assert y.is_contiguous(memory_format=fmt)
    assert cpp["forward"] == before["forward"]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("shape", [(4, 6, 9, 21), (8, 6, 40)], ids=["4d", "3d"])
def test_low_precision_within_twice_the_plain_error(cpp, dtype, shape) -> None:
    """Against float32 runs of the plain formula: at most twice the plain formula's own error
    in the same dtype, plus a small atol (the kernel computes in float inside)."""
    nsp = len(shape) - 2
    m, mr = _pair(nsp, shape[1], 3, dtype, bias=True, seed=2)
    m32, _ = _pair(nsp, shape[1], 3, torch.float32, bias=True, seed=2)
    m32.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in m.state_dict().items()})
    m32.backend = "torch"
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=gen).to(dtype).requires_grad_()
    g = torch.randn(shape, generator=gen).to(dtype)
    before = dict(cpp)
    y, grads = _step(m, x, g)
    yl, grads_l = _step(mr, x, g)
    x32 = x.detach().float().requires_grad_()
    y32, grads_32 = _step(m32, x32, g.float())
    assert cpp["backward"] == before["backward"] + 1
    assert y.dtype == dtype and all(a.dtype == b.dtype for a, b in zip(grads, grads_l))

    def err(a, b):
        return float((a.detach().double() - b.detach().double()).abs().max())

    for a, lo, e in zip((y,) + grads, (yl,) + grads_l, (y32,) + grads_32):
        scale = max(1.0, float(e.detach().abs().max()))
        assert err(a, e) <= 2 * err(lo, e) + 1e-2 * scale
    for t, tl, t32 in ((m.running_mean, mr.running_mean, m32.running_mean),
                       (m.running_var, mr.running_var, m32.running_var)):
        assert err(t, t32) <= 2 * err(tl, t32) + 1e-2


def test_eval_and_momentum_none(cpp) -> None:
    """momentum=None (cumulative average) over several steps, then eval mode, forward and backward."""
    m, mr = _pair(2, 3, 3, torch.float64, bias=False, momentum=None)
    for step in range(3):
        x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
        _compare(m, mr, x, torch.randn_like(x), rtol=1e-10, atol=1e-12)
    m.eval()
    mr.eval()
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    before = dict(cpp)
    _compare(m, mr, x, torch.randn_like(x), rtol=1e-10, atol=1e-12)
    assert cpp["backward"] == before["backward"] + 1


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_no_grad_forward_runs_fused_and_updates_running_stats(cpp, training) -> None:
    m, mr = _pair(2, 4, 3, torch.float32, bias=False)
    m.train(training)
    mr.train(training)
    x = torch.randn(3, 4, 11, 10)
    before = dict(cpp)
    with torch.no_grad():
        y, yr = m(x), mr(x)
    assert y.grad_fn is None
    assert cpp["forward"] == before["forward"] + 1
    torch.testing.assert_close(y, yr)
    torch.testing.assert_close(m.running_mean, mr.running_mean)
    torch.testing.assert_close(m.running_var, mr.running_var)


def test_functional_without_affine_or_running_stats(cpp) -> None:
    torch.manual_seed(3)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    before = dict(cpp)
    y = RF.funnel_relu(x, w, backend="eager")
    grads = torch.autograd.grad(y, [x, w], g)
    yr = RF.funnel_relu(x, w, backend="torch")
    grads_r = torch.autograd.grad(yr, [x, w], g)
    assert cpp["backward"] == before["backward"] + 1
    torch.testing.assert_close(y, yr, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("nsp", [1, 2])
def test_gradcheck_and_gradgradcheck_fused(cpp, training, nsp) -> None:
    torch.manual_seed(4)
    c = 2
    x = torch.randn((2, c) + (5, 4)[:nsp], dtype=torch.float64, requires_grad=True)
    w = torch.randn((c, 1) + (3,) * nsp, dtype=torch.float64, requires_grad=True)
    cb = torch.randn(c, dtype=torch.float64, requires_grad=True)
    bw = torch.rand(c, dtype=torch.float64).add_(0.5).requires_grad_()
    bb = torch.randn(c, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)

    def f(x_, w_, cb_, bw_, bb_):
        return RF.funnel_relu(x_, w_, bw_, bb_, None if training else rm, None if training else rv,
                              training, 0.1, 1e-5, conv_bias=cb_, backend="eager")

    before = dict(cpp)
    assert torch.autograd.gradcheck(f, (x, w, cb, bw, bb))
    assert cpp["backward"] > before["backward"]
    assert torch.autograd.gradgradcheck(f, (x, w, cb, bw, bb), fast_mode=True)


def test_same_bits_whatever_the_thread_count(cpp) -> None:
    m, _ = _pair(2, 6, 3, torch.float32, bias=True)
    x = torch.randn(3, 6, 13, 17, requires_grad=True)
    g = torch.randn_like(x)
    old = torch.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            m.load_state_dict(_pair(2, 6, 3, torch.float32, bias=True)[0].state_dict())
            y, grads = _step(m, x, g)
            out.append([y] + list(grads) + [m.running_mean.clone(), m.running_var.clone()])
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_disabled_by_environment_gives_same_results(cpp, monkeypatch) -> None:
    m, mr = _pair(2, 3, 3, torch.float64, bias=True)
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    before = dict(cpp)
    _compare(m, mr, x, g, rtol=1e-10, atol=1e-12)
    assert cpp == before  # the kernel never ran


def test_build_failure_warns_once_and_falls_back(monkeypatch) -> None:
    monkeypatch.delenv("RECTIFIERS_NO_CPP", raising=False)
    monkeypatch.setattr(FC, "_state", {"tried": False, "ok": False, "seconds": None})

    def broken() -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(FC, "_build", broken)
    m, mr = _pair(2, 3, 3, torch.float64, bias=False)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    before = dict(FC.CALLS)
    with pytest.warns(RuntimeWarning, match="funnel kernel could not be built"):
        _compare(m, mr, x, torch.randn_like(x), rtol=1e-10, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # remembered: no second warning
        _compare(m, mr, x, torch.randn_like(x), rtol=1e-10, atol=1e-12)
    assert FC.CALLS == before


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_inf_and_nan_in_eval_match_the_formula(cpp, nsp) -> None:
    """inf and NaN in x (eval mode, where they stay local): NaN in the same places, forward and
    every gradient; the padding around an inf must not leak 0 * inf into the weight gradient."""
    m, mr = _pair(nsp, 3, 3, torch.float64, bias=True)
    m.eval()
    mr.eval()
    x = torch.randn((2, 3) + (5, 6, 7)[:nsp], dtype=torch.float64)
    flat = x.view(-1)
    flat[0] = float("inf")  # a corner: its neighbours include the padding
    flat[-1] = float("-inf")
    flat[flat.numel() // 2] = float("nan")
    x.requires_grad_()
    g = torch.randn(x.shape, dtype=torch.float64)
    before = dict(cpp)
    y, grads = _step(m, x, g)
    yr, grads_r = _step(mr, x, g)
    assert cpp["backward"] == before["backward"] + 1
    torch.testing.assert_close(y, yr, equal_nan=True, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads, grads_r):
        torch.testing.assert_close(a, b, equal_nan=True, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_isa_cap_is_shared_and_every_level_agrees(cpp, dtype) -> None:
    """One instruction-set cap for both C++ extensions (set through either module, it reaches
    the loaded funnel kernel), and the funnel's portable and AVX2 builds give the same bits."""
    from rectifiers.ops.cpp import pointwise as E


    x = torch.randn(2, 5, 13, 21, generator=torch.Generator().manual_seed(5)).to(dtype).requires_grad_()
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(6)).to(dtype)
    out = {}
    before = FC.set_isa(2)
    try:
        for level in (2, 1, 0):
            assert E.set_isa(level) in (0, 1, 2)
            # the extension's own cap is the one just set (its set_isa returns the cap before)
            assert torch.ops.rectifiers_funnel_cpp.set_isa(level) == level
            m, _ = _pair(2, 5, 3, dtype, bias=True, seed=7)
            calls = dict(cpp)
            y, grads = _step(m, x, g)
            assert cpp["forward"] == calls["forward"] + 1 and cpp["backward"] == calls["backward"] + 1
            out[level] = [y] + list(grads)
    finally:
        FC.set_isa(before)
    for level in (1, 0):
        for a, b in zip(out[2], out[level]):
            assert bits_equal(a, b, nan_payload=True), f"level {level} differs from level 2"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_any_subset_of_gradients_has_the_full_runs_bits(cpp, dtype, training) -> None:
    """The kernel's backward for any subset of the inputs (x frozen, the conv frozen, only the
    BatchNorm's parameters, ...) gives each requested gradient the bits of the run that asks for
    all of them, and runs the kernel (not a fallback)."""
    import itertools

    m, mr = _pair(2, 3, 3, dtype, bias=True, seed=3)
    m.train(training)
    mr.train(training)
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(2, 3, 9, 21, generator=gen).to(dtype)
    g = torch.randn(x0.shape, generator=gen).to(dtype)
    names = ["x", "weight", "bias", "bn_weight", "bn_bias"]
    state = {k: v.clone() for k, v in m.state_dict().items()}

    def grads_for(wanted):  # type: ignore[no-untyped-def]
        m.load_state_dict(state)  # the same running statistics for every run
        x = x0.clone().requires_grad_("x" in wanted)
        params = dict(m.named_parameters())
        for n, p in params.items():
            p.requires_grad_(n in wanted)
        ins = [x if n == "x" else params[n] for n in names if n in wanted]
        before = dict(cpp)
        out = dict(zip([n for n in names if n in wanted], torch.autograd.grad(m(x), ins, g)))
        assert cpp["backward"] == before["backward"] + 1
        return out

    full = grads_for(set(names))
    for k in range(1, len(names)):
        for wanted in itertools.combinations(names, k):
            got = grads_for(set(wanted))
            for n in wanted:
                assert bits_equal(got[n], full[n]), f"{n} with only {wanted}"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_jit_trace_records_the_plain_formula(cpp, training) -> None:
    """torch.jit.trace gets the plain formula's ops (the fused op writes its outputs in place,
    which the tracer refuses): the traced module replays the funnel, running statistics included."""
    m, mr = _pair(2, 3, 3, torch.float64, bias=True)
    m.train(training)
    mr.train(training)
    gen = torch.Generator().manual_seed(8)
    x, x2 = (torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64) for _ in range(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
        traced = torch.jit.trace(m, x, check_trace=False)
    mr(x)  # the step the trace took
    assert "aten::maximum" in {n.kind() for n in traced.graph.nodes()}
    torch.testing.assert_close(traced(x2), mr(x2), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.running_mean, mr.running_mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m.running_var, mr.running_var, rtol=1e-10, atol=1e-12)
