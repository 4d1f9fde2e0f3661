"""The notebook runner itself: it parses Databricks source format, fails loudly and by name, and
its ``dbutils`` behaves like the runtime's (secrets from a real workspace API, widgets, restart)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshclient_sandbox.notebook_runner import (
    NotebookCellError,
    NotebookDbutils,
    NotebookError,
    parse_notebook,
    run_notebook,
)
from meshclient_sandbox.runner import Sandbox

PIP = "# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl"


def notebook(tmp_path: Path, *cells: str, name: str = "nb.py") -> Path:
    path = tmp_path / name
    path.write_text("# Databricks notebook source\n" + "\n\n# COMMAND ----------\n\n".join(cells) + "\n")
    return path


def offline(**widgets: str) -> NotebookDbutils:
    return NotebookDbutils(workspace_client=None, widgets=widgets)


def test_a_broken_cell_fails_the_run_naming_notebook_cell_and_line(tmp_path: Path) -> None:
    path = notebook(tmp_path, "# MAGIC %md\n# MAGIC # Title", "x = 1", "y = x + 1\nz = y / 0", "never = True",
                    name="07_broken.py")
    with pytest.raises(NotebookCellError) as info:
        run_notebook(path, offline())
    err = info.value
    assert err.notebook == "07_broken.py" and err.cell.number == 3 and isinstance(err.error, ZeroDivisionError)
    text = str(err)
    assert "07_broken.py: cell 3 (line 11" in text and "ZeroDivisionError" in text
    assert "line 12: z = y / 0" in text  # the notebook's own line number and source


def test_cells_share_one_namespace_and_md_cells_are_skipped(tmp_path: Path) -> None:
    path = notebook(tmp_path, "# MAGIC %md\n# MAGIC x = 'not code'", "x = 41", "x += 1")
    runner = run_notebook(path, offline())
    assert runner.namespace["x"] == 42 and runner.ran == [2, 3]


def test_a_pip_cell_must_install_meshclient(tmp_path: Path) -> None:
    run_notebook(notebook(tmp_path, PIP, "pass"), offline())
    run_notebook(notebook(tmp_path, "# MAGIC %pip install -q 'meshclient[databricks]>=0.1'", "pass"), offline())
    with pytest.raises(NotebookError, match="not meshclient"):
        run_notebook(notebook(tmp_path, "# MAGIC %pip install meshclient-sandbox requests", "pass"), offline())


def test_restart_python_drops_the_notebooks_state_but_not_dbutils(tmp_path: Path) -> None:
    path = notebook(tmp_path, "before = 1", "dbutils.library.restartPython()", "after = 'before' in globals()")
    runner = run_notebook(path, offline())
    assert runner.namespace["after"] is False and "dbutils" in runner.namespace
    assert runner.dbutils.library.restarts == 1


def test_other_magics_are_refused_not_skipped(tmp_path: Path) -> None:
    with pytest.raises(NotebookError, match="%sh cell"):
        run_notebook(notebook(tmp_path, "# MAGIC %sh\n# MAGIC ls"), offline())


@pytest.mark.parametrize("text, message", [
    ("import os\n", "not a Databricks notebook source file"),
    ("# Databricks notebook source\n# MAGIC %md\nx = 1\n", "mixes"),
    ("# Databricks notebook source\n# MAGIC no magic\n", "must start with a %magic"),
])
def test_malformed_notebooks_are_rejected(text: str, message: str) -> None:
    with pytest.raises(NotebookError, match=message):
        parse_notebook(text, "bad.py")


def test_widgets_take_passed_values_and_refuse_unknown_ones(tmp_path: Path) -> None:
    cells = ('dbutils.widgets.text("url", "https://default")\n'
             'dbutils.widgets.dropdown("protocol", "mlflow", ["mlflow", "v2"])\n'
             'url, protocol = dbutils.widgets.get("url"), dbutils.widgets.get("protocol")',)
    runner = run_notebook(notebook(tmp_path, *cells), offline(protocol="v2"))
    assert (runner.namespace["url"], runner.namespace["protocol"]) == ("https://default", "v2")
    with pytest.raises(NotebookError, match=r"never defined by the notebook: \['urll'\]"):
        run_notebook(notebook(tmp_path, *cells), offline(urll="typo"))
    with pytest.raises(NotebookCellError, match="InputWidgetNotDefined"):
        run_notebook(notebook(tmp_path, 'dbutils.widgets.get("missing")'), offline())


def test_while_running_the_process_looks_like_a_databricks_driver(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHCLIENT_CERT", "/nowhere/tls.crt")
    path = notebook(tmp_path, "import os, IPython\n"
                              "seen = (os.environ.get('DATABRICKS_RUNTIME_VERSION'), 'MESHCLIENT_CERT' in os.environ,\n"
                              "        IPython.get_ipython().user_ns is globals())")
    runner = run_notebook(path, offline())
    assert runner.namespace["seen"] == ("15.4", False, True)
    import os

    assert os.environ["MESHCLIENT_CERT"] == "/nowhere/tls.crt" and "DATABRICKS_RUNTIME_VERSION" not in os.environ


def test_dbutils_secrets_read_the_workspace_through_databricks_sdk(mesh_sandbox: Sandbox) -> None:
    ws = mesh_sandbox.info["workspace"]
    dbutils = NotebookDbutils.for_workspace(ws["host"], ws["token"])
    key_pem = Path(mesh_sandbox.info["client"]["key"]).read_bytes()
    assert dbutils.secrets.getBytes(ws["secret_scope"], "tls.key") == key_pem
    assert dbutils.secrets.get(ws["secret_scope"], "ca.crt").startswith("-----BEGIN CERTIFICATE-----")
    assert {s.key for s in dbutils.secrets.list(ws["secret_scope"])} >= {"tls.crt", "tls.key", "ca.crt"}
    assert ws["secret_scope"] in {s.name for s in dbutils.secrets.listScopes()}
    with pytest.raises(Exception, match="(?i)does not exist|not found"):
        dbutils.secrets.get(ws["secret_scope"], "no-such-key")


def test_from_secret_scope_in_a_notebook_goes_through_dbutils(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    ws = mesh_sandbox.info["workspace"]
    dbutils = NotebookDbutils.for_workspace(ws["host"], ws["token"])
    path = notebook(tmp_path, f"import meshclient\ncreds = meshclient.Credentials.from_secret_scope({ws['secret_scope']!r})")
    runner: Any = run_notebook(path, dbutils)
    assert str(runner.namespace["creds"].identity) == mesh_sandbox.info["client"]["identity"]
    assert [k for _, k in dbutils.secrets.reads] == ["tls.crt", "tls.key", "ca.crt"]
