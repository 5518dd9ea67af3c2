"""``rectifiers list``: every activation with its module, formula and defaults."""

from __future__ import annotations

import argparse
import json

from ..catalog import CATALOG
from .info import entry_dict

__all__ = ["register", "run_list", "format_list"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``list`` subcommand."""
    p = sub.add_parser(
        "list",
        help="list the activations: name, module, formula, defaults",
        description="List every activation with its module, formula and defaults.",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run_list)


def format_list() -> str:
    """The ``list`` table as text."""
    rows = [("NAME", "MODULE", "FORMULA", "DEFAULTS")]
    for e in CATALOG.values():
        rows.append((e.name, e.module.split("(")[0].removeprefix("rectifiers."), e.formula, e.defaults))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows]
    lines.append("")
    lines.append("'rectifiers info NAME' for the derivative, parameters, paper and claims.")
    return "\n".join(lines)


def run_list(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([entry_dict(e) for e in CATALOG.values()], indent=2))
    else:
        print(format_list())
    return 0
