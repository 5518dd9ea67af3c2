"""Every module under torch.compile(fullgraph=True) and torch.export, against eager."""

from __future__ import annotations

import copy

import pytest
import torch

import rectifiers as R

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
def test_compiled_cpu_step_keeps_output_or_an_outside_mask(name: str) -> None:
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
