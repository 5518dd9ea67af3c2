"""Tests of rectifiers.diagnostics: dead units and gradient flow on models with known answers.

The oracle for dead units is autograd itself: for an elementwise activation, the gradient of
``act(x).sum()`` with respect to ``x`` is the local derivative of every unit, so the units whose
derivative was zero on every input are found without the monitor's rules.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

import rectifiers as R
from rectifiers.diagnostics import (
    DeadUnitMonitor,
    DeadUnitReport,
    GradientFlowMonitor,
    GradientFlowReport,
    activation_kind,
)


def _inputs(n: int = 40, seed: int = 0, batches: int = 1) -> list[torch.Tensor]:
    """(n, 3, 5) inputs whose units have offsets from -200 to +20: some always negative (some
    deep enough for exp to underflow), some always positive, some mixed."""
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([-200.0, -20.0, -2.5, 0.0, 0.3, 2.5, 20.0] * 3)[:15].reshape(3, 5)
    x = torch.randn(n * batches, 3, 5, generator=g) + offsets
    x[3, 0, 3] = float("nan")  # NaN in a mixed unit, and infinities, in the first batch
    x[5, 1, 1] = float("inf")
    x[6, 2, 4] = -float("inf")
    return list(x.split(n))


def _oracle(act: nn.Module, x: torch.Tensor, active_lo: float = 0.0, thr: float = 0.01):
    """Per-unit counts of non-zero derivative (autograd) and of x > active_lo over the batch."""
    x = x.clone().requires_grad_(True)
    (d,) = torch.autograd.grad(act(x).sum(), x)
    grad_n = (d != 0).sum(0).numpy()
    act_n = (x.detach() > active_lo).sum(0).numpy()
    n = x.shape[0]
    rate = act_n / n
    return {
        "dead": int((grad_n == 0).sum()),
        "inactive": int((act_n == 0).sum()),
        "near_dead": int((rate < thr).sum()),
        "rate": float(rate.mean()),
        "channel_dead": (grad_n == 0).reshape(3, -1).mean(1),
        "channel_rate": rate.reshape(3, -1).mean(1),
    }


ACTS = [
    ("relu", lambda: R.ReLU(), 0.0),
    ("relu", lambda: nn.ReLU(), 0.0),
    ("leaky_relu", lambda: R.LeakyReLU(0.05), 0.0),
    ("leaky_relu", lambda: nn.LeakyReLU(0.05), 0.0),
    ("leaky_relu", lambda: nn.LeakyReLU(0.0), 0.0),  # slope 0: dead like ReLU
    ("prelu", lambda: R.PReLU(), 0.0),
    ("prelu", lambda: nn.PReLU(), 0.0),
    ("prelu", lambda: R.PReLU(3, init=0.0), 0.0),
    ("prelu", lambda: nn.PReLU(3, init=0.0), 0.0),
    ("flexible_relu", lambda: R.FReLU(), 0.0),
    ("flexible_relu", lambda: R.FlexibleReLU(3, init=0.5), 0.0),
    ("relu6", lambda: nn.ReLU6(), 0.0),
    ("hardtanh", lambda: nn.Hardtanh(-1.0, 1.0), -1.0),
    ("threshold", lambda: nn.Threshold(0.5, 0.0), 0.5),
    ("elu", lambda: nn.ELU(), 0.0),
    ("celu", lambda: nn.CELU(2.0), 0.0),
    ("selu", lambda: nn.SELU(), 0.0),
    ("rrelu", lambda: nn.RReLU().eval(), 0.0),
]


@pytest.mark.parametrize("kind,make,lo", ACTS, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(ACTS)])
def test_counts_match_autograd_oracle(kind, make, lo):
    act = make()
    if isinstance(act, R.PReLU) and act.weight.numel() == 3:
        with torch.no_grad():  # channel 0 keeps slope 0 (dead where negative), others leak
            act.weight.copy_(torch.tensor([0.0, 0.1, 0.2]))
    assert activation_kind(act) == kind
    xs = _inputs(batches=3)
    with DeadUnitMonitor(act, near_dead_threshold=0.1) as mon:
        for x in xs:
            act(x)
    rep = mon.report()
    assert len(rep.layers) == 1
    layer = rep.layers[0]
    want = _oracle(act, torch.cat(xs), lo, 0.1)
    assert layer.kind == kind
    assert layer.samples == 120 and layer.units == 15 and layer.feature_shape == (3, 5)
    assert (layer.dead, layer.inactive, layer.near_dead) == (want["dead"], want["inactive"], want["near_dead"])
    assert layer.activation_rate == pytest.approx(want["rate"], abs=1e-12)
    np.testing.assert_allclose(layer.channel_dead_fraction, want["channel_dead"])
    np.testing.assert_allclose(layer.channel_activation_rate, want["channel_rate"])
    assert layer.channels == 3 and layer.channel_dim == 1
    assert rep.dead_fraction == pytest.approx(want["dead"] / 15)


def test_linear_bias_dead_under_relu_inactive_under_leaky():
    """A Linear whose bias keeps units 0 and 2 always negative: dead under ReLU and FReLU,
    inactive but not dead under LeakyReLU and PReLU (they still pass a gradient)."""
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(torch.full((4, 3), 0.1))
        lin.bias.copy_(torch.tensor([-5.0, 5.0, -5.0, 0.0]))
    x = torch.rand(64, 3) * 2 - 1  # |0.1 * sum| <= 0.3: units 0, 2 negative, 1 positive
    x[:32] = x[:32].abs()  # unit 3 positive on half the samples at least
    x[32:] = -x[32:].abs()
    expected = {
        R.ReLU: (2, 2), nn.ReLU: (2, 2), R.FReLU: (2, 2),
        R.LeakyReLU: (0, 2), nn.LeakyReLU: (0, 2), R.PReLU: (0, 2), nn.PReLU: (0, 2),
    }
    for cls, (dead, inactive) in expected.items():
        model = nn.Sequential(lin, cls())
        with DeadUnitMonitor(model) as mon:
            with torch.no_grad():
                model(x)
        layer = mon.report().layers[0]
        assert (layer.units, layer.dead, layer.inactive) == (4, dead, inactive), cls
        assert layer.name == "1"
        assert layer.activation_rate == pytest.approx((0 + 1 + 0 + 0.5) / 4)


def test_streaming_equals_one_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), R.PReLU(4, init=0.0), nn.Conv2d(4, 3, 1), nn.ReLU())
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([-3.0, 0.0, 3.0, -0.5]))
        model[1].weight.copy_(torch.tensor([0.0, 0.1, 0.0, 0.3]))
    x = torch.randn(30, 2, 5, 6)
    mon = DeadUnitMonitor(model)
    with mon:
        for part in x.split([7, 11, 12]):
            model(part)
    streamed = mon.report().to_dict()
    mon2 = DeadUnitMonitor(model)
    with mon2:
        model(x)
    assert streamed == mon2.report().to_dict()
    assert streamed["layers"][0]["samples"] == 30
    assert streamed["layers"][0]["units"] == 4 * 5 * 6


class _Reuse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = R.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.lin(x))
        return self.act(-a - 1.0)  # second use: always negative


def test_reused_module_counted_per_use_site():
    model = _Reuse()
    with DeadUnitMonitor(model) as mon:
        for _ in range(3):
            model(torch.randn(8, 4))
    rep = mon.report()
    assert [l.name for l in rep.layers] == ["act#0", "act#1"]
    assert [l.call_index for l in rep.layers] == [0, 1]
    assert {l.module for l in rep.layers} == {"act"}
    assert rep.layer("act#1").dead == 4 and rep.layer("act#1").inactive == 4
    assert rep.layer("act#0").samples == 24 and rep.layer("act#1").samples == 24
    assert rep.units == 8


def test_revived_and_newly_dead_across_windows():
    lin = nn.Linear(2, 3)
    model = nn.Sequential(lin, nn.ReLU())
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.copy_(torch.tensor([-1.0, 1.0, -1.0]))
    mon = DeadUnitMonitor(model)
    with mon:
        model(torch.randn(5, 2))
        first = mon.report()
        assert first.window == 0 and first.revived is None and first.dead == 2
        mon.reset()
        with torch.no_grad():
            lin.bias.copy_(torch.tensor([1.0, -1.0, -1.0]))  # unit 0 comes back, 1 dies
        model(torch.randn(5, 2))
    rep = mon.report()
    assert rep.window == 1
    layer = rep.layers[0]
    assert (layer.dead, layer.revived, layer.newly_dead) == (2, 1, 1)
    assert rep.revived == 1 and rep.newly_dead == 1


def test_hooks_removed_on_exit_and_model_unchanged():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), R.FReLU(), nn.Linear(6, 6), nn.LeakyReLU(), nn.Linear(6, 2))
    x = torch.randn(5, 4)
    before = model(x)
    hooks = lambda: sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())  # noqa: E731
    n0 = hooks()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with DeadUnitMonitor(model) as dead, GradientFlowMonitor(model, optimizer=opt) as flow:
        assert hooks() > n0
        out = model(x)
        out.sum().backward()
        opt.step()
        torch.testing.assert_close(out, before, rtol=0, atol=0)
    assert hooks() == n0
    assert not opt._optimizer_step_pre_hooks
    assert not dead.attached and not flow.attached
    samples = dead.report().layers[0].samples
    steps = flow.report().num_steps
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    opt.step()
    assert dead.report().layers[0].samples == samples  # not counted once detached
    assert flow.report().num_steps == steps == 1


def test_inplace_activations_see_the_input_and_modes():
    """In-place modules are measured on their input (pre-hook); train/eval, no_grad and
    inference_mode are all counted, and counters made under inference_mode keep working."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    mon = DeadUnitMonitor(model)
    with mon:
        with torch.inference_mode():
            model(torch.randn(4, 3))
        model.eval()
        with torch.no_grad():
            model(torch.randn(4, 3))
        model.train()
        model(torch.randn(4, 3)).sum().backward()
    layer = mon.report().layers[0]
    assert layer.samples == 12 and layer.dead == 2 and layer.activation_rate == 0.5


