# Databricks notebook source
# MAGIC %md
# MAGIC # Calling a meshed model server from Spark executors
# MAGIC
# MAGIC `dbutils` and notebook authentication exist only on the driver. The driver builds one
# MAGIC `MeshClient` (identity from the secret scope, an OIDC token for the job), and
# MAGIC `meshclient.spark.share` ships its *configuration* to the executors once, sealed in a
# MAGIC broadcast; each Python worker builds one client from it and reuses it for every batch.

# COMMAND ----------

# MAGIC %pip install meshclient

# COMMAND ----------

import meshclient
import meshclient.spark
from meshclient import tokens

SERVER_ID = "fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local"
URL = "https://fraud-model.ml-serving.svc.cluster.local:8080/invocations"

client = meshclient.MeshClient(
    meshclient.SecretScopeSource("ml-mesh"),  # re-read as the platform team rotates the secret
    token=tokens.ClientCredentials(
        token_url=dbutils.secrets.get("ml-mesh", "oidc-token-url"),  # noqa: F821 - notebook global
        client_id=dbutils.secrets.get("ml-mesh", "oidc-client-id"),  # noqa: F821
        client_secret=dbutils.secrets.get("ml-mesh", "oidc-client-secret"),  # noqa: F821
    ),
    policy=meshclient.EgressPolicy(allow=["*.ml-serving.serviceaccount.identity.linkerd.cluster.local"]),
)
mesh = meshclient.spark.share(client)  # one broadcast; no secret in the plan, the logs or any repr

# COMMAND ----------


def score_partition(rows):
    scorer = mesh.client()  # this worker's cached client (built once per Python process)
    batch = [row.asDict() for row in rows]
    if not batch:
        return
    resp = scorer.post(URL, server_identity=SERVER_ID, json={"dataframe_records": batch})
    meshclient.raise_for_status(resp)
    for row, prediction in zip(batch, resp.json()["predictions"]):
        yield (row["transaction_id"], float(prediction))


transactions = spark.table("ml.transactions_today").select("transaction_id", "amount", "country")  # noqa: F821
scores = transactions.rdd.mapPartitions(score_partition).toDF(["transaction_id", "fraud_score"])
display(scores)  # noqa: F821
