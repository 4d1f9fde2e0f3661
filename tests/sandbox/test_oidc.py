"""The sandbox OIDC issuer, the token validator, and the HTTP server base they stand on.

Everything goes over real HTTP on loopback; time comes from a fake clock.
"""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import ssl
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshclient.jose import JWTError, jwk_thumbprint, public_jwk, sign_jwt, unverified_claims, unverified_header
from meshclient_sandbox.httpserver import ApiRequest, HTTPError, Response, SandboxHTTPServer
from meshclient_sandbox.oidc import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_JWT,
    IssuerUnavailableError,
    OIDCIssuer,
    TokenValidator,
)
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI

pytestmark = pytest.mark.usefixtures("no_server_threads_left")

SECRET = "s3cr3t-value-never-logged"
CLIENT = "scorer-job"
AUDIENCE = "mesh-services"


@pytest.fixture
def web() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


@pytest.fixture
def client_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def registered(issuer: OIDCIssuer, client_key: ec.EllipticCurvePrivateKey) -> OIDCIssuer:
    issuer.register_client(CLIENT, secret=SECRET, audience=[AUDIENCE, "results-api"], scopes=["mesh.write", "read"])
    issuer.register_client("jwt-client", public_jwk=public_jwk(client_key), audience=AUDIENCE, scopes=["read"])
    return issuer


def token(web: requests.Session, issuer: OIDCIssuer, data: dict[str, Any], **kw: Any) -> requests.Response:
    return web.post(issuer.token_url, data=data, timeout=10, **kw)


def cc(web: requests.Session, issuer: OIDCIssuer, **extra: str) -> requests.Response:
    return token(web, issuer, {"grant_type": "client_credentials", **extra}, auth=(CLIENT, SECRET))


def assertion(
    key: Any, issuer: OIDCIssuer, *, client_id: str = "jwt-client", aud: str | None = None, jti: str | None = None,
    exp_in: float = 60, iss: str | None = None, kid: str | None = None,
) -> str:
    now = issuer.clock()
    return sign_jwt(
        {"iss": iss or client_id, "sub": client_id, "aud": aud or issuer.token_url, "iat": int(now),
         "exp": int(now + exp_in), "jti": jti or uuid.uuid4().hex},
        key, kid=kid or jwk_thumbprint(key),
    )


def jwt_auth(web: requests.Session, issuer: OIDCIssuer, client_assertion: str, **extra: str) -> requests.Response:
    return token(web, issuer, {
        "grant_type": "client_credentials",
        "client_assertion_type": CLIENT_ASSERTION_TYPE_JWT_BEARER,
        "client_assertion": client_assertion,
        **extra,
    })


