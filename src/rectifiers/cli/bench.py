"""``rectifiers bench`` and ``python -m rectifiers.bench``: the options of the benchmark, checked."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from .. import bench
from .._util import atomic_write_bytes
from ..bench import (ACTIVATIONS, DEFAULT_IMPLS, DEFAULT_SHAPES, DTYPES, IMPLEMENTATIONS, LAYOUTS,
                     QUICK_SHAPES, SMALL_SHAPES, STEP_MODELS, TABLES, bench_cases, format_small_table,
                     format_step_table, format_table, goals_table, run_benchmark, run_small, run_steps, title,
                     write_csv)
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
    p.add_argument("--threads", nargs="+", default=None, metavar="N",
                   help="thread counts (torch.set_num_threads) to run every table at, one after the other: "
                   "counts >= 1 or 'default', torch's own count at start-up (default: as is); e.g. 1 default")
    p.add_argument("--tables", nargs="+", default=list(TABLES), metavar="TABLE",
                   help="which tables: large (time and memory per implementation on --shapes), small "
                   "(microseconds per module call on small tensors, rectifiers against torch.nn or the "
                   "plain formula), step (a training step of the digits CNN and MLP, each activation "
                   "against its twin) (default: large small step)")
    p.add_argument("--small-shapes", nargs="+", type=_parse_shape, default=None, metavar="SHAPE",
                   help="shapes of the small table (default: " + " ".join("x".join(map(str, s)) for s in SMALL_SHAPES)
                   + "; fp32, contiguous)")
    p.add_argument("--small-rounds", type=int, default=100,
                   help="rounds of the small table, each side making 10 calls a round (default 100)")
    p.add_argument("--step-models", nargs="+", default=list(STEP_MODELS), metavar="MODEL",
                   help="models of the step table among cnn mlp (default: both; synthetic inputs of "
                   "the digits' shape, batch 64, fp32)")
    p.add_argument("--step-rounds", type=int, default=50,
                   help="rounds of the step table, each side taking 4 steps a round (default 50)")
    p.add_argument("--quick", action="store_true",
                   help="a small shape (8x16x24x24), fp32 only, 5 repeats, caches not evicted; few "
                   "rounds of the small and step tables: a smoke run")
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
                               ("dtype", args.dtypes, tuple(DTYPES)), ("layout", args.layouts, LAYOUTS),
                               ("table", args.tables, TABLES), ("model", args.step_models, STEP_MODELS)):
        for v in given:
            if v not in known:
                hint = closest(v, known) or f"; expected one of {', '.join(known)}"
                raise UsageError(f"rectifiers bench: unknown {what} {v!r}{hint}")
    if args.repeats < 1 or args.warmup < 0:
        raise UsageError("rectifiers bench: --repeats must be >= 1 and --warmup >= 0")
    if args.small_rounds < 1 or args.step_rounds < 1:
        raise UsageError("rectifiers bench: --small-rounds and --step-rounds must be >= 1")
    default_threads = torch.get_num_threads()
    threads = _thread_counts(args.threads, default_threads)
    tables = [t for t in TABLES if t in args.tables]
    requested = list(acts)  # the small and step tables take these alone (no leaky_relu added below)
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
    small_shapes = args.small_shapes or list(SMALL_SHAPES)
    small_rounds, small_calls = (min(args.small_rounds, 5), 3) if args.quick else (args.small_rounds, 10)
    step_rounds, steps = (min(args.step_rounds, 3), 2) if args.quick else (args.step_rounds, 4)
    rows: list[dict[str, object]] = []
    sections: list[str] = []  # the Markdown file
    try:
        for n in threads:
            torch.set_num_threads(n)
            for table in tables:
                if table == "large":
                    got = run_benchmark(acts, shapes, dtypes, impls, repeats, args.warmup, args.compile_backend,
                                        layouts=args.layouts, cold=not (args.warm_cache or args.quick))
                    text, md = format_table(got), format_table(got, markdown=True)
                elif table == "small":
                    got = run_small(requested, small_shapes, small_rounds, small_calls)
                    text, md = format_small_table(got), format_small_table(got, markdown=True)
                else:
                    got = run_steps(requested, args.step_models, step_rounds, steps)
                    text, md = format_step_table(got), format_step_table(got, markdown=True)
                rows.extend(got)
                head = title(table, n, default=n == default_threads and len(threads) > 1)
                print(f"{head}\n\n{text}\n", flush=True)
                sections.append(f"## {head}\n\n{md}\n")
                if table == "large" and args.goals:
                    print(f"{goals_table(got)}\n", flush=True)
                if table == "large":
                    sections.append(f"## Goals ({n} thread{'s' if n != 1 else ''})\n\n{goals_table(got)}\n")
    finally:
        torch.set_num_threads(default_threads)
    if args.csv:
        write_csv(rows, args.csv)
        print(f"wrote {args.csv}")
    if args.markdown:
        atomic_write_bytes(args.markdown, "\n".join(sections).encode())
        print(f"wrote {args.markdown}")
    return 0


def _thread_counts(given: Sequence[str] | None, default: int) -> list[int]:
    """The thread counts of ``--threads``, in order, without repeats (``default``: torch's count at
    start-up; none given: that count alone)."""
    if not given:
        return [default]
    out: list[int] = []
    for v in given:
        try:
            n = default if v.lower() == "default" else int(v)
        except ValueError:
            raise UsageError(f"rectifiers bench: --threads takes counts >= 1 or 'default', got {v!r}") from None
        if n < 1:
            raise UsageError(f"rectifiers bench: --threads must be >= 1, got {n}")
        if n not in out:
            out.append(n)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m rectifiers.bench``."""
    p = Parser(prog="python -m rectifiers.bench", description=bench.__doc__.splitlines()[0])
    _add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except UsageError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2

