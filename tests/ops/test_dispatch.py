"""``backend="auto"`` on CUDA tensors: Triton from a size threshold per activation and dtype on,
the eager backend below (:mod:`rectifiers.ops._dispatch`).

There is no GPU here: the choice is a pure function of (activation, numel, dtype, is_cuda), and
:func:`rectifiers.ops.get_backend` is driven with a stand-in input that says it is on CUDA and
stand-in backends that record which one ran.
"""

from __future__ import annotations

import csv
import importlib.util
import types
from pathlib import Path

import pytest
import torch

from rectifiers import _spec, ops
from rectifiers.ops import _dispatch as D

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(D.THRESHOLD_ENV_VAR, raising=False)
    monkeypatch.delenv(ops.ENV_VAR, raising=False)
    D.reset_triton_thresholds()
    yield
    D.reset_triton_thresholds()


def _fake_x(numel: int, dtype=torch.float32, cuda: bool = True):
    return types.SimpleNamespace(is_cuda=cuda, numel=lambda: numel, dtype=dtype, device="cuda" if cuda else "cpu")


def _recorder(tag: str, log: list):
    def make(act):
        def fn(x, *args):
            log.append((tag, act))
            return tag
        return fn
    return type(f"_{tag}", (), {a: staticmethod(make(a)) for a in _spec.ACTIVATIONS})


@pytest.fixture
def fake_backends(monkeypatch):
    """get_backend with Triton 'available' and both sides replaced by recorders."""
    log: list = []
    monkeypatch.setattr(ops, "triton_available", lambda: True)
    monkeypatch.setattr(ops, "_triton_view", _recorder("triton", log))
    monkeypatch.setattr(ops, "_Eager", _recorder("eager", log))
    monkeypatch.setattr(ops, "_sized_views", {})
    return log


# --- the pure choice -------------------------------------------------------------------------


def test_both_sides_of_the_threshold():
    D.set_triton_threshold("prelu", 1000, torch.bfloat16)
    assert not D.use_triton("prelu", 999, torch.bfloat16, True)
    assert D.use_triton("prelu", 1000, torch.bfloat16, True)
    assert D.use_triton("prelu", 10**9, torch.bfloat16, True)
    # not on CUDA: never, whatever the size
    assert not D.use_triton("prelu", 10**9, torch.bfloat16, False)
    # another dtype keeps its own threshold
    assert D.triton_threshold("prelu", torch.float32) == D.DEFAULT_TRITON_MIN_NUMEL["prelu"][torch.float32]


def test_never_and_always():
    D.set_triton_threshold("leaky_relu", None)
    assert not D.use_triton("leaky_relu", 2**60, torch.float32, True)
    assert D.triton_threshold("leaky_relu", "fp32") is None
    D.set_triton_threshold("leaky_relu", 0, "bf16")
    assert D.use_triton("leaky_relu", 0, torch.bfloat16, True)
    assert D.use_triton("leaky_relu", 1, torch.bfloat16, True)
    assert not D.use_triton("leaky_relu", 2**40, torch.float32, True)


def test_a_dtype_without_a_threshold_never_runs_triton():
    assert not D.use_triton("relu", 2**40, torch.int64, True)


def test_defaults_are_conservative():
    """Triton by default only where the recorded H200 runs show it winning: never for ReLU
    (its Triton path is torch.relu), LeakyReLU, any float16/float64, and only from 51M
    elements on anywhere else."""
    t = D.DEFAULT_TRITON_MIN_NUMEL
    assert set(t) == set(_spec.ACTIVATIONS)
    for act in ("relu", "leaky_relu"):
        assert all(v is None for v in t[act].values())
    for act in _spec.ACTIVATIONS:
        assert t[act][torch.float16] is None and t[act][torch.float64] is None
        assert all(v is None or v >= 50_000_000 for v in t[act].values())
    assert D.triton_thresholds() == {a: {dn: t[a][d] for dn, d in D.DTYPES.items()} for a in t}


