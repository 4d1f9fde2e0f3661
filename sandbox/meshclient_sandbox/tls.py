"""Server-side TLS for the sandbox's inbound proxies and test servers (the library only dials out)."""

from __future__ import annotations

import ssl

from meshclient.credentials import Credentials
from meshclient.tls import mesh_context

__all__ = ["build_server_context"]


def build_server_context(creds: Credentials, *, require_client_cert: bool = True,
                         alpn: list[str] | None = None) -> ssl.SSLContext:
    """A server context like a Linkerd inbound proxy's: TLS 1.3, the mesh anchors, a client certificate."""
    ctx = mesh_context(ssl.PROTOCOL_TLS_SERVER, creds, allow_tls12=False)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
