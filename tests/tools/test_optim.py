"""param_groups(): activation parameters stay out of weight decay."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rectifiers
from rectifiers.optim import activation_parameters, param_groups


def model():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        rectifiers.PReLU(4),
        nn.Conv2d(4, 4, 3, padding=1),
        rectifiers.FunnelReLU(4),
        nn.PReLU(),
        rectifiers.FlexibleReLU(),
        nn.Flatten(),
        nn.Linear(4 * 5 * 5, 2),
    )


def by_kind(groups):
    return {g["group"]: g for g in groups}


def test_activation_parameters_listed():
    names = [n for n, _ in activation_parameters(model())]
    assert names == ["2.weight", "4.bn_weight", "4.bn_bias", "5.weight", "6.bias"]


def test_groups_split_and_cover_every_parameter_once():
    m = model()
    groups = param_groups(m, weight_decay=0.1)
    g = by_kind(groups)
    assert set(g) == {"decay", "activation"}
    assert g["decay"]["weight_decay"] == 0.1 and g["activation"]["weight_decay"] == 0.0
    assert g["activation"]["names"] == ["2.weight", "4.bn_weight", "4.bn_bias", "5.weight", "6.bias"]
    # the funnel's conv weight is an ordinary conv weight: decayed
    assert "4.weight" in g["decay"]["names"] and "1.weight" in g["decay"]["names"]
    all_ids = [id(p) for grp in groups for p in grp["params"]]
    assert sorted(all_ids) == sorted(id(p) for p in m.parameters()) and len(set(all_ids)) == len(all_ids)


def test_optimizer_really_leaves_activation_parameters_undecayed():
    torch.manual_seed(0)
    m = model()
    opt = torch.optim.AdamW(param_groups(m, weight_decay=0.5, lr=0.1), lr=0.1)
    # zero gradients: AdamW's update is then the decay alone
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt.step()
    acts = {n for n, _ in activation_parameters(m)}
    for n, p in m.named_parameters():
        if n in acts:
            assert torch.equal(p, before[n]), n
        elif before[n].abs().sum() > 0:
            assert not torch.equal(p, before[n]), n


def test_norm_and_bias_option_and_extra_names():
    m = model()
    g = by_kind(param_groups(m, no_decay_norm_and_bias=True, activation_weight_decay=1e-5))
    assert g["activation"]["weight_decay"] == 1e-5
    assert {"0.bias", "1.weight", "1.bias", "3.bias", "8.bias"} <= set(g["no_decay"]["names"])
    assert g["no_decay"]["weight_decay"] == 0.0
    assert set(g["decay"]["names"]) == {"0.weight", "3.weight", "4.weight", "8.weight"}
    g = by_kind(param_groups(m, no_decay=["8.weight"]))
    assert g["no_decay"]["names"] == ["8.weight"]
    g = by_kind(param_groups(m, no_decay=lambda n, p: n.startswith("0.")))
    assert g["no_decay"]["names"] == ["0.weight", "0.bias"]


def test_frozen_and_shared_parameters():
    act = rectifiers.PReLU()
    m = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act)
    m[0].weight.requires_grad_(False)
    groups = param_groups(m)
    ids = [id(p) for g in groups for p in g["params"]]
    assert id(m[0].weight) not in ids and ids.count(id(act.weight)) == 1


def test_errors():
    with pytest.raises(ValueError, match="lazy.*forward pass"):
        param_groups(nn.Sequential(rectifiers.PReLU(None)))
    with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0, got -1"):
        param_groups(model(), weight_decay=-1)
    with pytest.raises(ValueError, match="does not have.*nope"):
        param_groups(model(), no_decay=["nope"])
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        param_groups([nn.Parameter(torch.zeros(1))])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0])
def test_non_finite_or_negative_decay_is_refused(bad):
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        param_groups(nn.Linear(2, 2), weight_decay=bad)
    with pytest.raises(ValueError, match="activation_weight_decay must be a finite number >= 0"):
        param_groups(nn.Linear(2, 2), activation_weight_decay=bad)
