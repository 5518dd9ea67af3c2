"""The graphs: the plotted data against the reference, the kink, the files written."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

pytest.importorskip("matplotlib")

from rectifiers import plotting as P
from rectifiers import reference as ref
from rectifiers._spec import DESCRIPTIONS

FORMULAS = {n: d.formula_text for n, d in DESCRIPTIONS.items()}
from rectifiers.curves import FUNNEL_CONTEXT, NAMES

XLIM = (-2.0, 2.0)
POINTS = 21  # small grid: quick, and it contains 0 and +-0.2, +-0.4, ...

# The swept values tested per activation: defaults plus values that move the kink's neighbourhood.
VALUES = {
    "relu": (None,),
    "leaky_relu": (0.01, 1.0, -0.5),
    "prelu": (0.25, 2.0),
    "flexible_relu": (-1.0, 0.0, 1.5),
    "funnel_relu": (-1.0, 0.5, 2.0),
}


# float64 throughout, so the plotted data equal the reference to rounding. The funnel curve's
# kernel (kernel_sum / 9) is filled while the module is still float32 (curves.make_module), so
# it carries float32 rounding: ~1e-8 relative, far below what a graph can show.
RTOL = {n: 1e-12 for n in NAMES} | {"funnel_relu": 1e-6}
ATOL = {n: 1e-12 for n in NAMES} | {"funnel_relu": 1e-7}


def ref_curve(name: str, x: torch.Tensor, value: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) and f'(x) from rectifiers.reference, derived by autograd (no formula typed here)."""
    x = x.detach().to(torch.float64).clone().requires_grad_(True)
    if name == "relu":
        y = ref.relu(x)
    elif name == "leaky_relu":
        y = ref.leaky_relu(x, value)
    elif name == "prelu":
        y = ref.prelu(x, torch.tensor([value], dtype=torch.float64), 0)
    elif name == "flexible_relu":
        y = ref.flexible_relu(x, torch.tensor([value], dtype=torch.float64), 0)
    elif name == "funnel_relu":
        # The context the plot states: each x the centre of a constant 3x3 patch of value x, a
        # constant kernel summing to `value`, BatchNorm in eval mode with identity statistics.
        img = x.reshape(-1, 1, 1, 1).expand(-1, 1, 3, 3)
        w = torch.full((1, 1, 3, 3), value / 9.0, dtype=torch.float64)
        one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        y = ref.funnel_relu(img, w, None, one, zero, zero.clone(), one.clone(), training=False)[:, 0, 1, 1]
    else:  # pragma: no cover
        raise KeyError(name)
    (dy,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy.detach()


def lines_by_gid(fig) -> dict:
    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if line.get_gid():
                assert line.get_gid() not in out, f"duplicate gid {line.get_gid()}"
                out[line.get_gid()] = (ax, line)
    return out


def tag(name: str, value: float | None) -> str:
    return f"{name}:{'-' if value is None else f'{value:g}'}"


@pytest.fixture(scope="module", params=NAMES)
def drawn(request):
    name = request.param
    fig = P.plot_activation(name, VALUES[name], xlim=XLIM, points=POINTS)
    return name, fig, lines_by_gid(fig)


def test_values_and_derivatives_match_reference(drawn):
    name, fig, lines = drawn
    for v in VALUES[name]:
        _, f_line = lines[f"f:{tag(name, v)}"]
        _, d_line = lines[f"df:{tag(name, v)}"]
        x = torch.as_tensor(f_line.get_xdata(), dtype=torch.float64)
        assert x[0] == XLIM[0] and x[-1] == XLIM[1] and len(x) >= POINTS
        y_ref, dy_ref = ref_curve(name, x, v)
        torch.testing.assert_close(torch.as_tensor(f_line.get_ydata(), dtype=torch.float64), y_ref,
                                   rtol=RTOL[name], atol=ATOL[name])
        # f' is drawn on the same grid, broken (NaN) exactly at the kink and nowhere else
        xd = torch.as_tensor(d_line.get_xdata(), dtype=torch.float64)
        yd = torch.as_tensor(d_line.get_ydata(), dtype=torch.float64)
        assert torch.equal(xd, x)
        assert x[torch.isnan(yd)].tolist() == [0.0]
        keep = ~torch.isnan(yd)
        # sampled away from the kink the derivative is the reference's to rounding
        torch.testing.assert_close(yd[keep], dy_ref[keep], rtol=RTOL[name], atol=ATOL[name])


def test_kink_marked_where_reference_has_it(drawn):
    name, fig, lines = drawn
    for v in VALUES[name]:
        h = 1e-3
        pts = torch.tensor([-h, 0.0, h], dtype=torch.float64)
        y_ref, dy_ref = ref_curve(name, pts, v)
        _, kink = lines[f"kink:{tag(name, v)}"]
        assert list(kink.get_xdata()) == [0.0]
        assert kink.get_ydata()[0] == pytest.approx(float(y_ref[1]), abs=ATOL[name])
        # the derivative at the kink: autograd's value filled, the one-sided limits open
        _, at = lines[f"dkink:{tag(name, v)}"]
        assert list(at.get_xdata()) == [0.0]
        assert at.get_ydata()[0] == pytest.approx(float(dy_ref[1]), abs=ATOL[name])
        _, lim = lines[f"dlimit:{tag(name, v)}"]
        assert list(lim.get_xdata()) == [0.0, 0.0]
        assert list(lim.get_ydata()) == pytest.approx([float(dy_ref[0]), float(dy_ref[2])], rel=RTOL[name], abs=ATOL[name])


def test_a_real_kink_is_a_jump_in_the_derivative():
    # For LeakyReLU with a = 0.1 the marked one-sided limits differ: the mark is at a real corner.
    fig = P.plot_activation("leaky_relu", (0.1,), xlim=XLIM, points=POINTS)
    _, lim = lines_by_gid(fig)["dlimit:leaky_relu:0.1"]
    assert list(lim.get_ydata()) == pytest.approx([0.1, 1.0])


def test_legend_has_formula_and_axes_cross_at_origin(drawn):
    name, fig, _ = drawn
    formula, derivative = FORMULAS[name]
    f_ax, d_ax = fig.axes
    for ax, text in ((f_ax, formula), (d_ax, derivative)):
        title = " ".join(ax.get_legend().get_title().get_text().split())
        for clause in text.replace(";  ", ",  ").split(",  "):
            assert " ".join(clause.split()) in title
        assert ax.spines["left"].get_position() == ("data", 0.0)
        assert ax.spines["bottom"].get_position() == ("data", 0.0)
        lo, hi = ax.get_ylim()
        assert lo < 0 < hi
    assert f_ax.get_legend().get_title().get_text().startswith("f(x) = ")
    assert d_ax.get_legend().get_title().get_text().startswith("f'(x) = ")


def test_funnel_title_states_its_context():
    fig = P.plot_activation("funnel_relu", (0.5,), xlim=XLIM, points=POINTS)
    title = " ".join(fig._suptitle.get_text().split())
    assert "stated context" in title
    assert " ".join(FUNNEL_CONTEXT.format(kernel_sum=0.5).split()) in title
    fig = P.plot_activation("relu", xlim=XLIM, points=POINTS)
    assert "context" not in fig._suptitle.get_text()


def test_default_sweeps_are_drawn():
    fig = P.plot_activation("leaky_relu", xlim=XLIM, points=POINTS)
    gids = lines_by_gid(fig)
    for v in (0.01, 0.1, 0.25, 1.0):
        assert f"f:leaky_relu:{v:g}" in gids and f"df:leaky_relu:{v:g}" in gids
    assert P.DEFAULT_SWEEPS["flexible_relu"] == (-1.0, 0.0, 1.0)


def test_overview_has_every_activation():
    fig = P.plot_overview(xlim=XLIM, points=POINTS)
    gids = lines_by_gid(fig)
    for name in NAMES:
        for v in P.DEFAULT_SWEEPS[name]:
            assert f"f:{tag(name, v)}" in gids and f"df:{tag(name, v)}" in gids
    assert "stated context" in fig._supxlabel.get_text()


def test_png_written_atomically_and_readable(tmp_path):
    import matplotlib.image as mpimg

    fig = P.plot_activation("relu", xlim=XLIM, points=POINTS)
    path = P.save_figure(fig, tmp_path / "new" / "dir" / "relu.png", dpi=30)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert [p.name for p in path.parent.iterdir()] == ["relu.png"]  # no temporary left


def test_svg_parses_with_svg_root(tmp_path):
    fig = P.plot_activation("prelu", (0.25,), xlim=XLIM, points=POINTS)
    path = P.save_figure(fig, tmp_path / "prelu.svg")
    root = ET.parse(path).getroot()
    assert root.tag.rsplit("}", 1)[-1] == "svg"


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "relu.png"
    target.write_bytes(b"old")
    fig = P.plot_activation("relu", xlim=XLIM, points=POINTS)

    def boom(*args, **kwargs):
        args[0].write(b"half")  # a partial write, then failure
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        P.save_figure(fig, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["relu.png"]


def test_save_figure_refuses_unknown_format(tmp_path):
    fig = P.plot_activation("relu", xlim=XLIM, points=POINTS)
    with pytest.raises(ValueError, match="fmt must be one of png, svg, got 'jpg'"):
        P.save_figure(fig, tmp_path / "x.jpg")


def test_write_plots_writes_each_and_the_overview(tmp_path):
    paths = P.write_plots(["relu", "flexible_relu"], tmp_path / "out", "svg", {"flexible_relu": (0.5,)},
                          xlim=XLIM, points=POINTS)
    assert [p.name for p in paths] == ["relu.svg", "flexible_relu.svg", "overview.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
    only = P.write_plots(["relu"], tmp_path / "o2", per_activation=False, xlim=XLIM, points=POINTS, dpi=20)
    assert [p.name for p in only] == ["overview.png"]


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'rectifiers\[plot\]'"):
        P.plot_activation("relu")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("leaky_relu=0.01,0.1,0.25,1", ("leaky_relu", (0.01, 0.1, 0.25, 1.0))),
        ("PReLU=0.5", ("prelu", (0.5,))),
        ("FReLU=-1, 0 ,2", ("flexible_relu", (-1.0, 0.0, 2.0))),
        ("funnel=1e-1", ("funnel_relu", (0.1,))),
    ],
)
def test_parse_param(text, expected):
    assert P.parse_param(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("leaky_relu", "expected NAME=V1,V2"),
        ("leaky_relu=", "expected NAME=V1,V2"),
        ("=0.1", "expected NAME=V1,V2"),
        ("leaky_relu=0.1,x", "a values must be numbers, got 'x'"),
        ("leaky_relu=0.1,,2", "a values must be numbers, got ''"),
        ("prelu=nan", "must be finite"),
        ("relu=1", "relu has no parameter"),
        ("softplus=1", "unknown activation 'softplus'"),
        ("prelu=" + ",".join(["1"] * 9), "at most 8"),
    ],
)
def test_parse_param_refuses(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        P.parse_param(text)


@pytest.mark.parametrize("xlim, points", [((1.0, 1.0), 11), ((0.0, math.inf), 11), ((-1.0, 1.0), 2)])
def test_bad_grid_refused(xlim, points):
    with pytest.raises(ValueError, match="xlim|points"):
        P.curves_for("relu", xlim=xlim, points=points)


def test_matplotlib_is_imported_only_when_plotting():
    import subprocess

    code = (
        "import sys, argparse; import rectifiers.plotting, rectifiers.cli.plot as P, rectifiers.cli.info as I; "
        "sub = argparse.ArgumentParser().add_subparsers(); P.register(sub); I.register(sub); "
        "print('matplotlib' in sys.modules)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
