"""Correctness of every backend on a real CUDA device: the check the CPU test suite cannot make.

CI has no GPU: there the Triton kernels run in Triton's interpreter on CPU tensors
(``tests/ops/test_triton.py``). This script runs the same comparisons with compiled kernels on a
CUDA device, in one command that installs nothing::

    python benchmarks/gpu_check.py            # on a CUDA machine, under a minute
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --device cpu   # proves the script

For each activation, backend (``triton``, ``eager``, and the module under
``torch.compile(fullgraph=True)``), dtype, layout and size, it compares the forward, the input
gradient and every parameter gradient with ``backend="torch"`` (torch.nn's function, or the
plain formula) on the same device. Inputs carry the kinks and non-finite values (0, -0.0, the
smallest normals and subnormals, NaN, +-inf). Then ``torch.autograd.gradcheck`` in float64, and
the funnel's running statistics in training mode.

Rules: fp32 and fp64 element-wise forwards must be equal bit for bit (NaN matching NaN),
gradients within 1e-5 (relative and absolute; parameter gradients are sums whose order differs);
bf16/fp16 within 1e-2; the funnel (a convolution and a reduction) within 1e-4 in fp32.

Prints one row per check, writes ``gpu-check.csv`` to ``--out`` (default ``$OUT``, else
``benchmarks/results``) and exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

import torch

try:  # run from a checkout without `pip install -e .`: use the source tree beside this script
    import rectifiers  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import rectifiers  # noqa: E402
import rectifiers.functional as RF  # noqa: E402
from rectifiers.testing import bits_equal  # noqa: E402

LOW = {torch.bfloat16: "bf16", torch.float16: "fp16"}
NAMES = {torch.float32: "fp32", torch.float64: "fp64", **LOW}
ELEMENTWISE = ("relu", "leaky_relu", "leaky_relu_neg", "prelu", "prelu_scalar", "frelu", "frelu_scalar")


def _plant(x: torch.Tensor) -> torch.Tensor:
    """``x`` with the kinks and non-finite values written at spread positions.

    Triton's interpreter (``--device cpu``) emulates bf16 with numpy and flushes its subnormals
    to zero, which no GPU does: there the bf16 subnormals are left out.
    """
    x = x.clone()
    f = x.view(-1)
    fi = torch.finfo(x.dtype)
    sub = [] if (x.dtype == torch.bfloat16 and not x.is_cuda) else [fi.tiny / 4, -fi.tiny / 4]
    vals = [0.0, -0.0, fi.tiny, -fi.tiny, *sub, float("nan"), float("inf"), float("-inf"), 1.0, -1.0]
    step = max(1, f.numel() // len(vals))
    for i, v in enumerate(vals):
        if i * step < f.numel():
            f[i * step] = v
    return x


def _layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "channels_last":
        return x.to(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)
    if layout == "strided":  # every other element of the last dimension: not contiguous
        big = torch.cat([x, x], dim=-1)
        return big[..., ::2]
    return x


def _params(act: str, c: int, device, gen):
    if act in ("prelu", "prelu_scalar"):
        n = c if act == "prelu" else 1
        w = torch.rand(n, generator=gen) * 1.5 - 0.25  # slopes <= 0 and > 1 included
        return {"weight": w.to(device)}
    if act in ("frelu", "frelu_scalar"):
        n = c if act == "frelu" else 1
        return {"bias": (torch.randn(n, generator=gen) * 0.5).to(device)}
    return {}


def _call(act: str, x, p, backend):
    if act == "relu":
        return RF.relu(x, backend=backend)
    if act == "leaky_relu":
        return RF.leaky_relu(x, 0.01, backend=backend)
    if act == "leaky_relu_neg":
        return RF.leaky_relu(x, -0.3, backend=backend)
    if act in ("prelu", "prelu_scalar"):
        return RF.prelu(x, p["weight"].to(x.dtype), 1, backend=backend)
    return RF.flexible_relu(x, p["bias"].to(x.dtype), 1, backend=backend)


def _err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest ``|a - b| / (1 + |b|)``, NaN where ``b`` is NaN must be NaN in ``a``, inf in place."""
    a, b = a.double(), b.double()
    if not torch.equal(torch.isnan(a), torch.isnan(b)):
        return float("inf")
    fin = torch.isfinite(b)
    if not torch.equal(a[~fin & ~torch.isnan(b)], b[~fin & ~torch.isnan(b)]):
        return float("inf")
    if not fin.any():
        return 0.0
    return ((a[fin] - b[fin]).abs() / (1 + b[fin].abs())).max().item()