def test_funnel_dead_when_condition_always_wins():
    torch.manual_seed(0)
    f = R.FunnelReLU(3)
    x = torch.randn(6, 3, 5, 5)
    with torch.no_grad():
        f.bn_bias.copy_(torch.tensor([100.0, -100.0, 0.0]))  # T > x always; x > T always; mixed
    with DeadUnitMonitor(f) as mon:
        out = f(x)
    layer = mon.report().layers[0]
    assert layer.kind == "funnel_relu"
    won = (out == x).sum(0)
    assert layer.dead == int((won == 0).sum())
    np.testing.assert_allclose(layer.channel_dead_fraction[:2], [1.0, 0.0])
    np.testing.assert_allclose(layer.channel_activation_rate[:2], [0.0, 1.0])
    assert 0 < layer.channel_activation_rate[2] < 1


def test_channel_dims_and_lazy_prelu():
    x = torch.randn(10, 4, 3)  # (N, L, C) channels last
    x[..., 1] = -x[..., 1].abs() - 1
    mon = DeadUnitMonitor(nn.ReLU(), channel_dim=-1)
    with mon:
        mon.model(x)
    layer = mon.report().layers[0]
    assert layer.channels == 3 and layer.channel_dim == 2
    np.testing.assert_allclose(layer.channel_dead_fraction[1], 1.0)
    # a lazy per-channel PReLU with slope 0 in channel 1, channels last through its own dim
    p = R.PReLU(None, dim=-1)
    with DeadUnitMonitor(p) as mon2:
        p(x)
        with torch.no_grad():
            p.weight.copy_(torch.tensor([0.1, 0.0, 0.1]))
        p(x)
    layer = mon2.report().layers[0]
    assert layer.channels == 3 and layer.channel_dim == 2
    # channel 1 is negative throughout; its slope was 0.25 on the first call, so not dead
    assert layer.dead == 0 and layer.inactive == 4


