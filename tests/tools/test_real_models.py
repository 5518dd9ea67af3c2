"""convert() on torchvision's REAL model code (issue 15, item 6).

torchvision 0.28.0 installs beside the CPU torch, but its only registry wheel is a CUDA build
whose compiled ops cannot load, so ``import torchvision`` fails at ``torchvision::nms``. These
tests import it through ``tests/_torchvision_stub.py``, which defines the schemas of those
compiled-op registrations (and nothing else) with ``torch.library``: every model, layer and
forward below is torchvision's own Python code, built with ``weights=None``. The tests skip only
when torchvision cannot be imported even so (then the reason says why).

Every model runs with every target (``leaky_relu``, per-channel ``prelu``, ``frelu``,
``funnel``) on a small input, with a sample input: the summary is checked against an
independent count of the ReLU calls, the skipped sites against what is known (a funnel does not
apply after ``Linear``), then one training step runs and the output has the right shape.
``python tests/tools/test_real_models.py`` prints the model-by-target table.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

if __package__ in (None, ""):  # run as a script: the tests' shared helpers sit one folder up
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _torchvision_stub  # noqa: E402
import rectifiers
from rectifiers.convert import convert
from rectifiers.diagnostics import GradientFlowMonitor

_ERR = _torchvision_stub.install()
pytestmark = pytest.mark.skipif(_ERR is not None, reason=f"torchvision cannot be imported: {_ERR}")

CLASSES = 5


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread while these tests run: with two pytest-xdist workers on two cores,
    torch's default (one thread per core in each worker) oversubscribes the CPU, and these
    conv nets then run up to 100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tv():
    import torchvision

    return torchvision


class SeqMlp(nn.Module):
    """A transformer-style MLP on (N, L, C) tokens: torchvision.ops.MLP (Linear, ReLU, Dropout,
    ...) applied per token, then a mean over the tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.mlp = _tv().ops.MLP(8, [32, 32, CLASSES], activation_layer=nn.ReLU, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).mean(1)


def _bottleneck_resnet() -> nn.Module:
    tv = _tv()
    return tv.models.resnet.ResNet(tv.models.resnet.Bottleneck, [1, 1, 1, 1], num_classes=CLASSES)


#: name -> (builder, input shape). Small configurations, no weights, small inputs.
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": (lambda: _tv().models.resnet18(weights=None, num_classes=CLASSES), (2, 3, 32, 32)),
    "resnet_bottleneck": (_bottleneck_resnet, (2, 3, 32, 32)),
    "densenet121": (lambda: _tv().models.densenet121(weights=None, num_classes=CLASSES), (2, 3, 32, 32)),
    "vgg11_bn": (lambda: _tv().models.vgg11_bn(weights=None, num_classes=CLASSES), (2, 3, 32, 32)),
    "mobilenet_v3_small": (lambda: _tv().models.mobilenet_v3_small(weights=None, num_classes=CLASSES), (2, 3, 32, 32)),
    "shufflenet_v2_x0_5": (lambda: _tv().models.shufflenet_v2_x0_5(weights=None, num_classes=CLASSES), (2, 3, 32, 32)),
    "squeezenet1_0": (lambda: _tv().models.squeezenet1_0(weights=None, num_classes=CLASSES), (2, 3, 32, 32)),
    "mlp_tokens": (SeqMlp, (2, 17, 8)),
}

#: target -> (registry name, kwargs, module class)
TARGETS: dict[str, tuple[str, dict[str, Any], type]] = {
    "leaky_relu": ("leaky_relu", {}, rectifiers.LeakyReLU),
    "prelu": ("prelu", {"num_parameters": "channels"}, rectifiers.PReLU),
    "frelu": ("frelu", {}, rectifiers.FlexibleReLU),
    "funnel": ("funnel", {}, rectifiers.FunnelReLU),
}

_RELU_CALLS = {F.relu, F.relu_, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_}


