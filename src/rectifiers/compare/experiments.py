"""The claim experiments: one designed experiment per claim of the article, settings fixed here.

Every claim id of the descriptions (:mod:`rectifiers._spec`) belongs to exactly one
:class:`Experiment` (:func:`experiment_of`). An experiment fixes the model, data (the run's data
set; the models adapt to its input shape), depth, width, initialisation, learning rate, epochs,
the arms that differ (what varies), and how many seeds each preset runs. Seeds are always
``0 .. n-1`` (or the ``--seeds`` given), never chosen by outcome. The premise each experiment
must meet, and the rule of each verdict, are in :mod:`rectifiers.report.claims`.

Two experiments train nothing: ``kink`` (the one-sided derivatives at the kink, computed by the
library) and ``cost`` (the funnel's parameters, step time and memory, measured side by side).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _spec as S
from .config import DEFAULT_PROVOKE_BIAS, Plan, RunSpec

__all__ = ["Arm", "Experiment", "EXPERIMENTS", "experiment_of", "experiments_for", "run_specs",
           "arm_label"]


@dataclass(frozen=True)
class Arm:
    """One setting an experiment compares: an activation, its parameter, and whether it is held."""

    name: str  # the run-name part: "relu", "frelu-b0", ...
    activation: str  # a registry name, or a baseline of rectifiers.zoo.BASELINES
    value: float | None = None  # LeakyReLU's slope, PReLU's initial slope, FReLU's (initial) bias
    frozen: bool = False  # hold the activation's own parameter at ``value``


def arm_label(arm: Arm) -> str:
    """The report's name of an arm: ``FReLU (b = 0, held)``, ``PReLU (a from 0.25, learned)``."""
    d = S.DESCRIPTIONS.get(arm.activation)
    base = d.label if d else arm.activation
    if d is None or arm.value is None:
        return base + (" (held)" if arm.frozen else "")
    sym = d.sweep.symbol
    if arm.frozen:
        return f"{base} ({sym} = {arm.value:g}, held)"
    if d.learnable:
        return f"{base} ({sym} from {arm.value:g}, learned)"
    return f"{base} ({sym} = {arm.value:g})"


@dataclass(frozen=True)
class Experiment:
    """A designed experiment: its claims, its settings, its arms and its seed counts."""

    name: str
    title: str
    claims: tuple[str, ...]
    question: str  # what it asks, in one sentence
    varies: str  # what differs between the arms
    premise: str  # what must hold for the claims to be weighed (checked by report.claims)
    arms: tuple[Arm, ...] = ()
    model: str | None = None  # "mlp", "cnn", or None: nothing is trained
    depth: int = 4
    width: int | None = None
    norm: bool = False
    init: str = "torch"
    provoke: float | None = None
    lr: float = 0.05
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 1
    seeds: tuple[int, int, int] = (3, 5, 10)  # quick, default, full
    probe_dead: bool = False  # probe dead units every epoch (only the dying experiment needs it)

    def n_seeds(self, preset: str) -> int:
        return self.seeds[("quick", "default", "full").index(preset)]

    def settings(self) -> str:
        """The settings in one line, as the report prints them."""
        if self.model is None:
            return "no training"
        parts = [f"{'plain MLP' if self.model == 'mlp' else 'small CNN'}, depth {self.depth}, "
                 f"width {self.width or (64 if self.model == 'mlp' else 16)}"
                 + (", BatchNorm before every activation" if self.norm else ", no normalisation"),
                 "PyTorch's default initialisation" if self.init == "torch" else
                 "Kaiming-normal initialisation with each activation's gain",
                 f"SGD lr {self.lr:g}, momentum {self.momentum:g}, batch {self.batch_size}, "
                 f"{self.epochs} epoch{'s' if self.epochs > 1 else ''}"]
        if self.provoke is not None:
            parts.append(f"every layer feeding an activation starts with bias {self.provoke:g}")
        return "; ".join(parts)


_RELU, _LEAKY, _PRELU = Arm("relu", "relu"), Arm("leaky_relu", "leaky_relu"), Arm("prelu", "prelu")
_FRELU = Arm("flexible_relu", "flexible_relu")

