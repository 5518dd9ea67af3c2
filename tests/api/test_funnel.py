"""The funnel activation against its plain formula: nn.ConvNd(groups=C) + nn.BatchNormNd + max."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import rectifiers as R
from rectifiers import reference as ref

from helpers import BACKENDS

CLASSES = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}
CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
SIZES = {1: (9,), 2: (7, 6), 3: (3, 4, 5)}


def _plain(nsp, c, k, bias, dtype):
    conv = CONV[nsp](c, c, k, padding=k // 2, groups=c, bias=bias).to(dtype)
    bn = BN[nsp](c).to(dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return conv, bn


def _run_plain(conv, bn, x):
    return torch.maximum(x, bn(conv(x)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False], ids=["conv_bias", "no_bias"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_matches_plain_formula_train_then_eval(nsp, k, bias, backend):
    torch.manual_seed(nsp * 10 + k)
    c = 4
    conv, bn = _plain(nsp, c, k, bias, torch.float64)
    ours = CLASSES[nsp].from_modules(conv, bn)
    ours.backend = backend
    for step in range(3):  # training: batch statistics, running statistics updated
        x = torch.randn(3, c, *SIZES[nsp], dtype=torch.float64)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), _run_plain(conv, bn, xb)
        torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
        g = torch.randn_like(ya)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.weight.grad, conv.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.bn_weight.grad, bn.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours.bn_bias.grad, bn.bias.grad, rtol=1e-10, atol=1e-12)
        if bias:
            torch.testing.assert_close(ours.bias.grad, conv.bias.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(ours.running_mean, bn.running_mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours.running_var, bn.running_var, rtol=1e-12, atol=1e-12)
    assert int(ours.num_batches_tracked) == int(bn.num_batches_tracked) == 3
    ours.eval()
    bn.eval()
    x = torch.randn(2, c, *SIZES[nsp], dtype=torch.float64)
    torch.testing.assert_close(ours(x), _run_plain(conv, bn, x), rtol=1e-12, atol=1e-12)


def test_k3_fp32_against_nn_conv2d_batchnorm2d_maximum():
    """Issue 2, item 6, in the layout it names: same weights, same outputs and gradients.

    In float32 the summation order of the conv's weight gradient depends on the layout the fast
    path computes in, so each side is compared with a float64 run of the plain formula: ours may
    err at most twice as much as the plain formula does, plus a small atol.
    """
    torch.manual_seed(3)
    c = 6
    conv = nn.Conv2d(c, c, 3, padding=1, groups=c)
    bn = nn.BatchNorm2d(c)
    ours = R.FunnelReLU.from_modules(conv, bn)
    conv64, bn64 = copy.deepcopy(conv).double(), copy.deepcopy(bn).double()
    x = torch.randn(4, c, 11, 9)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    x64 = x.double().requires_grad_()
    ya, yb, y64 = ours(xa), torch.maximum(xb, bn(conv(xb))), torch.maximum(x64, bn64(conv64(x64)))
    for y in (ya, yb, y64):
        y.sum().backward()

    def err(a, b):
        return (a.double() - b).abs().max().item()

    assert err(ya, y64) <= 2 * err(yb, y64) + 1e-6
    assert err(xa.grad, x64.grad) <= 2 * err(xb.grad, x64.grad) + 1e-6
    for p_ours, p_plain, p64 in (
        (ours.weight, conv.weight, conv64.weight),
        (ours.bias, conv.bias, conv64.bias),
        (ours.bn_weight, bn.weight, bn64.weight),
        (ours.bn_bias, bn.bias, bn64.bias),
    ):
        assert err(p_ours.grad, p64.grad) <= 2 * err(p_plain.grad, p64.grad) + 1e-5


def test_momentum_none_is_cumulative_average():
    conv, bn = _plain(2, 3, 3, False, torch.float64)
    bn.momentum = None
    ours = R.FunnelReLU.from_modules(conv, bn)
    assert ours.momentum is None
    for _ in range(4):
        x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
        torch.testing.assert_close(ours(x), _run_plain(conv, bn, x))
    torch.testing.assert_close(ours.running_var, bn.running_var)


def test_lazy_channels_and_state_dict():
    m = R.FunnelReLU(None, 5)
    x = torch.randn(2, 7, 8, 8)
    m(x)
    assert m.channels == 7 and m.weight.shape == (7, 1, 5, 5) and m.running_mean.shape == (7,)
    keys = set(m.state_dict())
    assert keys == {"weight", "bn_weight", "bn_bias", "running_mean", "running_var", "num_batches_tracked"}
    m2 = R.FunnelReLU(None, 5)
    m2.load_state_dict(m.state_dict())
    m.eval()
    m2.eval()
    assert torch.equal(m(x), m2(x))
    with pytest.raises(RuntimeError, match="size mismatch"):
        R.FunnelReLU(3).load_state_dict(m.state_dict())


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_kept(backend):
    m = R.FunnelReLU(4, backend=backend)
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = m(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    y.sum().backward()
    m2 = R.FunnelReLU(4, backend="torch")
    m2.load_state_dict(m.state_dict())  # running stats now equal (both updated once)
    m2.num_batches_tracked.zero_()
    ref_y = m2(x.detach().contiguous())
    torch.testing.assert_close(y, ref_y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_low_precision(dtype, backend):
    torch.manual_seed(0)
    m = R.FunnelReLU(4, backend=backend)
    x = torch.randn(2, 4, 6, 6)
    y = m(x.to(dtype))
    assert y.dtype == dtype
    m32 = R.FunnelReLU(4, backend="torch")
    m32.load_state_dict(m.state_dict())
    m32.num_batches_tracked.zero_()
    expected = m32(x.to(dtype).float())
    plain = R.FunnelReLU(4, backend="torch")
    plain.load_state_dict(m.state_dict())
    err_plain = (plain(x.to(dtype)).float() - expected).abs().max().item()
    err = (y.float() - expected).abs().max().item()
    assert err <= 2 * err_plain + 1e-2


def test_functional_matches_reference():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    bw, bb = torch.rand(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    y = R.funnel_relu(x, w, bw, bb)
    torch.testing.assert_close(y, ref.funnel_relu(x, w, None, bw, bb), rtol=1e-12, atol=1e-12)
    rm, rv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    y_eval = R.funnel_relu(x, w, bw, bb, rm, rv, training=False)
    t = ref.funnel_transform(x, w, None, bw, bb, rm, rv, False, 0.1, 1e-5)
    torch.testing.assert_close(y_eval, torch.maximum(x, t), rtol=1e-12, atol=1e-12)


def test_ties_split_the_gradient():
    # An all-zero kernel and zero BN bias make T(x) == 0; at x == 0 both sides tie.
    m = R.FunnelReLU(1).eval()
    with torch.no_grad():
        m.weight.zero_()
    x = torch.zeros(1, 1, 3, 3, requires_grad=True)
    m(x).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 0.5))


@pytest.mark.parametrize(
    "conv_kwargs,bn_kwargs,match",
    [
        ({"padding_mode": "reflect"}, {}, "conv.padding_mode must be 'zeros'"),
        ({"stride": 2}, {}, r"conv.stride must be \(1, 1\)"),
        ({"dilation": 2, "padding": 2}, {}, "conv.padding must be"),
        ({}, {"track_running_stats": False}, "bn must track running statistics"),
        ({}, {"affine": False}, "bn must be an affine BatchNorm over 4 channels"),
        ({"groups": 1}, {}, "conv must be a depthwise Conv2d"),
    ],
)
def test_from_modules_refuses_what_computes_another_function(conv_kwargs, bn_kwargs, match):
    kw = {"padding": 1, "groups": 4, **conv_kwargs}
    conv = nn.Conv2d(4, 4, 3, **kw)
    bn = nn.BatchNorm2d(4, **bn_kwargs)
    with pytest.raises(ValueError, match=match):
        R.FunnelReLU.from_modules(conv, bn)


def test_failed_call_changes_nothing(monkeypatch):
    m = R.FunnelReLU(3)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    monkeypatch.setenv("RECTIFIERS_BACKEND", "bogus")
    with pytest.raises(ValueError, match="RECTIFIERS_BACKEND"):
        m(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="expected an input with 3 channels"):
        m(torch.randn(2, 5, 4, 4))
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_eager_working_layout_follows_device():
    """CPU computes in channels-last (its depthwise conv is fast there); other devices keep the
    input's layout (checked on 'meta' tensors, which have layouts but no data)."""
    from rectifiers.ops.eager import funnel as EF

    w = torch.zeros(4, 1, 3, 3)
    cl = torch.channels_last
    for dev, nchw_becomes_cl in (("cpu", True), ("meta", False)):
        x = torch.empty(2, 4, 5, 6, device=dev)
        xw, _, pad = EF._work(x, w.to(dev))
        assert xw.is_contiguous(memory_format=cl) == nchw_becomes_cl and pad == [1, 1]
        assert (EF._fmt(xw) == cl) == nchw_becomes_cl
        xw, _, _ = EF._work(x.to(memory_format=cl), w.to(dev))
        assert xw.is_contiguous(memory_format=cl) and EF._fmt(xw) == cl
        x1 = torch.empty(2, 4, 7, device=dev)
        xw, w1, pad = EF._work(x1, torch.zeros(4, 1, 3, device=dev))
        assert xw.shape == (2, 4, 1, 7) and w1.shape == (4, 1, 1, 3) and pad == [0, 1]
        assert xw.is_contiguous(memory_format=cl) == nchw_becomes_cl
