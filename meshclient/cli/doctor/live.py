"""Doctor's live checks: a TLS handshake with the target, then one GET over the mesh client.

The handshake is made by hand (to report the verified identity, TLS version and cipher, and
each way it can fail); the GET goes through :class:`~meshclient.MeshClient`, so it tests the
request path a job would use, bearer token included.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

import requests

from ...client import MeshClient
from ...credentials import Credentials
from ...errors import ConnectError, MeshError, ServerIdentityError, TLSHandshakeError
from ...identity import Identity
from ...redaction import redact_url
from ...tls import PeerInfo, sni_for, verify_server_identity
from .state import CheckupState

__all__ = ["LiveChecks"]


class LiveChecks(CheckupState):
    """``--target``: the handshake, the request, and whether the request carried the token."""

    def handshake(self, ctx: ssl.SSLContext | None, expected: Identity) -> bool:
        url = self.args.target
        parts = urlsplit(url)
        try:
            port = parts.port or 443
        except ValueError:
            self.r.fail("handshake", f"the target {redact_url(url)!r} has an invalid port", "Use https://HOST:PORT/PATH.")
            return False
        if parts.scheme != "https" or not parts.hostname:
            self.r.fail("handshake", f"the target {redact_url(url)!r} is not an https:// URL with a host",
                        "meshclient only speaks mutual TLS: use https://<pod IP or service name>:<port>/<path>.")
            return False
        if ctx is None:
            self.r.skip("handshake", "needs working material (see above)")
            return False
        host = parts.hostname
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sni = sni_for(expected, host, self.args.server_name)
        timeout = self.args.timeout
        try:
            peer = _handshake(ctx, host, port, sni, expected, address, timeout)
        except MeshError as err:
            self.r.error("handshake", err)
            return False
        except TimeoutError:
            self.r.fail("handshake", f"no TLS connection to {address} within {timeout:g} s",
                        "Check that the address is reachable from here (network path, firewalls) and that the port "
                        "is the workload's port.")
            return False
        except ssl.SSLCertVerificationError as exc:
            self.r.fail("handshake", f"the server at {address} presented a certificate that does not verify "
                        f"against the mesh trust anchors ({exc.verify_message})",
                        "The server is not in this mesh, or these trust anchors are from another cluster or out of "
                        "date: use the anchors of the cluster that runs the server.")
            return False
        except ssl.SSLError as exc:
            self.r.fail("handshake", f"TLS handshake with {address} (SNI '{sni}') failed: {exc.reason or exc}",
                        tls_hint(str(exc), sni))
            return False
        except ConnectionRefusedError:
            self.r.fail("handshake", f"{address} refused the connection",
                        "Nothing listens there: check the port (the workload's port, or 4143 for Linkerd's "
                        "direct mode).")
            return False
        except OSError as exc:
            self.r.fail("handshake", f"could not connect to {address}: {exc.strerror or exc}",
                        "Check the host name and that this machine can reach it.")
            return False
        self.r.ok("handshake", f"{address} proved '{peer.identity}' ({peer.tls_version}, {peer.cipher}, SNI '{sni}')")
        return True

    def request(self, creds: Credentials, expected: Identity) -> None:
        url = self.args.target
        timeout = self.args.timeout
        try:
            with MeshClient(creds, timeout=(timeout, timeout), token=self.token_provider) as client:
                resp = client.request("GET", url, server_identity=expected, server_name=self.args.server_name,
                                      stream=True, allow_redirects=False)
                resp.close()
        except (TLSHandshakeError, ConnectError) as err:
            self.skip_token_sent("needs an answered request")
            if isinstance(err, ServerIdentityError):
                self.r.error("request", err)
                return
            # TLS 1.3 clients finish the handshake before the server checks their certificate, so a refused
            # client certificate surfaces only now: as an alert, or (racing the close) as a bare EOF / reset.
            self.r.fail("request", err.message,
                        "The handshake above worked, so the server most likely refused this client's certificate "
                        "(TLS 1.3 reports that only after the handshake): check that the server trusts the anchors "
                        "that issued this certificate and that its policy allows this identity.")
            return
        except MeshError as err:
            self.r.error("request", err)
            self.skip_token_sent("needs an answered request")
            return
        status = resp.status_code
        text = f"GET {redact_url(url)} -> {status} {resp.reason or ''}".rstrip()
        proxy_error = resp.headers.get("l5d-proxy-error")
        if status == 403 and proxy_error:
            self.r.fail("request", f"{text}: the mesh policy denied this client's identity '{creds.identity}' "
                        f"({proxy_error})",
                        "Ask the service owner to authorize this identity (a MeshTLSAuthentication naming it or its "
                        "namespace, used by an AuthorizationPolicy).")
        elif proxy_error:
            self.r.fail("request", f"{text}: the server's mesh proxy answered with an error ({proxy_error})",
                        "The proxy could not reach the application behind it: check the workload's port and health.")
        elif status in (401, 403) and self.token is not None:
            self.r.warn("request", f"{text}", "Mutual TLS works; the application refused the request (see the "
                        "token line below).")
        elif status >= 400:
            self.r.warn("request", f"{text}", "Mutual TLS works; the application itself answered with an error "
                        "for this path (try another --target path).")
        else:
            self.r.ok("request", text)
        self._token_sent(resp, text, bool(proxy_error))

    def skip_token_sent(self, why: str) -> None:
        if self.token is not None:
            self.r.skip("token sent", why)

    def _token_sent(self, resp: requests.Response, text: str, proxy_error: bool) -> None:
        """Did the GET carry the bearer token, and did the application take it?"""
        token = self.token
        if token is None or self.token_provider is None:
            return
        sent = resp.request.headers.get("Authorization") if resp.request is not None else None
        current = self.token_provider.token()
        if sent != current.authorization and sent != token.authorization:
            self.r.fail("token sent", "the request went without the bearer token",
                        "This is a meshclient bug: rerun with --debug and report it.")
            return
        who = f"subject '{current.subject}', " if current.subject else ""
        if resp.status_code == 401 and not proxy_error:
            self.r.fail("token sent", f"the request carried the bearer token ({who}fingerprint {current.fingerprint}) "
                        f"and the application refused it: {text}",
                        "Check that the service trusts this issuer and expects this audience (--oidc-audience), "
                        "and that the token is not expired.")
        elif resp.status_code == 403 and not proxy_error:
            self.r.warn("token sent", f"the request carried the bearer token ({who}fingerprint {current.fingerprint}); "
                        f"the application answered {text}",
                        "The token was accepted but this subject may not do this: ask the service owner for access.")
        else:
            self.r.ok("token sent", f"the request carried the bearer token ({who}fingerprint {current.fingerprint})")


def _handshake(ctx: ssl.SSLContext, host: str, port: int, sni: str, expected: Identity, address: str,
               timeout: float) -> PeerInfo:
    """Connect, handshake and verify the server identity ourselves, with a timeout."""
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        return verify_server_identity(tls, expected, where=address)



def tls_hint(reason: str, sni: str) -> str:
    low = reason.lower()
    if "certificate required" in low or "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low:
        return ("The server refused this client's certificate: check that it trusts the same anchors and that the "
                "certificate is current.")
    if "unrecognized name" in low or "handshake failure" in low:
        return (f"The server did not accept SNI '{sni}': a Linkerd proxy only terminates TLS for its own identity. "
                "Check --server-identity.")
    if "protocol version" in low or "wrong version" in low or "unsupported protocol" in low:
        return "The server does not speak TLS 1.3 as Linkerd does, or the port is not a TLS port."
    return "Check that the address is the workload's mTLS port and that both sides share the trust anchors."

