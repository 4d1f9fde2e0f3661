"""The notebooks in notebooks/ stay valid Databricks source files that use the public API only.

(``tests/notebooks/`` runs each of them against the sandbox mesh.)
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import meshclient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))
#: public namespaces (meshclient/__init__'s docstring); a name under one must be in its __all__
NAMESPACES = ("tokens", "spark", "artifacts", "scoring", "results", "mlflow")
#: the command line's entry point (``meshclient.cli.main:main``), run in-process so doctor reads dbutils
ENTRY_POINT = "meshclient.cli.main"
_SEPARATOR = "\n# COMMAND ----------\n"


def test_there_is_a_notebook_per_story() -> None:
    assert len(NOTEBOOKS) >= 6, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_databricks_source_and_compiles(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# Databricks notebook source\n")
    assert "# COMMAND ----------" in text
    ast.parse(text, filename=str(path))  # MAGIC lines are comments


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_installs_this_meshclient_then_restarts_python(path: Path) -> None:
    cells = [c.strip() for c in path.read_text().split(_SEPARATOR)]
    pips = [i for i, c in enumerate(cells) if c.startswith("# MAGIC %pip install")]
    assert len(pips) == 1, "one %pip install cell"
    wheel = re.search(r"meshclient-([0-9][^-]*)-py3-none-any\.whl", cells[pips[0]])
    assert wheel and wheel.group(1) == meshclient.__version__, "the wheel named is this version's"
    assert cells[pips[0] + 1].splitlines()[0].startswith("dbutils.library.restartPython()")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_public_names(path: Path) -> None:
    text = path.read_text()
    for dotted in set(re.findall(r"\bmeshclient(?:\.[A-Za-z_]+)+", text)):
        parts = dotted.split(".")
        if dotted.startswith(ENTRY_POINT):
            continue
        name = parts[1]
        assert name in meshclient.__all__ or name in NAMESPACES, f"{path.name} uses {dotted}"
        if name in NAMESPACES and len(parts) > 2:
            module = importlib.import_module(f"meshclient.{name}")
            assert parts[2] in module.__all__, f"{path.name} uses {dotted}"
    for module, names in re.findall(r"^from (meshclient[.\w]*) import ([\w, ]+)$", text, re.M):
        if module.startswith(ENTRY_POINT):
            continue
        public = meshclient.__all__ + list(NAMESPACES) if module == "meshclient" else \
            importlib.import_module(module).__all__
        assert module.count(".") <= 1 and module.split(".")[-1] in (*NAMESPACES, "meshclient"), module
        for imported in (n.strip() for n in names.split(",")):
            assert imported in public, f"{path.name} imports {imported} from {module}"
