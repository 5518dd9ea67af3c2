"""PyTorch's own OpInfo cases (``op_db``) for relu, leaky_relu and prelu, run on torch and on
rectifiers side by side: forward bitwise, input gradient bitwise, parameter gradients within the
DESIGN tolerance, in-place variants, error inputs, and gradcheck / gradgradcheck in float64.

Also, as PyTorch's test_ops: batched gradients, forward-mode AD and forward-over-reverse
(items 2 and 3 of issue 13) over the same samples.

Deviation kept on purpose (README, "Errors"): torch's relu takes integer tensors (its op_db
lists int8 ... int64 and uint8); rectifiers refuses them with a ``TypeError``. Checked below.
"""

from __future__ import annotations

import pytest
import torch

from _conformance_cases import (
    FLOATS,
    OP_NAMES,
    OPS,
    CASE_COUNTS,
    bits_equal,
    count,
    inplace_pair,
    ours,
    samples,
    within_design_tolerance,
)
from helpers import BACKENDS

SHORT = {name: name.rsplit(".", 1)[-1] for name in OP_NAMES}
DT = {torch.float32: "fp32", torch.float64: "fp64", torch.float16: "fp16", torch.bfloat16: "bf16"}

# relu's reference inputs are 41 (one of 1029 x 917), prelu's 108: every 2nd keeps the run
# short and still covers each shape family (the list cycles through them); sample_inputs whole.
EVERY = {("nn.functional.relu", "reference_inputs"): 2, ("nn.functional.prelu", "reference_inputs"): 3}


def _grad_out(y: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.dtype)


def _run(fn, s, want_grad: bool):
    x, args, kwargs = s.input, s.args, s.kwargs
    y = fn(x, *args, **kwargs)
    if not want_grad:
        return y, None
    ts = [t for t in s.tensors() if t.requires_grad]
    grads = torch.autograd.grad(y, ts, _grad_out(y), allow_unused=True)
    return y, grads


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: DT[d])
@pytest.mark.parametrize("kind", ["sample_inputs", "reference_inputs"])
@pytest.mark.parametrize("op_name", OP_NAMES, ids=SHORT.get)
def test_forward_and_gradients_match_torch(op_name, kind, dtype, backend):
    op = OPS[op_name]
    f_ours = ours(op_name, backend)
    got = samples(op_name, kind, dtype, every=EVERY.get((op_name, kind), 1))
    assert got, "torch gave no samples"
    for s0 in got:
        count(f"op_db {kind}")
        sa, sb = s0.clone(True), s0.clone(True)
        ya, ga = _run(op.op, sa, True)
        yb, gb = _run(f_ours, sb, True)
        what = f"{SHORT[op_name]} {s0.id} {s0.describe()}"
        assert bits_equal(yb, ya), f"forward differs: {what}"
        # input gradient: bitwise
        assert bits_equal(gb[0], ga[0]), f"input gradient differs: {what}"
        # parameter gradients (prelu's weight): DESIGN's tolerance against float64
        if len(ga) > 1:
            s64 = s0.clone(True)
            s64 = type(s0)(s0.id, *s64.rebuild([t.detach().double().requires_grad_() for t in s64.tensors()]))
            y64 = op.op(s64.input, *s64.args, **s64.kwargs)
            g64 = torch.autograd.grad(y64, s64.tensors()[1:], _grad_out(ya).double())
            xa = s0.input.detach().double()
            for i, (a, b, r) in enumerate(zip(ga[1:], gb[1:], g64)):
                assert b.shape == a.shape and b.dtype == a.dtype, what
                scale = (xa.abs() * _grad_out(ya).double().abs()).nan_to_num(0.0, 0.0, 0.0).sum()
                atol = 8 * torch.finfo(dtype).eps * float(scale)
                ok, msg = within_design_tolerance(b, a, r, atol)
                assert ok, f"parameter {i} gradient: {msg}: {what}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=lambda d: DT[d])
