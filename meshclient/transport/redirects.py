"""Which redirects a mesh request follows: same scheme, host and port only.

Another host could be another workload with another identity, so a redirect there is handed
back to the caller (the response itself, ``allow_redirects`` or not) instead of carrying this
request's identity check, token and body somewhere else. Methods change as browsers and
``requests`` do (303 → GET; 301/302 of a non-GET → GET); a 307/308 resends the body, which must
be replayable.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import requests

from .body import Replay

__all__ = ["MAX_REDIRECTS", "REDIRECT_STATUSES", "is_redirect", "follow_redirect"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: ``requests``' own limit
MAX_REDIRECTS = 30


def is_redirect(response: requests.Response) -> bool:
    return response.status_code in REDIRECT_STATUSES and bool(response.headers.get("Location"))


def _origin(url: str) -> tuple[str, str | None, int]:
    parts = urlsplit(url)
    try:
        port = parts.port or 443
    except ValueError:
        port = -1
    return parts.scheme, parts.hostname, port


def follow_redirect(prepared: requests.PreparedRequest, response: requests.Response) -> requests.PreparedRequest | None:
    """The next request of a same-origin redirect, or ``None`` when it must not be followed."""
    location = response.headers.get("Location", "")
    current = prepared.url or ""
    target = urljoin(current, location)
    if _origin(target) != _origin(current) or _origin(target)[0] != "https":
        return None  # another host could be another workload: never reuse the identity (or token) for it
    nxt = prepared.copy()
    nxt.prepare_url(target, None)
    status = response.status_code
    if status == 303 or (status in (301, 302) and prepared.method not in ("GET", "HEAD")):
        nxt.method = "GET"
        nxt.body = None
        for name in ("Content-Length", "Content-Type", "Transfer-Encoding"):
            nxt.headers.pop(name, None)
    elif nxt.body is not None and not Replay(prepared).rewind():
        return None  # a stream cannot be replayed
    return nxt
