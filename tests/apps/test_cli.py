"""The command line: list, info, plot, table, help, version, and every bad-usage path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rectifiers import __version__
from rectifiers.catalog import CATALOG, MEASURES
from rectifiers.cli import build_parser, main
from rectifiers._spec import DESCRIPTIONS

FORMULAS = {n: d.formula_text for n, d in DESCRIPTIONS.items()}

NAMES = tuple(CATALOG)
SMALL = ["--points", "21", "--dpi", "20", "--xlim", "-1", "1"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit status, stdout, stderr); ``--help``/``--version`` exit via SystemExit."""
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_usage_error(rc: int, out: str, err: str, *fragments: str) -> None:
    assert rc == 2
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err + out
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"


# ---------------------------------------------------------------- list and info


def test_list_shows_every_activation(capsys):
    rc, out, err = run(capsys, "list")
    assert rc == 0 and err == ""
    for name in NAMES:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert FORMULAS[name][0] in line


def test_list_json(capsys):
    rc, out, _ = run(capsys, "list", "--json")
    assert rc == 0
    data = json.loads(out)
    assert [d["name"] for d in data] == list(NAMES)
    assert all(d["formula"] == FORMULAS[d["name"]][0] for d in data)


@pytest.mark.parametrize("name", NAMES)
def test_info_each_name(capsys, name):
    rc, out, err = run(capsys, "info", name)
    assert rc == 0 and err == ""
    entry = CATALOG[name]
    flat = " ".join(out.split())
    for text in (entry.formula, entry.derivative, entry.paper, entry.defaults, *entry.used_in):
        assert " ".join(text.split()) in flat
    for p in entry.params:
        assert p.name in out and " ".join(p.shape.split()) in flat
    for c in entry.claims:
        assert " ".join(c.claim.split()) in flat
        for m in c.measured_by:
            assert " ".join(m.split()) in flat


def test_info_names_the_diagnostics_for_the_articles_claims(capsys):
    _, out, _ = run(capsys, "info", "leaky_relu")
    flat = " ".join(out.split())
    assert "DeadUnitMonitor: the dead fraction" in flat  # dying ReLU
    assert "GradientFlowMonitor: per-layer gradient norms and the vanishing flag" in flat
    _, out, _ = run(capsys, "info", "prelu")
    assert "rectifiers compare" in out  # accuracy
    _, out, _ = run(capsys, "info", "flexible_relu")
    assert "GradientFlowMonitor: per-layer gradient norms and the exploding flag" in " ".join(out.split())
    # every claim of every entry is measured by something
    assert all(c.measures and set(c.measures) <= set(MEASURES) for e in CATALOG.values() for c in e.claims)


@pytest.mark.parametrize("alias, name", [("LeakyReLU", "leaky_relu"), ("FReLU", "flexible_relu"),
                                         ("funnel", "funnel_relu"), ("PRELU", "prelu")])
def test_info_accepts_class_names_and_aliases(capsys, alias, name):
    rc, out, _ = run(capsys, "info", alias)
    assert rc == 0 and out.startswith(CATALOG[name].title)


def test_info_json(capsys):
    rc, out, _ = run(capsys, "info", "prelu", "--json")
    d = json.loads(out)
    assert rc == 0 and d["name"] == "prelu" and d["formula"] == FORMULAS["prelu"][0]
    assert all(c["measured_by"] for c in d["claims"])


@pytest.mark.parametrize("bad, suggestion", [("leaky_reul", "leaky_relu"), ("prelu2", "prelu"),
                                             ("FunnelRelu3", "funnel_relu")])
def test_info_unknown_suggests_closest(capsys, bad, suggestion):
    rc, out, err = run(capsys, "info", bad)
    assert_usage_error(rc, out, err, f"unknown activation {bad!r}", f"did you mean {suggestion!r}")


def test_info_unknown_without_a_close_name(capsys):
    rc, out, err = run(capsys, "info", "zzzzzz")
    assert_usage_error(rc, out, err, "unknown activation 'zzzzzz'", "known: relu, leaky_relu")
    assert "did you mean" not in err


def test_info_needs_a_name(capsys):
    rc, out, err = run(capsys, "info")
    assert_usage_error(rc, out, err, "NAME")


# ---------------------------------------------------------------- plot


