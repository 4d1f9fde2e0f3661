"""What happened to one request, attempt by attempt: the pipeline's explicit output.

Every attempt leaves an :class:`AttemptRecord` (endpoint, verified peer, token subject, status,
outcome); the request as a whole a :class:`RequestRecord`, which a response carries as
``response.mesh`` and which becomes the request's one audit event. No value here is secret:
URLs keep query names only, tokens appear as their subject.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..audit import AuditEvent
from ..errors import MeshError
from ..tls import PeerInfo

__all__ = ["AttemptRecord", "RequestRecord", "audit_event", "outcome_of_error", "outcome_of_status"]


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt: where it went, who answered, with which token, and how it ended."""

    number: int  #: 1 for the first attempt
    endpoint: str  #: the address dialled (``host:port``; the proxy's port in direct mode)
    verified_peer: PeerInfo | None  #: what the TLS handshake proved (``None`` if it never completed)
    token_subject: str | None  #: the bearer token's subject, never its value
    status: int | None  #: HTTP status, ``None`` when no response came
    outcome: str  #: ``ok``, ``http_error``, ``policy_denied``, ``retried``, ``timeout``, ``connect_error``...
    error: str | None = None  #: the meshclient error class name, if the attempt failed
    seconds: float = 0.0


@dataclass(frozen=True)
class RequestRecord:
    """The whole request: every attempt, what was sent and received, and the final outcome."""

    method: str
    url: str  #: query values redacted
    client_identity: str
    server_identity: str
    address: str  #: the request's own address (the URL's, or the direct proxy's)
    attempts: tuple[AttemptRecord, ...]
    outcome: str
    trace_id: str
    bytes_sent: int | None = None
    bytes_received: int | None = None
    seconds: float = 0.0
    idempotency_key: str | None = None
    error: str | None = None

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)

    @property
    def last(self) -> AttemptRecord | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def verified_peer(self) -> PeerInfo | None:
        """What the handshake of the answering connection proved (``None`` if none answered)."""
        last = self.last
        return last.verified_peer if last is not None else None

    @property
    def status(self) -> int | None:
        last = self.last
        return last.status if last is not None else None


def outcome_of_error(error: MeshError) -> str:
    """The audit outcome for a request that failed with ``error``."""
    return {
        "ServerIdentityError": "server_identity_mismatch",
        "TLSHandshakeError": "tls_error",
        "ConnectError": "connect_error",
        "NameResolutionError": "connect_error",
        "MeshTimeoutError": "timeout",
        "DeadlineExceededError": "deadline_exceeded",
        "EgressDeniedError": "egress_denied",
        "NoEndpointAvailableError": "no_endpoint",
    }.get(type(error).__name__, "transport_error")


def outcome_of_status(status: int, proxy_error: str | None) -> str:
    """The audit outcome for a request answered with ``status``."""
    if status == 403 and proxy_error:
        return "policy_denied"
    return "http_error" if status >= 400 else "ok"


def audit_event(record: RequestRecord) -> AuditEvent:
    """The request's audit event, naming both identities (the server's as verified)."""
    peer = record.verified_peer
    return AuditEvent(
        time=AuditEvent.now(),
        client_identity=record.client_identity,
        server_identity=record.server_identity,
        verified_server_identity=str(peer.identity) if peer is not None else None,
        token_subject=record.last.token_subject if record.last is not None else None,
        method=record.method,
        url=record.url,
        status=record.status,
        bytes_sent=record.bytes_sent,
        bytes_received=record.bytes_received,
        duration_ms=round(record.seconds * 1000, 3),
        attempts=record.attempt_count,
        idempotency_key=record.idempotency_key,
        trace_id=record.trace_id,
        outcome=record.outcome,
        error=record.error,
        endpoint=record.last.endpoint if record.last is not None else record.address,
    )
