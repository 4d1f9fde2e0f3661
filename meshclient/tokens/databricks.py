"""``DatabricksOAuth``: a Databricks token through databricks-sdk's unified authentication.

Whatever the SDK can authenticate with works: OAuth M2M (service principal ``client_id`` +
``client_secret``), notebook-native auth on a cluster driver, workload identity federation
(``auth_type='env-oidc'``/``'file-oidc'`` on SDKs that have them), profiles in
``~/.databrickscfg``, PATs. The token comes from the SDK's public API: ``Config.oauth_token()``
where it exists (expiry included), else the ``Authorization`` header of
``Config.authenticate()`` (databricks-sdk 0.20.0, Databricks Runtime 15.4).

The SDK caches and refreshes its own tokens; this provider asks it again every
``recheck_interval`` seconds (cheap), so the SDK's refresh is picked up long before expiry.

Workload identity federation also works without the SDK (on databricks-sdk 0.20, which lacks
``file-oidc``): ``TokenExchange(token_url=f"{host}/oidc/v1/token", subject_token=FileToken(path),
client_id=<service principal application id>, scope="all-apis")``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigurationError
from ..outbound import Cancelled, OutboundRetryPolicy, RetryLater, call_with_retries, is_network_error
from ..redaction import redact_text
from .base import BaseTokenProvider, RefreshSettings, Token
from .errors import TokenEndpointError, TokenError, TokenUnavailableError

__all__ = ["DatabricksOAuth"]

_INSTALL_HINT = "pip install 'meshclient[databricks]'"
_SENSITIVE = ("client_secret", "token", "password", "azure_client_secret", "google_credentials")
_FATAL_OAUTH = re.compile(r"\b(invalid_\w+|unauthorized_client|access_denied|unsupported_grant_type)\b")
_RETRYABLE = re.compile(r"\b(temporarily_unavailable|server_error)\b|\b50[0234]\b|\b429\b|\b408\b")


def _sdk_config_class() -> Any:
    try:
        from databricks.sdk.core import Config
    except ImportError as exc:
        raise ConfigurationError(
            "DatabricksOAuth needs the databricks-sdk package, which is not installed.",
            hint=f"Install it with: {_INSTALL_HINT}",
        ) from exc
    return Config


def _aware(expiry: _dt.datetime | None) -> _dt.datetime | None:
    """The SDK's expiry is naive *local* time (``datetime.now() + expires_in``)."""
    if expiry is None:
        return None
    if expiry.tzinfo is None:
        return expiry.astimezone(_dt.timezone.utc)
    return expiry


