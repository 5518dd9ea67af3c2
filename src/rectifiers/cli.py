"""The ``rectifiers`` command line.

Each subcommand lives in its own module, which provides ``register(subparsers)``: it adds its
parser and sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an
exit status). Conventions: exit 0 on success; exit 2 on bad usage with one line on stderr and no
traceback (raise :class:`UsageError`); heavy imports (matplotlib, sklearn) happen inside
``func``, never at registration.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Iterable, Sequence

from ._util import closest

__all__ = ["main", "UsageError", "build_parser", "closest"]

#: Modules that register subcommands, in the order their commands appear in ``--help``.
COMMAND_MODULES = (
    "rectifiers.cli_table",
    "rectifiers.cli_info",
    "rectifiers.plotting",
    "rectifiers.compare",
    "rectifiers.bench",
)


class UsageError(Exception):
    """Bad usage: reported as one line on stderr with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        m = re.match(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            message += closest(m.group(1), choices)
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

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
    except KeyboardInterrupt:
        print("rectifiers: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `rectifiers info prelu --json | head`
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    # Run through the importable module, so that UsageError is the class the commands raise.
    from rectifiers.cli import main as _main

    sys.exit(_main())
