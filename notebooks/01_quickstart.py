# Databricks notebook source
# MAGIC %md
# MAGIC # meshclient quick start
# MAGIC
# MAGIC Call a service inside a Linkerd-meshed Kubernetes cluster from this notebook, over mutual TLS,
# MAGIC with a verified identity on both ends. You need:
# MAGIC
# MAGIC * a secret scope (here `ml-mesh`) holding this workload's mesh identity under the
# MAGIC   kubernetes.io/tls names `tls.crt` (leaf + issuer), `tls.key` and `ca.crt` (the mesh trust anchors);
# MAGIC * the address of the service (pod IP, service DNS name, load balancer) and its Linkerd identity
# MAGIC   `<serviceaccount>.<namespace>.serviceaccount.identity.linkerd.cluster.local`.

# COMMAND ----------

# MAGIC %pip install meshclient

# COMMAND ----------

import meshclient

# The identity lives in a secret scope; in a notebook meshclient reads it through dbutils.
# The key never touches disk: it reaches OpenSSL through an in-memory file.
creds = meshclient.Credentials.from_secret_scope("ml-mesh")
print(creds)  # identity, expiry and fingerprint - never the key

# COMMAND ----------

client = meshclient.MeshClient(creds)
fraud_model = client.service(
    "https://fraud-model.ml-serving.svc.cluster.local:8080",
    server_identity="fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local",
)

# The connection is refused before any byte of the request is sent unless the server proves
# exactly this identity with a certificate from the mesh's trust anchors.
resp = fraud_model.post("/invocations", json={"dataframe_records": [{"amount": 12.5, "country": "NL"}]})
meshclient.raise_for_status(resp)  # a Linkerd policy denial raises PolicyDeniedError with the proxy's reason
resp.json()
