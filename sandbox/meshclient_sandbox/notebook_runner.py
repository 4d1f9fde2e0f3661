"""Run a Databricks notebook (source format) locally, cell by cell, the way a cluster would.

A notebook exported in source format is a Python file::

    # Databricks notebook source
    # MAGIC %md
    # MAGIC # Title
    # COMMAND ----------
    # MAGIC %pip install meshclient
    # COMMAND ----------
    dbutils.library.restartPython()
    # COMMAND ----------
    import meshclient
    ...

:func:`parse_notebook` splits it into :class:`Cell` objects; :class:`NotebookRunner` runs the
Python cells in order in one namespace, as a notebook's REPL does:

* ``%md`` cells are skipped; a ``%pip install`` cell is **not** executed (the package is
  installed already) but must install meshclient (a wheel path or a requirement naming it);
  any other magic (``%sh``, ``%sql``, ``%scala``...) is refused, so no notebook silently skips
  code it needs;
* ``dbutils.library.restartPython()`` does what it does on a cluster: once its cell finishes,
  every name the notebook defined is gone (``dbutils``, ``spark``, ``sc``, ``display`` and the
  widgets stay);
* the namespace holds a ``dbutils`` (:class:`NotebookDbutils`: ``secrets`` read a workspace
  through the real ``databricks-sdk`` — the sandbox's workspace emulator —, ``widgets`` answer
  the values the caller passes, like a job's parameters), ``spark``/``sc`` when a session is
  given, and ``display``/``displayHTML`` (printed and kept in :attr:`NotebookRunner.displayed`);
* while it runs (``databricks_runtime=True``, the default), the process looks like a Databricks
  driver to the library: ``DATABRICKS_RUNTIME_VERSION`` is set and
  ``IPython.get_ipython().user_ns`` is the notebook's namespace, which is how meshclient finds
  ``dbutils`` there (IPython itself is not needed: a stand-in module answers ``get_ipython`` for
  the run). ``DATABRICKS_*`` and ``MESHCLIENT_*`` variables are hidden for the run, so the
  identity can come from the secret scope only. Libraries that go further into the runtime
  than ``dbutils.secrets`` once they see that variable (MLflow reaches for the driver's py4j
  ``dbutils.entry_point`` when it is imported) cannot run this way: ``databricks_runtime=False``
  runs the notebook as on a laptop or in a job's wheel task instead — no runtime variable, and
  ``DATABRICKS_HOST``/``DATABRICKS_TOKEN`` of the same workspace, so meshclient reads the same
  scope through databricks-sdk's unified authentication;
* any error in a cell stops the run with :class:`NotebookCellError`, naming the notebook, the
  cell number and its first line, with the traceback in the notebook's own line numbers.

It is a sandbox tool for tests and local runs, not part of the library.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import linecache
import os
import re
import shlex
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cell", "NotebookError", "NotebookCellError", "NotebookDbutils", "NotebookRunner", "parse_notebook",
           "run_notebook", "HEADER", "SEPARATOR"]

HEADER = "# Databricks notebook source"
SEPARATOR = "# COMMAND ----------"
DEFAULT_RUNTIME_VERSION = "15.4"
_MAGIC = re.compile(r"^# MAGIC ?(.*)$")


class NotebookError(Exception):
    """A notebook that is not in Databricks source format, or that the runner cannot run."""


class NotebookCellError(NotebookError):
    """A cell raised: ``notebook`` (file name), ``cell`` (1-based number), ``line`` (its first line)."""

    def __init__(self, notebook: str, cell: Cell, error: BaseException, details: str) -> None:
        first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
        super().__init__(f"{notebook}: cell {cell.number} (line {cell.line}: {first[:80]!r}) failed with "
                         f"{type(error).__name__}: {error}\n{details}")
        self.notebook = notebook
        self.cell = cell
        self.error = error


@dataclass(frozen=True)
class Cell:
    """One cell: ``kind`` is ``python``, ``md``, ``pip`` or another magic's name (``sh``, ``sql``...)."""

    number: int  #: 1-based, in notebook order (markdown cells count)
    line: int  #: line of the file where its first line is
    kind: str
    source: str  #: Python code, or the magic's text without the ``# MAGIC`` prefixes


