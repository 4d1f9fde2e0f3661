"""Build the request to send: method, URL, body and headers checked before anything is dialled.

``requests`` prepares the body (``json=``, ``data=``, ``files=``, ``params=``), but its
errors quote the offending value (a token with a stray newline, a URL with its query); here
every such failure is a :class:`~meshclient.ConfigurationError` naming the argument only.
The ``Host`` header is the URL's authority, also in direct mode and behind a balancer (where
the connection goes to another address): the application sees the host it was addressed by.
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterator, Mapping
from typing import Any

import requests
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import default_headers

from .._version import user_agent
from ..audit import TraceContext
from ..errors import ConfigurationError
from ..redaction import redact_url
from .address import split_url
from .multipart import MultipartBody

__all__ = ["prepare_request", "client_default_headers", "check_headers"]

_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\x00")


def client_default_headers(extra: Mapping[str, str] | None = None) -> CaseInsensitiveDict[str]:
    """``requests``' defaults (Accept, Accept-Encoding, Connection) with meshclient's User-Agent."""
    headers = default_headers()
    headers["User-Agent"] = user_agent()
    if extra:
        headers.update(check_headers(extra, "headers"))
    return headers


def check_headers(headers: object, what: str) -> dict[str, str]:
    """Header names and values as strings without line breaks; the value is never quoted."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ConfigurationError(
            f"{what}= must be a mapping of header names to values, got {type(headers).__name__}.",
            hint='Write e.g. headers={"Idempotency-Key": "batch-7"}.',
        )
    out: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or any(c in name for c in (*_FORBIDDEN_IN_HEADERS, ":", " ")):
            raise ConfigurationError(f"{what}= has an invalid header name {str(name)[:40]!r}.",
                                     hint="Header names are tokens such as 'Content-Type'.")
        if value is None:
            out[name] = value  # type: ignore[assignment]  # requests: None removes a default header
            continue
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if not isinstance(value, str):
            raise ConfigurationError(
                f"{what}= header {name!r} has a {type(value).__name__} value; header values are strings.",
                hint=f"Write str(value) for {name!r}.",
            )
        if any(c in value for c in _FORBIDDEN_IN_HEADERS) or value != value.strip(" \t"):
            raise ConfigurationError(
                f"{what}= header {name!r} has a value with a line break, NUL or leading/trailing whitespace "
                "(value not shown: it may be a secret).",
                hint="Strip the value, e.g. a token read from a file usually ends in a newline.",
            )
        out[name] = value
    return out


def _check_json(value: Any) -> None:
    if value is None:
        return
    try:
        _json.dumps(value, allow_nan=False)
    except ValueError:
        raise ConfigurationError(
            "json= contains NaN or Infinity, which JSON cannot carry.",
            hint="Replace them (e.g. with None) before sending; pandas: df.replace({np.nan: None}).",
        ) from None
    except TypeError as exc:
        raise ConfigurationError(f"json= is not JSON-serialisable: {str(exc)[:120]}.",
                                 hint="Pass dicts, lists, strings, numbers, booleans and None only.") from None


def _checked_chunks(chunks: Iterator[Any]) -> Iterator[bytes]:
    """A streamed ``data=`` body whose chunks are checked as they are sent (bytes, or str as UTF-8)."""
    for chunk in chunks:
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise ConfigurationError(
                f"data= yielded a {type(chunk).__name__}; a streamed body yields bytes (or str).",
                hint="Yield bytes, e.g. line.encode() for text.",
            )
        yield bytes(chunk)


def prepare_request(method: object, url: str, *, defaults: CaseInsensitiveDict[str], params: Any = None,
                    data: Any = None, json: Any = None, headers: object = None,
                    files: Any = None) -> requests.PreparedRequest:
    """A ``PreparedRequest`` for one mesh request; never raises anything but ``ConfigurationError``.

    A W3C ``traceparent`` is added unless the caller sent one (then it is kept as it is).
    """
    if not isinstance(method, str) or not method.isascii() or not method.isalpha():
        raise ConfigurationError(f"The method must be a word such as 'GET', got {str(method)[:20]!r}.",
                                 hint="Pass GET, POST, PUT, DELETE, HEAD, PATCH or OPTIONS.")
    parts, _host, _port = split_url(url)
    own = check_headers(headers, "headers")
    _check_json(json)
    if files is not None:
        body = MultipartBody(data, files)  # streamed: constant memory whatever the file sizes
        own.setdefault("Content-Type", body.content_type)
        data, files = (body if body.known_length() is not None else iter(body)), None
    elif isinstance(data, Iterator) and not hasattr(data, "read"):
        data = _checked_chunks(data)
    merged = merge_setting(own, defaults, dict_class=CaseInsensitiveDict)
    try:
        prepared = requests.Request(method.upper(), url, params=params, data=data, json=json,
                                    headers=merged, files=files).prepare()
    except (requests.RequestException, ValueError, TypeError, UnicodeError) as exc:
        raise ConfigurationError(
            f"The request to {redact_url(url)} could not be built: {type(exc).__name__} in params=, data= or files=.",
            hint="Check the argument types: params a mapping, data bytes/str/a file/a mapping, files a mapping.",
        ) from None
    if "Host" not in prepared.headers:
        prepared.headers["Host"] = parts.netloc.rpartition("@")[2]
    if "traceparent" not in prepared.headers:
        prepared.headers["traceparent"] = TraceContext.from_headers(None).header
    return prepared
