# Databricks notebook source
# MAGIC %md
# MAGIC # Check the mesh identity before the job moves data
# MAGIC
# MAGIC The bundle's first task. The job cluster already has meshclient (the bundle's wheel is a task
# MAGIC library), so there is no `%pip` cell. It runs `meshclient doctor` with the identity from the secret
# MAGIC scope (read through `dbutils`): the material, then a live mTLS handshake with the model server
# MAGIC the scoring task calls, and one GET. One line per check; any failure fails the task, so the scoring and push
# MAGIC tasks never start with a broken identity or a wrong server identity.

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("model_url", "https://fraud-model.ml-serving.svc.cluster.local:8080/health",
                     "A model server URL to GET")
dbutils.widgets.text("model_identity", "fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local",
                     "The model server's identity")

SCOPE = dbutils.widgets.get("secret_scope")
URL = dbutils.widgets.get("model_url")
SERVER_ID = dbutils.widgets.get("model_identity")

# COMMAND ----------

from meshclient.cli.main import main as meshclient_command

status = meshclient_command(["doctor", "--secret-scope", SCOPE, "--target", URL, "--server-identity", SERVER_ID])
if status != 0:
    raise RuntimeError(f"meshclient doctor failed for {URL} ({SERVER_ID}): read the [FAIL] lines above and the fix "
                       "under each")
