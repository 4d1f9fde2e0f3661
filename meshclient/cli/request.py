"""``meshclient request``: one HTTP request over mutual TLS, like ``curl`` for meshed services.

The body is streamed both ways: ``--data @FILE`` is sent from the open file (never read into
memory) and the response goes to stdout in chunks, bytes untouched, so multi-GB transfers
and binary payloads work in a pipe.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import stat
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import requests

from ..client import DEFAULT_TIMEOUT, MeshClient, raise_for_status
from ..credentials import Credentials
from ..errors import ConfigurationError, HTTPStatusError, PolicyDeniedError, TransportError
from ..identity import Identity
from ..tokens import TokenProvider, discover_token_endpoint
from .common import (
    EXIT_HTTP,
    EXIT_OK,
    MATERIAL_HELP,
    HelpFormatter,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    client_credentials,
    load_credentials,
    oidc_settings,
    outbound_settings,
    positive_seconds,
    simple_token_provider,
    token_source,
)

__all__ = ["register", "run", "token_provider", "CHUNK_SIZE"]

CHUNK_SIZE = 64 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token: methods and header names
_VERSIONS = {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}

_HELP = "send one HTTP request over mutual TLS to a meshed service; the body goes to stdout"
_DESCRIPTION = """\
Send one HTTP request to URL, which must be served by --server-identity: the connection is
refused before any request byte is sent unless the server proves that identity with a
certificate from the mesh trust anchors. The response body is written to stdout unchanged
(binary-safe, streamed); -i prints the status line and headers first, like curl -i."""
_EPILOG = f"""\
examples:
  meshclient request GET https://10.0.3.7:8080/health \\
      --server-identity echo.ml-platform.serviceaccount.identity.linkerd.cluster.local
  meshclient request -i POST https://fraud-model.ml-serving.svc.cluster.local:8080/invocations \\
      --server-identity fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local \\
      -H 'Content-Type: application/json' --data @input.json
  gzip -c big.csv | meshclient request PUT URL --server-identity ID --data @-

exit status:
  0   the server answered 2xx
  22  the server answered, but not with 2xx (like curl -f); the body is still printed and
      stderr says why. 403 with an l5d-proxy-error header: the mesh policy denied this identity.
  1   no answer: bad material, connection or TLS failure, or the server is not --server-identity
      (then no request was sent)
  2   a bad command line

{MATERIAL_HELP}"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("request", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("-i", "--include", action="store_true",
                   help="print the status line and response headers before the body (like curl -i)")
    p.add_argument("method", metavar="METHOD", help="HTTP method: GET, POST, PUT, DELETE, HEAD, ...")
    p.add_argument("url", metavar="URL", help="https:// URL: a pod IP, service name or localhost, with the port")
    p.add_argument("--server-identity", metavar="ID", required=True,
                   help="the mesh identity that must serve URL: "
                   "<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local or a spiffe:// ID")
    p.add_argument("-H", "--header", metavar="'NAME: VALUE'", action="append", default=[],
                   help="add a request header; repeat for more")
    p.add_argument("-d", "--data", metavar="DATA",
                   help="request body: @FILE streams a file, @- streams stdin, anything else is sent as text")
    p.add_argument("--server-name", metavar="NAME",
                   help="TLS server name (SNI) to send instead of the identity; needed for spiffe:// identities")
    p.add_argument("--timeout", metavar="SECONDS", type=positive_seconds,
                   help=f"seconds to wait for the connection and then between response bytes "
                   f"(default {DEFAULT_TIMEOUT[0]:g} to connect, {DEFAULT_TIMEOUT[1]:g} between reads)")
    p.add_argument("-L", "--location", action="store_true",
                   help="follow redirects that stay on the same host and port (same verified identity)")
    p.add_argument("--direct", metavar="HOST:PORT", nargs="?", const="",
                   help="Linkerd direct mode: TLS with ALPN transport.l5d.io/v1 to the proxy's inbound port "
                   "(default: port 4143 of the URL's host), then a transport header naming the URL's port")
    add_token_options(p)
    add_material_options(p)
    add_debug_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=run)


class _Sink(Protocol):
    def write(self, data: bytes, /) -> Any: ...

    def flush(self) -> Any: ...


class _TextSink:
    """For a ``sys.stdout`` without a binary buffer (e.g. ``contextlib.redirect_stdout``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: bytes, /) -> int:
        self._stream.write(data.decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        self._stream.flush()


def _stdout() -> _Sink:
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    return buffer if buffer is not None else _TextSink(sys.stdout)


def _parse_headers(raw: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for item in raw:
        name, sep, value = item.partition(":")
        name = name.strip()
        if not sep or not _TOKEN.match(name):
            raise UsageError(f"-H {item!r} is not 'NAME: VALUE' (e.g. -H 'Content-Type: application/json').")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def _chunks(stream: Any) -> Iterator[bytes]:
    while True:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            return
        yield chunk


def _stdin_body() -> Any:
    """A regular file on stdin is sent with its length; a pipe is streamed chunked."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        return sys.stdin.read().encode("utf-8")
    try:
        if stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return stream
    except (OSError, ValueError, io.UnsupportedOperation):
        pass
    return _chunks(stream)


