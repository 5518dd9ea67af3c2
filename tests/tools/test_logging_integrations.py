"""Tests of rectifiers.integrations.tensorboard and .lightning against the real packages.

Event files are written to a temporary folder and read back with TensorBoard's own
``EventAccumulator``; the values read are compared with the monitors' reports (and, for the
gradient norms and activation parameters, with values computed in the test from the model).
A test that needs a package skips only when that package cannot be imported, naming the extra.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import rectifiers as R
from rectifiers._util import MissingExtraError
from rectifiers.diagnostics import DeadUnitMonitor, GradientFlowMonitor

TB_REASON = "needs the tensorboard extra: pip install 'rectifiers[tensorboard]'"
PL_REASON = "needs the lightning extra: pip install 'rectifiers[lightning]'"


def _tensorboard():
    pytest.importorskip("tensorboard", reason=TB_REASON)
    from rectifiers.integrations import tensorboard as T

    return T


def _lightning():
    """``(pl, rectifiers.integrations.lightning)``; skips naming the extra when Lightning cannot
    be imported (with the reason when it is installed but broken, e.g. by a torchvision that
    does not match torch: torchmetrics imports torchvision whenever it is installed)."""
    # torchmetrics (which Lightning needs) imports torchvision whenever it is installed; give the
    # CUDA-only torchvision wheel its stand-in op registrations first (tests/_torchvision_stub.py).
    from _torchvision_stub import install

    install()
    try:
        from rectifiers.integrations import lightning as RL
    except MissingExtraError as e:
        pytest.skip(PL_REASON if "not installed" in str(e) else f"{PL_REASON}: {e}")
    pl = importlib.import_module("lightning.pytorch" if RL.LIGHTNING_PACKAGE == "lightning" else "pytorch_lightning")
    return pl, RL


def _events(logdir: str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    ea.Reload()
    return ea


def _scalars(ea) -> dict[str, dict[int, float]]:
    """tag -> {step: value} (each step written once in these tests)."""
    out: dict[str, dict[int, float]] = {}
    for tag in ea.Tags()["scalars"]:
        evs = ea.Scalars(tag)
        steps = [e.step for e in evs]
        assert len(steps) == len(set(steps)), f"{tag} written twice at one step: {steps}"
        out[tag] = {e.step: e.value for e in evs}
    return out


def _f32(v: float) -> float:
    return float(np.float32(v))


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------------------------
# Optional imports
# --------------------------------------------------------------------------------------------


def test_import_rectifiers_imports_neither_tensorboard_nor_lightning():
    p = _run(
        "import sys, rectifiers, rectifiers.diagnostics, rectifiers.integrations, rectifiers.convert; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorboard', 'lightning', 'pytorch_lightning', 'tensorboardX') "
        "or m.startswith('torch.utils.tensorboard')))"
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"


@pytest.mark.parametrize("module, blocked, extra", [
    ("tensorboard", ["tensorboard"], "tensorboard"),
    ("lightning", ["lightning", "pytorch_lightning"], "lightning"),
])
def test_missing_package_gives_one_line_naming_the_extra(module, blocked, extra):
    block = "".join(f"sys.modules[{b!r}] = None; " for b in blocked)
    # the class, a single line, no chained traceback; then what Python would print uncaught
    p = _run(
        f"import sys, traceback; {block}\n"
        "from rectifiers._util import MissingExtraError\n"
        "try:\n"
        f"    import rectifiers.integrations.{module}\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__, isinstance(e, MissingExtraError), e.__cause__ is None,\n"
        "          e.__context__ is None or e.__suppress_context__, len(str(e).splitlines()))\n"
        "    print(e)\n"
        "    print(''.join(traceback.format_exception(e)), end='')\n"
    )
    assert p.returncode == 0, p.stderr
    first, message, *printed = p.stdout.strip().splitlines()
    assert first == "MissingExtraError True True True 1"
    assert f"pip install 'rectifiers[{extra}]'" in message
    assert "not installed" in message
    # the last line names the extra; no traceback from inside the missing package
    assert printed[0] == "Traceback (most recent call last):"
    assert printed[-1] == f"rectifiers._util.MissingExtraError: {message}"
    text = "\n".join(printed)
    assert "ModuleNotFoundError" not in text and "direct cause" not in text and "During handling" not in text


def test_tensorboard_installed_but_broken_says_so():
    _tensorboard()
    p = _run(
        "import sys; sys.modules['torch.utils.tensorboard'] = None\n"
        "try:\n"
        "    import rectifiers.integrations.tensorboard\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__); print(e)\n"
    )
    assert p.returncode == 0, p.stderr
    name, message = p.stdout.strip().splitlines()
    assert name == "MissingExtraError"
    assert "installed but cannot be imported" in message and "rectifiers[tensorboard]" in message


def test_lightning_installed_but_broken_says_so():
    if importlib.util.find_spec("lightning") is None and importlib.util.find_spec("pytorch_lightning") is None:
        pytest.skip(PL_REASON)
    p = _run(
        "import sys; sys.modules['torchmetrics'] = None\n"  # Lightning imports torchmetrics
        "try:\n"
        "    import rectifiers.integrations.lightning\n"
        "except ImportError as e:\n"
        "    print(type(e).__name__); print(e)\n"
    )
    assert p.returncode == 0, p.stderr
    name, message = p.stdout.strip().splitlines()
    assert name == "MissingExtraError"
    assert "installed but cannot be imported" in message and "torchmetrics" in message
    assert "rectifiers[lightning]" in message


def test_lightning_falls_back_to_pytorch_lightning():
    _lightning()
    pytest.importorskip("pytorch_lightning", reason=PL_REASON)
    from _torchvision_stub import PRELUDE

    p = _run(
        PRELUDE + "import sys; sys.modules['lightning'] = None\n"
        "import pytorch_lightning, rectifiers.integrations.lightning as RL\n"
        "print(RL.LIGHTNING_PACKAGE, issubclass(RL.DiagnosticsCallback, pytorch_lightning.Callback))\n"
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pytorch_lightning True"


def test_missing_extra_error_is_an_import_error():
    assert issubclass(MissingExtraError, ImportError)


# --------------------------------------------------------------------------------------------
# TensorBoard
# --------------------------------------------------------------------------------------------


class _Net(nn.Module):
    """Linear -> ReLU -> Linear -> PReLU (per feature) -> Linear -> FReLU -> ReLU (the first
    ReLU again: a second use site) -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 8)
        self.prelu = R.PReLU(8, dim=-1)
        self.fc3 = nn.Linear(8, 8)
        self.frelu = R.FlexibleReLU()
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc1(x))
        x = self.prelu(self.fc2(x))
        x = self.act(self.frelu(self.fc3(x)))
        return self.head(x)


