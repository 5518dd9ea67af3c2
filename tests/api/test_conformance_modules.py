"""PyTorch's own ModuleInfo cases (``module_db``), TestModule-style, on rectifiers' modules.

ReLU, LeakyReLU and PReLU take torch's own ``module_inputs_torch_nn_*`` cases and are compared
with their ``torch.nn`` namesakes. FlexibleReLU takes PReLU's cases (same constructor and input
shapes). The funnels take torch's BatchNorm1d/2d/3d cases (the funnel's normalisation is a
BatchNorm) and are compared with ``torch.maximum(x, bn(conv(x)))`` built from torch's layers;
a BatchNorm case the funnel cannot express (``affine=False``, no running statistics, a
BatchNorm without bias, a 2-D input to BatchNorm1d) is not run and is counted as such.

Checks: forward (bitwise with torch, or against the plain formula), repr, pickle,
non-contiguous inputs, memory format, train/eval, meta-device construction, factory kwargs,
in-place, gradient contiguity (TestModule's test_grad check, every module and backend). The
module-level batched-gradient and forward-mode AD regressions (items 2 and 3 of issue 13) are in
``test_regressions_13_ops.py``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from torch import nn
from torch.testing._internal.common_modules import module_db

import rectifiers as R

from _conformance_cases import CASE_COUNTS, bits_equal, count
from helpers import BACKENDS, MODULES, module_input_shape

MODULE_INFOS = {m.module_cls.__name__: m for m in module_db}


@dataclass
class ModCase:
    id: str
    make_ours: Callable[[], nn.Module]
    #: a torch-only module computing the same function, its state loaded from ours
    make_theirs: Callable[[nn.Module], nn.Module]
    input_shape: tuple
    training: bool
    bitwise: bool  # bitwise with torch (else the plain formula, allclose)


class _TorchFunnel(nn.Module):
    """torch.maximum(x, bn(conv(x))) from torch's own layers (the funnel's definition)."""

    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        nsp = ours._spatial
        c, k = ours.channels, ours.kernel_size
        self.conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nsp - 1](c, c, k, padding=k // 2, groups=c, bias=ours.bias is not None,
                                                               dtype=ours.weight.dtype)
        self.bn = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[nsp - 1](c, eps=ours.eps, momentum=ours.momentum,
                                                                            dtype=ours.weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(ours.weight)
            if ours.bias is not None:
                self.conv.bias.copy_(ours.bias)
            self.bn.weight.copy_(ours.bn_weight)
            self.bn.bias.copy_(ours.bn_bias)
            self.bn.running_mean.copy_(ours.running_mean)
            self.bn.running_var.copy_(ours.running_var)
            self.bn.num_batches_tracked.copy_(ours.num_batches_tracked)
        self.train(ours.training)

    def forward(self, x):
        return torch.maximum(x, self.bn(self.conv(x)))


def _same_as(theirs_cls):
    def make(ours: nn.Module) -> nn.Module:
        t = theirs_cls(**_torch_kwargs(ours)).to(next(iter(ours.parameters()), torch.empty(0)).dtype)
        t.load_state_dict(ours.state_dict())
        return t.train(ours.training)

    return make


def _torch_kwargs(m: nn.Module) -> dict:
    if isinstance(m, R.LeakyReLU):
        return {"negative_slope": m.negative_slope}
    if isinstance(m, R.PReLU):
        return {"num_parameters": m.num_parameters}
    return {}


class _TorchFReLU(nn.Module):
    def __init__(self, ours: nn.Module) -> None:
        super().__init__()
        self.bias = nn.Parameter(ours.bias.detach().clone())
        self.train(ours.training)

    def forward(self, x):
        if self.bias.numel() == 1:
            b = self.bias.reshape(())
        else:
            b = self.bias.reshape((-1,) + (1,) * (x.dim() - 2))
        return torch.relu(x) + b


def _cases(dtype: torch.dtype) -> list[ModCase]:
    out: list[ModCase] = []
    for training in (True, False):
        for name, ours_cls in (("ReLU", R.ReLU), ("LeakyReLU", R.LeakyReLU), ("PReLU", R.PReLU)):
            mi = MODULE_INFOS[name]
            for i, min_ in enumerate(mi.module_inputs_func(mi, device="cpu", dtype=dtype, requires_grad=False, training=training)):
                a, k = min_.constructor_input.args, min_.constructor_input.kwargs
                (x,) = min_.forward_input.args
                ctor = (lambda a=a, k=k, c=ours_cls: c(*a, **k, dtype=dtype)) if name == "PReLU" else (lambda a=a, k=k, c=ours_cls: c(*a, **k))
                out.append(ModCase(f"{name}-{i}-{'train' if training else 'eval'}", ctor, _same_as(getattr(nn, name)),
                                   tuple(x.shape), training, True))
                if name == "PReLU":  # FReLU: PReLU's cases
                    fctor = lambda a=a, k=k: R.FReLU(*a, **k, dtype=dtype)
                    out.append(ModCase(f"FReLU-{i}-{'train' if training else 'eval'}", fctor, _TorchFReLU,
                                       tuple(x.shape), training, True))
        for nsp, bn_name in ((1, "BatchNorm1d"), (2, "BatchNorm2d"), (3, "BatchNorm3d")):
            mi = MODULE_INFOS[bn_name]
            cls = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}[nsp]
            for i, min_ in enumerate(mi.module_inputs_func(mi, device="cpu", dtype=dtype, requires_grad=False, training=training)):
                a, k = min_.constructor_input.args, min_.constructor_input.kwargs
                (x,) = min_.forward_input.args
                affine = a[3] if len(a) > 3 else True
                track = a[4] if len(a) > 4 else True
                if not affine or not track or k.get("bias", True) is False or x.dim() != nsp + 2:
                    if dtype == torch.float32:
                        count(f"module_db {bn_name} (not expressible by the funnel, not run)")
                    continue
                eps = a[1] if len(a) > 1 else 1e-5
                mom = a[2] if len(a) > 2 else 0.1
                ctor = lambda c=a[0], eps=eps, mom=mom, cls=cls: cls(c, eps=eps, momentum=mom, dtype=dtype)
                out.append(ModCase(f"{cls.__name__}-{i}-{'train' if training else 'eval'}", ctor, _TorchFunnel,
                                   tuple(x.shape), training, False))
    return out


CASES = {dt: _cases(dt) for dt in (torch.float32, torch.float64)}  # module_db's dtypes
IDS = [c.id for c in CASES[torch.float32]]


def _source(case: ModCase) -> str:
    n = case.id.split("-")[0]
    return {"FunnelReLU1d": "BatchNorm1d", "FunnelReLU": "BatchNorm2d", "FunnelReLU3d": "BatchNorm3d",
            "FReLU": "PReLU"}.get(n, n)


def _input(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if x.numel() >= 2:
        x.view(-1)[:2] = torch.tensor([0.0, -0.0])
    return x


def _pair(case: ModCase):
    torch.manual_seed(0)
    ours = case.make_ours().train(case.training)
    if isinstance(ours, R.modules._FunnelReLUNd):
        with torch.no_grad():  # non-trivial statistics and affine parameters
            ours.bn_weight.uniform_(0.5, 1.5)
            ours.bn_bias.uniform_(-0.5, 0.5)
            ours.running_mean.uniform_(-0.5, 0.5)
            ours.running_var.uniform_(0.5, 2.0)
    elif any(True for _ in ours.parameters()):
        with torch.no_grad():
            for p in ours.parameters():
                p.copy_(torch.linspace(-0.5, 1.5, p.numel(), dtype=p.dtype))
    return ours, case.make_theirs(ours)


def _compare(case: ModCase, ya, yb, what=""):
    if case.bitwise:
        assert bits_equal(ya, yb), f"{case.id} {what}"
    else:
        tol = 1e-12 if ya.dtype == torch.float64 else 2e-5
        torch.testing.assert_close(ya, yb, rtol=tol, atol=tol, msg=f"{case.id} {what}")


def _state_close(case, ours, theirs):
    so, st = ours.state_dict(), theirs.state_dict()
    ko = [k for k in so if so[k].is_floating_point()]
    vals_o = [so[k] for k in ko]
    vals_t = [v for v in st.values() if v.is_floating_point()]
    assert len(vals_o) == len(vals_t)
    for a, b in zip(vals_o, vals_t):
        torch.testing.assert_close(a, b, rtol=1e-12 if a.dtype == torch.float64 else 2e-6, atol=1e-12 if a.dtype == torch.float64 else 2e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("idx", range(len(IDS)), ids=IDS)
def test_module_forward_and_state(idx, dtype):
    """Forward (bitwise for torch.nn's namesakes), and the running statistics after it, twice
    (train mode updates them), then repr and pickle."""
    case = CASES[dtype][idx]
    count(f"module_db {_source(case)}")
    ours, theirs = _pair(case)
    for seed in (0, 1):
        x = _input(case.input_shape, dtype, seed)
        _compare(case, ours(x.clone()), theirs(x.clone()), f"forward seed {seed}")
        _state_close(case, ours, theirs)
    # repr: a one-line summary naming the class, as torch's
    r = repr(ours)
    assert r.startswith(type(ours).__name__ + "(") and "\n" not in r
    if case.bitwise and not isinstance(ours, R.FReLU):
        assert r == repr(theirs), (r, repr(theirs))
    # pickle: same class, state and output
    clone = pickle.loads(pickle.dumps(ours))
    assert type(clone) is type(ours) and clone.training == ours.training
    for k, v in ours.state_dict().items():
        assert bits_equal(clone.state_dict()[k], v), k
    x = _input(case.input_shape, dtype, 2)
    _compare(case, clone(x.clone()), ours(x.clone()), "after pickle")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("idx", range(len(IDS)), ids=IDS)
def test_module_layouts_and_modes(idx, dtype):
    """Non-contiguous inputs, memory formats, train/eval, and the gradients through them."""
    case = CASES[dtype][idx]
    ours, theirs = _pair(case)
    x = _input(case.input_shape, dtype)
    # non-contiguous: every other element along a doubled last dim (0-D inputs have none)
    if x.dim() > 0:
        big = torch.zeros(case.input_shape[:-1] + (2 * case.input_shape[-1],), dtype=dtype)
        big[..., ::2] = x
        xa, xb = big.clone()[..., ::2].requires_grad_(), big.clone()[..., ::2].requires_grad_()
        assert not xa.is_contiguous() or xa.numel() <= 1
        ya, yb = ours(xa), theirs(xb)
        _compare(case, ya, yb, "non-contiguous")
        g = _input(tuple(ya.shape), dtype, 5)
        (ga,) = torch.autograd.grad(ya, xa, g)
        (gb,) = torch.autograd.grad(yb, xb, g)
        _compare(case, ga, gb, "non-contiguous input gradient")
    # memory format: channels-last inputs give torch's output format
    if x.dim() in (4, 5):
        fmt = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        xc = x.contiguous(memory_format=fmt)
        ya, yb = ours(xc.clone(memory_format=fmt)), theirs(xc.clone(memory_format=fmt))
        _compare(case, ya, yb, "channels-last")
        assert ya.is_contiguous(memory_format=fmt) == yb.is_contiguous(memory_format=fmt), case.id
        assert ya.stride() == yb.stride(), (case.id, ya.stride(), yb.stride())
    # train / eval: the element-wise modules do not differ; the funnels do, as BatchNorm
    ours.eval(), theirs.eval()
    ya, yb = ours(x.clone()), theirs(x.clone())
    _compare(case, ya, yb, "eval")
    ours.train(), theirs.train()
    if x.dim() >= 2 and x.numel() // max(x.shape[1], 1) > 1 or not isinstance(ours, R.modules._FunnelReLUNd):
        ya2 = ours(x.clone())
        _compare(case, ya2, theirs(x.clone()), "train")
        if not isinstance(ours, R.modules._FunnelReLUNd):
            assert bits_equal(ya2, ya), f"{case.id}: train and eval differ"


@pytest.mark.parametrize("idx", range(len(IDS)), ids=IDS)
def test_module_meta_device_and_factory_kwargs(idx):
    """Construction under ``torch.device("meta")`` and with ``device=`` / ``dtype=`` (where the
    module takes them), then ``to_empty`` and ``reset_parameters`` give a working module."""
    case = CASES[torch.float64][idx]
    with torch.device("meta"):
        m = case.make_ours()
    for t in list(m.parameters()) + list(m.buffers()):
        assert t.device.type == "meta", case.id
    for t in m.parameters():
        assert t.dtype == torch.float64, case.id
    m = m.to_empty(device="cpu")
    if hasattr(m, "reset_parameters"):
        m.reset_parameters()
    if hasattr(m, "reset_running_stats"):
        m.reset_running_stats()
    m.train(case.training)
    x = _input(case.input_shape, torch.float64)
    if isinstance(m, R.modules._FunnelReLUNd) and case.training and x.numel() // x.shape[1] < 2:
        # one value per channel in training: refused as nn.BatchNorm refuses it, nothing changed
        state = {k: v.clone() for k, v in m.state_dict().items()}
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            m(x)
        assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())
        return
    y = m(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device.type == "cpu"


@pytest.mark.parametrize("backend", ["torch", "eager"])
@pytest.mark.parametrize("name", ["ReLU", "LeakyReLU", "FReLU"])
def test_module_inplace_as_torch(name, backend):
    """TestModule.test_check_inplace: inplace=True gives the same output and gradients, and
    overwrites its input (FReLU: against its own out-of-place form)."""
    mi = MODULE_INFOS.get(name, MODULE_INFOS["PReLU"])
    for training in (True, False):
        for mi_in in mi.module_inputs_func(mi, device="cpu", dtype=torch.float64, requires_grad=False, training=training):
            count(f"module_db {mi.module_cls.__name__} in-place")
            a = mi_in.constructor_input.args
            make = {"ReLU": lambda ip: R.ReLU(ip, backend=backend),
                    "LeakyReLU": lambda ip: R.LeakyReLU(*a, inplace=ip, backend=backend),
                    "FReLU": lambda ip: R.FReLU(*a, inplace=ip, dtype=torch.float64, backend=backend)}[name]
            m_out, m_in = make(False), make(True)
            (x,) = mi_in.forward_input.args
            x = _input(tuple(x.shape), torch.float64)
            xa = x.clone().requires_grad_()
            xb = x.clone().requires_grad_()
            ya = m_out(xa)
            hb = xb * 1
            yb = m_in(hb)
            assert yb.data_ptr() == hb.data_ptr()
            assert bits_equal(ya, yb)
            g = _input(tuple(ya.shape), torch.float64, 3)
            pa = list(m_out.parameters())
            pb = list(m_in.parameters())
            ga = torch.autograd.grad(ya, [xa] + pa, g)
            gb = torch.autograd.grad(yb, [xb] + pb, g)
            for u, v in zip(ga, gb):
                assert bits_equal(u, v)


# --------------------------------------------------------------------------------------------
# Gradient contiguity (TestModule's test_grad contiguity check), every module (issue 13,
# item 6: the funnel's BatchNorm gradients from the C++ kernel were strided views)




@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(MODULES))
def test_gradients_are_contiguous(name, backend, dtype):
    torch.manual_seed(0)
    m = MODULES[name](backend).to(dtype)
    x = torch.randn(module_input_shape(name), dtype=dtype, requires_grad=True)
    params = list(m.parameters())
    grads = torch.autograd.grad(m(x).sum(), [x] + params)
    for n, g in zip(["input"] + [k for k, _ in m.named_parameters()], grads):
        assert g.is_contiguous(), f"{name} {n}: gradient strides {g.stride()}"


def test_zz_report_case_counts(capsys):
    """Prints the number of cases run per source (run last in this module; -s shows it)."""
    with capsys.disabled():
        print("\nconformance cases per source (module_db):")
        for k, v in sorted(CASE_COUNTS.items()):
            if k.startswith("module_db"):
                print(f"  {k}: {v}")
