"""The Triton backend's funnel activation (``rectifiers.ops.triton.funnel``), run on CPU tensors
by Triton's interpreter (``TRITON_INTERPRET=1``).

Against :mod:`rectifiers.reference` and the ``"torch"`` backend: forward, gradients and running
statistics in several shapes and layouts (1-D to 3-D, channels_last, a channel wider than the
block, eval mode), ties and NaN, low precision within DESIGN.md's rule, float64 (which runs the
eager funnel), what is kept for backward and ``torch.compile(fullgraph=True)``. The funnel's
custom-op registration, ``torch.func`` and glue-op checks sit with the other activations' in
``test_triton.py``. Block sizes are shrunk so that these small tensors still span many programs.
"""

from __future__ import annotations

import pytest
import torch

from helpers import compiled_matches_eager, gen, nan_close, randn, saved_bytes

triton = pytest.importorskip("triton", reason="the Triton backend needs the 'triton' package")

import rectifiers.functional as RF  # noqa: E402
from rectifiers import reference as ref  # noqa: E402
from rectifiers.ops import triton as T  # noqa: E402


@pytest.fixture(autouse=True)
def _interpreter(triton_interpreter):
    """Every test here runs the kernels under Triton's interpreter, with small blocks."""


# --- against the reference and torch ----------------------------------------------------------


FUNNEL = [
    ((2, 4, 6, 5), 3, False, True),
    ((2, 3, 9, 8), 3, False, True),  # a channel (72 elements) wider than the test block (64)
    ((2, 4, 6, 5), 3, True, True),   # channels_last
    ((2, 4, 6, 5), 5, False, False),  # eval: running statistics
    ((3, 5, 17), 3, False, True),     # 1-D sequences
    ((2, 3, 3, 4, 5), 3, False, True),  # 3-D
]