def _perr(a: torch.Tensor, b: torch.Tensor, scale: float) -> float:
    """Largest ``|a - b| / scale`` over finite entries; non-finite entries must agree."""
    a, b = a.double(), b.double()
    fin = torch.isfinite(b)
    same_nan = torch.equal(torch.isnan(a), torch.isnan(b))
    if not same_nan or not torch.equal(a[~fin & ~torch.isnan(b)], b[~fin & ~torch.isnan(b)]):
        return float("inf")
    return (a[fin] - b[fin]).abs().max().item() / scale if fin.any() else 0.0


def _l2(a: torch.Tensor, e: torch.Tensor) -> float:
    """``||a - e|| / max(||e||, 1)`` in float64; inf where a non-finite value differs."""
    a, e = a.double(), e.double()
    if not torch.equal(torch.isfinite(a), torch.isfinite(e)):
        return float("inf")
    fin = torch.isfinite(e)
    return ((a[fin] - e[fin]).norm() / max(e[fin].norm().item(), 1.0)).item()


class Checker:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, check: str, act: str, impl: str, dtype, layout: str, shape, err: float, tol: float,
            exact: bool | None = None) -> None:
        ok = (err <= tol) if exact is None else exact
        self.rows.append({"check": check, "act": act, "impl": impl, "dtype": NAMES.get(dtype, str(dtype)),
                          "layout": layout, "shape": "x".join(map(str, shape)),
                          "max_err": err, "tol": tol if exact is None else "bitwise", "ok": ok})
        if not ok:
            print(f"FAIL {self.rows[-1]}", flush=True)


QUICK = False  # --quick: one shape and fp32 / bf16 only (proves the script in seconds)


def elementwise(ck: Checker, device, impls) -> None:
    gen = torch.Generator().manual_seed(0)
    shapes = [(4, 37, 9, 11)] if QUICK else [(4, 37, 9, 11), (3, 5, 1000), (2, 3, 4, 5, 6)]
    if device.type == "cuda":  # sizes that span many programs and the 32-bit mask words' tails
        shapes += [(2, 64, 56, 56), (8, 1, (1 << 20) + 3)]
    for act in ELEMENTWISE:
        for shape in shapes:
            for dtype in (torch.float32, torch.bfloat16) if QUICK else (torch.float32, torch.bfloat16, torch.float16, torch.float64):
                layouts = ["contiguous", "strided"] + (["channels_last"] if len(shape) in (4, 5) else [])
                for layout in layouts:
                    if shape[-1] > 10_000 and (dtype != torch.float32 or layout != "contiguous"):
                        continue
                    x0 = _layout(_plant(torch.randn(shape, generator=gen).to(device=device, dtype=dtype)), layout)
                    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
                    p0 = _params(act, shape[1], device, gen)
                    ref0 = _run(act, x0, g, p0, "torch")
                    for impl in impls:
                        # compiling costs seconds a case: a sample of the cases is enough
                        if impl == "compiled" and (shape != shapes[0] or layout == "strided"
                                                   or dtype in (torch.float16, torch.float64)):
                            continue
                        out = _run(act, x0, g, p0, impl)
                        # compiled: against torch's own formula compiled the same way (inductor's
                        # relu gives -0.0 for -0.0 where CUDA's eager kernel gives +0.0)
                        ref = _run(act, x0, g, p0, "compiled_torch") if impl == "compiled" else ref0
                        low = dtype in LOW
                        tol = 1e-2 if low else 1e-5
                        y, yr = out[0], ref[0]
                        if low:
                            ck.add("forward", act, impl, dtype, layout, shape, _err(y, yr), tol)
                        else:
                            ck.add("forward", act, impl, dtype, layout, shape, 0.0, 0.0, exact=bits_equal(y, yr))
                        if layout == "channels_last":
                            ck.add("keeps layout", act, impl, dtype, layout, shape, 0.0, 0.0,
                                   exact=y.is_contiguous(memory_format=torch.channels_last
                                                         if y.dim() == 4 else torch.channels_last_3d))
                        ck.add("grad input", act, impl, dtype, layout, shape, _err(out[1], ref[1]), tol)
                        for a, b in zip(out[2:], ref[2:]):
                            # a sum over the batch: relative to the sum of |g * x| it runs over
                            gx = (g.double().abs() * x0.double().nan_to_num(0, 0, 0).abs()).sum().item()
                            ck.add("grad param", act, impl, dtype, layout, shape,
                                   _perr(a, b, 1 + gx / max(1, a.numel())), tol)


