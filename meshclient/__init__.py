"""meshclient: a proxy-less Linkerd mesh client for Databricks notebooks, jobs and Spark executors.

Everything users need is importable from here; submodules are implementation detail unless
documented (``meshclient.tokens`` and ``meshclient.sandbox`` are public namespaces).
"""

from __future__ import annotations

from .client import DEFAULT_TIMEOUT, MeshClient, MeshService, raise_for_status
from .credentials import Credentials, SameSubjectIssuerWarning
from .errors import (
    CertificateValidityError,
    ChainError,
    ConfigurationError,
    ConnectError,
    CredentialsError,
    EncryptedKeyError,
    HTTPStatusError,
    IdentityError,
    IdentitySANError,
    KeyMismatchError,
    KeyUsageError,
    MaterialFormatError,
    MaterialNotFoundError,
    MeshError,
    MeshTimeoutError,
    MissingIntermediateError,
    PolicyDeniedError,
    ServerIdentityError,
    TLSHandshakeError,
    TransportError,
    UnsupportedKeyError,
)
from .identity import Identity, IdentityPattern

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "DEFAULT_TIMEOUT",
    "MeshClient",
    "MeshService",
    "raise_for_status",
    "Credentials",
    "SameSubjectIssuerWarning",
    "Identity",
    "IdentityPattern",
    "MeshError",
    "ConfigurationError",
    "IdentityError",
    "CredentialsError",
    "MaterialNotFoundError",
    "MaterialFormatError",
    "EncryptedKeyError",
    "KeyMismatchError",
    "ChainError",
    "MissingIntermediateError",
    "CertificateValidityError",
    "UnsupportedKeyError",
    "IdentitySANError",
    "KeyUsageError",
    "TransportError",
    "ConnectError",
    "TLSHandshakeError",
    "ServerIdentityError",
    "MeshTimeoutError",
    "HTTPStatusError",
    "PolicyDeniedError",
]