class DatabricksOAuth(BaseTokenProvider):
    """A bearer token from databricks-sdk's unified auth (``Config``/``WorkspaceClient``).

    Pass settings as keywords (``host``, ``client_id``, ``client_secret``, ``auth_type``,
    ``profile``, and any other ``databricks.sdk.core.Config`` attribute such as
    ``oidc_token_filepath``), or an existing ``config=`` (e.g. ``WorkspaceClient().config``).
    With nothing at all the SDK's default chain applies (notebook-native auth on a driver).

    On Spark executors there is no notebook context: ship a provider built from service
    principal settings (it pickles its settings, never a cached token), or a token itself.
    """

    _transient = ("_config",)

    def __init__(
        self,
        *,
        host: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        auth_type: str | None = None,
        profile: str | None = None,
        config: Any = None,
        recheck_interval: float = 60.0,
        retries: OutboundRetryPolicy | None = None,
        refresh: RefreshSettings | None = None,
        **config_kwargs: Any,
    ) -> None:
        super().__init__(refresh=refresh)
        _sdk_config_class()  # fail early, with the install hint, if the extra is missing
        settings = {
            k: v
            for k, v in dict(
                host=host, client_id=client_id, client_secret=client_secret, auth_type=auth_type, profile=profile
            ).items()
            if v is not None
        }
        settings.update({k: v for k, v in config_kwargs.items() if v is not None})
        if config is not None and settings:
            raise ConfigurationError("Pass either config= or Databricks settings to DatabricksOAuth, not both.")
        self._settings: dict[str, Any] = settings
        self._config: Any = config
        self.recheck_interval = float(recheck_interval)
        self.retries = retries or OutboundRetryPolicy()

    @classmethod
    def from_workspace_client(cls, client: Any, **kwargs: Any) -> DatabricksOAuth:
        """Use the authentication an existing ``WorkspaceClient`` was configured with."""
        return cls(config=client.config, **kwargs)

    # ---- helpers --------------------------------------------------------------------------
    def _setting(self, name: str) -> Any:
        if name in self._settings:
            return self._settings[name]
        cfg = self._config
        return getattr(cfg, name, None) if cfg is not None else None

    def _describe(self) -> str:
        parts = []
        for name in ("host", "auth_type", "client_id", "profile"):
            value = self._setting(name)
            if value:
                parts.append(f"{name}={value!r}")
        return f"DatabricksOAuth({', '.join(parts)})"

    def _secrets(self) -> Iterable[str | None]:
        out: list[str | None] = []
        for name in _SENSITIVE:
            value = self._setting(name)
            out.append(value if isinstance(value, str) else None)
        return out

    def _get_config(self) -> Any:
        if self._config is None:
            config_class = _sdk_config_class()
            self._config = config_class(**self._settings)
        return self._config

    def _refresh_at(self, token: Token, obtained: float) -> float | None:
        # Ask the SDK again soon: it refreshes its own cache, we just pick up what it has.
        ahead = super()._refresh_at(token, obtained)
        recheck = obtained + self.recheck_interval
        return recheck if ahead is None else min(ahead, recheck)

    # ---- fetching -------------------------------------------------------------------------
    def _fetch(self) -> Token:
        def attempt() -> Token:
            try:
                return self._fetch_once()
            except TokenError:
                raise
            except Exception as exc:
                raise self._classify(exc) from None

        try:
            return call_with_retries(attempt, policy=self.retries, sleep=self._sleep,
                                     what=f"{self._describe()}: databricks-sdk authentication")
        except (RetryLater, Cancelled) as last:
            raise TokenUnavailableError(
                f"{self._describe()}: no token from databricks-sdk after {last.attempts} attempt(s); "
                f"last: {last.reason.rstrip('.')}.",
                hint="The workspace or its OIDC endpoint is unreachable or failing; a still-valid cached token "
                "stays in use meanwhile.",
            ) from None

    def _classify(self, exc: Exception) -> Exception:
        """What an SDK failure means: refused for good, misconfigured, or worth another try."""
        text = redact_text(str(exc), self._secrets())
        fatal = _FATAL_OAUTH.search(text)
        if fatal:
            return TokenEndpointError(
                f"{self._describe()}: Databricks refused the token request: {text.rstrip('.')}.",
                token_url=str(self._setting("host") or "the Databricks host"),
                client_id=self._setting("client_id"),
                error=fatal.group(1),
                hint="Check the service principal's client_id / secret, or the auth settings "
                "(auth_type, profile, DATABRICKS_* variables).",
            )
        if isinstance(exc, (ValueError, TypeError)) and not _RETRYABLE.search(text) and not is_network_error(exc):
            return TokenError(
                f"{self._describe()}: databricks-sdk could not authenticate: {text.rstrip('.')}.",
                hint="Check host and credentials (auth_type, client_id/client_secret, profile or "
                "DATABRICKS_* variables). Notebook-native auth works on a cluster driver only.",
            )
        return RetryLater(f"{type(exc).__name__}: {text}", error=exc)

    def _fetch_once(self) -> Token:
        cfg = self._get_config()
        oauth_token = getattr(cfg, "oauth_token", None)
        if callable(oauth_token):
            try:
                sdk_token = oauth_token()
            except (ValueError, AttributeError, NotImplementedError) as exc:
                # no OAuth token for this auth type: 0.2x-0.4x say "not available" (ValueError) or,
                # for PATs in 0.49, fail inside the header factory (AttributeError)
                if isinstance(exc, ValueError) and "not available" not in str(exc):
                    raise
            else:
                return Token.from_value(sdk_token.access_token, expires_at=_aware(sdk_token.expiry))
        headers = cfg.authenticate()
        value = None
        for name, header in (headers or {}).items():
            if name.lower() == "authorization" and isinstance(header, str):
                scheme, _, rest = header.partition(" ")
                if scheme.lower() == "bearer" and rest.strip():
                    value = rest.strip()
        if value is None:
            raise TokenError(
                f"{self._describe()}: databricks-sdk authenticated with {getattr(cfg, 'auth_type', None)!r}, "
                "which does not give a bearer token (basic auth?).",
                hint="Use OAuth M2M (client_id + client_secret), notebook-native auth or a PAT.",
            )
        return Token.from_value(value)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        if not self._settings and self._config is not None:
            as_dict = getattr(self._config, "as_dict", None)
            if callable(as_dict):
                state["_settings"] = {k: v for k, v in as_dict().items() if v is not None}
        return state

    def _rebuild(self) -> None:
        self._config = None

