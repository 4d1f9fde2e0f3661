"""The key and CSR a workload sends to a certificate issuer, shaped like Linkerd's own.

Why here and not in the issuers: both protocols (Vault, step-ca) sign the same request, and
the key is the one secret of the whole exchange. It is made in memory for every renewal and
never leaves the process.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ...errors import ConfigurationError
from ...identity import Identity

__all__ = ["dns_identity", "new_key_and_csr", "csr_pem"]

_MAX_CN = 64  # RFC 5280 ub-common-name; longer identities go in the SAN only (Linkerd allows an empty CN)


def dns_identity(identity: str | Identity) -> Identity:
    """The identity as Linkerd's DNS form; issuers sign DNS identities only."""
    ident = Identity.parse(identity)
    if not ident.is_dns:
        raise ConfigurationError(
            f"Certificates from an issuer carry a DNS identity like Linkerd's; '{ident}' is a SPIFFE ID.",
            hint="Use the workload's Linkerd identity, e.g. "
            "'notebook.ml-team.serviceaccount.identity.linkerd.cluster.local'.",
        )
    return ident


def new_key_and_csr(identity: str | Identity) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    """A fresh ECDSA P-256 key and a CSR shaped like Linkerd's ``proxy-identity`` makes.

    Subject ``CN=<identity>`` (left empty when the name exceeds X.509's 64 characters, which
    Linkerd accepts) and exactly one DNS SAN, the identity; signed with ECDSA-SHA256.
    """
    ident = dns_identity(identity)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, ident.value)] if len(ident.value) <= _MAX_CN else []
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ident.value)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
