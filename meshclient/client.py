"""``MeshClient``: every request meshclient makes goes through :meth:`MeshClient.request`."""

from __future__ import annotations


import ssl
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from .credentials import Credentials
from .errors import (
    ConfigurationError,
    ConnectError,
    HTTPStatusError,
    MeshError,
    MeshTimeoutError,
    PolicyDeniedError,
    TLSHandshakeError,
    TransportError,
)
from .identity import Identity
from .tls import build_client_context, sni_for
from .transport.adapter import MeshAdapter, Route, TLSState

__all__ = ["MeshClient", "MeshService", "DEFAULT_TIMEOUT", "raise_for_status"]

#: (connect, read) seconds. Linkerd's default route timeout is 10 s; uploads need longer reads.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 10


def _user_agent() -> str:
    from . import __version__

    return f"meshclient/{__version__} python-requests/{requests.__version__}"


class MeshClient:
    """A thread-safe HTTP client speaking mutual TLS with verified identities on both ends.

    Args:
        credentials: the workload's :class:`~meshclient.Credentials` (``None``: from the
            ``MESHCLIENT_*`` environment variables).
        timeout: default ``(connect, read)`` timeout in seconds, or one number for both.
        allow_tls12: accept TLS 1.2 servers (Linkerd speaks TLS 1.3 only; opt in for other peers).
        pool_maxsize: keep-alive connections kept per (address, identity).

    Every request names the ``server_identity`` it expects; the connection is refused, before
    any request byte is sent, unless the server proves that identity with a certificate that
    chains to the mesh trust anchors.
    """

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        allow_tls12: bool = False,
        pool_maxsize: int = 10,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if credentials is None:
            credentials = Credentials.from_env()
        if not isinstance(credentials, Credentials):
            raise ConfigurationError(
                f"credentials must be a meshclient.Credentials, got {type(credentials).__name__}.",
                hint="Build one with Credentials.from_files(...), from_pem(...) or from_env().",
            )
        self._credentials = credentials
        self._allow_tls12 = allow_tls12
        self._timeout = timeout
        self._lock = threading.Lock()
        self._tls: TLSState | None = None
        self._closed = False
        self._adapter = MeshAdapter(self._tls_state, pool_maxsize=pool_maxsize)
        session = requests.Session()
        session.trust_env = False  # no proxies, .netrc or CA bundles from the environment
        session.headers["User-Agent"] = _user_agent()
        if headers:
            session.headers.update(headers)
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        self._session = session

    # -- state ----------------------------------------------------------------------------
    @property
    def credentials(self) -> Credentials:
        return self._credentials

    @property
    def identity(self) -> Identity:
        """This client's own identity (what servers see as ``l5d-client-id``)."""
        return self._credentials.identity

    def _tls_state(self) -> TLSState:
        state = self._tls
        creds = self._credentials
        if state is not None and state.generation == creds.generation:
            return state
        with self._lock:
            if self._tls is None or self._tls.generation != creds.generation:
                self._tls = TLSState(creds.generation, build_client_context(creds, allow_tls12=self._allow_tls12))
            return self._tls

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The current generation's TLS context (read-only use: inspection, tests)."""
        ctx: ssl.SSLContext = self._tls_state().context
        return ctx

    # -- requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        server_identity: str | Identity,
        server_name: str | None = None,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Any = None,
        timeout: float | tuple[float, float] | None = None,
        stream: bool = False,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """Send one request to ``url``, which must be served by ``server_identity``.

        ``url`` may use any address (pod IP, service DNS name, localhost); the identity is
        what is verified. For a SPIFFE ``server_identity`` the SNI is ``server_name`` or the
        URL host. Redirects are followed only within the same scheme, host and port, where the
        verified identity stays the same; other redirects are returned as they are.
        Returns a ``requests.Response``; errors are :class:`~meshclient.MeshError`.
        """
        if self._closed:
            raise ConfigurationError("This MeshClient is closed.", hint="Create a new MeshClient.")
        identity = Identity.parse(server_identity)
        route = self._route(url, identity, server_name)
        req = requests.Request(method.upper(), url, params=params, data=data, json=json,
                               headers=dict(headers) if headers else None, files=files)
        prepared = self._session.prepare_request(req)
        prepared.mesh_route = route  # type: ignore[attr-defined]
        effective_timeout = self._timeout if timeout is None else timeout
        response = self._send(prepared, effective_timeout, stream)
        redirects = 0
        while allow_redirects and response.status_code in _REDIRECTS and redirects < _MAX_REDIRECTS:
            nxt = self._same_origin_redirect(prepared, response, route)
            if nxt is None:
                break
            response.close()
            prepared = nxt
            response = self._send(prepared, effective_timeout, stream)
            redirects += 1
        return response

    def _route(self, url: str, identity: Identity, server_name: str | None) -> Route:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"The URL {url!r} is not valid: {exc}.") from None
        if parts.scheme != "https":
            raise ConfigurationError(
                f"The URL {url!r} is not https: meshclient only speaks mutual TLS.",
                hint="Use https:// with the workload's address and port (the Linkerd proxy terminates mTLS there).",
            )
        if not parts.hostname:
            raise ConfigurationError(f"The URL {url!r} has no host.")
        host = parts.hostname
        return Route(host=host, port=port or 443, server_identity=identity, sni=sni_for(identity, host, server_name))

    def _same_origin_redirect(
        self, prepared: requests.PreparedRequest, response: requests.Response, route: Route
    ) -> requests.PreparedRequest | None:
        location = response.headers.get("Location")
        if not location:
            return None
        target = urljoin(prepared.url or "", location)
        parts = urlsplit(target)
        if parts.scheme != "https" or parts.hostname != route.host or (parts.port or 443) != route.port:
            return None  # another host could be another workload: never reuse the identity for it
        nxt = prepared.copy()
        nxt.prepare_url(target, None)
        status = response.status_code
        if status == 303 or (status in (301, 302) and prepared.method not in ("GET", "HEAD")):
            nxt.method = "GET"
            nxt.body = None
            for name in ("Content-Length", "Content-Type", "Transfer-Encoding"):
                nxt.headers.pop(name, None)
        elif nxt.body is not None and not isinstance(nxt.body, (bytes, str)):
            seek = getattr(nxt.body, "seek", None)
            pos = getattr(prepared, "_body_position", None)
            if seek is None or not isinstance(pos, int):
                return None  # a stream cannot be replayed
            seek(pos)
        nxt.mesh_route = route  # type: ignore[attr-defined]
        return nxt

    def _send(self, prepared: requests.PreparedRequest, timeout: Any, stream: bool) -> requests.Response:
        route: Route = prepared.mesh_route  # type: ignore[attr-defined]
        try:
            return self._session.send(prepared, timeout=timeout, stream=stream, allow_redirects=False)
        except MeshError:
            raise
        except requests.exceptions.ConnectTimeout:
            raise MeshTimeoutError(
                f"Connecting to {route.address} ({route.server_identity}) timed out after {_connect_part(timeout)} s.",
                hint="Check that the address is reachable from this cluster (network path, security groups) "
                "and that the port is the workload's port.",
            ) from None
        except requests.exceptions.ReadTimeout:
            raise MeshTimeoutError(
                f"{prepared.method} {_safe_url(prepared.url)} ({route.server_identity}) got no response within "
                f"{_read_part(timeout)} s.",
                hint="The server is slow or stalled; raise timeout=(connect, read) if the operation is long.",
            ) from None
        except requests.exceptions.SSLError as exc:
            raise _tls_error(route, exc) from None
        except requests.exceptions.ConnectionError as exc:
            if _looks_like_tls(exc):
                raise _tls_error(route, exc) from None
            raise ConnectError(
                f"Could not connect to {route.address} for {route.server_identity}: {_reason(exc)}.",
                hint="Check the address and port, and that the service is running and reachable.",
            ) from None
        except requests.exceptions.RequestException as exc:
            raise TransportError(
                f"{prepared.method} {_safe_url(prepared.url)} ({route.server_identity}) failed: {_reason(exc)}."
            ) from None

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("HEAD", url, **kwargs)

    def service(self, base_url: str, server_identity: str | Identity, *, server_name: str | None = None) -> MeshService:
        """A base URL bound to the identity that must serve it."""
        return MeshService(self, base_url, Identity.parse(server_identity), server_name=server_name)

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._session.close()

    def __enter__(self) -> MeshClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MeshClient(identity='{self.identity}', credentials={self._credentials!r})"


