"""The modules' own fast path (``rectifiers.ops.module_eager_cpu`` / ``module_operators``).

A module whose ``backend`` is ``None`` calls torch.relu or the C++ operator itself when nothing is
left to decide, without its functional; anything else goes through the functional, which checks
and dispatches. Checked here: which way each call goes (the functional replaced by a spy), that
both ways give the same bits, and that a slope set after construction is checked when it is set.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import rectifiers as R
import rectifiers.functional as RF
from rectifiers.ops.cpp import pointwise as P
from rectifiers.testing import bits_equal

from helpers import cpp_kernel_or_skip

MODULES = {
    "relu": (lambda: R.ReLU(), "relu"),
    "leaky_relu": (lambda: R.LeakyReLU(0.2), "leaky_relu"),
    "prelu": (lambda: R.PReLU(5, 0.3), "prelu"),
    "flexible_relu": (lambda: R.FlexibleReLU(5, -0.4), "flexible_relu"),
}


@pytest.fixture
def spy(monkeypatch):
    """The operators built; the functionals replaced by spies that count calls and pass through."""
    cpp_kernel_or_skip(P, "C++ operators", monkeypatch)
    assert P.operators() is not None
    for var in ("RECTIFIERS_BACKEND", "RECTIFIERS_NO_CPP"):
        monkeypatch.delenv(var, raising=False)
    calls: dict[str, int] = {}
    for name in ("relu", "leaky_relu", "prelu", "flexible_relu"):
        real = getattr(RF, name)

        def counted(*args, _real=real, _name=name, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(RF, name, counted)
    return calls


def _run(m: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().requires_grad_()
    y = m(x)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    return [y.detach()] + list(torch.autograd.grad(y, [x, *m.parameters()], g))


def _x() -> torch.Tensor:
    x = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(0))
    x.view(-1)[:3] = torch.tensor([0.0, -0.0, float("nan")])
    return x


@pytest.mark.parametrize("name", list(MODULES))
def test_plain_call_skips_the_functional_with_the_same_bits(spy, monkeypatch, name) -> None:
    make, fn = MODULES[name]
    x = _x()
    fast = _run(make(), x)
    assert spy.get(fn, 0) == 0, "a plain CPU call should not go through the functional"
    monkeypatch.setenv("RECTIFIERS_BACKEND", "eager")  # the same backend, by the full path
    slow = _run(make(), x)
    assert spy.get(fn, 0) == 1
    assert all(bits_equal(a, b) for a, b in zip(fast, slow))


@pytest.mark.parametrize("name", list(MODULES))
@pytest.mark.parametrize("case", ["backend_arg", "env_backend", "no_cpp", "int_input", "double_on_meta",
                                  "forward_ad", "vmap"])
def test_anything_to_decide_goes_through_the_functional(spy, monkeypatch, name, case) -> None:
    make, fn = MODULES[name]
    m = make()
    x = _x()
    if case == "backend_arg":
        m.backend = "torch"
        m(x)
    elif case == "env_backend":
        monkeypatch.setenv("RECTIFIERS_BACKEND", "torch")
        m(x)
    elif case == "no_cpp":
        monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
        y = m(x)
        if name == "relu":  # torch.relu either way: no C++ to turn off, so the fast path stays
            assert spy.get(fn, 0) == 0 and bits_equal(y, torch.relu(x))
            return
    elif case == "int_input":
        with pytest.raises(TypeError):  # the functional's own error
            m(torch.ones(4, 5, 3, dtype=torch.int64))
    elif case == "double_on_meta":
        m.to("meta")
        m(x.double().to("meta") if name in ("relu", "leaky_relu") else x.to("meta"))
    elif case == "forward_ad":
        with fwAD.dual_level():
            y = m(fwAD.make_dual(x, torch.ones_like(x)))
            assert fwAD.unpack_dual(y).tangent is not None
    elif case == "vmap":
        torch.func.vmap(m, in_dims=2)(x)  # samples of (4, 5): the channels at dim 1
    assert spy.get(fn, 0) >= 1


def test_inplace_goes_through_the_functional(spy) -> None:
    x = _x()
    R.ReLU(inplace=True)(x.clone())
    R.LeakyReLU(0.1, inplace=True)(x.clone())
    R.FlexibleReLU(5, inplace=True)(x.clone())
    assert spy == {"relu": 1, "leaky_relu": 1, "flexible_relu": 1}


def test_a_parameter_that_does_not_fit_gets_the_functionals_error(spy) -> None:
    with pytest.raises(ValueError, match="weight"):
        R.PReLU(3)(_x())  # 3 slopes, 5 channels
    with pytest.raises(ValueError, match="bias"):
        R.FlexibleReLU(3)(_x())
    assert spy == {"prelu": 1, "flexible_relu": 1}


@pytest.mark.parametrize("bad,err", [(True, TypeError), (float("inf"), ValueError), (float("nan"), ValueError),
                                     ("0.1", TypeError)])
def test_a_slope_set_later_is_checked_when_set(bad, err) -> None:
    m = R.LeakyReLU(0.1)
    with pytest.raises(err):
        m.negative_slope = bad
    assert m.negative_slope == 0.1  # refused: unchanged
    m.negative_slope = 1  # an int, as torch takes it: stored as the float 1.0
    assert type(m.negative_slope) is float and m.negative_slope == 1.0
    m.negative_slope = torch.tensor(0.3)  # a 1-element tensor: its value
    assert m.negative_slope == pytest.approx(0.3)


@pytest.mark.parametrize("name", list(MODULES))
def test_jit_trace_records_the_operator(spy, name) -> None:
    """torch.jit.trace sees the registered operator (the extension's entry points call it through
    the dispatcher while tracing), so the traced module replays the same values and gradients;
    without that, the trace held only the fused kernel's empty_like."""
    import warnings

    make, fn = MODULES[name]
    m = make()
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-1, 1, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer warnings
        traced = torch.jit.trace(m, _x(), check_trace=False)
    kinds = {n.kind() for n in traced.graph.nodes()}
    assert ("aten::relu" if fn == "relu" else f"rectifiers::{fn}") in kinds, kinds
    x = torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(2))
    ours = _run(m, x)
    xt = x.detach().requires_grad_()
    y = traced(xt)
    g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
    replay = [y.detach()] + list(torch.autograd.grad(y, [xt, *m.parameters()], g))
    assert all(bits_equal(a, b) for a, b in zip(ours, replay))