def _trained(steps: int = 4, seed: int = 0):
    """The net trained ``steps`` steps with both monitors attached; returns (net, dead, flow)."""
    torch.manual_seed(seed)
    net = _Net()
    with torch.no_grad():
        net.prelu.weight.copy_(torch.linspace(0.05, 0.6, 8))
        net.fc1.bias[:3] = -50.0  # three units of the first ReLU site never fire
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    dead = DeadUnitMonitor(net).attach()
    flow = GradientFlowMonitor(net).attach()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=g), torch.randn(16, 2, generator=g)
        nn.functional.mse_loss(net(x), y).backward()
        flow.step()
        opt.step()
        opt.zero_grad()
    dead.detach()
    flow.detach()
    return net, dead, flow


def _expected_dead_tags(rep, prefix="rectifiers/dead"):
    fields = ("dead_fraction", "inactive_fraction", "near_dead_fraction", "activation_rate")
    tags = {f"{prefix}/{f}": getattr(rep, f) for f in fields}
    for layer in rep.layers:
        for f in fields:
            tags[f"{prefix}/{f}/{layer.name.replace('#', '-')}"] = getattr(layer, f)
    return tags


def test_dead_units_written_and_read_back(tmp_path):
    T = _tensorboard()
    _, dead, _ = _trained()
    rep = dead.report()
    assert [l.name for l in rep.layers] == ["act#0", "prelu", "frelu", "act#1"]
    assert rep.layer("act#0").dead == 3  # the three units with bias -50, of 8
    with T.SummaryWriter(str(tmp_path)) as w:
        written = T.log_dead_units(w, rep, step=7)
    ea = _events(tmp_path)
    got = _scalars(ea)
    expected = _expected_dead_tags(rep)
    assert written == pytest.approx(expected)
    assert set(got) == set(expected)  # no revived / newly_dead before a reset
    for tag, v in expected.items():
        assert got[tag] == {7: _f32(v)}, tag
    assert got["rectifiers/dead/dead_fraction/act-0"][7] == _f32(3 / 8)
    assert got["rectifiers/dead/dead_fraction/prelu"][7] == 0.0  # leaky: never dead
    # histograms: per-channel activation rate of each site with more than one channel
    hists = set(ea.Tags()["histograms"])
    assert hists == {f"rectifiers/dead/channel_activation_rate/{n}" for n in ("act-0", "prelu", "frelu", "act-1")}
    for layer in rep.layers:
        (ev,) = ea.Histograms(f"rectifiers/dead/channel_activation_rate/{layer.name.replace('#', '-')}")
        h, v = ev.histogram_value, layer.channel_activation_rate
        assert ev.step == 7 and h.num == v.size == layer.channels == 8
        assert h.min == pytest.approx(v.min()) and h.max == pytest.approx(v.max())
        assert h.sum == pytest.approx(v.sum())


