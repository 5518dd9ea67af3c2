"""Floor 0: one description per activation, and the one resolver of their names.

Every fact about an activation that more than one place needs (names and aliases, formula and
derivative text, the swept parameter and its default sweep, the Kaiming gain, the plot colour,
the benchmark's case ids, the article's claims with their ids, and what ``rectifiers info``
prints) is typed here once; the registry, the graphs, the model zoo, the benchmark, the report,
the diagnostics and the catalog read it. Adding an activation starts with a
:class:`Description` here.

This module is plain data and imports nothing of the package (nor torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MEASURES", "Param", "Claim", "SweepSpec", "Variant", "Description", "DESCRIPTIONS",
           "ACTIVATIONS", "REGISTRY", "key", "registry_aliases", "resolve", "describe", "claim_ids"]

#: How each kind of claim is measured; the texts ``info`` prints after "measured by".
MEASURES: dict[str, str] = {
    "dead": "rectifiers.diagnostics.DeadUnitMonitor: the dead fraction (units whose derivative "
    "was 0 on every input), with the inactive and near-dead fractions, per layer and channel",
    "vanishing": "rectifiers.diagnostics.GradientFlowMonitor: per-layer gradient norms and the "
    "vanishing flag (first/last layer ratio)",
    "exploding": "rectifiers.diagnostics.GradientFlowMonitor: per-layer gradient norms and the "
    "exploding flag (first/last layer ratio)",
    "params": "rectifiers.diagnostics.GradientFlowMonitor: the activation's parameters at every "
    "step (PReLU weight, FReLU bias)",
    "accuracy": "rectifiers compare: accuracy and loss side by side, same model, data and seeds",
    "kink": "rectifiers plot and rectifiers table: f'(x) on both sides of the kink, and the value "
    "autograd takes at it",
    "cost": "rectifiers bench: time and memory per step against torch.nn",
}


@dataclass(frozen=True)
class Param:
    """A constructor argument, learnable parameter or buffer, with its shape and default."""

    name: str
    kind: str  # "argument", "parameter" or "buffer"
    shape: str  # the Python type of an argument, the tensor shape of a parameter or buffer
    default: str
    doc: str


@dataclass(frozen=True)
class Claim:
    """One of the article's pros or cons, in our words, with how it is measured."""

    id: str  # stable id, shared by the same claim on several activations ("nondiff")
    kind: str  # "pro" or "con"
    claim: str
    measures: tuple[str, ...]  # keys of MEASURES
    comment: str = ""

    @property
    def measured_by(self) -> tuple[str, ...]:
        return tuple(MEASURES[m] for m in self.measures)


@dataclass(frozen=True)
class SweepSpec:
    """The parameter an activation's graphs sweep: its symbol, constructor argument and values."""

    symbol: str | None  # "a", "b", "kernel_sum"; None: nothing to sweep
    kwarg: str | None  # the constructor argument that takes the value (None: set by the drawer)
    default: float | None  # the value drawn when none is asked for
    values: tuple[float | None, ...]  # the default sweep of ``rectifiers plot``


