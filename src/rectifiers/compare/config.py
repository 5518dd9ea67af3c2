"""The settings of a comparison (:class:`Config`), its defaults and its error class.

Plain data: the command line that reproduces a configuration comes from :meth:`Config.command_line`,
which the report prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from ..zoo import ACTIVATIONS, MODELS

__all__ = ["CompareError", "Config", "Plan", "RunSpec", "run_name", "DEFAULT_OUT", "DEFAULT_PROVOKE_BIAS",
           "PROBE_LIMIT", "MAX_SEED", "PRESETS"]

#: Where the report goes when ``--out`` is not given.
DEFAULT_OUT = "report"

#: The bias ``--provoke`` gives the layers feeding an activation when no value is named.
DEFAULT_PROVOKE_BIAS = -2.0

#: Samples of the training set the dead-unit probe streams over (all, up to this many).
PROBE_LIMIT = 2048


class CompareError(ValueError):
    """Settings that cannot run (batch size vs processes, ``--resume`` into another run's folder)."""

@dataclass
class Config:
    """Everything that decides the numbers of a comparison (``--resume`` checks it is unchanged)."""

    activations: list[str] = field(default_factory=lambda: list(ACTIVATIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    models: list[str] = field(default_factory=lambda: list(MODELS))
    epochs: int = 10
    depth: int = 4
    width: int | None = None
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    init: str = "torch"
    provoke: float | None = None
    data: str = "digits"
    image_size: int = 32
    limit: int | None = None
    def run_keys(self) -> list[tuple[str, str, int]]:
        return [(m, a, s) for m in self.models for a in self.activations for s in self.seeds]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """A configuration from its ``asdict`` form (``config.json``); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def command_line(self) -> str:
        """The ``rectifiers compare`` command that reproduces this configuration (defaults left out)."""
        d = Config()
        parts = ["rectifiers compare"]
        if self.activations != d.activations:
            parts.append("--activations " + " ".join(self.activations))
        if self.models != d.models:
            parts.append("--models " + " ".join(self.models))
        if self.seeds != d.seeds:
            parts.append("--seeds " + " ".join(map(str, self.seeds)))
        for k in ("epochs", "depth", "width", "lr", "momentum", "batch_size", "init", "provoke", "data",
                  "image_size", "limit"):
            if getattr(self, k) != getattr(d, k):
                parts.append(f"--{k.replace('_', '-')} {getattr(self, k)}")
        return " ".join(parts)


    def run_spec(self, model: str, activation: str, seed: int) -> "RunSpec":
        """The :class:`RunSpec` of one run of this grid."""
        return RunSpec(name=run_name(model, activation, seed), model=model, activation=activation,
                       seed=seed, depth=self.depth, width=self.width, init=self.init,
                       provoke=self.provoke, lr=self.lr, momentum=self.momentum,
                       batch_size=self.batch_size, epochs=self.epochs)


@dataclass(frozen=True)
class RunSpec:
    """Everything that decides one training run: the model, its activation, the schedule, the seed.

    ``value`` replaces the activation's swept parameter (LeakyReLU's slope, PReLU's initial
    slope, FReLU's initial bias); ``frozen`` holds the activation's own parameter fixed;
    ``norm`` puts a BatchNorm before every activation (:func:`rectifiers.zoo.build_model`);
    without ``probe_dead`` the dead-unit fractions are recorded as None.
    """

    name: str
    model: str
    activation: str
    seed: int
    depth: int
    width: int | None
    lr: float
    momentum: float
    batch_size: int
    epochs: int
    init: str = "torch"
    provoke: float | None = None
    norm: bool = False
    value: float | None = None
    frozen: bool = False
    #: probe dead units on the training set before training and after every epoch
    probe_dead: bool = True


#: The seed counts of the claim experiments: ``--quick``, the default, ``--full``.
PRESETS = ("quick", "default", "full")


@dataclass
class Plan:
    """The claim experiments to run (``rectifiers compare`` without grid options).

    ``claims``: claim ids (empty: all); ``preset``: one of :data:`PRESETS` (how many seeds each
    experiment runs, fixed per experiment in :mod:`rectifiers.compare.experiments`); ``seeds``:
    the seeds of every experiment instead (None: ``0 .. n-1`` of the preset's count, never chosen
    by outcome). ``data``, ``image_size`` and ``limit`` as in :class:`Config`.
    """

    claims: list[str] = field(default_factory=list)
    preset: str = "default"
    seeds: list[int] | None = None
    data: str = "digits"
    image_size: int = 32
    limit: int | None = None
    kind: str = "experiments"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def command_line(self) -> str:
        """The ``rectifiers compare`` command that reproduces this plan (defaults left out)."""
        parts = ["rectifiers compare"]
        if self.preset != "default":
            parts.append(f"--{self.preset}")
        if self.claims:
            parts.append("--claims " + " ".join(self.claims))
        if self.seeds is not None:
            parts.append("--seeds " + " ".join(map(str, self.seeds)))
        d = Plan()
        for k in ("data", "image_size", "limit"):
            if getattr(self, k) != getattr(d, k):
                parts.append(f"--{k.replace('_', '-')} {getattr(self, k)}")
        return " ".join(parts)


def run_name(model: str, activation: str, seed: int) -> str:
    return f"{model}-{activation}-s{seed}"


#: Seeds must lie in [0, MAX_SEED): the epoch shuffle is seeded with ``seed * 1_000_003 + epoch``.
MAX_SEED = 2**31