def test_unbatched_and_bad_shapes():
    act = nn.ReLU()
    with DeadUnitMonitor(act) as mon:
        act(torch.tensor([-1.0, 2.0, -3.0]))
        act(torch.tensor([-1.0, -2.0, 3.0]))
    layer = mon.report().layers[0]
    assert layer.samples == 2 and layer.units == 3 and layer.dead == 1
    with DeadUnitMonitor(act) as mon:
        act(torch.randn(2, 3))
        with pytest.raises(ValueError, match="feature shape"):
            act(torch.randn(2, 4))


def test_monitor_argument_errors():
    with pytest.raises(ValueError, match="no recognised activation"):
        DeadUnitMonitor(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="near_dead_threshold"):
        DeadUnitMonitor(nn.ReLU(), near_dead_threshold=2)
    with pytest.raises(ValueError, match="channel_dim"):
        DeadUnitMonitor(nn.ReLU(), channel_dim=0)
    with pytest.raises(TypeError, match="model"):
        DeadUnitMonitor("relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="every"):
        GradientFlowMonitor(nn.Linear(2, 2), every=0)
    with pytest.raises(ValueError, match="vanish_ratio"):
        GradientFlowMonitor(nn.Linear(2, 2), vanish_ratio=10.0, explode_ratio=1.0)


def test_extra_rules():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    sq = Square()
    with DeadUnitMonitor(sq, extra_rules={Square: lambda m, x, out: (x > 0, x != 0)}) as mon:
        sq(torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
    layer = mon.report().layers[0]
    assert (layer.dead, layer.inactive) == (1, 1)


# ------------------------------------------------------------------------------------------
# gradient flow
# ------------------------------------------------------------------------------------------


def _deep(depth: int, width: int, scale: float, act=nn.Sigmoid) -> nn.Sequential:
    g = torch.Generator().manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        lin = nn.Linear(width, width)
        with torch.no_grad():
            q, _ = torch.linalg.qr(torch.randn(width, width, generator=g))
            lin.weight.copy_(scale * q)
            lin.bias.zero_()
        layers += [lin, act()]
    return nn.Sequential(*layers)


def _train(model: nn.Module, mon: GradientFlowMonitor, steps: int = 4):
    g = torch.Generator().manual_seed(1)
    expected = []
    for _ in range(steps):
        x = torch.randn(8, model[0].in_features, generator=g)
        model.zero_grad()
        model(x).pow(2).sum().backward()
        lins = [m for m in model if isinstance(m, nn.Linear)]
        expected.append([math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in m.parameters())) for m in lins])
        mon.step()
    return np.array(expected)


