# Databricks notebook source
# MAGIC %md
# MAGIC # Push a model into the mesh, and track a run through `mesh+https`
# MAGIC
# MAGIC Two ways a model reaches the cluster:
# MAGIC
# MAGIC 1. **`meshclient.artifacts.push`**: a model directory (any tree of files) to a meshed artifact store,
# MAGIC    streamed, files in parallel, every file sha-256-checked against what the store answers, a manifest
# MAGIC    written last. The report says what was stored; the audit log has one event per file.
# MAGIC 2. **MLflow over the mesh**: after `meshclient.mlflow.use(client)`, a tracking URI
# MAGIC    `mesh+https://HOST:PORT?server_identity=ID` sends MLflow's tracking, registry and artifact calls over
# MAGIC    mutual TLS to the meshed MLflow server. Nothing else changes in MLflow code.
# MAGIC
# MAGIC (The workspace's own MLflow is untouched: only `mesh+https` URIs go through meshclient.)

# COMMAND ----------

# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl

# COMMAND ----------

dbutils.library.restartPython()  # a fresh Python with the new package (dbutils, spark, display stay)

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("artifacts_url", "https://model-store.ml-platform.svc.cluster.local:8443", "Artifact store URL")
dbutils.widgets.text("artifacts_identity", "model-store.ml-platform.serviceaccount.identity.linkerd.cluster.local",
                     "Artifact store identity")
dbutils.widgets.text("mlflow_url", "https://mlflow.mlops.svc.cluster.local:5000", "MLflow server URL")
dbutils.widgets.text("mlflow_identity", "mlflow.mlops.serviceaccount.identity.linkerd.cluster.local",
                     "MLflow server identity")
dbutils.widgets.text("experiment", "fraud-detection", "MLflow experiment")
dbutils.widgets.text("model_version", "1", "Version to push the model as")

SCOPE = dbutils.widgets.get("secret_scope")
ARTIFACTS_URL = dbutils.widgets.get("artifacts_url").rstrip("/")
ARTIFACTS_ID = dbutils.widgets.get("artifacts_identity")
MLFLOW_URL = dbutils.widgets.get("mlflow_url").rstrip("/")
MLFLOW_ID = dbutils.widgets.get("mlflow_identity")
EXPERIMENT = dbutils.widgets.get("experiment")
VERSION = dbutils.widgets.get("model_version")

# COMMAND ----------

import meshclient

events = []
client = meshclient.MeshClient(meshclient.Credentials.from_secret_scope(SCOPE), audit=events.append)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Train a small model and save it as an MLflow model directory

# COMMAND ----------

import tempfile

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(42)
features = pd.DataFrame({"amount": rng.gamma(2.0, 40.0, 500), "hour": rng.integers(0, 24, 500).astype("float64"),
                         "merchant_risk": rng.random(500)})
labels = ((features["amount"] > 120) & (features["merchant_risk"] > 0.6)).astype(int)
model = LogisticRegression(max_iter=500).fit(features, labels)

model_dir = tempfile.mkdtemp(prefix="fraud-model-") + "/model"
mlflow.sklearn.save_model(model, model_dir, input_example=features.head(3))
print(f"model saved to {model_dir}, training accuracy {model.score(features, labels):.3f}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. Push the model directory to the meshed artifact store

# COMMAND ----------

from meshclient import artifacts

target = f"{ARTIFACTS_URL}/models/fraud/{VERSION}"
report = artifacts.push(client, model_dir, to=target, server_identity=ARTIFACTS_ID, workers=4)

print(f"{report.files} files, {report.bytes:,} bytes in {report.seconds:.2f} s to {report.url}")
print(f"manifest: {report.manifest_url}")
pushed = pd.DataFrame([{"path": e.path, "bytes": e.size, "sha256": e.sha256[:16] + "...", "verified by": e.verified,
                        "attempts": e.attempts} for e in report.entries])
display(pushed)

# COMMAND ----------

# MAGIC %md
# MAGIC The audit log has one `PUSH` event per file (path, size, digest, how it was verified) next to each
# MAGIC request's own event, all under one trace id.

# COMMAND ----------

audit = pd.DataFrame([e.to_dict() for e in events])
display(audit[audit["method"] == "PUSH"][["time", "verified_server_identity", "method", "url", "bytes_sent",
                                          "outcome", "trace_id"]])
print(audit.groupby("method").size().to_dict(), "events; trace ids:", audit["trace_id"].nunique())

# COMMAND ----------

# MAGIC %md
# MAGIC ## 2. Track a run on the meshed MLflow server

# COMMAND ----------

import meshclient.mlflow

meshclient.mlflow.use(client)  # the identity MLflow's mesh+https calls go out with
tracking_uri = f"mesh+{MLFLOW_URL}?server_identity={MLFLOW_ID}"
mlflow.set_tracking_uri(tracking_uri)
mlflow.set_registry_uri(tracking_uri)
experiment = mlflow.set_experiment(EXPERIMENT)

with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=f"fraud-v{VERSION}") as run:
    mlflow.log_params({"model": "LogisticRegression", "max_iter": 500, "features": ",".join(features.columns)})
    mlflow.log_metric("train_accuracy", model.score(features, labels))
    for step, c in enumerate([0.1, 1.0, 10.0]):
        mlflow.log_metric("accuracy_by_C", LogisticRegression(C=c, max_iter=500).fit(features, labels)
                          .score(features, labels), step=step)
    mlflow.log_dict(report.sha256, "pushed-model-sha256.json")  # where the same model went, and its digests
    logged = mlflow.sklearn.log_model(model, name="model", input_example=features.head(3))
run_id = run.info.run_id
print(f"run {run_id} in experiment {experiment.name!r} ({experiment.experiment_id})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. Read the run back and load the model through the mesh

# COMMAND ----------

got = mlflow.get_run(run_id)
print("params: ", got.data.params)
print("metrics:", got.data.metrics)
print("artifacts:", [a.path for a in mlflow.MlflowClient().list_artifacts(run_id)])

loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
check = features.sample(20, random_state=1)
predictions = pd.DataFrame({"loaded model": np.asarray(loaded.predict(check)), "trained model": model.predict(check)})
display(predictions.head())
assert (predictions["loaded model"] == predictions["trained model"]).all()

mlflow_events = pd.DataFrame([e.to_dict() for e in events if e.server_identity == MLFLOW_ID])
print(f"{len(mlflow_events)} MLflow requests over mTLS, all to {sorted(mlflow_events['verified_server_identity'].unique())}; "
      f"outcomes {mlflow_events['outcome'].value_counts().to_dict()}")

# COMMAND ----------

meshclient.mlflow.use(None)
mlflow.set_tracking_uri(None)
client.close()
