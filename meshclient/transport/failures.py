"""Turn what one attempt raised (urllib3, ``requests`` while reading a body, ``ssl``) into a
meshclient error, and say whether the failure happened before the request was sent (safe to
retry whatever the method) and whether another attempt may succeed.

Classification is by ``isinstance`` over the exception and everything it wraps, so it holds
for urllib3 1.26 and 2.x alike (2.x adds ``NameResolutionError`` under ``NewConnectionError``;
both lines keep ``NewConnectionError`` under ``ConnectTimeoutError``, hence the order below).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

import requests
from urllib3 import exceptions as u3

from ..errors import ConnectError, MeshError, MeshTimeoutError, TLSHandshakeError, TransportError
from ..redaction import redact_url
from .connections import ConnectionNotEstablished
from .route import Route

__all__ = ["Failure", "translate", "safe_url", "chain"]

# TLS failures that a new attempt can fix (the peer went away mid-handshake), as opposed to
# verification failures, which are permanent.
_TRANSIENT_TLS = ("eof", "reset", "broken pipe", "timed out", "connection aborted")
_NAME_RESOLUTION: tuple[type[BaseException], ...] = (socket.gaierror,) + (
    (u3.NameResolutionError,) if hasattr(u3, "NameResolutionError") else ()
)


@dataclass(frozen=True)
class Failure:
    error: MeshError
    before_send: bool  #: nothing of the request reached the server: retry is always safe
    transient: bool  #: another attempt may succeed


def safe_url(url: str | None) -> str:
    return redact_url(url) or "(no url)"


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, exception arguments, urllib3 reasons."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or any(cur is s for s in seen):
            continue
        seen.append(cur)
        todo.extend([cur.__cause__, cur.__context__])
        todo.extend(a for a in getattr(cur, "args", ()) if isinstance(a, BaseException))
        reason = getattr(cur, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return seen


def _any(links: list[BaseException], kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(e, kinds) for e in links)


def _reason(links: list[BaseException]) -> str:
    """The innermost OS/TLS error's text (no URL in it), for the message."""
    innermost: BaseException = links[0]
    for e in links:
        if isinstance(e, (ssl.SSLError, OSError)) and not isinstance(e, (requests.RequestException, u3.HTTPError)):
            innermost = e
    text = str(innermost) or type(innermost).__name__
    if isinstance(innermost, (u3.HTTPError, requests.RequestException)):
        text = type(innermost).__name__  # their text may quote a URL
    return text.replace("\n", " ")[:300]


def _tls_failure(route: Route, links: list[BaseException]) -> Failure:
    reason = _reason(links)
    low = reason.lower()
    transient = any(word in low for word in _TRANSIENT_TLS)
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        hint = ("The server's certificate does not chain to this client's mesh trust anchors: it is not in this "
                "mesh, or the anchors are from another cluster or out of date.")
    elif any(w in low for w in ("certificate required", "certificate_required", "unknown ca", "bad certificate",
                                "certificate unknown", "certificate expired")):
        hint = ("The server refused this client's certificate: check that the server trusts the same anchors "
                "and that the client certificate is current (meshclient doctor).")
    elif "unrecognized name" in low or "handshake failure" in low or "internal error" in low:
        hint = (f"The server did not accept SNI '{route.sni}': a Linkerd proxy only terminates TLS for its own "
                "identity. Check server_identity.")
    elif "protocol version" in low or "wrong version" in low or "unsupported protocol" in low:
        hint = "The server does not speak TLS 1.3 (Linkerd does); pass allow_tls12=True only for non-Linkerd peers."
    elif "no application protocol" in low:
        hint = "The server refused the ALPN offered; for Linkerd's direct mode use the proxy's inbound port."
    elif transient:
        hint = ("The connection closed during or right after the handshake: the server may have refused this "
                "client's certificate (TLS 1.3 reports that only after the handshake), or it was restarting. "
                "Run meshclient doctor against it.")
    else:
        hint = "Check that the address is the workload's mTLS port and that both sides share the trust anchors."
    error = TLSHandshakeError(
        f"TLS handshake with {route.address} (expecting '{route.server_identity}', SNI '{route.sni}') failed: "
        f"{reason}.",
        hint=hint,
    )
    return Failure(error, before_send=True, transient=transient)


