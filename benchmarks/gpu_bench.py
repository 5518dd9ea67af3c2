"""GPU benchmark of the Triton backend against torch.nn (or the plain formula).

One command, installs nothing::

    python benchmarks/gpu_bench.py                 # on a CUDA machine, a few minutes
    TRITON_INTERPRET=1 python benchmarks/gpu_bench.py --dry-run --device cpu   # proves the script

For each activation (relu, leaky_relu, prelu per channel, flexible_relu per channel, funnel)
x shape x dtype: median forward (recording autograd), backward, and forward + backward times of
``backend="torch"`` (torch.nn's function for relu / leaky_relu / prelu, the plain formula for
FReLU and Funnel) and ``backend="triton"``, timed side by side in one run with CUDA events; the
speed-up; and the effective bandwidth as a fraction of a device-to-device copy (``x.clone()``)
timed in the same run. Effective bandwidth counts the least traffic an element-wise pass needs:
forward reads x and writes y, backward reads g and writes dx (PReLU's backward also reads y),
plus the 1-bit mask; so 1.0 means "as fast as a copy of the same bytes".

Then the peak memory (``torch.cuda.max_memory_allocated``) of one training step of a small conv
net, with torch.nn's activations vs rectifiers' Triton ones, and the bytes each activation keeps
for backward (``saved_tensors_hooks``, distinct storages; measured on CPU too).

Writes CSV files (timings, memory) to ``$OUT`` if set, else ``benchmarks/results/``, named
``gpu-<device>-*.csv``, and prints the tables and the issue's goals.
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

SHAPES = [(32, 64, 56, 56), (16, 512, 768), (64, 256, 56, 56), (8, 4096, 4096)]
DRY_SHAPES = [(2, 8, 9, 7), (2, 16, 33)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
ACTS = ("relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu")


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


def bench_one(timer: Timer, act, shape, dtype, device, impl, copy_ms):
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

    t_f = timer(fwd)
    t_b = timer(bwd, setup_bwd)
    t_fb = timer(fwdbwd)
    n = x0.numel()
    fb, bb = traffic_bytes(act, n, x0.element_size())
    copy_bytes = 2 * n * x0.element_size()
    copy_bw = copy_bytes / copy_ms
    return {
        "fwd_ms": t_f, "bwd_ms": t_b, "fwdbwd_ms": t_fb,
        "copy_frac_fwd": (fb / t_f) / copy_bw,
        "copy_frac_bwd": (bb / t_b) / copy_bw,
        "copy_frac_fwdbwd": ((fb + bb) / t_fb) / copy_bw,
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
        "relu": lambda: rectifiers.ReLU(backend="triton"),
        "leaky_relu": lambda: rectifiers.LeakyReLU(0.01, backend="triton"),
        "prelu": lambda: rectifiers.PReLU(c, backend="triton"),
        "flexible_relu": lambda: rectifiers.FlexibleReLU(c, backend="triton"),
        "funnel_relu": lambda: rectifiers.FunnelReLU(c, backend="triton"),
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


def _fmt_table(rows: list[dict], cols: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(cell(r[c]).ljust(w) for c, w in zip(cols, widths)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cuda (default) for the real figures; cpu runs the interpreted kernels "
                         "(TRITON_INTERPRET=1), only to check the script")
    ap.add_argument("--dry-run", action="store_true", help="tiny shapes and few repetitions")
    ap.add_argument("--reps", type=int, default=None, help="timed repetitions (default 20; 2 dry)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed repetitions (default 5; 1 dry)")
    ap.add_argument("--acts", default=",".join(ACTS), help="comma-separated subset of " + ",".join(ACTS))
    ap.add_argument("--dtypes", default="bf16,fp32", help="comma-separated subset of bf16,fp32")
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

    device = torch.device(args.device)
    dry = args.dry_run
    shapes = DRY_SHAPES if dry else SHAPES
    timer = Timer(device, args.warmup if args.warmup is not None else (1 if dry else 5),
                  args.reps if args.reps is not None else (2 if dry else 20))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    meta = {"device": name, "torch": torch.__version__, "triton": triton.__version__}
    print(f"# {meta['device']}  torch {meta['torch']}  triton {meta['triton']}"
          f"{'  (dry run: the figures mean nothing)' if dry else ''}")

    rows = []
    for shape in shapes:
        for dname in dtypes:
            dtype = DTYPES[dname]
            x = torch.randn(shape, device=device, dtype=dtype)
            copy_ms = timer(lambda _: x.clone())
            del x
            for act in acts:
                if act == "funnel_relu" and len(shape) not in (3, 4, 5):
                    continue
                res = {}
                for impl in ("torch", "triton"):
                    res[impl] = bench_one(timer, act, shape, dtype, device, impl, copy_ms)
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                for impl in ("torch", "triton"):
                    r = res[impl]
                    rows.append({
                        **meta, "act": act, "impl": impl if impl == "triton" else
                        ("plain formula" if act in ("flexible_relu", "funnel_relu") else "torch.nn"),
                        "shape": "x".join(map(str, shape)), "dtype": dname,
                        "copy_ms": copy_ms, **r,
                        "speedup_fwd": res["torch"]["fwd_ms"] / r["fwd_ms"],
                        "speedup_bwd": res["torch"]["bwd_ms"] / r["bwd_ms"],
                        "speedup_fwdbwd": res["torch"]["fwdbwd_ms"] / r["fwdbwd_ms"],
                    })

    cols = ["act", "impl", "shape", "dtype", "fwd_ms", "bwd_ms", "fwdbwd_ms", "speedup_fwdbwd",
            "copy_frac_fwd", "copy_frac_bwd", "copy_frac_fwdbwd"]
    print("\n## time (median ms; speed-up = torch / this, same run; copy_frac = effective "
          "bandwidth / x.clone()'s)\n")
    print(_fmt_table(rows, cols))

    mem_rows = []
    for act in acts:
        for dname in dtypes:
            dtype = DTYPES[dname]
            row = {**meta, "act": act, "dtype": dname}
            for impl in ("torch", "triton"):
                row[f"saved_B_per_elem_{impl}"] = saved_bytes_per_element(act, impl, device, dtype)
                if device.type == "cuda":
                    batch, hw, width = (32, 64, 64) if not dry else (2, 8, 8)
                    row[f"peak_MiB_{impl}"] = peak_memory_mb(act, impl, device, dtype, batch, hw, width)
                    row[f"step_ms_{impl}"] = step_ms(timer, act, impl, device, dtype, batch, hw, width)
                    # 8x the batch: the GPU's work grows, the host's per-call cost does not
                    row[f"step8_ms_{impl}"] = step_ms(timer, act, impl, device, dtype, 8 * batch, hw, width)
                else:
                    # no allocator statistics on CPU: run the step to exercise the code path only
                    net = small_net(act, impl, 8).to(dtype=dtype)
                    F.cross_entropy(net(torch.randn(2, 3, 8, 8, dtype=dtype)).float(),
                                    torch.zeros(2, dtype=torch.long)).backward()
                    row[f"peak_MiB_{impl}"] = float("nan")
                    row[f"step_ms_{impl}"] = row[f"step8_ms_{impl}"] = float("nan")
            row["peak_saving"] = 1 - row["peak_MiB_triton"] / row["peak_MiB_torch"]
            row["step_speedup"] = row["step_ms_torch"] / row["step_ms_triton"]
            row["step8_speedup"] = row["step8_ms_torch"] / row["step8_ms_triton"]
            mem_rows.append(row)
    print("\n## training step of a 3-block conv net (batch 32, 64x64, width 64): peak memory above "
          "the step's start (MiB), median step time (ms; speed-up = torch / triton) at batch 32 "
          "and at batch 256 (step8), and bytes kept for backward per activation element\n")
    print(_fmt_table(mem_rows, ["act", "dtype", "peak_MiB_torch", "peak_MiB_triton", "peak_saving",
                                "step_ms_torch", "step_ms_triton", "step_speedup",
                                "step8_ms_torch", "step8_ms_triton", "step8_speedup",
                                "saved_B_per_elem_torch", "saved_B_per_elem_triton"]))

    print("\n## goals")
    ew = [r for r in rows if r["impl"] == "triton" and r["act"] in ("relu", "leaky_relu", "prelu", "flexible_relu")]
    if ew:
        worst = min(ew, key=lambda r: r["copy_frac_fwdbwd"])
        print(f"element-wise kernels >= 0.85 of copy bandwidth (fwd+bwd): worst "
              f"{worst['copy_frac_fwdbwd']:.2f} ({worst['act']} {worst['shape']} {worst['dtype']})")
    pr = [r for r in rows if r["impl"] == "triton" and r["act"] == "prelu"]
    if pr:
        print(f"PReLU fwd+bwd >= 1.5x torch.nn.PReLU: min {min(r['speedup_fwdbwd'] for r in pr):.2f}x")
    if device.type == "cuda":
        print(f"training-step peak memory >= 20% below torch.nn: min saving "
              f"{min(r['peak_saving'] for r in mem_rows):.0%}")

    out = Path(args.out or os.environ.get("OUT") or Path(__file__).resolve().parent / "results")
    out.mkdir(parents=True, exist_ok=True)
    tag = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-") or "device"
    tag += "-dry" if dry else ""
    for fname, data in ((f"gpu-{tag}-time.csv", rows), (f"gpu-{tag}-memory.csv", mem_rows)):
        with open(out / fname, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(data[0].keys()))
            w.writeheader()
            w.writerows(data)
        print(f"wrote {out / fname}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
