"""Doctor's bearer-token checks: the issuer answers, a token comes, and what it says.

Subject, audience and expiry from the token itself (unverified, for display); never the
token: it is named by its SHA-256 fingerprint.
"""

from __future__ import annotations

import datetime as _dt

from ...errors import MeshError
from ...outbound import OutboundClient
from ...redaction import redact_text, redact_url
from ...tokens import (
    BaseTokenProvider,
    DatabricksOAuth,
    OutboundRetryPolicy,
    Token,
    TokenError,
    TokenProvider,
    discover_token_endpoint,
)
from ...tokens.claims import peek_jwt
from ..common import (
    ENV_OIDC_CLIENT_SECRET,
    client_credentials,
    databricks_config,
    oidc_settings,
    outbound_settings,
    simple_token_provider,
)
from .report import duration, utc
from .state import CheckupState

__all__ = ["TokenChecks", "TOKEN_WARN_SECONDS"]

#: Warn when a bearer token has less than this many seconds left (a request may outlive it).
TOKEN_WARN_SECONDS = 60


class TokenChecks(CheckupState):
    """Issuer, token, subject, audience, expiry: one line each."""

    def tokens(self, kind: str) -> None:
        """Issuer, token, subject, audience, expiry: one line each, never the token itself."""
        timeout = self.args.timeout
        provider: TokenProvider | None = None
        secrets: list[str | None] = []
        try:
            if kind == "oidc":
                settings = oidc_settings(self.args, self.env)
                secrets.append(settings.client_secret)
                token_url = self._oidc_issuer(settings.issuer, settings.token_url)
                if token_url is None:
                    self._skip_token_lines("needs a reachable issuer")
                    return
                provider = client_credentials(settings, token_url, timeout)
            elif kind == "databricks":
                cfg = databricks_config(timeout)
                self.r.ok("token issuer", f"databricks-sdk unified auth: host {getattr(cfg, 'host', None)}, "
                          f"auth type {getattr(cfg, 'auth_type', None)}")
                provider = DatabricksOAuth(config=cfg, retries=OutboundRetryPolicy(attempts=1))
            else:
                provider = simple_token_provider(self.args, kind, timeout)
        except MeshError as err:
            self.r.fail("token issuer" if kind == "databricks" else "token", redact_text(err.message, secrets), err.hint)
            self._skip_token_lines("needs a token")
            return
        try:
            token = provider.token()
        except TokenError as err:
            self.r.fail("token", f"no token from {provider!r}: {redact_text(err.message, secrets)}",
                        err.hint or token_hint(kind))
            self._skip_token_lines("needs a token")
            if isinstance(provider, BaseTokenProvider):
                provider.close()
            return
        self.token_provider, self.token = provider, token
        claims = peek_jwt(token.value)
        form = "an opaque token (not a JWT)"
        if claims is not None:
            iss = claims.get("iss")
            form = f"a JWT from issuer '{iss}'" if isinstance(iss, str) else "a JWT without an issuer claim"
        self.r.ok("token", f"obtained from {provider!r}: {form}, fingerprint {token.fingerprint}")
        self._token_claims(token, claims is not None)

    def _skip_token_lines(self, why: str) -> None:
        for name in ("token subject", "token audience", "token expiry"):
            self.r.skip(name, why)

    def _oidc_issuer(self, issuer: str | None, token_url: str | None) -> str | None:
        """The token endpoint, after showing that the issuer (or the endpoint itself) answers."""
        timeout = self.args.timeout
        if issuer:
            try:
                url = discover_token_endpoint(issuer, outbound=outbound_settings(timeout))
            except MeshError as err:
                self.r.fail("token issuer", err.message, err.hint or "Check the issuer URL and that it is reachable.")
                return None
            self.r.ok("token issuer", f"{issuer} answers; its discovery document names token endpoint {redact_url(url)}")
            return url
        assert token_url is not None
        http = OutboundClient(outbound_settings(timeout))
        try:
            resp = http.send_once("GET", token_url)
            resp.close()
        except Exception as exc:  # requests' ConnectionError, SSLError, Timeout, InvalidURL...
            self.r.fail("token issuer", f"{redact_url(token_url)} cannot be reached: {type(exc).__name__}",
                        "Check the token URL and the network path (proxy variables, firewalls, the issuer's CA).")
            return None
        finally:
            http.close()
        if resp.status_code == 404:
            self.r.warn("token issuer", f"{redact_url(token_url)} answers 404 to a GET: is it the token endpoint?",
                        "Token endpoints usually answer a GET with 400 or 405; try --oidc-issuer to discover it.")
        else:
            self.r.ok("token issuer", f"{redact_url(token_url)} answers (HTTP {resp.status_code} to a plain GET)")
        return token_url

    def _token_claims(self, token: Token, is_jwt: bool) -> None:
        if token.subject:
            self.r.ok("token subject", f"'{token.subject}'")
        elif is_jwt:
            self.r.warn("token subject", "the token has no 'sub' claim",
                        "Services that authorize or audit by subject will see no caller.")
        else:
            self.r.skip("token subject", "an opaque token: its subject is known only to the issuer")
        expected = getattr(self.args, "oidc_audience", None)
        audiences = (token.audience or "").split()
        if expected and audiences and expected not in audiences:
            self.r.fail("token audience", f"{' '.join(repr(a) for a in audiences)}, not '{expected}'",
                        f"Ask the issuer for a token for '{expected}' (the client must be allowed that audience), "
                        "or check which audience the service expects.")
        elif audiences:
            self.r.ok("token audience", " ".join(f"'{a}'" for a in audiences))
        elif is_jwt:
            self.r.warn("token audience", "the token has no 'aud' claim",
                        "Services that check the audience (they should) will refuse it: ask for one with "
                        "--oidc-audience.")
        else:
            self.r.skip("token audience", "an opaque token: its audience is known only to the issuer")
        left = token.expires_in()
        if left is None or token.expires_at is None:
            self.r.warn("token expiry", "the token does not say when it expires",
                        "meshclient cannot refresh it ahead of expiry; requests will start failing with 401 when "
                        "it does.")
        elif left <= 0:
            self.r.fail("token expiry", f"expired at {utc(token.expires_at)}, {duration(_dt.timedelta(seconds=left))} ago",
                        "Put a fresh token in place (a token file or variable is not renewed by meshclient).")
        elif left < TOKEN_WARN_SECONDS:
            self.r.warn("token expiry", f"valid until {utc(token.expires_at)}: only "
                        f"{duration(_dt.timedelta(seconds=left))} left",
                        "meshclient refreshes provider tokens ahead of expiry; a fixed token must be replaced now.")
        else:
            self.r.ok("token expiry", f"valid until {utc(token.expires_at)}: {duration(_dt.timedelta(seconds=left))} left")


def token_hint(kind: str) -> str:
    """The usual fix when a token source gives nothing."""
    if kind == "oidc":
        return (f"Check --oidc-client-id and ${ENV_OIDC_CLIENT_SECRET}, and that this client may ask for the "
                "--oidc-audience/--oidc-scope given.")
    if kind == "databricks":
        return ("Check the databricks-sdk settings (DATABRICKS_HOST with DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, "
                "DATABRICKS_TOKEN or a profile).")
    if kind == "env":
        return "Put the token in that variable (on Databricks: a cluster variable referencing a secret)."
    return "Check the token file's path and that something (kubelet, a sidecar) writes it."

