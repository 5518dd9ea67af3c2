"""Time and memory of every activation (``rectifiers bench`` / ``python -m rectifiers.bench``).

For each activation x implementation x shape x dtype it measures, as medians over repetitions:

* ``fwd``: forward with autograd recording (training), ``bwd``: backward alone,
  ``fwdbwd``: forward + backward, ``nograd``: forward under ``torch.no_grad()``;
* the same figures for ``torch.nn`` (or the plain formula where torch has no such module) and
  for a plain copy ``x.clone()``, timed in the same repetitions, and the ratios to both;
* the extra bytes kept for backward per activation element, as in a conv -> act -> conv block:
  distinct storages saved by the activation, except its output (the next layer keeps that).

Implementations: ``torch`` (``torch.nn.ReLU`` / ``LeakyReLU`` / ``PReLU``; FReLU as
``relu(x) + b``; the funnel as ``nn.Conv2d`` + ``nn.BatchNorm2d`` + ``torch.maximum``),
``eager`` (rectifiers' eager backend), ``compiled`` (the rectifiers module under
``torch.compile(fullgraph=True)``) and, on request, ``torch_compiled`` (the ``torch`` module
compiled the same way: what the compiler makes of torch's own formula, the yardstick of
``compiled``). Within each repetition every implementation runs in turn, so that the noise of a
shared machine hits all of them alike; each runs an untimed step just before its timed one, so
that it meets the allocator in the state its own steps leave (as in a training loop). Without
that, glibc's malloc hands a large buffer back to the system at one implementation's free and
page-faults it in again at the next one's allocation, and which implementation pays for that
changed from run to run (ratios between identical kernels moved by up to 2x). Each timed call
also starts with the CPU's caches evicted, as a network's layers find them (``--warm-cache``
turns that off; see ``_Inputs``).

Compiled implementations are compiled during the warm-up (a training graph and a no_grad graph
each); the column ``compiles_timed`` counts the graphs Dynamo compiled during the timed
repetitions, which must stay 0 for the times to mean anything (a nonzero count is also logged).
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "IMPLEMENTATIONS",
    "DEFAULT_IMPLS",
    "DEFAULT_SHAPES",
    "QUICK_SHAPES",
    "saved_bytes",
    "extra_bytes_per_element",
    "block_extra_bytes_per_element",
    "make_module",
    "run_benchmark",
    "goals_table",
    "read_csv",
    "write_csv",
    "format_table",
]

#: Activation names of the benchmark (``prelu``/``frelu`` per channel; ``*_scalar`` shared).
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "prelu_scalar", "frelu", "frelu_channel", "funnel")
IMPLEMENTATIONS = ("torch", "eager", "compiled", "torch_compiled")
#: What runs when ``--impls`` is not given (``torch_compiled`` is asked for by name).
DEFAULT_IMPLS = ("torch", "eager", "compiled")
DEFAULT_SHAPES: tuple[tuple[int, ...], ...] = ((32, 64, 56, 56), (16, 512, 768))
QUICK_SHAPES: tuple[tuple[int, ...], ...] = ((8, 16, 24, 24),)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


# ---------------------------------------------------------------------------------------------
# Memory: bytes kept for backward, counted per distinct storage


def saved_bytes(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, dict[int, int]]:
    """Run ``fn`` recording every tensor autograd saves; returns (output, {storage ptr: bytes})."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, seen


