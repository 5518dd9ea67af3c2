"""What ``rectifiers list`` and ``rectifiers info NAME`` print: one entry per activation.

The entries are the activation descriptions of :mod:`rectifiers._spec` (formula and derivative,
defaults, parameters and their shapes, the paper, where the function is used, and the source
article's claims in our words, each naming the measurement that puts it to the test). This
module only gives them the names ``info`` uses; nothing is typed a second time.
"""

from __future__ import annotations

from ._spec import DESCRIPTIONS, MEASURES, Claim, Description, Param, key, resolve

__all__ = ["Param", "Claim", "Entry", "CATALOG", "NAMES", "ALIASES", "resolve", "MEASURES"]

#: An activation's description, as ``info`` shows it.
Entry = Description

CATALOG: dict[str, Description] = DESCRIPTIONS

#: Canonical names, in the order they are listed.
NAMES: tuple[str, ...] = tuple(CATALOG)

#: The spellings ``info`` lists for each entry (lower-cased) -> canonical name.
ALIASES: dict[str, str] = {key(a): e.name for e in CATALOG.values() for a in (e.name, *e.aliases)}
