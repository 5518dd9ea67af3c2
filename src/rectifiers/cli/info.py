"""``rectifiers info NAME``: what one activation is, and what is claimed for it.

The data lives in :mod:`rectifiers.catalog`; this module only prints it, as text or as JSON.
:func:`lookup` (the "did you mean" of an activation name) serves the other commands too.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import asdict

from ..catalog import ALIASES, CATALOG, NAMES, Entry, resolve
from ._base import UsageError, closest

__all__ = ["register", "run_info", "format_info", "lookup", "entry_dict"]

WIDTH = 100


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``info`` subcommand."""
    p = sub.add_parser(
        "info",
        help="everything about one activation: formula, derivative, parameters, paper, claims",
        description="Show one activation: formula, derivative, defaults, parameters and their "
        "shapes, the paper, where it is used, and the source article's claimed pros and cons "
        "(in our words), each with the diagnostic that measures it.",
        epilog=f"NAME is one of {', '.join(NAMES)}, or a class name or alias "
        "(LeakyReLU, PReLU, FReLU, FunnelReLU, ...), in any case.",
    )
    p.add_argument("name", metavar="NAME", help="the activation")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run_info)


def lookup(name: str, command: str = "info") -> Entry:
    """The catalog entry for ``name``; :class:`~rectifiers.cli.UsageError` with a hint if unknown."""
    canonical = resolve(name)
    if canonical is None:
        hint = closest(name.lower(), ALIASES)
        if hint:  # name the canonical spelling, not the alias that matched
            matched = hint.split("'")[1]
            hint = f"; did you mean {ALIASES[matched]!r}?"
        raise UsageError(
            f"rectifiers {command}: unknown activation {name!r}{hint} (known: {', '.join(NAMES)})"
        )
    return CATALOG[canonical]


def _wrap(text: str, indent: str, first: str = "") -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=indent + first, subsequent_indent=indent + " " * len(first)
    ) or [indent + first]


def format_info(entry: Entry) -> str:
    """The ``info`` page of one activation as text."""
    out: list[str] = [entry.title, "=" * len(entry.title), ""]
    out += _wrap(entry.summary, "")
    out.append("")
    out.append(f"  name        {entry.name}" + (f"  (also: {', '.join(entry.aliases)})" if entry.aliases else ""))
    out += _wrap(entry.module, "  ", "module      ")
    out += _wrap(entry.functional, "  ", "functional  ")
    out.append(f"  f(x)        {entry.formula}")
    out.append(f"  f'(x)       {entry.derivative}")
    out.append(f"  defaults    {entry.defaults}")
    out.append("")
    out.append("Arguments, parameters and their shapes")
    for p in entry.params:
        if p.kind == "argument":
            text = f"{p.name}: {p.shape} = {p.default}; {p.doc}"
        else:
            text = f"{p.name} ({p.kind}): shape {p.shape}, initially {p.default}; {p.doc}"
        out += _wrap(text, "  ", "- ")
    out.append("")
    out.append("Paper")
    out += _wrap(entry.paper, "  ")
    out.append("")
    out.append("Used in")
    for u in entry.used_in:
        out += _wrap(u, "  ", "- ")
    out.append("")
    out.append("Pros and cons, in our words, and what measures them")
    out += _wrap(entry.claims_source, "  ", "from: ")
    for c in entry.claims:
        out += _wrap(c.claim, "  ", f"{c.kind:<4}  ")
        if c.comment:
            out += _wrap(c.comment, "        ", "note: ")
        for m in c.measured_by:
            out += _wrap(m, "        ", "measured by: ")
    for n in entry.notes:
        out.append("")
        out += _wrap(n, "", "Note: ")
    return "\n".join(out)


def entry_dict(entry: Entry) -> dict:
    d = asdict(entry)
    d.update(formula=entry.formula, derivative=entry.derivative, defaults=entry.defaults)
    for c, dc in zip(entry.claims, d["claims"]):
        dc["measured_by"] = list(c.measured_by)
    return d


def run_info(args: argparse.Namespace) -> int:
    entry = lookup(args.name)
    if args.json:
        print(json.dumps(entry_dict(entry), indent=2))
    else:
        print(format_info(entry))
    return 0