def extra_bytes_per_element(act: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Bytes the activation keeps for backward per element of ``x``, beyond its own output.

    ``x`` is taken as the output of a previous layer that does not keep it (a conv keeps its
    input, not its output), so keeping ``x`` counts; the output is kept by the next layer anyway,
    so keeping it does not.
    """
    h = x.detach().clone().requires_grad_(x.is_floating_point())
    h2 = h * 1.0  # a non-leaf, as the output of a previous layer would be
    y, seen = saved_bytes(lambda: act(h2))
    seen.pop(y.untyped_storage().data_ptr(), None)
    seen.pop(h.untyped_storage().data_ptr(), None)  # h2 = h * 1.0 saves nothing, but be safe
    return sum(seen.values()) / x.numel()


def block_extra_bytes_per_element(act: nn.Module, x: torch.Tensor) -> float:
    """Extra bytes per activation element kept by conv -> act -> conv, over conv -> conv.

    ``x`` is (N, C, H, W); both convs are 1x1 ``nn.Conv2d(C, C)`` in x's dtype.
    """
    c = x.shape[1]
    conv1 = nn.Conv2d(c, c, 1).to(x.dtype)
    conv2 = nn.Conv2d(c, c, 1).to(x.dtype)
    xin = x.detach().requires_grad_()
    _, with_act = saved_bytes(lambda: conv2(act(conv1(xin))))
    _, without = saved_bytes(lambda: conv2(conv1(xin)))
    act_elems = x.numel()
    return (sum(with_act.values()) - sum(without.values())) / act_elems


# ---------------------------------------------------------------------------------------------
# The implementations


class _PlainFReLU(nn.Module):
    """FReLU written plainly: ``relu(x) + b`` (two passes, autograd keeps a full tensor)."""

    def __init__(self, c: int, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((c,), -1.0))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [1] * x.dim()
        if self.bias.numel() > 1:
            shape[self.dim] = -1
        return torch.relu(x) + self.bias.to(x.dtype).reshape(shape)


class _PlainFunnel(nn.Module):
    """The funnel's plain formula: depthwise conv + BatchNorm + ``torch.maximum``."""

    def __init__(self, c: int, spatial: int) -> None:
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[spatial - 1]
        bn = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[spatial - 1]
        self.conv = conv(c, c, 3, padding=1, groups=c, bias=False)
        self.bn = bn(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, self.bn(self.conv(x)))


def make_module(activation: str, impl: str, shape: Sequence[int], dtype: torch.dtype) -> nn.Module:
    """The module of ``activation`` for implementation ``torch`` or ``eager`` (channels at dim 1)."""
    import rectifiers as R

    c = shape[1] if len(shape) > 1 else 1
    backend = "eager"
    if activation == "relu":
        m: nn.Module = nn.ReLU() if impl == "torch" else R.ReLU(backend=backend)
    elif activation == "leaky_relu":
        m = nn.LeakyReLU(0.01) if impl == "torch" else R.LeakyReLU(0.01, backend=backend)
    elif activation in ("prelu", "prelu_scalar"):
        n = c if activation == "prelu" else 1
        m = nn.PReLU(n) if impl == "torch" else R.PReLU(n, backend=backend)
        if n > 1:  # trained slopes differ per channel: do not let a constant init flatter anyone
            with torch.no_grad():
                m.weight.copy_(torch.linspace(0.05, 0.5, n))
    elif activation in ("frelu", "frelu_channel"):
        n = c if activation == "frelu_channel" else 1
        m = _PlainFReLU(n, 1) if impl == "torch" else R.FReLU(n, backend=backend)
    elif activation == "funnel":
        spatial = len(shape) - 2
        if spatial not in (1, 2, 3):
            raise ValueError(f"funnel needs a 3-D to 5-D shape, got {tuple(shape)}")
        if impl == "torch":
            m = _PlainFunnel(c, spatial)
        else:
            cls = {1: R.FunnelReLU1d, 2: R.FunnelReLU, 3: R.FunnelReLU3d}[spatial]
            m = cls(c, backend=backend)
    else:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    return m.to(dtype).train()


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass
class _Case:
    name: str
    module: nn.Module
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in _METRICS})
    extra_bytes: float = float("nan")
    error: str = ""
    compiles_timed: int = 0


_METRICS = ("fwd", "bwd", "fwdbwd", "nograd")


def _now() -> float:
    return time.perf_counter()


def _zero(m: nn.Module, x: torch.Tensor) -> None:
    x.grad = None
    for p in m.parameters():
        p.grad = None


