"""Issue 13, items fixed outside the backends: each test failed before its fix.

1. a funnel in training mode with one value per channel raised nothing and wrote NaN into
   ``running_var`` (eager / C++ paths);
4. ``prelu`` took a 2-D one-element weight that ``F.prelu`` refuses;
5. ``from_modules`` refused ``padding="same"`` with a garbled message;
8. errors torch raises as ``RuntimeError`` were plain ``ValueError``;
9. the README's funnel equivalence named a conv with a bias.

Plus the state-safety rule: an input refused in training mode leaves every parameter and buffer
of every module bit-identical (and a lazy module uninitialised).
"""

from __future__ import annotations

import pathlib
import re

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

import rectifiers as R

from helpers import BACKENDS

FUNNELS = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}
TORCH_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
TORCH_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _snapshot(m: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer as raw bytes (NaN and -0.0 compare exactly)."""
    out = {}
    for name, t in list(m.named_parameters()) + list(m.named_buffers()):
        if isinstance(t, nn.parameter.UninitializedTensorMixin):
            out[name] = None
        else:
            out[name] = t.detach().clone().reshape(-1).view(torch.uint8)
    return out


def _same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        if (a[k] is None) != (b[k] is None):
            return False
        if a[k] is not None and not torch.equal(a[k], b[k]):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Item 1: one value per channel in training


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_funnel_one_value_per_channel_in_training_raises_as_batchnorm(nsp, layout, backend):
    shape = (1, 3) + (1,) * nsp
    x = torch.randn(shape)
    if layout == "channels_last" and nsp == 1:  # no memory format for 3-D: an (N, L, C) view
        x = torch.randn(1, 1, 3).transpose(1, 2)
    elif layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last if nsp == 2 else torch.channels_last_3d)
    # torch's own layer: the message we must match
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        TORCH_BN[nsp](3)(x)
    m = FUNNELS[nsp](3, backend=backend)
    before = _snapshot(m)
    for xi in (x, x.clone().requires_grad_()):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            m(xi)
    assert _same_state(before, _snapshot(m))
    assert not torch.isnan(m.running_var).any()
    m.eval()  # eval mode uses the running statistics: one value is fine, as in torch
    assert torch.isfinite(m(x)).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_funnel_functional_one_value_per_channel(backend):
    c = 3
    x = torch.randn(1, c, 1, 1)
    w = torch.randn(c, 1, 3, 3)
    rm, rv = torch.zeros(c), torch.ones(c)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        R.funnel_relu(x, w, torch.ones(c), torch.zeros(c), rm, rv, training=True, backend=backend)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        R.funnel_relu(x, w, backend=backend)  # no running statistics: batch statistics
    assert torch.equal(rm, torch.zeros(c)) and torch.equal(rv, torch.ones(c))
    # Two values per channel are enough (torch's rule is N * spatial > 1, not N > 1).
    R.funnel_relu(torch.randn(1, c, 1, 2), w, torch.ones(c), torch.zeros(c), rm, rv, training=True, backend=backend)
    assert torch.isfinite(rv).all()


def test_lazy_funnel_refusing_one_value_stays_uninitialised():
    m = R.FunnelReLU(None)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        m(torch.randn(1, 3, 1, 1))
    assert m.has_uninitialized_params()
    y = m(torch.randn(2, 3, 4, 4))
    assert y.shape == (2, 3, 4, 4) and m.channels == 3


# --------------------------------------------------------------------------------------------
# Item 4: prelu's weight rank


@pytest.mark.parametrize("shape", [(1, 1), (1, 1, 1)], ids=str)
def test_prelu_refuses_a_weight_of_two_or_more_dims_as_torch(shape):
    x = torch.randn(2, 3)
    w = torch.full(shape, 0.25)
    with pytest.raises(RuntimeError, match="scalar or 1D"):
        TF.prelu(x, w)
    with pytest.raises(RuntimeError, match=r"weight must have 1 element or be 1-D.*got shape \(1, 1"):
        R.prelu(x, w)
    # 0-D and 1-D one-element weights stay accepted, bitwise as torch
    for w in (torch.tensor(0.25), torch.tensor([0.25])):
        assert torch.equal(R.prelu(x, w), TF.prelu(x, w))


# --------------------------------------------------------------------------------------------
# Item 5: from_modules with padding="same"


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_from_modules_accepts_padding_same(nsp, k, bias):
    torch.manual_seed(0)
    c = 4
    conv = TORCH_CONV[nsp](c, c, k, padding="same", groups=c, bias=bias).double()
    bn = TORCH_BN[nsp](c).double()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    bn.eval()
    m = FUNNELS[nsp].from_modules(conv, bn)
    x = torch.randn((2, c) + (5,) * nsp, dtype=torch.float64)
    torch.testing.assert_close(m(x), torch.maximum(x, bn(conv(x))), rtol=1e-12, atol=1e-12)


def test_from_modules_padding_messages_are_readable():
    c = 4
    with pytest.raises(ValueError, match=r"conv.padding must be \(1, 1\) .* got \(0, 0\)$"):
        R.FunnelReLU.from_modules(nn.Conv2d(c, c, 3, padding="valid", groups=c), nn.BatchNorm2d(c))
    with pytest.raises(ValueError) as info:
        R.FunnelReLU.from_modules(nn.Conv2d(c, c, 3, padding="same", dilation=2, groups=c), nn.BatchNorm2d(c))
    assert "('s', 'a', 'm', 'e')" not in str(info.value)
    assert re.search(r"conv.padding must be \(1, 1\) .* got 'same'$", str(info.value))
    with pytest.raises(ValueError, match="kernel must be odd"):
        R.FunnelReLU.from_modules(nn.Conv2d(c, c, 2, padding="same", groups=c), nn.BatchNorm2d(c))


# --------------------------------------------------------------------------------------------
# Item 8: error classes torch code can catch


def test_shape_error_is_both_classes():
    assert issubclass(R.ShapeError, ValueError) and issubclass(R.ShapeError, RuntimeError)


SHAPE_ERRORS = [
    # (id, rectifiers call, torch call): torch raises RuntimeError for each
    ("prelu_0d_input", lambda: R.prelu(torch.tensor(1.0), torch.ones(2)),
     lambda: TF.prelu(torch.tensor(1.0), torch.ones(2))),
    ("prelu_channels", lambda: R.prelu(torch.randn(2, 8, 3), torch.ones(9)),
     lambda: TF.prelu(torch.randn(2, 8, 3), torch.ones(9))),
    ("prelu_2d_weight", lambda: R.prelu(torch.randn(2, 8, 3), torch.ones(2, 4)),
     lambda: TF.prelu(torch.randn(2, 8, 3), torch.ones(2, 4))),
    ("PReLU_channels", lambda: R.PReLU(3)(torch.randn(2, 5)), lambda: nn.PReLU(3)(torch.randn(2, 5))),
    ("funnel_channels", lambda: R.FunnelReLU(3)(torch.randn(2, 5, 4, 4)),
     lambda: nn.Conv2d(3, 3, 3, padding=1, groups=3)(torch.randn(2, 5, 4, 4))),
    ("funnel_rank", lambda: R.FunnelReLU(3)(torch.randn(2, 3, 4)),
     lambda: nn.Conv2d(3, 3, 3, padding=1, groups=3)(torch.randn(2, 2, 3, 4, 4))),
    ("funnel_functional_weight", lambda: R.funnel_relu(torch.randn(1, 3, 5, 5), torch.ones(4, 1, 3, 3)),
     lambda: TF.conv2d(torch.randn(1, 3, 5, 5), torch.ones(4, 1, 3, 3), groups=3)),
]


@pytest.mark.parametrize("ours,theirs", [c[1:] for c in SHAPE_ERRORS], ids=[c[0] for c in SHAPE_ERRORS])
def test_errors_torch_raises_as_runtime_error_are_catchable_as_such(ours, theirs):
    with pytest.raises(RuntimeError):
        theirs()
    with pytest.raises(RuntimeError) as info:
        ours()
    assert isinstance(info.value, ValueError) and type(info.value) is R.ShapeError


# --------------------------------------------------------------------------------------------
# Item 9: the docs' funnel equivalence (the README's prose moved to docs/activations.md)


def test_docs_funnel_equivalence_names_a_conv_without_bias():
    readme = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "activations.md").read_text()
    text = " ".join(readme.split())
    m = re.search(r"nn\.Conv2d\(C, C, k, padding=k//2, groups=C(?P<rest>[^)]*)\)", text)
    assert m is not None and "bias=False" in m.group("rest")
    assert "from_modules" in text and "checkpoint" in text[text.index("bias=False"):][:800]
    # and the sentence is true: that pair is what FunnelReLU(C) computes
    c, k = 4, 3
    conv, bn = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False), nn.BatchNorm2d(c)
    m = R.FunnelReLU.from_modules(conv, bn)
    assert m.bias is None and set(m.state_dict()) == set(R.FunnelReLU(c).state_dict())


# --------------------------------------------------------------------------------------------
# State safety: an input refused in training mode changes nothing


def _refused_inputs(name: str):
    """(id, input, exception) triples every module of this kind refuses."""
    bad = [
        ("int", torch.ones(2, 3, 4, 4, dtype=torch.long), TypeError),
        ("bool", torch.ones(2, 3, 4, 4, dtype=torch.bool), TypeError),
        ("list", [[1.0, -1.0]], TypeError),
    ]
    if name in ("PReLU", "FReLU"):
        bad.append(("channels", torch.randn(2, 5, 4, 4), ValueError))
        bad.append(("channels_dim_less", torch.randn(2), ValueError))
    if name.startswith("Funnel"):
        nsp = {"FunnelReLU1d": 1, "FunnelReLU": 2, "FunnelReLU3d": 3}[name]
        bad.append(("one_value", torch.randn((1, 3) + (1,) * nsp), ValueError))
        bad.append(("channels", torch.randn((2, 5) + (4,) * nsp), ValueError))
        bad.append(("rank", torch.randn((2, 3) + (4,) * (nsp % 3 + 1)), ValueError))
        bad.append(("rank_0d", torch.tensor(1.0), ValueError))
    return bad


MODULES = {
    "ReLU": lambda b: R.ReLU(backend=b),
    "ReLU_inplace": lambda b: R.ReLU(True, backend=b),
    "LeakyReLU": lambda b: R.LeakyReLU(0.2, backend=b),
    "LeakyReLU_inplace_neg": lambda b: R.LeakyReLU(-0.2, True, backend=b),
    "PReLU": lambda b: R.PReLU(3, backend=b),
    "FReLU": lambda b: R.FReLU(3, backend=b),
    "FunnelReLU1d": lambda b: R.FunnelReLU1d(3, bias=True, backend=b),
    "FunnelReLU": lambda b: R.FunnelReLU(3, backend=b),
    "FunnelReLU3d": lambda b: R.FunnelReLU3d(3, momentum=None, backend=b),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODULES))
def test_refused_input_in_training_leaves_state_bit_identical(name, backend):
    torch.manual_seed(0)
    m = MODULES[name](backend).train()
    # a few good steps first, so the state is not the initial one
    shape = {"FunnelReLU1d": (4, 3, 6), "FunnelReLU3d": (2, 3, 3, 4, 4)}.get(name, (4, 3, 5, 5))
    for _ in range(2):
        x = torch.randn(shape, requires_grad=True)
        # (in place with a negative slope takes no gradient: a forward pass only)
        with torch.set_grad_enabled(name != "LeakyReLU_inplace_neg"):
            y = m(x * 1.0)
        if y.requires_grad:
            y.sum().backward()
    with torch.no_grad():  # NaN and -0.0 in the state: compared bit for bit
        for p in m.parameters():
            p.view(-1)[0] = -0.0
    before = _snapshot(m)
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    kind = name.split("_")[0]
    cases = list(_refused_inputs(kind))
    if "inplace" in name:  # in place on a leaf that requires grad: refused
        cases.append(("inplace_leaf", torch.randn(2, 3, 4, 4, requires_grad=True), RuntimeError))
    if name == "LeakyReLU_inplace_neg":  # in place, negative slope, a gradient needed
        cases.append(("inplace_neg", torch.randn(2, 3, requires_grad=True) * 1.0, ValueError))
    for case_id, x, exc in cases:
        with pytest.raises(exc):
            m(x)
        assert _same_state(before, _snapshot(m)), case_id
        for n, p in m.named_parameters():
            assert torch.equal(p.grad, grads[n]), (case_id, n)


@pytest.mark.parametrize("name", ["PReLU", "FReLU", "FunnelReLU"])
def test_refused_input_leaves_a_lazy_module_uninitialised(name):
    make = {"PReLU": lambda: R.PReLU(None), "FReLU": lambda: R.FReLU(None), "FunnelReLU": lambda: R.FunnelReLU(None)}
    m = make[name]()
    for case_id, x, exc in _refused_inputs(name):
        if case_id.startswith("channels"):
            continue  # a lazy module takes any channel count at its first call
        with pytest.raises(exc):
            m(x)
        assert m.has_uninitialized_params(), case_id
