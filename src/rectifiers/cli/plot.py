"""``rectifiers plot``: draw each activation and its derivative (:mod:`rectifiers.plotting`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..curves import DEFAULT_PARAMS, NAMES
from ..plotting import (DEFAULT_POINTS, DEFAULT_SWEEPS, DEFAULT_XLIM, FORMATS, MissingExtraError,
                        funnel_context, parse_param, write_plots)
from ._base import UsageError
from .info import lookup

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plot`` subcommand."""
    sweeps = "; ".join(
        f"{n} {DEFAULT_PARAMS[n][0]}={','.join(f'{v:g}' for v in vals)}"
        for n, vals in DEFAULT_SWEEPS.items()
        if DEFAULT_PARAMS[n][0] is not None
    )
    p = sub.add_parser(
        "plot",
        help="draw each activation and its derivative (one figure each, plus an overview)",
        description="Draw f(x) and f'(x) for each activation, computed by the library with "
        "autograd, with parameter sweeps, the kink marked and the formula in the legend. Writes "
        "OUT/NAME.FORMAT for each activation and OUT/overview.FORMAT. The funnel activation "
        "depends on a neighbourhood and is drawn in a stated context: " + funnel_context([None, None]),
        epilog=f"Default sweeps: {sweeps}. Example: rectifiers plot leaky_relu prelu --param "
        "leaky_relu=0.01,0.2 --format svg --out plots. The README's overview: rectifiers plot "
        "--overview-only --out docs/images",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"activations to draw (default: all of {', '.join(NAMES)}); class names and "
                   "aliases (LeakyReLU, FReLU, ...) work too")
    p.add_argument("--out", default="plots", metavar="DIR",
                   help="output directory, created if needed (default: plots)")
    p.add_argument("--format", default="png", choices=FORMATS, dest="fmt",
                   help="image format (default: png)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="values to sweep for one activation's parameter (LeakyReLU/PReLU slope a, "
                   "FReLU bias b, funnel kernel_sum); repeat for several activations; at most 8 "
                   "values")
    p.add_argument("--xlim", nargs=2, type=float, default=list(DEFAULT_XLIM), metavar=("LO", "HI"),
                   help="x range (default: -3 3)")
    p.add_argument("--points", type=int, default=DEFAULT_POINTS, help=f"grid size (default: {DEFAULT_POINTS})")
    p.add_argument("--dpi", type=int, default=110, help="resolution of PNG files (default: 110)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--overview-only", action="store_true", help="write only the overview figure")
    group.add_argument("--no-overview", action="store_true", help="do not write the overview figure")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names: list[str] = []
    for n in args.names:
        canonical = lookup(n, "plot").name
        if canonical not in names:
            names.append(canonical)
    sweeps: dict[str, tuple[float, ...]] = {}
    for text in args.param:
        try:
            name, values = parse_param(text)
        except ValueError as e:
            raise UsageError(f"rectifiers plot: --param: {e}") from None
        if name in sweeps:
            raise UsageError(f"rectifiers plot: --param: {name} given twice")
        if names and name not in names:
            raise UsageError(f"rectifiers plot: --param {text!r}: {name} is not among the NAMEs drawn ({', '.join(names)})")
        sweeps[name] = values
    lo, hi = args.xlim
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise UsageError(f"rectifiers plot: --xlim needs two finite numbers LO < HI, got {lo:g} {hi:g}")
    if args.points < 3 or args.points > 100_000:
        raise UsageError(f"rectifiers plot: --points must be between 3 and 100000, got {args.points}")
    if args.dpi < 10 or args.dpi > 1200:
        raise UsageError(f"rectifiers plot: --dpi must be between 10 and 1200, got {args.dpi}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"rectifiers plot: --out {str(out)!r} exists and is not a directory")
    try:
        written = write_plots(
            names or None,
            out,
            args.fmt,
            sweeps,
            overview=not args.no_overview,
            per_activation=not args.overview_only,
            xlim=(lo, hi),
            points=args.points,
            dpi=args.dpi,
        )
    except MissingExtraError as e:
        raise UsageError(f"rectifiers plot: {e}") from None
    except OSError as e:
        raise UsageError(f"rectifiers plot: cannot write to --out {str(out)!r}: {e.strerror or e}") from None
    for path in written:
        print(path)
    return 0
