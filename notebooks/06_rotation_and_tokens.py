# Databricks notebook source
# MAGIC %md
# MAGIC # Long jobs: certificate rotation and token refresh
# MAGIC
# MAGIC A job that runs for hours outlives its credentials: Linkerd leaf certificates live 24 h and OIDC access
# MAGIC tokens minutes to hours. meshclient renews both without a failed request:
# MAGIC
# MAGIC * **`meshclient.SecretScopeSource`** re-reads the identity from the secret scope every `poll_interval`
# MAGIC   seconds and at 70 % of the certificate's remaining lifetime (like a Linkerd proxy). When the platform
# MAGIC   team rotates `tls.crt`/`tls.key` in the scope, the new snapshot is swapped in atomically (never a new
# MAGIC   certificate with an old key); the client builds a new TLS context and new connections, requests in
# MAGIC   flight finish on the old ones, and no TLS session is resumed across identities. Material for *another*
# MAGIC   identity is refused and reported in `source.status()`.
# MAGIC * **`meshclient.tokens.ClientCredentials`** gets an OIDC token with the client credentials grant and
# MAGIC   refreshes it ahead of expiry (5 min or 20 % of its lifetime), in the background with
# MAGIC   `RefreshSettings(background=True)`; one refresh at a time, the valid token kept through an issuer outage.
# MAGIC
# MAGIC (Short-lived certificates straight from Vault PKI or step-ca: `meshclient.IssuerSource`, see the README.)

# COMMAND ----------

# MAGIC %pip install /Volumes/ml/mesh/wheels/meshclient-0.1.0-py3-none-any.whl

# COMMAND ----------

dbutils.library.restartPython()  # a fresh Python with the new package (dbutils, spark, display stay)

# COMMAND ----------

dbutils.widgets.text("secret_scope", "ml-mesh", "Secret scope with tls.crt, tls.key, ca.crt")
dbutils.widgets.text("service_url", "https://fraud-model.ml-serving.svc.cluster.local:8080", "Service URL")
dbutils.widgets.text("service_identity", "fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local",
                     "Service identity")
dbutils.widgets.text("token_url", "https://login.example.com/oauth2/v1/token", "OIDC token endpoint")
dbutils.widgets.text("client_id", "ml-pipeline", "OIDC client id")
dbutils.widgets.text("client_secret_key", "oidc-client-secret", "Key of the client secret in the scope")
dbutils.widgets.text("audience", "mesh-services", "Token audience")
dbutils.widgets.text("poll_seconds", "60", "Re-read the secret scope every ... seconds")
dbutils.widgets.text("run_seconds", "120", "Keep calling the service for ... seconds")

SCOPE = dbutils.widgets.get("secret_scope")
URL = dbutils.widgets.get("service_url").rstrip("/")
SERVER_ID = dbutils.widgets.get("service_identity")
TOKEN_URL = dbutils.widgets.get("token_url")
CLIENT_ID = dbutils.widgets.get("client_id")
CLIENT_SECRET_KEY = dbutils.widgets.get("client_secret_key")
AUDIENCE = dbutils.widgets.get("audience")
POLL_SECONDS = float(dbutils.widgets.get("poll_seconds"))
RUN_SECONDS = float(dbutils.widgets.get("run_seconds"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## A rotating identity and a refreshing token

# COMMAND ----------

import pandas as pd

import meshclient
from meshclient import tokens

rotations = []
source = meshclient.SecretScopeSource(SCOPE, poll_interval=POLL_SECONDS)
source.subscribe(lambda creds: rotations.append({"rotated at": pd.Timestamp.now(tz="UTC"),
                                                 "new certificate": creds.fingerprint[:23],
                                                 "valid until": creds.not_after}))
token = tokens.ClientCredentials(
    token_url=TOKEN_URL,
    client_id=CLIENT_ID,
    client_secret=dbutils.secrets.get(SCOPE, CLIENT_SECRET_KEY),  # never printed, never in a repr
    audience=AUDIENCE,
    refresh=tokens.RefreshSettings(background=True),
)
events = []
client = meshclient.MeshClient(source, token=token, audit=events.append)
print(source.status())
print(token)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The long-running part
# MAGIC
# MAGIC Call the service steadily for `run_seconds` and note, for every request, which certificate and which token
# MAGIC it went out with. A rotation or a token refresh in the middle must not fail a single request.

# COMMAND ----------

import time

timeline = []
started = time.monotonic()
while time.monotonic() - started < RUN_SECONDS:
    certificate = source.current().fingerprint[:23]
    bearer = token.token()
    try:
        resp = client.get(URL + "/long-job/heartbeat", server_identity=SERVER_ID)
        status = resp.status_code
    except meshclient.MeshError as err:
        status = type(err).__name__
    timeline.append({"second": int(time.monotonic() - started), "certificate": certificate,
                     "token": bearer.fingerprint[:16], "token expires": bearer.expires_at, "status": status})
    time.sleep(0.2)

timeline = pd.DataFrame(timeline)
display(timeline.groupby(["certificate", "token"], sort=False)
        .agg(first_second=("second", "min"), last_second=("second", "max"), requests=("status", "size"),
             ok=("status", lambda s: int((s == 200).sum()))).reset_index())

# COMMAND ----------

# MAGIC %md
# MAGIC ## What happened

# COMMAND ----------

status = source.status()
failed = timeline[timeline["status"] != 200]
print(f"{len(timeline)} requests over {RUN_SECONDS:.0f} s, {len(failed)} failed")
print(f"certificate rotations: {status.rotations}; tokens used: {timeline['token'].nunique()}")
print(f"source healthy: {status.healthy} (identity {status.identity}, valid until {status.not_after:%Y-%m-%d %H:%M} UTC)")
if rotations:
    display(pd.DataFrame(rotations))

audit = pd.DataFrame([e.to_dict() for e in events])
display(audit.groupby(["client_identity", "token_subject", "verified_server_identity", "outcome"])
        .size().rename("requests").reset_index())
assert failed.empty, f"requests failed during the run:\n{failed}"

# COMMAND ----------

client.close()
token.close()
source.close()
