"""The leaf profile linkerd2-proxy expects (key type, usages, one identity SAN) and Linkerd-specific notes."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import (
    KeyUsageError,
    UnsupportedKeyError,
)
from ..identity import Identity
from ._common import _EKU_NAMES, _MESH_CURVES
from .certinfo import _common_names, describe
from .keys import _key_kind


# -- leaf profile ------------------------------------------------------------------------------
def check_leaf_profile(cert: x509.Certificate, *, where: str) -> list[str]:
    """Reject leaves that cannot authenticate a client to a Linkerd proxy; return softer warnings."""
    warnings: list[str] = []
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        raise UnsupportedKeyError(
            f"The leaf certificate '{describe(cert)}' in {where} has an RSA-{pub.key_size} key. Linkerd speaks "
            "TLS 1.3 with ECDSA P-256 leaves only; its proxy does not accept RSA-PSS signatures, so an RSA client "
            "certificate fails the handshake.",
            hint="Issue the workload an ECDSA P-256 key and certificate (an RSA trust anchor above it is fine).",
        )
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if not isinstance(pub.curve, _MESH_CURVES):
            raise UnsupportedKeyError(
                f"The leaf certificate '{describe(cert)}' in {where} has an ECDSA key on curve {pub.curve.name}, "
                "which Linkerd's proxy cannot verify.",
                hint="Issue the workload an ECDSA P-256 key, as Linkerd does.",
            )
        if not isinstance(pub.curve, ec.SECP256R1):
            warnings.append(f"leaf key is ECDSA {pub.curve.name}; Linkerd issues and prefers P-256")
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        warnings.append("leaf key is Ed25519; Linkerd issues ECDSA P-256")
    else:
        raise UnsupportedKeyError(
            f"The leaf certificate '{describe(cert)}' in {where} has a {_key_kind(pub)} key; Linkerd speaks TLS 1.3 "
            "with ECDSA P-256 leaves.",
            hint="Issue the workload an ECDSA P-256 key and certificate.",
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not ku.digital_signature:
        raise KeyUsageError(
            f"The leaf certificate '{describe(cert)}' in {where} is not usable for TLS client authentication: its "
            "keyUsage lacks digitalSignature, so it cannot sign the TLS 1.3 handshake.",
            hint="Issue it with keyUsage digitalSignature (Linkerd: digitalSignature, keyEncipherment).",
        )
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        usages = ", ".join(_EKU_NAMES.get(oid, oid.dotted_string) for oid in eku) or "none"
        raise KeyUsageError(
            f"The leaf certificate '{describe(cert)}' in {where} is not usable for TLS client authentication: its "
            f"extendedKeyUsage ({usages}) lacks clientAuth, so the server's proxy rejects it.",
            hint="Issue it with extendedKeyUsage serverAuth, clientAuth, as Linkerd's identity service does.",
        )
    return warnings


def linkerd_profile_notes(cert: x509.Certificate, identity: Identity) -> list[str]:
    """Deviations from the profile of a Linkerd-issued leaf (informational, not errors)."""
    notes: list[str] = []
    pub = cert.public_key()
    if not (isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)):
        notes.append(f"key is {_key_kind(pub)}, not ECDSA P-256")
    algo = cert.signature_hash_algorithm
    if not isinstance(algo, hashes.SHA256):
        notes.append(f"signed with {algo.name if algo else 'no hash'}, not SHA-256")
    if identity.is_dns and not identity.is_linkerd:
        notes.append("identity is a DNS name but not '<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>'")
    cns = _common_names(cert)
    if cns and cns[0] != identity.value and identity.is_dns:
        notes.append(f"CN {cns[0]!r} differs from the identity (Linkerd sets CN = identity or leaves it empty)")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            notes.append("extendedKeyUsage lacks serverAuth (fine for a client-only identity)")
    except x509.ExtensionNotFound:
        notes.append("no extendedKeyUsage (Linkerd sets serverAuth, clientAuth)")
    return notes