def test_plot_writes_files_into_a_new_directory(capsys, tmp_path):
    out_dir = tmp_path / "a" / "b"
    rc, out, err = run(capsys, "plot", "relu", "LeakyReLU", "--out", str(out_dir),
                       "--param", "leaky_relu=0.2,0.5", *SMALL)
    assert rc == 0 and err == ""
    names = ["relu.png", "leaky_relu.png", "overview.png"]
    assert out.split() == [str(out_dir / n) for n in names]
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(names)  # nothing half-written left
    for n in names:
        assert (out_dir / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_svg_overview_only(capsys, tmp_path):
    rc, out, _ = run(capsys, "plot", "flexible_relu", "--format", "svg", "--overview-only",
                     "--out", str(tmp_path), *SMALL)
    assert rc == 0
    assert [p.name for p in tmp_path.iterdir()] == ["overview.svg"]
    assert "<svg" in (tmp_path / "overview.svg").read_text()[:2000]


def test_plot_no_overview(capsys, tmp_path):
    rc, _, _ = run(capsys, "plot", "prelu", "--no-overview", "--out", str(tmp_path), *SMALL)
    assert rc == 0 and [p.name for p in tmp_path.iterdir()] == ["prelu.png"]


def test_plot_unknown_name_suggests_closest(capsys, tmp_path):
    rc, out, err = run(capsys, "plot", "leaky_rlu", "--out", str(tmp_path))
    assert_usage_error(rc, out, err, "rectifiers plot: unknown activation 'leaky_rlu'",
                       "did you mean 'leaky_relu'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "param, fragment",
    [
        ("leaky_relu", "expected NAME=V1,V2"),
        ("leaky_relu=a", "values must be numbers, got 'a'"),
        ("leaky_relu=inf", "must be finite"),
        ("relu=1", "relu has no parameter"),
        ("leaky_rel=1", "unknown activation 'leaky_rel'"),
    ],
)
def test_plot_bad_param(capsys, tmp_path, param, fragment):
    rc, out, err = run(capsys, "plot", "--param", param, "--out", str(tmp_path))
    assert_usage_error(rc, out, err, "--param", fragment)
    assert list(tmp_path.iterdir()) == []


def test_plot_param_twice_or_for_an_activation_not_drawn(capsys, tmp_path):
    rc, out, err = run(capsys, "plot", "--param", "prelu=1", "--param", "PReLU=2", "--out", str(tmp_path))
    assert_usage_error(rc, out, err, "prelu given twice")
    rc, out, err = run(capsys, "plot", "relu", "--param", "prelu=1", "--out", str(tmp_path))
    assert_usage_error(rc, out, err, "prelu is not among the NAMEs drawn")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--format", "jpg"], "invalid choice: 'jpg'"),
        (["--xlim", "1", "-1"], "--xlim needs two finite numbers LO < HI"),
        (["--xlim", "1"], "--xlim"),
        (["--points", "2"], "--points must be between 3 and 100000, got 2"),
        (["--points", "many"], "invalid int value: 'many'"),
        (["--dpi", "0"], "--dpi must be between"),
        (["--overview-only", "--no-overview"], "not allowed with argument"),
        (["--colour", "red"], "unrecognized arguments"),
    ],
)
def test_plot_bad_options(capsys, tmp_path, args, fragment):
    rc, out, err = run(capsys, "plot", "relu", "--out", str(tmp_path / "o"), *args)
    assert_usage_error(rc, out, err, fragment)
    assert not (tmp_path / "o").exists()


def test_plot_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = run(capsys, "plot", "relu", "--out", str(f))
    assert_usage_error(rc, out, err, "--out", "is not a directory")


def test_plot_without_matplotlib_names_the_extra(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, out, err = run(capsys, "plot", "relu", "--out", str(tmp_path))
    assert_usage_error(rc, out, err, "pip install 'rectifiers[plot]'")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- table, help, version


def test_table(capsys):
    rc, out, err = run(capsys, "table", "relu", "flexible_relu", "--points", "-1", "0", "1")
    assert rc == 0 and err == ""
    assert FORMULAS["relu"][0] in out and FORMULAS["flexible_relu"][0] in out


def test_table_unknown_name(capsys):
    rc, out, err = run(capsys, "table", "relux")
    assert_usage_error(rc, out, err, "unknown activation 'relux'", "did you mean 'relu'")


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def test_our_subcommands_are_registered():
    assert {"table", "list", "info", "plot"} <= set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_help_of_every_subcommand(capsys, command):
    rc, out, err = run(capsys, command, "--help")
    assert rc == 0 and err == ""
    assert out.startswith(f"usage: rectifiers {command}")


def test_top_level_help_and_no_command(capsys):
    rc, out, _ = run(capsys, "--help")
    assert rc == 0 and "plot" in out and "info" in out
    rc, out, _ = run(capsys)
    assert rc == 2 and out.startswith("usage: rectifiers")


def test_version(capsys):
    rc, out, _ = run(capsys, "--version")
    assert rc == 0 and out.strip() == f"rectifiers {__version__}"


def test_unknown_subcommand(capsys):
    rc, out, err = run(capsys, "plt")
    assert_usage_error(rc, out, err, "invalid choice: 'plt'")


# ---------------------------------------------------------------- as a real process


@pytest.mark.parametrize(
    "argv, rc, fragment",
    [
        (["info", "nosuch_relu"], 2, "unknown activation 'nosuch_relu'"),
        (["plot", "--param", "prelu=x"], 2, "--param"),
    ],
)
def test_process_exit_status_and_no_traceback(argv, rc, fragment):
    # What the `rectifiers` console script runs (not `python -m rectifiers.cli`: run as __main__,
    # cli.py would define a second UsageError class that the subcommands do not raise).
    code = "import sys; from rectifiers.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert p.returncode == rc, p.stderr
    assert fragment in p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    if rc == 2:
        assert p.stderr.count("\n") == 1 and p.stdout == ""


@pytest.mark.parametrize("spelling", ["frelu", "FReLU", "flexible_relu", "leaky", "PReLU", "funnel1d"])
def test_table_takes_every_registry_spelling(spelling, capsys):
    from rectifiers.catalog import resolve

    assert main(["table", spelling, "--points", "-1", "1"]) == 0
    assert capsys.readouterr().out.lstrip().startswith(resolve(spelling))


def test_every_registry_name_resolves_in_the_catalog():
    """The CLI's names and the registry's agree: every built-in registry name is catalogued."""
    from rectifiers import registry
    from rectifiers.catalog import resolve

    for name in registry.names(aliases=True):
        assert resolve(name) is not None, name
