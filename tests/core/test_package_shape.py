"""The library's shape, checked: no import cycle, modules with one job (none far over 500
lines), nothing that imports pytest, and ClientConfig as the one list of client settings."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import meshclient
from meshclient import ClientConfig, MeshClient

PACKAGE = Path(meshclient.__file__).parent
MAX_LINES = 550  # "none far over ~500"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every meshclient module ``name`` imports at run time (function-level imports included,
    ``if TYPE_CHECKING:`` blocks excluded)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "meshclient")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "meshclient":
                module = node.module
            else:
                continue
            for alias in node.names:  # ``from . import x`` names a submodule when x is one
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    return {m for m in found if m in known and m != name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_scan_sees_function_level_imports_but_not_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "meshclient"
    pkg.mkdir()
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
                              "def f():\n    from .c import x\n")
    known = {"meshclient.a", "meshclient.b", "meshclient.c"}
    assert _imports("meshclient.a", pkg / "a.py", known) == {"meshclient.c"}


def test_no_import_cycle_anywhere_in_the_package() -> None:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_far_over_500_lines() -> None:
    big = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_nothing_in_the_library_imports_pytest() -> None:
    offenders = [name for name, path in _modules().items()
                 if any(isinstance(n, (ast.Import, ast.ImportFrom)) and any(
                     (getattr(n, "module", None) or a.name).split(".")[0] == "pytest" for a in n.names)
                     for n in ast.walk(ast.parse(path.read_text())))]
    assert offenders == []


def test_meshclient_arguments_are_the_config_settings() -> None:
    """MeshClient's keyword arguments mirror ClientConfig's fields (defaults live in ClientConfig)."""
    settings = [f.name for f in dataclasses.fields(ClientConfig) if f.name != "key"]
    params = [p for p in inspect.signature(MeshClient.__init__).parameters if p not in ("self", "clock")]
    assert params == settings
    defaults = {p.default for name, p in inspect.signature(MeshClient.__init__).parameters.items()
                if name not in ("self",)}
    assert defaults == {None}  # "None: the config's default", so no default is written twice
