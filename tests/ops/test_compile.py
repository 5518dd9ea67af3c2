"""Every module under torch.compile(fullgraph=True) and torch.export, against eager."""

from __future__ import annotations

import copy

import pytest
import torch

import rectifiers as R
from rectifiers.ops.cpp import pointwise as cpp_pointwise

C = 4

MODULES = {
    "relu": lambda: R.ReLU(),
    "leaky": lambda: R.LeakyReLU(0.1),
    "leaky_negative": lambda: R.LeakyReLU(-0.2),
    "prelu1": lambda: R.PReLU(),
    "prelu_c": lambda: R.PReLU(C, init=0.3),
    "prelu_fallback": lambda: R.PReLU(C, init=-0.5),
    "frelu1": lambda: R.FReLU(),
    "frelu_c": lambda: R.FReLU(C, init=0.2),
    "funnel": lambda: R.FunnelReLU(C),
    "funnel_eval": lambda: R.FunnelReLU(C).eval(),
    "funnel1d": lambda: R.FunnelReLU1d(C, 5),
}


def _input(name: str) -> torch.Tensor:
    torch.manual_seed(0)
    shape = (2, C, 9) if name == "funnel1d" else (2, C, 5, 6)
    return torch.randn(shape)


def _step(m: torch.nn.Module, x: torch.Tensor, g: torch.Tensor):
    x = x.clone().requires_grad_()
    y = m(x)
    grads = torch.autograd.grad(y, [x] + list(m.parameters()), g)
    return y.detach(), grads


@pytest.mark.parametrize("name", list(MODULES))
def test_compile_fullgraph_same_as_eager(name: str) -> None:
    torch._dynamo.reset()
    m = MODULES[name]()
    mc = copy.deepcopy(m)
    x = _input(name)
    g = torch.randn(x.shape)
    compiled = torch.compile(mc, fullgraph=True, backend="aot_eager")
    for _ in range(2):  # the second call reuses the graph (running statistics moved on)
        y, grads = _step(m, x, g)
        yc, grads_c = _step(compiled, x, g)
        torch.testing.assert_close(yc, y)
        for a, b in zip(grads_c, grads):
            torch.testing.assert_close(a, b)
    for (k, a), b in zip(m.state_dict().items(), mc.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"buffer {k}")


@pytest.mark.parametrize("name", list(MODULES))
def test_export(name: str) -> None:
    m = MODULES[name]().eval()
    x = _input(name)
    ep = torch.export.export(m, (x,))
    torch.testing.assert_close(ep.module()(x), m(x))


@pytest.mark.parametrize("name", ["leaky", "prelu_c", "frelu1"])
def test_export_sees_plain_aten_ops(name: str) -> None:
    """Export traces the plain kernels (no opaque Function), so ONNX and friends understand it."""
    m = MODULES[name]().eval()
    ep = torch.export.export(m, (_input(name),))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    want = {"leaky": "aten.leaky_relu.default", "prelu_c": "aten.prelu.default", "frelu1": "aten.relu.default"}[name]
    assert want in targets, targets


@pytest.mark.parametrize(
    "make",
    [lambda: R.ReLU(inplace=True), lambda: R.LeakyReLU(0.1, inplace=True), lambda: R.FReLU(C, inplace=True)],
    ids=["relu", "leaky", "frelu"],
)
def test_compile_inplace_after_a_layer_same_as_eager(make) -> None:
    """In-place activations on a layer's output, under fullgraph compile, with gradients."""
    torch._dynamo.reset()
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(C, C, 1)
    act = make()
    model = torch.nn.Sequential(conv, act)
    model_c = copy.deepcopy(model)
    compiled = torch.compile(model_c, fullgraph=True, backend="aot_eager")
    x = _input("frelu_c")
    g = torch.randn(x.shape)
    y, grads = _step(model, x, g)
    yc, grads_c = _step(compiled, x, g)
    torch.testing.assert_close(yc, y)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------
# The benchmark's compiled implementations: compiled in the warm-up, never in the timed loop


def _bench_rows(warmup: int):
    from rectifiers.bench import format_table, run_benchmark

    rows = run_benchmark(
        ["relu", "frelu"], [(2, C, 5, 6)], ["fp32"], ["torch", "compiled", "torch_compiled"],
        repeats=2, warmup=warmup, compile_backend="aot_eager", log=lambda s: None,
    )
    return {(r["activation"], r["impl"]): r for r in rows}, format_table(rows)


