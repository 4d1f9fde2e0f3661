"""Pure X.509 work: parse PEM/DER/PKCS#8, build and check chains, profile checks.

Nothing here touches the network or ``ssl``; every failure is a :class:`CredentialsError`
subclass whose message names the material (``where``) and the fix, never key bytes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from .errors import (
    CertificateValidityError,
    ChainError,
    EncryptedKeyError,
    IdentitySANError,
    KeyMismatchError,
    KeyUsageError,
    MaterialFormatError,
    MissingIntermediateError,
    UnsupportedKeyError,
)
from .identity import Identity

__all__ = [
    "PrivateKey",
    "load_certificates",
    "load_private_key",
    "identity_of",
    "fingerprint",
    "not_before",
    "not_after",
    "check_key_matches",
    "build_chain",
    "check_leaf_profile",
    "linkerd_profile_notes",
    "certs_to_pem",
    "key_to_pem",
    "ChainResult",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")


def _utc(dt: _dt.datetime) -> _dt.datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=_dt.timezone.utc)


def not_before(cert: x509.Certificate) -> _dt.datetime:
    """``notBefore`` as an aware UTC datetime on every supported cryptography version."""
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else _utc(cert.not_valid_before)


def not_after(cert: x509.Certificate) -> _dt.datetime:
    """``notAfter`` as an aware UTC datetime on every supported cryptography version."""
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else _utc(cert.not_valid_after)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex with colons (safe to log)."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


def load_certificates(data: bytes | str, *, where: str, what: str = "certificate") -> list[x509.Certificate]:
    """Parse every certificate in PEM text (one or more blocks) or one DER certificate."""
    raw = _as_bytes(data)
    if not raw.strip():
        raise MaterialFormatError(
            f"The {what} material from {where} is empty.",
            hint=f"Point it at a PEM file with at least one '-----BEGIN CERTIFICATE-----' block.",
        )
    if b"-----BEGIN" not in raw:
        try:
            return [x509.load_der_x509_certificate(raw)]
        except ValueError:
            raise MaterialFormatError(
                f"The {what} material from {where} is neither PEM nor a DER certificate.",
                hint="Check that the right file was given (a certificate, not a key) and that it is not corrupted.",
            ) from None
    certs: list[x509.Certificate] = []
    blocks = list(_PEM_BLOCK.finditer(raw))
    if len(blocks) < len(_PEM_BEGIN.findall(raw)):
        raise MaterialFormatError(
            f"The {what} PEM from {where} is truncated: a '-----BEGIN' block has no matching '-----END' line.",
            hint="Copy the whole file again; secrets pasted into a UI are often cut off.",
        )
    for match in blocks:
        label = match.group(1).decode()
        if label in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
            raise MaterialFormatError(
                f"The {what} material from {where} contains a private key.",
                hint="Give the certificate file here and the key separately (key=...).",
            )
        if label not in ("CERTIFICATE", "TRUSTED CERTIFICATE"):
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(match.group(0)))
        except ValueError:
            raise MaterialFormatError(
                f"Certificate number {len(certs) + 1} in the {what} PEM from {where} cannot be parsed "
                "(damaged base64 or not DER inside).",
                hint="Re-export the certificate; check for missing or edited lines.",
            ) from None
    if not certs:
        raise MaterialFormatError(
            f"The {what} material from {where} holds no '-----BEGIN CERTIFICATE-----' block.",
            hint="Check that the file is a certificate bundle.",
        )
    return certs


def load_private_key(data: bytes | str, *, where: str, password: bytes | str | None = None) -> PrivateKey:
    """Parse a PEM (PKCS#8, SEC1, PKCS#1, encrypted PKCS#8) or DER PKCS#8 private key."""
    raw = _as_bytes(data)
    pw = _as_bytes(password) if password is not None else None
    if not raw.strip():
        raise MaterialFormatError(f"The private key from {where} is empty.", hint="Point it at the key file.")
    is_pem = b"-----BEGIN" in raw
    if is_pem:
        begins = _PEM_BEGIN.findall(raw)
        if len(_PEM_BLOCK.findall(raw)) < len(begins):
            raise MaterialFormatError(
                f"The private key PEM from {where} is truncated: no matching '-----END' line.",
                hint="Copy the whole key again.",
            )
        if b"PRIVATE KEY" not in b"".join(begins):
            raise MaterialFormatError(
                f"The material given as the private key ({where}) holds no private key "
                f"(found: {', '.join(sorted({b.decode() for b in begins}))}).",
                hint="Give the key file here and the certificate separately (cert=...).",
            )
        encrypted = b"ENCRYPTED" in raw
    else:
        encrypted = False
    try:
        if is_pem:
            key = serialization.load_pem_private_key(raw, password=pw)
        else:
            key = serialization.load_der_private_key(raw, password=pw)
    except TypeError:
        # cryptography raises TypeError for "password given but key not encrypted" and vice versa
        if pw is None:
            raise EncryptedKeyError(
                f"The private key from {where} is encrypted and no password was given.",
                hint="Pass key_password=... (or MESHCLIENT_KEY_PASSWORD), or store the key unencrypted in a secret store.",
            ) from None
        key = serialization.load_pem_private_key(raw, password=None) if is_pem else serialization.load_der_private_key(raw, password=None)
    except (ValueError, UnsupportedAlgorithm):
        if encrypted or (not is_pem and pw is not None):
            raise EncryptedKeyError(
                f"The private key from {where} could not be decrypted with the password given.",
                hint="Check the key password.",
            ) from None
        raise MaterialFormatError(
            f"The private key from {where} cannot be parsed (damaged PEM/DER or an unsupported format).",
            hint="Give a PEM or PKCS#8 DER private key; re-export it if it was edited.",
        ) from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise UnsupportedKeyError(
            f"The private key from {where} is a {type(key).__name__}; mesh TLS needs ECDSA P-256.",
            hint="Issue the workload an ECDSA P-256 key, as Linkerd does.",
        )
    return key


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM. Callers keep it in memory only (memfd), never on disk."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _public_der(key: object) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def check_key_matches(cert: x509.Certificate, key: PrivateKey, *, where: str) -> None:
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise KeyMismatchError(
            f"The private key ({where}) does not belong to the leaf certificate "
            f"(leaf fingerprint {fingerprint(cert)[:23]}...).",
            hint="Take the certificate and key from the same issuance (same secret, same rotation).",
        )


def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def identity_sans(cert: x509.Certificate) -> list[str]:
    """The SANs that can carry a mesh identity (DNS names and URIs), in certificate order."""
    out: list[str] = []
    for name in _sans(cert):
        if isinstance(name, (x509.DNSName, x509.UniformResourceIdentifier)):
            out.append(name.value)
    return out


def identity_of(cert: x509.Certificate, *, where: str) -> Identity:
    """The one identity a leaf certifies (its single DNS or URI SAN)."""
    names = identity_sans(cert)
    if not names:
        raise IdentitySANError(
            f"The leaf certificate ({where}) has no DNS or URI subject alternative name, so it names no mesh identity.",
            hint="Issue it with one DNS SAN '<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local' (or one spiffe:// URI SAN).",
        )
    if len(names) > 1:
        raise IdentitySANError(
            f"The leaf certificate ({where}) has {len(names)} identity SANs ({', '.join(names)}); "
            "Linkerd takes only the first, so the identity would be ambiguous.",
            hint="Issue it with exactly one DNS SAN (or one spiffe:// URI SAN).",
        )
    return Identity.parse(names[0])


def _fmt(dt: _dt.datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def _describe(cert: x509.Certificate) -> str:
    names = identity_sans(cert)
    if names:
        return names[0]
    subject = cert.subject.rfc4514_string()
    return subject or f"serial {cert.serial_number:x}"


def check_validity(cert: x509.Certificate, *, role: str, where: str, now: _dt.datetime) -> None:
    start, end = not_before(cert), not_after(cert)
    if now < start:
        raise CertificateValidityError(
            f"The {role} certificate '{_describe(cert)}' ({where}) is not valid yet: "
            f"valid from {_fmt(start)} to {_fmt(end)}, and now is {_fmt(now)}.",
            hint="Check this machine's clock, or wait until the certificate's start time.",
        )
    if now > end:
        raise CertificateValidityError(
            f"The {role} certificate '{_describe(cert)}' ({where}) expired at {_fmt(end)} "
            f"(valid from {_fmt(start)}); now is {_fmt(now)}.",
            hint="Fetch a freshly issued certificate (Linkerd leaves live 24 hours); use a rotating source to stay current.",
        )


def _is_ca(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


@dataclass(frozen=True)
class ChainResult:
    """A verified path: leaf first, anchor last; ``same_dn_issuers`` need the OpenSSL workaround."""

    path: tuple[x509.Certificate, ...]
    anchor: x509.Certificate
    same_dn_issuers: tuple[x509.Certificate, ...]


def build_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    where: str,
    now: _dt.datetime,
) -> ChainResult:
    """Find and check the path leaf → intermediates → one trust anchor.

    Checks signatures, validity dates, CA flags and path lengths. Issuers whose subject equals
    their own issuer's subject (Linkerd's step-generated issuer with the root's DN) are reported
    in ``same_dn_issuers``: OpenSSL mistakes them for self-signed, so the TLS layer also trusts them.
    """
    if not anchors:
        raise MaterialFormatError(
            f"The trust-anchor bundle ({where}) is empty.",
            hint="Give the mesh trust anchors (Linkerd's ca-bundle.crt / ca.crt).",
        )
    path = [leaf]
    pool = list(intermediates)
    current = leaf
    for _ in range(8):
        anchor = next((a for a in anchors if _signed_by(current, a)), None)
        if anchor is not None:
            break
        parent = next((c for c in pool if c is not current and _signed_by(current, c)), None)
        if parent is None:
            issuer_dn = current.issuer.rfc4514_string() or "(empty DN)"
            same_name = [c for c in (*pool, *anchors) if c.subject == current.issuer]
            if same_name:
                raise ChainError(
                    f"The certificate '{_describe(current)}' ({where}) names issuer '{issuer_dn}', and a certificate "
                    "with that name is present, but its key did not sign this certificate: the chain does not verify "
                    "to the trust anchors.",
                    hint="The material comes from a different CA than these trust anchors (e.g. another cluster, "
                    "or an anchor rotation): use the anchors of the cluster that issued this certificate.",
                )
            if current is leaf:
                raise MissingIntermediateError(
                    f"The leaf '{_describe(leaf)}' ({where}) was issued by '{issuer_dn}', which is neither in the "
                    "certificate chain nor among the trust anchors.",
                    hint="Append the issuer (intermediate) certificate after the leaf in the certificate file "
                    "(tls.crt should hold leaf then issuer), or check that these are the right trust anchors.",
                )
            raise MissingIntermediateError(
                f"The chain for '{_describe(leaf)}' ({where}) stops at '{_describe(current)}', issued by "
                f"'{issuer_dn}', which is neither in the chain nor among the trust anchors.",
                hint="Add the missing intermediate to the certificate file, or use the matching trust anchors.",
            )
        path.append(parent)
        pool.remove(parent)
        current = parent
    else:
        raise ChainError(f"The certificate chain ({where}) is longer than 8 certificates.", hint="Check the bundle.")

    # CA flags and path lengths on everything above the leaf.
    for depth, cert in enumerate([*path[1:], anchor]):
        is_ca, pathlen = _is_ca(cert)
        role = "trust anchor" if cert is anchor else "intermediate"
        if not is_ca:
            raise ChainError(
                f"The {role} '{_describe(cert)}' ({where}) is not a CA certificate (basicConstraints CA:FALSE or missing).",
                hint="Only CA certificates can issue mesh leaves; check the chain order.",
            )
        below = depth  # number of intermediates between this CA and the leaf
        if pathlen is not None and below > pathlen:
            raise ChainError(
                f"The {role} '{_describe(cert)}' ({where}) allows {pathlen} intermediate(s) below it (pathlen), "
                f"but the chain has {below}.",
                hint="Issue from a CA whose path length allows this chain.",
            )
    for cert in path[1:]:
        check_validity(cert, role="intermediate", where=where, now=now)
    check_validity(anchor, role="trust anchor", where=where, now=now)
    same_dn = tuple(c for c in path[1:] if c.subject == c.issuer)
    return ChainResult(path=tuple(path), anchor=anchor, same_dn_issuers=same_dn)


def _key_description(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return type(key).__name__


def check_leaf_profile(cert: x509.Certificate, *, where: str) -> list[str]:
    """Reject leaves that cannot work for mesh client auth; return softer warnings."""
    warnings: list[str] = []
    pub = cert.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        raise UnsupportedKeyError(
            f"The leaf certificate ({where}) has an RSA-{pub.key_size} key. Linkerd speaks TLS 1.3 with "
            "ECDSA P-256 leaves only; its proxy does not accept RSA-PSS, so an RSA client certificate fails the handshake.",
            hint="Issue the workload an ECDSA P-256 key and certificate (an RSA trust anchor above it is fine).",
        )
    if isinstance(pub, ec.EllipticCurvePublicKey) and not isinstance(pub.curve, ec.SECP256R1):
        warnings.append(f"leaf key is ECDSA {pub.curve.name}; Linkerd issues and prefers P-256")
    elif isinstance(pub, ed25519.Ed25519PublicKey):
        warnings.append("leaf key is Ed25519; Linkerd issues ECDSA P-256")
    is_ca, _ = _is_ca(cert)
    if is_ca:
        raise KeyUsageError(
            f"The leaf certificate ({where}) is a CA certificate (basicConstraints CA:TRUE).",
            hint="Give the workload's own leaf certificate first in the chain, not the issuer.",
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise KeyUsageError(
                f"The leaf certificate ({where}) has keyUsage without digitalSignature, so it cannot sign a TLS handshake.",
                hint="Issue it with keyUsage digitalSignature (Linkerd: digitalSignature, keyEncipherment).",
            )
    except x509.ExtensionNotFound:
        pass
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
            raise KeyUsageError(
                f"The leaf certificate ({where}) is not usable for TLS client authentication: its extended key "
                "usage lacks clientAuth, so the server's proxy will reject it.",
                hint="Issue it with extendedKeyUsage serverAuth, clientAuth (as Linkerd's identity service does).",
            )
    except x509.ExtensionNotFound:
        pass
    return warnings


def linkerd_profile_notes(cert: x509.Certificate, identity: Identity) -> list[str]:
    """Deviations from the profile of a Linkerd-issued leaf (informational, not errors)."""
    notes: list[str] = []
    pub = cert.public_key()
    if not (isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)):
        notes.append(f"key is {_key_description(pub)}, not ECDSA P-256")
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA256):
        algo = cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else "none"
        notes.append(f"signed with {algo}, not SHA-256")
    if identity.is_dns and not identity.is_linkerd:
        notes.append("identity is a DNS name but not '<sa>.<ns>.serviceaccount.identity.<cp-ns>.<trust-domain>'")
    cns = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    if cns and cns[0] != identity.value and identity.is_dns:
        notes.append(f"CN {cns[0]!r} differs from the identity (Linkerd sets CN = identity or leaves it empty)")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            notes.append("extendedKeyUsage lacks serverAuth (fine for a client-only identity)")
    except x509.ExtensionNotFound:
        notes.append("no extendedKeyUsage (Linkerd sets serverAuth, clientAuth)")
    return notes
