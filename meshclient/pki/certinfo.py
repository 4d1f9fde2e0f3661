"""What a certificate says: dates, fingerprint, SANs, the mesh identity it carries, validity checks."""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    IdentityError,
    IdentitySANError,
)
from ..identity import Identity
from ._common import _SAN_KINDS


# -- small helpers ---------------------------------------------------------------------------
def _utc(dt: _dt.datetime) -> _dt.datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=_dt.timezone.utc)


def not_before(cert: x509.Certificate) -> _dt.datetime:
    """``notBefore`` as an aware UTC datetime on every supported cryptography version."""
    value = getattr(cert, "not_valid_before_utc", None)
    return value if isinstance(value, _dt.datetime) else _utc(cert.not_valid_before)


def not_after(cert: x509.Certificate) -> _dt.datetime:
    """``notAfter`` as an aware UTC datetime on every supported cryptography version."""
    value = getattr(cert, "not_valid_after_utc", None)
    return value if isinstance(value, _dt.datetime) else _utc(cert.not_valid_after)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex with colons (public, safe to log)."""
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2)).upper()


def _fmt(dt: _dt.datetime) -> str:
    return _utc(dt).astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


# -- identity ----------------------------------------------------------------------------------
def _sans(cert: x509.Certificate) -> list[x509.GeneralName]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value)


def identity_sans(cert: x509.Certificate) -> list[str]:
    """The SANs that can carry a mesh identity (DNS names and URIs), in certificate order."""
    return [n.value for n in _sans(cert) if isinstance(n, (x509.DNSName, x509.UniformResourceIdentifier))]


def _common_names(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


def describe(cert: x509.Certificate) -> str:
    """A short public name for a certificate: its first identity SAN, else its subject, else its serial."""
    names = identity_sans(cert)
    if names:
        return names[0]
    subject = cert.subject.rfc4514_string()
    return subject or f"serial {cert.serial_number:x}"


def identity_of(cert: x509.Certificate, *, where: str) -> Identity:
    """The one identity a leaf certifies: its single DNS or URI SAN, as Linkerd reads it."""
    names = identity_sans(cert)
    if not names:
        cns = _common_names(cert)
        other = [_SAN_KINDS.get(type(n), type(n).__name__) for n in _sans(cert)]
        detail = (
            f" (it has a CN {cns[0]!r}, but Linkerd reads identities from SANs only)" if cns
            else f" (its SANs are only: {', '.join(other)})" if other else ""
        )
        raise IdentitySANError(
            f"The leaf certificate in {where} has no DNS or URI subject alternative name (SAN), so it names no mesh "
            f"identity{detail}.",
            hint="Issue it with exactly one DNS SAN '<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local' "
            "(or one spiffe:// URI SAN), as Linkerd's identity service does.",
        )
    if len(names) > 1:
        raise IdentitySANError(
            f"The leaf certificate in {where} has {len(names)} identity SANs ({', '.join(names)}); a mesh leaf "
            "has exactly one, and Linkerd would silently use the first.",
            hint="Issue it with exactly one DNS SAN (the workload's identity) or one spiffe:// URI SAN.",
        )
    try:
        return Identity.parse(names[0])
    except IdentityError as err:
        raise IdentitySANError(
            f"The leaf certificate in {where} carries the SAN {names[0]!r}, which is not a mesh identity: "
            f"{err.message}",
            hint="Use the certificate issued for the workload's mesh identity "
            "('<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local'). " + (err.hint or ""),
        ) from None


# -- validity ----------------------------------------------------------------------------------
def check_validity(cert: x509.Certificate, *, role: str, where: str, now: _dt.datetime) -> None:
    """``notBefore <= now <= notAfter``, with both dates and a role-specific fix in the message."""
    now = _utc(now)
    start, end = not_before(cert), not_after(cert)
    name = describe(cert)
    if now < start:
        raise CertificateNotYetValidError(
            f"The {role} certificate '{name}' in {where} is not valid yet: it is valid from {_fmt(start)} "
            f"to {_fmt(end)}, and this machine's clock says {_fmt(now)}.",
            hint="Check this machine's clock (NTP) first; otherwise wait until the start time or use a "
            "certificate that is valid now.",
            not_before=start,
            not_after=end,
        )
    if now > end:
        if role == "leaf":
            hint = ("Fetch a freshly issued certificate and key (Linkerd leaves live 24 hours); a rotating source "
                    "(meshclient.FileSource) keeps the client current.")
        elif role == "trust anchor":
            hint = ("The cluster's trust anchor has expired: get the current bundle (ConfigMap "
                    "linkerd-identity-trust-roots, key ca-bundle.crt) from the platform team, who must rotate it.")
        else:
            hint = ("The issuer certificate in the chain has expired: fetch a leaf issued by the cluster's current "
                    "issuer, together with that issuer's certificate.")
        raise CertificateExpiredError(
            f"The {role} certificate '{name}' in {where} expired at {_fmt(end)} (valid from {_fmt(start)}); "
            f"this machine's clock says {_fmt(now)}.",
            hint=hint,
            not_before=start,
            not_after=end,
        )