@dataclass(frozen=True)
class Variant:
    """A further registry name for the same activation in other dimensions (the 1-D funnel)."""

    name: str
    cls: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Description:
    """Everything the library knows about one activation, typed once.

    Names: ``name`` (canonical registry name), ``cls`` (the class in :mod:`rectifiers.modules`),
    ``label`` (reports), ``display`` (graph titles), ``short`` (the overview's columns),
    ``aliases`` (the spellings ``info`` lists) and ``more_aliases`` (further lower-case
    spellings the registry takes). Math: ``formula_text`` (forward, derivative). Defaults:
    ``ctor`` (keyword arguments of the default instance, used by the model zoo and the graphs;
    ``channels`` when the constructor takes the channel count first), ``sweep``, ``gain``
    (the arguments of ``torch.nn.init.calculate_gain``), ``learnable`` (the attribute holding
    the activation's own learnable parameter). Presentation: ``color``. ``bench``: the benchmark's
    case ids. ``claims``: the article's claims, each with its id. The rest is what
    ``rectifiers info`` prints.
    """

    name: str
    cls: str
    label: str
    display: str
    short: str
    formula_text: tuple[str, str]
    sweep: SweepSpec
    gain: tuple[str, float | None]
    color: str
    bench: tuple[str, ...]
    ctor: tuple[tuple[str, object], ...]
    title: str
    module: str
    functional: str
    aliases: tuple[str, ...]
    summary: str
    params: tuple[Param, ...]
    paper: str
    used_in: tuple[str, ...]
    claims: tuple[Claim, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    #: whose claims ``claims`` are
    claims_source: str = "the source article"
    learnable: str | None = None
    channels: bool = False
    more_aliases: tuple[str, ...] = ()
    variants: tuple[Variant, ...] = ()

    @property
    def formula(self) -> str:
        return self.formula_text[0]

    @property
    def derivative(self) -> str:
        return self.formula_text[1]

    @property
    def defaults(self) -> str:
        vals = [f"{p.name}={p.default}" for p in self.params if p.kind == "argument" and p.default]
        return ", ".join(vals) if vals else "none"

    def claim(self, claim_id: str) -> Claim | None:
        """This activation's claim ``claim_id``, or None."""
        return next((c for c in self.claims if c.id == claim_id), None)


_INPLACE = Param("inplace", "argument", "bool", "False", "overwrite the input with the output")

DESCRIPTIONS: dict[str, Description] = {
    "relu": Description(
        name="relu",
        cls="ReLU",
        label="ReLU",
        display="ReLU",
        short="ReLU",
        formula_text=("max(0, x)", "1 if x > 0 else 0"),
        sweep=SweepSpec(None, None, None, (None,)),
        gain=("relu", None),
        color="#1f77b4",
        bench=("relu",),
        ctor=(),
        title="ReLU (rectified linear unit), the baseline",
        module="rectifiers.ReLU(inplace=False)",
        functional="rectifiers.relu(x, inplace=False)",
        aliases=("ReLU",),
        summary="Passes positive inputs through and sets the rest to zero; the reference point "
        "every other rectifier here is compared with.",
        params=(_INPLACE,),
        paper="Nair & Hinton, 'Rectified Linear Units Improve Restricted Boltzmann Machines', "
        "ICML 2010; Glorot, Bordes & Bengio, 'Deep Sparse Rectifier Neural Networks', "
        "AISTATS 2011",
        used_in=(
            "the default of most convolutional networks (AlexNet, VGG, ResNet)",
            "the hidden layers of most MLPs",
        ),
        claims_source="common knowledge; the article does not cover ReLU, but its claims for "
        "the others are made against it",
        claims=(
            Claim(
                "relu-vanishing",
                "pro",
                "The gradient is exactly 1 for every positive input, so it does not shrink "
                "layer after layer the way a saturating sigmoid or tanh does.",
                ("vanishing",),
            ),
            Claim(
                "relu-dying",
                "con",
                "Dying ReLU: a unit whose input is negative for every example outputs 0 and gets "
                "gradient 0, so it may never recover.",
                ("dead",),
            ),
            Claim(
                "nondiff",
                "con",
                "Not differentiable at x = 0; autograd uses 0 there (the strict x > 0 test).",
                ("kink",),
            ),
        ),
    ),
    "leaky_relu": Description(
        name="leaky_relu",
        cls="LeakyReLU",
        label="LeakyReLU",
        display="LeakyReLU",
        short="LeakyReLU",
        formula_text=("x if x > 0 else a*x", "1 if x > 0 else a"),
        sweep=SweepSpec("a", "negative_slope", 0.01, (0.01, 0.1, 0.25, 1.0)),
        gain=("leaky_relu", 0.01),
        color="#ff7f0e",
        bench=("leaky_relu",),
        ctor=(("negative_slope", 0.01),),
        more_aliases=("lrelu", "leaky"),
        title="LeakyReLU (leaky rectified linear unit, LReLU)",
        module="rectifiers.LeakyReLU(negative_slope=0.01, inplace=False)",
        functional="rectifiers.leaky_relu(x, negative_slope=0.01, inplace=False)",
        aliases=("LeakyReLU", "lrelu"),
        summary="ReLU with a small fixed slope a for negative inputs instead of a flat zero; "
        "a is a hyperparameter, not learned. Same arguments as torch.nn.LeakyReLU.",
        params=(
            Param("negative_slope", "argument", "Python float (a scalar, not a tensor)", "0.01",
                  "the slope a for x <= 0; finite, and not a bool"),
            _INPLACE,
        ),
        paper="Maas, Hannun & Ng, 'Rectifier Nonlinearities Improve Neural Network Acoustic "
        "Models', ICML 2013 workshop",
        used_in=(
            "GANs, above all the discriminator (DCGAN uses a = 0.2)",
            "YOLO-family detectors (Darknet backbones, a = 0.1)",
        ),
        claims=(
            Claim(
                "leaky-vanishing",
                "pro",
                "Mitigates vanishing gradients: the gradient is a, not 0, for negative inputs.",
                ("vanishing",),
            ),
            Claim(
                "leaky-dying",
                "pro",
                "Mitigates the dying ReLU problem: a unit with only negative inputs still "
                "passes gradient a back, so it can recover.",
                ("dead",),
                "The article adds that input 0 still gives output 0, so dying is not fully "
                "avoided; the gradient there is a (as in torch), so what matters is measured, "
                "not argued: a unit counts as dead only if its gradient is zero on all inputs.",
            ),
            Claim(
                "nondiff",
                "con",
                "Not differentiable at x = 0; autograd uses a there (the strict x > 0 test).",
                ("kink",),
            ),
        ),
    ),
    "prelu": Description(
        name="prelu",
        cls="PReLU",
        label="PReLU",
        display="PReLU",
        short="PReLU",
        formula_text=("x if x > 0 else a*x  (a learnable)", "1 if x > 0 else a;  dL/da = sum_{x<=0} g*x"),
        sweep=SweepSpec("a", "init", 0.25, (0.01, 0.1, 0.25, 1.0)),
        gain=("leaky_relu", 0.25),
        color="#2ca02c",
        bench=("prelu", "prelu_scalar"),
        ctor=(("num_parameters", 1), ("init", 0.25)),
        learnable="weight",
        title="PReLU (parametric rectified linear unit)",
        module="rectifiers.PReLU(num_parameters=1, init=0.25, dim=1)",
        functional="rectifiers.prelu(x, weight, dim=1)",
        aliases=("PReLU",),
        summary="LeakyReLU whose negative slope a is learned with the other weights: one slope "
        "shared by all channels, or one per channel. Same arguments, state_dict and results "
        "as torch.nn.PReLU.",
        params=(
            Param("num_parameters", "argument", "int or None", "1",
                  "1 (one shared slope), C (one per channel along dim), or None to count the "
                  "channels at the first call"),
            Param("init", "argument", "float", "0.25", "the initial slope"),
            Param("dim", "argument", "int", "1", "the channel dimension (-1 for (N, *, C))"),
            Param("weight", "parameter", "(num_parameters,)", "filled with init",
                  "the learnable slope a; dL/da = sum over x <= 0 of g*x"),
        ),
        paper="He, Zhang, Ren & Sun, 'Delving Deep into Rectifiers: Surpassing Human-Level "
        "Performance on ImageNet Classification', ICCV 2015",
        used_in=(
            "SRGAN / SRResNet generators (super-resolution GAN)",
            "ENet (real-time segmentation)",
            "face-recognition ResNets (the IR / ArcFace backbones)",
        ),
        claims=(
            Claim(
                "prelu-vanishing",
                "pro",
                "Mitigates vanishing gradients: negative inputs pass gradient a back.",
                ("vanishing",),
            ),
            Claim(
                "prelu-dying",
                "pro",
                "Mitigates the dying ReLU problem, as long as the learned slope stays away "
                "from 0.",
                ("dead",),
                "A learned a can drift to 0 (back to ReLU) or past 1; GradientFlowMonitor records "
                "it during training.",
            ),
            Claim(
                "prelu-learnable",
                "pro",
                "Learning a improves accuracy and convergence over a fixed slope.",
                ("accuracy", "params"),
            ),
            Claim(
                "nondiff",
                "con",
                "Not differentiable at x = 0; autograd uses a there (the strict x > 0 test).",
                ("kink",),
            ),
        ),
    ),
    "flexible_relu": Description(
        name="flexible_relu",
        cls="FlexibleReLU",
        label="FReLU",
        display="FReLU, flexible ReLU (Qiu et al. 2018)",
        short="FReLU (flexible ReLU)",
        formula_text=("max(0, x) + b  (b learnable)", "1 if x > 0 else 0;  dL/db = sum g"),
        sweep=SweepSpec("b", "init", -1.0, (-1.0, 0.0, 1.0)),
        gain=("relu", None),
        color="#d62728",
        bench=("frelu", "frelu_channel"),
        ctor=(("num_parameters", 1), ("init", -1.0)),
        learnable="bias",
        more_aliases=("frelu", "flexible"),
        title="FReLU, the flexible rectified linear unit (Qiu et al.)",
        module="rectifiers.FlexibleReLU(num_parameters=1, init=-1.0, dim=1), alias rectifiers.FReLU",
        functional="rectifiers.flexible_relu(x, bias, dim=1), alias rectifiers.frelu",
        aliases=("FlexibleReLU", "FReLU", "frelu"),
        summary="ReLU shifted by a learned bias b: max(0, x) + b. This is the article's 'FReLU' "
        "formula. It is not the funnel activation (funnel_relu), which shares the abbreviation.",
        params=(
            Param("num_parameters", "argument", "int or None", "1",
                  "1 (one shared bias, the authors' advice), C (one per channel along dim), or "
                  "None to count the channels at the first call"),
            Param("init", "argument", "float", "-1.0", "the initial bias (the original "
                  "implementation's default)"),
            Param("dim", "argument", "int", "1", "the channel dimension (-1 for (N, *, C))"),
            _INPLACE,
            Param("bias", "parameter", "(num_parameters,)", "filled with init",
                  "the learnable bias b; dL/db = sum of g"),
        ),
        paper="Qiu, Xu & Cai, 'FReLU: Flexible Rectified Linear Units for Improving "
        "Convolutional Neural Networks', ICPR 2018 (arXiv:1706.08098)",
        used_in=(
            "the paper's CIFAR-10/100 and ImageNet classifiers; rarely seen elsewhere",
        ),
        claims=(
            Claim(
                "frelu-vanishing",
                "pro",
                "Mitigates vanishing gradients.",
                ("vanishing",),
                "f'(x) is 1 for x > 0 and 0 otherwise, as ReLU: b changes the output, not the "
                "slope.",
            ),
            Claim(
                "frelu-dying-b",
                "pro",
                "Avoids the dying ReLU problem when b is not 0.",
                ("dead",),
                "Doubtful as stated: f'(x) = 0 for x <= 0 whatever b is, so a unit whose inputs "
                "are all negative still gets no gradient through x (only b learns). The dead "
                "fraction settles it.",
            ),
            Claim(
                "frelu-dying-b0",
                "con",
                "With b = 0 it is plain ReLU, dying units included.",
                ("dead",),
            ),
            Claim(
                "frelu-learnable",
                "pro",
                "Learning b improves accuracy and convergence over plain ReLU (b fixed at 0).",
                ("accuracy", "params"),
            ),
            Claim(
                "frelu-exploding",
                "con",
                "As b grows positive, gradients can explode.",
                ("exploding", "params"),
                "b does not change f'; a large b shifts every output up, which grows the next "
                "layer's activations and its weight gradients.",
            ),
            Claim(
                "nondiff",
                "con",
                "Not differentiable at the corner x = 0; autograd uses 0 there.",
                ("kink",),
            ),
        ),
        notes=(
            "The article says FReLU is 'also called Funnel Activation'. Two different papers "
            "share the abbreviation: the formula the article gives is this one; the funnel "
            "activation is funnel_relu (FunnelReLU).",
        ),
    ),
    "funnel_relu": Description(
        name="funnel_relu",
        cls="FunnelReLU",
        label="Funnel",
        display="Funnel activation (Ma et al. 2020)",
        short="Funnel activation",
        formula_text=("max(x, T(x)),  T = BatchNorm(depthwise k x k conv(x))", "as torch.maximum: 1 where x > T(x), 1/2 at ties; plus the path through T"),
        sweep=SweepSpec("kernel_sum", None, 0.5, (-1.0, 0.5, 2.0)),
        gain=("linear", None),
        color="#9467bd",
        bench=("funnel",),
        ctor=(("kernel_size", 3),),
        channels=True,
        more_aliases=("funnel", "funnel2d"),
        variants=(Variant("funnel_relu1d", "FunnelReLU1d", ("funnel1d",)), Variant("funnel_relu3d", "FunnelReLU3d", ("funnel3d",))),
        title="Funnel activation (Ma et al.), also abbreviated FReLU",
        module="rectifiers.FunnelReLU(channels=None, kernel_size=3) for (N, C, H, W); "
        "FunnelReLU1d (N, C, L); FunnelReLU3d (N, C, D, H, W)",
        functional="rectifiers.funnel_relu(x, conv_weight, bn_weight=None, bn_bias=None, "
        "running_mean=None, running_var=None, training=True, momentum=0.1, eps=1e-5, "
        "conv_bias=None)",
        aliases=("FunnelReLU", "funnel"),
        summary="max(x, T(x)) where T(x) is a depthwise k x k convolution followed by "
        "BatchNorm: a spatial condition, so the output at a pixel depends on its neighbourhood, "
        "not on x alone. Its graph is therefore drawn for a stated context (see rectifiers plot).",
        params=(
            Param("channels", "argument", "int or None", "None",
                  "C, the number of channels; None counts them at the first call"),
            Param("kernel_size", "argument", "odd int", "3", "k; padding k // 2 keeps the size"),
            Param("bias", "argument", "bool", "False", "give the conv a bias (BatchNorm follows)"),
            Param("eps", "argument", "float", "1e-05", "as nn.BatchNorm2d"),
            Param("momentum", "argument", "float or None", "0.1", "as nn.BatchNorm2d"),
            Param("weight", "parameter", "(C, 1, k, k); (C, 1, k) in 1-D; (C, 1, k, k, k) in 3-D",
                  "as nn.Conv2d", "the depthwise kernel"),
            Param("bias", "parameter", "(C,), only with bias=True", "as nn.Conv2d",
                  "the conv bias"),
            Param("bn_weight, bn_bias", "parameter", "(C,)", "1, 0", "the BatchNorm affine"),
            Param("running_mean, running_var", "buffer", "(C,)", "0, 1",
                  "the BatchNorm running statistics"),
            Param("num_batches_tracked", "buffer", "()", "0", "as nn.BatchNorm2d"),
        ),
        paper="Ma, Zhang & Sun, 'Funnel Activation for Visual Recognition', ECCV 2020 "
        "(arXiv:2007.11824)",
        used_in=(
            "the paper's ResNet and ShuffleNetV2 ImageNet classifiers, and RetinaNet / "
            "segmentation models built on them",
        ),
        claims=(
            Claim(
                "funnel-acc",
                "pro",
                "Better accuracy than ReLU and PReLU on ImageNet, COCO and Cityscapes at a "
                "small extra cost.",
                ("accuracy",),
            ),
            Claim(
                "funnel-cost",
                "con",
                "Extra parameters (C*k*k + 2*C per activation), compute and memory: one "
                "depthwise conv and one BatchNorm per activation.",
                ("cost",),
            ),
            Claim(
                "nondiff",
                "con",
                "Where x and T(x) tie the maximum has a corner; autograd splits the gradient "
                "half and half there.",
                ("kink",),
            ),
        ),
        notes=(
            "Not the flexible ReLU (flexible_relu): the article's 'FReLU, also called Funnel "
            "Activation' mixes up two papers.",
        ),
        claims_source="the funnel paper; the article makes no claim about this function",
    ),
}


#: The activations, canonical names in report order.
ACTIVATIONS: tuple[str, ...] = tuple(DESCRIPTIONS)

#: Every built-in registry name -> (class name in rectifiers.modules, its description's name).
REGISTRY: dict[str, tuple[str, str]] = {}
for _d in DESCRIPTIONS.values():
    REGISTRY[_d.name] = (_d.cls, _d.name)
    for _v in _d.variants:
        REGISTRY[_v.name] = (_v.cls, _d.name)


def key(name: str) -> str:
    """A name as the resolvers compare it: stripped, lower case, ``-`` as ``_``."""
    return name.strip().lower().replace("-", "_")


def registry_aliases() -> dict[str, str]:
    """Built-in lower-case aliases (class names included) -> registry name."""
    out: dict[str, str] = {}
    for d in DESCRIPTIONS.values():
        for name, cls, more in ((d.name, d.cls, d.more_aliases),
                                *((v.name, v.cls, v.aliases) for v in d.variants)):
            for alias in (key(cls), *more):
                if alias != name:
                    out.setdefault(alias, name)
    return out


_SPELLINGS: dict[str, str] = {}
for _d in DESCRIPTIONS.values():
    for _a in (_d.name, *_d.aliases, *_d.more_aliases):
        _SPELLINGS[key(_a)] = _d.name
for _a, _r in registry_aliases().items():
    _SPELLINGS.setdefault(_a, REGISTRY[_r][1])
for _r, (_c, _n) in REGISTRY.items():
    _SPELLINGS.setdefault(_r, _n)


def resolve(name: str) -> str | None:
    """The description name for any built-in spelling of an activation, or None.

    Registry names, aliases and class names, in any case (``FReLU``, ``lrelu``, ``funnel1d``):
    the 1-D and 3-D funnels resolve to ``funnel_relu``.
    """
    if not isinstance(name, str):
        return None
    return _SPELLINGS.get(key(name))


def describe(name: str) -> Description:
    """The :class:`Description` for any built-in spelling; ``KeyError`` when there is none."""
    found = resolve(name)
    if found is None:
        raise KeyError(name)
    return DESCRIPTIONS[found]


def claim_ids() -> tuple[str, ...]:
    """Every claim id, in the order the descriptions give them (each once)."""
    seen: dict[str, None] = {}
    for d in DESCRIPTIONS.values():
        for c in d.claims:
            seen.setdefault(c.id, None)
    return tuple(seen)
