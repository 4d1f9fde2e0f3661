"""Shared constants of the pki package: PEM labels, mesh curves, limits, the key type."""

from __future__ import annotations

import logging
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import (
    MaterialFormatError,
)

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