@pytest.mark.parametrize("shape,k,channels_last,training", FUNNEL, ids=[str(f) for f in FUNNEL])
def test_funnel_matches_reference(shape, k, channels_last, training):
    c = shape[1]
    x = randn(*shape)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    cw = randn(c, 1, *([k] * (len(shape) - 2)), seed=1) * 0.3
    cb = randn(c, seed=2) * 0.1
    bw = torch.rand(c, generator=gen(3)) + 0.5
    bb = randn(c, seed=4) * 0.1
    rm, rv = randn(c, seed=5) * 0.1, torch.rand(c, generator=gen(6)) + 0.5
    rm2, rv2 = rm.clone(), rv.clone()
    g = randn(*shape, seed=8)
    ins = [t.clone().requires_grad_() for t in (x, cw, cb, bw, bb)]
    y = RF.funnel_relu(ins[0], ins[1], ins[3], ins[4], rm, rv, training, 0.1, 1e-5,
                       conv_bias=ins[2], backend="triton")
    ins2 = [t.clone().requires_grad_() for t in (x, cw, cb, bw, bb)]
    y2 = ref.funnel_relu(ins2[0], ins2[1], ins2[2], ins2[3], ins2[4], rm2, rv2, training, 0.1, 1e-5)
    assert torch.allclose(y, y2, rtol=1e-5, atol=1e-5)
    assert torch.allclose(rm, rm2, rtol=1e-5, atol=1e-6) and torch.allclose(rv, rv2, rtol=1e-5, atol=1e-6)
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(torch.autograd.grad(y, ins, g), torch.autograd.grad(y2, ins2, g)):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_funnel_ties_and_nan():
    """Ties split the gradient and NaN passes it to both branches, as torch.maximum's backward."""
    c = 2
    x = torch.zeros(2, c, 3, 3)
    x[0, 0, 0, 0] = float("nan")
    cw = torch.zeros(c, 1, 3, 3, requires_grad=True)  # T(x) = bias = 0 on the zeros: a tie
    bw = torch.ones(c, requires_grad=True)
    bb = torch.zeros(c, requires_grad=True)
    xx = x.clone().requires_grad_()
    rm, rv = torch.zeros(c), torch.ones(c)
    y = RF.funnel_relu(xx, cw, bw, bb, rm, rv, False, backend="triton")
    xr = x.clone().requires_grad_()
    cwr, bwr, bbr = (t.detach().clone().requires_grad_() for t in (cw, bw, bb))
    yr = ref.funnel_relu(xr, cwr, None, bwr, bbr, rm, rv, False)
    assert torch.equal(torch.isnan(y), torch.isnan(yr))
    g = torch.ones_like(y)
    for a, b in zip(torch.autograd.grad(y, (xx, bb), g), torch.autograd.grad(yr, (xr, bbr), g)):
        assert nan_close(a, b, 1e-6, 1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_funnel_low_precision(dtype):
    """Within twice the error of the plain formula in the same dtype (against fp32), plus atol."""
    shape, c = (2, 4, 7, 6), 4
    x = randn(*shape)
    params = [randn(c, 1, 3, 3, seed=1) * 0.3, torch.rand(c, generator=gen(3)) + 0.5,
              randn(c, seed=4) * 0.1]
    g = randn(*shape, seed=8)

    def run(dt, backend):
        ins = [t.to(dt).requires_grad_() for t in [x] + params]
        y = RF.funnel_relu(ins[0], ins[1], ins[2], ins[3], backend=backend)
        return [y.detach()] + list(torch.autograd.grad(y, ins, g.to(dt)))

    exact = run(torch.float32, "torch")
    ours, theirs = run(dtype, "triton"), run(dtype, "torch")
    for o, t, e in zip(ours, theirs, exact):
        assert o.dtype == dtype
        err = (o.double() - e.double()).abs().max()
        err_t = (t.double() - e.double()).abs().max()
        assert err <= 2 * err_t + 1e-2 * max(1.0, e.abs().max().item()), (err, err_t)


def test_funnel_float64_keeps_float64():
    """The fused funnel keeps fp32 statistics; a float64 input runs in float64 throughout and
    passes gradcheck (it used to fail it, its statistics rounded to fp32)."""
    c = 3
    g = gen(11)
    x = torch.randn(2, c, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    cw = (torch.randn(c, 1, 3, 3, generator=g, dtype=torch.float64) * 0.3).requires_grad_()
    bw = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    bb = (torch.randn(c, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)

    def fun(x, cw, bw, bb):
        return RF.funnel_relu(x, cw, bw, bb, rm, rv, True, backend="triton")

    assert fun(x, cw, bw, bb).dtype == torch.float64
    assert torch.autograd.gradcheck(fun, (x, cw, bw, bb))
    y = RF.funnel_relu(x, cw, bw, bb, None, None, True, backend="triton")
    y_ref = ref.funnel_relu(x, cw, None, bw, bb, None, None, True, 0.1, 1e-5)
    assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-12)


# --- memory, compile --------------------------------------------------------------------------


def test_funnel_keeps_little():
    x = randn(2, 8, 9, 7).requires_grad_()
    h = x * 1.0
    cw = (randn(8, 1, 3, 3) * 0.3).requires_grad_()
    bw = torch.ones(8, requires_grad=True)
    bb = torch.zeros(8, requires_grad=True)
    n = h.numel()
    _, ours = saved_bytes(lambda: RF.funnel_relu(h, cw, bw, bb, backend="triton"))
    _, plain = saved_bytes(lambda: RF.funnel_relu(h, cw, bw, bb, backend="torch"))
    big = lambda s: sum(b for _, b in s if b >= n)  # noqa: E731
    assert (torch.int32, 4 * ((n + 15) // 16)) in ours  # 2 bits per element
    assert big(ours) <= 0.4 * big(plain) + n // 4, (ours, plain)


def test_compile_fullgraph_funnel():
    x = randn(2, 3, 6, 5)
    cw = randn(3, 1, 3, 3) * 0.3
    bw, bb = torch.ones(3), torch.zeros(3)

    def f(x, cw, bw, bb):
        return T.funnel_relu(x, cw, None, bw, bb, None, None, True, 0.1, 1e-5)

    compiled_matches_eager(f, x, cw, bw, bb, tol=1e-5)