class MeshService:
    """A base URL bound to a server identity: ``svc.post("/invocations", json=...)``."""

    def __init__(self, client: MeshClient, base_url: str, server_identity: Identity,
                 *, server_name: str | None = None) -> None:
        client._route(base_url, server_identity, server_name)  # validate early
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.server_identity = server_identity
        self.server_name = server_name

    def url(self, path: str) -> str:
        if "://" in path:
            raise ConfigurationError(f"MeshService paths are relative; got the URL {path!r}.",
                                     hint="Use client.request(...) for another address.")
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        return self.client.request(method, self.url(path), server_identity=self.server_identity,
                                   server_name=self.server_name, **kwargs)

    def get(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def head(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("HEAD", path, **kwargs)

    def __repr__(self) -> str:
        return f"MeshService({self.base_url!r}, server_identity='{self.server_identity}')"


def raise_for_status(response: requests.Response) -> requests.Response:
    """Raise :class:`HTTPStatusError` (or :class:`PolicyDeniedError`) for 4xx/5xx; return the response."""
    status = response.status_code
    if status < 400:
        return response
    url = _safe_url(response.request.url if response.request else response.url)
    proxy_error = response.headers.get("l5d-proxy-error")
    if status == 403 and proxy_error:
        raise PolicyDeniedError(
            f"The mesh proxy at {url} refused this identity by policy: {proxy_error}.",
            status=status, url=url,
            hint="Ask the service owner to authorize this client's identity (MeshTLSAuthentication / AuthorizationPolicy).",
        )
    if proxy_error:
        raise HTTPStatusError(f"The mesh proxy answered {status} for {url}: {proxy_error}.", status=status, url=url)
    raise HTTPStatusError(f"{url} answered {status} {response.reason or ''}".rstrip() + ".", status=status, url=url)


# -- helpers ---------------------------------------------------------------------------------
def _safe_url(url: str | None) -> str:
    """The URL without query values (they may carry secrets)."""
    if not url:
        return "(no url)"
    parts = urlsplit(url)
    query = "&".join(f"{kv.split('=', 1)[0]}=..." for kv in parts.query.split("&") if kv) if parts.query else ""
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _connect_part(timeout: Any) -> Any:
    return timeout[0] if isinstance(timeout, tuple) else timeout


def _read_part(timeout: Any) -> Any:
    return timeout[1] if isinstance(timeout, tuple) else timeout


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


def _looks_like_tls(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLError) for e in _chain(exc)) or "alert" in str(exc).lower()


def _reason(exc: BaseException) -> str:
    chain = _chain(exc)
    innermost = chain[-1] if chain else exc
    for e in chain:
        if isinstance(e, (ssl.SSLError, OSError)) and not isinstance(e, requests.exceptions.RequestException):
            innermost = e
    text = str(innermost) or type(innermost).__name__
    return text.replace("\n", " ")[:300]


def _tls_error(route: Route, exc: BaseException) -> TLSHandshakeError:
    reason = _reason(exc)
    low = reason.lower()
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        hint = ("The server's certificate does not chain to this client's mesh trust anchors: it is not in this "
                "mesh, or the anchors are from another cluster or out of date.")
    elif "certificate required" in low or "alert_certificate_required" in low or "unknown ca" in low \
            or "bad certificate" in low or "certificate unknown" in low:
        hint = ("The server refused this client's certificate: check that the server trusts the same anchors "
                "and that the client certificate is current.")
    elif "unrecognized name" in low or "handshake failure" in low:
        hint = (f"The server did not accept SNI '{route.sni}': a Linkerd proxy only terminates TLS for its own "
                "identity. Check server_identity.")
    elif "protocol version" in low or "wrong version" in low or "unsupported protocol" in low:
        hint = "The server does not speak TLS 1.3 (Linkerd does); pass allow_tls12=True only for non-Linkerd peers."
    else:
        hint = "Check that the address is the workload's mTLS port and that both sides share the trust anchors."
    return TLSHandshakeError(
        f"TLS handshake with {route.address} (expecting '{route.server_identity}', SNI '{route.sni}') failed: {reason}.",
        hint=hint,
    )
