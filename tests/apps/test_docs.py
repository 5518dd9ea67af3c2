"""The documentation site's sources, checked without MkDocs: every page in mkdocs.yml's nav
exists, every API reference (``::: rectifiers.X``) names an object that imports, and every
included result file exists. `make docs` (mkdocs build --strict) checks the rest."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MKDOCS = ROOT / "mkdocs.yml"
DOCS = ROOT / "docs"

# The public import paths the API reference must cover.
PUBLIC = {
    "rectifiers.functional",
    "rectifiers.modules",
    "rectifiers.registry",
    "rectifiers.diagnostics",
    "rectifiers.convert",
    "rectifiers.export",
    "rectifiers.optim",
    "rectifiers.integrations.timm",
    "rectifiers.integrations.tensorboard",
    "rectifiers.integrations.lightning",
    "rectifiers.compare",
    "rectifiers.report",
}


def _nav_pages() -> list[str]:
    """The page paths of the nav (lines ``- Title: page.md`` after ``nav:``), in order."""
    lines = MKDOCS.read_text(encoding="utf-8").splitlines()
    start = lines.index("nav:")
    pages = []
    for line in lines[start + 1:]:
        if line and not line.startswith(" "):  # the next top-level key ends the nav
            break
        m = re.match(r"\s*- (?:.*: )?([^\s:]+\.md)\s*$", line)
        if m:
            pages.append(m.group(1))
        else:  # a section title: "- Title:" with nothing after it
            assert re.match(r"\s*- [^:]+:\s*$", line) or not line.strip(), f"unparsed nav line {line!r}"
    return pages


def _targets() -> list[tuple[str, str]]:
    """``(page, target)`` for every ``::: target`` line in the docs."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for line in page.read_text(encoding="utf-8").splitlines():
            m = re.match(r":::\s+(\S+)\s*$", line)
            if m:
                found.append((str(page.relative_to(DOCS)), m.group(1)))
    return found


def _resolve(target: str) -> object:
    """Import ``target`` (a module, or an object inside one) the way a user would."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name is None or not ".".join(parts[:i]).startswith(e.name):
                raise  # the module exists, something it imports does not: a real failure
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(target)


def test_nav_pages_exist():
    pages = _nav_pages()
    assert len(pages) >= 10, pages  # the parser found the nav, not an empty list
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert not missing, f"pages in mkdocs.yml's nav that do not exist under docs/: {missing}"
    assert len(set(pages)) == len(pages), "a page is listed twice in the nav"


def test_api_pages_are_in_the_nav():
    pages = set(_nav_pages())
    orphans = sorted({page for page, _ in _targets()} - pages)
    assert not orphans, f"API pages missing from the nav: {orphans}"


def test_api_reference_covers_the_public_modules():
    targets = [t for _, t in _targets()]
    assert targets, "no ::: references found under docs/"
    covered = {p for p in PUBLIC if any(t == p or t.startswith(p + ".") for t in targets)}
    assert covered == PUBLIC, f"public modules without an API page: {sorted(PUBLIC - covered)}"
    private = [t for t in targets if any(part.startswith("_") for part in t.split("."))]
    assert not private, f"API references to private names (they may move): {private}"


@pytest.mark.parametrize("page,target", _targets())
def test_api_target_imports(page, target):
    assert target.startswith("rectifiers"), f"{page}: {target} is not part of rectifiers"
    assert _resolve(target) is not None


def test_included_files_exist():
    includes = []
    for page in sorted(DOCS.rglob("*.md")):
        includes += re.findall(r'^--8<--\s+"([^"]+)"', page.read_text(encoding="utf-8"), re.M)
    assert includes, "no --8<-- includes found (the benchmark pages include the recorded results)"
    missing = [p for p in includes if not (ROOT / p).is_file()]
    assert not missing, f"included files that do not exist: {missing}"


def test_mkdocstrings_finds_the_sources_without_pythonpath():
    text = MKDOCS.read_text(encoding="utf-8")
    assert re.search(r"^\s+paths: \[src\]\s*$", text, re.M), "the python handler needs paths: [src]"
    assert "strict: true" in text