def test_bench_compiles_only_during_warmup() -> None:
    rows, table = _bench_rows(warmup=1)
    for act in ("relu", "frelu"):
        for impl in ("compiled", "torch_compiled"):
            r = rows[(act, impl)]
            assert r["error"] == "", r["error"]
            assert r["compiles_timed"] == 0, (act, impl, r["compiles_timed"])
            assert r["fwdbwd_ms"] is not None and r["nograd_ms"] is not None
    assert "recompiled" not in table


def test_bench_counts_compiles_in_the_timed_loop() -> None:
    """Without a warm-up the first timed repetition compiles: the row says so, the table too."""
    rows, table = _bench_rows(warmup=0)
    for act in ("relu", "frelu"):
        # The bytes-kept measurement compiles the training graph before the timing; the no_grad
        # graph is then compiled in the first timed repetition.
        assert rows[(act, "compiled")]["compiles_timed"] >= 1
        assert rows[(act, "torch_compiled")]["compiles_timed"] >= 1
        assert rows[(act, "torch")]["compiles_timed"] == 0
    assert "compiled (recompiled)" in table


# ---------------------------------------------------------------------------------------------
# Inductor's generated C++ code, not only aot_eager


@pytest.mark.parametrize("name", ["relu", "leaky", "leaky_negative", "frelu_c"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_inductor_same_as_eager_at_the_kinks(name: str, channels_last: bool) -> None:
    """Inductor (C++ code) against eager, with 0, -0, tiny, NaN and inf in x and inf in g."""
    torch._dynamo.reset()
    m = MODULES[name]()
    mc = copy.deepcopy(m)
    x = _input(name)
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, float("nan"), float("inf")])
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    g = torch.randn(x.shape)
    g.view(-1)[6:8] = float("inf")
    compiled = torch.compile(mc, fullgraph=True)
    y, grads = _step(m, x, g)
    yc, grads_c = _step(compiled, x, g)
    torch.testing.assert_close(yc, y, equal_nan=True)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# What a compiled training step keeps on CPU: the output, or a mask made outside the generated
# code (Inductor's C++ code writes and reads bool tensors through scalar loops, many times slower)


