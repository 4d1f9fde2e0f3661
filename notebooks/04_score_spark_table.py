# Databricks notebook source
# MAGIC %md
# MAGIC # Score a Spark table against a meshed model server
# MAGIC
# MAGIC `meshclient.spark.score` sends a DataFrame's rows in batches to a model server inside the mesh — an
# MAGIC MLflow scoring server (`POST /invocations`, protocol `mlflow`) or an Open Inference Protocol server such
# MAGIC as KServe or Triton (protocol `v2`) — over mutual TLS, and returns the DataFrame with one prediction per
# MAGIC row. Executors share the driver's identity (no `dbutils` there); at most `max_in_flight` requests per
# MAGIC executor host reach the server, however many cores the cluster has; a batch answered 503 is retried
# MAGIC within the client's retry budget. Details: `docs/scoring.md`.

# COMMAND ----------

# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl

# COMMAND ----------

dbutils.library.restartPython()  # a fresh Python with the new package (dbutils, spark, display stay)

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("table", "ml.features.iris_measurements", "Table to score")
dbutils.widgets.text("model_url", "https://iris-model.ml-serving.svc.cluster.local:8080", "Model server URL")
dbutils.widgets.text("model_identity", "iris-model.ml-serving.serviceaccount.identity.linkerd.cluster.local",
                     "Model server identity")
dbutils.widgets.dropdown("protocol", "mlflow", ["mlflow", "v2"], "Protocol")
dbutils.widgets.text("model_name", "", "Model name (v2 only)")
dbutils.widgets.text("batch_size", "100", "Rows per request")
dbutils.widgets.text("output_table", "", "Write the scores to this table (empty: don't)")

SCOPE = dbutils.widgets.get("secret_scope")
TABLE = dbutils.widgets.get("table")
MODEL_URL = dbutils.widgets.get("model_url").rstrip("/")
MODEL_ID = dbutils.widgets.get("model_identity")
PROTOCOL = dbutils.widgets.get("protocol")
MODEL_NAME = dbutils.widgets.get("model_name") or None
BATCH_SIZE = int(dbutils.widgets.get("batch_size"))
OUTPUT_TABLE = dbutils.widgets.get("output_table")

# COMMAND ----------

import meshclient
import meshclient.spark as mspark

events = []
client = meshclient.MeshClient(meshclient.Credentials.from_secret_scope(SCOPE), audit=events.append)

features = spark.table(TABLE)
print(f"{TABLE}: {features.count()} rows, columns {features.columns}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Score
# MAGIC
# MAGIC Nothing is sent until an action runs. `return_type` tells Spark the prediction's type; without it
# MAGIC meshclient asks the model (v2 metadata) or scores one row on the driver to find out. The result is
# MAGIC cached so that the summaries below do not score the table again.

# COMMAND ----------

job = mspark.ScoringJob()
scored = mspark.score(features, endpoint=MODEL_URL, server_identity=MODEL_ID, client=client, protocol=PROTOCOL,
                      model=MODEL_NAME, output_col="prediction", return_type="double", batch_size=BATCH_SIZE,
                      max_in_flight=2, job=job).cache()
scored_rows = scored.count()
stats = job.report()  # also writes a SCORE event to the client's audit log
print(f"scored {scored_rows} rows: {stats}")
display(scored.limit(10))

# COMMAND ----------

# MAGIC %md
# MAGIC ## A small summary of the scores

# COMMAND ----------

from pyspark.sql import functions as F

summary = scored.select(
    F.count("prediction").alias("rows"),
    F.round(F.mean("prediction"), 4).alias("mean"),
    F.round(F.stddev("prediction"), 4).alias("stddev"),
    F.min("prediction").alias("min"),
    F.percentile_approx("prediction", 0.5).alias("median"),
    F.max("prediction").alias("max"),
    F.sum(F.col("prediction").isNull().cast("int")).alias("missing"),
).toPandas()
display(summary)

buckets = (scored.withColumn("bucket", F.round("prediction", 0)).groupBy("bucket").count()
           .orderBy("bucket").toPandas())
display(buckets)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The job in the audit log
# MAGIC
# MAGIC Each request also leaves its own event on the executor that sent it; the driver's log has the job's
# MAGIC summary: rows, requests, retries and latency percentiles.

# COMMAND ----------

import pandas as pd

score_events = pd.DataFrame([e.to_dict() for e in events if e.method == "SCORE"])
display(score_events[["time", "client_identity", "server_identity", "url", "rows", "requests", "retries",
                      "p50_ms", "p99_ms", "outcome"]])

# COMMAND ----------

if OUTPUT_TABLE:
    scored.write.mode("overwrite").saveAsTable(OUTPUT_TABLE)
    print(f"wrote {spark.table(OUTPUT_TABLE).count()} scored rows to {OUTPUT_TABLE}")
scored.unpersist()
client.close()
