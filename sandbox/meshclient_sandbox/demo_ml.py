"""The ML half of ``make demo``: what the library exists for, run in-process as a notebook would.

Identity from the workspace's secret scope → a trained model and its run logged through
``mesh+https`` to a real MLflow server in the mesh → a Spark DataFrame scored against a real
model server in the mesh → the scores pushed to the results receiver exactly once while a task
dies midway → the audit trail, both identities on every event. Each step checks its own
outcome on the server's side and adds a row to the summary table.

Needs mlflow, scikit-learn and pyspark in this Python, Java, and the model server's venv
(``make demo`` installs them all); :func:`missing` says what is not there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshclient.redaction import redact_text

from .runner import Sandbox

__all__ = ["ML_SERVICES", "missing", "MLStory", "write_summary"]

#: the sandbox services the ML story talks to
ML_SERVICES = ("mlflow", "mlflow-scoring", "results", "artifacts")
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = 20_000


def missing() -> list[str]:
    """What the ML story needs and this machine lacks (empty: ready)."""
    from .apps.model_servers import venv_python

    gaps = [f"the Python package {name}" for name in ("mlflow", "sklearn", "pyspark", "pandas", "pyarrow")
            if importlib.util.find_spec(name) is None]
    if not gaps and importlib.util.find_spec("flask") is None:  # mlflow-skinny: no tracking server
        gaps.append("the MLflow tracking server (full mlflow, not mlflow-skinny)")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        gaps.append("Java (Spark needs a JVM)")
    if venv_python("mlflow") is None:
        gaps.append("the model server's venv .venv-mlflow")
    return gaps


@dataclass
class MLStory:
    """The ML steps against a running sandbox; ``say``/``heading`` print the narration."""

    sandbox: Sandbox
    say: Callable[[str], None]
    heading: Callable[[str], None]
    summary: list[tuple[str, str, float]] = field(default_factory=list)  # (step, outcome, seconds)
    failures: list[str] = field(default_factory=list)
    # what one step leaves for the next (set by identity, model_and_run, score)
    client: Any = None  # the MeshClient
    spark: Any = None
    scored: Any = None
    model_uri: str = "models:/iris-tree/1"

    @property
    def audit_path(self) -> Path:
        return self.sandbox.workdir / "audit.jsonl"

    def run(self, first_number: int) -> None:
        self.audit_path.unlink(missing_ok=True)
        steps = [("Identity from the workspace's secret scope", self.identity),
                 ("Train a model; log the run and the model through mesh+https", self.model_and_run),
                 ("Score a Spark DataFrame against the meshed model server", self.score),
                 ("Push the scores exactly once, while a task dies midway", self.results),
                 ("The audit trail", self.audit)]
        try:
            for n, (title, step) in enumerate(steps, start=first_number):
                self.heading(f"{n}. {title}")
                started = time.monotonic()
                try:
                    outcome = step()
                except Exception as exc:  # the demo reports a failed step and goes on to the summary
                    outcome = f"FAILED: {type(exc).__name__}: {redact_text(str(exc))[:300]}"
                    self.failures.append(title)
                    self.say(f"!! {outcome}")
                self.summary.append((title, outcome, time.monotonic() - started))
                if self.client is None:  # no identity: every later step needs it
                    break
        finally:
            if self.spark is not None:
                self.spark.stop()
            if self.client is not None:
                self.client.close()

    def _check(self, ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(what)

    # -- steps --------------------------------------------------------------------------------
    def identity(self) -> str:
        from meshclient import Credentials, MeshClient

        ws = self.sandbox.info["workspace"]
        os.environ["DATABRICKS_HOST"], os.environ["DATABRICKS_TOKEN"] = ws["host"], ws["token"]
        self.say('creds = meshclient.Credentials.from_secret_scope("ml-mesh")   # tls.crt, tls.key, ca.crt')
        creds = Credentials.from_secret_scope("ml-mesh")
        self.say(f"  {creds!r}")
        self.client = MeshClient(creds, audit=str(self.audit_path))
        self.say(f"client = meshclient.MeshClient(creds, audit={self.audit_path.name!r})   "
                 "# one JSON line per request, executors too")
        return f"{creds.identity} (key never on disk)"

    def model_and_run(self) -> str:
        import mlflow
        import pandas as pd
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeRegressor

        import meshclient.mlflow
        from meshclient import artifacts

        svc = self.sandbox.service("mlflow")
        uri = f"mesh+https://{svc['url'].removeprefix('https://')}?server_identity={svc['identity']}"
        x, y = load_iris(return_X_y=True, as_frame=True)
        x.columns = FEATURES
        model = DecisionTreeRegressor(max_depth=6, random_state=0).fit(x, y.astype("float64"))
        meshclient.mlflow.use(self.client)
        mlflow.set_tracking_uri(uri)
        self.say(f'mlflow.set_tracking_uri("{uri}")')
        try:
            mlflow.set_experiment("meshclient-demo")
            with mlflow.start_run(run_name="iris-tree") as run:
                mlflow.log_params({"max_depth": 6, "rows": len(x)})
                mlflow.log_metric("train_r2", float(model.score(x, y)))
                _sklearn_call(mlflow.sklearn.log_model, model, "model", input_example=x.head(3))
            self.model_uri = f"runs:/{run.info.run_id}/model"
            loaded = mlflow.pyfunc.load_model(self.model_uri)
            same = bool((loaded.predict(x.head(20)) == model.predict(x.head(20))).all())
            self._check(same, "the model loaded back through mesh+https predicts differently")
            stored = mlflow.get_run(run.info.run_id)
            self.say(f"  run {run.info.run_id}: params {stored.data.params}, "
                     f"metrics {{'train_r2': {stored.data.metrics['train_r2']:.3f}}}; "
                     "loaded back with runs:/…/model: same predictions")
        finally:
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]  # None: back to the default
            meshclient.mlflow.use(None)
        # the model's files, also pushed as a tree to the meshed artifact store (parallel, digest-checked)
        model_dir = self.sandbox.workdir / "demo-model"
        shutil.rmtree(model_dir, ignore_errors=True)
        _sklearn_call(mlflow.sklearn.save_model, model, str(model_dir))
        store = self.sandbox.service("artifacts")
        report = artifacts.push(self.client, model_dir, to=f"{store['url']}/models/iris-tree/1",
                                server_identity=store["identity"], progress=False)
        rows = pd.DataFrame([{"file": e.path, "bytes": e.size, "sha-256": e.sha256[:16] + "…"} for e in report.entries])
        self.say("artifacts.push(client, model_dir, to=…/models/iris-tree/1):")
        for line in rows.to_string(index=False).splitlines():
            self.say("  " + line)
        return f"run {run.info.run_id[:8]}… logged, model loaded back; {report.files} files pushed"

    def _spark(self) -> Any:
        import sys

        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # local[2,4]: two cores, and a failed task is retried (up to 4 attempts), as on a cluster
        spark = (SparkSession.builder.master("local[2,4]").appName("meshclient-demo")
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
                 .config("spark.sql.shuffle.partitions", "4").getOrCreate())
        spark.sparkContext.setLogLevel("FATAL")  # the injected task failure is narrated, not dumped
        self.spark = spark
        return spark

    def score(self) -> str:
        import meshclient.spark as mspark

        spark = self._spark()
        svc = self.sandbox.service("mlflow-scoring")
        lows, spans = [4.3, 2.0, 1.0, 0.1], [3.6, 2.4, 5.9, 2.4]
        df = spark.range(0, ROWS, 1, 4).selectExpr(
            "id", *[f"round(rand({i + 1}) * {spans[i]} + {lows[i]}, 1) AS {n}" for i, n in enumerate(FEATURES)])
        self.say(f"df: {ROWS:,} rows x {len(FEATURES)} features, 4 partitions")
        self.say(f'scored = meshclient.spark.score(df, endpoint="{svc["url"]}", server_identity=…, client=client, '
                 "max_in_flight=2)")
        job = mspark.ScoringJob()
        scored = mspark.score(df, endpoint=svc["url"], server_identity=svc["identity"], client=self.client,
                              input_cols=FEATURES, batch_size=2000, max_in_flight=2, job=job).cache()
        summary = scored.groupBy().agg({"prediction": "avg", "id": "count"}).collect()[0]
        stats = job.report()
        counts = scored.groupBy((scored.prediction + 0.5).cast("int").alias("class")).count().orderBy("class").collect()
        self._check(summary["count(id)"] == ROWS, "not every row was scored")
        by_class = ", ".join(f"{r['class']}: {r['count']:,}" for r in counts)
        self.say(f"  {summary['count(id)']:,} rows scored, mean prediction {summary['avg(prediction)']:.3f}; "
                 f"rows by predicted class: {by_class}")
        self.say(f"  job figures: {stats}")
        relay = self.sandbox.apps["mlflow-scoring"]
        at_server = sum(getattr(relay, "scored_rows", {}).values())
        self.say(f"  the model server saw {at_server:,} rows (each row once, plus the driver's one-row type sample)")
        self.scored = scored
        p99 = f", p99 {stats.p99 * 1000:.0f} ms" if stats.p99 is not None else ""
        return f"{ROWS:,} rows in {stats.requests} requests{p99}"

    def results(self) -> str:
        import meshclient.spark as mspark
        from meshclient import results

        sink = self.sandbox.service("results")
        scored = self.scored

        staged_dir = self.sandbox.workdir / "data" / "results" / "datasets" / "iris-scores" / "batches"

        def die_once(batches: Any) -> Any:  # attempt 0 of partition 1 dies once it has staged a batch
            from pyspark import TaskContext

            ctx = TaskContext.get()
            assert ctx is not None  # runs in a Spark task
            for n, batch in enumerate(batches):
                if ctx.partitionId() == 1 and ctx.attemptNumber() == 0 and n == 3:
                    end = time.monotonic() + 10
                    while not list(staged_dir.glob("p1-*.data")) and time.monotonic() < end:
                        time.sleep(0.05)
                    raise RuntimeError("injected: an executor lost mid-partition")
                yield batch

        self.say("write_results(scored, …), attempt 0 of partition 1 dying after it staged its first rows "
                 "(Spark retries the task)")
        # what a results table holds: the key, the features, the prediction and the model that made it
        # (rows wide enough that Spark hands each 1,000-row batch on at once, so the attempt has staged)
        model_uri = self.model_uri
        rows = scored.selectExpr("id", *FEATURES, "prediction", f"'{model_uri}' AS model_uri",
                                 "current_timestamp() AS scored_at")
        failing = rows.mapInArrow(die_once, rows.schema)
        report = mspark.write_results(failing, url=sink["url"], server_identity=sink["identity"],
                                      dataset="iris-scores", client=self.client, batch_rows=1000)
        table = results.read(self.client, url=sink["url"], server_identity=sink["identity"], dataset="iris-scores")
        ids = table.column("id").to_pylist()
        self._check(len(ids) == ROWS and len(set(ids)) == ROWS, f"{len(ids)} rows, {len(set(ids))} distinct")
        staged = sum(1 for e in self._events() if e["method"] == "PUT" and "/iris-scores/batches/" in e["url"]
                     and e["status"] in (200, 201))
        self.say(f"  committed version {report.version} via {report.via}: {report.batches} batches, "
                 f"{len(ids):,} rows, {len(set(ids)):,} distinct ids")
        self.say(f"  {staged} batches were staged in all: the dead attempt's {staged - report.batches} were "
                 "discarded by the commit, never visible")
        return f"{len(ids):,} rows, each once ({staged - report.batches} batches of a dead attempt discarded)"

    def _events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line.strip()]

    def audit(self) -> str:
        everything = self._events()
        events = [e for e in everything if e["method"] != "SCORE"]  # requests; SCORE: a scoring job's figures
        client_id = str(self.client.identity)
        by_service: dict[str, int] = {}
        for e in events:
            by_service[e["server_identity"]] = by_service.get(e["server_identity"], 0) + 1
        both = [e for e in events if e.get("client_identity") and (e.get("verified_server_identity")
                                                                    or e["outcome"] != "ok")]
        self._check(len(both) == len(events), "an audit event lacks an identity")
        self._check(all(e["client_identity"] == client_id for e in events), "an event names another client")
        self.say(f"{len(events)} request events in {self.audit_path.name} (driver and executors), each with the "
                 f"client's identity and the server's verified one, plus {len(everything) - len(events)} scoring "
                 "job summary:")
        for server, count in sorted(by_service.items(), key=lambda kv: -kv[1]):
            self.say(f"  {count:5d}  {events[0]['client_identity'].split('.')[0]} -> {server}")
        sample = next(e for e in events if e["method"] == "POST")
        shown = {k: sample[k] for k in ("client_identity", "verified_server_identity", "method", "url", "status",
                                        "attempts", "outcome")}
        self.say("  e.g. " + json.dumps(shown))
        secret_free = not any(s in self.audit_path.read_text() for s in ("PRIVATE KEY", "eyJ"))
        self._check(secret_free, "the audit log holds a key or a token")
        return f"{len(events)} requests, both identities on each, no secret"


def _sklearn_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """MLflow >= 3.x saves sklearn models with skops and wants the tree type named as trusted."""
    try:
        return fn(*args, skops_trusted_types=["sklearn.tree._tree.Tree"], **kwargs)
    except TypeError:  # older MLflow: no such parameter (pickle)
        return fn(*args, **kwargs)


def write_summary(say: Callable[[str], None], rows: list[tuple[str, str, float]]) -> None:
    width = max(len(r[0]) for r in rows)
    say("")
    say(f"{'step'.ljust(width)}  {'seconds':>7}  outcome")
    for title, outcome, seconds in rows:
        say(f"{title.ljust(width)}  {seconds:7.1f}  {outcome}")
