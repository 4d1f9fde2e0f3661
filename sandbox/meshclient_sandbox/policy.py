"""Inbound authorization policy for the sandbox proxy, modeled on Linkerd's.

A :class:`ServerPolicy` is what Linkerd computes for one port of a pod: a list of
:class:`Authorization` entries (each one authentication requirement plus the client networks
it applies to) and an access policy that applies when none of them matches. The access
policy takes Linkerd's default-policy names:

* ``all-unauthenticated``: every client, TLS or not;
* ``all-authenticated``: any client with a verified mesh identity (DNS identities only, as in
  Linkerd, where ``*`` is a suffix match that never matches a URI identity);
* ``cluster-unauthenticated`` / ``cluster-authenticated``: the same, from the cluster
  networks only;
* ``deny``: nobody, unless an authorization matches.

``allow`` lists MeshTLSAuthentication identities: exact DNS identities, ``*.suffix``
wildcards (DNS only), ``*`` (any DNS identity) and exact SPIFFE IDs, matched by
:class:`~meshclient.identity.IdentityPattern` with Linkerd's rules
(linkerd2-proxy ``linkerd/app/inbound/src/policy.rs`` ``is_tls_authorized``).
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from meshclient.errors import ConfigurationError
from meshclient.identity import Identity, IdentityPattern

__all__ = [
    "AccessPolicy",
    "Authorization",
    "ClientInfo",
    "Decision",
    "ServerPolicy",
    "ALL_NETWORKS",
    "DEFAULT_CLUSTER_NETWORKS",
    "UNAUTHORIZED_ROUTE",
]

Network: TypeAlias = "ipaddress.IPv4Network | ipaddress.IPv6Network"
AuthenticationKind = Literal["unauthenticated", "tls-unauthenticated", "tls-authenticated"]

ALL_NETWORKS: tuple[Network, ...] = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
#: Linkerd's default ``clusterNetworks`` (charts values.yaml), plus loopback for the sandbox.
DEFAULT_CLUSTER_NETWORKS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8", "127.0.0.0/8", "::1/128")
)
#: The ``l5d-proxy-error`` text of Linkerd's ``HttpRouteUnauthorized``.
UNAUTHORIZED_ROUTE = "unauthorized request on route"


class AccessPolicy(str, enum.Enum):
    """Linkerd's default inbound policies (``config.linkerd.io/default-inbound-policy``)."""

    ALL_UNAUTHENTICATED = "all-unauthenticated"
    ALL_AUTHENTICATED = "all-authenticated"
    CLUSTER_UNAUTHENTICATED = "cluster-unauthenticated"
    CLUSTER_AUTHENTICATED = "cluster-authenticated"
    DENY = "deny"


def _networks(networks: Iterable[str | Network]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(n) if isinstance(n, str) else n for n in networks)
    except ValueError as exc:
        raise ConfigurationError(f"Invalid network in policy: {exc}.", hint="Write networks as CIDRs.") from None


@dataclass(frozen=True)
class ClientInfo:
    """What the proxy knows about a client: its address, whether TLS was terminated, its identity."""

    address: str
    tls: bool
    identity: Identity | None = None

    def describe(self) -> str:
        if self.identity is not None:
            return f"client '{self.identity}'"
        return "a TLS client without a certificate" if self.tls else "a plaintext client"


@dataclass(frozen=True)
class Authorization:
    """One authorization: an authentication requirement and the networks it applies to.

    ``tls-authenticated`` needs a verified identity matching one of ``identities``;
    ``tls-unauthenticated`` any terminated TLS; ``unauthenticated`` anything.
    """

    name: str
    authentication: AuthenticationKind
    identities: tuple[IdentityPattern, ...] = ()
    networks: tuple[Network, ...] = ALL_NETWORKS

    @classmethod
    def mesh_tls(cls, identities: Iterable[str | IdentityPattern], *, name: str = "meshtls",
                 networks: Iterable[str | Network] = ALL_NETWORKS) -> Authorization:
        """A MeshTLSAuthentication: exact identities, ``*.suffix`` and ``*`` (DNS only), SPIFFE IDs exactly."""
        patterns = tuple(IdentityPattern.parse(p) for p in identities)
        if not patterns:
            raise ConfigurationError("A MeshTLS authorization needs at least one identity.",
                                     hint="Use '*' for any DNS identity.")
        return cls(name, "tls-authenticated", patterns, _networks(networks))

    @classmethod
    def unauthenticated(cls, *, name: str = "unauthenticated",
                        networks: Iterable[str | Network] = ALL_NETWORKS) -> Authorization:
        return cls(name, "unauthenticated", (), _networks(networks))

    @classmethod
    def tls_unauthenticated(cls, *, name: str = "tls-unauthenticated",
                            networks: Iterable[str | Network] = ALL_NETWORKS) -> Authorization:
        return cls(name, "tls-unauthenticated", (), _networks(networks))

    def permits(self, client: ClientInfo) -> bool:
        """Linkerd's ``is_authorized``: the network first, then the authentication."""
        try:
            address = ipaddress.ip_address(client.address)
        except ValueError:
            return False
        if not any(address in net for net in self.networks):
            return False
        if self.authentication == "unauthenticated":
            return True
        if self.authentication == "tls-unauthenticated":
            return client.tls
        if client.identity is None:
            return False
        return any(p.matches(client.identity) for p in self.identities)


@dataclass(frozen=True)
class Decision:
    """The outcome for one client: allowed or not, by which authorization, and why (for 403s and logs)."""

    allowed: bool
    authorization: str | None
    reason: str  # the l5d-proxy-error text
    detail: str


