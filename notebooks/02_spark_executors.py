# Databricks notebook source
# MAGIC %md
# MAGIC # Calling a meshed service from Spark executors
# MAGIC
# MAGIC `dbutils` and notebook authentication exist only on the driver. The driver reads the mesh identity
# MAGIC from the secret scope and builds one `MeshClient`; `meshclient.spark.share` ships its *configuration*
# MAGIC to the executors once (encrypted in a broadcast on a classic cluster, sealed with the cluster seal key
# MAGIC on Spark Connect / serverless — see `docs/spark-executors.md`). In a task, `mesh.client()` gives that
# MAGIC Python worker's one cached client: its TLS contexts and pooled connections serve every task the
# MAGIC worker runs.
# MAGIC
# MAGIC Here each partition of a table is sent to a meshed service in one request, and each task reports what
# MAGIC the server proved and which worker did the work. Scoring a table against a model server has its own
# MAGIC notebook (`04_score_spark_table`); this one shows the mechanics for any service.

# COMMAND ----------

# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl

# COMMAND ----------

dbutils.library.restartPython()  # a fresh Python with the new package (dbutils, spark, display stay)

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("table", "ml.features.transactions_today", "Input table")
dbutils.widgets.text("service_url", "https://enricher.ml-serving.svc.cluster.local:8080", "Service URL")
dbutils.widgets.text("service_identity", "enricher.ml-serving.serviceaccount.identity.linkerd.cluster.local",
                     "Service identity")
dbutils.widgets.text("path", "/v1/enrich", "Path to POST each partition to")
dbutils.widgets.text("allow", "*.ml-serving.serviceaccount.identity.linkerd.cluster.local",
                     "Identities this job may call (comma-separated patterns)")

SCOPE = dbutils.widgets.get("secret_scope")
TABLE = dbutils.widgets.get("table")
URL = dbutils.widgets.get("service_url").rstrip("/")
SERVER_ID = dbutils.widgets.get("service_identity")
PATH = dbutils.widgets.get("path")
ALLOW = [p.strip() for p in dbutils.widgets.get("allow").split(",") if p.strip()]

# COMMAND ----------

# MAGIC %md
# MAGIC ## The driver: identity, egress policy, one shared handle
# MAGIC
# MAGIC The egress policy travels with the client: an executor refuses to open a connection to any identity
# MAGIC outside `allow` (`EgressDeniedError`), whatever code runs in the task.

# COMMAND ----------

import meshclient
import meshclient.spark

creds = meshclient.Credentials.from_secret_scope(SCOPE)
client = meshclient.MeshClient(creds, policy=meshclient.EgressPolicy(allow=ALLOW))
mesh = meshclient.spark.share(client, spark)  # one broadcast; no key in the plan or any log
print(creds)
print(mesh)  # says how the configuration travels (broadcast / sealed); never the key

# COMMAND ----------

# MAGIC %md
# MAGIC ## The executors: one request per partition

# COMMAND ----------

import os

import pandas as pd
from pyspark import TaskContext


def call_service(batches):
    """mapInPandas: all of a partition's rows in one POST; one summary row per partition."""
    rows = pd.concat(list(batches), ignore_index=True)
    mesh_client = mesh.client()  # this worker's cached client, built once per Python process
    resp = mesh_client.post(URL + PATH, server_identity=SERVER_ID,
                            json={"records": rows.to_dict(orient="records")})
    meshclient.raise_for_status(resp)
    peer = resp.mesh.verified_peer  # what the TLS handshake proved, checked before any byte was sent
    yield pd.DataFrame([{
        "partition": TaskContext.get().partitionId(),
        "rows": len(rows),
        "status": resp.status_code,
        "verified_server": str(peer.identity),
        "tls": peer.tls_version,
        "bytes_sent": resp.mesh.bytes_sent,
        "worker_pid": os.getpid(),
        "client": id(mesh_client),
    }])


schema = ("partition int, rows long, status int, verified_server string, tls string, bytes_sent long, "
          "worker_pid long, client long")
table = spark.table(TABLE)
summary = table.mapInPandas(call_service, schema).toPandas().sort_values("partition", ignore_index=True)
display(summary)

# COMMAND ----------

# MAGIC %md
# MAGIC ## What it adds up to
# MAGIC
# MAGIC Every row was sent once, every answer came from the identity asked for, and each Python worker built
# MAGIC one client however many tasks it ran.

# COMMAND ----------

total = table.count()
print(f"{summary['rows'].sum()} of {total} rows sent in {len(summary)} requests, one per partition")
print(f"verified server identities: {sorted(summary['verified_server'].unique())}")
workers = summary.groupby("worker_pid")["client"].nunique()
print(f"{len(workers)} Python worker(s), {workers.max()} client per worker at most")
assert summary["rows"].sum() == total and set(summary["status"]) == {200}
assert set(summary["verified_server"]) == {SERVER_ID}

# COMMAND ----------

# MAGIC %md
# MAGIC ## The policy holds on the executors too
# MAGIC
# MAGIC A task that tries to call a service outside `allow` is stopped on the executor before any connection.

# COMMAND ----------

OUTSIDE = "ledger.finance.serviceaccount.identity.linkerd.cluster.local"


def call_outside(batches):
    for pdf in batches:
        try:
            mesh.client().post(URL + PATH, server_identity=OUTSIDE, json={"rows": len(pdf)})
            outcome = "sent"
        except meshclient.EgressDeniedError as err:
            outcome = type(err).__name__
        yield pd.DataFrame([{"outcome": outcome}])


outcomes = table.limit(1).mapInPandas(call_outside, "outcome string").toPandas()
display(outcomes)
assert set(outcomes["outcome"]) == {"EgressDeniedError"}
client.close()
