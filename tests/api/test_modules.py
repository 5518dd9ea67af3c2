"""The modules: drop-in parity with torch.nn, state dicts, lazy parameters, in-place, autocast."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch import nn

import rectifiers as R
from rectifiers import reference as ref

from helpers import BACKENDS, bits_equal


TORCH_PAIRS = [
    ("relu", lambda b: R.ReLU(backend=b), lambda: nn.ReLU()),
    ("leaky_default", lambda b: R.LeakyReLU(backend=b), lambda: nn.LeakyReLU()),
    ("leaky_0.2", lambda b: R.LeakyReLU(0.2, backend=b), lambda: nn.LeakyReLU(0.2)),
    ("prelu_1", lambda b: R.PReLU(backend=b), lambda: nn.PReLU()),
    ("prelu_6", lambda b: R.PReLU(6, 0.1, backend=b), lambda: nn.PReLU(6, 0.1)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", [(5, 6), (2, 6, 7), (3, 6, 4, 5), (1, 6, 1, 1, 3)], ids=str)
@pytest.mark.parametrize("pair", TORCH_PAIRS, ids=[p[0] for p in TORCH_PAIRS])
def test_bitwise_parity_with_torch_nn(pair, shape, dtype, backend):
    _, ours_f, theirs_f = pair
    ours, theirs = ours_f(backend).to(dtype), theirs_f().to(dtype)
    if hasattr(theirs, "weight"):
        with torch.no_grad():  # distinct per-channel slopes, so a channel mix-up shows
            theirs.weight.copy_(torch.linspace(-0.5, 1.5, theirs.weight.numel(), dtype=dtype))
        ours.load_state_dict(theirs.state_dict())
    # A fixed input per case (the slope-gradient check's tolerance is for this input, not for
    # whatever the worker's RNG holds after other tests).
    gen = torch.Generator().manual_seed(len(shape) * 1000 + sum(shape))
    x = torch.randn(shape, generator=gen).to(dtype)
    x.view(-1)[:2] = torch.tensor([0.0, -0.0], dtype=dtype)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert bits_equal(ya, yb)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    assert bits_equal(xa.grad, xb.grad)
    if hasattr(theirs, "weight"):
        torch.testing.assert_close(ours.weight.grad, theirs.weight.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prelu_0d_and_1d_like_torch(dtype):
    for x in (torch.tensor(-2.0, dtype=dtype), torch.randn(9, dtype=dtype)):
        assert bits_equal(R.PReLU().to(dtype)(x), nn.PReLU().to(dtype)(x))
    with pytest.raises(ValueError, match="no channel dimension"):
        R.PReLU(3)(torch.randn(3))
    # dim=0 makes a 1-D input a vector of channels.
    y = R.PReLU(3, dim=0)(torch.tensor([-1.0, -1.0, 1.0]))
    assert torch.equal(y, torch.tensor([-0.25, -0.25, 1.0]))


def test_state_dict_round_trip_with_torch_prelu():
    theirs = nn.PReLU(4, 0.3)
    ours = R.PReLU(4)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert ours.state_dict()["weight"].shape == theirs.state_dict()["weight"].shape
    ours.load_state_dict(theirs.state_dict())
    assert torch.equal(ours.weight, theirs.weight)
    with torch.no_grad():
        ours.weight.fill_(0.7)
    fresh = nn.PReLU(4)
    fresh.load_state_dict(ours.state_dict())
    assert torch.equal(fresh.weight, torch.full((4,), 0.7))


def test_state_dict_with_wrong_shape_is_refused():
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        R.PReLU(3).load_state_dict({"weight": torch.ones(4)})
    with pytest.raises(RuntimeError, match="size mismatch for bias"):
        R.FlexibleReLU(1).load_state_dict({"bias": torch.ones(2)})


@pytest.mark.parametrize("cls,name", [(R.PReLU, "weight"), (R.FlexibleReLU, "bias")])
def test_lazy_per_channel_parameters(cls, name):
    m = cls(None)
    assert m.has_uninitialized_params()
    x = torch.randn(2, 5, 3)
    y = m(x)
    p = getattr(m, name)
    assert p.shape == (5,) and m.num_parameters == 5
    assert torch.equal(p, torch.full((5,), m.init))
    assert y.shape == x.shape
    # channels-last features: count along dim=-1
    m2 = cls(None, dim=-1)
    m2(torch.randn(2, 3, 7))
    assert getattr(m2, name).shape == (7,)
    # a lazy module can load a state dict before its first call
    m3 = cls(None)
    m3.load_state_dict({name: torch.full((6,), 0.5)})
    assert getattr(m3, name).shape == (6,) and m3.num_parameters == 6


def test_lazy_then_wrong_channel_count_is_refused():
    m = R.PReLU(None)
    m(torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="weight has 5 elements but the input .* has 4 channels along dim 1"):
        m(torch.randn(2, 4, 3))


def test_flexible_relu_alias_and_defaults():
    assert R.FReLU is R.FlexibleReLU
    assert R.frelu is R.flexible_relu
    m = R.FReLU()
    assert m.bias.shape == (1,) and m.bias.item() == -1.0
    x = torch.randn(3, 4)
    assert torch.equal(m(x), ref.flexible_relu(x, m.bias.detach()))
    assert m.bias.requires_grad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda b: R.ReLU(True, backend=b), lambda: nn.ReLU(True)),
        (lambda b: R.LeakyReLU(0.1, True, backend=b), lambda: nn.LeakyReLU(0.1, True)),
    ],
)
def test_inplace_semantics_match_torch(ours, theirs, backend):
    base = torch.randn(4, 5, requires_grad=True)
    xa, xb = base * 1.0, base * 1.0  # non-leaf, so in-place is allowed
    ya, yb = ours(backend)(xa), theirs()(xb)
    assert ya.data_ptr() == xa.data_ptr() and yb.data_ptr() == xb.data_ptr()
    assert torch.equal(ya, yb)
    (ga,) = torch.autograd.grad(ya.sum(), base)
    (gb,) = torch.autograd.grad(yb.sum(), base)
    assert torch.equal(ga, gb)


@pytest.mark.parametrize("backend", BACKENDS)
def test_inplace_flexible_relu(backend):
    b = torch.tensor([-0.5, 0.25, 1.0], requires_grad=True)
    base = torch.randn(2, 3, 4, requires_grad=True)
    x = base * 1.0
    expected = ref.flexible_relu(x.detach(), b.detach())
    y = R.flexible_relu(x, b, inplace=True, backend=backend)
    assert y.data_ptr() == x.data_ptr() and torch.equal(y, expected)
    y.sum().backward()
    assert torch.equal(base.grad, (base.detach() > 0).float())
    assert torch.equal(b.grad, torch.full((3,), 8.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_cpu(backend):
    torch.manual_seed(0)
    lin = nn.Linear(8, 6)
    acts = [R.ReLU(backend=backend), R.LeakyReLU(backend=backend), R.PReLU(6, backend=backend),
            R.FlexibleReLU(6, backend=backend)]
    x = torch.randn(4, 8)
    for act in acts:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = lin(x)
            y = act(h)
        assert h.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
        expected = act.float()(h.float())
        torch.testing.assert_close(y.float(), expected, rtol=1.6e-2, atol=1e-2)
        y.float().sum().backward()
        for p in act.parameters():
            assert p.grad is not None and p.grad.dtype == torch.float32


@pytest.mark.parametrize("clone", ["deepcopy", "pickle"])
def test_modules_pickle_and_deepcopy(clone):
    for m in (R.ReLU(), R.LeakyReLU(0.2), R.PReLU(3, 0.1), R.FReLU(3), R.FunnelReLU(3), R.PReLU(None)):
        m(torch.randn(2, 3, 4, 4))  # lazy ones initialise; the funnel's running stats move
        m2 = copy.deepcopy(m) if clone == "deepcopy" else pickle.loads(pickle.dumps(m))
        assert type(m2) is type(m) and repr(m2) == repr(m)
        x = torch.randn(2, 3, 4, 4)
        m.eval()
        m2.eval()
        assert torch.equal(m(x), m2(x))


def test_repr_shows_arguments():
    assert repr(R.LeakyReLU(0.2, True)) == "LeakyReLU(negative_slope=0.2, inplace=True)"
    assert repr(R.PReLU(3, dim=-1)) == "PReLU(num_parameters=3, dim=-1)"
    assert "kernel_size=5" in repr(R.FunnelReLU(4, 5))
