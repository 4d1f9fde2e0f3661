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

SCOPE = "ml-mesh"

# The material never touches disk: the key is handed to OpenSSL through an in-memory file.
creds = meshclient.Credentials.from_pem(
    cert_chain=dbutils.secrets.get(SCOPE, "tls.crt"),  # noqa: F821 - dbutils exists in notebooks
    key=dbutils.secrets.get(SCOPE, "tls.key"),  # noqa: F821
    trust_anchors=dbutils.secrets.get(SCOPE, "ca.crt"),  # noqa: F821
)
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