def parse_notebook(text: str, name: str = "notebook") -> list[Cell]:
    """Split a notebook in Databricks source format into cells (empty cells dropped)."""
    lines = text.splitlines()
    if not lines or lines[0].rstrip() != HEADER:
        raise NotebookError(f"{name}: not a Databricks notebook source file (the first line must be {HEADER!r})")
    chunks: list[tuple[int, list[str]]] = [(2, [])]
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip() == SEPARATOR:
            chunks.append((number + 1, []))
        else:
            chunks[-1][1].append(line)
    cells: list[Cell] = []
    for start, body in chunks:
        while body and not body[0].strip():  # blank lines around a separator belong to no cell
            body.pop(0)
            start += 1
        while body and not body[-1].strip():
            body.pop()
        if not body:
            continue
        magic = [_MAGIC.match(ln) for ln in body]
        if all(magic):
            inner = [m.group(1) for m in magic if m is not None]
            head = inner[0].strip()
            if not head.startswith("%"):
                raise NotebookError(f"{name}: line {start}: a MAGIC cell must start with a %magic, got {head[:40]!r}")
            kind = head[1:].split(None, 1)[0] if len(head) > 1 else ""
            cells.append(Cell(len(cells) + 1, start, kind, "\n".join(inner)))
        elif any(magic):
            at = start + next(i for i, m in enumerate(magic) if m)
            raise NotebookError(f"{name}: line {at}: a cell mixes '# MAGIC' lines with Python code")
        else:
            cells.append(Cell(len(cells) + 1, start, "python", "\n".join(body)))
    return cells


def pip_requirements(cell: Cell) -> list[str]:
    """The requirement specs of a ``%pip install`` cell (options such as ``-q`` and ``--upgrade`` dropped)."""
    words = shlex.split(cell.source)  # %pip lines are shell-like: quotes around extras and markers
    if words[:2] != ["%pip", "install"]:
        raise NotebookError(f"cell {cell.number}: only '%pip install ...' is supported, got {cell.source[:60]!r}")
    specs, skip = [], False
    for word in words[2:]:
        if skip:
            skip = False
        elif word in ("-r", "--requirement", "-c", "--constraint", "-i", "--index-url", "--extra-index-url"):
            skip = True
        elif not word.startswith("-"):
            specs.append(word)
    return specs


def names_meshclient(spec: str) -> bool:
    """Whether a pip spec installs meshclient: ``meshclient``, ``meshclient[databricks]>=0.1``, or a
    path or URL of a ``meshclient-<version>-...whl`` (not ``meshclient-sandbox``)."""
    base = spec.rsplit("/", 1)[-1]
    if base.endswith(".whl"):
        return base.split("-", 1)[0].lower() == "meshclient"
    name = re.split(r"[\[<>=!~;@ ]", spec, maxsplit=1)[0]
    return name.lower().replace("_", "-") == "meshclient"


# -- dbutils ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class SecretMetadata:
    key: str


@dataclass(frozen=True)
class SecretScope:
    name: str


class NotebookSecrets:
    """``dbutils.secrets`` over a workspace's Secrets API (a ``databricks-sdk`` ``WorkspaceClient``).

    ``get`` returns text and ``getBytes`` bytes, as the runtime does; a missing scope or key raises
    the SDK's error (the runtime raises a py4j ``IllegalArgumentException``). ``reads`` records
    every (scope, key) read, for tests to see which way a notebook got its secrets.
    """

    def __init__(self, workspace_client: Any) -> None:
        self._w = workspace_client
        self.reads: list[tuple[str, str]] = []

    def getBytes(self, scope: str, key: str) -> bytes:
        self.reads.append((scope, key))
        value = self._w.secrets.get_secret(scope=scope, key=key).value
        return base64.b64decode(value)

    def get(self, scope: str, key: str) -> str:
        return self.getBytes(scope, key).decode("utf-8")

    def list(self, scope: str) -> list[SecretMetadata]:
        return [SecretMetadata(s.key) for s in self._w.secrets.list_secrets(scope=scope)]

    def listScopes(self) -> builtins.list[SecretScope]:
        return [SecretScope(s.name) for s in self._w.secrets.list_scopes()]

    def __repr__(self) -> str:
        return "<dbutils.secrets>"


class InputWidgetNotDefined(Exception):
    """What the runtime raises for ``dbutils.widgets.get`` of a widget the notebook did not create."""


