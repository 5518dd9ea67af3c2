"""convert(): swapping the activations of ResNet-style and transformer-MLP-style models."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import rectifiers
from rectifiers.convert import ConversionSummary, convert


# ---------------------------------------------------------------------------------------------
# small models built here (torchvision's own models: tests/test_real_models.py)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock pattern: one nn.ReLU(inplace=True) instance called twice."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16))
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Mlp(nn.Module):
    """Transformer MLP with the activation written as a function call (and one as a method)."""

    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x), inplace=True))


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = Mlp(d, 4 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyTransformer(nn.Module):
    def __init__(self, d: int = 16, depth: int = 2, classes: int = 5) -> None:
        super().__init__()
        self.embed = nn.Linear(6, d)
        self.blocks = nn.Sequential(*[Block(d, 2) for _ in range(depth)])
        self.head = nn.Linear(d, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.embed(x))
        return self.head(h.relu().mean(1))


class Untraceable(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace this forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.lin(x))
        if y.sum() > -1e9:  # data-dependent branch
            y = self.act(self.lin(y))
            y = torch.relu(y)
        return y


def image_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 10, 10, generator=g), torch.randint(0, 5, (4,), generator=g)


def sequence_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(4, 7, 6, generator=g), torch.randint(0, 5, (4,), generator=g)


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 8) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _activation_modules(model: nn.Module, cls: type) -> list[tuple[str, nn.Module]]:
    return [(p, m) for p, m in model.named_modules() if isinstance(m, cls)]


# ---------------------------------------------------------------------------------------------
# exactness: ReLU -> LeakyReLU(0) changes nothing


@pytest.mark.parametrize("make, batch", [(TinyResNet, image_batch), (TinyTransformer, sequence_batch)])
def test_leaky_zero_leaves_outputs_unchanged(make, batch):
    torch.manual_seed(0)
    model = make().eval()
    x, _ = batch()
    ref = model(x.clone())
    ref_train = copy.deepcopy(model).train()(x.clone())
    s = convert(model, "leaky_relu", negative_slope=0.0)
    out = s.model(x.clone())
    # Bit for bit. (Inside, LeakyReLU(0) gives -0.0 where ReLU gives 0.0; the next layer's
    # sums absorb the sign, and the outputs here have no exact zeros.)
    assert torch.equal(out.view(torch.int32), ref.view(torch.int32))
    assert torch.equal(s.model.train()(x.clone()), ref_train)
    assert not _activation_modules(s.model, nn.ReLU)
    assert s.complete, str(s)


def test_leaky_zero_resnet_counts():
    s = convert(TinyResNet(), "leaky_relu", negative_slope=0.0)
    # stem + 4 blocks; a stateless target keeps a shared instance shared: no call-site splits.
    assert s.count("module") == 5 and s.count("call site") == 0 and s.count("functional") == 0
    assert s.in_place and s.model is not None
    assert all(c.after == "LeakyReLU(negative_slope=0.0, inplace=True)" for c in s.changed)


# ---------------------------------------------------------------------------------------------
# learnable targets: own parameters per call site, channel counts, training


def test_resnet_to_per_channel_prelu_splits_shared_relu_and_trains():
    torch.manual_seed(0)
    model = TinyResNet()
    x, y = image_batch()
    s = convert(model, "prelu", num_parameters="channels", sample_input=x)
    assert isinstance(s, ConversionSummary)
    assert s.in_place and s.model is model  # the root's own forward had nothing to rewrite
    assert s.count("module") == 5 and s.count("call site") == 4, str(s)
    assert sorted(s.rewritten) == ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    assert s.complete, str(s)
    prelus = _activation_modules(model, rectifiers.PReLU)
    assert len(prelus) == 9
    # every call site has its own parameter tensor, sized by the channels it sees
    assert len({id(m.weight) for _, m in prelus}) == 9
    sizes = {p: m.weight.numel() for p, m in prelus}
    assert sizes["stem.2"] == 8 and sizes["layer1.0.relu_1"] == 8 and sizes["layer2.1.relu"] == 16
    assert all(m.num_parameters == m.weight.numel() for _, m in prelus)
    before = {p: m.weight.detach().clone() for p, m in prelus}
    losses = _train(model, x, y)
    assert losses[-1] < losses[0]
    assert all(not torch.equal(m.weight, before[p]) for p, m in prelus)


def test_call_sites_run_once_each():
    model = TinyResNet()
    x, _ = image_batch()
    convert(model, "frelu")
    calls: dict[str, int] = {}
    for p, m in _activation_modules(model, rectifiers.FlexibleReLU):
        m.register_forward_hook(lambda mod, a, o, p=p: calls.__setitem__(p, calls.get(p, 0) + 1))
    model(x)
    assert len(calls) == 9 and set(calls.values()) == {1}


def test_lazy_channels_without_sample_input():
    model = TinyResNet()
    s = convert(model, "funnel")  # FunnelReLU(channels=None): sized at the first call
    assert s.count("module") == 5 and s.count("call site") == 4
    x, y = image_batch()
    model(x)  # materialise, then build the optimizer
    funnels = _activation_modules(model, rectifiers.FunnelReLU)
    assert {m.channels for _, m in funnels} == {8, 16}
    losses = _train(model, x, y, steps=6)
    assert losses[-1] < losses[0]


def test_transformer_functional_calls_channels_last_and_training():
    torch.manual_seed(0)
    model = TinyTransformer()
    x, y = sequence_batch()
    ref = model(x)
    s = convert(model, "prelu", num_parameters="channels", dim=-1, init=0.0, sample_input=x)
    # F.relu(..., inplace=True) in each Mlp, and h.relu() in the root
    assert s.count("functional") == 3 and s.count("module") == 0, str(s)
    assert not s.in_place and isinstance(s.model, fx.GraphModule)
    assert {c.before for c in s.changed} == {"F.relu(inplace)", "Tensor.relu"}
    m = s.model
    prelus = _activation_modules(m, rectifiers.PReLU)
    assert sorted(p.weight.numel() for _, p in prelus) == [16, 64, 64]
    # PReLU with slope 0 is ReLU: same outputs as before the conversion
    assert torch.allclose(m(x), ref, rtol=0, atol=0)
    losses = _train(m, x, y)
    assert losses[-1] < losses[0]
    assert all(p.weight.abs().sum() > 0 for _, p in prelus)  # the slopes moved off 0


def test_inplace_functional_keeps_its_meaning():
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 3)

        def forward(self, x):
            y = self.lin(x)
            y.relu_()  # result discarded: later readers of y must see the activated value
            return y * 2 + F.relu_(y)

    torch.manual_seed(0)
    model = InPlace()
    x = torch.randn(5, 3)
    s = convert(model, "leaky_relu", negative_slope=0.0)
    assert s.count("functional") == 2
    assert torch.equal(s.model(x), model(x))
    s2 = convert(InPlace(), "leaky_relu", negative_slope=0.5)
    m = s2.model
    y = m.lin(x)
    a = F.leaky_relu(y, 0.5)
    assert torch.allclose(m(x), a * 2 + F.leaky_relu(a, 0.5))


# ---------------------------------------------------------------------------------------------
# include / exclude, source, reporting


def test_include_exclude_globs_and_predicates():
    s = convert(TinyResNet(), "prelu", include="layer1.*")
    assert s.count("module") == 2 and s.count("call site") == 2
    assert all(c.path.startswith("layer1.") for c in s.changed)
    assert ("stem.2", "not matched by include") in s.skipped
    s = convert(TinyResNet(), "prelu", exclude=["stem.*", "layer2.1.*"])
    assert {c.path for c in s.changed} == {"layer1.0.relu", "layer1.0.relu_1", "layer1.1.relu",
                                           "layer1.1.relu_1", "layer2.0.relu", "layer2.0.relu_1"}
    model = TinyResNet()
    s = convert(model, "prelu", exclude=lambda path, m: m.inplace)  # all are in place here
    assert s.count() == 0 and len(s.skipped) == 5
    assert len(_activation_modules(model, nn.ReLU)) == 5


def test_source_types_and_names():
    model = nn.Sequential(nn.Linear(3, 3), nn.LeakyReLU(0.2), nn.Linear(3, 3), nn.ReLU(), rectifiers.ReLU())
    s = convert(model, "prelu", source=nn.LeakyReLU)
    assert [c.path for c in s.changed] == ["1"]
    s = convert(model, "frelu")  # default: nn.ReLU and rectifiers.ReLU
    assert [c.path for c in s.changed] == ["3", "4"]
    s = convert(model, "relu", source="prelu")
    assert [c.path for c in s.changed] == ["1"] and isinstance(model[1], rectifiers.ReLU)


def test_untraceable_code_is_reported():
    torch.manual_seed(0)
    model = nn.Sequential(Untraceable(), nn.Linear(4, 2))
    s = convert(model, "prelu")
    assert s.count("module") == 1  # the module itself is still replaced
    assert [p for p, _ in s.untraced] == ["0"] and not s.complete
    assert "could not trace" in str(s) and "sample_input" in str(s)
    # with a sample input: the shared PReLU (2 calls) and the torch.relu call are found
    model = nn.Sequential(Untraceable(), nn.Linear(4, 2))
    s = convert(model, "prelu", sample_input=torch.randn(3, 4))
    found = dict(s.not_converted)
    assert "runs 2 times" in found["0.act"]
    assert "1 relu call(s)" in found["0"] and "could not be traced" in found["0"]
    assert not s.complete and "NOT converted" in str(s)


def test_stateless_target_in_untraceable_code_is_complete_with_sample():
    class NoRelu(Untraceable):
        def forward(self, x):
            y = self.act(self.lin(x))
            return y if y.sum() > 0 else -y

    s = convert(nn.Sequential(NoRelu()), "leaky_relu", sample_input=torch.randn(3, 4))
    assert s.untraced and s.checked and not s.not_converted and s.complete


def test_functional_off_and_split_off():
    s = convert(TinyTransformer(), "prelu", functional=False)
    assert s.count() == 0 and s.in_place
    s = convert(TinyResNet(), "prelu", split_shared=False)
    assert s.count("call site") == 0 and not s.rewritten


def test_sample_input_restores_training_modes():
    model = TinyResNet().train()
    model.layer1[0].bn1.eval()
    x, _ = image_batch()
    mean = model.stem[1].running_mean.clone()
    convert(model, "prelu", num_parameters="channels", sample_input=x)
    assert model.training and not model.layer1[0].bn1.training and model.layer1[1].bn1.training
    assert torch.equal(model.stem[1].running_mean, mean)  # eval pass: BN statistics untouched


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        convert("resnet", "prelu")
    with pytest.raises(KeyError, match="did you mean 'prelu'"):
        convert(TinyResNet(), "preluu")
    with pytest.raises(TypeError, match="include must be"):
        convert(TinyResNet(), "prelu", include=[3])
    with pytest.raises(TypeError, match="source must be"):
        convert(TinyResNet(), "prelu", source=[3])
    with pytest.raises(TypeError, match="slope"):
        convert(TinyResNet(), "prelu", slope=0.1)


def test_instance_registered_at_two_paths_gets_two_learnable_modules():
    act = nn.ReLU()
    model = nn.Sequential(nn.Linear(3, 3), act, nn.Linear(3, 3), act)
    s = convert(model, "prelu")
    assert [c.path for c in s.changed] == ["1", "3"]
    assert model[1] is not model[3] and model[1].weight is not model[3].weight


def test_second_conversion_finds_nothing_left():
    model = TinyResNet()
    convert(model, "prelu")
    s = convert(model, "prelu")
    assert s.count() == 0 and s.complete


def test_library_code_relu_is_reported_not_rewritten():
    # nn.TransformerEncoderLayer calls F.relu inside torch.nn code (training mode: no fast path)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.Linear(4, 8), layer)
    s = convert(model, "prelu", sample_input=torch.randn(2, 5, 4))
    found = dict(s.not_converted)
    assert "1" in found and "torch.nn" in found["1"], str(s)


# ---------------------------------------------------------------------------------------------
# all or nothing; sites where the target does not apply (issue 15, item 1)


def _vgg_like() -> nn.Sequential:
    """VGG's layout: conv features, then a classifier with ReLU after Linear."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(inplace=True), nn.Dropout(),
        nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Linear(8, 5),
    )


