"""The package's layout rules (docs/DESIGN.md, "Floors"), checked on the source itself.

Cheap: the static checks parse the source files with ``ast``; the import check runs one
subprocess.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rectifiers import _spec

PKG = Path(__import__("rectifiers").__file__).resolve().parent

#: The floor of each top-level module or package of rectifiers (docs/DESIGN.md).
FLOORS: dict[str, int] = {
    "_spec": 0, "_util": 0, "_checks": 0, "testing": 0,
    "reference": 1, "functional": 1, "modules": 1, "registry": 1, "ops": 1,
    "diagnostics": 2, "convert": 2, "_convert_base": 2, "_convert_sites": 2, "_convert_rewrite": 2,
    "export": 2, "optim": 2, "integrations": 2,
    "compare": 3, "report": 3, "bench": 3, "plotting": 3, "catalog": 3, "curves": 3, "zoo": 3,
    "data": 3,
    "cli": 4,
}


def _modules() -> dict[str, Path]:
    """Dotted name (without the leading ``rectifiers.``) -> file, for every .py file."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The rectifiers modules ``name`` imports (anywhere in the file, lazy imports included)."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if name else []
    base = here if is_pkg else here[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # imports for type checkers only are not imports at run time
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(["rectifiers", *root, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            targets = [node.args[0].value]  # a dynamic import of a named module counts too
        for t in targets:
            if t == "rectifiers" or t.startswith("rectifiers."):
                t = t[len("rectifiers."):] if t != "rectifiers" else ""
                # the longest prefix that is a module of the package
                parts = t.split(".") if t else []
                while parts and ".".join(parts) not in MODULES:
                    parts.pop()
                if parts:
                    found.add(".".join(parts))
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(name: str) -> int | None:
    return FLOORS.get(name.split(".")[0])


def test_every_module_has_a_floor():
    missing = sorted(n for n in MODULES if n and not n.startswith("__main__") and _floor(n) is None)
    assert not missing, f"modules with no floor in docs/DESIGN.md (and FLOORS here): {missing}"


def test_no_import_from_a_lower_floor_to_a_higher_one():
    bad = []
    for name, deps in GRAPH.items():
        if not name or name.split(".")[-1] == "__main__":
            continue  # the package root re-exports; `python -m` entry points sit on top
        for dep in deps:
            if _floor(dep) is not None and _floor(name) is not None and _floor(dep) > _floor(name):
                bad.append(f"{name} (floor {_floor(name)}) imports {dep} (floor {_floor(dep)})")
    assert not bad, "\n".join(sorted(bad))


def test_the_root_package_imports_floors_0_to_2_only():
    bad = sorted(d for d in GRAPH[""] if (_floor(d) or 0) > 2)
    assert not bad, f"rectifiers/__init__.py imports {bad}"


def test_nothing_below_the_cli_imports_it():
    bad = sorted(n for n, deps in GRAPH.items()
                 if _floor(n) != 4 and n.split(".")[-1] != "__main__" and any(d.split(".")[0] == "cli" for d in deps))
    assert not bad, f"modules below cli/ import it: {bad}"


def test_no_import_cycle():
    graph = {n: {d for d in deps if d in GRAPH} for n, deps in GRAPH.items() if n}
    # A package's __init__ re-exporting its own submodules is not a cycle of the layout.
    for n in graph:
        graph[n] = {d for d in graph[n] if not d.startswith(n + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _backend(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ops" and not parts[1].startswith("_") else None


def test_a_backend_imports_no_other_backend_and_not_the_reference():
    bad = []
    for name, deps in GRAPH.items():
        b = _backend(name)
        if b is None:
            continue
        for dep in deps:
            if dep == "reference":
                bad.append(f"{name} imports the reference")
            other = _backend(dep)
            if other is not None and other != b and other not in ALLOWED_BACKEND_USE.get(b, ()):
                bad.append(f"{name} (backend {b}) imports {dep} (backend {other})")
    assert not bad, "\n".join(sorted(bad))


#: The C++ host side is the eager backend's kernel provider, not a backend of its own.
ALLOWED_BACKEND_USE = {"eager": ("cpp",)}


def test_no_cpp_in_python_files():
    bad = [str(p.relative_to(PKG)) for p in MODULES.values()
           if re.search(r"#include <|TORCH_LIBRARY", p.read_text())]
    assert not bad, f"C++ in .py files: {bad}"


def _spellings() -> set[str]:
    out = set()
    for d in _spec.DESCRIPTIONS.values():
        out |= {d.name, *d.aliases, *d.more_aliases, d.cls, *(v.name for v in d.variants)}
    out |= set(_spec.registry_aliases())
    return out


def test_no_activation_name_as_a_table_key_outside_the_description():
    names = _spellings()
    bad = []
    for name, path in MODULES.items():
        if name == "_spec":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Dict):
                keys = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
                hits = [k for k in keys if k in names]
                if len(hits) >= 2:  # a table over activations, not one name in passing
                    bad.append(f"{path.relative_to(PKG)}:{node.lineno}: {hits}")
    assert not bad, "tables keyed by activation names outside _spec.py:\n" + "\n".join(bad)


def test_import_rectifiers_loads_no_cli_and_no_heavy_optional_package():
    code = (
        "import sys, json, torch, torch._dynamo\n"
        "before = set(sys.modules)\n"
        "import rectifiers\n"
        "new = sorted(set(sys.modules) - before)\n"
        "print(json.dumps(new))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    new = json.loads(out.stdout)
    heavy = ("matplotlib", "sklearn", "triton", "tqdm", "tensorboard", "lightning", "pytorch_lightning",
             "torchvision", "timm", "onnx", "onnxruntime", "rectifiers.cli", "rectifiers.compare",
             "rectifiers.report", "rectifiers.bench", "rectifiers.plotting",
             "rectifiers.integrations.tensorboard", "rectifiers.integrations.lightning")
    loaded = [m for m in new if any(m == h or m.startswith(h + ".") for h in heavy)]
    assert not loaded, f"import rectifiers loads {loaded}"
    assert "rectifiers" in new


@pytest.mark.parametrize("table", ["registry", "catalog", "curves", "plotting", "zoo"])
def test_every_description_reaches_the_generated_tables(table):
    """Each table that lists activations lists exactly the described ones."""
    import rectifiers.catalog as catalog
    import rectifiers.curves as curves
    import rectifiers.plotting as plotting
    import rectifiers.registry as registry
    import rectifiers.zoo as zoo

    described = set(_spec.ACTIVATIONS)
    got = {
        "registry": set(registry._BUILTIN) - {v.name for d in _spec.DESCRIPTIONS.values() for v in d.variants},
        "catalog": set(catalog.CATALOG),
        "curves": set(curves.DEFAULT_PARAMS),
        "plotting": set(plotting.DEFAULT_SWEEPS) & set(plotting.DISPLAY) & set(plotting.SHORT),
        "zoo": set(zoo.ACTIVATIONS),
    }[table]
    assert got == described
