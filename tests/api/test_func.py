"""``torch.func`` transforms (grad, vjp, jacrev, vmap) through every activation and backend.

The backends' own autograd Functions keep their state from ``forward(ctx, ...)``, which
``torch.func`` refuses; under a transform the plain formulas (Triton: its custom ops) run
instead. These tests hold that: same values as ``torch.autograd`` on the reference formula.
"""

from __future__ import annotations

import pytest
import torch

import rectifiers.functional as RF
from rectifiers import reference as ref

from helpers import CASES

BACKENDS = ("torch", "eager")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_func_grad_and_vjp_match_autograd(name, backend):
    case = CASES[name]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, 6, generator=g, dtype=torch.float64) * 2
    params = case.make_params(x, 1, True)
    names = list(params)
    w = torch.randn(4, 5, 6, generator=g, dtype=torch.float64)

    def loss(x, *pvals):
        return (case.call(x, dict(zip(names, pvals)), 1, backend) * w).sum()

    argnums = tuple(range(1 + len(names)))
    got = torch.func.grad(loss, argnums=argnums)(x, *params.values())
    xs = [x.clone().requires_grad_()] + [p.clone().requires_grad_() for p in params.values()]
    want = torch.autograd.grad((case.oracle(xs[0], dict(zip(names, xs[1:])), 1) * w).sum(), xs)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # vjp and jacrev on a small input, and vmap over a batch of inputs
    y, pull = torch.func.vjp(lambda t: case.call(t, params, 1, backend), x)
    (dx,) = pull(w)
    assert torch.allclose(dx, want[0], rtol=1e-12, atol=1e-12)
    small = x[:1, :, :2]
    jac = torch.func.jacrev(lambda t: case.call(t, case.make_params(small, 1, True), 1, backend))(small)
    assert jac.shape == small.shape * 2
    batched = torch.func.vmap(lambda t: case.call(t, params, 0, backend))(x)
    assert torch.allclose(batched, case.call(x, params, 1, "torch"), rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_grad_through_the_funnel(backend):
    g = torch.Generator().manual_seed(4)
    c = 3
    x = torch.randn(2, c, 5, 6, generator=g, dtype=torch.float64)
    cw = torch.randn(c, 1, 3, 3, generator=g, dtype=torch.float64) * 0.3
    bw = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    bb = torch.randn(c, generator=g, dtype=torch.float64) * 0.1
    w = torch.randn(2, c, 5, 6, generator=g, dtype=torch.float64)

    def loss(x, cw, bw, bb):
        return (RF.funnel_relu(x, cw, bw, bb, backend=backend) * w).sum()

    got = torch.func.grad(loss, argnums=(0, 1, 2, 3))(x, cw, bw, bb)
    ins = [t.clone().requires_grad_() for t in (x, cw, bw, bb)]
    y = ref.funnel_relu(ins[0], ins[1], None, ins[2], ins[3], None, None, True, 0.1, 1e-5)
    want = torch.autograd.grad((y * w).sum(), ins)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)
