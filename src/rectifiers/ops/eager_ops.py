"""The ``"eager"`` backend: rectifiers' own autograd Functions, lean in memory, on any device.

Until the lean Functions land, this backend runs the plain PyTorch path.
"""

from __future__ import annotations

from .torch_ops import flexible_relu, funnel_relu, leaky_relu, prelu, relu

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu"]
