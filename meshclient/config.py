"""``ClientConfig``: the single source of a ``MeshClient``'s settings.

Every setting is listed once, here, with its default and its check: ``MeshClient(...)`` builds a
config from its arguments (each checked where it is given, naming the argument), the client is
built from the config, and ``client.config()`` returns it. A config is plain, picklable data —
credentials material, token provider settings, policy, retry and timeout knobs — never SSL
contexts, pools, locks or threads, so an executor can rebuild an equivalent client
(:func:`meshclient.worker_cache.client_for`, used by :func:`meshclient.spark.share`).
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .credentials import Credentials
from .credentials.sources import IdentitySource
from .errors import ArgumentTypeError, ConfigurationError
from .policy import EgressPolicy
from .tokens import TokenProvider
from .transport.budget import RetryBudget
from .transport.prepare import check_headers
from .transport.retry import RetryPolicy

__all__ = ["ClientConfig", "DEFAULT_TIMEOUT", "check_timeout", "check_deadline", "check_flag"]

#: (connect, read) seconds per attempt. A dead pod fails fast (3 s to connect, 3 attempts), a slow model or
#: a large upload needs a longer read; ``deadline=`` bounds all attempts together.
DEFAULT_TIMEOUT: tuple[float, float] = (3.0, 60.0)


def _positive_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{what} must be a number of seconds, got {type(value).__name__}.",
                                hint=f"Write e.g. {what}=10.")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigurationError(f"{what} must be a positive number of seconds, got {seconds:g}.",
                                 hint=f"Write e.g. {what}=10, or leave it out for the default.")
    return seconds


def check_timeout(value: object, what: str = "timeout") -> tuple[float, float]:
    """``10`` or ``(connect, read)`` → ``(connect, read)``, both positive and finite."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigurationError(f"{what} must be one number or a (connect, read) pair, got {len(value)} values.",
                                     hint=f"Write e.g. {what}=(3, 60).")
        return _positive_seconds(value[0], f"{what}[0] (connect)"), _positive_seconds(value[1], f"{what}[1] (read)")
    seconds = _positive_seconds(value, what)
    return seconds, seconds


def check_deadline(value: object, what: str = "deadline") -> float | None:
    return None if value is None else _positive_seconds(value, what)


