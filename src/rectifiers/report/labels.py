"""Names and colours of the activations in the report, from their descriptions (:mod:`rectifiers._spec`)."""

from __future__ import annotations

from .. import _spec as S

__all__ = ["DISPLAY", "COLORS", "LEARNABLE"]

#: The report's short name of each activation (its description's ``label``).
DISPLAY: dict[str, str] = {d.name: d.label for d in S.DESCRIPTIONS.values()}

#: The plot colour of each activation.
COLORS: dict[str, str] = {d.name: d.color for d in S.DESCRIPTIONS.values()}

#: The activations with a learnable parameter of their own, and its attribute (``weight``, ``bias``).
LEARNABLE: dict[str, str] = {d.name: d.learnable for d in S.DESCRIPTIONS.values() if d.learnable}


def _name(a: str) -> str:
    return DISPLAY.get(a, a)
