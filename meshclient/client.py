"""``MeshClient``: every request meshclient makes goes through :meth:`MeshClient.request`.

A thin façade. ``MeshClient(...)`` turns its arguments into a
:class:`~meshclient.config.ClientConfig` (the one list of settings) and builds the transport
from it; :meth:`MeshClient.request` checks the call's arguments, builds the request and its
:class:`~meshclient.transport.route.Target`, and hands them to
:meth:`~meshclient.transport.pipeline.Pipeline.send`, which does the rest (policy, attempts,
retries, redirects, record, audit). See ``docs/architecture.md`` for the path hop by hop.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from .audit import AuditSink, as_audit_sink
from .config import DEFAULT_TIMEOUT, ClientConfig, check_deadline, check_flag, check_timeout
from .credentials import Credentials
from .credentials.sources import IdentitySource
from .errors import ConfigurationError
from .identity import Identity
from .policy import EgressPolicy
from .service import MeshService
from .tokens import TokenProvider
from .transport.balancer import DnsEndpoints, StaticEndpoints
from .transport.budget import RetryBudget
from .transport.pipeline import Pipeline, RequestOptions
from .transport.pools import ConnectionPools, TLSContexts
from .transport.prepare import client_default_headers, prepare_request
from .transport.response import MeshResponse, raise_for_status
from .transport.retry import RetryPolicy
from .transport.route import DIRECT_PORT, target_for
from .transport.timing import SYSTEM_CLOCK, Clock, Deadline

__all__ = ["MeshClient", "MeshService", "DEFAULT_TIMEOUT", "DIRECT_PORT", "raise_for_status", "MeshResponse"]

Endpoints = Iterable[str] | StaticEndpoints | DnsEndpoints


class MeshClient:
    """A thread-safe HTTP client speaking mutual TLS with verified identities on both ends.

    Args:
        credentials: the workload's :class:`~meshclient.Credentials` or a rotating source
            (``None``: from the ``MESHCLIENT_*`` environment variables).
        token: a provider from :mod:`meshclient.tokens`; its bearer token is attached to every
            request (all MeshClient destinations are mesh services), refreshed once on a 401.
        policy: an :class:`~meshclient.EgressPolicy`; requests to other identities fail before
            any connection is opened.
        audit: where audit events go: a callable taking an :class:`~meshclient.AuditEvent`,
            ``True`` (the ``meshclient.audit`` logger, JSON lines), a ``logging.Logger`` or a file path.
        retries: a :class:`~meshclient.RetryPolicy` (default: Linkerd-like; ``RetryPolicy.disabled()``
            switches retries off).
        retry_budget: a :class:`~meshclient.RetryBudget` (default 20 % + 10/s over 10 s).
        timeout: ``(connect, read)`` seconds per attempt, or one number for both (default 3, 60).
        deadline: seconds for all attempts of a request together (default: none).
        allow_tls12: accept TLS 1.2 servers (Linkerd speaks TLS 1.3 only; opt in for other peers).
        pool_maxsize: keep-alive connections kept per (address, identity).
        headers: headers sent with every request.
        clock: a :class:`~meshclient.transport.timing.Clock` (tests; not part of the config).

    Every request names the ``server_identity`` it expects; the connection is refused, before
    any request byte is sent, unless the server proves that identity with a certificate that
    chains to the mesh trust anchors. Defaults and checks of every setting live in
    :class:`~meshclient.config.ClientConfig`.
    """

    def __init__(
        self,
        credentials: Credentials | IdentitySource | None = None,
        *,
        token: TokenProvider | None = None,
        policy: EgressPolicy | None = None,
        audit: AuditSink | str | logging.Logger | bool | None = None,
        retries: RetryPolicy | None = None,
        retry_budget: RetryBudget | None = None,
        timeout: float | tuple[float, float] | None = None,
        deadline: float | None = None,
        allow_tls12: bool | None = None,
        pool_maxsize: int | None = None,
        headers: Mapping[str, str] | None = None,
        clock: Clock | None = None,
    ) -> None:
        config = ClientConfig.create(
            credentials, token=token, policy=policy, audit=audit, retries=retries, retry_budget=retry_budget,
            timeout=timeout, deadline=deadline, allow_tls12=allow_tls12, pool_maxsize=pool_maxsize, headers=headers,
        )
        self._build(config, clock or SYSTEM_CLOCK)

    @classmethod
    def from_config(cls, config: ClientConfig, *, clock: Clock | None = None) -> MeshClient:
        """A new client from ``config`` (executors: :func:`meshclient.worker_cache.client_for`)."""
        if not isinstance(config, ClientConfig):
            raise ConfigurationError(f"from_config takes a ClientConfig, got {type(config).__name__}.")
        client = cls.__new__(cls)
        client._build(config, clock or SYSTEM_CLOCK)
        return client

    def _build(self, config: ClientConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._closed = False
        self._default_headers = client_default_headers(dict(config.headers))
        contexts = TLSContexts(config.credentials, allow_tls12=config.allow_tls12)
        self._pools = ConnectionPools(contexts, maxsize=config.pool_maxsize)
        self._pipeline = Pipeline(
            self._pools, retries=config.retries, budget=config.retry_budget, token=config.token,
            policy=config.policy, audit=as_audit_sink(config.audit), clock=clock,
        )

    # -- state ----------------------------------------------------------------------------
    def config(self) -> ClientConfig:
        """The settings this client was built from (picklable; see :func:`meshclient.spark.share`)."""
        return self._config

    @property
    def credentials(self) -> Credentials:
        """The current credentials snapshot (a rotating source's newest one)."""
        return self._pools.contexts.credentials()

    @property
    def source(self) -> Credentials | IdentitySource:
        """What the client was given: a fixed snapshot or a rotating source."""
        return self._config.credentials

    @property
    def identity(self) -> Identity:
        """This client's own identity (what servers see as ``l5d-client-id``)."""
        return self.credentials.identity

    @property
    def retry_budget(self) -> RetryBudget:
        return self._config.retry_budget

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The current generation's TLS context (read-only use: inspection, tests)."""
        return self._pools.contexts.current()[1]

    # -- requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        server_identity: str | Identity,
        server_name: str | None = None,
        direct: bool | str | None = None,
        endpoints: Endpoints | None = None,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Any = None,
        timeout: float | tuple[float, float] | None = None,
        deadline: float | None = None,
        stream: bool = False,
        allow_redirects: bool = True,
        retry: bool = True,
    ) -> MeshResponse:
        """Send one request to ``url``, which must be served by ``server_identity``.

        ``url`` may use any address (pod IP, service DNS name, localhost); the identity is
        what is verified. For a SPIFFE ``server_identity`` the SNI is ``server_name`` or the
        URL host. ``direct=True`` uses Linkerd's direct mode (TLS to port 4143 of the URL's
        host with ALPN ``transport.l5d.io/v1`` and a transport header naming the URL's port);
        ``direct="host:port"`` connects to that proxy address instead. ``endpoints`` spreads
        attempts over several addresses serving the identity (power of two choices over
        peak-EWMA latency; the URL's host stays the ``Host`` header).

        Retries follow the client's :class:`RetryPolicy` and budget (``retry=False``: one
        attempt); ``timeout`` bounds each attempt, ``deadline`` all of them together, body
        read included. Redirects are followed only within the same scheme, host and port,
        where the verified identity stays the same. Returns a :class:`MeshResponse` (a
        ``requests.Response`` whose ``.mesh`` records the attempts and the verified peer);
        errors are :class:`~meshclient.MeshError` subclasses.
        """
        if self._closed:
            self._raise_closed()
        identity = Identity.parse(server_identity)
        if server_name is not None and not isinstance(server_name, str):
            raise ConfigurationError(f"server_name must be a string, got {type(server_name).__name__}.",
                                     hint="Pass the SNI name the server expects, e.g. its SPIFFE workload's DNS name.")
        target = target_for(url, identity, server_name=server_name, direct=direct, endpoints=endpoints)
        options = RequestOptions(
            timeout=self._config.timeout if timeout is None else check_timeout(timeout),
            deadline=Deadline.after(self._config.deadline if deadline is None else check_deadline(deadline),
                                    self._clock),
            stream=check_flag(stream, "stream"),
            retry=check_flag(retry, "retry"),
            allow_redirects=check_flag(allow_redirects, "allow_redirects"),
        )
        prepared = prepare_request(method, url, defaults=self._default_headers, params=params, data=data,
                                   json=json, headers=headers, files=files)
        return self._pipeline.send(prepared, target, options)

    def get(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("HEAD", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> MeshResponse:
        return self.request("OPTIONS", url, **kwargs)

    def service(
        self,
        base_url: str,
        server_identity: str | Identity,
        *,
        server_name: str | None = None,
        endpoints: Endpoints | None = None,
        direct: bool | str | None = None,
    ) -> MeshService:
        """A base URL bound to the identity that must serve it (see :class:`MeshService`)."""
        return MeshService(self, base_url, Identity.parse(server_identity), server_name=server_name,
                           endpoints=endpoints, direct=direct)

    def pool_count(self) -> int:
        """Connection pools currently kept (one per address, identity and credentials generation)."""
        return self._pools.pool_count()

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the pools (and an audit file the client opened from a path); idempotent."""
        self._closed = True
        self._pools.close()
        audit = self._pipeline.audit
        if audit is not None and audit is not self._config.audit:  # built here from a path or logger
            close = getattr(audit, "close", None)
            if callable(close):
                close()

    def _raise_closed(self) -> NoReturn:
        raise ConfigurationError("This MeshClient is closed.", hint="Create a new MeshClient.")

    def __enter__(self) -> MeshClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> NoReturn:
        raise ConfigurationError(
            "A MeshClient cannot be pickled: it holds TLS contexts, pooled sockets and locks, and pickling "
            "its settings would put the private key in clear wherever the pickle goes (a Spark plan, a file).",
            hint="For Spark executors use handle = meshclient.spark.share(client) on the driver and "
            "handle.client() inside tasks.",
        )

    def __repr__(self) -> str:
        return f"MeshClient(credentials={self._config.credentials!r}{', closed' if self._closed else ''})"