def check_flag(value: object, what: str) -> bool:
    """A real ``bool``: ``allow_tls12='no'`` must not turn TLS 1.2 on because the string is truthy."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{what} must be True or False, got {type(value).__name__}.",
                                hint=f"Write {what}=True or {what}=False.")
    return value


def _check_instance(value: object, kinds: tuple[type, ...], what: str, hint: str) -> None:
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ArgumentTypeError(f"{what} must be a {names}, got {type(value).__name__}.", hint=hint)


def _check_token(value: object) -> None:
    if value is None:
        return
    if isinstance(value, str) or not (callable(getattr(value, "token", None))
                                      and callable(getattr(value, "on_unauthorized", None))):
        raise ArgumentTypeError(
            f"token must be a token provider from meshclient.tokens, got {type(value).__name__}.",
            hint='Wrap a fixed token: token=meshclient.tokens.StaticToken("..."); or use ClientCredentials(...).',
        )


def _check_audit(value: object) -> None:
    if value is None or isinstance(value, (bool, str, os.PathLike, logging.Logger)) or callable(value):
        return
    raise ArgumentTypeError(
        f"audit must be a callable, True, a logging.Logger or a file path, got {type(value).__name__}.",
        hint="Write audit=True for the meshclient.audit logger, or audit=print.",
    )


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """Everything needed to build a ``MeshClient`` (and to rebuild it in another process).

    Pickling a config pickles the credentials (certificate chain, key and anchors as PEM) and
    the token provider's settings: ship it the way secrets are shipped on Databricks — sealed
    (``meshclient.spark.share``), never in a printed plan or a log. ``repr`` shows only the identity.
    """

    credentials: Credentials | IdentitySource
    #: a provider from :mod:`meshclient.tokens`; its bearer token goes on every request
    token: TokenProvider | None = None
    #: requests to identities it does not allow fail before any connection is opened
    policy: EgressPolicy | None = None
    #: audit sink setting: a callable, ``True``, a ``logging.Logger`` or a file path
    audit: Any = None
    #: what may be retried and how long to wait (``RetryPolicy.disabled()``: never)
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    #: bounds retries to a share of the traffic (shared by every request of the client)
    retry_budget: RetryBudget = field(default_factory=RetryBudget)
    #: (connect, read) seconds per attempt; one number sets both
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    #: seconds for all attempts of a request together (``None``: bounded by timeouts and retries only)
    deadline: float | None = None
    #: accept TLS 1.2 servers (Linkerd speaks TLS 1.3 only; for other peers)
    allow_tls12: bool = False
    #: keep-alive connections kept per (address, identity): at least the number of threads that
    #: send to one address at once (more concurrent requests open extra connections, closed after use)
    pool_maxsize: int = 32
    #: headers sent with every request
    headers: tuple[tuple[str, str], ...] = ()
    #: identifies this config across pickling (one cached client per worker process)
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        _check_instance(self.credentials, (Credentials, IdentitySource), "credentials",
                        "Build one with Credentials.from_files(...), from_pem(...), from_env(), or "
                        "meshclient.FileSource(cert=..., key=..., trust_anchors=...) for material that rotates.")
        _check_token(self.token)
        if self.policy is not None:
            _check_instance(self.policy, (EgressPolicy,), "policy",
                            'Write policy=meshclient.EgressPolicy(allow=["*.ns.serviceaccount..."]).')
        _check_audit(self.audit)
        _check_instance(self.retries, (RetryPolicy,), "retries",
                        "Write retries=meshclient.RetryPolicy(max_attempts=3), or RetryPolicy.disabled().")
        _check_instance(self.retry_budget, (RetryBudget,), "retry_budget",
                        "Write retry_budget=meshclient.RetryBudget(retry_ratio=0.2).")
        object.__setattr__(self, "timeout", check_timeout(self.timeout))
        object.__setattr__(self, "deadline", check_deadline(self.deadline))
        check_flag(self.allow_tls12, "allow_tls12")
        if isinstance(self.pool_maxsize, bool) or not isinstance(self.pool_maxsize, int):
            raise ArgumentTypeError(f"pool_maxsize must be an int, got {type(self.pool_maxsize).__name__}.",
                                    hint="Write e.g. pool_maxsize=32 (the number of threads sharing the client).")
        if not 1 <= self.pool_maxsize <= 10_000:
            raise ConfigurationError(f"pool_maxsize must be between 1 and 10000, got {self.pool_maxsize}.",
                                     hint="Size it to the number of threads sharing the client.")
        headers = dict(self.headers) if isinstance(self.headers, tuple) else self.headers
        object.__setattr__(self, "headers", tuple(check_headers(headers, "headers").items()))

    @classmethod
    def create(cls, credentials: Credentials | IdentitySource | None, **settings: Any) -> ClientConfig:
        """A config from ``MeshClient``'s arguments: ``None`` means the default; no credentials
        means the ``MESHCLIENT_*`` environment variables."""
        known = {f.name for f in fields(cls)} - {"credentials", "key"}
        unknown = set(settings) - known
        if unknown:
            raise ArgumentTypeError(f"Unknown MeshClient setting(s): {', '.join(sorted(unknown))}.",
                                    hint=f"Settings are: {', '.join(sorted(known))}.")
        if credentials is None:
            credentials = Credentials.from_env()
        if isinstance(settings.get("headers"), Mapping):
            settings["headers"] = tuple(check_headers(settings["headers"], "headers").items())
        return cls(credentials, **{k: v for k, v in settings.items() if v is not None})

    def with_credentials(self, credentials: Credentials | IdentitySource) -> ClientConfig:
        return replace(self, credentials=credentials, key=uuid.uuid4().hex)

    def __repr__(self) -> str:
        creds = self.credentials
        who = creds.description if isinstance(creds, IdentitySource) else f"identity='{creds.identity}'"
        return f"ClientConfig({who}, key={self.key[:8]!r})"