def _body(spec: str | None, stack: contextlib.ExitStack) -> Any:
    if spec is None:
        return None
    if spec == "@-":
        return _stdin_body()
    if spec.startswith("@"):
        path = spec[1:]
        try:
            fh = open(path, "rb")  # closed by the ExitStack after the request
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot read the --data file {path}: {exc.strerror or exc}.",
                hint="Check the path; --data @- reads stdin and --data TEXT sends TEXT itself.",
            ) from None
        stack.enter_context(fh)
        return fh
    return spec.encode("utf-8")


def _head(resp: requests.Response) -> bytes:
    """Status line and headers as received (duplicates kept), CRLF-terminated like curl -i."""
    version = _VERSIONS.get(getattr(resp.raw, "version", 11), "HTTP/1.1")
    lines = [f"{version} {resp.status_code} {resp.reason or ''}".rstrip()]
    raw_headers: Any = getattr(resp.raw, "headers", None)
    items = raw_headers.iteritems() if hasattr(raw_headers, "iteritems") else resp.headers.items()
    lines.extend(f"{name}: {value}" for name, value in items)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


def _explain_status(resp: requests.Response, creds: Credentials) -> None:
    """Say on stderr why the exit status is not 0 (stdout holds only the response)."""
    try:
        raise_for_status(resp)
    except PolicyDeniedError as err:
        print(f"meshclient: error: the mesh policy at {err.url} denied this client's identity '{creds.identity}' "
              f"(403, l5d-proxy-error: {resp.headers.get('l5d-proxy-error')}).", file=sys.stderr)
        if err.hint:
            print(f"  fix: {err.hint}", file=sys.stderr)
        return
    except HTTPStatusError as err:
        print(f"meshclient: error: {err.message}", file=sys.stderr)
        if err.hint:
            print(f"  fix: {err.hint}", file=sys.stderr)
        return
    location = resp.headers.get("Location")
    where = f" to {location}" if location else ""
    print(f"meshclient: error: {resp.url} answered {resp.status_code} {resp.reason or ''}".rstrip() + f"{where}.",
          file=sys.stderr)
    if 300 <= resp.status_code < 400:
        print("  fix: add -L to follow redirects on the same host and port, or request the new URL "
              "with its own --server-identity.", file=sys.stderr)


def token_provider(args: argparse.Namespace, environ: Mapping[str, str] | None,
                    timeout: float | None) -> TokenProvider | None:
    """The bearer-token source named on the command line (secrets only from the environment)."""
    kind = token_source(args)
    if kind is None:
        return None
    if kind != "oidc":
        return simple_token_provider(args, kind, timeout)
    settings = oidc_settings(args, os.environ if environ is None else environ)
    token_url = settings.token_url or discover_token_endpoint(settings.issuer or "",
                                                              outbound=outbound_settings(timeout))
    return client_credentials(settings, token_url, timeout)


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """One request; the body streams to stdout; 0 for 2xx, 22 for other answers (errors raise MeshError)."""
    method = args.method.strip()
    if not _TOKEN.match(method):
        raise UsageError(f"{args.method!r} is not an HTTP method (e.g. GET, POST, PUT).")
    headers = _parse_headers(args.header)
    identity = Identity.parse(args.server_identity)
    creds = load_credentials(args, environ, timeout=args.timeout)
    timeout = DEFAULT_TIMEOUT if args.timeout is None else (args.timeout, args.timeout)
    with contextlib.ExitStack() as stack:
        body = _body(args.data, stack)
        token = token_provider(args, environ, args.timeout)
        client = stack.enter_context(MeshClient(creds, timeout=timeout, token=token))
        direct: bool | str | None = None if args.direct is None else (args.direct or True)
        resp = client.request(method, args.url, server_identity=identity, server_name=args.server_name,
                              data=body, headers=headers, stream=True, allow_redirects=args.location,
                              direct=direct)
        stack.callback(resp.close)
        out = _stdout()
        if args.include:
            out.write(_head(resp))
        received = 0
        try:
            for chunk in resp.iter_content(CHUNK_SIZE):
                out.write(chunk)
                received += len(chunk)
        except requests.exceptions.RequestException as exc:
            raise TransportError(
                f"The connection to {args.url} ({identity}) broke after {received} bytes of the response body: "
                f"{type(exc).__name__}.",
                hint="Retry; if it keeps happening, the server or the network path drops long transfers "
                "(raise --timeout for slow servers).",
            ) from None
        finally:
            out.flush()
    if 200 <= resp.status_code < 300:
        return EXIT_OK
    _explain_status(resp, creds)
    return EXIT_HTTP
