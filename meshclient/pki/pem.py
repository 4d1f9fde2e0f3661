"""Reading certificate material: PEM blocks, DER, and a clear error for everything else."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from ..errors import (
    EmptyMaterialError,
    MaterialFormatError,
)
from ._common import _CERT_LABELS, _CSR_LABELS, _DECODE_HINT, _KEY_LABELS, _PEM_BEGIN, _PEM_BLOCK, _as_bytes


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
