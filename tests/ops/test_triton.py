"""The Triton backend's pointwise activations (and what all its activations share: the custom
ops' registrations, ``torch.func``, double backward, glue ops per call), run on CPU tensors by
Triton's interpreter (``TRITON_INTERPRET=1``).

Compared against :mod:`rectifiers.reference` and ``torch.nn``: fp32 forward bit for bit, input
gradients bit for bit where torch's are exact, parameter gradients within tolerance, the kinks,
sizes that are not multiples of 8 or of the block, strided and channels_last inputs, both
parameter shapes, low precision within DESIGN.md's rule, the bit-packed mask (bytes saved for
backward), determinism, in-place use and ``torch.compile(fullgraph=True)``. The funnel's own
tests are in ``test_triton_funnel.py``; the kernels' compilation for a GPU and the launcher in
``test_triton_kernels.py``.

The kernels pick the interpreter from the tensor's device at launch, so the order in which test
modules import triton does not matter; the environment variable is set per test only because
the backend refuses CPU tensors without it. Block sizes are shrunk so that these small tensors
still span many programs.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from helpers import bits_equal, compiled_matches_eager, compiled_step, gen, nan_close, randn, saved_bytes
import torch.nn.functional as F

triton = pytest.importorskip("triton", reason="the Triton backend needs the 'triton' package")

import rectifiers.functional as RF  # noqa: E402
from rectifiers import reference as ref  # noqa: E402
from rectifiers.ops import triton as T  # noqa: E402


@pytest.fixture(autouse=True)
def _interpreter(triton_interpreter):
    """Every test here runs the kernels under Triton's interpreter, with small blocks."""