def translate(exc: BaseException, route: Route, method: str, url: str | None,
              timeout: tuple[float, float]) -> Failure:
    """Map an exception from one attempt to a :class:`Failure`; re-raise what is not a transport error."""
    if isinstance(exc, MeshError):  # raised by our own connection classes (identity, ALPN)
        return Failure(exc, before_send=True, transient=False)
    if not isinstance(exc, (u3.HTTPError, requests.RequestException, OSError)):
        raise exc
    links = chain(exc)
    where = f"{method} {safe_url(url)} ({route.server_identity})"
    connect_t, read_t = timeout
    if _any(links, _NAME_RESOLUTION):
        return Failure(
            ConnectError(
                f"Could not resolve the host of {route.address} for {route.server_identity}: {_reason(links)}.",
                hint="Check the host name (a service DNS name resolves only inside its cluster, or through the "
                "cluster's DNS); use the pod or service IP otherwise.",
            ),
            before_send=True, transient=True,
        )
    if _any(links, (u3.NewConnectionError, ConnectionRefusedError, ConnectionNotEstablished)):
        return Failure(
            ConnectError(
                f"Could not connect to {route.address} for {route.server_identity}: {_reason(links)}.",
                hint="Check the address and port, and that the service is running and reachable.",
            ),
            before_send=True, transient=True,
        )
    if _any(links, (u3.ConnectTimeoutError, requests.exceptions.ConnectTimeout)):
        return Failure(
            MeshTimeoutError(
                f"Connecting to {route.address} for {route.server_identity} timed out after {connect_t:.3g} s "
                "(connect timeout).",
                hint="Check that the address is reachable from this cluster (network path, security groups) "
                "and that the port is the workload's port.",
            ),
            before_send=True, transient=True,
        )
    if _any(links, (u3.SSLError, ssl.SSLError)):
        return _tls_failure(route, links)
    if _any(links, (u3.ReadTimeoutError, requests.exceptions.ReadTimeout, socket.timeout)):
        return Failure(
            MeshTimeoutError(
                f"{where} got no response from {route.address} within {read_t:.3g} s (read timeout).",
                hint="The server is slow or stalled; raise timeout=(connect, read) or deadline= for long operations.",
            ),
            before_send=False, transient=True,
        )
    if _any(links, (requests.exceptions.ContentDecodingError, u3.DecodeError)):
        return Failure(TransportError(f"{where}: the response from {route.address} could not be decoded: "
                                      f"{_reason(links)}."), before_send=False, transient=False)
    if _any(links, (u3.ProtocolError, requests.exceptions.ChunkedEncodingError)) and _any(
            links, (u3.IncompleteRead, requests.exceptions.ChunkedEncodingError)):
        return Failure(
            TransportError(f"{where}: the response from {route.address} was cut off: {_reason(links)}."),
            before_send=False, transient=True,
        )
    hint = "The server or a network hop closed the connection; idempotent requests are retried."
    if route.is_direct:  # the classic mix-up: the proxy accepted the transport header, then found no app
        hint = (f"In direct mode the URL names the application's own port on the pod (the transport header asks "
                f"the proxy for port {route.direct_target_port}) and direct= / --direct names the proxy's inbound "
                "port (4143 in a cluster). A URL with the service's proxied port instead of the app's port is closed "
                "like this: use the app port (sandbox.json: app_port), or drop direct mode.")
    return Failure(
        TransportError(f"{where}: the connection to {route.address} broke: {_reason(links)}.", hint=hint),
        before_send=False, transient=True,
    )
