"""Graphs of each activation and its derivative (what the ``rectifiers plot`` command draws).

Every curve comes from :func:`rectifiers.curves.curve`: the library's own module evaluated on a
grid and differentiated with autograd, never a formula typed a second time. Each activation gets
one figure with two panels, ``f(x)`` and ``f'(x)``, its parameter swept over a few values, the
axes drawn through the origin, the formula in the legend and the kink marked: on ``f`` a dot at
``(0, f(0))``; on ``f'`` the curve is broken at the kink, with open circles at the two one-sided
limits and a filled dot at the value autograd takes there. The funnel activation depends on a
neighbourhood, so it is drawn in the context stated by :data:`rectifiers.curves.FUNNEL_CONTEXT`
and its title says so. :func:`plot_overview` puts every activation in one figure.

matplotlib is imported only here, inside the functions, with the non-interactive Agg canvas (no
pyplot, no global state). Files are written atomically: to a temporary file in the target
directory, then ``os.replace``.

Line data carry a ``gid`` so that tests and tools can find them: ``f:NAME:VALUE`` and
``df:NAME:VALUE`` for the curves, ``kink:NAME:VALUE`` for the dot on ``f``, ``dkink:NAME:VALUE``
for the derivative's value at the kink, ``dlimit:NAME:VALUE`` for its one-sided limits
(``VALUE`` is ``-`` for ReLU, which has no parameter).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import _spec as S
from . import _util as _io
from ._util import MissingExtraError, matplotlib_figure
from .curves import DEFAULT_PARAMS, FUNNEL_CONTEXT, NAMES, Curve, curve

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_SWEEPS",
    "FORMATS",
    "MissingExtraError",
    "curves_for",
    "parse_param",
    "plot_activation",
    "plot_overview",
    "save_figure",
    "write_plots",
]

#: The parameter values drawn by default: LeakyReLU / PReLU slope a, FReLU bias b, and the sum of
#: the funnel's constant kernel (its stated context; see :data:`rectifiers.curves.FUNNEL_CONTEXT`).
DEFAULT_SWEEPS: dict[str, tuple[float | None, ...]] = {d.name: d.sweep.values for d in S.DESCRIPTIONS.values()}

#: Short names for titles.
DISPLAY: dict[str, str] = {d.name: d.display for d in S.DESCRIPTIONS.values()}

#: Shorter names for the overview's columns.
SHORT: dict[str, str] = {d.name: d.short for d in S.DESCRIPTIONS.values()}

FORMATS = ("png", "svg")
DEFAULT_XLIM = (-3.0, 3.0)
DEFAULT_POINTS = 601
EXTRA_HINT = "pip install 'rectifiers[plot]'"


def _matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``, or :class:`MissingExtraError` naming the extra."""
    return matplotlib_figure()


# --------------------------------------------------------------------------- data


def _grid(xlim: tuple[float, float], points: int, kinks: Iterable[float] = (0.0,)) -> torch.Tensor:
    lo, hi = float(xlim[0]), float(xlim[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"xlim must be two finite numbers with lo < hi, got {xlim!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an int >= 3, got {points!r}")
    x = torch.linspace(lo, hi, points, dtype=torch.float64)
    inside = [k for k in kinks if lo < k < hi]
    if inside:  # the kink itself is always a grid point, so autograd's value there is drawn
        x = torch.unique(torch.cat([x, torch.tensor(inside, dtype=torch.float64)]))
    return x


def curves_for(
    name: str,
    values: Sequence[float | None] | None = None,
    *,
    xlim: tuple[float, float] = DEFAULT_XLIM,
    points: int = DEFAULT_POINTS,
) -> list[Curve]:
    """The curves drawn for ``name``: one per value of its parameter (default :data:`DEFAULT_SWEEPS`).

    The grid has ``points`` evenly spaced values over ``xlim`` plus the kink (x = 0) itself.
    """
    if name not in NAMES:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(NAMES)}")
    values = DEFAULT_SWEEPS[name] if values is None else tuple(values)
    if not values:
        raise ValueError(f"values for {name!r} must not be empty")
    x = _grid(xlim, points)
    return [curve(name, x, v) for v in values]


