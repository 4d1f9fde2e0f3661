# Databricks notebook source
# MAGIC %md
# MAGIC # Write results into the mesh exactly once — batch and streaming
# MAGIC
# MAGIC A meshed results receiver gets a job's rows **exactly once**: tasks *stage* their partitions' batches
# MAGIC (durable, invisible), and one *commit* per job makes them visible together. A retried or speculative
# MAGIC task, a failed job, a re-run of a finished job or a streaming query restarted from its checkpoint never
# MAGIC leaves a row twice or half a job visible (`docs/results-protocol.md`).
# MAGIC
# MAGIC * batch: `meshclient.spark.write_results(df, url=..., server_identity=..., dataset=..., job=...)`;
# MAGIC * streaming: `meshclient.spark.register(spark, client)`, then
# MAGIC   `writeStream.format("meshclient-results")` with a checkpoint (Spark >= 4.0 / DBR >= 15.4): each
# MAGIC   micro-batch is one job, `{query id}.b{batchId}`, which the receiver publishes once.

# COMMAND ----------

# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl

# COMMAND ----------

dbutils.library.restartPython()  # a fresh Python with the new package (dbutils, spark, display stay)

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("results_url", "https://results.ml-platform.svc.cluster.local:8443", "Results receiver URL")
dbutils.widgets.text("results_identity", "results.ml-platform.serviceaccount.identity.linkerd.cluster.local",
                     "Results receiver identity")
dbutils.widgets.text("table", "ml.scores.fraud_today", "Batch: table to write")
dbutils.widgets.text("dataset", "fraud-scores-daily", "Batch: dataset")
dbutils.widgets.text("job", "fraud-scores-daily-run-1", "Batch: job name (a re-run with the same name writes nothing)")
dbutils.widgets.text("stream_source", "/Volumes/ml/scores/incoming", "Streaming: directory of Parquet files")
dbutils.widgets.text("stream_dataset", "fraud-scores-stream", "Streaming: dataset")
dbutils.widgets.text("checkpoint", "/Volumes/ml/scores/checkpoints/fraud-scores-stream", "Streaming: checkpoint")

SCOPE = dbutils.widgets.get("secret_scope")
URL = dbutils.widgets.get("results_url").rstrip("/")
SERVER_ID = dbutils.widgets.get("results_identity")
TABLE = dbutils.widgets.get("table")
DATASET = dbutils.widgets.get("dataset")
JOB = dbutils.widgets.get("job")
STREAM_SOURCE = dbutils.widgets.get("stream_source")
STREAM_DATASET = dbutils.widgets.get("stream_dataset")
CHECKPOINT = dbutils.widgets.get("checkpoint")

# COMMAND ----------

import dataclasses

import pandas as pd

import meshclient
import meshclient.spark as mspark
from meshclient import results

events = []
client = meshclient.MeshClient(meshclient.Credentials.from_secret_scope(SCOPE), audit=events.append)


def published(dataset):
    """What the receiver has made visible: the dataset's manifest (version, batches, committed jobs)."""
    resp = client.get(f"{URL}/v1/datasets/{dataset}", server_identity=SERVER_ID)
    meshclient.raise_for_status(resp)
    return resp.json()


def jobs_table(manifest):
    return pd.DataFrame([{"job": job, "version": info["version"], "batches": info["batches"],
                          "committed_at": info["committed_at"]} for job, info in manifest["jobs"].items()])


# COMMAND ----------

# MAGIC %md
# MAGIC ## Batch: write a table once

# COMMAND ----------

scores = spark.table(TABLE)
report = mspark.write_results(scores, url=URL, server_identity=SERVER_ID, dataset=DATASET, client=client, job=JOB)
display(pd.DataFrame([dataclasses.asdict(report)]))

# COMMAND ----------

# MAGIC %md
# MAGIC Running the same job again (a retried notebook, a re-run of the job) publishes nothing new: the receiver
# MAGIC knows the job is committed.

# COMMAND ----------