def test_vanishing_forced_by_small_weights():
    model = _deep(10, 8, 0.5)  # sigmoid' <= 1/4 and |W| = 1/2: each layer shrinks by >= 8x
    with GradientFlowMonitor(model) as mon:
        expected = _train(model, mon)
    rep = mon.report()
    assert rep.layers == [str(i) for i in range(0, 20, 2)]
    np.testing.assert_allclose(rep.norms, expected, rtol=1e-6)
    np.testing.assert_allclose(rep.first_last_ratio, expected[:, 0] / expected[:, -1], rtol=1e-6)
    assert rep.first_last_ratio.max() < 1e-6
    assert rep.vanishing and not rep.exploding
    assert rep.vanishing_steps.all()
    assert any("below" in r for r in rep.reasons)


def test_exploding_forced_by_huge_weights_and_non_finite():
    model = _deep(6, 8, 30.0, act=nn.Identity)  # a linear net: norms grow as 30^5
    with GradientFlowMonitor(model) as mon:
        _train(model, mon, steps=2)
        model.zero_grad()
        model(torch.randn(2, 8)).sum().backward()
        model[0].weight.grad[0, 0] = float("inf")
        mon.step()
    rep = mon.report()
    assert rep.exploding and not rep.vanishing
    assert rep.exploding_steps.all()
    assert rep.nonfinite_steps.tolist() == [False, False, True]
    assert np.nanmax(rep.norms[:2]) > rep.thresholds["norm_ceiling"]
    assert json.dumps(rep.to_dict(), allow_nan=False)