class NotebookWidgets:
    """``dbutils.widgets``: ``text``/``dropdown``/``combobox``/``multiselect`` create a widget with
    its default; a value passed to the runner (a job parameter) takes its place; ``get`` reads it."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.passed = {k: str(v) for k, v in values.items()}
        self.defined: dict[str, str] = {}

    def _create(self, name: str, default: str, choices: Sequence[str] | None = None) -> None:
        value = self.passed.get(name, str(default))
        if choices is not None and value not in choices and "," not in value:
            raise ValueError(f"widget {name!r}: {value!r} is not one of {list(choices)}")
        self.defined[name] = value

    def text(self, name: str, defaultValue: str = "", label: str | None = None) -> None:
        self._create(name, defaultValue)

    def dropdown(self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None) -> None:
        if defaultValue not in choices:
            raise ValueError(f"widget {name!r}: the default {defaultValue!r} is not one of its choices")
        self._create(name, defaultValue, choices)

    def combobox(self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None) -> None:
        self._create(name, defaultValue)

    def multiselect(self, name: str, defaultValue: str, choices: Sequence[str], label: str | None = None) -> None:
        self._create(name, defaultValue)

    def get(self, name: str) -> str:
        if name not in self.defined:
            raise InputWidgetNotDefined(f"No input widget named {name} is defined")
        return self.defined[name]

    getArgument = get

    def remove(self, name: str) -> None:
        self.defined.pop(name, None)

    def removeAll(self) -> None:
        self.defined.clear()


class NotebookLibrary:
    """``dbutils.library``: ``restartPython()`` is recorded; the runner then clears the namespace."""

    def __init__(self) -> None:
        self.restarts = 0

    def restartPython(self) -> None:
        self.restarts += 1


class NotebookDbutils:
    """The parts of ``dbutils`` notebooks use: ``secrets``, ``widgets``, ``library``."""

    def __init__(self, workspace_client: Any, widgets: Mapping[str, str] | None = None) -> None:
        self.secrets = NotebookSecrets(workspace_client)
        self.widgets = NotebookWidgets(widgets or {})
        self.library = NotebookLibrary()
        #: ``DATABRICKS_*`` variables that reach the same workspace (for ``databricks_runtime=False``)
        self.workspace_env: dict[str, str] = {}

    @classmethod
    def for_workspace(cls, host: str, token: str, widgets: Mapping[str, str] | None = None) -> NotebookDbutils:
        """``dbutils`` whose secrets come from the workspace at ``host`` (a PAT's view of it)."""
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.core import Config

        dbutils = cls(WorkspaceClient(config=Config(host=host, token=token, auth_type="pat")), widgets)
        dbutils.workspace_env = {"DATABRICKS_HOST": host, "DATABRICKS_TOKEN": token}
        return dbutils

    def __repr__(self) -> str:
        return "<dbutils>"


# -- the runner -------------------------------------------------------------------------------
@dataclass
class Displayed:
    """One ``display(...)`` call: the object and the text printed for it."""

    value: Any
    text: str


@dataclass
class NotebookRunner:
    """Runs one notebook's cells in order in one namespace (see the module doc).

    ``spark``: a SparkSession for ``spark``/``sc`` (``None``: the names are absent).
    ``before_cell(cell, namespace)``: called before each Python cell (tests change the world
    between cells there, as time and other people would). ``out``: where ``display`` prints.
    """

    path: Path
    dbutils: NotebookDbutils
    spark: Any = None
    before_cell: Callable[[Cell, dict[str, Any]], None] | None = None
    databricks_runtime: bool = True
    runtime_version: str = DEFAULT_RUNTIME_VERSION
    out: Any = None
    displayed: list[Displayed] = field(default_factory=list)
    ran: list[int] = field(default_factory=list)  #: numbers of the cells that ran

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.namespace: dict[str, Any] = {}

    # -- namespace ---------------------------------------------------------------------------
    def _fresh_namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__, "dbutils": self.dbutils,
                              "display": self.display, "displayHTML": self.display_html}
        if self.spark is not None:
            ns["spark"] = self.spark
            ns["sc"] = self.spark.sparkContext
        return ns

    def display(self, value: Any, *args: Any, **kwargs: Any) -> None:
        """Show ``value``: a Spark DataFrame as its first 100 rows, a pandas one as a table."""
        if hasattr(value, "toPandas") and hasattr(value, "schema"):  # a Spark DataFrame: like the notebook's grid
            text = value.limit(100).toPandas().to_string(max_colwidth=100)
        elif hasattr(value, "to_string"):
            text = value.to_string(max_colwidth=100)
        else:
            text = repr(value)
        self.displayed.append(Displayed(value, text))
        print(text, file=self.out or sys.stdout, flush=True)

    def display_html(self, html: str) -> None:
        self.displayed.append(Displayed(html, html))
        print(html, file=self.out or sys.stdout, flush=True)

    # -- running -----------------------------------------------------------------------------
    def cells(self) -> list[Cell]:
        return parse_notebook(self.path.read_text(encoding="utf-8"), self.path.name)

    def run(self) -> dict[str, Any]:
        """Run every cell; returns the final namespace. Raises :class:`NotebookCellError` on the first failure."""
        cells = self.cells()
        self.namespace = self._fresh_namespace()
        with self._as_databricks_driver():
            for cell in cells:
                self._run_cell(cell)
        return self.namespace

    def _run_cell(self, cell: Cell) -> None:
        if cell.kind == "md":
            return
        if cell.kind == "pip":
            specs = pip_requirements(cell)
            if not any(names_meshclient(s) for s in specs):
                raise NotebookError(f"{self.path.name}: cell {cell.number} (line {cell.line}) installs {specs}, "
                                    "not meshclient")
            self.ran.append(cell.number)
            return
        if cell.kind != "python":
            raise NotebookError(f"{self.path.name}: cell {cell.number} (line {cell.line}) is a %{cell.kind} cell; "
                                "this runner runs Python, %md and %pip cells only")
        if self.before_cell is not None:
            self.before_cell(cell, self.namespace)
        restarts = self.dbutils.library.restarts
        # leading newlines keep the notebook's line numbers in tracebacks; linecache shows the lines
        filename = f"{self.path.name} [cell {cell.number}]"
        text = "\n" * (cell.line - 1) + cell.source + "\n"
        linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
        code = compile(text, filename, "exec")
        try:
            exec(code, self.namespace)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            frames = traceback.extract_tb(exc.__traceback__)[1:]  # from the cell's code on
            shown = [f for f in frames if f.filename.startswith(self.path.name)]
            if frames and frames[-1] not in shown:
                shown.append(frames[-1])  # where it was raised, inside a library
            where = "".join(f"  {f.filename}, line {f.lineno}: {(f.line or '').strip()}\n" for f in shown)
            details = f"{where}{''.join(traceback.format_exception_only(type(exc), exc)).rstrip()}"
            raise NotebookCellError(self.path.name, cell, exc, details) from exc
        self.ran.append(cell.number)
        if self.dbutils.library.restarts != restarts:  # the Python process restarts: its state is gone
            self.namespace.clear()
            self.namespace.update(self._fresh_namespace())

    @contextlib.contextmanager
    def _as_databricks_driver(self) -> Iterator[None]:
        """``DATABRICKS_RUNTIME_VERSION`` set, no ``DATABRICKS_*``/``MESHCLIENT_*`` credentials in the
        environment, and ``IPython.get_ipython().user_ns`` = this notebook's namespace."""
        saved_env = {k: v for k, v in os.environ.items() if k.startswith(("DATABRICKS_", "MESHCLIENT_"))}
        saved_ipython = sys.modules.get("IPython")
        runner = self

        class _Shell:  # the two ways libraries reach a notebook's globals through IPython
            @property
            def user_ns(self) -> dict[str, Any]:
                return runner.namespace

            @property
            def ns_table(self) -> dict[str, dict[str, Any]]:
                return {"user_global": runner.namespace, "user_local": runner.namespace}

        shell = _Shell()
        stand_in = types.ModuleType("IPython")
        stand_in.get_ipython = lambda: shell  # type: ignore[attr-defined]
        try:
            for name in saved_env:
                del os.environ[name]
            if self.databricks_runtime:
                os.environ["DATABRICKS_RUNTIME_VERSION"] = self.runtime_version
                sys.modules["IPython"] = stand_in
            else:
                if not self.dbutils.workspace_env:
                    raise NotebookError("databricks_runtime=False needs dbutils made by NotebookDbutils.for_workspace")
                os.environ.update(self.dbutils.workspace_env)
            yield
        finally:
            if saved_ipython is not None:
                sys.modules["IPython"] = saved_ipython
            else:
                sys.modules.pop("IPython", None)
            for name in ("DATABRICKS_RUNTIME_VERSION", *self.dbutils.workspace_env):
                os.environ.pop(name, None)
            os.environ.update(saved_env)


def run_notebook(path: str | os.PathLike[str], dbutils: NotebookDbutils, *, spark: Any = None,
                 before_cell: Callable[[Cell, dict[str, Any]], None] | None = None,
                 databricks_runtime: bool = True) -> NotebookRunner:
    """Run ``path`` to the end with ``dbutils`` (and ``spark``); returns the runner (namespace, displays).

    Widgets passed to ``dbutils`` that the notebook never defines are an error: a misspelt
    parameter would otherwise leave the notebook on its default without anyone noticing.
    """
    runner = NotebookRunner(Path(path), dbutils, spark=spark, before_cell=before_cell,
                            databricks_runtime=databricks_runtime)
    runner.run()
    unused = sorted(set(dbutils.widgets.passed) - set(dbutils.widgets.defined))
    if unused:
        raise NotebookError(f"{runner.path.name}: widgets passed but never defined by the notebook: {unused}")
    return runner
