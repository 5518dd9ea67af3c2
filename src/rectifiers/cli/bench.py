"""``rectifiers bench`` and ``python -m rectifiers.bench``: the options of the benchmark, checked."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

from .. import bench
from ..bench import (ACTIVATIONS, DEFAULT_IMPLS, DEFAULT_SHAPES, DTYPES, IMPLEMENTATIONS, LAYOUTS,
                     QUICK_SHAPES, bench_cases, format_table, goals_table, run_benchmark, write_csv)
from ._base import Parser, UsageError, closest

__all__ = ["register", "run", "main"]


def _parse_shape(s: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in s.lower().replace(",", "x").split("x") if p)
    except ValueError:
        shape = ()
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"a shape like 32x64x56x56, got {s!r}")
    return shape


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), metavar="NAME",
                   help=f"activations (default: all of {', '.join(ACTIVATIONS)}); any activation name "
                   "or alias stands for all its cases (flexible_relu: frelu frelu_channel)")
    p.add_argument("--impls", nargs="+", default=list(DEFAULT_IMPLS), metavar="IMPL",
                   help="implementations: torch (torch.nn or the plain formula), eager, compiled "
                   "(the rectifiers module under torch.compile), torch_compiled (the torch one "
                   "under torch.compile) (default: torch eager compiled; 'torch' is always added, "
                   "the ratios need it)")
    p.add_argument("--shapes", nargs="+", type=_parse_shape, default=None, metavar="SHAPE",
                   help="shapes like 32x64x56x56, channels at dim 1 (default: 32x64x56x56 16x512x768)")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], metavar="DTYPE",
                   help=f"dtypes among {', '.join(DTYPES)} (default: fp32 bf16)")
    p.add_argument("--layouts", nargs="+", default=["contiguous"], metavar="LAYOUT",
                   help=f"input memory layouts among {', '.join(LAYOUTS)} (default: contiguous; "
                   "channels_last applies to 4-D and 5-D shapes)")
    p.add_argument("--warm-cache", action="store_true",
                   help="do not evict the CPU's caches before each timed call (by default they "
                   "are, as a network's layers find them; the same input timed call after call "
                   "would otherwise stay cached)")
    p.add_argument("--repeats", type=int, default=15, help="timed repetitions (default 15)")
    p.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (default 2)")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend of the 'compiled' implementation (default inductor)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as is)")
    p.add_argument("--quick", action="store_true",
                   help="a small shape (8x16x24x24), fp32 only, 5 repeats, caches not evicted: a smoke run")
    p.add_argument("--goals", action="store_true", help="also print the issue's goals, met or not")
    p.add_argument("--csv", default=None, metavar="PATH", help="write every row to this CSV file")
    p.add_argument("--markdown", default=None, metavar="PATH", help="also write the table as Markdown")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time and measure the memory of every activation against torch.nn",
        description="Benchmark forward, backward, forward+backward and no_grad forward of each "
        "activation (torch.nn or the plain formula, rectifiers eager, rectifiers compiled); "
        "print a table and optionally write CSV.",
    )
    _add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    acts: list[str] = []
    for v in args.activations:
        cases = bench_cases(v)
        if cases is None:
            hint = closest(v, ACTIVATIONS) or f"; expected one of {', '.join(ACTIVATIONS)}"
            raise UsageError(f"rectifiers bench: unknown activation {v!r}{hint}")
        acts.extend(c for c in cases if c not in acts)
    for what, given, known in (("implementation", args.impls, IMPLEMENTATIONS),
                               ("dtype", args.dtypes, tuple(DTYPES)), ("layout", args.layouts, LAYOUTS)):
        for v in given:
            if v not in known:
                hint = closest(v, known) or f"; expected one of {', '.join(known)}"
                raise UsageError(f"rectifiers bench: unknown {what} {v!r}{hint}")
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("rectifiers bench: --repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"rectifiers bench: --threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    impls = ["torch"] + [i for i in args.impls if i != "torch"]
    shapes = args.shapes
    dtypes, repeats = args.dtypes, args.repeats
    if args.quick:
        shapes = shapes or list(QUICK_SHAPES)
        dtypes = ["fp32"] if args.dtypes == ["fp32", "bf16"] else dtypes
        repeats = min(repeats, 5)
    shapes = shapes or list(DEFAULT_SHAPES)
    if any(a == "frelu" or a == "frelu_channel" for a in acts) and "leaky_relu" not in acts:
        acts.insert(0, "leaky_relu")  # the FReLU goal is measured against torch.nn.LeakyReLU
    rows = run_benchmark(acts, shapes, dtypes, impls, repeats, args.warmup, args.compile_backend,
                         layouts=args.layouts, cold=not (args.warm_cache or args.quick))
    print(format_table(rows))
    if args.goals:
        print()
        print(goals_table(rows))
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    if args.markdown:
        d = os.path.dirname(args.markdown)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(args.markdown, "w") as f:
            f.write(format_table(rows, markdown=True) + "\n\n## Goals\n\n" + goals_table(rows) + "\n")
        print(f"wrote {args.markdown}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m rectifiers.bench``."""
    p = Parser(prog="python -m rectifiers.bench", description=bench.__doc__.splitlines()[0])
    _add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except UsageError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2