class _WithUnused(nn.Module):
    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        self.unused = nn.Linear(8, 8)  # registered first, never called: no gradient
        self.seq = seq

    def forward(self, x):
        return self.seq(x)


def test_healthy_net_not_flagged_and_missing_grads():
    model = _deep(3, 8, 1.0, act=nn.Tanh)
    with GradientFlowMonitor(model) as mon:
        _train(model, mon, steps=3)
    rep = mon.report()
    assert not rep.vanishing and not rep.exploding and rep.reasons == []
    assert 1e-3 < rep.first_last_ratio_median < 1e3
    wrapped = _WithUnused(_deep(3, 8, 1.0, act=nn.Tanh))
    with GradientFlowMonitor(wrapped) as mon:
        for _ in range(2):
            wrapped.zero_grad()
            wrapped(torch.randn(4, 8)).sum().backward()
            mon.step()
    rep = mon.report()
    assert rep.layers == ["seq.0", "seq.2", "seq.4", "unused"]  # the uncalled one last
    assert np.isnan(rep.norms[:, -1]).all() and np.isfinite(rep.norms[:, :-1]).all()
    np.testing.assert_allclose(rep.first_last_ratio, rep.norms[:, 0] / rep.norms[:, 2])
    assert not rep.nonfinite_steps.any() and not rep.exploding


class _Order(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)
        self.body = nn.Linear(3, 4)
        self.act = R.PReLU(4)
        self.gate = R.FReLU()

    def forward(self, x):
        return self.head(self.gate(self.act(self.body(x))))


def test_layers_in_forward_order_and_params_tracked():
    model = _Order()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = {"act.weight": [], "gate.bias": []}
    with GradientFlowMonitor(model, optimizer=opt, every=2) as mon:
        for i in range(5):
            opt.zero_grad()
            model(torch.randn(6, 3)).pow(2).mean().backward()
            if i % 2 == 0:
                seen["act.weight"].append(model.act.weight.detach().clone().numpy())
                seen["gate.bias"].append(model.gate.bias.detach().clone().numpy())
            opt.step()
    rep = mon.report()
    assert rep.layers == ["body", "head"]
    assert rep.steps.tolist() == [0, 2, 4]
    assert set(rep.params) == {"act.weight", "gate.bias"}
    np.testing.assert_allclose(rep.params["act.weight"], np.stack(seen["act.weight"]), rtol=1e-6)
    np.testing.assert_allclose(rep.params["gate.bias"], np.stack(seen["gate.bias"]), rtol=1e-6)
    assert rep.params["act.weight"].shape == (3, 4)
    np.testing.assert_allclose(rep.params["gate.bias"][0], [-1.0])
    assert not np.allclose(rep.params["gate.bias"][-1], -1.0)  # it did learn
    with GradientFlowMonitor(model, include_activations=True) as mon2:
        model(torch.randn(2, 3)).sum().backward()
        mon2.step()
    assert mon2.report().layers == ["body", "act", "gate", "head"]


# ------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------


def _reports() -> tuple[DeadUnitReport, GradientFlowReport]:
    model = _Reuse()
    with DeadUnitMonitor(model) as dead, GradientFlowMonitor(model) as flow:
        for _ in range(3):
            model.zero_grad()
            model(torch.randn(4, 4)).sum().backward()
            flow.step()
    return dead.report(), flow.report()