def _run(act, x0, g, p0, impl):
    x = x0.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    p = {k: v.detach().clone().requires_grad_(True) for k, v in p0.items()}
    if impl.startswith("compiled"):
        backend = "torch" if impl == "compiled_torch" else None
        torch._dynamo.reset()
        fn = torch.compile(lambda x, p: _call(act, x, p, backend), fullgraph=True, dynamic=False)
        y = fn(x, p)
    else:
        y = _call(act, x, p, impl)
    # NaN inputs give NaN gradients to the parameters: give those out of the sum on both sides
    grads = torch.autograd.grad(y, [x, *p.values()], g)
    return [y.detach(), *grads]


def funnel(ck: Checker, device, impls) -> None:
    gen = torch.Generator().manual_seed(1)
    cases = [((4, 16, 13, 11), 3), ((2, 8, 9, 7), 5), ((3, 6, 100), 3), ((2, 4, 5, 6, 7), 3),
             ((2, 8, 9, 7), 1)] + ([((32, 64, 56, 56), 3)] if device.type == "cuda" else [])
    if QUICK:
        cases = [((2, 8, 9, 7), 5)]
    for shape, k in cases:
        c, nsp = shape[1], len(shape) - 2
        for dtype in (torch.float32, torch.bfloat16):
            for training in (True, False):
                for layout in ("contiguous", "channels_last", "strided") if nsp in (2, 3) else ("contiguous", "strided"):
                    x0 = _layout(torch.randn(shape, generator=gen).to(device=device, dtype=dtype), layout)
                    g = torch.randn(shape, generator=gen).to(device=device, dtype=dtype)
                    prm = {
                        "cw": torch.randn((c, 1) + (k,) * nsp, generator=gen) * 0.3,
                        "cb": torch.randn(c, generator=gen) * 0.1,
                        "bw": torch.rand(c, generator=gen) + 0.5,
                        "bb": torch.randn(c, generator=gen) * 0.1,
                    }
                    prm = {n: t.to(device=device, dtype=dtype) for n, t in prm.items()}
                    stats = (torch.randn(c, generator=gen) * 0.1, torch.rand(c, generator=gen) + 0.5)

                    def run(impl, dt=dtype):
                        rm, rv = (s.to(device=device, dtype=dtype).to(dt, copy=True) for s in stats)
                        x = x0.detach().to(dt).clone(memory_format=torch.preserve_format).requires_grad_(True)
                        ps = {n: t.detach().to(dt).clone().requires_grad_(True) for n, t in prm.items()}

                        def f(x, ps, rm, rv):
                            return RF.funnel_relu(x, ps["cw"], ps["bw"], ps["bb"], rm, rv, training, 0.1, 1e-5,
                                                  conv_bias=ps["cb"], backend=None if impl == "compiled" else impl)
                        if impl == "compiled":
                            torch._dynamo.reset()
                            f = torch.compile(f, fullgraph=True, dynamic=False)
                        y = f(x, ps, rm, rv)
                        gr = torch.autograd.grad(y, [x, *ps.values()], g.to(dt))
                        return [y.detach(), *gr, rm, rv]

                    names = ["forward", "grad x", "grad conv_w", "grad conv_b", "grad bn_w", "grad bn_b",
                             "running mean", "running var"]
                    theirs = run("torch")
                    # fp32: within 1e-4 of the plain formula, relative to the largest value (and,
                    # for the parameter gradients, sums of m = N/C terms, to sqrt(m): rounding
                    # noise of a sum that cancels, as conv_b's does under batch statistics).
                    # bf16: a branch of the max flips where x and T(x) round together, so the
                    # error is measured in the 2-norm, relative to the plain formula's in fp32:
                    # within twice the plain formula's own bf16 error plus 1e-2 (forward, running
                    # statistics) or plus 5e-2 (gradients: on a tensor of a thousand elements one
                    # flipped branch, legitimate where x and T(x) agree to bf16's precision,
                    # moves the 2-norm error by about 0.03 either way).
                    exact = run("torch", torch.float32) if dtype != torch.float32 else theirs
                    mode = "train" if training else "eval"
                    m = x0.numel() // c
                    for impl in impls:
                        if impl == "compiled" and (shape[-1] > 50 or dtype != torch.float32 or layout != "contiguous"):
                            continue
                        ours = run(impl)
                        for i, (name, o, t, e) in enumerate(zip(names, ours, theirs, exact)):
                            if dtype == torch.float32:
                                scale = max(1.0, e.double().abs().max().item(), m ** 0.5 if 2 <= i <= 5 else 1.0)
                                err, tol = _perr(o, e, scale), 1e-4
                            else:
                                err = _l2(o, e)
                                tol = 2 * _l2(t, e) + (5e-2 if name.startswith("grad") else 1e-2)
                            ck.add(f"funnel {name} {mode}", "funnel", impl, dtype, layout, shape + (k,), err, tol)


