"""TLS contexts built from a credentials snapshot, and peer identity verification.

* One ``ssl.SSLContext`` per :class:`~meshclient.Credentials` snapshot, never mutated after
  it is built (rotation builds a new one, so no session or trust survives a generation).
* Trust is the mesh anchors and nothing else: no system store, no certifi.
* The key reaches OpenSSL through ``memfd_create`` + ``/proc/self/fd/N``; only where memfd is
  missing (macOS) does a 0600 temporary file exist, and only for the duration of the load.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .credentials import Credentials
from .errors import ServerIdentityError
from .identity import Identity

__all__ = [
    "MeshSSLContext",
    "build_client_context",
    "mesh_context",
    "load_cert_chain_from_memory",
    "PeerInfo",
    "verify_server_identity",
    "peer_identities",
    "sni_for",
]


@contextlib.contextmanager
def _in_memory_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can read ``data`` from, existing on no filesystem when possible."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd_create("meshclient-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    # Fallback (macOS, old kernels): a 0600 file, read back and unlinked immediately.
    fd, path = tempfile.mkstemp(prefix="meshclient-", suffix=".pem")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.close(fd)
        fd = -1
        yield path
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def load_cert_chain_from_memory(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """``ctx.load_cert_chain`` from bytes, without the key ever persisting on disk."""
    with _in_memory_file(chain_pem + b"\n" + key_pem) as path:
        ctx.load_cert_chain(path)


class MeshSSLContext(ssl.SSLContext):
    """An ``SSLContext`` whose ALPN list is fixed when it is built.

    urllib3 (1.26 and 2.x) calls ``set_alpn_protocols(["http/1.1"])`` on the context at every
    connection. A mesh context must stay as built: no ALPN for Linkerd's transparent mode,
    exactly ``transport.l5d.io/v1`` for direct mode.
    """

    _alpn_locked = False

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        if not self._alpn_locked:
            super().set_alpn_protocols(alpn_protocols)

    def lock_alpn(self, protocols: list[str] | None) -> None:
        if protocols:
            super().set_alpn_protocols(protocols)
        self._alpn_locked = True


def mesh_context(purpose: int, creds: Credentials, allow_tls12: bool) -> ssl.SSLContext:
    """What every mesh context shares (TLS 1.3, mesh anchors only, the key loaded from memory): the
    client's, and the inbound proxies' of meshclient-sandbox (``meshclient_sandbox.tls``)."""
    ctx = MeshSSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2 if allow_tls12 else ssl.TLSVersion.TLSv1_3
    if allow_tls12:
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305")
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_TICKET
    ctx.load_verify_locations(cadata=creds.tls_trust_pem.decode("ascii"))
    if creds.extra_trusted:
        # the same-DN issuer is trusted as an anchor of its own
        ctx.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    load_cert_chain_from_memory(ctx, creds.cert_chain_pem, creds.private_key_pem())
    return ctx


def build_client_context(creds: Credentials, *, allow_tls12: bool = False,
                         alpn: list[str] | None = None) -> ssl.SSLContext:
    """The client context for one credentials generation.

    Hostname checking is off in OpenSSL because meshclient checks the server identity itself
    (DNS SAN or SPIFFE URI SAN) right after the handshake and before any request byte; the
    chain is always verified (``CERT_REQUIRED``) against the mesh anchors only.
    """
    ctx = mesh_context(ssl.PROTOCOL_TLS_CLIENT, creds, allow_tls12)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if isinstance(ctx, MeshSSLContext):
        ctx.lock_alpn(alpn)
    return ctx


def sni_for(identity: Identity, url_host: str, server_name: str | None = None) -> str:
    """The SNI to send: the identity for DNS identities; for SPIFFE, ``server_name`` or the URL host."""
    if server_name:
        return server_name
    if identity.is_dns:
        return identity.value
    return url_host


@dataclass(frozen=True)
class PeerInfo:
    """What the handshake proved about the server."""

    identity: Identity
    tls_version: str
    cipher: str
    sans: tuple[str, ...]
    alpn: str | None = None


def _san_pairs(peer_cert: Any) -> list[tuple[str, str]]:
    """``(kind, value)`` SAN pairs of a ``getpeercert()`` dict."""
    return [(str(pair[0]), str(pair[1])) for pair in peer_cert.get("subjectAltName", ()) if len(pair) == 2]


def peer_identities(peer_cert: Any) -> list[str]:
    """DNS and URI SANs of a verified peer certificate (``getpeercert()`` form)."""
    return [value for kind, value in _san_pairs(peer_cert) if kind in ("DNS", "URI")]


def verify_server_identity(sock: ssl.SSLSocket, expected: Identity, *, where: str) -> PeerInfo:
    """Check that the verified server certificate names ``expected``; raise before any request byte.

    Linkerd's client accepts a server whose SANs *contain* the expected identity: DNS
    identities are compared to DNS SANs, SPIFFE IDs to URI SANs, both exactly.
    """
    cert = sock.getpeercert()
    if not cert:
        raise ServerIdentityError(
            f"The server at {where} presented no verified certificate.",
            hint="The endpoint is not a mesh proxy; check the address and port.",
        )
    kind = "URI" if expected.is_spiffe else "DNS"
    pairs = _san_pairs(cert)
    sans = tuple(f"{k}:{v}" for k, v in pairs)
    if not any(k == kind and v == expected.value for k, v in pairs):
        found = ", ".join(peer_identities(cert)) or "no identity SAN"
        raise ServerIdentityError(
            f"The server at {where} is '{found}', not the expected identity '{expected}'. "
            "No request was sent.",
            hint="Check server_identity (--server-identity on the command line): the workload's service account "
            "and namespace, and that the address belongs to that workload.",
        )
    cipher = sock.cipher()
    return PeerInfo(
        identity=expected,
        tls_version=sock.version() or "unknown",
        cipher=cipher[0] if cipher else "unknown",
        sans=sans,
        alpn=sock.selected_alpn_protocol(),
    )
