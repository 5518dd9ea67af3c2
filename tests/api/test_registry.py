"""The activation registry: names, aliases, classes, create(), register()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rectifiers
from rectifiers.registry import UnknownActivationError, canonical_name, create, get, names, register, unregister

EXPECTED = {
    "relu": rectifiers.ReLU,
    "leaky_relu": rectifiers.LeakyReLU,
    "prelu": rectifiers.PReLU,
    "flexible_relu": rectifiers.FlexibleReLU,
    "funnel_relu": rectifiers.FunnelReLU,
    "funnel_relu1d": rectifiers.FunnelReLU1d,
    "funnel_relu3d": rectifiers.FunnelReLU3d,
}


def test_builtin_names():
    assert names() == sorted(EXPECTED)
    for n, cls in EXPECTED.items():
        assert get(n) is cls


@pytest.mark.parametrize(
    "alias, cls",
    [
        ("frelu", rectifiers.FlexibleReLU),
        ("FReLU", rectifiers.FlexibleReLU),
        ("FlexibleReLU", rectifiers.FlexibleReLU),
        ("funnel", rectifiers.FunnelReLU),
        ("FunnelReLU", rectifiers.FunnelReLU),
        ("funnel1d", rectifiers.FunnelReLU1d),
        ("lrelu", rectifiers.LeakyReLU),
        ("leakyrelu", rectifiers.LeakyReLU),
        ("LeakyReLU", rectifiers.LeakyReLU),
        ("leaky-relu", rectifiers.LeakyReLU),
        (" PReLU ", rectifiers.PReLU),
        ("RELU", rectifiers.ReLU),
    ],
)
def test_aliases(alias, cls):
    assert get(alias) is cls
    assert get(canonical_name(alias)) is cls
    assert alias.strip().lower().replace("-", "_") in names(aliases=True)


def test_frelu_is_not_the_funnel():
    # The article calls FReLU "also Funnel activation": here they are two different classes.
    assert get("frelu") is not get("funnel")


def test_classes_pass_through():
    assert get(nn.GELU) is nn.GELU
    assert get(rectifiers.PReLU) is rectifiers.PReLU
    assert isinstance(create(nn.SiLU, inplace=True), nn.SiLU)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("inplace", [False, True])
def test_create_inplace_for_every_activation(name, inplace):
    act = create(name, inplace=inplace)
    assert type(act) is EXPECTED[name]
    assert act.inplace is inplace
    # It runs (lazy ones infer their channels); in-place on a non-leaf works.
    d = 3 if name.endswith("1d") else 5 if name.endswith("3d") else 4
    x = torch.randn((2, 3) + (5,) * (d - 2), requires_grad=True)
    y = act(x * 1.0)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None


def test_create_passes_arguments():
    act = create("leaky_relu", 0.2)
    assert act.negative_slope == 0.2
    p = create("prelu", num_parameters=7, init=0.1)
    assert p.weight.shape == (7,) and torch.all(p.weight == 0.1)
    f = create("funnel", 8, kernel_size=5)
    assert f.weight.shape == (8, 1, 5, 5)


def test_create_bad_keyword_names_the_signature():
    with pytest.raises(TypeError, match=r"create\('prelu'\).*slope.*PReLU takes"):
        create("prelu", slope=0.3)


@pytest.mark.parametrize("bad, hint", [("prelux", "prelu"), ("funel", "funnel"), ("leaky_rleu", "leaky_relu")])
def test_unknown_name_suggests_closest(bad, hint):
    with pytest.raises(UnknownActivationError, match=f"unknown activation '{bad}'; did you mean '{hint}'"):
        get(bad)
    with pytest.raises(KeyError):  # also a KeyError, for dict-like callers
        create(bad)


def test_bad_types():
    with pytest.raises(TypeError, match="instance"):
        get(nn.ReLU())
    with pytest.raises(TypeError, match="name"):
        get(3)


def test_register_refuses_taken_names_and_unregisters():
    class Shifted(nn.Module):
        def __init__(self, shift: float = 1.0, inplace: bool = False):
            super().__init__()
            self.shift, self.inplace = shift, inplace

        def forward(self, x):
            return torch.relu(x) - self.shift

    register("shifted_relu", Shifted, aliases=("srelu",))
    try:
        assert get("SRELU") is Shifted
        assert create("shifted-relu", shift=2.0).shift == 2.0
        assert "shifted_relu" in names() and "srelu" in names(aliases=True)
        for taken in ("shifted_relu", "srelu", "prelu", "frelu", "FReLU"):
            with pytest.raises(ValueError, match="already taken"):
                register(taken, Shifted)
        with pytest.raises(ValueError, match="already taken"):
            register("fresh_name", Shifted, aliases=("lrelu",))
        assert "fresh_name" not in names()  # nothing half-registered
    finally:
        unregister("srelu")
    assert "shifted_relu" not in names() and "srelu" not in names(aliases=True)
    with pytest.raises(ValueError, match="built-in"):
        unregister("prelu")


def test_register_as_decorator_and_bad_factories():
    @register("my_act_for_test")
    class MyAct(nn.Module):
        def __init__(self, inplace: bool = False):
            super().__init__()

        def forward(self, x):
            return x

    try:
        assert get("my_act_for_test") is MyAct
    finally:
        unregister("my_act_for_test")
    with pytest.raises(TypeError, match="factory"):
        register("x_instance", nn.ReLU())
    with pytest.raises(TypeError, match="name"):
        register("", nn.ReLU)
    register("returns_int", lambda **kw: 3)
    try:
        with pytest.raises(TypeError, match="returned int, expected an nn.Module"):
            create("returns_int")
    finally:
        unregister("returns_int")
