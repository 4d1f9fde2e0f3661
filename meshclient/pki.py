"""Pure X.509 work: parse PEM/DER/PKCS#8, build and check chains, profile checks.

Nothing here touches the network or ``ssl``. Every failure is a :class:`CredentialsError`
subclass whose message names the material (``where``: a file, a variable, an argument) and
whose hint says what to do. No message ever quotes key bytes, key-slot text or a password:
only certificate names, dates, sizes and labels, which are public.

Works with cryptography 41 (Databricks Runtime 15.4) and newer: ``*_utc`` date properties
are used only when present.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from .errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    ChainError,
    EmptyMaterialError,
    EncryptedKeyError,
    IdentityError,
    IdentitySANError,
    KeyMismatchError,
    KeyUsageError,
    MaterialFormatError,
    MissingIntermediateError,
    UnsupportedKeyError,
    WrongKeyPasswordError,
)
from .identity import Identity

__all__ = [
    "PrivateKey",
    "load_certificates",
    "load_private_key",
    "identity_of",
    "identity_sans",
    "fingerprint",
    "not_before",
    "not_after",
    "check_validity",
    "check_key_matches",
    "check_end_entity",
    "build_chain",
    "check_leaf_profile",
    "linkerd_profile_notes",
    "describe",
    "certs_to_pem",
    "key_to_pem",
    "is_self_signed",
    "ChainResult",
]

log = logging.getLogger("meshclient.pki")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----(.*?)-----END ([A-Z0-9 #]+)-----", re.S)
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 #]+)-----")
_KEY_LABELS = ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "DSA PRIVATE KEY")
_CERT_LABELS = ("CERTIFICATE", "X509 CERTIFICATE")
_CSR_LABELS = ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")
_MESH_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)  # what linkerd2-proxy verifies
_MAX_CHAIN = 8
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
_SAN_KINDS = {x509.IPAddress: "IP address", x509.RFC822Name: "email", x509.DirectoryName: "directory name",
              x509.RegisteredID: "registered ID", x509.OtherName: "otherName"}
_DECODE_HINT = (
    "Kubernetes Secret 'data' values are base64: decode first, e.g. "
    "kubectl get secret NAME -o jsonpath='{.data.tls\\.crt}' | base64 -d"
)


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


def _as_bytes(data: object, *, where: str, what: str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", errors="replace")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if hasattr(data, "__fspath__"):
        raise MaterialFormatError(
            f"The {what} given as {where} is a path object, not the material itself.",
            hint="Credentials.from_pem takes PEM text or bytes; for files use Credentials.from_files(cert=, key=, "
            "trust_anchors=).",
        )
    raise MaterialFormatError(
        f"The {what} given as {where} is a {type(data).__name__}, not text or bytes.",
        hint="Pass the PEM as str or bytes (e.g. the value of dbutils.secrets.get(...)).",
    )


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM. Callers keep it in memory only (memfd), never on disk or in logs."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


# -- PEM text ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Block:
    label: str
    pem: bytes  # the block, re-wrapped into canonical PEM

    @property
    def encrypted(self) -> bool:
        return self.label == "ENCRYPTED PRIVATE KEY" or b"Proc-Type: 4,ENCRYPTED" in self.pem


def _pem_blocks(raw: bytes, *, where: str, what: str) -> list[_Block]:
    """Every PEM block in ``raw``, tolerant of layout (CRLF, indentation, one-line pastes,
    literal ``\\n``) but not of content: a block cut short or with mismatched markers is an error."""
    if b"\\n" in raw and b"\n" not in raw.strip():
        raw = raw.replace(b"\\r\\n", b"\n").replace(b"\\n", b"\n")  # PEM pasted into an env var / JSON
    begins = _PEM_BEGIN.findall(raw)
    matches = list(_PEM_BLOCK.finditer(raw))
    if len(matches) < len(begins) or any(m.group(1) != m.group(3) for m in matches):
        raise MaterialFormatError(
            f"The {what} PEM in {where} is truncated: a '-----BEGIN' line has no matching '-----END' line.",
            hint="Copy the whole PEM again, from '-----BEGIN' to '-----END' inclusive; values pasted into a UI or "
            "a secret are often cut off.",
        )
    blocks = []
    for m in matches:
        label = m.group(1).decode("ascii")
        body = m.group(2)
        lines = [line.strip() for line in body.replace(b"\r", b"").split(b"\n") if line.strip()]
        headers = [line for line in lines if b":" in line]  # RFC 1421 headers of legacy encrypted keys
        b64 = re.sub(rb"\s+", b"", b"".join(line for line in lines if b":" not in line))
        inner = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        if headers:
            inner = b"\n".join(headers) + b"\n\n" + inner
        pem = b"-----BEGIN " + m.group(1) + b"-----\n" + inner + b"\n-----END " + m.group(1) + b"-----\n"
        blocks.append(_Block(label, pem))
    return blocks


def _decoded_base64_pem(raw: bytes) -> bool:
    """True when ``raw`` is base64 of PEM text (a Kubernetes Secret ``data`` value)."""
    compact = re.sub(rb"\s+", b"", raw)
    if len(compact) < 16 or not re.fullmatch(rb"[A-Za-z0-9+/=]+", compact):
        return False
    try:
        return b"-----BEGIN" in base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)[:64]
    except (binascii.Error, ValueError):
        return False


def _looks_like_path(raw: bytes) -> bool:
    text = raw.strip()
    return (
        0 < len(text) < 4096
        and b"\n" not in text
        and b"-----" not in text
        and (text.startswith((b"/", b"./", b"../", b"~")) or text.endswith((b".pem", b".crt", b".key", b".der", b".p8")))
    )


def _non_pem_problem(raw: bytes, *, where: str, what: str, echo: bool) -> MaterialFormatError | None:
    """Name the common mistakes for material that is not PEM (never quoting it unless ``echo``)."""
    if _decoded_base64_pem(raw):
        return MaterialFormatError(
            f"The {what} in {where} is base64-encoded PEM, not PEM: it must be decoded once more.",
            hint=_DECODE_HINT + ".",
        )
    if _looks_like_path(raw):
        shown = f" ({raw.strip().decode('utf-8', 'replace')!r})" if echo else ""
        return MaterialFormatError(
            f"The {what} in {where} is a file path{shown}, not the material itself.",
            hint="Pass the file's content, or use Credentials.from_files(...) / a MESHCLIENT_* variable, "
            "which accept paths.",
        )
    return None


# -- certificates ------------------------------------------------------------------------------
def load_certificates(data: bytes | str, *, where: str, what: str = "certificate") -> list[x509.Certificate]:
    """Parse every certificate in PEM text (one or more blocks) or one DER certificate.

    ``where`` names the material in messages ("file 'tls.crt'", "$MESHCLIENT_CERT");
    ``what`` says what it should be ("certificate chain", "trust anchor bundle").
    """
    raw = _as_bytes(data, where=where, what=what)
    if not raw.strip():
        raise EmptyMaterialError(
            f"The {what} in {where} is empty.",
            hint="Give PEM with at least one '-----BEGIN CERTIFICATE-----' block; an empty value usually means "
            "the secret or file was not filled in.",
        )
    if b"-----BEGIN" not in raw:
        return [_load_der_certificate(raw, where=where, what=what)]
    blocks = _pem_blocks(raw, where=where, what=what)
    labels = [b.label for b in blocks]
    if any(label in _KEY_LABELS or label.endswith("PRIVATE KEY") for label in labels):
        raise MaterialFormatError(
            f"The {what} in {where} contains a private key.",
            hint="Give the certificate(s) here and the key separately (key=...); never put the key in a "
            "certificate file or bundle.",
        )
    certs: list[x509.Certificate] = []
    for block in blocks:
        if block.label not in _CERT_LABELS and block.label != "TRUSTED CERTIFICATE":
            continue
        try:
            certs.append(x509.load_pem_x509_certificate(block.pem))
        except ValueError:
            if block.label == "TRUSTED CERTIFICATE":
                raise MaterialFormatError(
                    f"Certificate number {len(certs) + 1} in the {what} in {where} is in OpenSSL's "
                    "'TRUSTED CERTIFICATE' format.",
                    hint="Convert it to a plain certificate: openssl x509 -in FILE -out plain.pem.",
                ) from None
            raise MaterialFormatError(
                f"Certificate number {len(certs) + 1} in the {what} in {where} is damaged: its base64 does not "
                "decode to a certificate.",
                hint="Copy or export the PEM again; lines were probably lost, added or edited.",
            ) from None
    if not certs:
        if any(label in _CSR_LABELS for label in labels):
            raise MaterialFormatError(
                f"The {what} in {where} is a certificate signing request (CSR), not a certificate.",
                hint="Give the certificate the issuer returned for this CSR (Linkerd: the issued leaf and its issuer).",
            )
        found = ", ".join(sorted(set(labels))) or "none"
        raise MaterialFormatError(
            f"The {what} in {where} holds no '-----BEGIN CERTIFICATE-----' block (PEM blocks found: {found}).",
            hint="Check that this is the certificate file (tls.crt / ca.crt), not another file.",
        )
    return certs


def _load_der_certificate(raw: bytes, *, where: str, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(raw)
    except ValueError:
        pass
    problem = _non_pem_problem(raw, where=where, what=what, echo=True)
    if problem is not None:
        raise problem
    if _is_der_private_key(raw):
        raise MaterialFormatError(
            f"The {what} in {where} is a private key (DER/PKCS#8), not a certificate.",
            hint="The certificate and key look swapped: give crt.der / tls.crt as the certificate and "
            "key.p8 / tls.key as the key.",
        )
    try:
        x509.load_der_x509_csr(raw)
    except ValueError:
        pass
    else:
        raise MaterialFormatError(
            f"The {what} in {where} is a certificate signing request (DER CSR, like Linkerd's csr.der), "
            "not a certificate.",
            hint="Give the issued certificate (crt.der), not the request.",
        )
    raise MaterialFormatError(
        f"The {what} in {where} is neither PEM nor a DER certificate ({len(raw)} bytes).",
        hint="Check that the right file was given and that it is not corrupted; a certificate is PEM "
        "('-----BEGIN CERTIFICATE-----') or DER (Linkerd's crt.der).",
    )


def _is_der_private_key(raw: bytes) -> bool:
    try:
        serialization.load_der_private_key(raw, password=None)
    except TypeError:
        return True  # encrypted PKCS#8
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


# -- private keys --------------------------------------------------------------------------------
def load_private_key(
    data: bytes | str,
    *,
    where: str,
    password: bytes | str | None = None,
    password_option: str = "password=...",
) -> PrivateKey:
    """Parse a PEM (PKCS#8, SEC1, PKCS#1, encrypted) or DER (PKCS#8, SEC1) private key.

    ``password_option`` tells the user how to supply a password in this context (an argument
    or ``MESHCLIENT_KEY_PASSWORD``); it appears in hints, the password itself never does.
    """
    raw = _as_bytes(data, where=where, what="private key")
    pw = password.encode("utf-8") if isinstance(password, str) else password
    pw = pw or None
    if not raw.strip():
        raise EmptyMaterialError(
            f"The private key in {where} is empty.",
            hint="Give the workload's private key (tls.key or Linkerd's key.p8); an empty value usually means "
            "the secret or file was not filled in.",
        )
    if b"-----BEGIN" in raw:
        blocks = _pem_blocks(raw, where=where, what="private key")
        keys = [b for b in blocks if b.label in _KEY_LABELS or b.label.endswith("PRIVATE KEY")]
        labels = sorted({b.label for b in blocks})
        if not keys:
            if any(label in _CERT_LABELS for label in labels):
                raise MaterialFormatError(
                    f"The material given as the private key ({where}) is a certificate, not a key.",
                    hint="The certificate and key look swapped: give tls.key as the key and tls.crt as the certificate.",
                )
            raise MaterialFormatError(
                f"The material given as the private key ({where}) holds no private key "
                f"(PEM blocks found: {', '.join(labels) or 'none'}).",
                hint="Give the workload's private key file (a PEM 'PRIVATE KEY' or 'EC PRIVATE KEY' block, "
                "or Linkerd's key.p8).",
            )
        if len(keys) > 1:
            raise MaterialFormatError(
                f"The material given as the private key ({where}) holds {len(keys)} private keys.",
                hint="Give exactly one key: the one that belongs to the leaf certificate.",
            )
        if keys[0].label == "OPENSSH PRIVATE KEY":
            raise MaterialFormatError(
                f"The private key in {where} is an OpenSSH key, not a TLS key.",
                hint="Give the workload's TLS key (PKCS#8 or SEC1 PEM, or Linkerd's key.p8).",
            )
        blob, is_pem, encrypted = keys[0].pem, True, keys[0].encrypted
    else:
        problem = _non_pem_problem(raw, where=where, what="private key", echo=False)
        if problem is not None:
            raise problem
        blob, is_pem, encrypted = raw, False, False

    def _load(secret: bytes | None) -> object:
        if is_pem:
            return serialization.load_pem_private_key(blob, password=secret)
        return serialization.load_der_private_key(blob, password=secret)

    key: object
    try:
        key = _load(None)
    except TypeError:
        encrypted = True
        key = None
    except (ValueError, UnsupportedAlgorithm):
        if encrypted:  # legacy encrypted PEM may fail as ValueError without a password
            key = None
        else:
            raise _damaged_key(raw, blob, is_pem, where=where) from None
    if key is None:
        if pw is None:
            raise EncryptedKeyError(
                f"The private key in {where} is encrypted and no password was given.",
                hint=f"Give the password ({password_option}), or store the key unencrypted in a secret store "
                "(openssl pkey -in KEY -out plain.key).",
            )
        try:
            key = _load(pw)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise WrongKeyPasswordError(
                f"The private key in {where} is encrypted and the password given does not decrypt it.",
                hint=f"Check the password ({password_option}): it must be the one the key was encrypted with.",
            ) from None
    elif pw is not None:
        log.debug("a key password was given for %s, but the key is not encrypted; ignoring it", where)
    if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, _MESH_CURVES):
        raise UnsupportedKeyError(
            f"The private key in {where} is ECDSA on curve {key.curve.name}, which Linkerd does not accept.",
            hint="Issue the workload an ECDSA P-256 key, as Linkerd's identity service does.",
        )
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise UnsupportedKeyError(
            f"The private key in {where} is a {_key_kind(key)} key; mesh TLS needs ECDSA P-256.",
            hint="Issue the workload an ECDSA P-256 key, as Linkerd's identity service does.",
        )
    return key


def _damaged_key(raw: bytes, blob: bytes, is_pem: bool, *, where: str) -> MaterialFormatError:
    if not is_pem:
        try:
            x509.load_der_x509_certificate(raw)
        except ValueError:
            pass
        else:
            return MaterialFormatError(
                f"The material given as the private key ({where}) is a certificate (DER), not a key.",
                hint="The certificate and key look swapped: give key.p8 / tls.key as the key and crt.der / tls.crt "
                "as the certificate.",
            )
        return MaterialFormatError(
            f"The private key in {where} is neither PEM nor a DER (PKCS#8/SEC1) key ({len(raw)} bytes).",
            hint="Give a PEM key (a 'PRIVATE KEY' block) or Linkerd's key.p8; check the file is not corrupted.",
        )
    return MaterialFormatError(
        f"The private key in {where} is damaged: its PEM block does not decode to a key.",
        hint="Copy or export the key again; lines were probably lost, added or edited.",
    )


def _key_kind(key: object) -> str:
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return f"ECDSA {key.curve.name}"
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"RSA-{key.key_size}"
    kinds: tuple[tuple[tuple[type, ...], str], ...] = (
        ((ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey), "Ed25519"),
        ((ed448.Ed448PublicKey, ed448.Ed448PrivateKey), "Ed448"),
        ((dsa.DSAPublicKey, dsa.DSAPrivateKey), "DSA"),
        ((x25519.X25519PublicKey, x25519.X25519PrivateKey), "X25519"),
        ((x448.X448PublicKey, x448.X448PrivateKey), "X448"),
    )
    return next((name for types, name in kinds if isinstance(key, types)), "unknown")


def _public_der(key: object) -> bytes:
    der = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bytes(der)


def check_key_matches(
    cert: x509.Certificate,
    key: PrivateKey,
    *,
    where: str,
    cert_where: str | None = None,
    others: Sequence[x509.Certificate] = (),
) -> None:
    """The key's public half must be the leaf's; say so plainly if it is an issuer's key instead."""
    key_der = _public_der(key.public_key())
    if _public_der(cert.public_key()) == key_der:
        return
    in_cert = f" in {cert_where}" if cert_where else ""
    owner = next((c for c in others if _public_der(c.public_key()) == key_der), None)
    if owner is not None:
        raise KeyMismatchError(
            f"The private key in {where} belongs to the CA certificate '{describe(owner)}', not to the workload's "
            f"leaf '{describe(cert)}'{in_cert}.",
            hint="Give the workload's own key (tls.key / key.p8 issued with the leaf). An issuer's key must never "
            "leave the cluster's identity service.",
        )
    raise KeyMismatchError(
        f"The private key in {where} does not belong to the leaf certificate '{describe(cert)}'{in_cert}.",
        hint="Take the certificate and the key from the same issuance (the same secret, the same rotation); "
        "a key from another workload or an older rotation never matches.",
    )


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


# -- chains ------------------------------------------------------------------------------------
def _basic_constraints(cert: x509.Certificate) -> tuple[bool, int | None]:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False, None
    return bc.ca, bc.path_length


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject:
        return False
    try:
        child.verify_directly_issued_by(parent)  # cryptography >= 40
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def is_self_signed(cert: x509.Certificate) -> bool:
    """True for a root: its own name as issuer and a signature its own key verifies."""
    return _signed_by(cert, cert)


def _key_ids_match(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        aki = child.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ski = parent.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return aki is not None and aki == ski


def _names(certs: Sequence[x509.Certificate]) -> str:
    return ", ".join(f"'{describe(c)}'" for c in certs) or "none"


def check_end_entity(certs: Sequence[x509.Certificate], *, where: str) -> None:
    """The first certificate must be the workload's leaf, not a CA (a common wrong order)."""
    if not certs or not _basic_constraints(certs[0])[0]:
        return
    leaf_at = next((i for i, c in enumerate(certs) if not _basic_constraints(c)[0]), None)
    if leaf_at is not None:
        raise ChainError(
            f"The certificate chain in {where} is in the wrong order: it starts with the CA certificate "
            f"'{describe(certs[0])}', and the workload's leaf '{describe(certs[leaf_at])}' is certificate number "
            f"{leaf_at + 1}.",
            hint="Put the leaf first, then its issuer (what tls.crt holds and what the TLS handshake sends).",
        )
    raise ChainError(
        f"The certificate chain in {where} holds only CA certificates ({_names(certs)}): the workload's own leaf "
        "certificate is missing.",
        hint="Give the workload's leaf (the certificate naming its identity) followed by its issuer; CA "
        "certificates go in the trust anchors.",
    )


@dataclass(frozen=True)
class ChainResult:
    """A verified path: leaf first, anchor last.

    ``same_dn_issuers`` are issuers whose subject equals their own issuer's subject (OpenSSL
    mistakes them for self-signed); ``partial_anchor`` is set when the anchor used is not a
    self-signed root (OpenSSL then needs ``VERIFY_X509_PARTIAL_CHAIN``).
    """

    path: tuple[x509.Certificate, ...]
    anchor: x509.Certificate
    same_dn_issuers: tuple[x509.Certificate, ...]
    partial_anchor: bool = False


def build_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    where: str,
    now: _dt.datetime,
    anchors_where: str | None = None,
) -> ChainResult:
    """Find and check the path leaf → intermediates → one trust anchor, as a Linkerd proxy would.

    Checks signatures, CA flags, path lengths and dates of everything above the leaf. Any
    anchor of a multi-anchor bundle (rotation overlap) may be the one the path ends at.
    """
    anchors_where = anchors_where or where
    if not anchors:
        raise EmptyMaterialError(
            f"The trust anchor bundle in {anchors_where} holds no certificate.",
            hint="Give the mesh trust anchors (Linkerd's ca-bundle.crt from ConfigMap linkerd-identity-trust-roots, "
            "or ca.crt).",
        )
    path = [leaf]
    pool = [c for c in intermediates if c != leaf]
    current = leaf
    for _ in range(_MAX_CHAIN):
        anchor = next((a for a in anchors if _signed_by(current, a)), None)
        if anchor is not None:
            break
        parent = next((c for c in pool if _signed_by(current, c)), None)
        if parent is None:
            raise _no_issuer(leaf, current, intermediates, anchors, where=where, anchors_where=anchors_where)
        path.append(parent)
        pool.remove(parent)
        current = parent
    else:
        raise ChainError(f"The certificate chain in {where} is longer than {_MAX_CHAIN} certificates.",
                         hint="Give the leaf and its issuer only; Linkerd chains are leaf → issuer → anchor.")

    for depth, cert in enumerate([*path[1:], anchor]):
        is_ca, pathlen = _basic_constraints(cert)
        role = "trust anchor" if cert is anchor else "issuer"
        src = anchors_where if cert is anchor else where
        if not is_ca:
            raise ChainError(
                f"The {role} '{describe(cert)}' in {src} signed '{describe(path[depth])}' but is not a CA "
                "certificate (basicConstraints CA:TRUE is missing), so TLS peers reject the chain.",
                hint="Issue workload certificates from a CA certificate (Linkerd: the identity issuer, CA:TRUE "
                "pathlen:0).",
            )
        if pathlen is not None and depth > pathlen:
            raise ChainError(
                f"The {role} '{describe(cert)}' in {src} allows {pathlen} intermediate CA(s) below it "
                f"(pathlen:{pathlen}), but this chain has {depth}.",
                hint="Issue the leaf directly from the Linkerd issuer (root pathlen:1 → issuer pathlen:0 → leaf).",
            )
    for cert in path[1:]:
        check_validity(cert, role="issuer", where=where, now=now)
    check_validity(anchor, role="trust anchor", where=anchors_where, now=now)
    same_dn = tuple(c for c in path[1:] if c.subject == c.issuer)
    return ChainResult(path=tuple(path), anchor=anchor, same_dn_issuers=same_dn,
                       partial_anchor=not is_self_signed(anchor))


def _no_issuer(
    leaf: x509.Certificate,
    current: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    *,
    where: str,
    anchors_where: str,
) -> ChainError:
    """Explain why ``current`` has no issuer among the chain and the anchors."""
    issuer_dn = current.issuer.rfc4514_string() or "(empty name)"
    name = describe(current)
    anchor_list = f"The anchors in {anchors_where} are: {_names(anchors)}."
    same_name_anchors = [a for a in anchors if a.subject == current.issuer]
    wrong_anchors_hint = (
        "Use the trust anchors of the cluster that issued this certificate (ConfigMap "
        "linkerd-identity-trust-roots, key ca-bundle.crt); during an anchor rotation the bundle must hold "
        "both the old and the new anchor."
    )
    if current is not leaf:
        if is_self_signed(current):
            return ChainError(
                f"The certificate chain in {where} does not verify to the trust anchors: it ends at the root "
                f"'{name}', which is not one of them. {anchor_list}",
                hint=wrong_anchors_hint,
            )
        if same_name_anchors:
            return ChainError(
                f"The certificate chain in {where} does not verify to the trust anchors: the issuer '{name}' "
                f"was signed by a CA named '{issuer_dn}', and the trust anchor with that name has a different key "
                "(another cluster, or a rotated anchor).",
                hint=wrong_anchors_hint,
            )
        return ChainError(
            f"The certificate chain in {where} does not verify to the trust anchors: the issuer '{name}' was "
            f"signed by '{issuer_dn}', which is neither in the chain nor among the anchors. {anchor_list}",
            hint=wrong_anchors_hint + " If '" + issuer_dn + "' is a second intermediate, append it to the chain.",
        )
    if is_self_signed(leaf):
        return ChainError(
            f"The leaf '{name}' in {where} is self-signed: no mesh CA issued it, so no Linkerd proxy trusts it.",
            hint="Use a certificate issued by the cluster's identity issuer (Linkerd issues one per workload; for "
            "local work use meshclient's sandbox PKI).",
        )
    same_name_chain = [c for c in intermediates if c.subject == current.issuer and c != current]
    if same_name_chain:
        return ChainError(
            f"The issuer certificate '{describe(same_name_chain[0])}' in {where} did not sign the leaf "
            f"'{name}': the leaf and the issuer come from different issuances (often an issuer rotation).",
            hint="Take the leaf and the issuer certificate from the same, current secret (tls.crt as a whole).",
        )
    if same_name_anchors and any(_key_ids_match(leaf, a) for a in same_name_anchors):
        return ChainError(
            f"The leaf '{name}' in {where} names the trust anchor '{issuer_dn}' as its issuer, but the anchor's "
            "key does not verify its signature: the certificate is damaged or was altered.",
            hint="Fetch the certificate again from its source.",
        )
    if same_name_anchors:
        return MissingIntermediateError(
            f"The leaf '{name}' in {where} was issued by '{issuer_dn}', and a trust anchor in {anchors_where} has "
            "that name but did not sign it. Either the issuer certificate is missing from the chain (Linkerd's "
            "issuer may share the root's name), or these trust anchors belong to another cluster.",
            hint="Append the issuer certificate after the leaf (tls.crt holds leaf then issuer); if it is already "
            "there, " + wrong_anchors_hint[0].lower() + wrong_anchors_hint[1:],
        )
    chain_note = f" (the chain holds {_names(intermediates)})" if intermediates else " (the chain holds only the leaf)"
    return MissingIntermediateError(
        f"The leaf '{name}' in {where} was issued by '{issuer_dn}', which is neither in the certificate chain"
        f"{chain_note} nor among the trust anchors. {anchor_list}",
        hint="Append the issuer (intermediate) certificate after the leaf (tls.crt holds leaf then issuer); if "
        "the chain is complete, use the trust anchors of the cluster that issued it.",
    )


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