def _tag(c: Curve) -> str:
    return f"{c.name}:{'-' if c.value is None else f'{c.value:g}'}"


def _label(c: Curve) -> str:
    return DISPLAY[c.name].split(",")[0] if c.param is None else f"{c.param} = {c.value:g}"


class _Symbol:
    """Formats as a fixed text whatever the format spec: fills FUNNEL_CONTEXT with a symbol."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __format__(self, spec: str) -> str:
        return self.text


def funnel_context(values: Sequence[float | None]) -> str:
    """The funnel's stated context, for one kernel sum or, with several, the symbol ``s``."""
    if len(values) == 1 and values[0] is not None:
        return FUNNEL_CONTEXT.format(kernel_sum=values[0])
    return FUNNEL_CONTEXT.format(kernel_sum=_Symbol("kernel_sum")) + " (kernel_sum in the legend)"


# --------------------------------------------------------------------------- drawing


def _through_origin(ax: Axes, xlabel: str, ylabel: str, fontsize: float) -> None:
    """Axes lines through (0, 0), labelled at their ends; no box."""
    for side in ("left", "bottom"):
        ax.spines[side].set_position(("data", 0.0))
        ax.spines[side].set_color("0.3")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, color="0.9", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=fontsize - 1)
    ax.annotate(xlabel, xy=(1.0, 0.0), xycoords=("axes fraction", "data"), xytext=(4, 0),
                textcoords="offset points", ha="left", va="center", fontsize=fontsize)
    ax.annotate(ylabel, xy=(0.0, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                textcoords="offset points", ha="center", va="bottom", fontsize=fontsize)


def _ylim(ax: Axes, arrays: Iterable[torch.Tensor]) -> None:
    lo = min([0.0] + [float(a.min()) for a in arrays])
    hi = max([0.0] + [float(a.max()) for a in arrays])
    pad = 0.08 * (hi - lo) if hi > lo else 0.5
    ax.set_ylim(lo - pad, hi + pad)


def _legend_title(head: str, text: str, width: int) -> str:
    # one line per clause ("a;  b" or "a,  b"), each wrapped to ``width``
    parts = [p.strip() for p in text.replace(";  ", ",  ").split(",  ")]
    parts[0] = head + parts[0]
    return "\n".join(textwrap.fill(p, width, subsequent_indent="    ") for p in parts)


_STYLES: list[Any] = ["-", (0, (5, 2)), (0, (1.5, 1.5)), (0, (7, 2, 2, 2)), (0, (3, 3))]


def _draw(ax_f: Axes, ax_d: Axes, curves: list[Curve], *, fontsize: float, width: int) -> None:
    """Draw f on ``ax_f`` and f' on ``ax_d`` for each curve, kinks marked, legends below."""
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    xlo, xhi = float(curves[0].x[0]), float(curves[0].x[-1])
    for i, c in enumerate(curves):
        color = colors[i % len(colors)]
        tag = _tag(c)
        # later curves are dashed, so that where curves coincide the ones beneath still show
        style = dict(color=color, lw=2.2, ls=_STYLES[i % len(_STYLES)], label=_label(c))
        ax_f.plot(c.x.numpy(), c.y.numpy(), gid=f"f:{tag}", **style)
        # f' is broken at each kink (no vertical jump drawn)
        yd = c.dy.numpy().copy()
        for j in _kink_indices(c):
            yd[j] = float("nan")
        ax_d.plot(c.x.numpy(), yd, gid=f"df:{tag}", **style)
    for i, c in enumerate(curves):
        color = colors[i % len(colors)]
        tag = _tag(c)
        first = i == 0
        for j in _kink_indices(c):
            k = float(c.x[j])
            left, right, at = float(c.dy[j - 1]), float(c.dy[j + 1]), float(c.dy[j])
            ax_f.plot([k], [float(c.y[j])], "o", ms=6, mfc=color, mec="black", mew=1.0, zorder=5,
                      gid=f"kink:{tag}", label=f"kink at x = {k:g}" if first else None)
            ax_d.plot([k, k], [left, right], "o", ms=6.5, mfc="white", mec=color, mew=1.5, zorder=5,
                      gid=f"dlimit:{tag}", label="one-sided limits" if first else None)
            ax_d.plot([k], [at], "o", ms=4.5, mfc=color, mec=color, zorder=6, gid=f"dkink:{tag}",
                      label=f"f'({k:g}) as autograd takes it" if first else None)
            first = False
    formula, derivative = curves[0].formula, curves[0].derivative
    for ax, ylabel, data, head, text in (
        (ax_f, "f(x)", [c.y for c in curves], "f(x) = ", formula),
        (ax_d, "f'(x)", [c.dy for c in curves], "f'(x) = ", derivative),
    ):
        ax.set_xlim(xlo, xhi)
        _ylim(ax, data)
        _through_origin(ax, "x", ylabel, fontsize)
        ax.legend(title=_legend_title(head, text, width), fontsize=fontsize - 1.5,
                  title_fontsize=fontsize - 0.5, loc="upper center", bbox_to_anchor=(0.5, -0.06),
                  ncols=2, frameon=False, alignment="left")


def _kink_indices(c: Curve) -> list[int]:
    """Grid indices of the kinks strictly inside the grid."""
    out = []
    for k in c.kinks:
        hits = (c.x == k).nonzero()
        if len(hits) and 0 < int(hits[0]) < len(c.x) - 1:
            out.append(int(hits[0]))
    return out


def plot_activation(
    name: str,
    values: Sequence[float | None] | None = None,
    *,
    xlim: tuple[float, float] = DEFAULT_XLIM,
    points: int = DEFAULT_POINTS,
) -> Figure:
    """One figure for ``name``: ``f(x)`` (left) and ``f'(x)`` (right), one curve per value.

    Args:
        name: one of :data:`rectifiers.curves.NAMES`.
        values: the swept parameter's values (LeakyReLU / PReLU slope a, FReLU bias b, funnel
            kernel sum); default :data:`DEFAULT_SWEEPS`. ``(None,)`` for ReLU.
        xlim: the x range (default -3 to 3).
        points: grid size (default 601), the kink x = 0 added.

    Returns a ``matplotlib.figure.Figure`` on an Agg canvas (no pyplot, no window).
    """
    Figure, FigureCanvasAgg = _matplotlib()
    curves = curves_for(name, values, xlim=xlim, points=points)
    fig = Figure(figsize=(12, 6.4), layout="constrained")
    FigureCanvasAgg(fig)
    ax_f, ax_d = fig.subplots(1, 2)
    _draw(ax_f, ax_d, curves, fontsize=11, width=60)
    title = f"{DISPLAY[name]}: f(x) and its derivative f'(x) (autograd through the library)"
    if name == "funnel_relu":
        ctx = funnel_context([c.value for c in curves])
        title += "\nshown for a stated context: " + ctx
        title = "\n".join(textwrap.fill(line, 110) for line in title.split("\n"))
    fig.suptitle(title, fontsize=13)
    return fig


def plot_overview(
    names: Sequence[str] | None = None,
    sweeps: Mapping[str, Sequence[float | None]] | None = None,
    *,
    xlim: tuple[float, float] = DEFAULT_XLIM,
    points: int = DEFAULT_POINTS,
) -> Figure:
    """All activations in one figure: one column each, ``f`` on top and ``f'`` below.

    ``sweeps`` overrides :data:`DEFAULT_SWEEPS` per name.
    """
    Figure, FigureCanvasAgg = _matplotlib()
    names = list(NAMES if names is None else names)
    if not names:
        raise ValueError("names must not be empty")
    sweeps = dict(sweeps or {})
    fig = Figure(figsize=(4.0 * len(names), 11.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(names), squeeze=False)
    funnel_values = None
    for j, name in enumerate(names):
        curves = curves_for(name, sweeps.get(name), xlim=xlim, points=points)
        _draw(axes[0][j], axes[1][j], curves, fontsize=10, width=44)
        title = SHORT[name]
        if name == "funnel_relu":
            funnel_values = [c.value for c in curves]
            title += " *"
        axes[0][j].set_title(title, fontsize=13, fontweight="bold", pad=14)
    title = "The rectifiers: f(x) (top) and f'(x) (bottom), computed by the library with autograd"
    fig.suptitle(title, fontsize=15)
    if funnel_values is not None:
        fig.supxlabel(
            textwrap.fill("* Funnel activation shown for a stated context: " + funnel_context(funnel_values), 170),
            fontsize=10,
        )
    return fig


# --------------------------------------------------------------------------- files


def save_figure(fig: Figure, path: str | os.PathLike[str], fmt: str | None = None, *, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same directory, then ``os.replace``).

    ``fmt`` is ``"png"`` or ``"svg"`` (default: from the suffix). Missing directories are
    created. On any error the temporary file is removed and ``path`` is left as it was. No date,
    version stamp or random ids are written: an unchanged figure gives the same file again.
    """
    fmt = (fmt or Path(path).suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return _io.save_figure(fig, path, fmt, dpi=dpi)


def write_plots(
    names: Sequence[str] | None = None,
    out: str | os.PathLike[str] = "plots",
    fmt: str = "png",
    sweeps: Mapping[str, Sequence[float | None]] | None = None,
    *,
    overview: bool = True,
    per_activation: bool = True,
    xlim: tuple[float, float] = DEFAULT_XLIM,
    points: int = DEFAULT_POINTS,
    dpi: int = 110,
) -> list[Path]:
    """Write ``out/NAME.FMT`` for each activation and ``out/overview.FMT``; return the paths."""
    names = list(NAMES if names is None else names)
    sweeps = dict(sweeps or {})
    written: list[Path] = []
    out = Path(out)
    if per_activation:
        for name in names:
            fig = plot_activation(name, sweeps.get(name), xlim=xlim, points=points)
            written.append(save_figure(fig, out / f"{name}.{fmt}", fmt, dpi=dpi))
    if overview:
        fig = plot_overview(names, sweeps, xlim=xlim, points=points)
        written.append(save_figure(fig, out / f"overview.{fmt}", fmt, dpi=dpi))
    return written


# --------------------------------------------------------------------------- command line


def parse_param(text: str) -> tuple[str, tuple[float, ...]]:
    """Parse ``NAME=V1,V2,...`` (e.g. ``leaky_relu=0.01,0.1,0.25,1``) into a name and values.

    ``NAME`` may be any spelling :func:`rectifiers.catalog.resolve` accepts (``LeakyReLU``,
    ``FReLU``, ...). Raises ``ValueError`` with the reason.
    """
    from .catalog import resolve

    name, sep, rest = text.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ValueError(f"expected NAME=V1,V2,... (e.g. leaky_relu=0.01,0.1), got {text!r}")
    canonical = resolve(name)
    if canonical is None or canonical not in NAMES:
        raise ValueError(f"unknown activation {name.strip()!r} in {text!r}")
    param, _ = DEFAULT_PARAMS[canonical]
    if param is None:
        raise ValueError(f"{canonical} has no parameter to sweep (got {text!r})")
    values = []
    for item in rest.split(","):
        try:
            v = float(item)
        except ValueError:
            raise ValueError(f"{canonical}: {param} values must be numbers, got {item.strip()!r} in {text!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"{canonical}: {param} values must be finite, got {item.strip()!r}")
        values.append(v)
    if len(values) > 8:
        raise ValueError(f"{canonical}: at most 8 values per sweep, got {len(values)}")
    return canonical, tuple(values)