def _l3_bytes() -> int:
    """The CPU's last-level cache in bytes (sysconf, then Linux sysfs), or 64 MiB if unknown."""
    for name in ("SC_LEVEL4_CACHE_SIZE", "SC_LEVEL3_CACHE_SIZE"):
        try:
            v = os.sysconf(name)
        except (ValueError, OSError):
            continue
        if v and v > 0:
            return int(v)
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        try:
            with open(os.path.join(base, d, "size")) as f:
                size = f.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
            best = max(best, int(size.rstrip("KMG")) * mult)
        except (OSError, ValueError):
            continue
    return best or 64 << 20


class _Inputs:
    """The input and gradient of the timed calls, with the CPU's caches evicted before each.

    With ``cold=True`` every call (forward, backward, forward + backward, no_grad forward, the
    copy) starts after a pass over a buffer the size of the last-level cache, so that it finds
    its tensors in memory, not in cache: that is how a network's layers find them (by an
    activation's backward, every other layer has run since its forward). Timing the same input
    call after call instead keeps it in a large cache (480 MiB on the Xeon of the recorded
    results), which favoured what reads the input in backward (``torch.nn.LeakyReLU``) over
    what reads the output by 10-60%; with the caches evicted the two run alike.
    """

    def __init__(self, x: torch.Tensor, g: torch.Tensor, buf: torch.Tensor | None) -> None:
        """``buf``: the buffer passed over to evict the caches (last-level-cache sized, shared by
        every case of a run), or ``None`` for warm calls."""
        self.x, self.g, self.buf = x, g, buf

    def flush(self) -> None:
        if self.buf is not None:
            self.buf.add_(1.0)

    def __call__(self, timed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        if timed:
            self.flush()
        return self.x, self.g


def _measure_once(m: nn.Module, inputs: _Inputs, timed: bool = True) -> dict[str, float]:
    out: dict[str, float] = {}
    x, g = inputs(timed)
    _zero(m, x)
    t0 = _now()
    y = m(x)
    out["fwd"] = _now() - t0
    if timed:
        inputs.flush()
    t0 = _now()
    y.backward(g)
    out["bwd"] = _now() - t0
    del y
    _zero(m, x)
    x, g = inputs(timed)
    _zero(m, x)
    t0 = _now()
    m(x).backward(g)
    out["fwdbwd"] = _now() - t0
    _zero(m, x)
    return out


def _measure_nograd(m: nn.Module, inputs: _Inputs, timed: bool = True) -> float:
    x, _ = inputs(timed)
    with torch.no_grad():
        t0 = _now()
        y = m(x)
        dt = _now() - t0
    del y
    return dt


def _clone_times(inputs: _Inputs) -> float:
    x = inputs()[0].detach()
    t0 = _now()
    y = x.clone()
    dt = _now() - t0
    del y
    return dt


def _graphs_compiled() -> int:
    """How many graphs Dynamo has compiled in this process so far (recompilations included)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Input layouts of ``--layouts``.
LAYOUTS = ("contiguous", "channels_last", "strided")


def _laid_out(t: torch.Tensor, layout: str) -> torch.Tensor:
    """``t``'s values in the given memory layout: contiguous, channels-last, or a strided view
    (every other element of a last dimension twice as long: not dense)."""
    if layout == "channels_last":
        return t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    if layout == "strided":
        wide = torch.empty(t.shape[:-1] + (2 * t.shape[-1],), dtype=t.dtype)
        view = wide[..., ::2]
        view.copy_(t)
        return view
    if layout != "contiguous":
        raise ValueError(f"layouts: expected each of {', '.join(LAYOUTS)}; got {layout!r}")
    return t.contiguous()


def run_benchmark(
    activations: Sequence[str] = ACTIVATIONS,
    shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
    dtypes: Sequence[str] = ("fp32", "bf16"),
    impls: Sequence[str] = DEFAULT_IMPLS,
    repeats: int = 15,
    warmup: int = 2,
    compile_backend: str = "inductor",
    seed: int = 0,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    layouts: Sequence[str] = ("contiguous",),
    cold: bool = True,
) -> list[dict[str, object]]:
    """Run the benchmark; returns one row (a dict, the CSV columns) per case.

    ``layouts``: the input's memory layout, among :data:`LAYOUTS` (``channels_last`` applies to
    4-D and 5-D shapes only and is skipped for others); every implementation gets the same
    input, so the ratios compare them on that layout. ``cold``: evict the CPU's caches before
    every timed call, as a network's layers find them (see :class:`_Inputs`).
    """
    rows: list[dict[str, object]] = []
    meta = {
        "device": "cpu",
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cache": "cold" if cold else "warm",
    }
    evict = torch.zeros(_l3_bytes() // 4) if cold else None
    for dname in dtypes:
        dtype = DTYPES[dname]
        for shape, layout in [(tuple(int(s) for s in sh), lay) for sh in shapes for lay in layouts]:
            if layout == "channels_last" and len(shape) not in (4, 5):
                continue
            gen = torch.Generator().manual_seed(seed)
            x = _laid_out(torch.randn(shape, generator=gen).to(dtype), layout).requires_grad_()
            g = _laid_out(torch.randn(shape, generator=gen).to(dtype), layout)
            inputs = _Inputs(x, g, evict)
            cases: list[tuple[str, _Case]] = []
            if any(i.endswith("compiled") for i in impls):
                # Each (shape, dtype) compiles afresh: the shared functionals would otherwise
                # reach Dynamo's recompile limit, which fullgraph=True turns into an error.
                torch._dynamo.reset()
            for act in activations:
                if act == "funnel" and len(shape) not in (3, 4, 5):
                    continue
                for impl in impls:
                    label = f"{act}/{impl}"
                    try:
                        if impl in ("compiled", "torch_compiled"):
                            base = make_module(act, "eager" if impl == "compiled" else "torch", shape, dtype)
                            mod: nn.Module = torch.compile(base, fullgraph=True, backend=compile_backend)
                        else:
                            base = mod = make_module(act, impl, shape, dtype)
                        case = _Case(label, mod)
                        log(f"[bench] {dname} {shape} {label}: warm-up")
                        for _ in range(warmup):
                            _measure_once(mod, inputs, timed=False)
                            _measure_nograd(mod, inputs, timed=False)
                        case.extra_bytes = _extra_bytes_of(mod, x)
                    except Exception as e:  # noqa: BLE001 - a failing case is reported, not fatal
                        case = _Case(label, nn.Identity(), error=f"{type(e).__name__}: {e}"[:200])
                        log(f"[bench] {label} failed: {case.error}")
                    cases.append((act, case))
            clone_t: list[float] = []
            for r in range(repeats):
                clone_t.append(_clone_times(inputs))
                for _, case in cases:
                    if case.error:
                        continue
                    n0 = _graphs_compiled()
                    # An untimed step first: the allocator then holds this implementation's own
                    # pattern of blocks, as in a training loop, instead of the previous one's.
                    _measure_once(case.module, inputs, timed=False)
                    for k, v in _measure_once(case.module, inputs).items():
                        case.times[k].append(v)
                    case.compiles_timed += _graphs_compiled() - n0
                # The no_grad forwards in a round of their own: each then finds the allocator
                # as another no_grad forward left it (after a training step, a fresh output may
                # page-fault or reuse a freed block, depending on what that step freed).
                for _, case in cases:
                    if not case.error:
                        n0 = _graphs_compiled()
                        _measure_nograd(case.module, inputs, timed=False)  # untimed, as above
                        case.times["nograd"].append(_measure_nograd(case.module, inputs))
                        case.compiles_timed += _graphs_compiled() - n0
                clone_t.append(_clone_times(inputs))
            clone_ms = statistics.median(clone_t) * 1e3
            med = {
                case.name: {k: statistics.median(v) * 1e3 for k, v in case.times.items() if v}
                for _, case in cases
            }
            leaky_nn = med.get("leaky_relu/torch", {}).get("fwdbwd")
            for _, case in cases:
                if case.compiles_timed:
                    log(f"[bench] {dname} {shape} {case.name}: {case.compiles_timed} graph(s) compiled "
                        "during the timed repetitions: its times include compilation")
            for act, case in cases:
                impl = case.name.split("/", 1)[1]
                row: dict[str, object] = dict(meta)
                row.update(
                    dtype=dname, shape="x".join(map(str, shape)), layout=layout, activation=act, impl=impl,
                    repeats=repeats, clone_ms=round(clone_ms, 4), error=case.error,
                    extra_bytes_per_elem=round(case.extra_bytes, 3), compiles_timed=case.compiles_timed,
                )
                ref_t = med.get(f"{act}/torch", {})
                for k in _METRICS:
                    t = med.get(case.name, {}).get(k)
                    row[f"{k}_ms"] = None if t is None else round(t, 4)
                    row[f"{k}_vs_torch"] = None if t is None or not ref_t.get(k) else round(t / ref_t[k], 3)
                    row[f"{k}_vs_clone"] = None if t is None else round(t / clone_ms, 3)
                t = med.get(case.name, {}).get("fwdbwd")
                row["fwdbwd_vs_nn_leaky"] = None if t is None or not leaky_nn else round(t / leaky_nn, 3)
                rows.append(row)
            log(f"[bench] {dname} {shape} {layout}: done")
    return rows


def _extra_bytes_of(mod: nn.Module, x: torch.Tensor) -> float:
    try:
        return extra_bytes_per_element(mod, x)
    except Exception:  # noqa: BLE001 - a compiled graph may refuse saved-tensor hooks
        return float("nan")


COLUMNS = (
    "device", "cpu", "threads", "torch", "cache", "dtype", "shape", "layout", "activation", "impl", "repeats",
    "fwd_ms", "bwd_ms", "fwdbwd_ms", "nograd_ms", "clone_ms",
    "fwd_vs_torch", "bwd_vs_torch", "fwdbwd_vs_torch", "nograd_vs_torch",
    "fwd_vs_clone", "bwd_vs_clone", "fwdbwd_vs_clone", "nograd_vs_clone",
    "fwdbwd_vs_nn_leaky", "extra_bytes_per_elem", "compiles_timed", "error",
)


def _fmt(v: object) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def format_table(rows: Sequence[dict[str, object]], markdown: bool = False) -> str:
    """The rows as a text (or Markdown) table of the main columns."""
    cols = ("dtype", "shape", "layout", "activation", "impl", "fwd_ms", "bwd_ms", "fwdbwd_ms", "nograd_ms",
            "fwdbwd_vs_torch", "nograd_vs_torch", "fwdbwd_vs_clone", "fwdbwd_vs_nn_leaky",
            "extra_bytes_per_elem")
    heads = ("dtype", "shape", "layout", "activation", "impl", "fwd ms", "bwd ms", "f+b ms", "no_grad ms",
             "f+b / torch", "no_grad / torch", "f+b / clone", "f+b / nn.Leaky", "extra B/elem")
    def cell(r: dict[str, object], c: str) -> str:
        if c == "impl" and r.get("error"):
            return f"{r['impl']} (failed)"
        if c == "impl" and r.get("compiles_timed"):  # its times include compilation
            return f"{r['impl']} (recompiled)"
        return _fmt(r.get(c))

    body = [[cell(r, c) for c in cols] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        lines += ["| " + " | ".join(b) + " |" for b in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


#: The goals of the benchmark's issue: (label, activation, metric, baseline, bound).
#: ``metric`` is a row column; the goal is met when the eager row's value is <= bound.
GOALS: tuple[tuple[str, str, str, float], ...] = (
    ("LeakyReLU f+b within 1.1x of torch.nn.LeakyReLU", "leaky_relu", "fwdbwd_vs_nn_leaky", 1.1),
    ("FReLU (1 bias) f+b within 1.1x of torch.nn.LeakyReLU", "frelu", "fwdbwd_vs_nn_leaky", 1.1),
    ("FReLU (per channel) f+b within 1.1x of torch.nn.LeakyReLU", "frelu_channel", "fwdbwd_vs_nn_leaky", 1.1),
    ("PReLU (per channel) f+b at least 2x faster than torch.nn.PReLU", "prelu", "fwdbwd_vs_torch", 0.5),
    ("PReLU (1 slope) f+b at least 2x faster than torch.nn.PReLU", "prelu_scalar", "fwdbwd_vs_torch", 0.5),
    ("Funnel f+b at least 1.5x faster than its plain formula (NCHW)", "funnel", "fwdbwd_vs_torch", 1 / 1.5),
)


def goals_table(rows: Sequence[dict[str, object]], noise: float = 0.05) -> str:
    """Markdown table of the issue's goals against the eager rows: value, bound, met or not.

    The no_grad goal ("no slower than torch.nn") counts as met within ``noise`` (5%), the
    run-to-run spread of a shared machine.
    """
    out = ["| goal | dtype | shape | layout | measured | bound | met |", "|---|---|---|---|---|---|---|"]
    eager = [r for r in rows if r.get("impl") == "eager" and not r.get("error")]
    for label, act, col, bound in GOALS:
        for r in eager:
            if r["activation"] != act or r.get(col) is None:
                continue
            v = float(r[col])  # type: ignore[arg-type]
            out.append(f"| {label} | {r['dtype']} | {r['shape']} | {r.get('layout', 'contiguous')} | {v:.2f} | <= {bound:.2f} | "
                       f"{'met' if v <= bound else 'not met'} |")
    for r in eager:
        v = r.get("nograd_vs_torch")
        if v is None:
            continue
        out.append(f"| {r['activation']}: no_grad forward no slower than torch | {r['dtype']} | "
                   f"{r['shape']} | {r.get('layout', 'contiguous')} | {float(v):.2f} | <= 1 (+{noise:.0%} noise) | "  # type: ignore[arg-type]
                   f"{'met' if float(v) <= 1 + noise else 'not met'} |")  # type: ignore[arg-type]
    mem_bound = {"relu": 0.0, "leaky_relu": 0.0, "prelu": 0.0, "prelu_scalar": 0.0,
                 "frelu": 1.0, "frelu_channel": 1.0}
    plain = {(r["dtype"], r["shape"], r.get("layout", "contiguous")): r for r in rows
             if r.get("impl") == "torch" and r.get("activation") == "funnel"}
    for r in eager:
        eb = float(r["extra_bytes_per_elem"])  # type: ignore[arg-type]
        act = str(r["activation"])
        if act in mem_bound:
            bound = mem_bound[act]
            out.append(f"| {act}: extra bytes kept per element | {r['dtype']} | {r['shape']} | {r.get('layout', 'contiguous')} | "
                       f"{eb:.3f} | <= {bound:g} | {'met' if eb <= bound + 0.01 else 'not met'} |")
        elif act == "funnel" and (r["dtype"], r["shape"], r.get("layout", "contiguous")) in plain:
            pb = float(plain[(r["dtype"], r["shape"], r.get("layout", "contiguous"))]["extra_bytes_per_elem"])  # type: ignore[arg-type]
            out.append(f"| funnel: bytes kept vs the plain formula | {r['dtype']} | {r['shape']} | {r.get('layout', 'contiguous')} | "
                       f"{eb / pb:.0%} ({eb:.2f} of {pb:.2f} B) | <= 40% | "
                       f"{'met' if eb <= 0.4 * pb else 'not met'} |")
    return "\n".join(out)


def write_csv(rows: Sequence[dict[str, object]], path: str) -> None:
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})


def read_csv(path: str) -> list[dict[str, object]]:
    """Rows of a CSV written by :func:`write_csv` (numbers as floats, empty cells as None)."""
    rows: list[dict[str, object]] = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row: dict[str, object] = {}
            for k, v in r.items():
                if v == "":
                    row[k] = None if k != "error" else ""
                elif k.endswith(("_ms", "_vs_torch", "_vs_clone", "_vs_nn_leaky", "_per_elem")):
                    row[k] = float(v)
                elif k == "compiles_timed":
                    row[k] = int(float(v))
                else:
                    row[k] = v
            rows.append(row)
    return rows


if __name__ == "__main__":  # python -m rectifiers.bench
    from rectifiers.cli.bench import main

    sys.exit(main())
