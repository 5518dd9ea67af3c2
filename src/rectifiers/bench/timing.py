"""Timing: every implementation in turn within each repetition, caches evicted before each call."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .cases import ACTIVATIONS, DEFAULT_IMPLS, DEFAULT_SHAPES, DTYPES, _laid_out, make_module
from .memory import _extra_bytes_of

__all__ = ["run_benchmark"]


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
        "table": "large",
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
