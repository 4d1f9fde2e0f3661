"""Egress policy: which server identities this client may send data to (namespace isolation).

A platform team ships the policy with the identity (e.g. a ``policy.json`` key next to
``tls.crt`` in the secret scope), so a job cannot send data to another team's services by
mistake. The check runs before any connection is opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ConfigurationError, EgressDeniedError
from .identity import Identity, IdentityPattern

__all__ = ["EgressPolicy"]


@dataclass(frozen=True)
class EgressPolicy:
    """Allow-list of server identities, matched with Linkerd's rules.

    ``EgressPolicy(allow=["*.ml-serving.serviceaccount.identity.linkerd.cluster.local",
    "spiffe://cluster.local/ns/feature-store/sa/api"])``: DNS patterns may use a leading ``*.``,
    SPIFFE IDs match exactly. An empty list allows nothing.
    """

    allow: tuple[IdentityPattern, ...]

    def __init__(self, allow: Iterable[str | IdentityPattern]) -> None:
        if isinstance(allow, str):
            raise ConfigurationError("EgressPolicy(allow=...) takes a list of identity patterns, not one string.",
                                     hint=f"Write allow=[{allow!r}].")
        object.__setattr__(self, "allow", tuple(IdentityPattern.parse(p) for p in allow))

    @classmethod
    def allow_all(cls) -> EgressPolicy:
        """Every DNS identity (``*``); SPIFFE identities still need an exact entry."""
        return cls(["*"])

    @classmethod
    def from_json(cls, text: str | bytes) -> EgressPolicy:
        """``{"allow": [...]}`` — the shape to store next to the identity in a secret scope."""
        try:
            data = json.loads(text)
            patterns = data["allow"]
        except (ValueError, KeyError, TypeError):
            raise ConfigurationError(
                'An egress policy document must be JSON like {"allow": ["*.ns.serviceaccount.identity.linkerd.cluster.local"]}.'
            ) from None
        if not isinstance(patterns, list):
            raise ConfigurationError('The egress policy "allow" entry must be a list of identity patterns.')
        return cls(patterns)

    def allows(self, identity: Identity | str) -> bool:
        ident = Identity.parse(identity)
        return any(p.matches(ident) for p in self.allow)

    def check(self, identity: Identity | str, *, client_identity: Identity | None = None) -> None:
        """Raise :class:`EgressDeniedError` unless ``identity`` is allowed."""
        ident = Identity.parse(identity)
        if self.allows(ident):
            return
        who = f"'{client_identity}'" if client_identity else "this client"
        raise EgressDeniedError(
            f"The egress policy of {who} does not allow sending to '{ident}' (allowed: "
            f"{', '.join(str(p) for p in self.allow) or 'nothing'}). No connection was opened.",
            hint="If this destination is intended, ask the platform team to add it to the policy shipped with "
            "your identity.",
        )

    def to_json(self) -> str:
        return json.dumps({"allow": [str(p) for p in self.allow]})

    def __repr__(self) -> str:
        return f"EgressPolicy(allow={[str(p) for p in self.allow]!r})"
