"""Bad input is refused with one clear message naming the argument, the expectation and the value."""

from __future__ import annotations

import pytest
import torch

import rectifiers as R

X = torch.randn(2, 3, 4)
XI = torch.ones(2, 3, 4, dtype=torch.long)
XB = torch.ones(2, 3, 4, dtype=torch.bool)

CALL_ERRORS = [
    ("relu_int", lambda: R.relu(XI), TypeError, r"relu: input must be a floating-point tensor .* got dtype torch.int64"),
    ("leaky_bool_tensor", lambda: R.leaky_relu(XB), TypeError, r"leaky_relu: input .* got dtype torch.bool"),
    ("leaky_not_tensor", lambda: R.leaky_relu([1.0, -1.0]), TypeError, r"input must be a torch.Tensor, got list"),
    ("leaky_nan_slope", lambda: R.leaky_relu(X, float("nan")), ValueError, r"negative_slope must be finite, got nan"),
    ("leaky_inf_slope", lambda: R.leaky_relu(X, float("inf")), ValueError, r"negative_slope must be finite, got inf"),
    ("leaky_bool_slope", lambda: R.leaky_relu(X, True), TypeError, r"negative_slope must be a real number, got the bool True"),
    ("prelu_channels", lambda: R.prelu(X, torch.ones(4)), ValueError,
     r"prelu: weight has 4 elements but the input of shape \(2, 3, 4\) has 3 channels along dim 1; expected 1 or 3"),
    ("prelu_int_weight", lambda: R.prelu(X, torch.ones(3, dtype=torch.long)), TypeError, r"prelu: weight must be a floating-point tensor"),
    ("prelu_2d_weight", lambda: R.prelu(X, torch.ones(3, 1)), ValueError, r"weight must have 1 element or be 1-D"),
    ("prelu_dim_range", lambda: R.prelu(X, torch.ones(1), dim=3), IndexError, r"dim=3 is out of range .* \(expected -3 <= dim < 3\)"),
    ("prelu_dim_type", lambda: R.prelu(X, torch.ones(1), dim=1.0), TypeError, r"dim must be an int"),
    ("frelu_channels", lambda: R.flexible_relu(X, torch.ones(5), dim=-1), ValueError,
     r"flexible_relu: bias has 5 elements .* 4 channels along dim 2"),
    ("funnel_rank", lambda: R.funnel_relu(torch.randn(3, 4), torch.ones(4, 1, 3)), ValueError, r"input must be \(N, C, L\)"),
    ("funnel_weight_shape", lambda: R.funnel_relu(torch.randn(1, 3, 5, 5), torch.ones(4, 1, 3, 3)), ValueError,
     r"conv_weight must be a depthwise kernel of shape \(C, 1, k, k\) with C = 3"),
    ("funnel_even_k", lambda: R.funnel_relu(torch.randn(1, 3, 5, 5), torch.ones(3, 1, 2, 2)), ValueError, r"kernel size must be odd.*got 2"),
    ("funnel_bn_shape", lambda: R.funnel_relu(torch.randn(1, 3, 5, 5), torch.ones(3, 1, 3, 3), torch.ones(2)), ValueError,
     r"bn_weight must have shape \(3,\)"),
    ("funnel_int", lambda: R.funnel_relu(torch.ones(1, 3, 5, 5, dtype=torch.int32), torch.ones(3, 1, 3, 3)), TypeError, r"floating-point"),
    ("backend_name", lambda: R.relu(X, backend="cuda"), ValueError, r"backend must be one of auto, torch, eager, triton; got 'cuda'"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in CALL_ERRORS], ids=[c[0] for c in CALL_ERRORS])
def test_functional_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


CTOR_ERRORS = [
    ("leaky_bool", lambda: R.LeakyReLU(True), TypeError, r"LeakyReLU: negative_slope must be a real number, got the bool True \(did you mean inplace=True\?\)"),
    ("leaky_nan", lambda: R.LeakyReLU(float("nan")), ValueError, r"LeakyReLU: negative_slope must be finite"),
    ("leaky_str", lambda: R.LeakyReLU("0.1"), TypeError, r"negative_slope must be a real number, got str"),
    ("leaky_inplace_type", lambda: R.LeakyReLU(0.1, "yes"), TypeError, r"inplace must be a bool"),
    ("prelu_zero", lambda: R.PReLU(0), ValueError, r"PReLU: num_parameters must be a positive int or None, got 0"),
    ("prelu_float_n", lambda: R.PReLU(2.5), TypeError, r"num_parameters must be a positive int or None, got 2.5"),
    ("prelu_inf_init", lambda: R.PReLU(1, float("inf")), ValueError, r"PReLU: init must be finite"),
    ("prelu_device_positional", lambda: R.PReLU(1, 0.25, "cpu"), TypeError, r"pass the device by keyword"),
    ("frelu_nan_init", lambda: R.FReLU(1, float("nan")), ValueError, r"FlexibleReLU: init must be finite"),
    ("funnel_even", lambda: R.FunnelReLU(3, 4), ValueError, r"FunnelReLU: kernel_size must be a positive odd int .* got 4"),
    ("funnel_zero_k", lambda: R.FunnelReLU(3, 0), ValueError, r"kernel_size must be a positive odd int"),
    ("funnel_neg_k", lambda: R.FunnelReLU(3, -3), ValueError, r"kernel_size must be a positive odd int"),
    ("funnel_channels", lambda: R.FunnelReLU(0), ValueError, r"channels must be a positive int or None"),
    ("backend", lambda: R.ReLU(backend="gpu"), ValueError, r"ReLU: backend must be None or one of"),
]


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in CTOR_ERRORS], ids=[c[0] for c in CTOR_ERRORS])
def test_constructor_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_module_channel_mismatch():
    with pytest.raises(ValueError, match=r"weight has 3 elements but the input of shape \(2, 5\) has 5 channels"):
        R.PReLU(3)(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"FunnelReLU: expected an input with 3 channels \(dim 1\), got 5"):
        R.FunnelReLU(3)(torch.randn(1, 5, 4, 4))
    with pytest.raises(ValueError, match=r"FunnelReLU1d: input must be 3-D \(N, C, L\)"):
        R.FunnelReLU1d(3)(torch.randn(1, 3, 4, 4))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: R.relu(x, inplace=True),
        lambda x: R.leaky_relu(x, 0.1, inplace=True),
        lambda x: R.flexible_relu(x, torch.zeros(1), inplace=True),
        lambda x: R.LeakyReLU(inplace=True)(x),
    ],
)
def test_inplace_on_leaf_requiring_grad_is_refused_and_input_untouched(call):
    x = torch.randn(3, 4, requires_grad=True)
    before = x.detach().clone()
    with pytest.raises(RuntimeError, match="inplace=True cannot modify a leaf tensor that requires grad"):
        call(x)
    assert torch.equal(x.detach(), before)


def test_inplace_negative_slope_with_grad_is_refused():
    x = torch.randn(3, 4, requires_grad=True) * 1.0
    with pytest.raises(ValueError, match="negative negative_slope cannot be differentiated"):
        R.leaky_relu(x, -0.5, inplace=True)


def test_environment_backend_is_checked(monkeypatch):
    monkeypatch.setenv("RECTIFIERS_BACKEND", "fast")
    with pytest.raises(ValueError, match="environment variable RECTIFIERS_BACKEND must be one of"):
        R.relu(X)
    monkeypatch.setenv("RECTIFIERS_BACKEND", "torch")
    assert torch.equal(R.relu(X), torch.relu(X))
