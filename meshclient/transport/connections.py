"""urllib3 connections that check the server's identity before any request byte is sent.

:class:`MeshHTTPSConnection` verifies the peer right after the TLS handshake and keeps what the
handshake proved (:attr:`~MeshHTTPSConnection.verified_peer`) for the life of the connection;
:class:`DirectHTTPSConnection` adds Linkerd's direct mode (ALPN check, then the transport header).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError
from urllib3.response import HTTPResponse

from ..errors import TLSHandshakeError
from ..identity import Identity
from ..redaction import redact_query
from ..tls import PeerInfo, verify_server_identity
from .header import ALPN, TransportHeader, encode_header

__all__ = ["ConnectionNotEstablished", "MeshHTTPSConnection", "MeshHTTPSConnectionPool",
           "DirectHTTPSConnection", "DirectHTTPSConnectionPool"]


class ConnectionNotEstablished(ConnectionError):
    """The TCP connection or TLS handshake broke: nothing of the request was sent, so any
    method may be retried. Raised (from the original error) by :meth:`MeshHTTPSConnection.connect`."""


class _RedactQueryValues(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included; query values may be
    secrets (API keys, signed URLs). Keep the names, drop the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5 and isinstance(args[4], str) and "?" in args[4]:
            path, _, query = args[4].partition("?")
            record.args = (*args[:4], f"{path}?{redact_query(query)}", *args[5:])
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactQueryValues) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(_RedactQueryValues())


class _StrictHTTPResponse(HTTPResponse):
    """urllib3 1.26 returns a body cut short as a success; 2.x refuses. Refuse on both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("enforce_content_length", True)
        super().__init__(*args, **kwargs)


class MeshHTTPSConnection(HTTPSConnection):
    """An HTTPS connection that checks the server identity right after the handshake."""

    def __init__(self, *args: Any, mesh_identity: Identity, **kwargs: Any) -> None:
        self.mesh_identity = mesh_identity
        #: what the handshake proved; set by :meth:`connect`, kept while the connection lives
        self.verified_peer: PeerInfo | None = None
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        try:
            super().connect()
        except TimeoutError as exc:  # TCP accepted, TLS handshake stalled: still a connect failure
            self.close()
            raise ConnectTimeoutError(
                self, f"TLS handshake with {self.host}:{self.port} timed out (connect timeout {self.timeout})"
            ) from exc
        except ConnectTimeoutError:  # includes urllib3's NewConnectionError / NameResolutionError
            raise
        except OSError as exc:  # reset during connect/handshake: nothing of the request was sent
            self.close()
            if isinstance(exc, (ConnectionNotEstablished, ssl.SSLError)):
                raise
            raise ConnectionNotEstablished(exc.errno, exc.strerror or str(exc)) from exc
        try:
            self.verified_peer = verify_server_identity(
                self.sock,  # type: ignore[arg-type]
                self.mesh_identity,
                where=f"{self.host}:{self.port}",
            )
        except BaseException:
            self.close()
            raise


class MeshHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = MeshHTTPSConnection  # type: ignore[assignment]
    ResponseCls = _StrictHTTPResponse  # type: ignore[assignment]


class DirectHTTPSConnection(MeshHTTPSConnection):
    """Linkerd direct mode: after the verified handshake, write the transport header."""

    def __init__(self, *args: Any, mesh_target_port: int, **kwargs: Any) -> None:
        self.mesh_target_port = mesh_target_port
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        try:
            negotiated = self.sock.selected_alpn_protocol()  # type: ignore[union-attr]
            if negotiated != ALPN:
                raise TLSHandshakeError(
                    f"The server at {self.host}:{self.port} did not accept ALPN '{ALPN}' (got {negotiated!r}): "
                    "it is not a Linkerd inbound proxy's direct port.",
                    hint="Use the proxy's inbound port (4143 in a cluster) for direct mode, or drop direct=.",
                )
            self.sock.sendall(encode_header(TransportHeader(port=self.mesh_target_port)))  # type: ignore[union-attr]
        except BaseException:
            self.close()
            raise


class DirectHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = DirectHTTPSConnection  # type: ignore[assignment]
    ResponseCls = _StrictHTTPResponse  # type: ignore[assignment]