def _saved_under_compile(m: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Tensors a compiled step keeps for backward, other than the output (one per storage)."""
    seen: dict[int, torch.Tensor] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t
        return t

    h = x.clone().requires_grad_() * 1.0  # a non-leaf, as a previous layer's output
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = m(h)
    seen.pop(y.untyped_storage().data_ptr(), None)
    return list(seen.values())


@pytest.mark.parametrize("name", ["relu", "leaky", "leaky_negative", "frelu1", "frelu_c"])
def test_compiled_cpu_step_keeps_output_or_an_outside_mask(name: str, monkeypatch) -> None:
    if name.startswith("frelu"):  # FReLU's 1-byte-mask path: the one taken without the C++ kernel
        monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    torch._dynamo.reset()
    m = MODULES[name]()
    # The partitioner Inductor uses (min-cut, with its decompositions), without building C++.
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager_decomp_partition")
    kept = _saved_under_compile(compiled, _input(name))
    if name in ("relu", "leaky"):
        assert kept == [], [(t.dtype, tuple(t.shape)) for t in kept]  # the output only
    else:  # a 1-byte mask, made by rectifiers' op (not by generated code)
        assert [t.dtype for t in kept] == [torch.bool], [(t.dtype, tuple(t.shape)) for t in kept]
    # The forward and backward graphs call rectifiers' ops for what touches the kept tensor.
    fw, bw = _traced_ops(MODULES[name](), _input(name))
    if name in ("relu", "leaky"):
        assert "rectifiers_compiled.grad_from_output.default" in bw, bw
    else:
        assert "rectifiers_compiled.pass_mask.default" in fw, fw
        assert "rectifiers_compiled.grad_from_mask.default" in bw, bw


def _traced_ops(m: torch.nn.Module, x: torch.Tensor) -> tuple[set[str], set[str]]:
    """The ops of the forward and backward graphs AOTAutograd hands a compiler (min-cut split)."""
    from functorch.compile import make_boxed_func, min_cut_rematerialization_partition
    from torch._dynamo.backends.common import aot_autograd

    graphs: list[set[str]] = []

    def grab(gm, example_inputs):  # type: ignore[no-untyped-def]
        graphs.append({str(n.target) for n in gm.graph.nodes if n.op == "call_function"})
        return make_boxed_func(gm.forward)

    torch._dynamo.reset()
    backend = aot_autograd(fw_compiler=grab, bw_compiler=grab, partition_fn=min_cut_rematerialization_partition)
    y = torch.compile(m, fullgraph=True, backend=backend)(x.clone().requires_grad_())
    y.backward(torch.ones_like(y))
    assert len(graphs) == 2, graphs
    return graphs[0], graphs[1]


# ---------------------------------------------------------------------------------------------
# FReLU compiled on CPU through the fused C++ kernel: custom ops frelu_fwd (y and the bit-packed
# mask) and frelu_bwd (dx and the bias gradient), the eager path's own passes


def _need_kernel() -> None:
    if not cpp_pointwise.load():
        pytest.skip("the fused C++ FReLU kernel could not be built here (no compiler?)")


def _kink_input(shape: tuple[int, ...], dtype: torch.dtype, layout: str) -> torch.Tensor:
    """x with 0, -0, tiny, NaN and inf in it, in the layout asked for (a leaf of that layout)."""
    torch.manual_seed(3)
    full = list(shape)
    if layout == "strided":
        full[-1] = 2 * full[-1]  # every other element of the last dim: a view with gaps
    x = torch.randn(full)
    x.view(-1)[:7] = torch.tensor([0.0, -0.0, 1e-30, -1e-30, float("nan"), float("inf"), float("-inf")])
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    return x


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name", ["frelu1", "frelu_c"])
def test_compiled_frelu_fused_same_as_eager(name: str, dtype: torch.dtype, layout: str) -> None:
    """Inductor-compiled FReLU runs the fused kernel and equals eager bitwise, kinks included."""
    _need_kernel()
    torch._dynamo.reset()
    m = MODULES[name]().to(dtype)
    mc = copy.deepcopy(m)
    compiled = torch.compile(mc, fullgraph=True)
    base = _kink_input((2, C, 5, 7), dtype, layout)
    torch.manual_seed(4)
    g = torch.randn(2, C, 5, 7).to(dtype)
    g.view(-1)[7:9] = float("inf")  # an infinite g where x > 0 and where x <= 0

    def step(mod):  # type: ignore[no-untyped-def]
        xb = base.clone(memory_format=torch.preserve_format).requires_grad_()
        x = xb[..., ::2] if layout == "strided" else xb
        y = mod(x)
        grads = torch.autograd.grad(y, [xb] + list(mod.parameters()), g)
        return y.detach(), grads

    y, grads = step(m)
    calls = dict(cpp_pointwise.CALLS)
    yc, grads_c = step(compiled)
    # The compiled step ran the kernel itself, forward and backward.
    assert cpp_pointwise.CALLS["forward"] > calls["forward"] and cpp_pointwise.CALLS["backward"] > calls["backward"]
    assert yc.dtype == dtype and yc.shape == y.shape
    torch.testing.assert_close(yc, y, equal_nan=True, rtol=0, atol=0)
    for a, b in zip(grads_c, grads):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["frelu1", "frelu_c"])
def test_compiled_frelu_graph_calls_the_fused_ops(name: str) -> None:
    _need_kernel()
    fw, bw = _traced_ops(MODULES[name](), _input(name))
    assert "rectifiers_compiled.frelu_fwd.default" in fw, fw
    assert "rectifiers_compiled.frelu_bwd.default" in bw, bw
    assert "rectifiers_compiled.pass_mask.default" not in fw, fw


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("name", ["frelu1", "frelu_c"])
def test_compiled_frelu_keeps_one_bit_per_element(name: str, channels_last: bool) -> None:
    """A compiled training step keeps the packed mask only: ceil(n / 8) bytes, nothing else."""
    _need_kernel()
    torch._dynamo.reset()
    compiled = torch.compile(MODULES[name](), fullgraph=True, backend="aot_eager_decomp_partition")
    torch.manual_seed(0)
    x = torch.randn(3, C, 5, 7)  # 420 elements: not a multiple of 8
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    kept = _saved_under_compile(compiled, x)
    assert [(t.dtype, t.numel()) for t in kept] == [(torch.uint8, (x.numel() + 7) // 8)], [
        (t.dtype, tuple(t.shape)) for t in kept
    ]
    nbytes = sum(t.untyped_storage().nbytes() for t in kept)
    assert nbytes / x.numel() <= 0.125 + 1 / x.numel()


@pytest.mark.parametrize("name", ["frelu1", "frelu_c"])
def test_compiled_frelu_without_the_kernel_keeps_a_bool_mask(name: str, monkeypatch) -> None:
    """RECTIFIERS_NO_CPP=1 (or no compiler): the 1-byte-mask path, same results as eager."""
    monkeypatch.setenv("RECTIFIERS_NO_CPP", "1")
    fw, bw = _traced_ops(MODULES[name](), _input(name))
    assert "rectifiers_compiled.pass_mask.default" in fw and "rectifiers_compiled.frelu_fwd.default" not in fw, fw
    torch._dynamo.reset()
    m = MODULES[name]()
    compiled = torch.compile(copy.deepcopy(m), fullgraph=True, backend="aot_eager")
    g = torch.randn(_input(name).shape)
    y, grads = _step(m, _input(name), g)
    yc, grads_c = _step(compiled, _input(name), g)
    torch.testing.assert_close(yc, y)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["frelu1", "frelu_c"])
def test_export_of_a_training_frelu_keeps_plain_aten_ops(name: str) -> None:
    """torch.export of a FReLU whose bias needs a gradient: aten ops, none of rectifiers' own."""
    m = MODULES[name]()  # train mode, bias requires grad
    x = _input(name).requires_grad_()
    ep = torch.export.export(m, (x,))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "aten.relu.default" in targets, targets
    assert not any("rectifiers" in t for t in targets), targets
    torch.testing.assert_close(ep.module()(x), m(x))


def _opcheck_inputs():  # type: ignore[no-untyped-def]
    torch.manual_seed(5)
    for dtype in (torch.float32, torch.bfloat16):
        for layout in ("nchw", "channels_last", "strided"):
            x = _kink_input((2, 3, 4, 5), dtype, layout)
            x = torch.nan_to_num(x, nan=0.5)  # opcheck compares outputs without equal_nan
            x = x[..., ::2] if layout == "strided" else x
            for bias in (torch.tensor([-1.0]), torch.randn(3)):
                cdim = 1 if bias.numel() > 1 else None
                yield x, bias, cdim


def test_opcheck_frelu_fwd() -> None:
    _need_kernel()
    op = torch.ops.rectifiers_compiled.frelu_fwd.default
    for x, bias, cdim in _opcheck_inputs():
        torch.library.opcheck(op, (x.detach().requires_grad_(), bias.requires_grad_(), cdim))
        torch.library.opcheck(op, (x, bias.detach(), cdim))


def test_opcheck_frelu_bwd() -> None:
    _need_kernel()
    op = torch.ops.rectifiers_compiled.frelu_bwd.default
    for x, bias, cdim in _opcheck_inputs():
        y, mask = torch.ops.rectifiers_compiled.frelu_fwd(x, bias, cdim)
        stride = list(y.stride())
        for g in (torch.randn(x.shape).to(x.dtype), torch.randn(x.shape).to(x.dtype).to(memory_format=torch.channels_last)):
            for need_x, need_b in ((True, True), (True, False), (False, True)):
                torch.library.opcheck(op, (g, mask, stride, cdim, need_x, need_b))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_frelu_ops_torch_fallback_same_as_kernel(layout: str, monkeypatch) -> None:
    """Where the kernel has no mode for a layout, the ops compute the same with torch ops."""
    _need_kernel()
    from rectifiers.ops.eager import compiled

    x = _kink_input((2, 3, 4, 5), torch.float32, layout)
    bias = torch.randn(3)
    torch.manual_seed(6)
    g = torch.randn(x.shape)
    y, mask = torch.ops.rectifiers_compiled.frelu_fwd(x, bias, 1)
    dx, db = torch.ops.rectifiers_compiled.frelu_bwd(g, mask, list(y.stride()), 1, True, True)
    monkeypatch.setattr(compiled.kernels, "plan", lambda *a, **k: None)
    y2, mask2 = torch.ops.rectifiers_compiled.frelu_fwd(x, bias, 1)
    dx2, db2 = torch.ops.rectifiers_compiled.frelu_bwd(g, mask2, list(y2.stride()), 1, True, True)
    assert y2.stride() == y.stride() and dx2.stride() == dx.stride()
    assert torch.equal(mask2, mask)
    torch.testing.assert_close(y2, y, equal_nan=True, rtol=0, atol=0)
    torch.testing.assert_close(dx2, dx, rtol=0, atol=0)
    # The same sums in another order (the kernel's row mode adds float32 lanes first).
    torch.testing.assert_close(db2.float(), db.float())