def oauth_error(resp: requests.Response, status: int, error: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["error"] == error, body
    assert isinstance(body["error_description"], str)
    return str(body["error_description"])


# ------------------------------------------------------------------------ discovery / JWKS


def test_discovery_document(issuer: OIDCIssuer, web: requests.Session) -> None:
    doc = web.get(f"{issuer.url}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == issuer.issuer == issuer.url
    assert doc["token_endpoint"] == f"{issuer.url}/token"
    assert doc["jwks_uri"] == f"{issuer.url}/jwks"
    assert set(doc["grant_types_supported"]) == {"client_credentials", GRANT_TOKEN_EXCHANGE}
    assert set(doc["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "client_secret_post", "private_key_jwt"}
    assert web.get(f"{issuer.url}/.well-known/oauth-authorization-server", timeout=10).json() == doc


def test_jwks_publishes_the_es256_signing_key(issuer: OIDCIssuer, web: requests.Session) -> None:
    jwks = web.get(issuer.jwks_url, timeout=10).json()
    (key,) = jwks["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256" and key["use"] == "sig"
    assert key["kid"] == issuer.signing_kid == jwk_thumbprint(key)
    assert "d" not in key
    assert issuer.jwks_requests == 1


# ------------------------------------------------------------------------ client credentials


def test_client_secret_basic(registered: OIDCIssuer, web: requests.Session, clock: Any) -> None:
    resp = cc(web, registered)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and body["scope"] == "mesh.write read"
    claims = TokenValidator(registered, AUDIENCE, clock=clock).validate(body["access_token"])
    assert claims["iss"] == registered.issuer
    assert claims["sub"] == claims["client_id"] == CLIENT
    assert claims["aud"] == AUDIENCE
    assert claims["iat"] == claims["nbf"] == int(clock.now) and claims["exp"] == int(clock.now) + 300
    assert claims["scope"] == "mesh.write read" and claims["jti"]
    assert unverified_header(body["access_token"]) == {"alg": "ES256", "kid": registered.signing_kid, "typ": "at+jwt"}


def test_client_secret_post_and_scope_subset(registered: OIDCIssuer, web: requests.Session) -> None:
    resp = token(web, registered, {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET,
                                    "scope": "read"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["scope"] == "read"
    assert unverified_claims(resp.json()["access_token"])["scope"] == "read"


def test_basic_credentials_are_form_urlencoded(issuer: OIDCIssuer, web: requests.Session) -> None:
    issuer.register_client("svc:a b", secret="p@ss:wörd")
    raw = urllib.parse.quote_plus("svc:a b") + ":" + urllib.parse.quote_plus("p@ss:wörd")
    auth = "Basic " + base64.b64encode(raw.encode()).decode()
    resp = token(web, issuer, {"grant_type": "client_credentials"}, headers={"Authorization": auth})
    assert resp.status_code == 200, resp.text
    assert unverified_claims(resp.json()["access_token"])["client_id"] == "svc:a b"


def test_token_lifetime_is_configurable(registered: OIDCIssuer, web: requests.Session) -> None:
    registered.token_lifetime = 60
    assert cc(web, registered).json()["expires_in"] == 60
    registered.register_client("short", secret="x", token_lifetime=5)
    body = token(web, registered, {"grant_type": "client_credentials"}, auth=("short", "x")).json()
    claims = unverified_claims(body["access_token"])
    assert body["expires_in"] == 5 and claims["exp"] - claims["iat"] == 5


@pytest.mark.parametrize(
    "auth",
    [(CLIENT, "wrong"), ("nobody", SECRET), None],
    ids=["wrong-secret", "unknown-client", "no-auth"],
)
def test_invalid_client(registered: OIDCIssuer, web: requests.Session, auth: tuple[str, str] | None) -> None:
    resp = token(web, registered, {"grant_type": "client_credentials"}, auth=auth)
    oauth_error(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert SECRET not in resp.text


def test_invalid_client_post_method_and_wrong_method(registered: OIDCIssuer, web: requests.Session,
                                                     client_key: ec.EllipticCurvePrivateKey) -> None:
    resp = token(web, registered, {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": "no"})
    oauth_error(resp, 401, "invalid_client")
    # a private_key_jwt-only client cannot use a secret
    resp = token(web, registered, {"grant_type": "client_credentials"}, auth=("jwt-client", "guess"))
    assert "not registered for client_secret_basic" in oauth_error(resp, 401, "invalid_client")


def test_two_auth_methods_are_invalid_request(registered: OIDCIssuer, web: requests.Session) -> None:
    resp = token(web, registered, {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": SECRET},
                 auth=(CLIENT, SECRET))
    assert "more than one" in oauth_error(resp, 400, "invalid_request")


def test_grant_type_errors(registered: OIDCIssuer, web: requests.Session) -> None:
    oauth_error(cc(web, registered, grant_type="password"), 400, "unsupported_grant_type")
    resp = token(web, registered, {}, auth=(CLIENT, SECRET))
    assert "grant_type" in oauth_error(resp, 400, "invalid_request")
    resp = web.post(registered.token_url, data="grant_type=client_credentials&grant_type=password",
                     headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=(CLIENT, SECRET), timeout=10)
    assert "repeated" in oauth_error(resp, 400, "invalid_request")
    resp = web.post(registered.token_url, json={"grant_type": "client_credentials"}, auth=(CLIENT, SECRET), timeout=10)
    oauth_error(resp, 400, "invalid_request")


def test_invalid_scope(registered: OIDCIssuer, web: requests.Session) -> None:
    assert "admin" in oauth_error(cc(web, registered, scope="read admin"), 400, "invalid_scope")


def test_unknown_path_and_method(issuer: OIDCIssuer, web: requests.Session) -> None:
    oauth_error(web.get(f"{issuer.url}/nope", timeout=10), 404, "not_found")
    resp = web.get(issuer.token_url, timeout=10)
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST"


# ------------------------------------------------------------------------ private_key_jwt


def test_private_key_jwt(registered: OIDCIssuer, web: requests.Session, client_key: ec.EllipticCurvePrivateKey,
                         clock: Any) -> None:
    resp = jwt_auth(web, registered, assertion(client_key, registered))
    assert resp.status_code == 200, resp.text
    claims = TokenValidator(registered, AUDIENCE, clock=clock).validate(resp.json()["access_token"])
    assert claims["client_id"] == claims["sub"] == "jwt-client" and claims["scope"] == "read"
    # aud = issuer identifier is accepted too, and client_id in the body may accompany it
    resp = jwt_auth(web, registered, assertion(client_key, registered, aud=registered.issuer), client_id="jwt-client")
    assert resp.status_code == 200, resp.text


def test_private_key_jwt_rs256(issuer: OIDCIssuer, web: requests.Session) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.register_client("rsa-client", public_jwk=key.public_key())
    resp = jwt_auth(web, issuer, assertion(key, issuer, client_id="rsa-client"))
    assert resp.status_code == 200, resp.text


def test_private_key_jwt_replay_is_rejected(registered: OIDCIssuer, web: requests.Session,
                                            client_key: ec.EllipticCurvePrivateKey) -> None:
    signed = assertion(client_key, registered, jti="once")
    assert jwt_auth(web, registered, signed).status_code == 200
    assert "replay" in oauth_error(jwt_auth(web, registered, signed), 401, "invalid_client")


def test_private_key_jwt_rejections(registered: OIDCIssuer, web: requests.Session,
                                    client_key: ec.EllipticCurvePrivateKey, clock: Any) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "wrong aud": (assertion(client_key, registered, aud="https://elsewhere/token"), "audience"),
        "expired": (assertion(client_key, registered, exp_in=-120), "expired"),
        "other key, same kid": (assertion(stranger, registered, kid=jwk_thumbprint(client_key)), "signature"),
        "other key": (assertion(stranger, registered), "key id"),
        "iss != sub": (assertion(client_key, registered, iss="someone-else"), "issuer"),
        "unknown client": (assertion(client_key, registered, client_id="ghost"), "unknown client"),
        "too long-lived": (assertion(client_key, registered, exp_in=7 * 24 * 3600), "more than"),
        "not a JWT": ("not-a-jwt", "malformed"),
    }
    for name, (signed, fragment) in cases.items():
        desc = oauth_error(jwt_auth(web, registered, signed), 401, "invalid_client")
        assert fragment in desc, (name, desc)
    resp = token(web, registered, {"grant_type": "client_credentials", "client_assertion": "x",
                                    "client_assertion_type": "urn:example:saml"})
    oauth_error(resp, 400, "invalid_request")
    resp = jwt_auth(web, registered, assertion(client_key, registered), client_id="not-me")
    oauth_error(resp, 401, "invalid_client")


# ------------------------------------------------------------------------ token exchange


def exchange(web: requests.Session, issuer: OIDCIssuer, subject_token: str, **extra: Any) -> requests.Response:
    data = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject_token,
            "subject_token_type": TOKEN_TYPE_ACCESS_TOKEN, **extra}
    return token(web, issuer, data, auth=(CLIENT, SECRET))


def test_token_exchange_delegation(registered: OIDCIssuer, web: requests.Session, clock: Any) -> None:
    subject = registered.issue_token("alice@example.com", audience="notebook", scope="read")
    resp = exchange(web, registered, subject, audience="results-api", requested_token_type=TOKEN_TYPE_ACCESS_TOKEN)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["issued_token_type"] == TOKEN_TYPE_ACCESS_TOKEN and body["token_type"] == "Bearer"
    claims = TokenValidator(registered, "results-api", clock=clock).validate(body["access_token"])
    assert claims["sub"] == "alice@example.com"
    assert claims["act"] == {"sub": CLIENT}
    assert claims["client_id"] == CLIENT and claims["aud"] == "results-api"
    # exchanging the exchanged token nests the previous actor
    again = exchange(web, registered, body["access_token"], requested_token_type=TOKEN_TYPE_JWT)
    assert again.status_code == 200, again.text
    assert again.json()["issued_token_type"] == TOKEN_TYPE_JWT
    assert unverified_claims(again.json()["access_token"])["act"] == {"sub": CLIENT, "act": {"sub": CLIENT}}
    assert unverified_claims(again.json()["access_token"])["aud"] == AUDIENCE


def test_token_exchange_errors(registered: OIDCIssuer, web: requests.Session, clock: Any) -> None:
    subject = registered.issue_token("alice")
    assert "audience" in oauth_error(exchange(web, registered, subject, audience="payroll"), 400, "invalid_target")
    expired = registered.issue_token("alice", lifetime=-600)
    assert "expired" in oauth_error(exchange(web, registered, expired), 400, "invalid_grant")
    assert "not a JWT" in oauth_error(exchange(web, registered, "opaque-token"), 400, "invalid_grant")
    resp = token(web, registered, {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject},
                 auth=(CLIENT, SECRET))
    assert "subject_token_type" in oauth_error(resp, 400, "invalid_request")
    resp = exchange(web, registered, subject, subject_token_type="urn:ietf:params:oauth:token-type:saml2")
    oauth_error(resp, 400, "invalid_request")
    resp = exchange(web, registered, subject, requested_token_type="urn:ietf:params:oauth:token-type:refresh_token")
    oauth_error(resp, 400, "invalid_request")
    oauth_error(exchange(web, registered, subject, actor_token="x"), 400, "invalid_request")
    resp = token(web, registered, {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token_type": TOKEN_TYPE_JWT},
                 auth=(CLIENT, SECRET))
    oauth_error(resp, 400, "invalid_request")
    # multiple audiences: all must be allowed for the client
    resp = token(web, registered, {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject,
                                    "subject_token_type": TOKEN_TYPE_JWT,
                                    "audience": [AUDIENCE, "results-api"]}, auth=(CLIENT, SECRET))
    assert resp.status_code == 200, resp.text
    assert unverified_claims(resp.json()["access_token"])["aud"] == [AUDIENCE, "results-api"]


def test_token_exchange_trusted_issuers(registered: OIDCIssuer, web: requests.Session, clock: Any) -> None:
    with OIDCIssuer(clock=clock) as upstream:
        foreign = upstream.issue_token("bob", audience="sts")
        desc = oauth_error(exchange(web, registered, foreign), 400, "invalid_grant")
        assert "not trusted" in desc and upstream.issuer in desc
        registered.trust_issuer(upstream, audience="sts")
        resp = exchange(web, registered, foreign)
        assert resp.status_code == 200, resp.text
        claims = unverified_claims(resp.json()["access_token"])
        assert claims["sub"] == "bob" and claims["iss"] == registered.issuer and claims["act"] == {"sub": CLIENT}
        wrong_aud = upstream.issue_token("bob", audience="other")
        oauth_error(exchange(web, registered, wrong_aud), 400, "invalid_grant")
    # a trusted issuer by static keys, e.g. a Kubernetes service-account issuer
    k8s_key = ec.generate_private_key(ec.SECP256R1())
    registered.trust_issuer("https://kubernetes.default.svc", jwks={"keys": [public_jwk(k8s_key)]})
    sa_token = sign_jwt({"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:ml:scorer",
                         "aud": "anything", "exp": int(clock.now) + 60}, k8s_key, kid=jwk_thumbprint(k8s_key))
    resp = exchange(web, registered, sa_token, subject_token_type=TOKEN_TYPE_JWT)
    assert resp.status_code == 200, resp.text
    assert unverified_claims(resp.json()["access_token"])["sub"] == "system:serviceaccount:ml:scorer"


# ------------------------------------------------------------------------ rotation / validator


def test_key_rotation_overlap_and_validator_refetch(registered: OIDCIssuer, web: requests.Session,
                                                    clock: Any) -> None:
    validator = TokenValidator(registered, AUDIENCE, clock=clock)
    old_token = cc(web, registered).json()["access_token"]
    assert validator.validate(old_token)["sub"] == CLIENT
    assert validator.fetches == 1
    old_kid = registered.signing_kid
    new_kid = registered.rotate_key()
    assert new_kid != old_kid and registered.signing_kid == new_kid
    assert [k["kid"] for k in web.get(registered.jwks_url, timeout=10).json()["keys"]] == [new_kid, old_kid]
    new_token = cc(web, registered).json()["access_token"]
    assert unverified_header(new_token)["kid"] == new_kid
    assert validator.validate(new_token)["sub"] == CLIENT  # unknown kid → refetch
    assert validator.fetches == 2
    assert validator.validate(old_token)  # overlap: the old key is still published
    assert validator.fetches == 2
    registered.rotate_key(keep_previous=0)
    registered.retire_old_keys()
    validator.refresh()
    with pytest.raises(JWTError) as e:
        validator.validate(old_token)
    assert e.value.reason == "unknown_kid"
    validator.close()


def test_validator_does_not_hammer_on_garbage_kids(registered: OIDCIssuer, clock: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    forged = sign_jwt({"iss": registered.issuer, "sub": "x", "aud": AUDIENCE, "exp": clock.now + 60}, key, kid="bogus")
    with TokenValidator(registered, AUDIENCE, clock=clock) as validator:
        for _ in range(5):
            with pytest.raises(JWTError) as e:
                validator.validate(forged)
            assert e.value.reason == "unknown_kid"
        assert validator.fetches == 2  # first load + one refetch for the unknown kid


def test_validator_rejections_and_challenge(registered: OIDCIssuer, web: requests.Session,
                                            clock: Any) -> None:
    access = cc(web, registered).json()["access_token"]
    with TokenValidator(registered.issuer, AUDIENCE, clock=clock, required_scopes=["read"]) as validator:
        assert validator.validate_authorization(f"Bearer {access}")["sub"] == CLIENT
        with pytest.raises(JWTError) as e:
            validator.validate_authorization(None)
        assert e.value.reason == "missing"
        assert TokenValidator.challenge(e.value) == 'Bearer realm="meshclient-sandbox"'
        clock.advance(301 + 30)
        with pytest.raises(JWTError) as e:
            validator.validate(access)
        assert e.value.reason == "expired"
        challenge = TokenValidator.challenge(e.value)
        assert challenge.startswith('Bearer realm="meshclient-sandbox", error="invalid_token", error_description="JWT')
        assert access not in challenge
    with TokenValidator(registered, "someone-else", clock=clock) as other:
        clock.now -= 331
        with pytest.raises(JWTError) as e:
            other.validate(access)
        assert e.value.reason == "audience"
    with TokenValidator(registered, AUDIENCE, clock=clock, required_scopes=["admin"]) as strict:
        with pytest.raises(JWTError) as e:
            strict.validate(access)
        assert e.value.reason == "scope"
        assert 'error="insufficient_scope"' in TokenValidator.challenge(e.value)


def test_validator_reports_an_unreachable_issuer(clock: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with OIDCIssuer(clock=clock) as srv:
        minted = srv.issue_token("x")
    with TokenValidator(f"http://127.0.0.1:{port}", None, clock=clock, timeout=2) as validator:
        with pytest.raises(IssuerUnavailableError) as e:
            validator.validate(minted)
        assert f"127.0.0.1:{port}" in str(e.value)


# ------------------------------------------------------------------------ test hooks


def test_request_counter_outage_and_throttle(registered: OIDCIssuer, web: requests.Session) -> None:
    assert cc(web, registered).status_code == 200
    assert cc(web, registered, scope="bogus").status_code == 400
    assert registered.token_requests == 2 and registered.tokens_issued == 1

    registered.set_outage(times=2)
    for _ in range(2):
        oauth_error(cc(web, registered), 503, "temporarily_unavailable")
    assert cc(web, registered).status_code == 200  # recovered by itself

    registered.set_outage(status=503, retry_after=3)
    resp = web.get(registered.jwks_url, timeout=10)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "3"
    registered.set_outage(False)

    registered.set_throttle(retry_after=7, times=1)
    resp = cc(web, registered)
    oauth_error(resp, 429, "temporarily_unavailable")
    assert resp.headers["Retry-After"] == "7"
    assert cc(web, registered).status_code == 200

    registered.set_throttle(2)
    assert cc(web, registered).status_code == 429
    registered.clear_faults()
    assert cc(web, registered).status_code == 200
    assert registered.token_requests == 9 and registered.tokens_issued == 4
    registered.reset_counters()
    assert registered.token_requests == registered.tokens_issued == 0


def test_logs_carry_no_secret_or_token(registered: OIDCIssuer, web: requests.Session, clock: Any,
                                       client_key: ec.EllipticCurvePrivateKey,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = [SECRET]
    ok = cc(web, registered).json()["access_token"]
    seen.append(ok)
    cc(web, registered, client_secret=SECRET)  # rejected: two methods
    token(web, registered, {"grant_type": "client_credentials"}, auth=(CLIENT, "wrong-" + SECRET))
    signed = assertion(client_key, registered)
    seen.append(signed)
    jwt_auth(web, registered, signed)
    jwt_auth(web, registered, signed)  # replay
    ex = exchange(web, registered, ok).json()["access_token"]
    seen.append(ex)
    validator = TokenValidator(registered, AUDIENCE, clock=clock)
    validator.validate(ex)
    with pytest.raises(JWTError):
        validator.validate(registered.issue_token("x", lifetime=-3600))
    web.get(f"{registered.url}/token?access_token={ok}", timeout=10)
    # Our loggers only: urllib3 (the *client* here) logs request URLs, query string included.
    ours = [r for r in caplog.records if r.name.startswith("meshclient")]
    assert {r.name for r in ours} >= {"meshclient_sandbox.oidc", "meshclient_sandbox.http"}
    text = "\n".join(r.getMessage() for r in ours)
    assert "GET /token -> 405" in text
    assert "issued token to client scorer-job" in text
    for needle in seen:
        assert needle not in text
        for segment in needle.split(".")[1:]:
            assert segment not in text
    validator.close()


# ------------------------------------------------------------------------ server base


class _Echo(SandboxHTTPServer):
    name = "echo-test"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.add_route("POST", "/echo", lambda r: Response(200, r.body, content_type="application/octet-stream"))
        self.add_route("GET", "/peer", lambda r: Response.json({"cert": r.peer_cert is not None}))
        self.add_route("GET", "/files/", lambda r: Response.text(r.path), prefix=True)
        self.add_route("GET", "/boom", self._boom)
        self.add_route("GET", "/teapot", self._teapot)

    def _boom(self, request: ApiRequest) -> Response:
        raise RuntimeError("handler bug with " + SECRET)

    def _teapot(self, request: ApiRequest) -> Response:
        raise HTTPError(418, "short and stout", headers={"X-Pot": "1"})


def test_server_keep_alive_chunked_and_routing() -> None:
    with _Echo() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", "/echo", body=b"hello")
        first = conn.getresponse()
        assert first.status == 200 and first.read() == b"hello"
        sock = conn.sock
        conn.request("POST", "/echo", body=iter([b"chunk-1 ", b"chunk-2"]),
                     headers={"Transfer-Encoding": "chunked"}, encode_chunked=True)
        second = conn.getresponse()
        assert second.read() == b"chunk-1 chunk-2"
        assert conn.sock is sock  # same connection: keep-alive
        conn.request("GET", "/files/a/b.txt")
        assert conn.getresponse().read() == b"/files/a/b.txt"
        conn.request("HEAD", "/files/x")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b"" and head.getheader("Content-Length") == "8"
        conn.request("GET", "/teapot")
        tea = conn.getresponse()
        assert tea.status == 418 and tea.getheader("X-Pot") == "1" and b"short and stout" in tea.read()
        conn.request("GET", "/boom")
        boom = conn.getresponse()
        assert boom.status == 500 and SECRET.encode() not in boom.read()
        conn.request("DELETE", "/echo")
        nope = conn.getresponse()
        assert nope.status == 405 and nope.getheader("Allow") == "POST"
        nope.read()
        conn.close()


def test_server_body_limit() -> None:
    with _Echo(max_body=10) as srv:
        resp = requests.post(f"{srv.url}/echo", data=b"x" * 11, timeout=10)
        assert resp.status_code == 413


def test_stop_ends_idle_keep_alive_connections_and_frees_everything(leaks: Any) -> None:
    fds_before = leaks.socket_fds()
    threads_before = set(leaks.server_threads())  # a session-wide sandbox may be running
    srv = _Echo(idle_timeout=60).start()
    port = srv.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/echo", body=b"x")
    assert conn.getresponse().read() == b"x"
    assert any("process_request_thread" in t.name for t in leaks.server_threads())
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 2  # did not wait for the idle connection's 60 s timeout
    assert not set(leaks.server_threads()) - threads_before
    assert conn.sock is not None and conn.sock.recv(1) == b""  # server side closed
    conn.close()
    assert leaks.socket_fds() == fds_before
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    srv.stop()  # idempotent
    assert not srv.running and "stopped" in repr(srv)


def test_stop_while_clients_hammer(leaks: Any) -> None:
    threads_before = set(leaks.server_threads())  # a session-wide sandbox may be running
    srv = _Echo().start()
    stop = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        with requests.Session() as s:
            s.trust_env = False
            while not stop.is_set():
                try:
                    s.post(f"{srv.url}/echo", data=b"y", timeout=5)
                except requests.RequestException:
                    pass
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

    url = srv.url
    workers = [threading.Thread(target=client) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(0.2)
    srv.stop()
    stop.set()
    for w in workers:
        w.join(10)
    assert not errors and not set(leaks.server_threads()) - threads_before and url


def test_server_over_tls_exposes_the_client_certificate(pki: SandboxPKI, server_leaf: IssuedLeaf,
                                                        client_leaf: IssuedLeaf, tmp_path: Any) -> None:
    (tmp_path / "srv.pem").write_bytes(server_leaf.chain_pem + server_leaf.key_pem)
    (tmp_path / "ca.pem").write_bytes(server_leaf.trust_anchors_pem)
    (tmp_path / "cli.pem").write_bytes(client_leaf.chain_pem + client_leaf.key_pem)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(tmp_path / "srv.pem")
    sctx.load_verify_locations(tmp_path / "ca.pem")
    sctx.verify_mode = ssl.CERT_OPTIONAL
    with _Echo(ssl_context=sctx) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        cctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        cctx.check_hostname = False
        cctx.load_cert_chain(tmp_path / "cli.pem")
        conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=cctx, timeout=10)
        conn.request("GET", "/peer")
        assert conn.getresponse().read() == b'{"cert":true}'
        conn.close()
        # a plaintext client against the TLS port must not wedge the server
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as raw:
            raw.sendall(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            raw.recv(100)
