# Databricks notebook source
# MAGIC %md
# MAGIC # meshclient quick start
# MAGIC
# MAGIC Call a service inside a Linkerd-meshed Kubernetes cluster from this notebook, over mutual TLS,
# MAGIC with a verified identity on both ends. You need:
# MAGIC
# MAGIC * a secret scope (default `ml-mesh`) holding this workload's mesh identity under the
# MAGIC   kubernetes.io/tls names `tls.crt` (leaf + issuer), `tls.key` and `ca.crt` (the mesh trust anchors);
# MAGIC   your platform team puts it there and grants you `READ`;
# MAGIC * the address of a meshed service (pod IP, service DNS name, load balancer) and its Linkerd identity
# MAGIC   `<serviceaccount>.<namespace>.serviceaccount.identity.linkerd.cluster.local`.
# MAGIC
# MAGIC Fill in the widgets at the top, then run all. The notebook reads the identity, checks it with
# MAGIC `meshclient doctor` (including a live handshake with the service), makes a first request and shows
# MAGIC its audit event.

# COMMAND ----------

# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl

# COMMAND ----------

dbutils.library.restartPython()  # a fresh Python with the new package (dbutils, spark, display stay)

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("service_url", "https://fraud-model.ml-serving.svc.cluster.local:8080", "Service URL")
dbutils.widgets.text("service_identity", "fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local",
                     "Service identity")
dbutils.widgets.text("path", "/health", "Path to call")

SCOPE = dbutils.widgets.get("secret_scope")
URL = dbutils.widgets.get("service_url").rstrip("/")
SERVER_ID = dbutils.widgets.get("service_identity")
PATH = dbutils.widgets.get("path")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. The identity, from the secret scope
# MAGIC
# MAGIC In a notebook meshclient reads the scope through `dbutils.secrets` (no token or configuration needed).
# MAGIC The key never touches disk: it reaches OpenSSL through an in-memory file. Printing the credentials
# MAGIC shows the identity, its expiry and a fingerprint, never the key.

# COMMAND ----------

import meshclient

creds = meshclient.Credentials.from_secret_scope(SCOPE)
print(creds)
print(f"identity:   {creds.identity}")
print(f"valid until {creds.not_after:%Y-%m-%d %H:%M} UTC")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 2. `meshclient.doctor()`
# MAGIC
# MAGIC The checks of the `meshclient doctor` command, run here so that it reads the scope through `dbutils`
# MAGIC too: each secret read (size only), the certificate, key, chain and trust anchors, then a live mTLS
# MAGIC handshake with the service and one GET. One line per check as it runs, the fix under any failure;
# MAGIC the report comes back as a value (`report.ok`, `report.failures`) and shows as a table.

# COMMAND ----------

report = meshclient.doctor(secret_scope=SCOPE, target=URL + PATH, server_identity=SERVER_ID)
report.raise_for_failure()  # stops here naming each failed check and its fix

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. The first request
# MAGIC
# MAGIC The connection is refused before any byte of the request is sent unless the server proves exactly
# MAGIC `service_identity` with a certificate from the mesh's trust anchors. Every request leaves one audit
# MAGIC event (both identities, method, URL without query values, status, bytes, duration, attempts).

# COMMAND ----------

import pandas as pd

events = []
client = meshclient.MeshClient(creds, audit=events.append)
service = client.service(URL, server_identity=SERVER_ID)

resp = service.get(PATH)
meshclient.raise_for_status(resp)  # a Linkerd policy denial raises PolicyDeniedError with the proxy's reason
print(resp.status_code, resp.headers.get("content-type"))
print(resp.text[:500])

display(pd.DataFrame([e.to_dict() for e in events])[
    ["time", "client_identity", "verified_server_identity", "method", "url", "status", "bytes_received",
     "duration_ms", "attempts", "outcome"]])

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. A server that cannot prove the identity is refused
# MAGIC
# MAGIC Ask for another identity at the same address: the handshake fails (a Linkerd proxy only serves its
# MAGIC own identity) and nothing is sent. The audit event records the refusal.

# COMMAND ----------

impostor = "someone-else." + SERVER_ID.split(".", 1)[1]
try:
    client.get(URL + PATH, server_identity=impostor)
except (meshclient.TLSHandshakeError, meshclient.ServerIdentityError) as err:
    print(f"refused, as it must be: {type(err).__name__}: {err}")
else:
    raise RuntimeError(f"the server at {URL} answered for {impostor}: it is not a Linkerd-meshed endpoint")
print({k: events[-1].to_dict()[k] for k in ("server_identity", "verified_server_identity", "outcome")})
client.close()
