"""Every element-wise activation, every backend that runs on CPU, against the reference formulas.

Forward bitwise in float32 and float64, input gradients bitwise, parameter gradients to within
summation order; float16 and bfloat16 within twice plain PyTorch's own error plus a small atol
(DESIGN.md). Shapes: odd sizes, one element, 0-D and 1-D, strided slices, channels_last, and
channels along any ``dim``.
"""

from __future__ import annotations

import zlib

import pytest
import torch

from helpers import CASES, FLOAT_DTYPES, bits_equal, with_kinks

SHAPES = {
    "odd3d": ((3, 5, 7), 1),
    "odd4d": ((2, 3, 5, 7), 1),
    "one": ((1, 1), 1),
    "scalar": ((), 1),
    "vector": ((13,), 1),
    "vector_dim0": ((13,), 0),
    "channels_last_features": ((4, 6, 5), -1),
    "dim2": ((2, 3, 5, 4), 2),
}

LOW_ATOL = {torch.float16: 1e-3, torch.bfloat16: 1e-2}


def _grads(case, x, params, dim, backend, g):
    x = x.detach().clone().requires_grad_(True)
    ps = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    if backend == "reference":
        y = case.oracle(x, ps, dim)
    else:
        y = case.call(x, ps, dim, backend)
    y.backward(g)
    return y.detach(), x.grad, {k: v.grad for k, v in ps.items()}


@pytest.mark.parametrize("per_channel", [False, True], ids=["shared", "per_channel"])
@pytest.mark.parametrize("shape_id", list(SHAPES))
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_exact_against_reference(name, shape_id, per_channel, dtype, backend):
    case = CASES[name]
    shape, dim = SHAPES[shape_id]
    gen = torch.Generator().manual_seed(zlib.crc32(f"{name}/{shape_id}".encode()))
    x = with_kinks(torch.randn(shape, generator=gen, dtype=dtype))
    g = torch.randn(shape, generator=gen, dtype=dtype)
    params = case.make_params(x, dim, per_channel)
    y, gx, gp = _grads(case, x, params, dim, backend, g)
    y_ref, gx_ref, gp_ref = _grads(case, x, params, dim, "reference", g)
    assert bits_equal(y, y_ref)
    assert bits_equal(gx, gx_ref)
    for k in gp_ref:
        torch.testing.assert_close(gp[k], gp_ref[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["strided_slice", "transposed", "channels_last"])
@pytest.mark.parametrize("name", list(CASES))
def test_non_contiguous_inputs(name, layout, backend):
    case = CASES[name]
    base = torch.randn(4, 6, 5, 8, dtype=torch.float64)
    if layout == "strided_slice":
        x = base[:, ::2, :, 1::3]
    elif layout == "transposed":
        x = base.transpose(1, 3)
    else:
        x = base.contiguous(memory_format=torch.channels_last)
    dim = 1
    params = case.make_params(x, dim, True)
    g = torch.randn_like(x)
    y, gx, gp = _grads(case, x, params, dim, backend, g)
    y_ref, gx_ref, gp_ref = _grads(case, x.contiguous(), params, dim, "reference", g.contiguous())
    assert bits_equal(y, y_ref)
    assert bits_equal(gx, gx_ref)
    for k in gp_ref:
        torch.testing.assert_close(gp[k], gp_ref[k], rtol=1e-10, atol=1e-12)
    if layout == "channels_last":
        assert y.is_contiguous(memory_format=torch.channels_last)
        assert gx.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", list(CASES))
def test_low_precision_tolerance(name, dtype, backend):
    """Error against an fp32 reference at most twice plain PyTorch's in the same dtype, + atol."""
    case = CASES[name]
    gen = torch.Generator().manual_seed(7)
    x32 = torch.randn(3, 8, 5, 5, generator=gen) * 3
    g32 = torch.randn(3, 8, 5, 5, generator=gen)
    x, g = x32.to(dtype), g32.to(dtype)
    params = case.make_params(x, 1, True)
    y, gx, gp = _grads(case, x, params, 1, backend, g)
    assert y.dtype == dtype and gx.dtype == dtype
    params32 = {k: v.float() for k, v in params.items()}
    y_ref, gx_ref, gp_ref = _grads(case, x.float(), params32, 1, "reference", g.float())
    y_pt, gx_pt, gp_pt = _grads(case, x, params, 1, "torch", g)
    atol = LOW_ATOL[dtype]

    def err(a, b):
        return (a.float() - b.float()).abs().max().item()

    assert err(y, y_ref) <= 2 * err(y_pt, y_ref) + atol
    assert err(gx, gx_ref) <= 2 * err(gx_pt, gx_ref) + atol
    for k in gp_ref:
        scale = gp_ref[k].abs().max().item() + 1.0
        assert err(gp[k], gp_ref[k]) <= 2 * err(gp_pt[k], gp_ref[k]) + atol * scale


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_kinks_and_non_finite(name, dtype, backend):
    """Values at the kink and at NaN / inf, where random inputs never land, match the reference."""
    case = CASES[name]
    tiny = torch.finfo(dtype).tiny
    vals = [0.0, -0.0, tiny, -tiny, float("nan"), float("inf"), -float("inf"), 1.0, -1.0]
    x = torch.tensor(vals, dtype=dtype)
    params = case.make_params(x, 0, False)
    g = torch.ones_like(x)
    y, gx, gp = _grads(case, x, params, 0, backend, g)
    y_ref, gx_ref, gp_ref = _grads(case, x, params, 0, "reference", g)
    assert bits_equal(y, y_ref), (y, y_ref)
    assert bits_equal(gx, gx_ref), (gx, gx_ref)
    for k in gp_ref:
        torch.testing.assert_close(gp[k], gp_ref[k], equal_nan=True)


@pytest.mark.parametrize("name", list(CASES))
def test_nan_in_nan_out(name, backend):
    case = CASES[name]
    x = torch.tensor([float("nan"), 1.0, -1.0])
    params = case.make_params(x, 0, False)
    y = case.call(x, params, 0, backend)
    assert torch.isnan(y[0]) and not torch.isnan(y[1:]).any()


def test_outputs_keep_input_dtype_with_fp32_parameters(backend):
    import rectifiers.functional as RF

    x = torch.randn(2, 3, 4, dtype=torch.bfloat16)
    assert RF.prelu(x, torch.full((3,), 0.25), backend=backend).dtype == torch.bfloat16
    assert RF.flexible_relu(x, torch.full((1,), -1.0), backend=backend).dtype == torch.bfloat16
