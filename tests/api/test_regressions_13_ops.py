"""Issue 13, regression tests for the items fixed in ``rectifiers.ops`` (2, 3, 7; each failed
before its fix):

2. batched gradients (``is_grads_batched``, ``jacobian(vectorize=True)``, gradcheck's
   ``check_batched_grad``) for PReLU, FReLU and the funnel;
3. forward-mode AD (dual tensors, forward-over-reverse) for PReLU, FReLU, the funnel, and
   LeakyReLU when the dual input also requires grad;
7. PReLU's float16 slope gradient is far less accurate than torch's for small activations.

The ``op_db`` checks items 2 and 3 blocked (test_fn_grad with batched grads,
test_forward_mode_AD, test_fn_fwgrad_bwgrad) are in ``test_conformance.py``; gradient contiguity
for every module (item 6: the funnel's BatchNorm gradients from the C++ kernel were strided
views) in ``test_conformance_modules.py``.
"""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD

import rectifiers as R

from helpers import BACKENDS, MODULES, module_input_shape



def _module_fn(name, backend):
    """(f(x, *params), x, params) in float64, training mode (funnel: batch statistics)."""
    torch.manual_seed(0)
    m = MODULES[name](backend).double()
    params = dict(m.named_parameters())
    x = torch.randn(module_input_shape(name), dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip(params, ps)), (x,))

    return f, x, tuple(p.detach().requires_grad_() for p in params.values())


# --------------------------------------------------------------------------------------------
# Item 2: batched gradients


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODULES))
def test_batched_gradients(name, backend):
    f, x, ps = _module_fn(name, backend)
    y = f(x, *ps)
    n = 3
    gs = torch.randn((n,) + y.shape, dtype=y.dtype)
    batched = torch.autograd.grad(y, (x,) + ps, gs, is_grads_batched=True, retain_graph=True)
    for i in range(n):
        one = torch.autograd.grad(y, (x,) + ps, gs[i], retain_graph=True)
        for a, b in zip(batched, one):
            torch.testing.assert_close(a[i], b, rtol=1e-10, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda x: f(x, *ps), x.detach(), vectorize=True)
    assert jac.shape == y.shape + x.shape
    assert torch.autograd.gradcheck(f, (x,) + ps, check_batched_grad=True, fast_mode=True)


# --------------------------------------------------------------------------------------------
# Item 3: forward-mode AD


@pytest.mark.parametrize("input_requires_grad", [False, True], ids=["dual", "dual_requires_grad"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODULES))
def test_forward_mode_ad(name, backend, input_requires_grad):
    f, x, ps = _module_fn(name, backend)
    t = torch.randn_like(x)
    with fwAD.dual_level():
        xd = fwAD.make_dual(x.detach().requires_grad_(input_requires_grad), t)
        jvp = fwAD.unpack_dual(f(xd, *ps)).tangent
    # the same directional derivative from reverse mode: the Jacobian (one backward per output
    # element, no transform: the funnel updates its running statistics in place) times t
    jac = torch.autograd.functional.jacobian(lambda x: f(x, *ps), x.detach())
    want = (jac.reshape(-1, x.numel()) @ t.reshape(-1)).reshape(x.shape)
    torch.testing.assert_close(jvp, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODULES))
def test_forward_over_reverse_and_gradcheck_forward_ad(name, backend):
    f, x, ps = _module_fn(name, backend)
    assert torch.autograd.gradcheck(f, (x,) + ps, check_forward_ad=True, check_backward_ad=False,
                                    check_batched_grad=False, check_undefined_grad=True, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (x,) + ps, check_fwd_over_rev=True, check_rev_over_rev=False,
                                        check_undefined_grad=False, fast_mode=True)
    # a Hessian-vector product, forward over reverse
    v = torch.randn_like(x)
    with fwAD.dual_level():
        xd = fwAD.make_dual(x.detach().requires_grad_(), v)
        (gx,) = torch.autograd.grad(f(xd, *ps).pow(2).sum(), xd, create_graph=True)
        hvp = fwAD.unpack_dual(gx).tangent
    assert hvp is not None and hvp.shape == x.shape


# --------------------------------------------------------------------------------------------
# Item 7: PReLU's float16 slope gradient for small activations


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("slope", [0.01, 0.25])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_prelu_low_precision_slope_gradient_as_accurate_as_torch(dtype, slope, backend):
    torch.manual_seed(0)
    x = ((torch.rand(4, 3, 32, 32) * 2 - 1) * 1e-3).to(dtype)
    g = torch.randn_like(x)
    errs = {}
    for lib in ("torch", "ours"):
        w = torch.full((3,), slope, dtype=dtype, requires_grad=True)
        xx = x.clone().requires_grad_()
        y = torch.nn.functional.prelu(xx, w) if lib == "torch" else R.prelu(xx, w, backend=backend)
        (dw,) = torch.autograd.grad(y, w, g)
        ref = torch.where(x.double() > 0, 0.0, g.double() * x.double()).sum((0, 2, 3))
        errs[lib] = ((dw.double() - ref).abs() / ref.abs()).max().item()
    # DESIGN: at most twice torch's error, plus a small tolerance
    assert errs["ours"] <= 2 * errs["torch"] + 1e-4, errs