def test_table_dict_and_plot(tmp_path):
    drep, frep = _reports()
    table = drep.to_table()
    for word in ("act#0", "act#1", "total", "dead", "inactive", "near-dead"):
        assert word in table
    assert "lin" in frep.to_table() and "first/last ratio" in frep.to_table()
    d = json.loads(json.dumps(drep.to_dict(), allow_nan=False))
    assert d["layers"][1]["dead_fraction"] == 1.0 and d["units"] == 8
    f = json.loads(json.dumps(frep.to_dict(), allow_nan=False))
    assert f["layers"] == ["lin"] and len(f["norms"]) == 3
    for rep, name in ((drep, "dead.png"), (frep, "flow.png")):
        path = tmp_path / name
        assert rep.plot(path) == str(path)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["dead.png", "flow.png"]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "dead.png").stat().st_mode & 0o777 == 0o666 & ~umask  # a normal file's mode
    nested = tmp_path / "missing" / "x.png"  # folders are created, as every writer does
    assert drep.plot(nested) == str(nested) and nested.read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import sys

    drep, _ = _reports()
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"rectifiers\[plot\]"):
        drep.plot(tmp_path / "x.png")


def test_empty_reports_render():
    act = nn.ReLU()
    mon = DeadUnitMonitor(act)
    rep = mon.report()
    assert rep.layers == [] and math.isnan(rep.dead_fraction)
    assert "no activation" in rep.to_table()
    assert json.dumps(rep.to_dict(), allow_nan=False)
    frep = GradientFlowMonitor(nn.Linear(2, 2)).report()
    assert frep.num_steps == 0 and "no step" in frep.to_table()
    assert json.dumps(frep.to_dict(), allow_nan=False)


def test_count_above_exact_with_nan_and_fallback(monkeypatch):
    """The fast count equals the comparison count, NaN and infinities included; on a build
    whose sign(NaN) were NaN, the NaN check recounts the batch with the comparison."""
    from rectifiers.diagnostics import counting as D

    x = torch.randn(50, 7)
    x[0, 0], x[1, 1], x[2, 2], x[3, 3] = float("nan"), float("inf"), -float("inf"), 0.5
    for c in (0.0, 0.5, -1.0):
        want = (x > c).sum(0).double()
        torch.testing.assert_close(D._count_above(x, c, True).double(), want)
    torch.testing.assert_close(D._count_above(torch.relu(x), None, True).double(), (x > 0).sum(0).double())
    big = torch.randn(600, 4) + torch.tensor([-3.0, 0.0, 3.0, 0.0])  # > 255 samples: chunked
    big[:, 3] = 1.0
    for t in (big, x):
        got = D._count_nonzero_output(torch.relu(t), True)
        torch.testing.assert_close(got.double(), (t > 0).sum(0).double())
    assert D._count_nonzero_output(torch.relu(big), True).tolist()[3] == 600
    real = torch.Tensor.sign_

    def nan_sign_(t):
        nan = t.isnan()
        real(t)
        return t.masked_fill_(nan, float("nan"))

    monkeypatch.setattr(D, "_SIGN_NAN_IS_ZERO", False)
    monkeypatch.setattr(torch.Tensor, "sign_", nan_sign_)
    y = x.clamp(min=0.5).sub_(0.5)
    assert torch.isnan(y.sign_()).any()  # the patched sign propagates NaN
    torch.testing.assert_close(D._count_above(x, 0.5, True).double(), (x > 0.5).sum(0).double())


def test_flow_with_lazy_and_torch_activation_params():
    model = nn.Sequential(nn.Linear(3, 4), R.FReLU(None, dim=-1), nn.Linear(4, 4), nn.PReLU(4), nn.Linear(4, 1))
    mon = GradientFlowMonitor(model)
    assert set(mon.report().params) == {"3.weight"}  # the lazy FReLU bias does not exist yet
    with mon:
        for _ in range(2):
            model.zero_grad()
            model(torch.randn(5, 3)).sum().backward()
            mon.step()
    rep = mon.report()
    assert rep.layers == ["0", "2", "4"]
    assert set(rep.params) == {"1.bias", "3.weight"}
    assert rep.params["1.bias"].shape == (2, 4) and rep.params["3.weight"].shape == (2, 4)
    np.testing.assert_allclose(rep.params["3.weight"][0], 0.25)


