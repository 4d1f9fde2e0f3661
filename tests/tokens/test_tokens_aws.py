"""AwsWebIdentityToken: STS GetWebIdentityToken through boto3, answered by botocore's Stubber.

No AWS endpoint is reachable here, so the real boto3 client is used with its HTTP layer
stubbed: request parameters are validated against STS's service model, errors come back as
real ``ClientError``s.
"""

from __future__ import annotations

import datetime as dt
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tokens_helpers import FakeClock

from meshclient import ConfigurationError
from meshclient.jose import sign_jwt
from meshclient.tokens import (
    AwsWebIdentityToken,
    RefreshSettings,
    TokenEndpointError,
    TokenError,
    TokenUnavailableError,
)

boto3 = pytest.importorskip("boto3")
stub = pytest.importorskip("botocore.stub")

ROLE = "arn:aws:sts::123456789012:assumed-role/databricks-jobs/i-0abc"


@pytest.fixture
def sts(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "example-secret-access-key-000000000000000")
    client = boto3.session.Session(region_name="eu-west-1").client("sts")
    if not hasattr(client, "get_web_identity_token"):
        pytest.skip("this botocore predates STS GetWebIdentityToken")
    with stub.Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def web_identity_jwt(clock: FakeClock, lifetime: int = 300) -> tuple[str, dt.datetime]:
    exp = int(clock()) + lifetime
    claims = {
        "iss": "https://abc.tokens.sts.global.api.aws",
        "sub": ROLE,
        "aud": "mesh-services",
        "iat": int(clock()),
        "exp": exp,
    }
    return sign_jwt(claims, ec.generate_private_key(ec.SECP384R1())), dt.datetime.fromtimestamp(exp, dt.timezone.utc)


def test_token_from_sts(sts: tuple[Any, Any], clock: FakeClock) -> None:
    client, stubber = sts
    value, expiry = web_identity_jwt(clock)
    stubber.add_response(
        "get_web_identity_token",
        {"WebIdentityToken": value, "Expiration": expiry},
        {
            "Audience": ["mesh-services"],
            "SigningAlgorithm": "ES384",
            "DurationSeconds": 300,
            "Tags": [{"Key": "team", "Value": "ml"}],
        },
    )
    p = AwsWebIdentityToken(
        "mesh-services", duration_seconds=300, tags={"team": "ml"}, client=client, refresh=RefreshSettings(clock=clock)
    )
    t = p.token()
    assert t.value == value and t.subject == ROLE and t.expires_at == expiry
    assert p.token() is t  # cached: one STS call
    assert value not in repr(p) and "mesh-services" in repr(p)


def test_refresh_when_stale(sts: tuple[Any, Any], clock: FakeClock) -> None:
    client, stubber = sts
    first, exp1 = web_identity_jwt(clock)
    stubber.add_response("get_web_identity_token", {"WebIdentityToken": first, "Expiration": exp1})
    p = AwsWebIdentityToken(
        ["mesh-services", "scoring"], signing_algorithm="RS256", client=client, refresh=RefreshSettings(clock=clock)
    )
    assert p.token().value == first
    clock.advance(300)  # expired
    second, exp2 = web_identity_jwt(clock)
    stubber.add_response("get_web_identity_token", {"WebIdentityToken": second, "Expiration": exp2})
    assert p.token().value == second


@pytest.mark.parametrize(
    ("code", "status", "error", "hint"),
    [
        ("OutboundWebIdentityFederationDisabledException", 403, TokenEndpointError, "Enable outbound"),
        ("AccessDenied", 403, TokenEndpointError, "sts:GetWebIdentityToken"),
        ("Throttling", 400, TokenUnavailableError, "throttling"),
        ("InternalFailure", 500, TokenUnavailableError, "throttling or failing"),
    ],
)
def test_sts_errors(sts: tuple[Any, Any], clock: FakeClock, code: str, status: int, error: type, hint: str) -> None:
    client, stubber = sts
    stubber.add_client_error(
        "get_web_identity_token", service_error_code=code, service_message="nope", http_status_code=status
    )
    p = AwsWebIdentityToken("mesh-services", client=client, refresh=RefreshSettings(clock=clock))
    with pytest.raises(error) as info:
        p.token()
    assert code in str(info.value) and hint in (info.value.hint or "")


def test_pickled_without_the_client(sts: tuple[Any, Any], clock: FakeClock) -> None:
    client, _ = sts
    p = AwsWebIdentityToken(
        "mesh-services", region_name="eu-west-1", client=client, refresh=RefreshSettings(clock=clock)
    )
    q = pickle.loads(pickle.dumps(p))
    assert q._client is None and q.region_name == "eu-west-1"
    assert q._get_client().meta.region_name == "eu-west-1"  # rebuilt from the settings on arrival


def test_no_region_is_a_clear_error(clean_env: Path) -> None:
    p = AwsWebIdentityToken("mesh-services")
    with pytest.raises(TokenError, match="region"):
        p.token()


def test_bad_settings() -> None:
    with pytest.raises(ConfigurationError):
        AwsWebIdentityToken([])
    with pytest.raises(ConfigurationError):
        AwsWebIdentityToken("a", signing_algorithm="HS256")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AwsWebIdentityToken("a", duration_seconds=30)


def test_missing_boto3_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigurationError, match=r"meshclient\[aws\]"):
        AwsWebIdentityToken("mesh-services")
