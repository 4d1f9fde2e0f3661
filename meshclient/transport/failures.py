"""Turn ``requests``/``urllib3``/``ssl`` exceptions into meshclient errors, and say whether
the failure happened before the request was sent (safe to retry whatever the method)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import requests

from ..errors import ConnectError, MeshError, MeshTimeoutError, TLSHandshakeError, TransportError
from ..redaction import redact_url
from .adapter import Route

__all__ = ["Failure", "translate", "safe_url"]

# TLS failures that a new attempt can fix (the peer went away mid-handshake), as opposed to
# verification failures, which are permanent.
_TRANSIENT_TLS = ("eof", "reset", "broken pipe", "timed out", "connection aborted")


@dataclass(frozen=True)
class Failure:
    error: MeshError
    before_send: bool  # nothing of the request reached the server: retry is always safe
    transient: bool  # another attempt may succeed


def safe_url(url: str | None) -> str:
    return redact_url(url) or "(no url)"


def _chain(exc: BaseException) -> list[BaseException]:
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


def _reason(exc: BaseException) -> str:
    chain = _chain(exc)
    innermost: BaseException = exc
    for e in chain:
        if isinstance(e, (ssl.SSLError, OSError)) and not isinstance(e, requests.exceptions.RequestException):
            innermost = e
    text = str(innermost) or type(innermost).__name__
    return text.replace("\n", " ")[:300]


def _is_tls(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError) for e in _chain(exc))


def _tls_failure(route: Route, exc: BaseException) -> Failure:
    reason = _reason(exc)
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


def translate(exc: BaseException, route: Route, method: str, url: str | None, timeout: Any) -> Failure:
    """Map an exception from one attempt to a :class:`Failure`."""
    if isinstance(exc, MeshError):  # raised by our own connection classes (identity, ALPN)
        return Failure(exc, before_send=True, transient=False)
    where = f"{method} {safe_url(url)} ({route.server_identity})"
    connect_t, read_t = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Failure(
            MeshTimeoutError(
                f"Connecting to {route.address} for {route.server_identity} timed out after {connect_t:.3g} s.",
                hint="Check that the address is reachable from this cluster (network path, security groups) "
                "and that the port is the workload's port.",
            ),
            before_send=True, transient=True,
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Failure(
            MeshTimeoutError(
                f"{where} got no response from {route.address} within {read_t:.3g} s.",
                hint="The server is slow or stalled; raise timeout=(connect, read) or deadline= for long operations.",
            ),
            before_send=False, transient=True,
        )
    if isinstance(exc, requests.exceptions.SSLError) or (
        isinstance(exc, requests.exceptions.ConnectionError) and _is_tls(exc)
    ):
        return _tls_failure(route, exc)
    if isinstance(exc, requests.exceptions.ConnectionError):
        chain = _chain(exc)
        refused = any(type(e).__name__ == "NewConnectionError" or isinstance(e, ConnectionRefusedError)
                      or getattr(e, "mesh_before_send", False) for e in chain)
        if refused:
            return Failure(
                ConnectError(
                    f"Could not connect to {route.address} for {route.server_identity}: {_reason(exc)}.",
                    hint="Check the address and port, and that the service is running and reachable.",
                ),
                before_send=True, transient=True,
            )
        return Failure(
            TransportError(
                f"{where}: the connection to {route.address} broke: {_reason(exc)}.",
                hint="The server or a network hop closed the connection; idempotent requests are retried.",
            ),
            before_send=False, transient=True,
        )
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return Failure(
            TransportError(f"{where}: the response from {route.address} was cut off: {_reason(exc)}."),
            before_send=False, transient=True,
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return Failure(TransportError(f"{where} failed: {_reason(exc)}."), before_send=False, transient=False)
    raise exc
