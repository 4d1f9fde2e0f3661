"""Seal a client configuration for executors: AES-256-GCM, keyed per share or by a cluster secret.

Two keys are possible:

* a **fresh random key per share** (classic Spark): the ciphertext goes into a broadcast and
  the key travels in the task closure, which classic Spark keeps in memory, never in a plan;
* a **cluster seal key** (Spark Connect, where task closures are part of the plan the server
  receives and keeps): derived with HKDF-SHA256 from the secret in the ``MESHCLIENT_SEAL_KEY``
  environment variable, which the cluster sets on driver and executors from a secret
  reference (``spark_env_vars: MESHCLIENT_SEAL_KEY: "{{secrets/<scope>/<key>}}"``). The plan
  then holds only ciphertext and a key id; the key itself never travels.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigurationError

__all__ = ["SEAL_KEY_ENV", "MIN_SECRET_LENGTH", "fresh_key", "cluster_key", "key_id", "seal", "unseal",
           "dumps_config"]

#: the environment variable holding the cluster seal secret (same value on driver and executors)
SEAL_KEY_ENV = "MESHCLIENT_SEAL_KEY"
#: a cluster seal secret shorter than this is refused (use ``secrets.token_urlsafe(32)``)
MIN_SECRET_LENGTH = 32

_AAD = b"meshclient.spark.share/v2"
_HKDF_INFO = b"meshclient.spark.share cluster seal key"


def fresh_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def cluster_key(secret: str | bytes | None = None) -> bytes:
    """The 32-byte key derived from the cluster seal secret (``MESHCLIENT_SEAL_KEY`` by default)."""
    if secret is None:
        secret = os.environ.get(SEAL_KEY_ENV)
    if not secret:
        raise ConfigurationError(
            f"No cluster seal key: {SEAL_KEY_ENV} is not set in this process.",
            hint=f"Set {SEAL_KEY_ENV} on the cluster from a secret reference, e.g. spark_env_vars "
            f'{{"{SEAL_KEY_ENV}": "{{{{secrets/ml-mesh/seal-key}}}}"}} (a value of at least {MIN_SECRET_LENGTH} '
            "random characters: python -c 'import secrets; print(secrets.token_urlsafe(32))').",
        )
    raw = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(raw) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"The cluster seal key in {SEAL_KEY_ENV} is {len(raw)} characters; at least {MIN_SECRET_LENGTH} are needed.",
            hint="Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
        )
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(raw)


def key_id(key: bytes) -> str:
    """A short, non-secret name of a key, so an executor with another key can say so."""
    return hashlib.sha256(b"meshclient key id" + key).hexdigest()[:16]


def dumps_config(config: Any) -> bytes:
    try:
        return pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # name the part that cannot travel, never its content
        problem = type(exc).__name__
    raise ConfigurationError(  # outside the except block: no chained context with the content
        f"This client's configuration cannot be shipped to executors: {problem}.",
        hint="Token providers and audit sinks must be picklable: use meshclient.tokens providers and "
        "LoggingAuditSink/FileAuditSink or a module-level function (not a lambda).",
    )


def seal(key: bytes, payload: bytes) -> bytes:
    """``nonce + ciphertext`` of ``payload`` under ``key``."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, payload, _AAD)


def unseal(key: bytes, blob: bytes, *, where: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:12], blob[12:], _AAD)
    except (InvalidTag, ValueError, TypeError):
        pass
    raise ConfigurationError(
        f"The shared meshclient configuration does not open with {where}.",
        hint="Share again (meshclient.spark.share) after re-running the cell; with a cluster seal key, "
        f"check that {SEAL_KEY_ENV} has the same value on the driver and the executors.",
    )
