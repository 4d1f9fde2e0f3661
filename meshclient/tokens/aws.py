"""``AwsWebIdentityToken``: a JWT for this AWS identity from STS ``GetWebIdentityToken``.

AWS IAM outbound identity federation: STS signs a short-lived JWT (60 s to 1 h, 5 min by
default) asserting the calling role, verifiable at the account's OIDC issuer. A mesh service
(or an issuer doing RFC 8693 token exchange, see :class:`~meshclient.tokens.TokenExchange`)
trusts it with no stored secret. The call needs the account feature enabled and a regional
STS endpoint (the global one does not offer it). boto3 is the optional extra ``aws``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ..errors import ConfigurationError
from ..redaction import redact_text
from .base import BaseTokenProvider, RefreshSettings, Token
from .errors import TokenEndpointError, TokenError, TokenUnavailableError

__all__ = ["AwsWebIdentityToken"]

_INSTALL_HINT = "pip install 'meshclient[aws]'"
_HINTS = {
    "OutboundWebIdentityFederationDisabledException": (
        "Enable outbound identity federation for the AWS account (IAM console or "
        "iam:EnableOutboundWebIdentityFederation) before asking STS for web identity tokens."
    ),
    "AccessDenied": "Allow sts:GetWebIdentityToken for this role (and the audiences) in its IAM policy.",
    "AccessDeniedException": "Allow sts:GetWebIdentityToken for this role (and the audiences) in its IAM policy.",
    "SessionDurationEscalationException": "Ask for a shorter duration_seconds: it may not outlive the session.",
    "JWTPayloadSizeExceededException": "Send fewer tags: the token would be too large.",
    "ValidationError": "Check audience (1-10 values), signing_algorithm (RS256 or ES384) and duration (60-3600 s).",
}


def _boto3() -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ConfigurationError(
            "AwsWebIdentityToken needs boto3, which is not installed.",
            hint=f"Install it with: {_INSTALL_HINT}",
        ) from exc
    return boto3


class AwsWebIdentityToken(BaseTokenProvider):
    """A web identity JWT for the current AWS credentials, refreshed ahead of expiry.

    ``audience`` is one value or up to ten. ``region_name`` defaults to the boto3 session's
    region (``AWS_REGION``); ``endpoint_url`` overrides the STS endpoint. ``client`` injects a
    ready STS client (tests: a botocore ``Stubber``); it is not pickled, a fresh client is
    built on arrival from ``region_name``/``endpoint_url``/``profile_name``.
    """

    _transient = ("_client",)

    def __init__(
        self,
        audience: str | Sequence[str],
        *,
        signing_algorithm: Literal["RS256", "ES384"] = "ES384",
        duration_seconds: int | None = None,
        subject_mode: Literal["AWSIdentity", "OriginIdentity"] | None = None,
        scope: str | None = None,
        tags: Mapping[str, str] | None = None,
        region_name: str | None = None,
        profile_name: str | None = None,
        endpoint_url: str | None = None,
        client: Any = None,
        refresh: RefreshSettings | None = None,
    ) -> None:
        super().__init__(refresh=refresh)
        if client is None:
            _boto3()  # fail early, with the install hint
        self.audience: tuple[str, ...] = (audience,) if isinstance(audience, str) else tuple(audience)
        if not 1 <= len(self.audience) <= 10 or not all(self.audience):
            raise ConfigurationError("AwsWebIdentityToken needs 1 to 10 non-empty audience values.")
        if signing_algorithm not in ("RS256", "ES384"):
            raise ConfigurationError(
                f"signing_algorithm {signing_algorithm!r} is not offered by STS.", hint="Use 'ES384' or 'RS256'."
            )
        if duration_seconds is not None and not 60 <= duration_seconds <= 3600:
            raise ConfigurationError("duration_seconds must be between 60 and 3600.")
        self.signing_algorithm = signing_algorithm
        self.duration_seconds = duration_seconds
        self.subject_mode = subject_mode
        self.scope = scope
        self.tags = dict(tags or {})
        self.region_name = region_name
        self.profile_name = profile_name
        self.endpoint_url = endpoint_url
        self._client: Any = client

    def _describe(self) -> str:
        parts = [f"audience={list(self.audience)!r}"]
        if self.region_name:
            parts.append(f"region_name={self.region_name!r}")
        if self.profile_name:
            parts.append(f"profile_name={self.profile_name!r}")
        return f"AwsWebIdentityToken({', '.join(parts)})"

    def _get_client(self) -> Any:
        if self._client is None:
            boto3 = _boto3()
            session = boto3.session.Session(profile_name=self.profile_name, region_name=self.region_name)
            if not session.region_name and not self.endpoint_url:
                raise TokenError(
                    f"{self._describe()}: no AWS region: STS GetWebIdentityToken needs a regional endpoint.",
                    hint="Pass region_name= or set AWS_REGION.",
                )
            self._client = session.client("sts", endpoint_url=self.endpoint_url)
        return self._client

    def _secrets(self) -> Iterable[str | None]:
        return ()

    def _fetch(self) -> Token:
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
            NoCredentialsError,
        )

        client = self._get_client()
        if not hasattr(client, "get_web_identity_token"):
            raise TokenError(
                f"{self._describe()}: this botocore does not know STS GetWebIdentityToken.",
                hint="Upgrade boto3 and botocore (pip install -U boto3).",
            )
        params: dict[str, Any] = {"Audience": list(self.audience), "SigningAlgorithm": self.signing_algorithm}
        if self.duration_seconds is not None:
            params["DurationSeconds"] = self.duration_seconds
        if self.subject_mode is not None:
            params["SubjectMode"] = self.subject_mode
        if self.scope is not None:
            params["Scope"] = self.scope
        if self.tags:
            params["Tags"] = [{"Key": k, "Value": v} for k, v in self.tags.items()]
        try:
            resp = client.get_web_identity_token(**params)
        except NoCredentialsError:
            raise TokenError(
                f"{self._describe()}: no AWS credentials found.",
                hint="Run with an instance profile / IRSA role, or set AWS credentials for boto3.",
            ) from None
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            message = redact_text(str(err.get("Message", "")), ())
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            text = f"{self._describe()}: STS GetWebIdentityToken failed: {code}" + (f": {message}" if message else "")
            if code in ("Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable") or (
                isinstance(status, int) and status >= 500
            ):
                raise TokenUnavailableError(
                    text + ".", hint="STS is throttling or failing; botocore already retried."
                ) from None
            raise TokenEndpointError(
                text + ".",
                token_url=str(getattr(getattr(client, "meta", None), "endpoint_url", "STS")),
                error=code,
                status=status if isinstance(status, int) else None,
                hint=_HINTS.get(code),
            ) from None
        except BotoCoreError as exc:
            raise TokenUnavailableError(f"{self._describe()}: STS could not be reached: {exc}") from None
        value = resp.get("WebIdentityToken")
        if not isinstance(value, str) or not value:
            raise TokenError(f"{self._describe()}: STS answered without a WebIdentityToken.")
        expiration = resp.get("Expiration")
        return Token.from_value(value, expires_at=expiration)
