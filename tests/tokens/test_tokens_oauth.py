"""ClientCredentials and TokenExchange against the sandbox OIDCIssuer: every client auth method."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tokens_helpers import CLIENT_ID, SECRET, FakeClock, RecordingSleep

from meshclient import ConfigurationError
from meshclient.tokens import (
    BaseTokenProvider,
    ClientCredentials,
    FileToken,
    RefreshSettings,
    Token,
    TokenEndpointError,
    TokenExchange,
    discover_token_endpoint,
)
from meshclient.tokens.oauth import TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT
from meshclient_sandbox.httpserver import ApiRequest, Response, SandboxHTTPServer
from meshclient_sandbox.jose import public_jwk, sign_jwt, unverified_claims, unverified_header, verify_jwt
from meshclient_sandbox.oidc import OIDCIssuer


def verified(issuer: OIDCIssuer, token: Token, clock: FakeClock, audience: str = "mesh-services") -> dict[str, object]:
    return verify_jwt(token.value, issuer.jwks(), issuer=issuer.issuer, audience=audience, now=clock())


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_client_secret_methods(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep, method: str) -> None:
    # SECRET holds '+', '/', '=' and '%': client_secret_basic must form-urlencode it (RFC 6749 §2.3.1).
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        auth_method=method,
        scope=["mesh.read"],
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
    )  # type: ignore[arg-type]
    t = p.token()
    claims = verified(issuer, t, clock)
    assert claims["sub"] == CLIENT_ID and claims["scope"] == "mesh.read"
    assert t.subject == CLIENT_ID and t.scope == "mesh.read" and t.audience == "mesh-services"


def test_client_secret_basic_is_the_default(issuer: OIDCIssuer, clock: FakeClock) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url, client_id=CLIENT_ID, client_secret=SECRET, refresh=RefreshSettings(clock=clock)
    )
    assert p.auth_method == "client_secret_basic"
    assert p.token().subject == CLIENT_ID


def test_private_key_jwt_es256(issuer: OIDCIssuer, clock: FakeClock, client_key: ec.EllipticCurvePrivateKey) -> None:
    pem = client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id="jwt-client",
        private_key=pem.decode(),
        scope="mesh.read",
        refresh=RefreshSettings(clock=clock),
    )
    assert p.auth_method == "private_key_jwt"
    first = p.token()
    assert verified(issuer, first, clock)["sub"] == "jwt-client"
    # A second request must carry a new assertion (the issuer refuses a replayed jti).
    p.invalidate()
    assert p.token().value != first.value
    assert issuer.tokens_issued == 2


def test_private_key_jwt_rs256_with_kid_and_encrypted_pem(issuer: OIDCIssuer, clock: FakeClock) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer.register_client("rsa-client", public_jwk=public_jwk(key, kid="k1"), audience="mesh-services")
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id="rsa-client",
        private_key=pem,
        private_key_password="pw",
        key_id="k1",
        refresh=RefreshSettings(clock=clock),
    )
    assert verified(issuer, p.token(), clock)["sub"] == "rsa-client"


def test_private_key_jwt_assertion_shape(
    issuer: OIDCIssuer, clock: FakeClock, client_key: ec.EllipticCurvePrivateKey
) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id="jwt-client",
        private_key=client_key,
        key_id="my-kid",
        refresh=RefreshSettings(clock=clock),
    )
    assertion = p._assertion()
    header, claims = unverified_header(assertion), unverified_claims(assertion)
    assert header["alg"] == "ES256" and header["kid"] == "my-kid"
    assert claims["iss"] == claims["sub"] == "jwt-client"
    assert claims["aud"] == issuer.token_url
    assert claims["exp"] - claims["iat"] == 60 and claims["jti"]
    assert p._assertion() != assertion  # a fresh jti each time


def test_wrong_key_is_invalid_client(issuer: OIDCIssuer, clock: FakeClock) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    p = ClientCredentials(
        token_url=issuer.token_url, client_id="jwt-client", private_key=other, refresh=RefreshSettings(clock=clock)
    )
    with pytest.raises(TokenEndpointError) as info:
        p.token()
    assert info.value.error == "invalid_client" and "jwt-client" in str(info.value)


def test_audience_and_invalid_scope(issuer: OIDCIssuer, clock: FakeClock) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope="admin",
        refresh=RefreshSettings(clock=clock),
    )
    with pytest.raises(TokenEndpointError) as info:
        p.token()
    assert info.value.error == "invalid_scope" and "scope" in (info.value.hint or "")


def test_discovery(issuer: OIDCIssuer, clock: FakeClock) -> None:
    assert discover_token_endpoint(issuer.issuer) == issuer.token_url
    p = ClientCredentials.from_issuer(
        issuer.issuer, client_id=CLIENT_ID, client_secret=SECRET, refresh=RefreshSettings(clock=clock)
    )
    assert p.token_url == issuer.token_url and p.token().subject == CLIENT_ID


# ---- token exchange ----------------------------------------------------------------------------


def test_token_exchange_with_a_provider_as_subject(issuer: OIDCIssuer, clock: FakeClock) -> None:
    subject = ClientCredentials(
        token_url=issuer.token_url, client_id=CLIENT_ID, client_secret=SECRET, refresh=RefreshSettings(clock=clock)
    )
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=subject,
        subject_token_type=TOKEN_TYPE_ACCESS_TOKEN,
        audience="scoring",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock),
    )
    t = x.token()
    claims = verified(issuer, t, clock, audience="scoring")
    assert claims["sub"] == CLIENT_ID and claims["act"] == {"sub": CLIENT_ID}
    assert t.audience == "scoring"
    assert issuer.tokens_issued == 2  # the subject token, then the exchange


def test_token_exchange_of_a_service_account_token_file_with_private_key_jwt(
    issuer: OIDCIssuer, clock: FakeClock, client_key: ec.EllipticCurvePrivateKey, tmp_path: Path
) -> None:
    sa_token = issuer.issue_token("system:serviceaccount:ml-team:scorer", audience="mesh-services")
    path = tmp_path / "token"
    path.write_text(sa_token + "\n")
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=FileToken(path, refresh=RefreshSettings(clock=clock)),
        subject_token_type=TOKEN_TYPE_JWT,
        requested_token_type=TOKEN_TYPE_ACCESS_TOKEN,
        audience="scoring",
        scope="mesh.read",
        client_id="jwt-client",
        private_key=client_key,
        refresh=RefreshSettings(clock=clock),
    )
    t = x.token()
    claims = verified(issuer, t, clock, audience="scoring")
    assert claims["sub"] == "system:serviceaccount:ml-team:scorer"
    assert claims["act"] == {"sub": "jwt-client"} and claims["scope"] == "mesh.read"


class _Sequence(BaseTokenProvider):
    """A subject provider handing out the given tokens in order, one per fetch."""

    def __init__(self, *values: str, clock: FakeClock) -> None:
        super().__init__(refresh=RefreshSettings(clock=clock))
        self.values = list(values)
        self.fetches = 0

    def _fetch(self) -> Token:
        self.fetches += 1
        return Token.from_value(self.values.pop(0))


def forged(issuer: OIDCIssuer, clock: FakeClock, sub: str) -> str:
    """A JWT naming the issuer but signed with a key it never had: the issuer says invalid_grant."""
    claims = {
        "iss": issuer.issuer,
        "sub": sub,
        "aud": "mesh-services",
        "iat": int(clock()),
        "exp": int(clock()) + 600,
        "jti": "x",
    }
    return sign_jwt(claims, ec.generate_private_key(ec.SECP256R1()), kid=issuer.signing_kid)


def test_invalid_grant_invalidates_the_subject_and_retries_once(issuer: OIDCIssuer, clock: FakeClock) -> None:
    good = issuer.issue_token("svc-a")
    subject = _Sequence(forged(issuer, clock, "svc-a"), good, clock=clock)
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=subject,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock),
    )
    assert verified(issuer, x.token(), clock)["sub"] == "svc-a"
    assert subject.fetches == 2 and issuer.token_requests == 2


def test_invalid_grant_twice_is_reported(issuer: OIDCIssuer, clock: FakeClock) -> None:
    bad = forged(issuer, clock, "svc-a")
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=_Sequence(bad, bad, clock=clock),
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock),
    )
    with pytest.raises(TokenEndpointError) as info:
        x.token()
    assert info.value.error == "invalid_grant" and bad not in str(info.value)
    assert "subject token" in (info.value.hint or "")


def test_token_exchange_with_a_string_subject(issuer: OIDCIssuer, clock: FakeClock) -> None:
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=issuer.issue_token("svc-b"),
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock),
    )
    assert x.token().subject == "svc-b"
    assert "fingerprint=" in repr(x)  # the subject is a StaticToken: repr shows a fingerprint only


# ---- transport safety ---------------------------------------------------------------------------


class _Redirector(SandboxHTTPServer):
    def __init__(self, location: str) -> None:
        super().__init__()
        self.location = location
        self.hits = 0
        self.add_route("POST", "/token", self._redirect)

    def _redirect(self, request: ApiRequest) -> Response:
        self.hits += 1
        return Response(307, b"", headers={"Location": self.location})


def test_a_redirect_is_not_followed(issuer: OIDCIssuer, clock: FakeClock) -> None:
    with _Redirector("http://localhost:1/steal") as evil:
        p = ClientCredentials(
            token_url=f"{evil.url}/token",
            client_id=CLIENT_ID,
            client_secret=SECRET,
            refresh=RefreshSettings(clock=clock),
        )
        with pytest.raises(TokenEndpointError, match="redirect") as info:
            p.token()
        assert evil.hits == 1 and info.value.status == 307 and "localhost" in str(info.value)
        assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url", ["http://issuer.example.com/token", "ftp://127.0.0.1/token", "https://user:pw@issuer.example.com/t", ""]
)
def test_unsafe_token_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        ClientCredentials(token_url=url, client_id=CLIENT_ID, client_secret=SECRET)


def test_configuration_errors() -> None:
    url = "https://issuer.example.com/token"
    with pytest.raises(ConfigurationError, match="client_secret or private_key"):
        ClientCredentials(token_url=url, client_id=CLIENT_ID)
    with pytest.raises(ConfigurationError, match="not both"):
        ClientCredentials(
            token_url=url, client_id=CLIENT_ID, client_secret="x", private_key=ec.generate_private_key(ec.SECP256R1())
        )
    with pytest.raises(ConfigurationError, match="private_key"):
        ClientCredentials(token_url=url, client_id=CLIENT_ID, auth_method="private_key_jwt", client_secret="x")
    with pytest.raises(ConfigurationError, match="not supported"):
        ClientCredentials(token_url=url, client_id=CLIENT_ID, client_secret="x", auth_method="tls_client_auth")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="PEM") as info:
        ClientCredentials(token_url=url, client_id=CLIENT_ID, private_key="-----BEGIN PRIVATE KEY-----\nsecretbits")
    assert "secretbits" not in str(info.value)
    with pytest.raises(ConfigurationError, match="actor_token_type"):
        TokenExchange(token_url=url, subject_token="a.b.c", actor_token="d.e.f")


def test_repr_shows_settings_not_secrets(client_key: ec.EllipticCurvePrivateKey) -> None:
    p = ClientCredentials(
        token_url="https://issuer.example.com/token",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope=["a", "b"],
        audience="mesh",
    )
    text = repr(p)
    assert CLIENT_ID in text and "https://issuer.example.com/token" in text and "'a b'" in text
    assert SECRET not in text
    k = ClientCredentials(token_url="https://issuer.example.com/token", client_id="c", private_key=client_key)
    pem = client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    assert pem.splitlines()[1] not in repr(k)


class _Recorder(SandboxHTTPServer):
    """A token endpoint that records what it was sent and answers with a fixed token."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ApiRequest] = []
        self.add_route("POST", "/token", self._token)

    def _token(self, request: ApiRequest) -> Response:
        self.requests.append(request)
        return Response.json({"access_token": "opaque-access-token", "token_type": "bearer", "expires_in": "600"})


