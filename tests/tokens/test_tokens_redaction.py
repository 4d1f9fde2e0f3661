"""No secret or token text in any log line, exception message or repr, with logging at DEBUG."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tokens_helpers import CLIENT_ID, LIFETIME, SECRET, FakeClock, RecordingSleep

from meshclient.redaction import redact_text as redact
from meshclient.tokens import (
    ClientCredentials,
    EnvironmentToken,
    FileToken,
    RefreshSettings,
    StaticToken,
    TokenError,
    TokenExchange,
)
from meshclient_sandbox.oidc import OIDCIssuer


def test_redact_masks_secrets_jwts_and_bearer_values() -> None:
    text = "secret=hunter2hunter2 jwt=eyJhbGciOi.eyJzdWIiOiJ4In0.c2ln header: Bearer abcdefgh12345678"
    out = redact(text, ["hunter2hunter2", None, "ab"])
    assert "hunter2" not in out and "eyJ" not in out and "abcdefgh12345678" not in out
    assert "<jwt>" in out and "Bearer ***" in out


def test_nothing_secret_reaches_logs_errors_or_reprs(
    issuer: OIDCIssuer,
    clock: FakeClock,
    sleeps: RecordingSleep,
    client_key: ec.EllipticCurvePrivateKey,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, the sandbox's, urllib3's
    seen: list[str] = []  # exception messages and reprs
    tokens: list[str] = []

    def attempt(fn: object) -> None:
        try:
            result = fn()  # type: ignore[operator]
        except TokenError as exc:
            seen.extend([str(exc), repr(exc), str(exc.__cause__ or "")])
        else:
            tokens.append(result.value)
            seen.extend([repr(result), str(result)])

    cc = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope="mesh.read",
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
    )
    pk = ClientCredentials(
        token_url=issuer.token_url,
        client_id="jwt-client",
        private_key=client_key,
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
    )
    wrong = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret="Wr0ng-" + SECRET,
        auth_method="client_secret_post",
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
    )
    subject = issuer.issue_token("system:serviceaccount:ml-team:scorer")
    tokens.append(subject)
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=subject,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        audience="scoring",
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
    )
    file_path = tmp_path / "tok"
    file_path.write_text("file-token-0123456789")
    monkeypatch.setenv("MESHCLIENT_TOKEN", "env-token-0123456789")
    tokens += ["file-token-0123456789", "env-token-0123456789", "static-token-0123456789"]
    providers = [cc, pk, wrong, x, FileToken(file_path), EnvironmentToken(), StaticToken("static-token-0123456789")]

    for p in providers:
        attempt(p.token)
        seen.append(repr(p))
    attempt(lambda: cc.on_unauthorized(cc.authorization_header()) and cc.token())
    # outage: background refresh fails (WARNING), then the expiry error
    issuer.set_outage()
    clock.advance(LIFETIME - 30)
    attempt(cc.token)
    if cc._async_thread is not None:
        cc._async_thread.join(30)
    clock.advance(60)
    attempt(cc.token)
    attempt(x.token)
    issuer.clear_faults()
    issuer.set_throttle(3600, times=1)
    attempt(pk.token)
    issuer.clear_faults()
    attempt(pk.token)
    for p in providers:
        seen.append(repr(pickle.loads(pickle.dumps(p))))

    pem_lines = (
        client_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
        .splitlines()[1:-1]
    )
    haystack = caplog.text + "\n".join(seen)
    assert len(tokens) >= 8 and caplog.records  # the scenario really ran and logged
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    for needle in [SECRET, "Wr0ng-" + SECRET, *tokens, *pem_lines]:
        assert needle not in haystack, f"secret material leaked: {needle[:6]}…"


QUERY_SECRET = "QUERYSECRET-k4"


def _shown(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=True)) + repr(exc) + \
        repr(getattr(exc, "__dict__", {}))


def test_a_token_url_query_value_appears_in_no_error_chain_or_log(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 10 item 2: a token URL with a query (an API key in it, say) once showed its value in
    TokenEndpointError / TokenUnavailableError and in urllib3's "Max retries exceeded with url:
    /token?x=..." INFO line."""
    import socket

    caplog.set_level(logging.DEBUG)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    texts: list[str] = []
    for url, secret in ((f"http://127.0.0.1:{dead}/token?api_key={QUERY_SECRET}", SECRET),
                        (f"{issuer.token_url}?api_key={QUERY_SECRET}", "Wr0ng-" + SECRET)):
        provider = ClientCredentials(token_url=url, client_id=CLIENT_ID, client_secret=secret,
                                     refresh=RefreshSettings(clock=clock, sleep=sleeps))
        with pytest.raises(TokenError) as info:
            provider.token()
        texts.extend([_shown(info.value), repr(provider)])
    texts.append(caplog.text + "\n".join(r.getMessage() for r in caplog.records))
    assert any("api_key=..." in t for t in texts)  # the URL is still shown, its value masked
    for text in texts:
        assert QUERY_SECRET not in text
        assert SECRET not in text


def test_redact_text_masks_query_values_in_free_text() -> None:
    text = "Max retries exceeded with url: /token?api_key=abc123&x=1 (Caused by ...)"
    assert redact(text) == "Max retries exceeded with url: /token?api_key=...&x=... (Caused by ...)"
