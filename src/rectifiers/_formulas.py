"""The formula and derivative of each activation as text, for tables, plots and the CLI.

Floor 0: plain data, importing nothing of the package. The formulas themselves (the code) are in
:mod:`rectifiers.reference`.
"""

from __future__ import annotations

__all__ = ["FORMULAS"]

#: Human-readable forward formula and derivative of each activation, keyed by registry name.
FORMULAS: dict[str, tuple[str, str]] = {
    "relu": ("max(0, x)", "1 if x > 0 else 0"),
    "leaky_relu": ("x if x > 0 else a*x", "1 if x > 0 else a"),
    "prelu": ("x if x > 0 else a*x  (a learnable)", "1 if x > 0 else a;  dL/da = sum_{x<=0} g*x"),
    "flexible_relu": ("max(0, x) + b  (b learnable)", "1 if x > 0 else 0;  dL/db = sum g"),
    "funnel_relu": (
        "max(x, T(x)),  T = BatchNorm(depthwise k x k conv(x))",
        "as torch.maximum: 1 where x > T(x), 1/2 at ties; plus the path through T",
    ),
}