# ------------------------------------------------------------------------------------------
# parameters whose gradient is zero at every step (issue 15, item 5)
# ------------------------------------------------------------------------------------------


class _FReLUBottleneck(nn.Module):
    """A ResNet bottleneck's pattern with FReLU: the second FReLU feeds a 1x1 conv and a
    BatchNorm, which removes its (constant) bias: that bias's gradient is 0 in exact
    arithmetic. The first feeds a padded 3x3 conv (not constant at the border) and the third
    the residual sum: their biases learn."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, 4, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = R.FReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4)
        self.act2 = R.FReLU()
        self.conv3 = nn.Conv2d(4, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.act3 = R.FReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act1(self.bn1(self.conv1(x)))
        o = self.act2(self.bn2(self.conv2(o)))
        return self.act3(self.bn3(self.conv3(o)) + x)


def _bottleneck_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                         _FReLUBottleneck(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))


def _flow_steps(model: nn.Module, steps: int = 3, **kw) -> GradientFlowReport:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with GradientFlowMonitor(model, optimizer=opt, **kw) as mon:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    return mon.report()


def test_flow_flags_the_frelu_bias_batchnorm_cancels():
    model = _bottleneck_net()
    rep = _flow_steps(model)
    assert rep.zero_grad == ["3.act2.bias"], rep.zero_grad
    # the oracle: the flagged bias's gradient is at rounding level, the others' are not
    grads = {n: p.grad.abs().max().item() for n, p in model.named_parameters()}
    top = max(grads.values())
    assert grads["3.act2.bias"] <= 1e-6 * top
    assert grads["3.act1.bias"] > 1e-4 * top and grads["3.act3.bias"] > 1e-4 * top
    # in the table and the dict, by name
    table = rep.to_table()
    assert "zero gradient at every step (1 parameters, they cannot learn):\n  - 3.act2.bias" in table
    assert rep.to_dict()["zero_grad"] == ["3.act2.bias"]
    json.dumps(rep.to_dict())
    # zero_rtol=0: only exact zeros count, and float32 rounding leaves none here
    assert _flow_steps(_bottleneck_net(), zero_rtol=0.0).zero_grad == []


def test_flow_zero_grad_exact_zero_and_only_if_zero_at_every_step():
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(3, 3), nn.Linear(3, 2)
    model = nn.Sequential(lin1, nn.ReLU(), lin2)
    with GradientFlowMonitor(model) as mon:
        for step in range(3):
            model.zero_grad()
            model(torch.randn(4, 3)).sum().backward()
            if step < 2:
                lin1.bias.grad.zero_()  # exactly zero at two steps ...
            lin2.weight.grad.zero_()  # ... and at every step
            mon.step()
    assert mon.report().zero_grad == ["2.weight"]
    mon.reset()
    assert mon.report().zero_grad == []
    with pytest.raises(ValueError, match="zero_rtol"):
        GradientFlowMonitor(model, zero_rtol=2.0)


def test_flow_output_unchanged_when_nothing_is_zero():
    # no zero_grad key, no extra table line: outputs written before the field existed stay byte-identical
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with GradientFlowMonitor(model) as mon:
        model(torch.randn(5, 3)).sum().backward()
        mon.step()
    rep = mon.report()
    assert rep.zero_grad == []
    assert "zero_grad" not in rep.to_dict() and "zero gradient" not in rep.to_table()
    d = rep.to_dict()
    assert list(d) == ["layers", "steps", "norms", "first_last_ratio", "first_last_ratio_median",
                       "vanishing", "exploding", "vanishing_steps", "exploding_steps",
                       "nonfinite_steps", "reasons", "thresholds", "params"]
    assert rep.to_table().splitlines()[-1] == "exploding: no (0/1 steps flagged)"
