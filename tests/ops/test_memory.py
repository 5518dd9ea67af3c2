"""Bytes kept for backward, measured with saved_tensors_hooks (distinct storages).

The figure is the extra bytes per activation element that a conv -> act -> conv block keeps
over conv -> conv (:func:`rectifiers.bench.block_extra_bytes_per_element`): the activation's
output is kept by the next conv anyway, its input (the previous conv's output) is not.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rectifiers as R
from rectifiers.bench import _PlainFunnel, block_extra_bytes_per_element

SHAPE = (4, 8, 16, 16)
# Per-channel parameters and statistics add a few bytes per channel: under 0.01 B/element here.
SMALL = 0.01


def _x(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(SHAPE).to(dtype)


def _extra(act: nn.Module, dtype: torch.dtype = torch.float32) -> float:
    return block_extra_bytes_per_element(act.to(dtype), _x(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_nn_baseline_is_measured(dtype: torch.dtype) -> None:
    """The measurement sees what torch.nn keeps: ReLU nothing, LeakyReLU and PReLU the input."""
    size = torch.finfo(dtype).bits // 8
    assert _extra(nn.ReLU(), dtype) == 0
    assert _extra(nn.LeakyReLU(0.01), dtype) == pytest.approx(size)
    assert _extra(nn.PReLU(SHAPE[1]), dtype) == pytest.approx(size, abs=SMALL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    "make",
    [
        lambda: R.ReLU(backend="eager"),
        lambda: R.LeakyReLU(0.01, backend="eager"),
        lambda: R.LeakyReLU(0.0, backend="eager"),
        lambda: R.LeakyReLU(1.5, backend="eager"),
        lambda: R.PReLU(1, backend="eager"),
        lambda: R.PReLU(SHAPE[1], backend="eager"),
        lambda: R.PReLU(SHAPE[1], init=1.0, backend="eager"),
    ],
    ids=["relu", "leaky", "leaky0", "leaky_steep", "prelu1", "prelu_c", "prelu_c_one"],
)
def test_output_reuse_keeps_nothing(make, dtype: torch.dtype) -> None:
    """Where the output gives the gradient exactly, nothing beyond it is kept."""
    assert _extra(make(), dtype) <= SMALL


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_negative_slope_keeps_one_byte(dtype: torch.dtype) -> None:
    """LeakyReLU with a negative slope: the output's sign no longer tells, a bool mask is kept."""
    assert 1.0 <= _extra(R.LeakyReLU(-0.2, backend="eager"), dtype) <= 1.0 + SMALL


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels", [1, SHAPE[1]], ids=["frelu1", "frelu_c"])
@pytest.mark.parametrize("cpp", [True, False], ids=["fused", "plain"])
def test_frelu_keeps_a_mask(channels: int, cpp: bool, dtype: torch.dtype, monkeypatch) -> None:
    """FReLU keeps a mask of x > 0: 1 bit per element from the fused C++ kernel, a 1-byte bool
    from the plain path (no compiler, or RECTIFIERS_NO_CPP=1)."""
    from rectifiers.ops.cpp import pointwise as cpp_pointwise

    if cpp:
        if not cpp_pointwise.load():
            pytest.skip("the C++ kernels cannot be built here (no compiler)")
        want = 0.125
    else:
        monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
        want = 1.0
    assert want <= _extra(R.FReLU(channels, backend="eager"), dtype) <= want + SMALL


def test_prelu_fallback_keeps_input() -> None:
    """A slope <= 0 or > 1 makes x = y / a inexact: the input is kept, as torch.nn does."""
    m = R.PReLU(SHAPE[1], backend="eager")
    with torch.no_grad():
        m.weight[0] = 0.0
    assert _extra(m) == pytest.approx(4.0, abs=SMALL)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
def test_funnel_keeps_under_40_percent_of_formula(dtype: torch.dtype, training: bool) -> None:
    c = SHAPE[1]
    plain = _PlainFunnel(c, 2).train(training)
    ours = R.FunnelReLU(c, backend="eager").train(training)
    plain_b = _extra(plain, dtype)
    ours_b = _extra(ours, dtype)
    size = torch.finfo(dtype).bits // 8
    assert plain_b >= 3 * size - SMALL  # x, the conv output and the BN output
    assert ours_b <= 0.4 * plain_b
    # x itself, plus the kernel, the BN parameters and statistics (a few hundred bytes here)
    assert ours_b == pytest.approx(size, abs=0.1)