def _fingerprint(model: nn.Module):
    """The module tree (paths, types, object ids) and every tensor of the state, bit for bit."""
    tree = [(p, type(m).__name__, id(m)) for p, m in model.named_modules(remove_duplicate=False)]
    state = {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()}
    return tree, state, {k: id(v) for k, v in model.state_dict(keep_vars=True).items()}


def _assert_unchanged(model: nn.Module, fp) -> None:
    tree, state, ids = _fingerprint(model)
    assert tree == fp[0]
    assert ids == fp[2] and state.keys() == fp[1].keys()
    for k, v in state.items():
        assert torch.equal(v, fp[1][k]) and v.dtype == fp[1][k].dtype, k


@pytest.mark.parametrize("with_sample", [False, True])
def test_funnel_after_linear_is_skipped_with_the_reason(with_sample):
    model = _vgg_like()
    x = torch.randn(2, 3, 8, 8)
    s = convert(model, "funnel", sample_input=x if with_sample else None)
    assert [c.path for c in s.changed] == ["2"]
    skipped = dict(s.skipped)
    assert set(skipped) == {"6", "9"}, str(s)
    why = "the sample gives [2, 8]" if with_sample else "fed by Linear"
    assert all("funnel does not apply" in r and why in r for r in skipped.values()), skipped
    assert "skipped:" in str(s) and "6: funnel does not apply" in str(s)
    assert s.complete  # and it is: the model runs and trains
    assert isinstance(model[6], nn.ReLU) and isinstance(model[2], rectifiers.FunnelReLU)
    y = torch.randint(0, 5, (2,))
    F.cross_entropy(model(x), y).backward()
    assert model[2].weight.grad is not None and model(x).shape == (2, 5)


