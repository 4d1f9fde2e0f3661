"""MLflow's REST calls over the mesh: a ``requests`` adapter mounted for the mesh origins only.

MLflow's tracking and registry clients (every version from 2.11 to 3.x) send every REST call
through ``mlflow.utils.rest_utils.http_request`` → ``request_utils._get_http_response_with_retries``
→ a ``requests.Session`` from ``request_utils._get_request_session`` → ``session.request``.
MLflow offers no hook to choose the transport (its auth and header plugins cannot set the TLS
identity), and its sessions are private and cached. So this module wraps that one session
factory — the only monkeypatch meshclient does, kept this narrow on purpose: the wrapper
returns MLflow's own session and mounts :class:`MeshAdapter` on it **only for the origins of
``mesh+https`` URIs the user configured** (``https://HOST:PORT/``). Every other URL keeps
MLflow's own adapter, so other tracking servers are untouched. On a mesh origin the request
goes through :meth:`MeshClient.request` with the URI's identity: mTLS, identity checked before
any byte, the client's retries and audit. A call that somehow bypassed the adapter would meet a
Linkerd proxy with the public CA store and fail its handshake — never succeed in plain HTTPS.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import BaseAdapter

from ..identity import Identity
from .client import current_client

__all__ = ["MeshAdapter", "register_origin", "registered"]

_lock = threading.Lock()
_origins: dict[str, Identity] = {}
_sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()


class MeshAdapter(BaseAdapter):
    """Sends a prepared ``requests`` request with the current mesh client, to ``identity``."""

    def __init__(self, identity: Identity) -> None:
        super().__init__()
        self.identity = identity

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Mapping[str, str] | None = None) -> requests.Response:
        # verify=/cert=/proxies= are MLflow's plain-HTTPS settings: the mesh trusts its anchors only.
        client = current_client()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        return client.request(request.method or "GET", request.url or "", server_identity=self.identity,
                              data=request.body, headers=headers, stream=stream, timeout=_timeout(timeout),
                              allow_redirects=False)

    def close(self) -> None:
        """Nothing to close: the mesh client owns the connections."""


def _timeout(value: Any) -> float | tuple[float, float] | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, (int, float)) and v for v in value):
        return float(value[0]), float(value[1])
    return None


def _mount(session: requests.Session) -> None:
    for prefix, identity in _origins.items():
        current = session.adapters.get(prefix)
        if not (isinstance(current, MeshAdapter) and current.identity == identity):
            session.mount(prefix, MeshAdapter(identity))
    _sessions.add(session)


def _wrap_session_factory() -> None:
    from mlflow.utils import request_utils

    original = request_utils._get_request_session
    if getattr(original, "_meshclient", False):
        return

    def _get_request_session(*args: Any, **kwargs: Any) -> requests.Session:
        session = original(*args, **kwargs)
        with _lock:
            _mount(session)
        return session  # type: ignore[no-any-return]

    _get_request_session._meshclient = True  # type: ignore[attr-defined]
    _get_request_session.__wrapped__ = original  # type: ignore[attr-defined]
    _get_request_session.__doc__ = original.__doc__
    request_utils._get_request_session = _get_request_session


def register_origin(origin: str, identity: Identity) -> None:
    """Route MLflow's calls to ``origin`` (``https://HOST:PORT``) through the mesh, to ``identity``."""
    prefix = origin.rstrip("/") + "/"
    with _lock:
        _origins[prefix] = identity
        for session in list(_sessions):
            _mount(session)
    _wrap_session_factory()


def registered() -> dict[str, Identity]:
    with _lock:
        return dict(_origins)
