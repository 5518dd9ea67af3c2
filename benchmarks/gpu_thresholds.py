"""The size thresholds of ``backend="auto"`` on CUDA (``rectifiers.ops._dispatch``), derived
from benchmark rows.

    python benchmarks/gpu_thresholds.py benchmarks/results/gpu-nvidia-h200-time.csv [more.csv ...]

Each CSV is one run of ``gpu_bench.py`` (its ``-time.csv`` or ``-sweep.csv``). The rule, per
activation and dtype: a measured size *wins* when the Triton row is at least as fast as the
baseline row in every given run and in every speed-up column present (``speedup_fwdbwd``, the
synchronous forward + backward; ``speedup_async`` and ``speedup_graph`` when the run has them).
The threshold is the smallest measured size from which every larger measured size wins too;
``None`` ("never") when the largest does not win. Conservative by construction: between two
measured sizes the crossover is put at the larger one.

Prints the table in the form ``RECTIFIERS_TRITON_MIN_NUMEL`` takes, and the entries that are not
"never" as ``rectifiers.ops._dispatch.DEFAULTS`` holds them. Imports nothing of rectifiers (also used by the tests).
"""

from __future__ import annotations

import csv
import math
import sys
from typing import Iterable, Optional

SPEEDUP_COLUMNS = ("speedup_fwdbwd", "speedup_async", "speedup_graph")
DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32", "fp64": "float64"}


def numel(shape: str) -> int:
    return math.prod(int(s) for s in shape.split("x"))


def derive_thresholds(runs: Iterable[list[dict]], min_speedup: float = 1.0) -> dict[tuple[str, str], Optional[int]]:
    """(activation, dtype name as in the CSV) -> threshold (``None``: never), by the rule of
    the module docstring. ``runs``: one list of CSV rows per run."""
    wins: dict[tuple[str, str], dict[int, bool]] = {}
    for rows in runs:
        for r in rows:
            if r.get("impl") != "triton":
                continue
            key = (r["act"], r["dtype"])
            n = numel(r["shape"])
            ok = True
            for col in SPEEDUP_COLUMNS:
                v = r.get(col)
                if v not in (None, "", "nan"):
                    f = float(v)
                    ok = ok and f == f and f >= min_speedup
            per = wins.setdefault(key, {})
            per[n] = per.get(n, True) and ok
    out: dict[tuple[str, str], Optional[int]] = {}
    for key, per in wins.items():
        threshold = None
        for n in sorted(per, reverse=True):
            if not per[n]:
                break
            threshold = n
        out[key] = threshold
    return out


def env_form(table: dict[tuple[str, str], Optional[int]]) -> str:
    """The table as a value of ``RECTIFIERS_TRITON_MIN_NUMEL``."""
    items = [f"{a}:{DTYPE_NAMES.get(d, d)}={'never' if v is None else v}" for (a, d), v in sorted(table.items())]
    return ",".join(items)


def defaults_form(table: dict[tuple[str, str], Optional[int]]) -> str:
    """The table as ``rectifiers.ops._dispatch.DEFAULTS`` holds it: the entries that are not
    "never" (the rest is never by default)."""
    return env_form({k: v for k, v in table.items() if v is not None})


def main(argv: list[str] | None = None) -> int:
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python benchmarks/gpu_thresholds.py RUN-time.csv [RUN2-time.csv ...]", file=sys.stderr)
        return 2
    runs = [list(csv.DictReader(open(p))) for p in paths]
    table = derive_thresholds(runs)
    print(f'RECTIFIERS_TRITON_MIN_NUMEL="{env_form(table)}"')
    print(f'DEFAULTS = "{defaults_form(table)}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
