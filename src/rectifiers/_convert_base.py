"""What :func:`rectifiers.convert` reports, and the small pieces its steps share: which calls
compute a ReLU, how a module is described, the one-module fx tracer, running a sample input."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import modules as M

#: Module-path patterns (``fnmatch`` globs against paths such as ``"layer1.0.relu"``), or a
#: predicate ``(path, module) -> bool``.
Selector = Union[None, str, Sequence[str], Callable[[str, nn.Module], bool]]

#: Functions that compute ReLU (``fx`` records these as ``call_function`` nodes).
RELU_FUNCTIONS: dict[Any, bool] = {  # function -> always in place
    F.relu: False,
    torch.relu: False,
    F.relu_: True,
    torch.relu_: True,
}
#: Tensor methods that compute ReLU -> in place.
RELU_METHODS: dict[str, bool] = {"relu": False, "relu_": True}

_RELU_SOURCES = (nn.ReLU, M.ReLU)
#: What the sample passes see as a relu call.
_RELU_CALLS = set(RELU_FUNCTIONS) | {torch.Tensor.relu, torch.Tensor.relu_}


@dataclass
class Change:
    """One activation replaced: where, what kind of site, and what it was and became."""

    path: str  # module path of the new activation in the converted model
    kind: str  # "module", "call site" (an extra call of a shared module) or "functional"
    before: str
    after: str


@dataclass
class ConversionSummary:
    """What :func:`convert` did. ``print(summary)`` gives a readable report."""

    model: nn.Module
    target: str
    in_place: bool = True
    changed: list[Change] = field(default_factory=list)
    #: (path, reason): activations left alone on purpose (include / exclude), and sites where
    #: the target does not apply (with ``on_inapplicable="skip"``).
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: (path, reason): what could not be converted (untraceable code, still shared parameters).
    not_converted: list[tuple[str, str]] = field(default_factory=list)
    #: Paths of modules whose own forward was rewritten into a ``torch.fx.GraphModule``.
    rewritten: list[str] = field(default_factory=list)
    #: (path, error): modules whose own forward torch.fx could not trace. Relu calls written
    #: there, and repeated calls of one activation module there, cannot be converted; a
    #: ``sample_input`` finds out whether there are any (they then appear in ``not_converted``).
    untraced: list[tuple[str, str]] = field(default_factory=list)
    #: Whether a sample input was run through the converted model.
    checked: bool = False
    #: (path, why): converted sites whose input layout convert could not tell without a sample
    #: input (the target might not apply there: pass ``sample_input`` to check).
    unchecked: list[tuple[str, str]] = field(default_factory=list)
    #: (path, note): converted sites worth knowing about, such as FReLU sites whose bias gets
    #: a zero gradient because a BatchNorm follows.
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing is known, or (without a sample input) suspected, to be left over
        or to fail at the first forward pass."""
        return not self.not_converted and (self.checked or not (self.untraced or self.unchecked))

    def count(self, kind: str | None = None) -> int:
        """Number of changes, of one ``kind`` or in all."""
        return sum(1 for c in self.changed if kind is None or c.kind == kind)

    def __str__(self) -> str:
        kinds = ", ".join(
            f"{self.count(k)} {k}{'s' if self.count(k) != 1 else ''}"
            for k in ("module", "call site", "functional")
            if self.count(k)
        )
        lines = [f"convert -> {self.target}: {len(self.changed)} replaced ({kinds or 'none'})"]
        for c in self.changed:
            lines.append(f"  {c.path or '<root>'}: {c.before} -> {c.after}  [{c.kind}]")
        if self.rewritten:
            lines.append("rewritten with torch.fx: " + ", ".join(p or "<root>" for p in self.rewritten))
        if not self.in_place:
            lines.append("the root was rewritten: use summary.model (a torch.fx.GraphModule)")
        untraced = "could not trace (any relu calls there are unconverted" + (
            "; the sample input found none beyond those listed below)" if self.checked
            else "; pass sample_input to find out)"
        )
        for title, items in (
            ("skipped", self.skipped), (untraced, self.untraced), ("NOT converted", self.not_converted),
            ("not checked (pass sample_input to check)", self.unchecked), ("notes", self.notes),
        ):
            if items:
                lines.append(f"{title}:")
                lines.extend(f"  {p or '<root>'}: {why}" for p, why in items)
        return "\n".join(lines)


def _describe(m: nn.Module) -> str:
    extra = m.extra_repr()
    return f"{type(m).__name__}({extra})"


def _qualname(f: Any) -> str:
    mod = getattr(f, "__module__", None) or ""
    short = {"torch.nn.functional": "F", "torch": "torch"}.get(mod, mod)
    return f"{short}.{getattr(f, '__name__', f)}" if short else str(f)


class _OwnCode(fx.Tracer):
    """Traces one module's own forward: every submodule call stays a single ``call_module``."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


def _is_library_module(m: nn.Module) -> bool:
    mod = type(m).__module__ or ""
    return mod.startswith("torch.") or mod.startswith("rectifiers.")


def _run(model: nn.Module, sample_input: Any) -> Any:
    if isinstance(sample_input, dict):
        return model(**sample_input)
    if isinstance(sample_input, (tuple, list)):
        return model(*sample_input)
    return model(sample_input)
