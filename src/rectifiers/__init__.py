"""rectifiers: the rectifier family of activation functions for PyTorch, done properly.

ReLU (the baseline), LeakyReLU, PReLU, FReLU (the flexible ReLU, ``max(0, x) + b``) and the
funnel activation (``max(x, BN(depthwise conv(x)))``), as modules and functions.
"""

from . import functional, reference
from ._checks import ShapeError
from .convert import ConversionSummary, convert
from .export import fuse
from .functional import flexible_relu, frelu, funnel_relu, leaky_relu, prelu, relu
from .modules import (
    FlexibleReLU,
    FReLU,
    FunnelReLU,
    FunnelReLU1d,
    FunnelReLU3d,
    LeakyReLU,
    PReLU,
    ReLU,
)
from .optim import param_groups
from .registry import create, get, names, register, unregister

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "functional",
    "reference",
    "relu",
    "leaky_relu",
    "prelu",
    "flexible_relu",
    "frelu",
    "funnel_relu",
    "ReLU",
    "LeakyReLU",
    "PReLU",
    "FlexibleReLU",
    "FReLU",
    "FunnelReLU",
    "FunnelReLU1d",
    "FunnelReLU3d",
    "get",
    "create",
    "register",
    "unregister",
    "names",
    "convert",
    "ConversionSummary",
    "param_groups",
    "fuse",
    "ShapeError",
]