def _load_bench_module():
    spec = importlib.util.spec_from_file_location("gpu_thresholds", ROOT / "benchmarks" / "gpu_thresholds.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_defaults_are_what_the_recorded_runs_give():
    """The shipped table is the rule of benchmarks/gpu_thresholds.py applied to the two
    recorded H200 runs (not typed in by hand)."""
    mod = _load_bench_module()
    runs = [list(csv.DictReader(open(ROOT / "benchmarks" / "results" / f)))
            for f in ("gpu-nvidia-h200-time.csv", "gpu-nvidia-h200-f8cf184-time.csv")]
    derived = mod.derive_thresholds(runs)
    for act in _spec.ACTIVATIONS:
        for dname in ("bf16", "fp32"):
            want = D.DEFAULT_TRITON_MIN_NUMEL[act][D.DTYPES[{"bf16": "bfloat16", "fp32": "float32"}[dname]]]
            got = derived.get((act, dname))
            if act == "relu":
                want_rule = None  # the Triton backend's relu is torch.relu: kept at never
                assert want is want_rule
            else:
                assert got == want, (act, dname, got, want)
    assert D.DEFAULTS == mod.defaults_form(derived)


# --- overrides -------------------------------------------------------------------------------


def test_override_and_reset():
    default = D.triton_threshold("flexible_relu", torch.float32)
    D.set_triton_threshold("flexible_relu", 5)
    assert all(D.triton_threshold("flexible_relu", d) == 5 for d in D.DTYPES.values())
    D.set_triton_threshold("*", None, torch.float32)
    assert all(D.triton_threshold(a, torch.float32) is None for a in _spec.ACTIVATIONS)
    D.reset_triton_thresholds()
    assert D.triton_threshold("flexible_relu", torch.float32) == default


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(D.THRESHOLD_ENV_VAR, "*=0, prelu:bf16=1e8, leaky_relu=never, funnel_relu:float32=1_000")
    assert D.triton_threshold("relu", torch.float32) == 0
    assert D.triton_threshold("prelu", torch.bfloat16) == 100_000_000
    assert D.triton_threshold("prelu", torch.float32) == 0
    assert D.triton_threshold("leaky_relu", torch.float16) is None
    assert D.triton_threshold("funnel_relu", torch.float32) == 1000
    # a call to set_triton_threshold wins over the variable
    D.set_triton_threshold("relu", 7, torch.float32)
    assert D.triton_threshold("relu", torch.float32) == 7
    # the variable is read again when it changes
    monkeypatch.setenv(D.THRESHOLD_ENV_VAR, "relu=3")
    assert D.triton_threshold("relu", torch.bfloat16) == 3
    monkeypatch.delenv(D.THRESHOLD_ENV_VAR)
    assert D.triton_threshold("relu", torch.bfloat16) is None


@pytest.mark.parametrize("value,match", [
    ("prelu", "expected activation\\[:dtype\\]=value"),
    ("swish=1", "activation must be one of"),
    ("prelu:int8=1", "dtype must be one of"),
    ("prelu=-1", "non-negative integer or 'never'"),
    ("prelu=1.5", "non-negative integer or 'never'"),
    ("prelu=lots", "non-negative integer or 'never'"),
    ("prelu=inf", "non-negative integer or 'never'"),
])
def test_environment_variable_errors(monkeypatch, value, match):
    monkeypatch.setenv(D.THRESHOLD_ENV_VAR, value)
    with pytest.raises(ValueError, match=match) as e:
        D.triton_threshold("prelu", torch.float32)
    assert D.THRESHOLD_ENV_VAR in str(e.value)


def test_setter_errors():
    with pytest.raises(ValueError, match="activation must be one of"):
        D.set_triton_threshold("swish", 1)
    with pytest.raises(ValueError, match="dtype must be one of"):
        D.set_triton_threshold("prelu", 1, torch.int32)
    with pytest.raises(ValueError, match="non-negative"):
        D.set_triton_threshold("prelu", -3)
    with pytest.raises(TypeError, match="non-negative int or None"):
        D.set_triton_threshold("prelu", 1e8)
    with pytest.raises(TypeError, match="non-negative int or None"):
        D.set_triton_threshold("prelu", True)
    # nothing was changed by the refused calls
    assert D.triton_threshold("prelu", torch.float32) == D.DEFAULT_TRITON_MIN_NUMEL["prelu"][torch.float32]


def test_public_names():
    for name in ("set_triton_threshold", "reset_triton_thresholds", "triton_threshold",
                 "triton_thresholds", "THRESHOLD_ENV_VAR", "DEFAULT_TRITON_MIN_NUMEL"):
        assert getattr(ops, name) is getattr(D, name) and name in ops.__all__


# --- get_backend / resolve_backend -----------------------------------------------------------


def test_auto_on_cuda_picks_by_size(fake_backends):
    log = fake_backends
    D.set_triton_threshold("leaky_relu", 100, torch.float32)
    view = ops.get_backend(_fake_x(99))
    assert view.leaky_relu(_fake_x(99), 0.01, False) == "eager"
    assert view.leaky_relu(_fake_x(100), 0.01, False) == "triton"
    # the same view, another dtype: its own threshold (never by default for leaky_relu)
    assert view.leaky_relu(_fake_x(10**9, torch.bfloat16), 0.01, False) == "eager"
    assert log == [("eager", "leaky_relu"), ("triton", "leaky_relu"), ("eager", "leaky_relu")]
    # deterministic: the same call, the same side, every time
    assert {view.leaky_relu(_fake_x(100), 0.01, False) for _ in range(5)} == {"triton"}
    # the view is made once per pair of sides
    assert ops.get_backend(_fake_x(5)) is view


def test_auto_off_cuda_is_eager(fake_backends):
    assert ops.get_backend(_fake_x(10**9, cuda=False)) is ops._Eager
    assert ops.resolve_backend(_fake_x(10**9, cuda=False)) == "eager"


def test_triton_forced_at_every_size(fake_backends):
    D.set_triton_threshold("*", None)
    assert ops.get_backend(_fake_x(1), "triton") is ops._triton_view
    assert ops.resolve_backend(_fake_x(1), "triton") == "triton"
    assert ops.get_backend(_fake_x(10**9), "eager") is ops._Eager


def test_environment_backend_variable_still_applies(fake_backends, monkeypatch):
    monkeypatch.setenv(ops.ENV_VAR, "triton")
    assert ops.get_backend(_fake_x(1)) is ops._triton_view
    monkeypatch.setenv(ops.ENV_VAR, "nope")
    with pytest.raises(ValueError, match=ops.ENV_VAR):
        ops.get_backend(_fake_x(1))


def test_resolve_backend_names_a_backend(fake_backends):
    D.set_triton_threshold("*", 1000)
    D.set_triton_threshold("funnel_relu", 5000)
    assert ops.resolve_backend(_fake_x(999), activation="prelu") == "eager"
    assert ops.resolve_backend(_fake_x(1000), activation="prelu") == "triton"
    # without an activation: triton only where every activation runs it
    assert ops.resolve_backend(_fake_x(1000)) == "eager"
    assert ops.resolve_backend(_fake_x(5000)) == "triton"
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.resolve_backend(_fake_x(1), "cuda")


def test_real_tensors_on_cpu_are_untouched():
    """On CPU the thresholds play no part: auto is the eager backend."""
    D.set_triton_threshold("*", 0)
    x = torch.randn(3, 4)
    assert ops.get_backend(x) is ops._Eager and ops.resolve_backend(x, activation="relu") == "eager"
