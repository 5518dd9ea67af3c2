"""GPU benchmark of the Triton backend and of ``backend="auto"`` against torch.nn (or the plain
formula).

One command, installs nothing, about 3 minutes on an H200::

    python benchmarks/gpu_bench.py                 # on a CUDA machine
    TRITON_INTERPRET=1 python benchmarks/gpu_bench.py --dry-run --device cpu   # proves the script

For each activation (relu, leaky_relu, prelu per channel, flexible_relu per channel, funnel)
x shape x dtype, ``backend="torch"`` (torch.nn's function for relu / leaky_relu / prelu, the
plain formula for FReLU and Funnel), ``"triton"`` and ``"auto"`` (the default: Triton from a size
threshold on, eager below), timed side by side in one run:

* synchronous: median time of one call, CUDA events around it after a device sync (forward with
  autograd recording, backward, forward + backward): what a user who waits sees;
* asynchronous: wall time of many forward + backward calls in a row, then one sync, per call
  (host and device overlap: the throughput of a training loop);
* device time by CUDA-graph replay: the forward + backward captured in a CUDA graph (which
  also proves the path capturable: no host sync, no tensor built from a list), replayed and
  timed with events; and the forward alone without autograd, whose bytes are exactly those of a
  copy, as a fraction of a device-to-device copy (``x.clone()``) replayed the same way.

Effective bandwidth for the other fractions counts the least traffic an element-wise pass needs:
forward reads x and writes y, backward reads g and writes dx (PReLU's backward also reads y),
plus the 1-bit mask; so 1.0 means "as fast as a copy of the same bytes".

Then a sweep over sizes (2^16 to 2^28 elements) for the size thresholds of ``"auto"``, derived
by ``gpu_thresholds.py`` and printed in the form ``RECTIFIERS_TRITON_MIN_NUMEL`` takes; one
training step of a small conv net at batch 32 and 256 (time and peak memory, torch.nn against
Triton and auto); the bytes each activation keeps for backward (``saved_tensors_hooks``,
distinct storages; measured on CPU too); and whether ``torch.compile(mode="reduce-overhead")``
(CUDA graphs) runs each activation.

Writes CSV files (timings, sweep, memory) to ``$OUT`` if set, else ``benchmarks/results/``,
named ``gpu-<device>-*.csv``, and prints the tables and the issue's goals.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

try:  # run from a checkout without `pip install -e .`: use the source tree beside this script
    import rectifiers  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SHAPES = [(64, 64, 8, 8), (32, 64, 56, 56), (16, 512, 768), (64, 256, 56, 56), (8, 4096, 4096)]
DRY_SHAPES = [(2, 8, 9, 7), (2, 16, 33)]
# the sweep for the thresholds: (b, 64, 32, 32), 2^16 .. 2^28 elements
SWEEP = [(2 ** k // 65536, 64, 32, 32) for k in (16, 18, 20, 22, 24, 25, 26, 27, 28)]
DRY_SWEEP = [(1, 4, 4, 4), (2, 4, 4, 4)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
ACTS = ("relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu")
IMPLS = ("torch", "triton", "auto")


def _refuse(msg: str) -> None:
    print(f"gpu_bench: {msg}", file=sys.stderr)
    raise SystemExit(2)


# --- timing ------------------------------------------------------------------------------------


class Timer:
    """Median wall time of a callable: CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device, warmup: int, reps: int) -> None:
        self.device, self.warmup, self.reps = device, warmup, reps

    def __call__(self, fn, setup=None) -> float:
        """Median milliseconds of ``fn(state)`` where ``state = setup()`` is untimed."""
        times = []
        for i in range(self.warmup + self.reps):
            state = setup() if setup else None
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                fn(state)
                end.record()
                torch.cuda.synchronize()
                ms = start.elapsed_time(end)
            else:
                t0 = time.perf_counter()
                fn(state)
                ms = (time.perf_counter() - t0) * 1e3
            if i >= self.warmup:
                times.append(ms)
        return statistics.median(times)

    def run_async(self, fn, calls: int = 20) -> float:
        """Milliseconds per call of ``calls`` calls in a row, then one sync (median of 3)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        for _ in range(self.warmup):
            fn()
        out = []
        for _ in range(3 if self.reps > 2 else 1):
            sync()
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync()
            out.append((time.perf_counter() - t0) * 1e3 / calls)
        return statistics.median(out)

    def graph(self, fn, per_graph: int = 5) -> float:
        """Device milliseconds per call of ``fn`` by CUDA-graph replay (``per_graph`` calls in
        one graph); NaN off CUDA. A capture that fails raises (the path is not capturable)."""
        if self.device.type != "cuda":
            return float("nan")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(per_graph):
                fn()
        g.replay()
        torch.cuda.synchronize()
        times = []
        for _ in range(max(3, self.reps // 2)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            g.replay()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / per_graph)
        del g
        return statistics.median(times)


# --- the activations as (forward, parameters) ------------------------------------------------


def make_case(act: str, shape, dtype, device):
    """Input, parameters (requiring grad) and ``call(x, params, backend) -> y``."""
    import rectifiers.functional as RF

    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape, generator=g).to(device=device, dtype=dtype)
    c = shape[1]
    params: dict[str, torch.Tensor] = {}
    if act == "relu":
        def call(x, p, b):
            return RF.relu(x, backend=b)
    elif act == "leaky_relu":
        def call(x, p, b):
            return RF.leaky_relu(x, 0.01, backend=b)
    elif act == "prelu":
        params["weight"] = torch.full((c,), 0.25, device=device)

        def call(x, p, b):
            return RF.prelu(x, p["weight"], 1, backend=b)
    elif act == "flexible_relu":
        params["bias"] = torch.full((c,), -1.0, device=device)

        def call(x, p, b):
            return RF.flexible_relu(x, p["bias"], 1, backend=b)
    else:
        nsp = len(shape) - 2
        params["conv_weight"] = (torch.randn((c, 1) + (3,) * nsp, generator=g) * 0.2).to(device)
        params["bn_weight"] = torch.ones(c, device=device)
        params["bn_bias"] = torch.zeros(c, device=device)

        def call(x, p, b):
            return RF.funnel_relu(x, p["conv_weight"], p["bn_weight"], p["bn_bias"], backend=b)
    for t in params.values():
        t.requires_grad_(True)
    return x, params, call


def traffic_bytes(act: str, n: int, esize: int) -> tuple[float, float]:
    """Least bytes a forward and a backward pass must move (see the module docstring)."""
    mask = n / 8
    fwd = 2 * n * esize + mask
    bwd = 2 * n * esize + mask + (n * esize if act == "prelu" else 0)
    return fwd, bwd


def bench_one(timer: Timer, act, shape, dtype, device, impl, copy_ms, copy_graph_ms=float("nan"),
              full: bool = True):
    """Times of one (activation, shape, dtype, backend): synchronous forward, backward and
    forward + backward (``full``), asynchronous and graph-replayed forward + backward, and the
    graph-replayed forward without autograd."""
    x0, params, call = make_case(act, shape, dtype, device)
    x = x0.clone().requires_grad_(True)
    g = torch.randn_like(x0)
    inputs = [x] + list(params.values())

    def fwd(_):
        return call(x, params, impl)

    def setup_bwd():
        return call(x, params, impl)

    def bwd(y):
        torch.autograd.grad(y, inputs, g)

    def fwdbwd(_):
        torch.autograd.grad(call(x, params, impl), inputs, g)

    def fwd_nograd():
        with torch.no_grad():
            call(x0, params, impl)

    t_fb = timer(fwdbwd)
    t_f = timer(fwd) if full else float("nan")
    t_b = timer(bwd, setup_bwd) if full else float("nan")
    t_async = timer.run_async(lambda: fwdbwd(None))
    try:
        t_graph = timer.graph(lambda: fwdbwd(None))
        t_graph_f = timer.graph(fwd_nograd) if full else float("nan")
        graph_error = ""
    except Exception as e:  # not capturable: say so in the table, keep measuring the rest
        t_graph = t_graph_f = float("nan")
        graph_error = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    n = x0.numel()
    fb, bb = traffic_bytes(act, n, x0.element_size())
    copy_bytes = 2 * n * x0.element_size()
    copy_bw = copy_bytes / copy_ms
    return {
        "fwd_ms": t_f, "bwd_ms": t_b, "fwdbwd_ms": t_fb,
        "copy_frac_fwd": (fb / t_f) / copy_bw,
        "copy_frac_bwd": (bb / t_b) / copy_bw,
        "copy_frac_fwdbwd": ((fb + bb) / t_fb) / copy_bw,
        "async_ms": t_async, "graph_ms": t_graph, "graph_fwd_nograd_ms": t_graph_f,
        # the no-grad forward moves exactly a copy's bytes: the plain ratio of the two times
        "copy_frac_graph_fwd": copy_graph_ms / t_graph_f,
        "copy_frac_graph_fwdbwd": ((fb + bb) / t_graph) / (copy_bytes / copy_graph_ms),
        "graph_error": graph_error,
    }


# --- memory -------------------------------------------------------------------------------------


class PlainFReLU(nn.Module):
    """The plain formula ``relu(x) + b`` (per channel), what a user writes without the library."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((c,), -1.0))

    def forward(self, x):
        return torch.relu(x) + self.bias.view(1, -1, 1, 1)


