"""The notebooks in notebooks/ stay valid Databricks source files that use the public API only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import meshclient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_databricks_source_and_compiles(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("# Databricks notebook source\n")
    assert "# COMMAND ----------" in text
    ast.parse(text, filename=str(path))  # MAGIC lines are comments


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_only_public_names(path: Path) -> None:
    text = path.read_text()
    for name in set(re.findall(r"\bmeshclient\.([A-Za-z_]+)", text)):
        assert name in meshclient.__all__ or name == "spark", f"{path.name} uses meshclient.{name}"
