"""A missing optional extra is one line that names it, with exit status 2 on the command line.

Each case hides one package in a fresh interpreter (``sys.modules[name] = None``, which makes
its import fail as if it were not installed) and runs what needs it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

_COMPARE = ("from rectifiers.cli import main; "
            "sys.exit(main(['compare', '--out', {out!r}, '--epochs', '1', '--seeds', '0', "
            "'--activations', 'relu', '--models', 'mlp']))")


def _run(hidden: str, code: str) -> subprocess.CompletedProcess:
    prog = f"import sys; sys.modules[{hidden!r}] = None\n{code}"
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("hidden, what, extra", [
    ("tqdm", "tqdm", "compare"),
    ("sklearn", "scikit-learn", "compare"),
    ("matplotlib", "matplotlib", "plot"),
])
def test_cli_names_the_missing_extra_in_one_line(hidden, what, extra, tmp_path):
    code = (_COMPARE.format(out=str(tmp_path / "out")) if extra == "compare" else
            f"from rectifiers.cli import main; sys.exit(main(['plot', '--out', {str(tmp_path)!r}]))")
    res = _run(hidden, code)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert what in lines[0] and f"pip install 'rectifiers[{extra}]'" in lines[0]
    assert "Traceback" not in res.stderr


def test_library_raises_an_import_error_naming_the_extra():
    res = _run("sklearn", "from rectifiers.data import load_digits\n"
                          "try:\n    load_digits()\n"
                          "except ImportError as e:\n    print(type(e).__name__, e)\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("MissingExtraError ") and "rectifiers[compare]" in res.stdout


def test_a_broken_package_is_not_reported_as_missing(tmp_path, monkeypatch):
    """An ImportError from inside an installed package is that package's error, not a missing extra."""
    from rectifiers._util import MissingExtraError, optional_import

    assert optional_import("json", "x", "y").dumps([]) == "[]"
    with pytest.raises(MissingExtraError, match=r"the demo needs surely_not_here, .*pip install 'rectifiers\[demo\]'"):
        optional_import("surely_not_here", "demo", "the demo")
    pkg = tmp_path / "brokenpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import surely_missing_dependency_of_brokenpkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError) as info:
        optional_import("brokenpkg", "demo", "the demo")
    assert not isinstance(info.value, MissingExtraError)
    assert info.value.name == "surely_missing_dependency_of_brokenpkg"