class PlainFunnel(nn.Module):
    """The plain formula: depthwise conv, BatchNorm2d, torch.maximum."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.maximum(x, self.bn(self.conv(x)))


def make_act(act: str, c: int, impl: str) -> nn.Module:
    import rectifiers

    if impl == "torch":
        return {
            "relu": lambda: nn.ReLU(),
            "leaky_relu": lambda: nn.LeakyReLU(0.01),
            "prelu": lambda: nn.PReLU(c),
            "flexible_relu": lambda: PlainFReLU(c),
            "funnel_relu": lambda: PlainFunnel(c),
        }[act]()
    return {
        "relu": lambda: rectifiers.ReLU(backend=impl),
        "leaky_relu": lambda: rectifiers.LeakyReLU(0.01, backend=impl),
        "prelu": lambda: rectifiers.PReLU(c, backend=impl),
        "flexible_relu": lambda: rectifiers.FlexibleReLU(c, backend=impl),
        "funnel_relu": lambda: rectifiers.FunnelReLU(c, backend=impl),
    }[act]()


def small_net(act: str, impl: str, width: int) -> nn.Module:
    """conv -> BN -> act, three times, then a linear head: the activations sit between convs."""
    layers: list[nn.Module] = []
    cin = 3
    for _ in range(3):
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), make_act(act, width, impl)]
        cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
    return nn.Sequential(*layers)


def saved_bytes_per_element(act: str, impl: str, device, dtype) -> float:
    """Bytes the activation keeps for backward per input element: distinct storages saved,
    not counting its parameters, nor its output (which the next conv keeps anyway)."""
    c, hw = 8, 16
    mod = make_act(act, c, impl).to(device=device, dtype=dtype)
    h = torch.randn(4, c, hw, hw, device=device, dtype=dtype, requires_grad=True)
    x = h * 1.0
    seen: dict[int, int] = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = mod(x)
    skip = {p.untyped_storage().data_ptr() for p in mod.parameters()}
    skip.add(y.untyped_storage().data_ptr())
    return sum(b for ptr, b in seen.items() if ptr not in skip) / x.numel()


def step_ms(timer: "Timer", act: str, impl: str, device, dtype, batch: int, hw: int, width: int) -> float:
    """Median time of one training step (forward, loss, backward) of :func:`small_net`."""
    net = small_net(act, impl, width).to(device=device, dtype=dtype)
    x = torch.randn(batch, 3, hw, hw, device=device, dtype=dtype)
    y = torch.randint(0, 10, (batch,), device=device)

    def step(_):
        F.cross_entropy(net(x).float(), y).backward()

    return timer(step)


def peak_memory_mb(act: str, impl: str, device, dtype, batch: int, hw: int, width: int) -> float:
    net = small_net(act, impl, width).to(device=device, dtype=dtype)
    x = torch.randn(batch, 3, hw, hw, device=device, dtype=dtype)
    y = torch.randint(0, 10, (batch,), device=device)
    loss = F.cross_entropy(net(x).float(), y)  # warm-up step (allocations, lazy params, kernels)
    loss.backward()
    net.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = F.cross_entropy(net(x).float(), y)
    loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del net, x, loss
    torch.cuda.empty_cache()
    return peak / 2**20


# --- main ---------------------------------------------------------------------------------------


def _speedups(res: dict, impl: str) -> dict:
    """torch's time over ``impl``'s, per timing."""
    t, r = res["torch"], res[impl]
    return {"speedup_fwd": t["fwd_ms"] / r["fwd_ms"], "speedup_bwd": t["bwd_ms"] / r["bwd_ms"],
            "speedup_fwdbwd": t["fwdbwd_ms"] / r["fwdbwd_ms"], "speedup_async": t["async_ms"] / r["async_ms"],
            "speedup_graph": t["graph_ms"] / r["graph_ms"]}


def time_rows(timer, acts, dtypes, shapes, device, meta, full: bool) -> list[dict]:
    """One row per (shape, dtype, activation, backend), the three backends side by side."""
    rows = []
    for shape in shapes:
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = torch.randn(shape, device=device, dtype=dtype)
            copy_ms = timer(lambda _: x.clone())
            copy_graph_ms = timer.graph(lambda: x.clone())
            del x
            for act in acts:
                if act == "funnel_relu" and len(shape) not in (3, 4, 5):
                    continue
                res = {}
                for impl in IMPLS:
                    res[impl] = bench_one(timer, act, shape, dtype, device, impl, copy_ms, copy_graph_ms, full)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                for impl in IMPLS:
                    rows.append({
                        **meta, "act": act, "impl": impl if impl != "torch" else
                        ("plain formula" if act in ("flexible_relu", "funnel_relu") else "torch.nn"),
                        "shape": "x".join(map(str, shape)), "dtype": dname,
                        "copy_ms": copy_ms, "copy_graph_ms": copy_graph_ms, **res[impl], **_speedups(res, impl),
                    })
    return rows


def memory_rows(timer, acts, dtypes, device, meta, dry: bool) -> list[dict]:
    """Training step of :func:`small_net` at batch 32 and 256 (peak memory, time) and the bytes
    kept for backward, per activation, dtype and backend."""
    mem_rows = []
    for act in acts:
        for dname in dtypes:
            dtype = DTYPES[dname]
            row = {**meta, "act": act, "dtype": dname}
            for impl in IMPLS:
                row[f"saved_B_per_elem_{impl}"] = saved_bytes_per_element(act, impl, device, dtype)
                if device.type == "cuda":
                    batch, hw, width = (32, 64, 64) if not dry else (2, 8, 8)
                    row[f"peak_MiB_{impl}"] = peak_memory_mb(act, impl, device, dtype, batch, hw, width)
                    row[f"step_ms_{impl}"] = step_ms(timer, act, impl, device, dtype, batch, hw, width)
                    # 8x the batch: the GPU's work grows, the host's per-call cost does not
                    row[f"peak8_MiB_{impl}"] = peak_memory_mb(act, impl, device, dtype, 8 * batch, hw, width)
                    row[f"step8_ms_{impl}"] = step_ms(timer, act, impl, device, dtype, 8 * batch, hw, width)
                else:
                    # no allocator statistics on CPU: run the step to exercise the code path only
                    net = small_net(act, impl, 8).to(dtype=dtype)
                    F.cross_entropy(net(torch.randn(2, 3, 8, 8, dtype=dtype)).float(),
                                    torch.zeros(2, dtype=torch.long)).backward()
                    for k in ("peak_MiB", "step_ms", "peak8_MiB", "step8_ms"):
                        row[f"{k}_{impl}"] = float("nan")
            for impl in ("triton", "auto"):
                row[f"peak_saving_{impl}"] = 1 - row[f"peak_MiB_{impl}"] / row["peak_MiB_torch"]
                row[f"peak8_saving_{impl}"] = 1 - row[f"peak8_MiB_{impl}"] / row["peak8_MiB_torch"]
                row[f"step_speedup_{impl}"] = row["step_ms_torch"] / row[f"step_ms_{impl}"]
                row[f"step8_speedup_{impl}"] = row["step8_ms_torch"] / row[f"step8_ms_{impl}"]
            # the earlier runs' column names (Triton's figures)
            row["peak_saving"], row["step_speedup"] = row["peak_saving_triton"], row["step_speedup_triton"]
            row["step8_speedup"] = row["step8_speedup_triton"]
            mem_rows.append(row)
    return mem_rows


def compile_rows(acts, device, meta) -> list[dict]:
    """``torch.compile(mode="reduce-overhead")`` (CUDA graphs) on each module, forward +
    backward, three steps, against the module run eagerly."""
    import rectifiers

    rows = []
    for act in acts:
        for impl in ("triton", "auto"):
            torch.manual_seed(0)
            mod = make_act(act, 16, impl).to(device)
            x = torch.randn(8, 16, 12, 12, device=device)
            ok, err, t0 = True, "", time.perf_counter()
            try:
                torch._dynamo.reset()
                comp = torch.compile(mod, mode="reduce-overhead", fullgraph=True)
                for _ in range(3):
                    xi = x.clone().requires_grad_()
                    y = comp(xi)
                    y.sum().backward()
                xe = x.clone().requires_grad_()
                ye = mod(xe)
                ye.sum().backward()
                ok = bool(torch.allclose(y.detach(), ye.detach(), rtol=1e-4, atol=1e-4)
                          and torch.allclose(xi.grad, xe.grad, rtol=1e-4, atol=1e-4))
            except Exception as e:
                ok, err = False, f"{type(e).__name__}: {str(e).splitlines()[0][:100]}"
            rows.append({**meta, "act": act, "impl": impl, "ok": ok, "seconds": time.perf_counter() - t0,
                         "error": err, "rectifiers": getattr(rectifiers, "__version__", "")})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cuda (default) for the real figures; cpu runs the interpreted kernels "
                         "(TRITON_INTERPRET=1), only to check the script")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes and few repetitions")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 15; 2 dry)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed repetitions (default 3; 1 dry)")
    ap.add_argument("--acts", default=",".join(ACTS), help="comma-separated subset of " + ",".join(ACTS))
    ap.add_argument("--dtypes", default="bf16,fp32", help="comma-separated subset of bf16,fp32")
    ap.add_argument("--no-sweep", action="store_true", help="skip the size sweep for the thresholds")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile(reduce-overhead) check")
    ap.add_argument("--out", default=None, help="output folder (default $OUT, else benchmarks/results)")
    args = ap.parse_args(argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        _refuse("no CUDA device here (torch.cuda.is_available() is False): the figures need a GPU. "
                "To check the script itself: TRITON_INTERPRET=1 python benchmarks/gpu_bench.py "
                "--dry-run --device cpu")
    if args.device == "cpu":
        if not args.dry_run:
            _refuse("--device cpu runs Triton's interpreter and is only meant with --dry-run")
        os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton
    except ImportError:
        _refuse("the Triton backend needs the 'triton' package: pip install 'rectifiers[triton]'")
    acts = [a.strip() for a in args.acts.split(",") if a.strip()]
    for a in acts:
        if a not in ACTS:
            _refuse(f"--acts: unknown activation {a!r}; expected a subset of {','.join(ACTS)}")
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in DTYPES:
            _refuse(f"--dtypes: unknown dtype {d!r}; expected a subset of bf16,fp32")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_thresholds  # beside this script
    from gpu_report import fmt_table as _fmt_table, print_goals

    device = torch.device(args.device)
    dry = args.dry_run
    timer = Timer(device, args.warmup if args.warmup is not None else (1 if dry else 3),
                  args.reps if args.reps is not None else (2 if dry else 15))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    meta = {"device": name, "torch": torch.__version__, "triton": triton.__version__}
    print(f"# {meta['device']}  torch {meta['torch']}  triton {meta['triton']}"
          f"{'  (dry run: the figures mean nothing)' if dry else ''}", flush=True)
    started = time.perf_counter()

    rows = time_rows(timer, acts, dtypes, DRY_SHAPES if dry else SHAPES, device, meta, full=True)
    print("\n## forward + backward: median ms, synchronous (sync), asynchronous (async, calls in a row) "
          "and device time by CUDA-graph replay (graph); speed-up = torch / this, same run; "
          "copy_frac_graph_fwd = a copy's graph time / the no-grad forward's (same bytes)\n")
    print(_fmt_table(rows, ["act", "impl", "shape", "dtype", "fwdbwd_ms", "speedup_fwdbwd", "async_ms",
                            "speedup_async", "graph_ms", "speedup_graph", "copy_frac_graph_fwd",
                            "copy_frac_fwdbwd", "graph_error"]), flush=True)
    print(f"({time.perf_counter() - started:.0f} s)", flush=True)

    sweep = []
    if not args.no_sweep:
        sweep = time_rows(timer, acts, dtypes, DRY_SWEEP if dry else SWEEP, device, meta, full=False)
        print("\n## size sweep for the thresholds (forward + backward)\n")
        print(_fmt_table([r for r in sweep if r["impl"] != "auto"],
                         ["act", "impl", "shape", "dtype", "fwdbwd_ms", "speedup_fwdbwd", "speedup_async",
                          "speedup_graph"]), flush=True)
        print(f"({time.perf_counter() - started:.0f} s)", flush=True)
    table = gpu_thresholds.derive_thresholds([rows + sweep])
    for key in list(table):
        if key[0] == "relu":
            table[key] = None  # the Triton backend's relu is torch.relu itself: nothing to gain
    print("\n## thresholds of backend='auto' re-derived from this run (rule: gpu_thresholds.py)\n")
    print(f'RECTIFIERS_TRITON_MIN_NUMEL="{gpu_thresholds.env_form(table)}"')
    print(f'DEFAULTS = "{gpu_thresholds.defaults_form(table)}"  (rectifiers/ops/_dispatch.py)', flush=True)

    mem_rows = memory_rows(timer, acts, dtypes, device, meta, dry)
    print("\n## training step of a 3-block conv net (64x64 images, width 64) at batch 32 and 256 "
          "(8): peak memory above the step's start (MiB), median step time (ms; speed-up = torch / "
          "this), bytes kept for backward per activation element\n")
    print(_fmt_table(mem_rows, ["act", "dtype", "peak_MiB_torch", "peak_MiB_triton", "peak_MiB_auto",
                                "peak8_MiB_torch", "peak8_MiB_triton", "peak8_MiB_auto",
                                "step_speedup_triton", "step_speedup_auto", "step8_speedup_triton",
                                "step8_speedup_auto", "saved_B_per_elem_torch", "saved_B_per_elem_triton",
                                "saved_B_per_elem_auto"]), flush=True)

    comp_rows = []
    if not args.no_compile and device.type == "cuda":
        comp_rows = compile_rows(acts, device, meta)
        print('\n## torch.compile(mode="reduce-overhead", fullgraph=True), forward + backward\n')
        print(_fmt_table(comp_rows, ["act", "impl", "ok", "seconds", "error"]), flush=True)

    print_goals(rows, mem_rows, comp_rows, device)
    out = Path(args.out or os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    tag = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-") or "device"
    tag += "-dry" if dry else ""
    for fname, data in ((f"gpu-{tag}-time.csv", rows), (f"gpu-{tag}-sweep.csv", sweep),
                        (f"gpu-{tag}-memory.csv", mem_rows), (f"gpu-{tag}-compile.csv", comp_rows)):
        if not data:
            continue
        with open(out / fname, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(data[0].keys()))
            w.writeheader()
            w.writerows(data)
        print(f"wrote {out / fname}")
    print(f"gpu_bench: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
