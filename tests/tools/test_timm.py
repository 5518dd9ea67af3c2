"""timm integration: our names as timm ``act_layer`` strings.

Three levels, each saying what it proves:

* ``test_mapping_*``: register_timm's logic against stand-in dicts shaped like timm's
  ``timm.layers.create_act`` (``_ACT_LAYER_DEFAULT``, ``_ACT_LAYER_ME``). Always runs.
* ``test_real_timm``: the real ``timm.create_model`` when ``import timm`` works, in a
  subprocess that first installs ``tests/_torchvision_stub.py``: timm imports torchvision, whose
  only registry wheel (0.28.0) is a CUDA build that fails at ``torchvision::nms`` on the CPU
  torch; the stand-in defines those compiled-op schemas only, and the rest is torchvision's and
  timm's own code. Skipped only when timm does not import even so (the reason says why).
* ``test_timm_with_stub_torchvision``: when timm is installed but cannot import only because
  torchvision is missing, a subprocess imports the real timm with a stub ``torchvision`` (empty
  placeholder classes; resnet18 and the activation factory never call it) and builds
  ``timm.create_model("resnet18", act_layer=...)`` for real.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch
from torch import nn

import rectifiers
from _torchvision_stub import PRELUDE
from rectifiers.integrations.timm import register_timm, timm_names, unregister_timm


def fake_create_act():
    """The two dicts of timm/layers/create_act.py that name lookup uses, with timm-like entries,
    and get_act_layer's lookup rule (lower-case; _ACT_LAYER_ME first, then the default)."""
    class TimmPReLU(nn.PReLU):
        pass

    mod = types.SimpleNamespace(
        _ACT_LAYER_DEFAULT={"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "prelu": TimmPReLU, "gelu": nn.GELU},
        _ACT_LAYER_ME={"silu": nn.SiLU, "prelu": TimmPReLU},
    )

    def get_act_layer(name):
        if not isinstance(name, str):
            return name
        name = name.lower()
        if name in mod._ACT_LAYER_ME:
            return mod._ACT_LAYER_ME[name]
        return mod._ACT_LAYER_DEFAULT[name]

    mod.get_act_layer = get_act_layer
    mod.TimmPReLU = TimmPReLU
    return mod


def test_mapping_adds_our_names_and_keeps_timms():
    mod = fake_create_act()
    before = {k: dict(getattr(mod, k)) for k in ("_ACT_LAYER_DEFAULT", "_ACT_LAYER_ME")}
    added = register_timm(create_act=mod)
    get = mod.get_act_layer
    assert get("frelu") is rectifiers.FlexibleReLU and get("FReLU") is rectifiers.FlexibleReLU
    assert get("funnel") is rectifiers.FunnelReLU and get("flexible_relu") is rectifiers.FlexibleReLU
    assert get("lrelu") is rectifiers.LeakyReLU and get("LeakyReLU") is rectifiers.LeakyReLU
    assert get("rectifiers_prelu") is rectifiers.PReLU and get("rectifiers_relu") is rectifiers.ReLU
    # timm's own names are left alone without overwrite
    assert get("relu") is nn.ReLU and get("prelu") is mod.TimmPReLU and get("gelu") is nn.GELU
    assert "relu" not in added and added["frelu"] is rectifiers.FlexibleReLU
    # every registered name builds a module that takes inplace=, as timm's models call it
    for name in added:
        assert isinstance(get(name)(inplace=True), nn.Module)
    assert register_timm(create_act=mod) == added  # idempotent
    unregister_timm(create_act=mod)
    assert {k: getattr(mod, k) for k in before} == before


def test_mapping_overwrite_and_undo():
    mod = fake_create_act()
    register_timm(create_act=mod, overwrite=True, prefix="")
    get = mod.get_act_layer
    assert get("prelu") is rectifiers.PReLU  # replaced in _ACT_LAYER_ME too, which wins
    assert get("relu") is rectifiers.ReLU and get("gelu") is nn.GELU
    assert "rectifiers_prelu" not in mod._ACT_LAYER_DEFAULT
    unregister_timm(create_act=mod)
    assert get("prelu") is mod.TimmPReLU and get("relu") is nn.ReLU
    with pytest.raises(KeyError):
        get("frelu")


def test_mapping_names_cover_the_registry():
    names = timm_names()
    for n in rectifiers.registry.names(aliases=True):
        assert names[n] is rectifiers.registry.get(n)
    assert names["rectifiers_funnel_relu"] is rectifiers.FunnelReLU


def test_mapping_refuses_a_changed_timm():
    with pytest.raises(RuntimeError, match="_ACT_LAYER_DEFAULT"):
        register_timm(create_act=types.SimpleNamespace())


def _timm_import_error(stand_in: bool = True) -> str | None:
    """Why ``import timm`` fails in a fresh interpreter (None: it works), with the torchvision
    stand-in installed first when torchvision is there and ``stand_in``."""
    if importlib.util.find_spec("timm") is None:
        return "timm is not installed"
    use = stand_in and importlib.util.find_spec("torchvision") is not None
    prelude = PRELUDE if use else ""
    r = subprocess.run([sys.executable, "-c", prelude + "import timm"], capture_output=True, text=True, timeout=120)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["?"])[-1]


