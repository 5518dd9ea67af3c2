"""The ``rectifiers`` command line (floor 4: nothing in the library imports it).

Each subcommand lives in its own module of this package, which provides ``register(subparsers)``: it adds its
parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit status). Conventions: exit 0 on success; exit 2 on bad usage with one line on stderr and no
traceback (raise :class:`UsageError`); heavy imports (matplotlib, sklearn) happen inside
``func``, never at registration.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .._util import MissingExtraError
from ._base import Parser, UsageError, closest

__all__ = ["main", "UsageError", "build_parser", "closest"]

#: Modules that register subcommands, in the order their commands appear in ``--help``.
COMMAND_MODULES = (
    "rectifiers.cli.table",
    "rectifiers.cli.list",
    "rectifiers.cli.info",
    "rectifiers.cli.plot",
    "rectifiers.cli.compare",
    "rectifiers.cli.bench",
)

_Parser = Parser  # the name it had before the CLI became a package


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(
        prog="rectifiers",
        description="The rectifier family of activations: tables, graphs, comparisons, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"rectifiers {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name == mod_name:  # that subcommand is not part of this build
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except UsageError as e:
        print(str(e).splitlines()[0] if str(e) else "rectifiers: bad usage", file=sys.stderr)
        return 2
    except MissingExtraError as e:  # an optional dependency is missing: one line naming the extra
        print(f"rectifiers: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rectifiers: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rectifiers info prelu --json | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