class ServerPolicy:
    """The policy of one server port: authorizations, then the access policy as a fallback.

    ``ServerPolicy("deny", allow=["*.ml-team.serviceaccount.identity.linkerd.cluster.local"])``
    is a Linkerd ``Server`` with ``accessPolicy: deny`` and an AuthorizationPolicy over a
    MeshTLSAuthentication for the ``ml-team`` namespace. ``server`` names the server in
    denial messages (the proxy passes its identity when empty). Immutable; swap a whole
    policy on the proxy to change it.
    """

    __slots__ = ("access", "allow", "authorizations", "cluster_networks", "server", "_effective")

    access: AccessPolicy
    allow: tuple[IdentityPattern, ...]
    authorizations: tuple[Authorization, ...]
    cluster_networks: tuple[Network, ...]
    server: str
    _effective: tuple[Authorization, ...]

    def __init__(
        self,
        access: AccessPolicy | str = AccessPolicy.ALL_UNAUTHENTICATED,
        allow: Iterable[str | IdentityPattern] = (),
        *,
        authorizations: Iterable[Authorization] = (),
        cluster_networks: Iterable[str | Network] = DEFAULT_CLUSTER_NETWORKS,
        server: str = "",
    ) -> None:
        try:
            mode = AccessPolicy(access)
        except ValueError:
            names = ", ".join(p.value for p in AccessPolicy)
            raise ConfigurationError(f"Unknown access policy {access!r}.", hint=f"Use one of: {names}.") from None
        if isinstance(allow, str):
            allow = [allow]
        patterns = tuple(IdentityPattern.parse(p) for p in allow)
        extra = tuple(authorizations)
        cluster = _networks(cluster_networks)
        effective: list[Authorization] = []
        if patterns:
            effective.append(Authorization("meshtls", "tls-authenticated", patterns, ALL_NETWORKS))
        effective.extend(extra)
        effective.extend(_access_authorizations(mode, cluster))
        for name, value in (("access", mode), ("allow", patterns), ("authorizations", extra),
                            ("cluster_networks", cluster), ("server", server), ("_effective", tuple(effective))):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ServerPolicy is immutable; build a new one.")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerPolicy):
            return NotImplemented
        return (self.access, self.allow, self.authorizations, self.cluster_networks, self.server) == (
            other.access, other.allow, other.authorizations, other.cluster_networks, other.server)

    def __hash__(self) -> int:
        return hash((self.access, self.allow, self.authorizations, self.server))

    def __repr__(self) -> str:
        allow = ", ".join(repr(str(p)) for p in self.allow)
        extra = f", authorizations={len(self.authorizations)}" if self.authorizations else ""
        return f"ServerPolicy({self.access.value!r}, allow=[{allow}]{extra})"

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | ServerPolicy | str | None) -> ServerPolicy:
        """Build from ``{"access": "deny", "allow": [...]}`` (``default`` is accepted for ``access``)."""
        if isinstance(config, ServerPolicy):
            return config
        if config is None:
            return cls()
        if isinstance(config, str):
            return cls(config)
        unknown = set(config) - {"access", "default", "allow", "cluster_networks", "server"}
        if unknown:
            raise ConfigurationError(f"Unknown policy keys: {', '.join(sorted(unknown))}.",
                                     hint="Use access (or default), allow, cluster_networks, server.")
        return cls(
            config.get("access", config.get("default", AccessPolicy.ALL_UNAUTHENTICATED)),
            config.get("allow", ()),
            cluster_networks=config.get("cluster_networks", DEFAULT_CLUSTER_NETWORKS),
            server=config.get("server", ""),
        )

    def to_config(self) -> dict[str, Any]:
        """The JSON-friendly form (for sandbox.json and logs)."""
        return {"access": self.access.value, "allow": [str(p) for p in self.allow]}

    @property
    def effective_authorizations(self) -> Sequence[Authorization]:
        """The authorizations checked in order, the access policy's last."""
        return self._effective

    def check(self, client: ClientInfo, *, server: str = "") -> Decision:
        """Decide for one client; ``server`` names the server in the denial detail."""
        for authz in self._effective:
            if authz.permits(client):
                return Decision(True, authz.name, "", "")
        name = self.server or server or "this server"
        detail = f"{client.describe()} is not authorized to access server '{name}'"
        if client.identity is not None and client.identity.is_spiffe and any(
            p.text == "*" or p.text.startswith("*.") for a in self._effective for p in a.identities
        ):
            detail += " (wildcards never match SPIFFE identities; list the SPIFFE ID exactly)"
        return Decision(False, None, UNAUTHORIZED_ROUTE, detail)


def _access_authorizations(mode: AccessPolicy, cluster: tuple[Network, ...]) -> tuple[Authorization, ...]:
    """Linkerd's default policies as authorizations (policy-controller ``defaults.rs``)."""
    any_dns = (IdentityPattern("*"),)
    if mode is AccessPolicy.ALL_UNAUTHENTICATED:
        return (Authorization("default:all-unauthenticated", "unauthenticated"),)
    if mode is AccessPolicy.ALL_AUTHENTICATED:
        return (Authorization("default:all-authenticated", "tls-authenticated", any_dns),)
    if mode is AccessPolicy.CLUSTER_UNAUTHENTICATED:
        return (Authorization("default:cluster-unauthenticated", "unauthenticated", (), cluster),)
    if mode is AccessPolicy.CLUSTER_AUTHENTICATED:
        return (Authorization("default:cluster-authenticated", "tls-authenticated", any_dns, cluster),)
    return ()
