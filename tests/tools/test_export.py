"""fuse(), torch.export and ONNX export (checked in onnxruntime on CPU)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import rectifiers as R
from rectifiers.export import FusedFunnelReLU, export_onnx, export_program, fuse, onnx_op_types, verify_onnx

BACKENDS = [None, "torch"]  # None: each module's own (the default backend)


def trained_funnel(cls, channels=3, kernel_size=3, bias=False, dtype=torch.float32):
    """A funnel whose BN statistics and affine parameters are far from their initial values."""
    torch.manual_seed(0)
    m = cls(channels, kernel_size, bias=bias, dtype=dtype)
    shape = (4, channels) + (5,) * m._spatial
    with torch.no_grad():
        m.bn_weight.uniform_(0.5, 2.0)
        m.bn_bias.uniform_(-1.0, 1.0)
        for _ in range(3):
            m(torch.randn(shape, dtype=dtype) * 3 + 1)
    return m.eval(), shape


# ---------------------------------------------------------------------------------------------
# fuse


@pytest.mark.parametrize("cls", [R.FunnelReLU1d, R.FunnelReLU, R.FunnelReLU3d])
@pytest.mark.parametrize("bias", [False, True])
def test_fuse_matches_eval_mode(cls, bias):
    m, shape = trained_funnel(cls, kernel_size=3 if cls is R.FunnelReLU3d else 5, bias=bias)
    assert m.running_var.sub(1).abs().max() > 0.1  # the statistics really moved
    f = fuse(m)
    assert isinstance(f, FusedFunnelReLU) and f.spatial == m._spatial
    x = torch.randn(shape)
    torch.testing.assert_close(f(x), m(x), rtol=1e-5, atol=1e-5)


def test_fuse_float64_is_tight():
    m, shape = trained_funnel(R.FunnelReLU, dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(fuse(m)(x), m(x), rtol=1e-12, atol=1e-12)


def test_fuse_model_copies_unless_inplace():
    funnel, shape = trained_funnel(R.FunnelReLU, channels=4)
    model = nn.Sequential(nn.Conv2d(4, 4, 1), funnel, nn.Sequential(R.PReLU(4))).eval()
    x = torch.randn(shape)
    ref = model(x)
    fused = fuse(model)
    assert isinstance(fused[1], FusedFunnelReLU) and isinstance(model[1], R.FunnelReLU)
    torch.testing.assert_close(fused(x), ref, rtol=1e-5, atol=1e-5)
    assert fuse(model, inplace=True) is model and isinstance(model[1], FusedFunnelReLU)


def test_fuse_errors():
    with pytest.raises(ValueError, match="training mode.*eval"):
        fuse(R.FunnelReLU(3))
    with pytest.raises(ValueError, match="lazy"):
        fuse(R.FunnelReLU(None).eval())
    with pytest.raises(ValueError, match="training mode"):
        fuse(nn.Sequential(R.FunnelReLU(3)))
    with pytest.raises(TypeError, match="nn.Module"):
        fuse("funnel")
    f = fuse(trained_funnel(R.FunnelReLU)[0])
    with pytest.raises(ValueError, match="3 channels"):
        f(torch.randn(1, 4, 5, 5))


# ---------------------------------------------------------------------------------------------
# torch.export


def modules_and_inputs():
    torch.manual_seed(0)
    x4 = torch.randn(2, 3, 6, 5)
    return [
        ("relu", R.ReLU(), x4),
        ("leaky", R.LeakyReLU(0.2), x4),
        ("prelu1", R.PReLU(), x4),
        ("prelu_c", R.PReLU(3, init=0.1), x4),
        ("prelu_last", R.PReLU(5, dim=-1), x4),
        ("frelu1", R.FlexibleReLU(), x4),
        ("frelu_c", R.FlexibleReLU(3, init=0.5), x4),
        ("funnel1d", trained_funnel(R.FunnelReLU1d)[0], torch.randn(2, 3, 7)),
        ("funnel", trained_funnel(R.FunnelReLU)[0], x4),
        ("funnel3d", trained_funnel(R.FunnelReLU3d)[0], torch.randn(1, 3, 4, 5, 3)),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(10))
def test_torch_export_every_module(case, backend):
    name, m, x = modules_and_inputs()[case]
    m.eval()
    before = copy.deepcopy(m.state_dict())
    prog = export_program(m, x, backend=backend)
    out = prog.module()(x)
    with torch.no_grad():
        want = m(x)
    torch.testing.assert_close(out, want, rtol=1e-6, atol=1e-6)
    for k, v in m.state_dict().items():  # exporting did not touch the model
        assert torch.equal(v, before[k]), k


def test_torch_export_fused_funnel():
    m, shape = trained_funnel(R.FunnelReLU)
    x = torch.randn(shape)
    prog = export_program(m, x, fuse_funnel=True)
    targets = {str(n.target) for n in prog.graph.nodes if n.op == "call_function"}
    assert not any("batch_norm" in t for t in targets)
    torch.testing.assert_close(prog.module()(x), m(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# ONNX


def _have(*mods: str) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in mods)


needs_onnx = pytest.mark.skipif(
    not _have("onnx", "onnxscript", "onnxruntime"),
    reason="ONNX tests need onnx, onnxscript and onnxruntime: pip install 'rectifiers[onnx]'",
)

_PLUMBING = {"Shape", "Constant", "Expand", "CastLike", "Reshape", "Identity", "Cast"}

EXPECTED_OPS = {
    "relu": ["Relu"],
    "leaky": ["LeakyRelu"],
    "prelu1": ["PRelu"],
    "prelu_c": ["PRelu"],
    "frelu1": ["Relu", "Add"],
    "frelu_c": ["Relu", "Add"],
    "funnel1d": ["Conv", "Max"],  # the exporter's optimizer folds BN into the conv
    "funnel": ["Conv", "Max"],
    "funnel3d": ["Conv", "Max"],
}


def compute_ops(op_types):
    return [t for t in op_types if t not in _PLUMBING]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@needs_onnx
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", range(10))
def test_onnx_ops_and_values(case, backend, tmp_path):
    name, m, x = modules_and_inputs()[case]
    r = verify_onnx(m, x, tmp_path / f"{name}.onnx", backend=backend)
    assert r["ok"], r
    assert r["max_abs_err"] <= 1e-6
    ops = compute_ops(r["op_types"])
    if name == "prelu_last":
        # channels-last slopes: ONNX PRelu broadcasts from the right, torch wants dim 1
        assert ops in (["Transpose", "PRelu", "Transpose"], ["Greater", "Mul", "Where"]), ops
    else:
        assert ops == EXPECTED_OPS[name]


@needs_onnx
@pytest.mark.parametrize("cls", [R.FunnelReLU1d, R.FunnelReLU])
def test_onnx_funnel_unoptimised_keeps_batchnorm(cls, tmp_path):
    m, shape = trained_funnel(cls)
    r = verify_onnx(m, torch.randn(shape), tmp_path / "f.onnx", optimize=False)
    assert r["ok"], r
    assert compute_ops(r["op_types"]) == ["Conv", "BatchNormalization", "Max"]


@needs_onnx
def test_onnx_fused_funnel(tmp_path):
    m, shape = trained_funnel(R.FunnelReLU)
    r = verify_onnx(m, torch.randn(shape), tmp_path / "f.onnx", fuse_funnel=True, optimize=False)
    assert r["ok"], r
    assert compute_ops(r["op_types"]) == ["Conv", "Max"]


@needs_onnx
def test_onnx_converted_model(tmp_path):
    from rectifiers.convert import convert

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2),
    )
    x = torch.randn(2, 3, 6, 6)
    convert(model, "prelu", num_parameters="channels", include="2", sample_input=x)
    convert(model, "funnel", include="4", sample_input=x)
    model.eval()
    r = verify_onnx(model, x, tmp_path / "m.onnx", dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert r["ok"], r
    ops = compute_ops(r["op_types"])
    assert "PRelu" in ops and "Max" in ops and "Relu" not in ops
    # the dynamic batch really is dynamic
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x5 = torch.randn(5, 3, 6, 6)
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x5.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(y), model(x5), rtol=1e-5, atol=1e-5)


@needs_onnx
def test_onnx_program_and_op_types():
    prog = export_onnx(R.LeakyReLU(0.3), torch.randn(3, 4))
    assert onnx_op_types(prog.model_proto) == ["LeakyRelu"]
    (node,) = prog.model_proto.graph.node
    assert abs(node.attribute[0].f - 0.3) < 1e-7


def test_fuse_replaces_every_use_of_a_shared_funnel():
    shared = R.FunnelReLU(3).eval()
    model = nn.Sequential(shared, nn.Conv2d(3, 3, 1), shared).eval()
    fused = fuse(model)
    assert type(fused[0]).__name__ == "FusedFunnelReLU" and fused[0] is fused[2]
    x = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(fused(x), model(x), rtol=1e-5, atol=1e-6)