_ERR = _timm_import_error()

CHECK = textwrap.dedent(
    """
    import torch, timm, rectifiers
    from rectifiers.integrations.timm import register_timm
    register_timm()
    from timm.layers import get_act_layer, create_act_layer
    assert get_act_layer("frelu") is rectifiers.FlexibleReLU
    assert isinstance(create_act_layer("lrelu", inplace=True), rectifiers.LeakyReLU)
    x = torch.randn(2, 3, 32, 32)
    for name, cls in (("frelu", rectifiers.FlexibleReLU), ("funnel", rectifiers.FunnelReLU),
                      ("rectifiers_prelu", rectifiers.PReLU)):
        m = timm.create_model("resnet18", act_layer=name, num_classes=3)
        acts = [a for a in m.modules() if isinstance(a, cls)]
        assert len(acts) == 17, (name, len(acts))  # stem + 2 per block, 8 blocks
        assert not any(isinstance(a, torch.nn.ReLU) for a in m.modules())
        y = m(x)
        assert y.shape == (2, 3)
        y.sum().backward()
        assert all(p.grad is not None for a in acts for p in a.parameters()), name
    print("OK")
    """
)


@pytest.mark.skipif(_ERR is not None, reason=f"timm does not import here: {_ERR}")
def test_real_timm():
    prelude = PRELUDE if importlib.util.find_spec("torchvision") is not None else ""
    r = subprocess.run([sys.executable, "-c", prelude + CHECK], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]


STUB = textwrap.dedent(
    """
    import importlib.abc, importlib.machinery, sys, types, torch

    class _Meta(type(torch.nn.Module)):
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return f"{cls.__name__}.{name}"

    class _Stub(types.ModuleType):
        __path__ = []
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            cls = _Meta(name, (torch.nn.Module,), {})  # a placeholder, never run
            setattr(self, name, cls)
            return cls

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path, target=None):
            if fullname.split(".")[0] == "torchvision":
                return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        def create_module(self, spec):
            return _Stub(spec.name)
        def exec_module(self, module):
            module.__version__ = "0.0.0+stub"

    sys.meta_path.insert(0, _Finder())
    """
)


@pytest.mark.skipif(
    _ERR is None or "torchvision" not in (_ERR or ""),
    reason="only when timm is installed and fails to import for lack of torchvision"
    + (f" (here: {_ERR})" if _ERR else " (here timm imports: test_real_timm runs)"),
)
def test_timm_with_stub_torchvision():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run(
        [sys.executable, "-c", STUB + CHECK], capture_output=True, text=True, timeout=300, env=env
    )
    if r.returncode != 0 and "_Stub" in r.stderr and "AssertionError" not in r.stderr:
        pytest.skip(f"this timm needs more of torchvision than a stub gives: {r.stderr[-500:]}")
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]


BROKEN = textwrap.dedent(
    """
    from rectifiers.integrations.timm import register_timm
    try:
        register_timm()
    except ImportError as e:
        assert "timm" in str(e), str(e)
        print("OK")
    """
)


def test_register_timm_error_names_the_cause():
    # In a fresh interpreter without the stand-in, where timm fails to import (for want of
    # torchvision, or at torchvision::nms): the error path for a broken or missing timm.
    bare = _timm_import_error(stand_in=False)
    if bare is None:
        pytest.skip("timm imports here even without the torchvision stand-in: no broken timm to test")
    r = subprocess.run([sys.executable, "-c", BROKEN], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]
