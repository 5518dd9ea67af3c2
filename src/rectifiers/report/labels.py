"""Names and colours of the activations in the report."""

from __future__ import annotations

__all__ = ["DISPLAY", "COLORS"]

DISPLAY = {
    "relu": "ReLU",
    "leaky_relu": "LeakyReLU",
    "prelu": "PReLU",
    "flexible_relu": "FReLU",
    "funnel_relu": "Funnel",
}

COLORS = {"relu": "#1f77b4", "leaky_relu": "#ff7f0e", "prelu": "#2ca02c", "flexible_relu": "#d62728",
          "funnel_relu": "#9467bd"}


def _name(a: str) -> str:
    return DISPLAY.get(a, a)
