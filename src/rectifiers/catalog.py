"""What ``rectifiers list`` and ``rectifiers info NAME`` print: one entry per activation.

Each :class:`Entry` gathers the formula and derivative (taken from :data:`rectifiers.reference.FORMULAS`,
never typed a second time), the defaults, the parameters and their shapes, the paper, where the
function is used, and the source article's claims about it, restated in our words. Every claim
names the measurement that puts it to the test: a diagnostic (``DeadUnitMonitor``,
``GradientFlowMonitor`` in :mod:`rectifiers.diagnostics`), the comparison report
(``rectifiers compare``), the benchmarks (``rectifiers bench``) or the graphs (``rectifiers plot``).

This module is plain data: it imports no diagnostics and no plotting code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._formulas import FORMULAS

__all__ = ["Param", "Claim", "Entry", "CATALOG", "NAMES", "ALIASES", "resolve", "MEASURES"]

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

    kind: str  # "pro" or "con"
    claim: str
    measures: tuple[str, ...]  # keys of MEASURES
    comment: str = ""

    @property
    def measured_by(self) -> tuple[str, ...]:
        return tuple(MEASURES[m] for m in self.measures)


@dataclass(frozen=True)
class Entry:
    """Everything ``info`` shows about one activation."""

    name: str
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

    @property
    def formula(self) -> str:
        return FORMULAS[self.name][0]

    @property
    def derivative(self) -> str:
        return FORMULAS[self.name][1]

    @property
    def defaults(self) -> str:
        vals = [f"{p.name}={p.default}" for p in self.params if p.kind == "argument" and p.default]
        return ", ".join(vals) if vals else "none"


_INPLACE = Param("inplace", "argument", "bool", "False", "overwrite the input with the output")

CATALOG: dict[str, Entry] = {
    "relu": Entry(
        name="relu",
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
                "pro",
                "The gradient is exactly 1 for every positive input, so it does not shrink "
                "layer after layer the way a saturating sigmoid or tanh does.",
                ("vanishing",),
            ),
            Claim(
                "con",
                "Dying ReLU: a unit whose input is negative for every example outputs 0 and gets "
                "gradient 0, so it may never recover.",
                ("dead",),
            ),
            Claim(
                "con",
                "Not differentiable at x = 0; autograd uses 0 there (the strict x > 0 test).",
                ("kink",),
            ),
        ),
    ),
    "leaky_relu": Entry(
        name="leaky_relu",
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
                "pro",
                "Mitigates vanishing gradients: the gradient is a, not 0, for negative inputs.",
                ("vanishing",),
            ),
            Claim(
                "pro",
                "Mitigates the dying ReLU problem: a unit with only negative inputs still "
                "passes gradient a back, so it can recover.",
                ("dead",),
                "The article adds that input 0 still gives output 0, so dying is not fully "
                "avoided; the gradient there is a (as in torch), so what matters is measured, "
                "not argued: a unit counts as dead only if its gradient is zero on all inputs.",
            ),
            Claim(
                "con",
                "Not differentiable at x = 0; autograd uses a there (the strict x > 0 test).",
                ("kink",),
            ),
        ),
    ),
    "prelu": Entry(
        name="prelu",
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
                "pro",
                "Mitigates vanishing gradients: negative inputs pass gradient a back.",
                ("vanishing",),
            ),
            Claim(
                "pro",
                "Mitigates the dying ReLU problem, as long as the learned slope stays away "
                "from 0.",
                ("dead",),
                "A learned a can drift to 0 (back to ReLU) or past 1; GradientFlowMonitor records "
                "it during training.",
            ),
            Claim(
                "pro",
                "Learning a improves accuracy and convergence over a fixed slope.",
                ("accuracy", "params"),
            ),
            Claim(
                "con",
                "Not differentiable at x = 0; autograd uses a there (the strict x > 0 test).",
                ("kink",),
            ),
        ),
    ),
    "flexible_relu": Entry(
        name="flexible_relu",
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
                "pro",
                "Mitigates vanishing gradients.",
                ("vanishing",),
                "f'(x) is 1 for x > 0 and 0 otherwise, as ReLU: b changes the output, not the "
                "slope.",
            ),
            Claim(
                "pro",
                "Avoids the dying ReLU problem when b is not 0.",
                ("dead",),
                "Doubtful as stated: f'(x) = 0 for x <= 0 whatever b is, so a unit whose inputs "
                "are all negative still gets no gradient through x (only b learns). The dead "
                "fraction settles it.",
            ),
            Claim(
                "con",
                "With b = 0 it is plain ReLU, dying units included.",
                ("dead",),
            ),
            Claim(
                "con",
                "As b grows positive, gradients can explode.",
                ("exploding", "params"),
                "b does not change f'; a large b shifts every output up, which grows the next "
                "layer's activations and its weight gradients.",
            ),
            Claim(
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
    "funnel_relu": Entry(
        name="funnel_relu",
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
                "pro",
                "Better accuracy than ReLU and PReLU on ImageNet, COCO and Cityscapes at a "
                "small extra cost.",
                ("accuracy",),
            ),
            Claim(
                "con",
                "Extra parameters (C*k*k + 2*C per activation), compute and memory: one "
                "depthwise conv and one BatchNorm per activation.",
                ("cost",),
            ),
            Claim(
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

#: Canonical names, in the order they are listed.
NAMES: tuple[str, ...] = tuple(CATALOG)

#: Every accepted spelling (lower-cased) -> canonical name.
ALIASES: dict[str, str] = {}
for _e in CATALOG.values():
    for _a in (_e.name, *_e.aliases):
        ALIASES[_a.lower()] = _e.name
        ALIASES[_a.lower().replace("-", "_")] = _e.name


def resolve(name: str) -> str | None:
    """The canonical name for ``name`` (a registry name, class name or alias, any case), or None.

    Names are resolved as :func:`rectifiers.registry.canonical_name` does (so every spelling the
    registry takes works here too), then mapped onto the five catalogued activations (the 1-D
    and 3-D funnels are the funnel activation); the catalog's own aliases are accepted as well.
    """
    from .registry import UnknownActivationError, canonical_name

    key = name.strip().lower().replace("-", "_")
    if key in ALIASES:
        return ALIASES[key]
    try:
        key = canonical_name(name.strip())
    except (UnknownActivationError, TypeError):
        return None
    key = {"funnel_relu1d": "funnel_relu", "funnel_relu3d": "funnel_relu"}.get(key, key)
    return key if key in CATALOG else None