@pytest.mark.parametrize("op_name", ["nn.functional.relu", "nn.functional.leaky_relu"], ids=SHORT.get)
def test_inplace_variants_match_torch(op_name, dtype, backend):
    f_torch, f_ours = inplace_pair(op_name, backend)
    for kind in ("sample_inputs", "reference_inputs"):
        for s0 in samples(op_name, kind, dtype, every=EVERY.get((op_name, kind), 1)):
            count("op_db in-place")
            what = f"{SHORT[op_name]} {s0.id} {s0.describe()}"
            # no grad: the input itself is overwritten and returned
            sa, sb = s0.clone(False), s0.clone(False)
            va, vb = sa.input._version, sb.input._version
            try:
                ya = f_torch(sa.input, *sa.args, **sa.kwargs)
            except RuntimeError:  # an expanded input (overlapping memory): torch refuses it
                with pytest.raises(RuntimeError):
                    f_ours(sb.input, *sb.args, **sb.kwargs)
                assert bits_equal(sb.input, s0.input.detach()), what
                continue
            yb = f_ours(sb.input, *sb.args, **sb.kwargs)
            assert yb is sb.input or yb.data_ptr() == sb.input.data_ptr(), what
            assert bits_equal(sb.input, sa.input), what
            assert (sb.input._version > vb) == (sa.input._version > va), what
            # with grad: on a non-leaf (a leaf that requires grad is refused, as torch)
            sa, sb = s0.clone(True), s0.clone(True)
            ha, hb = sa.input * 1, sb.input * 1
            ya = f_torch(ha, *sa.args, **sa.kwargs)
            yb = f_ours(hb, *sb.args, **sb.kwargs)
            assert bits_equal(yb, ya), what
            (da,) = torch.autograd.grad(ya, sa.input, _grad_out(ya))
            (db,) = torch.autograd.grad(yb, sb.input, _grad_out(yb))
            assert bits_equal(db, da), what
            leaf = s0.clone(True).input
            with pytest.raises(RuntimeError):
                f_torch(leaf, *s0.args, **s0.kwargs)
            with pytest.raises(RuntimeError):
                f_ours(leaf, *s0.args, **s0.kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("op_name", OP_NAMES, ids=SHORT.get)
def test_error_inputs_are_refused_with_torchs_class(op_name, backend):
    op = OPS[op_name]
    f_ours = ours(op_name, backend)
    errors = list(op.error_inputs(torch.device("cpu"))) if op.error_inputs_func is not None else []
    for ei in errors:
        count("op_db error_inputs")
        s = ei.sample_input
        with pytest.raises(ei.error_type, match=ei.error_regex):
            op.op(s.input, *s.args, **s.kwargs)
        with pytest.raises(ei.error_type) as info:  # catchable as torch's class
            f_ours(s.input, *s.args, **s.kwargs)
        # and it says what is wrong in rectifiers' words, naming the function
        assert str(info.value).startswith("prelu: "), info.value
    if op_name == "nn.functional.prelu":
        assert len(errors) >= 3  # torch's three cases: 0-D input, channel count, 2-D weight


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8], ids=str)
def test_integer_relu_is_refused_on_purpose(dtype):
    """torch's relu takes integer tensors; rectifiers refuses them (README: Errors)."""
    op = OPS["nn.functional.relu"]
    assert dtype in op.dtypes
    for s in samples("nn.functional.relu", "sample_inputs", dtype):
        count("op_db sample_inputs (integer, refused)")
        op.op(s.input)  # torch computes it
        with pytest.raises(TypeError, match="floating-point"):
            ours("nn.functional.relu", None)(s.input)


@pytest.mark.parametrize("op_name", OP_NAMES, ids=SHORT.get)
def test_gradcheck_and_gradgradcheck(op_name):
    """As PyTorch's test_fn_grad / test_fn_gradgrad on the default (eager) backend, without
    batched gradients (those, and forward-mode AD: the next test).

    prelu's 25 samples: every 2nd (the list pairs each shape with a shared and a per-channel
    weight, in turn)."""
    op = OPS[op_name]
    f_ours = ours(op_name, "eager")
    for s0 in samples(op_name, "sample_inputs", torch.float64, every=2 if op_name.endswith("prelu") else 1):
        count("op_db gradcheck")
        s = s0.clone(True)

        def fn(*ts):
            x, a, k = s.rebuild(list(ts))
            return f_ours(x, *a, **k)

        ts = tuple(s.tensors())
        assert torch.autograd.gradcheck(fn, ts, check_batched_grad=False, check_undefined_grad=True,
                                        nondet_tol=op.gradcheck_nondet_tol, fast_mode=op.gradcheck_fast_mode or False)
        if op.supports_gradgrad:
            assert torch.autograd.gradgradcheck(fn, ts, check_batched_grad=False, check_undefined_grad=True,
                                                nondet_tol=op.gradcheck_nondet_tol,
                                                fast_mode=op.gradcheck_fast_mode or False)


# --------------------------------------------------------------------------------------------
# Batched gradients, forward-mode AD, forward-over-reverse (as PyTorch's test_ops; items 2
# and 3 of issue 13)


@pytest.mark.parametrize("op_name", OP_NAMES, ids=SHORT.get)
def test_op_db_batched_grad_forward_ad_and_fwgrad_bwgrad(op_name):
    op = OPS[op_name]
    f_ours = ours(op_name, "eager")
    for s0 in samples(op_name, "sample_inputs", torch.float64, every=2 if op_name.endswith("prelu") else 1):
        count("op_db gradcheck (batched, forward AD)")
        s = s0.clone(True)

        def fn(*ts):
            x, a, k = s.rebuild(list(ts))
            return f_ours(x, *a, **k)

        ts = tuple(s.tensors())
        what = f"{SHORT[op_name]} {s0.id} {s0.describe()}"
        # test_fn_grad / test_fn_gradgrad, batched
        assert torch.autograd.gradcheck(fn, ts, check_batched_grad=op.check_batched_grad, fast_mode=True), what
        assert torch.autograd.gradgradcheck(fn, ts, check_batched_grad=op.check_batched_gradgrad, fast_mode=True), what
        # test_forward_mode_AD
        assert torch.autograd.gradcheck(fn, ts, check_forward_ad=op.supports_forward_ad, check_backward_ad=False,
                                        check_batched_grad=False, check_undefined_grad=True,
                                        check_batched_forward_grad=op.check_batched_forward_grad, fast_mode=True), what
        # test_fn_fwgrad_bwgrad
        assert torch.autograd.gradgradcheck(fn, ts, check_fwd_over_rev=op.supports_fwgrad_bwgrad,
                                            check_rev_over_rev=False, check_undefined_grad=False,
                                            check_batched_grad=False, fast_mode=True), what


def test_zz_report_case_counts(capsys):
    """Prints the number of cases run per source (run last in this module; -s shows it)."""
    with capsys.disabled():
        print("\nconformance cases per source (op_db):")
        for k, v in sorted(CASE_COUNTS.items()):
            if k.startswith("op_db"):
                print(f"  {k}: {v}")