def test_dead_units_revived_after_reset_and_prefix(tmp_path):
    T = _tensorboard()
    net, dead, _ = _trained()
    dead.reset()
    with dead, torch.no_grad():
        net(torch.randn(8, 6))
    rep = dead.report()
    with T.SummaryWriter(str(tmp_path)) as w:
        T.log_dead_units(w, rep, 3, prefix="diag/dead/", histograms=False)
    ea = _events(tmp_path)
    got = _scalars(ea)
    assert ea.Tags()["histograms"] == []
    expected = _expected_dead_tags(rep, "diag/dead")
    expected["diag/dead/revived"] = rep.revived
    expected["diag/dead/newly_dead"] = rep.newly_dead
    assert set(got) == set(expected)
    for tag, v in expected.items():
        assert got[tag] == {3: _f32(v)}, tag


def test_gradient_flow_written_and_read_back(tmp_path):
    T = _tensorboard()
    net, _, flow = _trained(steps=5)
    rep = flow.report()
    assert rep.layers == ["fc1", "fc2", "fc3", "head"] and rep.num_steps == 5
    with T.SummaryWriter(str(tmp_path / "last")) as w:
        written = T.log_gradient_flow(w, rep, step=40)
    with T.SummaryWriter(str(tmp_path / "all")) as w:
        T.log_gradient_flow(w, rep, None)
    p = "rectifiers/grad"
    expected = {f"{p}/norm/{n}": rep.norms[-1, j] for j, n in enumerate(rep.layers)}
    expected.update({
        f"{p}/first_last_ratio": rep.first_last_ratio[-1],
        f"{p}/first_last_ratio_median": rep.first_last_ratio_median,
        f"{p}/vanishing": float(rep.vanishing),
        f"{p}/exploding": float(rep.exploding),
        f"{p}/param_mean/prelu.weight": rep.params["prelu.weight"][-1].mean(),
        f"{p}/param_mean/frelu.bias": rep.params["frelu.bias"][-1].mean(),
    })
    assert all(math.isfinite(v) for v in expected.values())
    assert written == pytest.approx(expected)
    ea = _events(tmp_path / "last")
    got = _scalars(ea)
    assert set(got) == set(expected)
    for tag, v in expected.items():
        assert got[tag] == {40: _f32(v)}, tag
    # the first/last ratio is the first layer's norm over the last's
    assert rep.first_last_ratio[-1] == pytest.approx(rep.norms[-1, 0] / rep.norms[-1, -1])
    # the PReLU slopes as a histogram, equal to the module's values before the last update
    assert set(ea.Tags()["histograms"]) == {f"{p}/param/prelu.weight", f"{p}/param/frelu.bias"}
    (ev,) = ea.Histograms(f"{p}/param/prelu.weight")
    slopes = rep.params["prelu.weight"][-1]
    assert ev.step == 40 and ev.histogram_value.num == 8
    assert ev.histogram_value.min == pytest.approx(slopes.min())
    assert ev.histogram_value.max == pytest.approx(slopes.max())
    assert ev.histogram_value.sum == pytest.approx(slopes.sum())
    # step=None: every recorded step at the monitor's step numbers, summaries with the last
    got = _scalars(_events(tmp_path / "all"))
    assert list(rep.steps) == [0, 1, 2, 3, 4]
    for j, n in enumerate(rep.layers):
        assert got[f"{p}/norm/{n}"] == {s: _f32(rep.norms[s, j]) for s in range(5)}
    assert got[f"{p}/first_last_ratio"] == {s: _f32(rep.first_last_ratio[s]) for s in range(5)}
    assert got[f"{p}/vanishing"] == {4: _f32(float(rep.vanishing))}
    assert got[f"{p}/first_last_ratio_median"] == {4: _f32(rep.first_last_ratio_median)}