def test_wire_format_of_a_client_credentials_request(clock: FakeClock) -> None:
    import base64
    from urllib.parse import quote_plus

    with _Recorder() as rec:
        p = ClientCredentials(
            token_url=f"{rec.url}/token",
            client_id="id with space",
            client_secret=SECRET,
            scope=["a", "b"],
            audience="mesh",
            resource=["https://r1", "https://r2"],
            extra_params={"tenant": "t1"},
            refresh=RefreshSettings(clock=clock),
        )
        t = p.token()
        req = rec.requests[0]
    assert t.value == "opaque-access-token" and t.expires_in(clock()) == pytest.approx(600)  # "600" as a string
    form = req.form_lists()
    assert form == {
        "grant_type": ["client_credentials"],
        "scope": ["a b"],
        "audience": ["mesh"],
        "resource": ["https://r1", "https://r2"],
        "tenant": ["t1"],
    }
    basic = base64.b64decode(req.header("Authorization").split()[1]).decode()  # type: ignore[union-attr]
    assert basic == f"{quote_plus('id with space')}:{quote_plus(SECRET)}"  # RFC 6749 §2.3.1
    assert req.header("Accept") == "application/json"
    assert (req.header("User-Agent") or "").startswith("meshclient/")


def test_a_token_without_expiry_gets_the_default_lifetime(clock: FakeClock) -> None:
    class _NoExpiry(_Recorder):
        def _token(self, request: ApiRequest) -> Response:
            return Response.json({"access_token": "opaque-access-token", "token_type": "Bearer"})

    with _NoExpiry() as srv:
        p = ClientCredentials(
            token_url=f"{srv.url}/token",
            client_id="c",
            client_secret="s",
            refresh=RefreshSettings(clock=clock),
            default_lifetime=120,
        )
        assert p.token().expires_in(clock()) == pytest.approx(120)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"access_token": "x", "token_type": "DPoP"}, "Bearer tokens only"),
        ({"token_type": "Bearer"}, "without an access_token"),
        (["not", "an", "object"], "not a JSON object"),
    ],
)
def test_unusable_token_responses(clock: FakeClock, body: object, match: str) -> None:
    class _Odd(_Recorder):
        def _token(self, request: ApiRequest) -> Response:
            return Response.json(body)

    with _Odd() as srv:
        p = ClientCredentials(
            token_url=f"{srv.url}/token", client_id="c", client_secret="s", refresh=RefreshSettings(clock=clock)
        )
        with pytest.raises(TokenEndpointError, match=match):
            p.token()
