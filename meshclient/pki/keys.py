"""Private keys: loading (PEM, PKCS#8 DER, encrypted), what kind they are, and that a key matches its certificate."""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from ..errors import (
    EmptyMaterialError,
    EncryptedKeyError,
    KeyMismatchError,
    MaterialFormatError,
    UnsupportedKeyError,
    WrongKeyPasswordError,
)
from ._common import _CERT_LABELS, _KEY_LABELS, _MESH_CURVES, PrivateKey, _as_bytes, log
from .certinfo import describe
from .pem import _non_pem_problem, _pem_blocks


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM. Callers keep it in memory only (memfd), never on disk or in logs."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())




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