def test_gradient_norms_match_the_model(tmp_path):
    """The norm written for a layer is the L2 norm of all its parameters' gradients."""
    T = _tensorboard()
    torch.manual_seed(1)
    net = _Net()
    flow = GradientFlowMonitor(net).attach()
    nn.functional.mse_loss(net(torch.randn(16, 6)), torch.randn(16, 2)).backward()
    flow.step()
    want = {n: torch.cat([p.grad.reshape(-1) for p in getattr(net, n).parameters()]).norm().item()
            for n in ("fc1", "fc2", "fc3", "head")}
    with T.SummaryWriter(str(tmp_path)) as w:
        T.log_gradient_flow(w, flow.report(), 0)
    got = _scalars(_events(tmp_path))
    for n, v in want.items():
        assert got[f"rectifiers/grad/norm/{n}"][0] == pytest.approx(v, rel=1e-6)


def test_log_monitors_and_empty_reports(tmp_path):
    T = _tensorboard()
    net, dead, flow = _trained(steps=2)
    with T.SummaryWriter(str(tmp_path / "both")) as w:
        drep, frep = T.log_monitors(w, 5, dead=dead, flow=flow)
    got = _scalars(_events(tmp_path / "both"))
    assert set(got) == set(T.dead_unit_scalars(drep)) | set(T.gradient_flow_scalars(frep))
    assert got["rectifiers/dead/dead_fraction"] == {5: _f32(drep.dead_fraction)}
    assert got["rectifiers/grad/norm/fc1"] == {5: _f32(frep.norms[-1, 0])}
    # nothing seen, nothing recorded: nothing written
    empty_dead = DeadUnitMonitor(_Net()).report()
    empty_flow = GradientFlowMonitor(_Net()).report()
    assert T.dead_unit_scalars(empty_dead) == {} and T.gradient_flow_scalars(empty_flow) == {}
    with T.SummaryWriter(str(tmp_path / "empty")) as w:
        T.log_monitors(w, 0, dead=DeadUnitMonitor(_Net()), flow=GradientFlowMonitor(_Net()))
    ea = _events(tmp_path / "empty")
    assert ea.Tags()["scalars"] == [] and ea.Tags()["histograms"] == []


def test_tensorboard_bad_arguments(tmp_path):
    T = _tensorboard()
    _, dead, flow = _trained(steps=1)
    with T.SummaryWriter(str(tmp_path)) as w:
        with pytest.raises(TypeError, match=r"DeadUnitReport.*call \.report\(\)"):
            T.log_dead_units(w, dead, 0)
        with pytest.raises(TypeError, match="GradientFlowReport"):
            T.log_gradient_flow(w, dead.report(), 0)
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            T.log_dead_units(w, dead.report(), -1)
        with pytest.raises(ValueError, match="step must be a non-negative int"):
            T.log_dead_units(w, dead.report(), None)
        with pytest.raises(ValueError, match="prefix"):
            T.log_dead_units(w, dead.report(), 0, prefix="")
        with pytest.raises(ValueError, match="give dead="):
            T.log_monitors(w, 0)
        with pytest.raises(IndexError, match="1 recorded steps"):
            T.gradient_flow_scalars(flow.report(), row=3)
    with pytest.raises(TypeError, match="SummaryWriter"):
        T.log_dead_units(object(), dead.report(), 0)