def _kinked(x: torch.Tensor) -> torch.Tensor:
    """``x`` (contiguous, >= 12 elements) with the kinks and non-finite values planted."""
    x = x.clone()
    f = x.view(-1)
    tiny = torch.finfo(x.dtype).tiny
    vals = [0.0, -0.0, tiny, -tiny, 1e-45, -1e-45, float("nan"), float("inf"), float("-inf"),
            1.0, -1.0, -tiny / 4]
    for i, v in enumerate(vals):
        f[i * (f.numel() // len(vals))] = v
    return x


# name -> (triton call, reference, torch.nn (or plain formula), parameter maker)
def _w(x, dim, per_channel, seed=1):
    n = x.shape[dim] if per_channel else 1
    return (torch.rand(n, generator=gen(seed)) * 1.5 + 0.05)


def _b(x, dim, per_channel, seed=2):
    n = x.shape[dim] if per_channel else 1
    return torch.randn(n, generator=gen(seed))


ACTS = {
    "relu": (
        lambda x, p, d: RF.relu(x, backend="triton"),
        lambda x, p, d: ref.relu(x),
        lambda x, p, d: torch.relu(x),
        None,
    ),
    "leaky_relu": (
        lambda x, p, d: RF.leaky_relu(x, 0.01, backend="triton"),
        lambda x, p, d: ref.leaky_relu(x, 0.01),
        lambda x, p, d: F.leaky_relu(x, 0.01),
        None,
    ),
    "leaky_relu_neg": (
        lambda x, p, d: RF.leaky_relu(x, -0.3, backend="triton"),
        lambda x, p, d: ref.leaky_relu(x, -0.3),
        lambda x, p, d: F.leaky_relu(x, -0.3),
        None,
    ),
    "prelu": (
        lambda x, p, d: RF.prelu(x, p, d, backend="triton"),
        lambda x, p, d: ref.prelu(x, p, d % x.dim()),
        # torch.prelu wants the channels at dim 1: move them there and back.
        # (a 1-D input has no channel dim for torch.prelu: give it a batch dim of 1)
        lambda x, p, d: torch.prelu(x.movedim(d, 1), p.to(x.dtype)).movedim(1, d)
        if x.dim() > 1 else torch.prelu(x[None], p.to(x.dtype))[0],
        _w,
    ),
    "flexible_relu": (
        lambda x, p, d: RF.flexible_relu(x, p, d, backend="triton"),
        lambda x, p, d: ref.flexible_relu(x, p, d % x.dim()),
        lambda x, p, d: ref.flexible_relu(x, p.to(x.dtype), d % x.dim()),
        _b,
    ),
}
PARAM_ACTS = ("prelu", "flexible_relu")


def _run(name, x, p, dim, which, g):
    """Forward and (input, parameter) gradients of one implementation."""
    fn = ACTS[name][which]
    xx = x.detach().clone().requires_grad_()
    pp = p.detach().clone().requires_grad_() if p is not None else None
    y = fn(xx, pp, dim)
    ins = (xx,) if pp is None else (xx, pp)
    grads = torch.autograd.grad(y, ins, g)
    return y.detach(), grads


SHAPES = [
    ((3, 5, 7, 11), 1),   # 1155 elements: not a multiple of 8 or of the block
    ((2, 6, 5), -1),      # channels-last features (N, L, C)
    ((37,), 0),           # 1-D, one channel dim
    ((4, 3, 2, 3, 5), 2),  # 5-D, a middle dim
]


FP32_CASES = [
    (name, shape, dim, pc)
    for name in ACTS
    for shape, dim in SHAPES
    for pc in ((False, True) if name in PARAM_ACTS else (False,))
]


@pytest.mark.parametrize(
    "name,shape,dim,per_channel", FP32_CASES,
    ids=[f"{n}-{s}-{'per_channel' if p else 'scalar'}" for n, s, _, p in FP32_CASES],
)
def test_fp32_matches_reference(name, shape, dim, per_channel):
    x = _kinked(randn(*shape))
    make = ACTS[name][3]
    d = dim % len(shape)
    p = make(x, d, per_channel) if make else None
    g = randn(*shape, seed=7)
    y, grads = _run(name, x, p, dim, 0, g)
    y_ref, grads_ref = _run(name, x, p, d, 1, g)
    y_nn, grads_nn = _run(name, x, p, d, 2, g)
    assert bits_equal(y, y_ref), "forward differs from the reference"
    assert bits_equal(y, y_nn), "forward differs from torch.nn"
    # dx: torch.nn's convention at NaN and inf, bit for bit.
    assert bits_equal(grads[0], grads_nn[0]), "input gradient differs from torch.nn"
    if p is not None:
        # the parameter gradient: fp32 sums in a different order, and at +inf torch.nn gives 0
        # where the formula's autograd gives 0 * inf = NaN: follow torch.nn.
        assert nan_close(grads[1], grads_nn[1], 1e-5, 1e-5), (grads[1], grads_nn[1])
        finite = torch.isfinite(x).all()
        assert finite or not torch.isnan(grads[1]).all() or torch.isnan(grads_nn[1]).all()


@pytest.mark.parametrize("name", PARAM_ACTS)
@pytest.mark.parametrize("per_channel", [False, True], ids=["scalar", "per_channel"])
def test_parameter_gradient_finite_inputs(name, per_channel):
    x = randn(4, 6, 9, 5)
    p = ACTS[name][3](x, 1, per_channel)
    g = randn(4, 6, 9, 5, seed=3)
    _, (dx, dp) = _run(name, x, p, 1, 0, g)
    _, (dx_r, dp_r) = _run(name, x, p, 1, 1, g)
    assert torch.equal(dx, dx_r)
    assert torch.allclose(dp, dp_r, rtol=1e-5, atol=1e-5)
    # deterministic run to run: the partial sums are added in a fixed order
    _, (_, dp2) = _run(name, x, p, 1, 0, g)
    assert torch.equal(dp, dp2)


@pytest.mark.parametrize("layout", ["channels_last", "strided", "transposed"])
@pytest.mark.parametrize("name", ["relu", "prelu", "flexible_relu"])
def test_layouts(name, layout):
    base = randn(3, 8, 5, 6)
    if layout == "channels_last":
        x = base.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = randn(3, 16, 5, 7)[:, ::2, :, 1:]
    else:
        x = base.transpose(1, 3)  # dense, permuted; channels now along dim 3
    dim = 3 if layout == "transposed" else 1
    make = ACTS[name][3]
    p = make(x, dim, True) if make else None
    g = randn(*x.shape, seed=5)
    y, grads = _run(name, x, p, dim, 0, g)
    y_ref, grads_ref = _run(name, x, p, dim, 1, g)
    assert torch.equal(y, y_ref)
    assert torch.equal(grads[0], grads_ref[0])
    if p is not None:
        assert torch.allclose(grads[1], grads_ref[1], rtol=1e-5, atol=1e-5)
    if layout != "strided":
        assert y.stride() == x.stride(), "the output must keep the input's memory format"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", list(ACTS))
def test_low_precision(name, dtype):
    """Within twice the error plain PyTorch makes in the same dtype (against fp32), plus atol."""
    shape = (2, 5, 9, 7)
    x32 = randn(*shape)
    g32 = randn(*shape, seed=9)
    make = ACTS[name][3]
    p = make(x32, 1, True) if make else None
    y32, gr32 = _run(name, x32, p, 1, 1, g32)
    y, gr = _run(name, x32.to(dtype), p, 1, 0, g32.to(dtype))
    y_t, gr_t = _run(name, x32.to(dtype), p, 1, 1, g32.to(dtype))
    assert y.dtype == dtype and gr[0].dtype == dtype
    atol = 1e-3 if dtype == torch.float16 else 1e-2
    for ours, theirs, exact in zip((y, *gr), (y_t, *gr_t), (y32, *gr32)):
        err = (ours.double() - exact.double()).abs().max()
        err_t = (theirs.double() - exact.double()).abs().max()
        assert err <= 2 * err_t + atol * max(1.0, exact.abs().max().item()), (err, err_t)


@pytest.mark.parametrize("name", list(ACTS))
def test_float64(name):
    x = _kinked(randn(3, 4, 5, dtype=torch.float64))
    make = ACTS[name][3]
    p = make(x, 1, True).double() if make else None
    g = randn(3, 4, 5, dtype=torch.float64, seed=4)
    y, grads = _run(name, x, p, 1, 0, g)
    y_nn, grads_nn = _run(name, x, p, 1, 2, g)
    assert torch.equal(torch.isnan(y), torch.isnan(y_nn))
    assert torch.allclose(y, y_nn, equal_nan=True, rtol=0, atol=0)
    assert torch.allclose(grads[0], grads_nn[0], equal_nan=True, rtol=0, atol=0)
    if p is not None:
        assert nan_close(grads[1], grads_nn[1], 1e-12, 1e-12)


@pytest.mark.parametrize("n", [0, 1, 7, 31, 33, 64, 65, 200])
def test_sizes(n):
    x = randn(n)
    w = torch.tensor([0.2])
    g = randn(n, seed=1)
    for name, p in (("leaky_relu", None), ("prelu", w), ("flexible_relu", w)):
        y, grads = _run(name, x, p, 0, 0, g)
        y_r, grads_r = _run(name, x, p, 0, 1, g)
        assert torch.equal(y, y_r)
        assert torch.equal(grads[0], grads_r[0])
        if p is not None:
            assert torch.allclose(grads[1], grads_r[1], rtol=1e-5, atol=1e-6)


def test_zero_dim_input():
    for v in (2.0, -2.0, 0.0):
        x = torch.tensor(v)
        y, (dx,) = _run("relu", x, None, 0, 0, torch.tensor(1.0))
        assert y.shape == () and torch.equal(y, torch.relu(x)) and dx.item() == float(v > 0)


def test_prelu_zero_and_negative_slopes():
    """A zero slope: y = 0 cannot give x back, so the input is kept and dL/da stays exact."""
    x = randn(2, 4, 7, 3)
    w = torch.tensor([0.0, -0.5, 0.3, 2.0])
    g = randn(2, 4, 7, 3, seed=2)
    y, (dx, dw) = _run("prelu", x, w, 1, 0, g)
    y_r, (dx_r, dw_r) = _run("prelu", x, w, 1, 1, g)
    assert torch.equal(y, y_r) and torch.equal(dx, dx_r)
    assert torch.allclose(dw, dw_r, rtol=1e-5, atol=1e-6)
    assert dw[0] != 0  # the zero slope's channel still gets its gradient


def test_prelu_weight_dtype_differs():
    """An fp64 weight on a bf16 input: the weight is cast to bf16 (as the torch backend does), the
    output is bf16, the weight's gradient fp64."""
    x = randn(3, 4, 5).to(torch.bfloat16)
    w = torch.tensor([0.3, 0.7, 0.1, 1.2], dtype=torch.float64)
    g = randn(3, 4, 5, seed=3).to(torch.bfloat16)
    y, (dx, dw) = _run("prelu", x, w, 1, 0, g)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    y_r = ref.prelu(xr, wr.to(torch.bfloat16), 1)
    dx_r, dw_r = torch.autograd.grad(y_r, (xr, wr), g)
    assert y.dtype == torch.bfloat16 and dw.dtype == torch.float64
    # Within one bf16 ulp: Triton 3.9's interpreter rounds fp32 -> bf16 toward zero where the
    # compiled kernels (and torch) round to nearest even.
    ulp = 2.0**-7
    assert torch.allclose(y.float(), y_r.float(), rtol=ulp, atol=0)
    assert torch.allclose(dx.float(), dx_r.float(), rtol=ulp, atol=0)
    assert torch.allclose(dw, dw_r, rtol=2e-2, atol=2e-2)


# --- memory: what is kept for backward --------------------------------------------------------


def test_mask_is_bit_packed():
    n = 4 * 16 * 7 * 9  # 4032 elements
    x = randn(4, 16, 7, 9).requires_grad_()
    h = x * 1.0  # a non-leaf, so that only the activation's saves are counted
    # relu: torch.relu's own output and nothing else (the next layer keeps it anyway)
    y, saved = saved_bytes(lambda: RF.relu(h, backend="triton"))
    assert saved == [(torch.float32, 4 * n)] and y.grad_fn.name() == "ReluBackward0", saved
    # leaky: the mask alone, 1 bit per element
    _, saved = saved_bytes(lambda: RF.leaky_relu(h, 0.1, backend="triton"))
    assert saved == [(torch.int32, 4 * ((n + 31) // 32))], saved
    # frelu: mask + the bias
    b = torch.zeros(16, requires_grad=True)
    _, saved = saved_bytes(lambda: RF.flexible_relu(h, b, backend="triton"))
    assert sorted(saved, key=str) == sorted([(torch.int32, n // 8), (torch.float32, 64)], key=str)
    # prelu: mask + weight + the output (which the next layer keeps anyway)
    w = torch.full((16,), 0.25, requires_grad=True)
    y, saved = saved_bytes(lambda: RF.prelu(h, w, backend="triton"))
    full = [s for s in saved if s[1] >= 4 * n]
    assert full == [(torch.float32, 4 * n)] and (torch.int32, n // 8) in saved
    # torch.nn.PReLU keeps x as a full tensor: ours keeps only 1/32 of it beyond y.
    _, saved_nn = saved_bytes(lambda: torch.prelu(h, w))
    assert sum(s for _, s in saved_nn if s >= 4 * n) == 4 * n


# --- in-place, compile, custom-op registrations -----------------------------------------------


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "flexible_relu"])
def test_inplace(name):
    x0 = _kinked(randn(3, 4, 5, 6))
    b = torch.full((1,), 0.5)
    call = {
        "relu": lambda t: RF.relu(t, inplace=True, backend="triton"),
        "leaky_relu": lambda t: RF.leaky_relu(t, 0.2, inplace=True, backend="triton"),
        "flexible_relu": lambda t: RF.flexible_relu(t, b, inplace=True, backend="triton"),
    }[name]
    plain = {
        "relu": lambda t: torch.relu(t),
        "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
        "flexible_relu": lambda t: torch.relu(t) + 0.5,
    }[name]
    expected = plain(x0)
    # no grad: the kernel writes into x (dense) or through a copy (strided)
    for x in (x0.clone(), x0.clone().transpose(0, 2)):
        out = call(x)
        assert out is x and bits_equal(out.contiguous(), expected.transpose(0, 2).contiguous()
                                        if x.stride() != x0.stride() else expected)
    # with grad, on a non-leaf
    leaf = x0.clone().requires_grad_()
    h = leaf * 1.0
    out = call(h)
    assert out is h
    (dx,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    leaf2 = x0.clone().requires_grad_()
    (dx2,) = torch.autograd.grad(plain(leaf2 * 1.0), leaf2, torch.ones_like(out))
    assert bits_equal(dx, dx2)


def test_compile_fullgraph_backend_functions():
    """torch.compile(fullgraph=True) traces the custom ops (no graph break) with the same
    forward and gradients as eager."""
    x = randn(2, 3, 5, 4)
    w = torch.tensor([0.1, 0.5, 0.0])

    def f(x, w):
        a = T.prelu(x, w, 1)
        b = T.flexible_relu(a, w, 1, False)
        return T.leaky_relu(T.relu(b, False), 0.05, False) * 2

    compiled_matches_eager(f, x, w, tol=1e-6)


def test_compile_fullgraph_through_functional():
    torch._dynamo.reset()
    compiled_step(lambda x: RF.relu(x, backend="triton"), randn(2, 3, 4))


def test_custom_op_registrations():
    """torch.library.opcheck: schema, fake tensors, autograd registration, AOT dispatch."""
    x = randn(2, 3, 4, 5)
    w = torch.tensor([0.2, 0.0, 0.7], requires_grad=True)
    xg = x.clone().requires_grad_()
    ops = torch.ops.rectifiers_triton
    torch.library.opcheck(ops.act_fwd, (xg, w, T.PRELU, 0.0, 1, True, True))
    torch.library.opcheck(ops.act_fwd, (xg, None, T.LEAKY, 0.1, -1, True, False))
    torch.library.opcheck(ops.act_fwd_, (x.clone(), None, T.RELU, 0.0, -1))
    cw = (randn(3, 1, 3, 3) * 0.3).requires_grad_()
    torch.library.opcheck(
        ops.funnel_fwd, (xg, cw, None, torch.ones(3, requires_grad=True), None, None, None, True, 1e-5, True)
    )


def test_environment_variable_selects_triton(monkeypatch):
    """RECTIFIERS_BACKEND=triton routes a call without ``backend`` here: the bit-packed mask is
    what gets saved."""
    monkeypatch.setenv("RECTIFIERS_BACKEND", "triton")
    h = randn(4, 40).requires_grad_() * 1.0
    _, saved = saved_bytes(lambda: RF.leaky_relu(h, 0.1))
    assert saved == [(torch.int32, 4 * 5)]


def test_double_backward_refused():
    x = randn(3, 4).requires_grad_()
    w = torch.tensor([0.25], requires_grad=True)
    y = RF.prelu(x, w, backend="triton")
    with pytest.raises(RuntimeError, match="prelu: the Triton backend gives first derivatives only"):
        torch.autograd.grad(y.sum(), (x, w), create_graph=True)


@pytest.mark.parametrize("name", ["leaky_relu", "flexible_relu"])
def test_inplace_under_no_grad_is_seen_by_autograd(name):
    """Overwriting a tensor a graph saved, in place under no_grad, makes its backward fail as
    with torch's own in-place ops (the kernel writes x directly, so its version is bumped by
    hand), never a silently wrong gradient."""
    w = randn(4, 5, 30).requires_grad_()
    y = torch.sigmoid(w * 1.0)  # sigmoid keeps its output y
    v = y._version
    with torch.no_grad():
        if name == "leaky_relu":
            RF.leaky_relu(y, 0.1, inplace=True, backend="triton")
        else:
            RF.flexible_relu(y, torch.zeros(5), 1, inplace=True, backend="triton")
    assert y._version > v
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


def test_torch_func_transforms():
    """torch.func (grad, vmap) through the Triton backend: the custom ops' autograd does not
    support functorch, so the plain formulas run there, with the same gradients."""
    x = randn(3, 4, 5, dtype=torch.float64)
    w = torch.rand(4, generator=gen(2), dtype=torch.float64) + 0.1
    b = randn(4, dtype=torch.float64, seed=3)
    for fn in (lambda t, p: RF.leaky_relu(t * p.sum(), 0.1, backend="triton"),
               lambda t, p: RF.prelu(t, p, 1, backend="triton"),
               lambda t, p: RF.flexible_relu(t, p, 1, backend="triton")):
        for p in (w, b):
            got = torch.func.grad(lambda t, p: fn(t, p).square().sum(), argnums=(0, 1))(x, p)
            ts = [x.clone().requires_grad_(), p.clone().requires_grad_()]
            want = torch.autograd.grad(fn(ts[0], ts[1]).square().sum(), ts)
            for a, e in zip(got, want):
                assert torch.allclose(a, e, rtol=1e-12, atol=1e-12)
    cw = randn(4, 1, 3, dtype=torch.float64, seed=5) * 0.3
    got = torch.func.grad(lambda t: RF.funnel_relu(t, cw, None, None, backend="triton").sum())(x)
    xt = x.clone().requires_grad_()
    want = torch.autograd.grad(RF.funnel_relu(xt, cw, None, None, backend="torch").sum(), xt)[0]
    assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)


# --- host cost: glue ops per call -------------------------------------------------------------


class _OpCounter(TorchDispatchMode):
    """Every aten op dispatched, except inside kernel launches (the interpreter's own copies)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.paused = False
        self.launches = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def counted(monkeypatch):
    """A counter whose count pauses while a kernel runs; the CUDA path's PReLU choice (keep x,
    no look at the slopes: no host sync) on these CPU tensors too."""
    from rectifiers.ops.triton import kernels as K

    counter = _OpCounter()
    real = K.launcher

    def launcher(name, device_type):
        fn = real(name, device_type)

        def launch(*args, **meta):
            counter.paused = True
            counter.launches += 1
            try:
                fn(*args, **meta)
            finally:
                counter.paused = False
        return launch

    monkeypatch.setattr(K, "launcher", launcher)
    monkeypatch.setattr(T, "_slopes_invertible", lambda w, dtype: False)
    return counter


def _glue_cases():
    c = 8
    w = torch.full((c,), 0.25, requires_grad=True)
    b = torch.full((c,), -1.0, requires_grad=True)
    cw = (randn(c, 1, 3, 3, seed=1) * 0.3).requires_grad_()
    bw = torch.ones(c, requires_grad=True)
    bb = torch.zeros(c, requires_grad=True)
    rm, rv = torch.zeros(c), torch.ones(c)
    # name -> (call, parameters, bound on glue ops: forward, backward, forward without grad)
    return {
        "leaky_relu": (lambda h: RF.leaky_relu(h, 0.1, backend="triton"), (), (2, 1, 1)),
        "prelu": (lambda h: RF.prelu(h, w, 1, backend="triton"), (w,), (2, 3, 1)),
        "flexible_relu": (lambda h: RF.flexible_relu(h, b, 1, backend="triton"), (b,), (2, 3, 1)),
        # the conv (and its backward) are the funnel's work, not glue: bounds without them
        "funnel_train": (lambda h: RF.funnel_relu(h, cw, bw, bb, rm, rv, True, backend="triton"),
                         (cw, bw, bb), (3, 6, 2)),
        "funnel_eval": (lambda h: RF.funnel_relu(h, cw, bw, bb, rm, rv, False, backend="triton"),
                        (cw, bw, bb), (4, 6, 3)),
    }


@pytest.mark.parametrize("name", list(_glue_cases()))
def test_glue_ops_per_call(counted, name):
    """Torch ops around the kernels per call (a deterministic stand-in for host time): within
    the bound; no host sync (``.item()``, ``_local_scalar_dense``), no tensor built from a
    Python list (neither can run in a CUDA graph), no fp32 copy for the funnel's statistics."""
    call, params, (fwd_max, bwd_max, nograd_max) = _glue_cases()[name]
    x = randn(4, 8, 6, 5)
    g = randn(4, 8, 6, 5, seed=9)
    h = x.clone().requires_grad_()
    call(h)  # first calls (compilation caches, lazy set-up) are not counted
    work = {"convolution", "convolution_backward"}
    seen = {}
    with counted:
        y = call(h)
    seen["fwd"] = list(counted.ops)
    counted.ops.clear()
    with counted:
        torch.autograd.grad(y, (h,) + params, g)
    seen["bwd"] = list(counted.ops)
    counted.ops.clear()
    with torch.no_grad(), counted:
        call(x)
    seen["nograd"] = list(counted.ops)
    glue = {k: [op for op in v if op not in work] for k, v in seen.items()}
    assert len(glue["fwd"]) <= fwd_max, glue
    assert len(glue["bwd"]) <= bwd_max, glue
    assert len(glue["nograd"]) <= nograd_max, glue
    everything = sum(seen.values(), [])
    assert not {"_local_scalar_dense", "item", "lift_fresh", "lift_fresh_copy", "_to_copy", "copy_"} & set(
        op for op in everything if not (name == "funnel_eval" and op == "_to_copy")), seen
    if name == "funnel_train":
        assert seen["fwd"].count("batch_norm_update_stats") == 1 and "var_mean" not in everything
    assert counted.launches >= 3  # the kernels did run (not counted)