before = published(DATASET)
again = mspark.write_results(scores, url=URL, server_identity=SERVER_ID, dataset=DATASET, client=client, job=JOB)
after = published(DATASET)
print(f"re-run of job {JOB!r}: dataset version {before['version']} -> {after['version']}, "
      f"batches {len(before['batches'])} -> {len(after['batches'])}")
assert after["version"] == before["version"] and after["batches"] == before["batches"]

# COMMAND ----------

# MAGIC %md
# MAGIC ## Read it back: each row once
# MAGIC
# MAGIC `results.read` fetches the committed manifest and every batch, checks each batch's sha-256 against it,
# MAGIC and returns one Arrow table. Staged batches of failed attempts are never part of it.

# COMMAND ----------

batch_back = results.read(client, url=URL, server_identity=SERVER_ID, dataset=DATASET).to_pandas()
key = batch_back.columns[0]
copies = batch_back.groupby(key).size()
print(f"{DATASET}: {len(batch_back)} rows read back, {scores.count()} in {TABLE}; "
      f"most copies of one {key}: {copies.max()}")
display(batch_back.sort_values(key).head(10))
display(jobs_table(published(DATASET)))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Streaming: a query with a checkpoint
# MAGIC
# MAGIC The query reads the Parquet files in `stream_source` (one file per micro-batch here) and runs until it has
# MAGIC processed what is there (`availableNow`). Each micro-batch is committed on the receiver as its own job.

# COMMAND ----------

mspark.register(spark, client)  # the meshclient-results data source, with this identity
schema = spark.read.parquet(STREAM_SOURCE).schema


def run_stream():
    query = (spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(STREAM_SOURCE)
             .writeStream.format("meshclient-results")
             .option("url", URL).option("server_identity", SERVER_ID).option("dataset", STREAM_DATASET)
             .option("checkpointLocation", CHECKPOINT)
             .trigger(availableNow=True).start())
    query.awaitTermination()
    return query


query = run_stream()
progress = pd.DataFrame([{"batchId": p["batchId"], "rows": p["numInputRows"]} for p in query.recentProgress])
display(progress)
first_run = published(STREAM_DATASET)
print(f"query {query.id}: dataset {STREAM_DATASET} at version {first_run['version']}, "
      f"{len(first_run['jobs'])} micro-batches committed")

# COMMAND ----------

# MAGIC %md
# MAGIC Restart the query from its checkpoint (a cluster restart, a redeployed job): it resumes where it was,
# MAGIC and anything it re-runs was already published, so the receiver changes nothing.

# COMMAND ----------

restarted = run_stream()
second_run = published(STREAM_DATASET)
print(f"after the restart: version {second_run['version']} (was {first_run['version']}), "
      f"{len(second_run['jobs'])} micro-batches committed")
assert second_run["version"] == first_run["version"] and restarted.id == query.id

# COMMAND ----------

stream_back = results.read(client, url=URL, server_identity=SERVER_ID, dataset=STREAM_DATASET).to_pandas()
stream_key = stream_back.columns[0]
stream_copies = stream_back.groupby(stream_key).size()
source_rows = spark.read.parquet(STREAM_SOURCE).count()
print(f"{STREAM_DATASET}: {len(stream_back)} rows read back, {source_rows} in the source files; "
      f"most copies of one {stream_key}: {stream_copies.max()}")
display(jobs_table(second_run))
assert len(stream_back) == source_rows and stream_copies.max() == 1

# COMMAND ----------

# MAGIC %md
# MAGIC ## This notebook's requests in the audit log
# MAGIC
# MAGIC The driver's own requests (commits, reads; the executors' stage requests are in their own logs).

# COMMAND ----------

audit = pd.DataFrame([e.to_dict() for e in events])
audit["path"] = audit["url"].str.replace(URL, "", regex=False).str.replace(r"/batches/[^/]+", "/batches/{id}", regex=True)
display(audit.groupby(["method", "path", "status", "outcome"]).size().rename("requests").reset_index())
client.close()