def test_tag_part():
    T = _tensorboard()
    assert T.tag_part("layer1.0.relu") == "layer1.0.relu"
    assert T.tag_part("act#12") == "act-12"
    assert T.tag_part("odd name/x") == "odd_name_x"


# --------------------------------------------------------------------------------------------
# Lightning
# --------------------------------------------------------------------------------------------


def _lit_module(pl, *, with_activations: bool = True):
    class Lit(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = _Net() if with_activations else nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 2))
            self.seen_norms: dict[int, dict[str, float]] = {}
            self.seen_params: dict[int, np.ndarray] = {}
            self.train_samples = 0

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, i):
            x, y = batch
            self.train_samples += x.shape[0]
            return nn.functional.mse_loss(self(x), y)

        def validation_step(self, batch, i):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self(x), y))

        def on_before_optimizer_step(self, optimizer):
            # runs after the callbacks' hook: the gradients and parameters they logged
            step = self.trainer.global_step
            self.seen_norms[step] = {
                n: torch.cat([p.grad.reshape(-1) for p in m.parameters()]).norm().item()
                for n, m in self.net.named_children() if isinstance(m, nn.Linear)
            }
            if hasattr(self.net, "prelu"):
                self.seen_params[step] = self.net.prelu.weight.detach().numpy().copy()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Lit()


def _loggers(RL):
    return importlib.import_module(
        "lightning.pytorch.loggers" if RL.LIGHTNING_PACKAGE == "lightning" else "pytorch_lightning.loggers")


