"""The small models of ``rectifiers compare``: a plain CNN and a plain MLP, any activation.

Both take an ``act_layer`` factory, ``act_layer(channels) -> nn.Module``, called once per place an
activation is used (every place gets its own module, so learnable slopes and biases are per
layer), in the manner of timm's ``act_layer=`` arguments. :func:`act_layer` builds such a
factory from an activation name. Neither model has BatchNorm or dropout: what differs between two
runs is the activation, and a 2-process DistributedDataParallel run computes the same function
as a 1-process run (except with the funnel activation, whose condition holds a BatchNorm).

* :class:`SmallCNN` (N, C, H, W): ``depth`` blocks of conv 3 x 3 (padding 1) -> activation; the
  first block has ``width`` channels, the later ones ``2 * width``; a 2 x 2 max-pool after each of
  the first two blocks while the image is at least 2 x 2; then adaptive average pooling to 2 x 2
  and a linear classifier.
* :class:`MLP` (N, *): flatten, ``depth`` hidden layers of ``width`` units (linear -> activation),
  then a linear classifier. A deep plain MLP is where dying ReLU and vanishing gradients show.

``norm=True`` puts a BatchNorm after every conv (or linear layer), before the activation: the
claim experiments use it so that every activation has the normalisation the funnel activation
carries in its condition. ``value`` sets the activation's swept parameter (LeakyReLU's slope,
PReLU's initial slope, FReLU's initial bias) and ``frozen`` holds the activation's own parameter
fixed (``requires_grad=False``). :data:`BASELINES` (sigmoid, tanh) are the saturating
activations the ReLU claims are made against; they are not rectifiers and only the experiments
use them.

In an MLP there is no spatial neighbourhood: the funnel activation there is
``max(x, BN(w * x))`` per feature (:class:`FunnelReLU1d` with kernel size 1 on (N, F, 1)), the
funnel's condition reduced to a learnable per-feature scale. The report says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from . import _spec as S
from . import modules as M
from .registry import default_module

__all__ = [
    "ACTIVATIONS",
    "BASELINES",
    "MODELS",
    "act_layer",
    "activation_gain",
    "build_model",
    "init_weights",
    "provoke_biases",
    "SmallCNN",
    "MLP",
    "FeatureFunnel",
]

#: Activation names accepted by :func:`act_layer`, in report order.
ACTIVATIONS = S.ACTIVATIONS

#: Model names accepted by :func:`build_model`.
MODELS = ("cnn", "mlp")

ActLayer = Callable[[int], nn.Module]

#: Saturating activations the ReLU claims are weighed against (not rectifiers): name -> class.
BASELINES: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class FeatureFunnel(nn.Module):
    """The funnel activation on (N, F) features: ``max(x, BN(w * x))`` per feature.

    Wraps :class:`rectifiers.FunnelReLU1d` with kernel size 1 on the view (N, F, 1); the
    monitors see the inner ``FunnelReLU1d``.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.funnel = M.FunnelReLU1d(features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.funnel(x.unsqueeze(-1)).squeeze(-1)


def act_layer(name: str, *, spatial: bool = True, value: float | None = None,
              frozen: bool = False) -> ActLayer:
    """A factory ``f(channels) -> nn.Module`` for activation ``name`` (one of :data:`ACTIVATIONS`,
    or a saturating baseline of :data:`BASELINES`).

    ``relu`` -> ``ReLU()``; ``leaky_relu`` -> ``LeakyReLU(0.01)``; ``prelu`` -> ``PReLU(1, 0.25)``
    (one slope per layer, torch's default); ``flexible_relu`` -> ``FlexibleReLU(1, -1.0)`` (one bias
    per layer, the authors' advice); ``funnel_relu`` -> ``FunnelReLU(channels, 3)`` for images
    (``spatial=True``) or :class:`FeatureFunnel` for flat features. ``value`` replaces the
    default of the swept parameter (the slope a, the initial slope, the initial bias b);
    ``frozen`` holds the activation's own learnable parameter (PReLU's a, FReLU's b) fixed.
    """
    if name in BASELINES:
        if value is not None or frozen:
            raise ValueError(f"act_layer: {name} has no parameter to set or hold")
        return lambda c: BASELINES[name]()
    if name not in S.DESCRIPTIONS:
        raise ValueError(f"act_layer: name must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    d = S.DESCRIPTIONS[name]
    if frozen and not d.learnable:
        raise ValueError(f"act_layer: {name} has no learnable parameter of its own to hold fixed")
    if d.channels and not spatial:
        if value is not None:
            raise ValueError(f"act_layer: {name} on flat features takes no value")
        return lambda c: FeatureFunnel(c)

    def make(c: int) -> nn.Module:
        m = default_module(name, c, value)
        if frozen:
            getattr(m, d.learnable).requires_grad_(False)
        return m

    return make


def activation_gain(name: str) -> float:
    """The Kaiming gain for activation ``name``: ``torch.nn.init.calculate_gain`` where it applies.

    relu and flexible_relu: ``calculate_gain('relu')`` = sqrt(2) (b shifts, it does not scale);
    leaky_relu: ``calculate_gain('leaky_relu', 0.01)``; prelu: ``calculate_gain('leaky_relu', 0.25)``
    (its initial slope); funnel_relu: 1 (``'linear'``: max(x, T(x)) keeps roughly the variance of x,
    no half of it is cut away).
    """
    if name not in S.DESCRIPTIONS:
        raise ValueError(f"activation_gain: name must be one of {', '.join(ACTIVATIONS)}, got {name!r}")
    nonlinearity, param = S.DESCRIPTIONS[name].gain
    return nn.init.calculate_gain(nonlinearity, param)


class SmallCNN(nn.Module):
    """A plain CNN: ``depth`` x (conv 3x3 -> act), max-pool after the first two, pool to 2x2, linear.

    Shapes: input (N, in_channels, H, W), output (N, num_classes) logits.
    """

    def __init__(
        self, in_channels: int, num_classes: int, act: ActLayer, *, depth: int = 2, width: int = 16,
        image_size: int = 8, norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, size = in_channels, image_size
        for i in range(depth):
            c_out = width if i == 0 else 2 * width
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(act(c_out))
            if i < 2 and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Linear(c_in * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


class MLP(nn.Module):
    """A plain MLP: flatten, ``depth`` x (linear -> act) of ``width`` units, linear classifier.

    Shapes: input (N, *) with ``in_features`` elements per sample, output (N, num_classes).
    """

    def __init__(self, in_features: int, num_classes: int, act: ActLayer, *, depth: int = 4,
                 width: int = 64, norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        f_in = in_features
        for _ in range(depth):
            layers += [nn.Linear(f_in, width, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(act(width))
            f_in = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(f_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(
    kind: str, activation: str, input_shape: tuple[int, int, int], num_classes: int, *,
    depth: int = 4, width: int | None = None, norm: bool = False, value: float | None = None,
    frozen: bool = False,
) -> nn.Module:
    """``SmallCNN`` (``kind='cnn'``, default width 16) or ``MLP`` (``'mlp'``, default width 64).

    ``depth``: conv blocks of the CNN or hidden layers of the MLP (at least 1). ``norm``: a
    BatchNorm before every activation; ``value`` and ``frozen``: as :func:`act_layer`.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"build_model: depth must be a positive int, got {depth!r}")
    c, h, w = input_shape
    if kind == "cnn":
        return SmallCNN(c, num_classes, act_layer(activation, spatial=True, value=value, frozen=frozen),
                        depth=depth, width=width or 16, image_size=min(h, w), norm=norm)
    if kind == "mlp":
        return MLP(c * h * w, num_classes, act_layer(activation, spatial=False, value=value, frozen=frozen),
                   depth=depth, width=width or 64, norm=norm)
    raise ValueError(f"build_model: kind must be one of {', '.join(MODELS)}, got {kind!r}")


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and m.weight.dim() > 1
            and getattr(m, "groups", 1) == 1]


def init_weights(model: nn.Module, scheme: str, activation: str) -> None:
    """Initialise the conv and linear layers of ``model`` in place.

    ``scheme='torch'``: keep PyTorch's default (``kaiming_uniform_(a=sqrt(5))``, weights with
    variance 1/(3 fan_in): every layer shrinks the signal). ``'kaiming'``: weights
    ``N(0, gain^2 / fan_in)`` with the activation's own gain (:func:`activation_gain`) for the
    layers that feed an activation and gain 1 for the classifier, biases 0.
    """
    if scheme == "torch":
        return
    if scheme != "kaiming":
        raise ValueError(f"init_weights: scheme must be 'torch' or 'kaiming', got {scheme!r}")
    layers = _weight_layers(model)
    gain = activation_gain(activation) if activation not in BASELINES else \
        nn.init.calculate_gain(activation)
    with torch.no_grad():
        for i, m in enumerate(layers):
            g = 1.0 if i == len(layers) - 1 else gain
            fan_in = m.weight[0].numel()
            m.weight.normal_(0.0, g / math.sqrt(fan_in))
            if m.bias is not None:
                m.bias.zero_()


def provoke_biases(model: nn.Module, bias: float) -> None:
    """Set the bias of every conv / linear layer that feeds an activation to ``bias`` (in place).

    A large negative ``bias`` pushes most pre-activations below 0 from the start: ReLU units there
    get no gradient and stay dead, while LeakyReLU and PReLU units keep a small one.
    """
    layers = _weight_layers(model)
    with torch.no_grad():
        for m in layers[:-1]:
            if m.bias is not None:
                m.bias.fill_(bias)