class count_calls:
    """Counts, while active, the ReLU computed outside ``cls`` modules and the calls of ``cls``
    modules: ``nn.ReLU`` module calls plus relu function / method calls made anywhere but inside
    an ``nn.ReLU`` or a ``cls`` module. Independent of convert."""

    def __init__(self, model: nn.Module, cls: type) -> None:
        self.model, self.cls = model, cls
        self.relu = self.target = 0

    def __enter__(self) -> "count_calls":
        stack: list[nn.Module] = []
        cls = self.cls
        counter = self

        def push(m: nn.Module, _a: Any) -> None:
            stack.append(m)
            if isinstance(m, nn.ReLU):
                counter.relu += 1
            if isinstance(m, cls):
                counter.target += 1

        def pop(_m: nn.Module, _a: Any, _o: Any) -> None:
            stack.pop()

        class Spy(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                if func in _RELU_CALLS and not any(isinstance(m, (nn.ReLU, cls)) for m in stack):
                    counter.relu += 1
                return func(*args, **(kwargs or {}))

        self.handles = [h for m in self.model.modules()
                        for h in (m.register_forward_pre_hook(push), m.register_forward_hook(pop, always_call=True))]
        self.spy = Spy()
        self.spy.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.spy.__exit__(*exc)
        for h in self.handles:
            h.remove()


_BEFORE: dict[tuple[str, tuple[int, ...]], int] = {}


def run_case(model_name: str, target: str) -> dict[str, Any]:
    """Convert, check against the independent count, train one step. Returns the table row."""
    build, shape = MODELS[model_name]
    name, kwargs, cls = TARGETS[target]
    torch.manual_seed(0)
    model = build()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    y = torch.randint(0, CLASSES, (shape[0],), generator=g)
    key = (model_name, tuple(shape))
    if key not in _BEFORE:  # the original's count does not depend on the target
        with torch.no_grad(), count_calls(model, cls) as c:
            model.eval()(x)
        _BEFORE[key] = c.relu
        model.train()
    before = _BEFORE[key]
    s = convert(model, name, sample_input=x, **kwargs)
    m = s.model
    assert s.checked and s.complete, str(s)
    skipped = [(p, why) for p, why in s.skipped if "does not apply" in why]
    # one training step, counting the calls
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    with GradientFlowMonitor(m, optimizer=opt) as mon:
        opt.zero_grad()
        with count_calls(m, cls) as c:
            out = m(x)
        after, calls = c.relu, c.target
        assert out.shape == (shape[0], CLASSES)
        loss = F.cross_entropy(out, y)
        assert torch.isfinite(loss)
        loss.backward()
        opt.step()
    # every ReLU the original computed is now a call of a new module, or a skipped site; a
    # learnable target gets one module per call site (a stateless one may stay shared)
    assert before == calls + after and after == len(skipped), (before, calls, after, str(s))
    if target == "leaky_relu":  # stateless: a shared ReLU stays one shared module
        assert calls >= s.count()
    else:  # learnable: every call site has its own module, run once
        assert calls == s.count()
    acts = [(p, a) for p, a in m.named_modules() if isinstance(a, cls)]
    assert len(acts) == s.count()
    assert all(p.grad is not None for _, a in acts for p in a.parameters())
    return {"model": model_name, "target": target, "summary": s, "converted": s.count(),
            "skipped": skipped, "notes": s.notes, "zero_grad": mon.report().zero_grad,
            "acts": acts}


# ---------------------------------------------------------------------------------------------


EXPECT_SKIPS = {("vgg11_bn", "funnel"): 2, ("mlp_tokens", "funnel"): 2}


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("model_name", list(MODELS))
def test_convert_real_model(model_name, target):
    row = run_case(model_name, target)
    assert row["converted"] > 0 or (model_name == "mlp_tokens" and target == "funnel")
    assert len(row["skipped"]) == EXPECT_SKIPS.get((model_name, target), 0), str(row["summary"])
    for p, why in row["skipped"]:  # only a funnel after a Linear is skipped
        assert "fed by Linear" in why and "FunnelReLU needs 4-D" in why, (p, why)
    if target == "prelu":
        # one slope per channel: the size of the dim the feeding layer puts channels in
        channels_last = model_name == "mlp_tokens"
        for p, a in row["acts"]:
            assert a.dim == (-1 if channels_last else 1) or (p.startswith("classifier") and a.dim == -1), (p, a)
        if channels_last:
            assert sorted(a.num_parameters for _, a in row["acts"]) == [32, 32]
            m = row["summary"].model  # another sequence length
            assert m(torch.randn(3, 40, 8)).shape == (3, CLASSES)
    if target == "frelu":
        notes = sorted(p for p, _ in row["notes"])
        flagged = {n[: -len(".bias")] for n in row["zero_grad"]}
        # Every site convert notes has a zero bias gradient, measured. (The rule is static and
        # conservative: on these tiny inputs the monitor finds more, such as biases shifted
        # through a max-pool or a concatenation into a BatchNorm, 3x3 convs on 1x1 maps, or a
        # shift of all logits, which softmax cross-entropy ignores.)
        assert set(notes) <= flagged, (set(notes) - flagged, row["zero_grad"])
        expected = {"resnet_bottleneck": 4, "densenet121": 58}.get(model_name, 0)
        assert len(notes) == expected, notes
        if model_name == "resnet_bottleneck":  # the second call of each block's shared ReLU
            assert notes == [f"layer{i}.0.relu_1" for i in (1, 2, 3, 4)]


def test_funnel_after_linear_refused_on_request_model_untouched():
    build, shape = MODELS["vgg11_bn"]
    torch.manual_seed(0)
    model = build()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    tree = [(p, id(m)) for p, m in model.named_modules()]
    with pytest.raises(ValueError) as e:
        convert(model, "funnel", sample_input=torch.randn(*shape), on_inapplicable="error")
    assert "'classifier.1'" in str(e.value) and "'classifier.4'" in str(e.value)
    assert [(p, id(m)) for p, m in model.named_modules()] == tree
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    # without a sample input the feeding Linear decides, and the model then runs
    s = convert(model, "funnel")
    assert s.complete and {p for p, _ in s.skipped} == {"classifier.1", "classifier.4"}
    assert model(torch.randn(*shape)).shape == (2, CLASSES)


def table(rows: list[dict[str, Any]]) -> str:
    """The model-by-target table: converted sites, skipped sites (why), and for FReLU the
    sites convert notes / the FReLU biases the monitor measured zero / all zero-grad params."""
    lines = ["| model | target | converted | skipped (why) | FReLU: noted / zero bias measured / zero-grad params |",
             "|---|---|---|---|---|"]
    for r in rows:
        why = "; ".join(f"{p}: fed by Linear" for p, _ in r["skipped"]) or "-"
        acts = {f"{p}.bias" for p, _ in r["acts"]}
        zero = sum(1 for n in r["zero_grad"] if n in acts)
        notes = f"{len(r['notes'])} / {zero} / {len(r['zero_grad'])}" if r["target"] == "frelu" else "-"
        lines.append(f"| {r['model']} | {r['target']} | {r['converted']} | {why} | {notes} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if _ERR is not None:
        sys.exit(_ERR)
    torch.set_num_threads(1)
    print(table([run_case(mn, t) for mn in MODELS for t in TARGETS]))