def _loader(n: int = 40, batch: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ds = torch.utils.data.TensorDataset(torch.randn(n, 6, generator=g), torch.randn(n, 2, generator=g))
    return torch.utils.data.DataLoader(ds, batch_size=batch)


def _trainer(pl, logger, cb, epochs: int = 2):
    return pl.Trainer(
        max_epochs=epochs, logger=logger, callbacks=[cb], accelerator="cpu", devices=1,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        num_sanity_val_steps=2,
    )


def test_lightning_callback_with_tensorboard_logger(tmp_path):
    _tensorboard()
    pl, RL = _lightning()
    loggers = _loggers(RL)
    torch.manual_seed(0)
    model = _lit_module(pl)

    class Recording(RL.DiagnosticsCallback):
        """Keeps the reports of every logged step (the callback keeps the last only)."""

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            super().on_before_optimizer_step(trainer, pl_module, optimizer)
            if self.last_step == trainer.global_step:
                self.reports[self.last_step] = (self.last_dead_report, self.last_flow_report)

    cb = Recording(every_n_steps=2)
    cb.reports = {}
    trainer = _trainer(pl, loggers.TensorBoardLogger(str(tmp_path), name="run"), cb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _loader(), _loader(16, seed=1))
    # 5 batches an epoch, 2 epochs: steps 0..9; every 2nd, and the last batch of each epoch
    logged = [0, 2, 4, 6, 8, 9]
    assert model.train_samples == 80
    assert sorted(cb.reports) == logged
    assert not cb.dead_monitor.attached and not cb.flow_monitor.attached
    assert cb.last_step == 9
    ea = _events(trainer.logger.log_dir)
    got = _scalars(ea)
    dead_tags = {t for t in got if t.startswith("rectifiers/dead/")}
    assert set(_expected_dead_tags(cb.last_dead_report)) <= dead_tags
    # each point equals the report the monitor gave at that step
    for s in logged:
        for tag, v in _expected_dead_tags(cb.reports[s][0]).items():
            assert math.isfinite(got[tag][s]) and got[tag][s] == _f32(v), (s, tag)
    for tag in _expected_dead_tags(cb.last_dead_report):
        assert sorted(got[tag]) == logged, tag
    # each dead-unit window holds the training batches since the previous point, 8 samples
    # each: the sanity check (before step 0) and the validation after step 4 are left out
    windows = {0: 1, 2: 2, 4: 2, 6: 2, 8: 2, 9: 1}
    for s, batches in windows.items():
        assert {l.samples for l in cb.reports[s][0].layers} == {8 * batches}, s
    frep = cb.last_flow_report
    assert frep.num_steps == len(logged) and list(frep.steps) == list(range(len(logged)))
    for j, n in enumerate(frep.layers):
        tag = f"rectifiers/grad/norm/{n}"
        assert sorted(got[tag]) == logged
        for k, s in enumerate(logged):
            v = got[tag][s]
            assert math.isfinite(v) and v == _f32(frep.norms[k, j])
            # and equals the norm the module itself saw before that optimizer step
            assert v == pytest.approx(model.seen_norms[s][n.split(".")[-1]], rel=1e-6)
    for tag in ("first_last_ratio", "first_last_ratio_median", "vanishing", "exploding"):
        assert got[f"rectifiers/grad/{tag}"][9] == _f32(
            {"first_last_ratio": frep.first_last_ratio[-1], "first_last_ratio_median": frep.first_last_ratio_median,
             "vanishing": float(frep.vanishing), "exploding": float(frep.exploding)}[tag])
    assert got["rectifiers/dead/revived"][9] == _f32(cb.last_dead_report.revived)
    # activation parameters as histograms, equal to the module's values at that step
    hist = "rectifiers/grad/param/net.prelu.weight"
    assert hist in ea.Tags()["histograms"]
    evs = {e.step: e.histogram_value for e in ea.Histograms(hist)}
    assert sorted(evs) == logged
    for s in logged:
        assert evs[s].num == 8
        assert evs[s].min == pytest.approx(model.seen_params[s].min())
        assert evs[s].sum == pytest.approx(model.seen_params[s].sum())


def test_lightning_callback_with_a_logger_without_histograms(tmp_path):
    pl, RL = _lightning()
    loggers = _loggers(RL)
    model = _lit_module(pl)
    cb = RL.DiagnosticsCallback(every_n_steps=3, log_at_epoch_end=False)
    logger = loggers.CSVLogger(str(tmp_path), name="csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _trainer(pl, logger, cb, epochs=1).fit(model, _loader())
    with open(os.path.join(logger.log_dir, "metrics.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("rectifiers/dead/dead_fraction")]
    assert [int(r["step"]) for r in rows] == [0, 3]
    last = rows[-1]
    want = {**RL._scalars.dead_unit_scalars(cb.last_dead_report),
            **RL._scalars.gradient_flow_scalars(cb.last_flow_report)}
    assert "rectifiers/grad/norm/net.fc1" in want and "rectifiers/dead/activation_rate/net.act-1" in want
    for tag, v in want.items():
        assert math.isfinite(float(last[tag])) and float(last[tag]) == pytest.approx(v, rel=1e-12), tag


def test_lightning_callback_on_a_model_without_activations(tmp_path):
    _tensorboard()
    pl, RL = _lightning()
    model = _lit_module(pl, with_activations=False)
    cb = RL.DiagnosticsCallback(every_n_steps=1)
    with pytest.warns(UserWarning, match="no dead-unit statistics"):
        _trainer(pl, False, cb, epochs=1).fit(model, _loader(16))
    assert cb.dead_monitor is None and cb.last_dead_report is None
    assert cb.last_flow_report.num_steps == 2 and cb.last_step == 1


def test_lightning_callback_bad_arguments():
    _, RL = _lightning()
    with pytest.raises(ValueError, match="every_n_steps"):
        RL.DiagnosticsCallback(every_n_steps=0)
    with pytest.raises(ValueError, match="nothing to watch"):
        RL.DiagnosticsCallback(dead_units=False, gradient_flow=False)
    with pytest.raises(ValueError, match="cannot set 'optimizer'"):
        RL.DiagnosticsCallback(gradient_flow_options={"optimizer": None})
