"""``rectifiers table``: each activation's formula, values and derivatives on a small grid."""

from __future__ import annotations

import argparse

import torch

from ..catalog import ALIASES, resolve
from ..curves import NAMES, curve
from ._base import UsageError, closest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "table",
        help="print each activation's formula and its values and derivatives on a small grid",
        description="Print each activation's formula, and f(x) and f'(x) computed by the "
        "library (autograd) on a grid.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"activations (default: all of {', '.join(NAMES)})")
    p.add_argument("--points", type=float, nargs="+", default=[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0],
                   metavar="X", help="grid points (default: -2 -1 -0.5 0 0.5 1 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = []
    for n in args.names or NAMES:
        canonical = resolve(n)
        if canonical is None:
            raise UsageError(f"rectifiers table: unknown activation {n!r}{closest(n.lower(), ALIASES)}")
        names.append(canonical)
    x = torch.tensor(args.points, dtype=torch.float64)
    head = "x".rjust(8) + "".join(f"{v:>9g}" for v in args.points)
    for n in names:
        c = curve(n, x)
        label = n if c.param is None else f"{n} ({c.param}={c.value:g})"
        print(f"\n{label}\n  f(x)  = {c.formula}\n  f'(x) = {c.derivative}")
        if c.context:
            print(f"  shown for: {c.context}")
        print(head)
        print("f(x)".rjust(8) + "".join(f"{v:>9.4g}" for v in c.y.tolist()))
        print("f'(x)".rjust(8) + "".join(f"{v:>9.4g}" for v in c.dy.tolist()))
    return 0
