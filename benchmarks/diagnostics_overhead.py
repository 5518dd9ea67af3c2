"""Overhead of the diagnostics monitors on a training step of a small CNN (CPU by default).

For each activation, times a full training step (forward, loss, backward, SGD step) with no
monitor, with a DeadUnitMonitor, with a GradientFlowMonitor, and with both. The variants are
interleaved round by round (the order rotates each round) so that drift of a shared machine
hits them alike. Each step is timed twice: wall clock and the process's CPU time (with one
torch thread, CPU time is what the step itself costs, whatever else the machine runs). The
overhead is paired: per round, the variant's mean CPU time over the no-monitor mean of the same
round; the figure is the median of those ratios over rounds, minus one. The wall-clock medians
are printed beside it, and a third, steadier estimate: the CPU time spent inside the monitors'
own code per step (hooks' counting and ``step()``, timed by wrapping them), over the
no-monitor step's CPU time. Torch's hook dispatch itself is outside that figure (a few us per
hooked call).

    python3 benchmarks/diagnostics_overhead.py            # prints a table, writes
                                                          # benchmarks/results/diagnostics-overhead.{csv,md}
    python3 benchmarks/diagnostics_overhead.py --width 16 --out benchmarks/results/diagnostics-overhead-w16
    python3 benchmarks/diagnostics_overhead.py --rounds 5 --acts relu   # quick
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

import rectifiers as R
from rectifiers.diagnostics import DeadUnitMonitor, GradientFlowMonitor

ACTS: dict[str, Callable[[int], nn.Module]] = {
    "relu": lambda c: R.ReLU(),
    "leaky_relu": lambda c: R.LeakyReLU(),
    "prelu": lambda c: R.PReLU(c),
    "frelu": lambda c: R.FReLU(),
    "funnel": lambda c: R.FunnelReLU(c),
    "torch_relu": lambda c: nn.ReLU(),
}
VARIANTS = ("none", "dead", "flow", "both")
HERE = os.path.dirname(os.path.abspath(__file__))


def small_cnn(act: Callable[[int], nn.Module], width: int = 16) -> nn.Module:
    """conv(1->w) act conv(w->2w) act pool conv(2w->2w) act pool linear: 3 activations."""
    w = width
    return nn.Sequential(
        nn.Conv2d(1, w, 3, padding=1), act(w),
        nn.Conv2d(w, 2 * w, 3, padding=1), act(2 * w),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 2 * w, 3, padding=1), act(2 * w),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(8 * w, 10),
    )


def bench_act(name: str, args: argparse.Namespace) -> tuple[dict, dict, dict]:
    torch.manual_seed(0)
    model = small_cnn(ACTS[name], args.width)
    x = torch.randn(args.batch, 1, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[list[float]]] = {v: [] for v in VARIANTS}  # per round
    inside: dict[str, list[float]] = {v: [] for v in VARIANTS}  # CPU time spent in the monitors
    acc = [0.0]

    def timed(fn):  # noqa: ANN001, ANN202  (instrumentation: CPU time inside the monitors)
        def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
            c0 = time.process_time()
            try:
                return fn(*a, **k)
            finally:
                acc[0] += time.process_time() - c0
        return wrapper

    def step(flow: GradientFlowMonitor | None) -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        if flow is not None:
            flow.step()
        opt.step()

    # one monitor of each kind, attached and detached around each variant's steps (their
    # counters persist, so only the first round pays for allocating them)
    dead = DeadUnitMonitor(model)
    flow = GradientFlowMonitor(model)
    dead._observe = timed(dead._observe)  # type: ignore[method-assign]  # the hooks' work
    flow.step = timed(flow.step)  # type: ignore[method-assign]
    for _ in range(3):  # warm up (and materialise lazy modules)
        step(None)
    for v in VARIANTS:
        with dead if v in ("dead", "both") else contextlib.nullcontext():
            with flow if v in ("flow", "both") else contextlib.nullcontext():
                step(flow if v in ("flow", "both") else None)
    for r in range(args.rounds):
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[: r % len(VARIANTS)]
        for v in order:
            use_dead, use_flow = v in ("dead", "both"), v in ("flow", "both")
            with dead if use_dead else contextlib.nullcontext():
                with flow if use_flow else contextlib.nullcontext():
                    cpu[v].append([])
                    for _ in range(args.steps):
                        acc[0] = 0.0
                        t0, c0 = time.perf_counter(), time.process_time()
                        step(flow if use_flow else None)
                        c1, t1 = time.process_time(), time.perf_counter()
                        times[v].append(t1 - t0)
                        cpu[v][-1].append(c1 - c0)
                        inside[v].append(acc[0])
    dead.report()  # the reports work after all that (not timed)
    flow.report()
    return times, cpu, inside


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--acts", default="relu,prelu,frelu,funnel,torch_relu",
                   help=f"comma-separated, from {', '.join(ACTS)}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=16, help="input height = width")
    p.add_argument("--width", type=int, default=32,
                   help="channels of the first conv (16 is a worst case: activations are then a "
                        "large share of the step)")
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant per round")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "diagnostics-overhead"),
                   help="path prefix of the .csv and .md written")
    args = p.parse_args(argv)
    acts = [a.strip() for a in args.acts.split(",") if a.strip()]
    for a in acts:
        if a not in ACTS:
            p.error(f"--acts: unknown activation {a!r}; expected some of {', '.join(ACTS)}")
    torch.set_num_threads(args.threads)
    meta = {
        "device": "cpu",
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "dtype": "float32",
        "input": f"({args.batch}, 1, {args.size}, {args.size})",
        "width": args.width,
        "torch": torch.__version__,
        "load1_at_start": round(os.getloadavg()[0], 2),  # a shared machine: say how busy it was
    }
    rows = []
    for a in acts:
        times, cpu, inside = bench_act(a, args)
        base = statistics.median(times["none"])
        base_cpu = statistics.median(c for r in cpu["none"] for c in r)
        for v in VARIANTS:
            med = statistics.median(times[v])
            med_cpu = statistics.median(c for r in cpu[v] for c in r)
            paired = statistics.median(
                statistics.fmean(rv) / statistics.fmean(rn) for rv, rn in zip(cpu[v], cpu["none"])
            )
            rows.append({
                "activation": a, "monitor": v,
                "cpu_ms": round(1e3 * med_cpu, 3), "wall_ms": round(1e3 * med, 3),
                "overhead_cpu_pct": round(100 * (paired - 1), 2),
                "overhead_wall_pct": round(100 * (med / base - 1), 2),
                "in_monitor_ms": round(1e3 * statistics.median(inside[v]), 3),
                "in_monitor_pct": round(100 * statistics.median(inside[v]) / base_cpu, 2),
                "steps_timed": len(times[v]), **meta,
            })
    head = ["activation", "monitor", "cpu_ms", "wall_ms", "overhead_cpu_pct", "overhead_wall_pct",
            "in_monitor_ms", "in_monitor_pct"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in head]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(head, widths)) for r in rows]
    print(f"training step of a small CNN (width {args.width}), {meta['input']} fp32 on CPU, {args.threads} thread(s), "
          f"torch {torch.__version__}; {args.rounds} interleaved rounds x {args.steps} steps; overhead_cpu_pct: "
          "median over rounds of (variant CPU time / no-monitor CPU time) - 1")
    print("\n".join(lines))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".csv.tmp"
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, args.out + ".csv")
    md = ["| activation | monitor | CPU time / step (ms) | wall / step (ms) | overhead (CPU, paired) | "
          "overhead (wall) | CPU time inside the monitor / step |",
          "|---|---|---:|---:|---:|---:|---:|"]
    md += [f"| {r['activation']} | {r['monitor']} | {r['cpu_ms']:.2f} | {r['wall_ms']:.2f} | "
           f"{r['overhead_cpu_pct']:+.1f}% | {r['overhead_wall_pct']:+.1f}% | "
           f"{r['in_monitor_ms']:.2f} ms ({r['in_monitor_pct']:.1f}%) |" for r in rows]
    md.append("")
    md.append(f"Small CNN of width {args.width}; CPU ({meta['cpu']}), {args.threads} thread(s), fp32, "
              f"input {meta['input']}, load average {os.getloadavg()[0]:.1f} at the end, torch "
              f"{torch.__version__}; `{' '.join(['python3 benchmarks/diagnostics_overhead.py', *sys.argv[1:]])}`")
    with open(tmp, "w") as f:
        f.write("\n".join(md) + "\n")
    os.replace(tmp, args.out + ".md")
    print(f"wrote {args.out}.csv and {args.out}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