#: The experiments, in the report's order. Settings are fixed before any run, here.
EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment(
        name="vanishing",
        title="Vanishing gradients in a deep plain MLP",
        claims=("relu-vanishing", "leaky-vanishing", "prelu-vanishing", "frelu-vanishing"),
        question="Does the first layer's gradient shrink less, relative to the last layer's, than "
        "with ReLU (and, for ReLU, than with a saturating sigmoid)?",
        varies="the activation (ReLU, LeakyReLU a = 0.01, PReLU a from 0.25, FReLU b from -1, "
        "sigmoid); same weights at the start for the same seed",
        premise="ReLU's gradient vanishes here: the first/last layer gradient-norm ratio is under "
        "1e-3 (GradientFlowMonitor's vanishing threshold) on at least 80% of steps in every seed",
        arms=(_RELU, _LEAKY, _PRELU, _FRELU, Arm("sigmoid", "sigmoid")),
        model="mlp", depth=16, width=32, init="torch", lr=0.05, epochs=2, seeds=(2, 5, 10),
    ),
    Experiment(
        name="dying",
        title="Dying units under a provoked negative bias",
        claims=("relu-dying", "leaky-dying", "prelu-dying", "frelu-dying-b", "frelu-dying-b0"),
        question="With every layer started at bias -2, do units die (derivative 0 on every "
        "training image) and stay dead, and does each activation have fewer dead units than ReLU?",
        varies="the activation (ReLU, LeakyReLU a = 0.01, PReLU a from 0.25, FReLU with b held "
        "at -1, +1 and 0)",
        premise="ReLU units die: at least 1% of ReLU units dead at the end in every seed; each FReLU "
        "arm's b exactly at its value (-1, +1, 0) in every layer throughout",
        arms=(_RELU, _LEAKY, _PRELU, Arm("frelu-bm1", "flexible_relu", -1.0, True),
              Arm("frelu-b1", "flexible_relu", 1.0, True), Arm("frelu-b0", "flexible_relu", 0.0, True)),
        model="mlp", depth=4, width=64, init="kaiming", provoke=DEFAULT_PROVOKE_BIAS, lr=0.05,
        epochs=5, seeds=(2, 5, 10), probe_dead=True,
    ),
    Experiment(
        name="exploding",
        title="FReLU's bias b against the gradient norm",
        claims=("frelu-exploding",),
        question="As b grows, does the gradient grow: the whole model's gradient norm at the first "
        "step, and the first layer's relative to the last's?",
        varies="FReLU's b, held at 0, 0.5, 1, 2 and 4 in every layer",
        premise="b held at its value in every layer throughout, and at b = 0 no step flagged "
        "exploding (the baseline is sound)",
        arms=tuple(Arm(f"frelu-b{v:g}", "flexible_relu", float(v), True) for v in (0, 0.5, 1, 2, 4)),
        model="mlp", depth=8, width=32, init="kaiming", lr=0.01, epochs=1, seeds=(2, 5, 10),
    ),
    Experiment(
        name="learnable",
        title="Learnable parameters against their fixed twins",
        claims=("prelu-learnable", "frelu-learnable"),
        question="Does learning PReLU's slope beat LeakyReLU with the same slope held at 0.25, and "
        "does learning FReLU's bias (from 0) beat ReLU (FReLU with b held at 0)?",
        varies="whether the activation's parameter is learned: PReLU (a from 0.25) vs LeakyReLU "
        "(a = 0.25); FReLU (b from 0) vs ReLU",
        premise="the learned parameter moved (mean over layers by at least 0.01 in every seed), "
        "and every arm trained (test accuracy over twice chance)",
        arms=(Arm("leaky-a0.25", "leaky_relu", 0.25), Arm("prelu", "prelu", 0.25), _RELU,
              Arm("frelu-b0", "flexible_relu", 0.0)),
        model="mlp", depth=4, width=64, init="torch", lr=0.05, epochs=10, seeds=(2, 8, 16),
    ),
    Experiment(
        name="funnel",
        title="Funnel against ReLU and PReLU, BatchNorm for all",
        claims=("funnel-acc",),
        question="With a BatchNorm before every activation of every arm (so the funnel's own "
        "BatchNorm does not decide), is the funnel more accurate than ReLU and PReLU?",
        varies="the activation (ReLU, PReLU a from 0.25, Funnel 3 x 3)",
        premise="every activation follows a BatchNorm in every arm, and every arm trained (test "
        "accuracy over twice chance)",
        arms=(_RELU, _PRELU, Arm("funnel_relu", "funnel_relu")),
        model="cnn", depth=2, width=16, norm=True, init="torch", lr=0.05, epochs=5, seeds=(2, 8, 16),
    ),
    Experiment(
        name="kink",
        title="The kink at 0 (a fact, computed)",
        claims=("nondiff",),
        question="Do the one-sided derivatives at the kink differ, and what does autograd use there?",
        varies="nothing: each activation's derivative from the left and from the right of 0 (the "
        "funnel with its condition held at T(x) = 0), in float64, and autograd's value at 0",
        premise="none (computed, not sampled)",
    ),
    Experiment(
        name="cost",
        title="The funnel's cost, side by side",
        claims=("funnel-cost",),
        question="How many parameters, how much time per training step and how many bytes for "
        "backward does the funnel add to the funnel experiment's CNN?",
        varies="the activation; steps taken in turn, round after round, on the same batch",
        premise="at least 5 timed rounds",
        model="cnn", depth=2, width=16, norm=True,
    ),
)

_BY_CLAIM = {c: e for e in EXPERIMENTS for c in e.claims}


def experiment_of(claim_id: str) -> Experiment:
    """The experiment that tests ``claim_id``; ``KeyError`` when none does."""
    return _BY_CLAIM[claim_id]


def experiments_for(claims: list[str] | tuple[str, ...]) -> list[Experiment]:
    """The experiments testing ``claims`` (all when empty), in the report's order."""
    want = set(claims) if claims else None
    return [e for e in EXPERIMENTS if want is None or want & set(e.claims)]


def run_specs(exp: Experiment, seeds: list[int]) -> list[tuple[Arm, RunSpec]]:
    """Every (arm, run) of ``exp`` over ``seeds``: arms in order, then seeds."""
    out = []
    if exp.model is None or not exp.arms:
        return out
    for arm in exp.arms:
        for seed in seeds:
            out.append((arm, RunSpec(
                name=f"{exp.name}-{arm.name}-s{seed}", model=exp.model, activation=arm.activation,
                seed=seed, depth=exp.depth, width=exp.width, lr=exp.lr, momentum=exp.momentum,
                batch_size=exp.batch_size, epochs=exp.epochs, init=exp.init, provoke=exp.provoke,
                norm=exp.norm, value=arm.value, frozen=arm.frozen, probe_dead=exp.probe_dead)))
    return out


def plan_seeds(plan: Plan, exp: Experiment) -> list[int]:
    """The seeds ``exp`` runs under ``plan``: ``--seeds`` if given, else ``0 .. n-1`` of the preset."""
    return list(plan.seeds) if plan.seeds is not None else list(range(exp.n_seeds(plan.preset)))
