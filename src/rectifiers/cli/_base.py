"""What every command module of the CLI shares: the parser class, :class:`UsageError`, ``closest``."""

from __future__ import annotations

import argparse
import re

from .._util import closest

__all__ = ["UsageError", "Parser", "closest"]


class UsageError(Exception):
    """Bad usage: reported as one line on stderr with exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UsageError` (with "did you mean")."""

    def error(self, message: str) -> None:  # type: ignore[override]
        m = re.match(r"argument .*: invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            choices = re.findall(r"'([^']*)'", m.group(2)) or [c.strip() for c in m.group(2).split(",")]
            message += closest(m.group(1), choices)
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")
