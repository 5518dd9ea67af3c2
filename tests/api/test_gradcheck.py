"""gradcheck and gradgradcheck in float64, for the input and every learnable parameter."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import rectifiers as R

from helpers import BACKENDS


def _away_from_kink(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64) * 1.8 + 0.2
    sign = torch.where(torch.rand(*shape, generator=g) > 0.5, 1.0, -1.0).to(torch.float64)
    return (x * sign).requires_grad_()


def _p(*vals):
    return torch.tensor(vals, dtype=torch.float64, requires_grad=True)


FUNCS = {
    "relu": lambda b: (lambda x: R.relu(x, backend=b), ()),
    "leaky_relu": lambda b: (lambda x: R.leaky_relu(x, 0.2, backend=b), ()),
    "leaky_relu_neg": lambda b: (lambda x: R.leaky_relu(x, -0.5, backend=b), ()),
    "prelu_scalar": lambda b: (lambda x, w: R.prelu(x, w, backend=b), (_p(0.3),)),
    "prelu_channel": lambda b: (lambda x, w: R.prelu(x, w, backend=b), (_p(0.3, -0.2, 1.5),)),
    "prelu_zero_slope": lambda b: (lambda x, w: R.prelu(x, w, backend=b), (_p(0.0, 0.5, 0.0),)),
    "prelu_last_dim": lambda b: (lambda x, w: R.prelu(x, w, dim=-1, backend=b), (_p(0.1, 0.2, 0.3, 0.4),)),
    "frelu_scalar": lambda b: (lambda x, c: R.flexible_relu(x, c, backend=b), (_p(-1.0),)),
    "frelu_channel": lambda b: (lambda x, c: R.flexible_relu(x, c, backend=b), (_p(-1.0, 0.0, 0.5),)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(FUNCS))
def test_gradcheck_and_gradgradcheck(name, backend):
    fn, params = FUNCS[name](backend)
    x = _away_from_kink(2, 3, 4, seed=len(name))
    assert gradcheck(fn, (x, *params))
    assert gradgradcheck(fn, (x, *params))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_funnel_gradcheck(training, backend):
    torch.manual_seed(0)
    c = 2
    x = torch.randn(2, c, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(c, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    cb = torch.randn(c, dtype=torch.float64, requires_grad=True)
    bw = (torch.rand(c, dtype=torch.float64) + 0.5).requires_grad_()
    bb = torch.randn(c, dtype=torch.float64, requires_grad=True)
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)

    def fn(x, w, cb, bw, bb):
        # fresh running statistics each call: gradcheck calls many times
        return R.funnel_relu(x, w, bw, bb, rm.clone(), rv.clone(), training, 0.1, 1e-5,
                             conv_bias=cb, backend=backend)

    args = (x, w, cb, bw, bb)
    assert gradcheck(fn, args)
    assert gradgradcheck(fn, args)


@pytest.mark.parametrize("backend", BACKENDS)
def test_funnel_1d_gradcheck(backend):
    torch.manual_seed(1)
    x = torch.randn(3, 2, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 5, dtype=torch.float64, requires_grad=True)
    bw = torch.ones(2, dtype=torch.float64, requires_grad=True)
    bb = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lambda x, w, bw, bb: R.funnel_relu(x, w, bw, bb, backend=backend), (x, w, bw, bb))
