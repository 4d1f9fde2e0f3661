"""The response users get: a ``requests.Response`` that also says what the mesh proved.

:class:`MeshResponse` is a ``requests.Response`` (``.json()``, ``.iter_content()``,
``.raise_for_status()`` behave as usual) with one declared field more, :attr:`MeshResponse.mesh`:
the request's :class:`~meshclient.transport.record.RequestRecord` (attempts, verified peer,
token subject, outcome).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import requests
from requests.cookies import extract_cookies_to_jar
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.response import HTTPResponse

from ..errors import HTTPStatusError, PolicyDeniedError
from ..redaction import redact_url
from .record import RequestRecord
from .watchdog import BodyWatchdog

__all__ = ["MeshResponse", "build_response", "raise_for_status"]


class MeshResponse(requests.Response):
    """A ``requests.Response`` plus :attr:`mesh`, the record of how it was obtained."""

    __attrs__ = [*requests.Response.__attrs__, "mesh"]

    #: attempts, verified server identity, token subject and outcome of this request
    mesh: RequestRecord | None = None
    #: bounds a streamed body's read by the request's deadline (``stream=True``)
    _watchdog: BodyWatchdog | None = None
    #: turns an error while reading a streamed body into a meshclient error
    _read_error: Callable[[BaseException], Exception] | None = None

    def watch_body(self, watchdog: BodyWatchdog | None, read_error: Callable[[BaseException], Exception]) -> None:
        """From now on (``stream=True``), reading the body is bounded by ``watchdog`` and its
        errors are meshclient errors."""
        self._watchdog = watchdog
        self._read_error = read_error

    def iter_content(self, chunk_size: int | None = 1, decode_unicode: bool = False) -> Iterator[Any]:
        chunks = super().iter_content(chunk_size, decode_unicode)
        if self._read_error is None:
            return chunks
        return self._translated(chunks)

    def _translated(self, chunks: Iterator[Any]) -> Iterator[Any]:
        while True:
            error: Exception | None = None
            try:
                chunk = next(chunks)
            except StopIteration:
                self._disarm()
                return
            except Exception as exc:
                error = exc
            if error is not None:
                self._disarm()
                assert self._read_error is not None
                translated = self._read_error(error)
                del error
                raise translated  # outside the except block: no chained context to leak
            yield chunk

    def _disarm(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

    def close(self) -> None:
        self._disarm()
        super().close()

    @property
    def verified_identity(self) -> str | None:
        """The server identity the TLS handshake proved, as a string."""
        peer = self.mesh.verified_peer if self.mesh is not None else None
        return str(peer.identity) if peer is not None else None


def build_response(prepared: requests.PreparedRequest, raw: HTTPResponse, elapsed: float) -> MeshResponse:
    """A :class:`MeshResponse` over urllib3's response, its body not read yet (as ``requests`` does)."""
    response = MeshResponse()
    response.status_code = raw.status
    response.headers = CaseInsensitiveDict(raw.headers)
    response.encoding = get_encoding_from_headers(response.headers)
    response.raw = raw
    response.reason = raw.reason  # type: ignore[assignment]
    response.url = prepared.url or ""
    extract_cookies_to_jar(response.cookies, prepared, raw)  # type: ignore[no-untyped-call]
    response.request = prepared
    response.elapsed = datetime.timedelta(seconds=elapsed)
    return response


def raise_for_status(response: requests.Response) -> requests.Response:
    """Raise :class:`HTTPStatusError` (or :class:`PolicyDeniedError`) for 4xx/5xx; return the response."""
    status = response.status_code
    if status < 400:
        return response
    url = redact_url(response.request.url if response.request else response.url)
    proxy_error = response.headers.get("l5d-proxy-error")
    if status == 403 and proxy_error:
        record: Any = getattr(response, "mesh", None)
        who = record.client_identity if isinstance(record, RequestRecord) else None
        raise PolicyDeniedError(
            f"The mesh proxy at {url} refused {f'identity {who!r}' if who else 'this identity'} by policy: "
            f"{proxy_error}.",
            status=status, url=url,
            hint="Ask the service owner to authorize this client's identity (MeshTLSAuthentication / AuthorizationPolicy).",
        )
    if proxy_error:
        raise HTTPStatusError(f"The mesh proxy answered {status} for {url}: {proxy_error}.", status=status, url=url)
    raise HTTPStatusError(f"{url} answered {status} {response.reason or ''}".rstrip() + ".", status=status, url=url)