def test_funnel_after_linear_refused_on_request_and_model_untouched():
    model = _vgg_like()
    fp = _fingerprint(model)
    for sample in (None, torch.randn(2, 3, 8, 8)):
        with pytest.raises(ValueError) as e:
            convert(model, "funnel", sample_input=sample, on_inapplicable="error")
        msg = str(e.value)
        assert "'6'" in msg and "'9'" in msg and "left unchanged" in msg and "'2'" not in msg
        _assert_unchanged(model, fp)
    with pytest.raises(ValueError, match="on_inapplicable must be 'skip' or 'error'"):
        convert(model, "funnel", on_inapplicable="ignore")
    # excluding the classifier makes it pass, with nothing skipped for want of applicability
    s = convert(model, "funnel", exclude=["6", "9"], on_inapplicable="error")
    assert [c.path for c in s.changed] == ["2"]


def test_error_in_the_sample_pass_rolls_everything_back():
    class Picky(nn.Module):  # a target that breaks on 2-D inputs, which convert cannot foresee
        bad = 2

        def __init__(self, inplace: bool = False) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, x):
            if x.dim() == self.bad:
                raise RuntimeError(f"Picky: no {self.bad}-D inputs")
            return torch.relu(x) * self.scale

    model = _vgg_like()
    fp = _fingerprint(model)
    with pytest.raises(RuntimeError, match="no 2-D inputs") as e:
        convert(model, Picky, sample_input=torch.randn(2, 3, 8, 8))
    assert any("rolled back" in n for n in getattr(e.value, "__notes__", []))
    _assert_unchanged(model, fp)
    # and a model whose own forward gets rewritten (call sites, functional calls) likewise
    Picky.bad = 3
    model = TinyTransformer()
    fp = _fingerprint(model)
    with pytest.raises(RuntimeError, match="no 3-D inputs"):
        convert(model, Picky, sample_input=sequence_batch()[0])
    _assert_unchanged(model, fp)


