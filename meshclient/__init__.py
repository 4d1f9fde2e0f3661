"""meshclient: a proxy-less Linkerd mesh client for Databricks notebooks, jobs and Spark executors.

Everything users need is importable from here; submodules are implementation detail unless
documented (``meshclient.tokens``, ``meshclient.spark``, ``meshclient.artifacts``, ``meshclient.scoring``
and ``meshclient.mlflow`` are public namespaces). The local sandbox mesh is its own distribution,
``meshclient-sandbox`` (package ``meshclient_sandbox``).
"""

from __future__ import annotations

from . import tokens
from ._version import __version__
from .audit import AuditEvent, FileAuditSink, LoggingAuditSink
from .checkup import doctor
from .client import DEFAULT_TIMEOUT, DIRECT_PORT, MeshClient, MeshResponse, MeshService, raise_for_status
from .config import ClientConfig
from .credentials import Credentials, SameSubjectIssuerWarning
from .credentials.issuers import IssuanceError, IssuerSource, StepCAIssuer, VaultPKIIssuer
from .credentials.sources import FileSource, IdentitySource, SecretScopeSource, SourceStatus, StaticSource
from .doctor_report import DoctorCheck, DoctorReport
from .errors import (
    ArgumentTypeError,
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateValidityError,
    ChainError,
    ConfigurationError,
    ConnectError,
    CredentialsError,
    DeadlineExceededError,
    DoctorFailedError,
    EgressDeniedError,
    EmptyMaterialError,
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
    NoEndpointAvailableError,
    PolicyDeniedError,
    ResultsError,
    ScoringError,
    SecretScopeError,
    ServerIdentityError,
    TLSHandshakeError,
    TransportError,
    UnsupportedKeyError,
    WrongKeyPasswordError,
)
from .identity import Identity, IdentityPattern
from .policy import EgressPolicy
from .transport.balancer import DnsEndpoints, StaticEndpoints
from .transport.breaker import BreakerSettings
from .transport.budget import RetryBudget
from .transport.retry import RetryPolicy

__all__ = [
    "__version__",
    "tokens",
    "DEFAULT_TIMEOUT",
    "DIRECT_PORT",
    "AuditEvent",
    "FileAuditSink",
    "LoggingAuditSink",
    "EgressPolicy",
    "RetryPolicy",
    "RetryBudget",
    "BreakerSettings",
    "StaticEndpoints",
    "DnsEndpoints",
    "MeshClient",
    "doctor",
    "DoctorReport",
    "DoctorCheck",
    "MeshService",
    "MeshResponse",
    "ClientConfig",
    "raise_for_status",
    "Credentials",
    "SameSubjectIssuerWarning",
    "IdentitySource",
    "FileSource",
    "SourceStatus",
    "SecretScopeSource",
    "StaticSource",
    "IssuerSource",
    "VaultPKIIssuer",
    "StepCAIssuer",
    "IssuanceError",
    "Identity",
    "IdentityPattern",
    "MeshError",
    "ConfigurationError",
    "ArgumentTypeError",
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
    "SecretScopeError",
    "CertificateNotYetValidError",
    "CertificateExpiredError",
    "WrongKeyPasswordError",
    "EmptyMaterialError",
    "NoEndpointAvailableError",
    "EgressDeniedError",
    "DeadlineExceededError",
    "DoctorFailedError",
    "ScoringError",
    "ResultsError",
]


def __getattr__(name: str) -> object:
    """``meshclient.spark``, ``scoring`` and ``results`` load on first use (no pyspark, pandas or numpy until needed)."""
    if name in ("spark", "scoring", "results"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'meshclient' has no attribute {name!r}")
