"""Short-lived mesh certificates from a certificate issuer, renewed automatically.

* :mod:`.csr`: the in-memory key and the Linkerd-shaped CSR.
* :mod:`.base`: what every issuer shares (:class:`IssuanceError`, :class:`SignedCertificate`,
  the HTTP side over :mod:`meshclient.outbound`).
* :mod:`.vault`: :class:`VaultPKIIssuer` (JWT auth login, then the PKI secrets engine).
* :mod:`.stepca`: :class:`StepCAIssuer` (``/1.0/sign`` with a provisioner token).
* :mod:`.source`: :class:`IssuerSource`, the rotating identity on top.

Tokens, Vault tokens and keys never appear in logs, errors or ``repr``.
"""

from .base import DEFAULT_ISSUER_TIMEOUT, CertificateIssuer, IssuanceError, SignedCertificate
from .csr import new_key_and_csr
from .source import IssuerSource
from .stepca import StepCAIssuer
from .vault import VaultPKIIssuer

__all__ = [
    "CertificateIssuer",
    "SignedCertificate",
    "VaultPKIIssuer",
    "StepCAIssuer",
    "IssuerSource",
    "IssuanceError",
    "new_key_and_csr",
    "DEFAULT_ISSUER_TIMEOUT",
]