def test_funnel_unknown_layout_is_not_complete_without_sample():
    class Pre(nn.Module):  # the activation runs on the block's input: nothing in here tells
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(F.relu(x))

    model = Pre()  # the root: nothing calls it, so nothing tells what its input is
    s = convert(model, "funnel")
    assert s.count() == 1 and not s.complete and s.unchecked, str(s)
    assert "not checked" in str(s)
    s = convert(Pre(), "funnel", sample_input=torch.randn(2, 4, 6, 6))
    assert s.complete and not s.unchecked and s.checked
    # inside a network the feeding conv is found through the caller
    net = nn.Sequential(nn.Conv2d(3, 4, 1), Pre())
    s = convert(net, "funnel")
    assert s.count() == 1 and s.complete, str(s)


# ---------------------------------------------------------------------------------------------
# the channel dimension of lazily sized per-channel targets (issue 15, item 2)


class SeqMlp(nn.Module):
    """A transformer MLP on (N, L, C): Linear -> activation -> Linear, as a module and as a call."""

    def __init__(self, d: int = 6, hidden: int = 12) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(self.act(self.fc1(x)))))


@pytest.mark.parametrize("to, cls", [("prelu", rectifiers.PReLU), ("frelu", rectifiers.FlexibleReLU)])
@pytest.mark.parametrize("with_sample", [False, True])
def test_channels_on_sequences_count_features(to, cls, with_sample):
    torch.manual_seed(0)
    model = nn.Sequential(SeqMlp(), nn.LayerNorm(6), nn.ReLU())
    x = torch.randn(2, 17, 6)
    s = convert(model, to, num_parameters="channels", sample_input=x if with_sample else None)
    assert s.count() == 3 and s.complete, str(s)
    m = s.model
    m(x)  # sizes the lazy parameters when no sample did
    acts = _activation_modules(m, cls)
    # one parameter per feature (12, 12, 6), not one per token (17)
    assert sorted(a.num_parameters for _, a in acts) == [6, 12, 12]
    assert all(a.dim == -1 for _, a in acts)
    for n in (5, 40):  # another sequence length works
        assert m(torch.randn(3, n, 6)).shape == (3, n, 6)