def gradchecks(ck: Checker, device, impls) -> None:
    gen = torch.Generator().manual_seed(2)
    for impl in [i for i in impls if i != "compiled"]:
        for act in ELEMENTWISE:
            x = (torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)).to(device)
            x = x + 0.1 * x.sign()  # keep away from the kink, where finite differences lie
            p = {k: v.double() for k, v in _params(act, 3, device, gen).items()}
            if "weight" in p:
                p["weight"] = p["weight"].abs() + 0.05
            ins = [x.requires_grad_(), *(v.requires_grad_() for v in p.values())]

            def f(x, *vals, act=act):
                return _call(act, x, dict(zip(p.keys(), vals)), impl)
            ok = torch.autograd.gradcheck(f, ins, raise_exception=False)
            ck.add("gradcheck fp64", act, impl, torch.float64, "contiguous", x.shape, 0.0, 0.0, exact=ok)
        c = 3
        x = torch.randn(2, c, 4, 5, generator=gen, dtype=torch.float64).to(device).requires_grad_()
        cw = (torch.randn(c, 1, 3, 3, generator=gen, dtype=torch.float64) * 0.3).to(device).requires_grad_()
        bw = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(device).requires_grad_()
        bb = (torch.randn(c, generator=gen, dtype=torch.float64) * 0.1).to(device).requires_grad_()

        def fun(x, cw, bw, bb):
            return RF.funnel_relu(x, cw, bw, bb, None, None, True, backend=impl)
        ok = torch.autograd.gradcheck(fun, (x, cw, bw, bb), raise_exception=False)
        ck.add("gradcheck fp64", "funnel", impl, torch.float64, "contiguous", x.shape, 0.0, 0.0, exact=ok)