def test_channels_after_conv_count_dim_1():
    s = convert(TinyResNet(), "frelu", num_parameters="channels", sample_input=image_batch()[0])
    acts = _activation_modules(s.model, rectifiers.FlexibleReLU)
    assert all(a.dim == 1 for _, a in acts) and {a.num_parameters for _, a in acts} == {8, 16}


def test_channels_refused_where_nothing_tells_and_model_untouched():
    class Head(nn.Module):
        def forward(self, x):
            return F.relu(x).mean(1)

    model = nn.Sequential(Head())
    fp = _fingerprint(model)
    for sample in (None, torch.randn(2, 7, 4)):
        with pytest.raises(ValueError) as e:
            convert(model, "prelu", num_parameters="channels", sample_input=sample)
        msg = str(e.value)
        assert "'0.fn_relu'" in msg and "dim=-1" in msg and "left unchanged" in msg
        _assert_unchanged(model, fp)
    # (N, C) inputs: dim 1 is the last dim too, nothing to ask
    s = convert(model, "prelu", num_parameters="channels", sample_input=torch.randn(2, 4))
    assert s.count() == 1 and s.complete
    # an explicit dim is the caller's answer
    s = convert(nn.Sequential(Head()), "prelu", num_parameters="channels", dim=-1)
    assert s.count() == 1


# ---------------------------------------------------------------------------------------------
# FReLU sites whose bias a BatchNorm cancels (issue 15, item 5)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck pattern: one ReLU called three times; the second call feeds a
    1x1 conv and a BatchNorm."""

    def __init__(self, c: int = 8, mid: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x
        return self.relu(out)


def test_frelu_notes_sites_whose_bias_batchnorm_cancels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          Bottleneck(), Bottleneck(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 3))
    s = convert(model, "frelu")
    assert [p for p, _ in s.notes] == ["3.relu_1", "4.relu_1"], str(s)
    assert "Conv2d then BatchNorm2d" in s.notes[0][1] and "notes:" in str(s)
    assert s.count() == 7 and s.complete
    # the oracle: train and look at the gradients, in float64 (cancellation to rounding)
    model = model.double()
    x, y = torch.randn(6, 3, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,))
    F.cross_entropy(model(x), y).backward()
    grads = {p: m.bias.grad.abs().item() for p, m in _activation_modules(model, rectifiers.FlexibleReLU)}
    for p, g in grads.items():
        if p in dict(s.notes):
            assert g < 1e-12, (p, g)
        else:
            assert g > 1e-6, (p, g)
    # not for other targets, and a BatchNorm directly after FReLU counts too
    assert not convert(nn.Sequential(Bottleneck()), "prelu").notes
    s = convert(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)), "frelu")
    assert [p for p, _ in s.notes] == ["1"]