def modules(ck: Checker, device) -> None:
    """The default modules on a CUDA tensor pick the Triton backend and match torch.nn."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 8, 6, 6, generator=gen).to(device)
    pairs = [(rectifiers.ReLU(), torch.nn.ReLU()), (rectifiers.LeakyReLU(0.2), torch.nn.LeakyReLU(0.2)),
             (rectifiers.PReLU(8), torch.nn.PReLU(8))]
    for ours, theirs in pairs:
        ours, theirs = ours.to(device), theirs.to(device)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(a), theirs(b)
        ya.sum().backward()
        yb.sum().backward()
        name = type(ours).__name__
        ck.add("module vs torch.nn", name, "auto", torch.float32, "contiguous", x.shape, 0.0, 0.0,
               exact=bits_equal(ya.detach(), yb.detach()) and bits_equal(a.grad, b.grad))
    # torch's relu(-0.0) differs by device (CPU -0.0, CUDA +0.0): the kernels follow the device's
    z = torch.tensor([-0.0, 0.0, float("nan"), -1.0], device=device)
    theirs, ours = torch.relu(z), RF.relu(z, backend="triton")
    print(f"relu([-0.0, 0.0, nan, -1.0]) on {device.type}: torch {theirs.tolist()} "
          f"(signs {torch.signbit(theirs).tolist()}), triton {ours.tolist()} "
          f"(signs {torch.signbit(ours).tolist()})")
    ck.add("relu(-0.0) sign as torch", "relu", "triton", torch.float32, "-", z.shape, 0.0, 0.0,
           exact=bits_equal(ours, theirs))
    # "auto" on CUDA: Triton from each activation's size threshold on, eager below
    from rectifiers.ops import _dispatch

    for act in rectifiers._spec.ACTIVATIONS:
        chosen = rectifiers.ops.resolve_backend(x, activation=act)
        want = "triton" if _dispatch.use_triton(act, x.numel(), x.dtype, device.type == "cuda") else "eager"
        ck.add("auto picks by size threshold", act, chosen, torch.float32, "-", x.shape, 0.0, 0.0,
               exact=chosen == want)
    with_zero = dict(_dispatch._overrides)
    try:
        rectifiers.ops.set_triton_threshold("*", 0)
        chosen = rectifiers.ops.resolve_backend(x)
        ck.add("auto picks triton on CUDA at threshold 0", "-", chosen, torch.float32, "-", x.shape, 0.0, 0.0,
               exact=(chosen == "triton") == (device.type == "cuda"))
    finally:
        rectifiers.ops.reset_triton_thresholds()
        for (a, d), v in with_zero.items():
            rectifiers.ops.set_triton_threshold(a, v, d)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cuda (default); cpu runs Triton's interpreter, only to check the script")
    ap.add_argument("--out", default=None, help="output folder (default $OUT, else benchmarks/results)")
    ap.add_argument("--quick", action="store_true", help="a few cases only, to check the script")
    ap.add_argument("--impls", default="triton,eager,compiled",
                    help="comma-separated subset of triton,eager,compiled (default all three)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False). To check the "
              "script itself: TRITON_INTERPRET=1 python benchmarks/gpu_check.py --device cpu", file=sys.stderr)
        return 2
    if args.device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        print("gpu_check: --device cpu needs TRITON_INTERPRET=1 in the environment", file=sys.stderr)
        return 2
    global QUICK
    QUICK = args.quick
    device = torch.device(args.device)
    impls = [i.strip() for i in args.impls.split(",") if i.strip()]
    bad = [i for i in impls if i not in ("triton", "eager", "compiled")]
    if bad or not impls:
        print(f"gpu_check: --impls: expected a subset of triton,eager,compiled; got {args.impls!r}", file=sys.stderr)
        return 2
    ck = Checker()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (Triton interpreter)"
    print(f"# {name}  torch {torch.__version__}", flush=True)
    for part in (elementwise, funnel, gradchecks):
        part(ck, device, impls)
        print(f"{part.__name__}: {sum(r['ok'] for r in ck.rows)}/{len(ck.rows)} checks pass so far", flush=True)
    modules(ck, device)
    fails = [r for r in ck.rows if not r["ok"]]
    by = {}
    for r in ck.rows:
        key = (r["check"].split(" ")[0] if r["act"] == "funnel" else r["check"], r["impl"])
        n, f = by.get(key, (0, 0))
        by[key] = (n + 1, f + (not r["ok"]))
    print("\n| check | impl | checks | failed |\n|---|---|---|---|")
    for (check, impl), (n, f) in sorted(by.items()):
        print(f"| {check} | {impl} | {n} | {f} |")
    out = Path(args.out or os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu-check.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(ck.rows[0].keys()))
        w.writeheader()
        w.writerows(ck.rows)
    print(f"\n{len(ck.rows) - len(fails)}/{len(ck.rows)} checks pass; wrote {out / 'gpu-check.csv'}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
