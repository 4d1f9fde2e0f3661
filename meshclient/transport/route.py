"""Where a request goes and who must answer: URL + identity (+ direct mode, endpoints) → routes.

A :class:`Route` is the unit of connection pooling: one address, the identity that must
answer there, the SNI to send, and — in Linkerd's direct mode — the application port named in
the transport header. A :class:`Target` is what one logical request may use: a fixed route, or
a balanced set of endpoints that all serve the same identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import ConfigurationError
from ..identity import Identity
from ..redaction import redact_url
from ..tls import sni_for
from .address import parse_address, split_url
from .balancer import Balancer, DnsEndpoints, Endpoint, StaticEndpoints

__all__ = ["Route", "Target", "DIRECT_PORT", "route_for", "target_for"]

#: The Linkerd proxy's inbound port, where direct mode connects.
DIRECT_PORT = 4143

@dataclass(frozen=True)
class Route:
    """One address, the identity that must answer there, and the SNI to send."""

    host: str
    port: int
    server_identity: Identity
    sni: str
    #: Linkerd direct mode: the application port to name in the transport header, while
    #: ``host:port`` is the proxy's inbound port (4143 in a cluster).
    direct_target_port: int | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_direct(self) -> bool:
        return self.direct_target_port is not None


def _direct_route(direct: object, host: str, port: int, identity: Identity, sni: str) -> Route:
    if direct is True:
        return Route(host, DIRECT_PORT, identity, sni, direct_target_port=port)
    dhost, dport = parse_address(direct, DIRECT_PORT, what="direct proxy address")
    return Route(dhost, dport, identity, sni, direct_target_port=port)


def _check_direct(direct: object) -> None:
    if direct is None or isinstance(direct, (bool, str)):
        return
    raise ConfigurationError(
        f"direct= must be True, False or a 'host:port' string, got {type(direct).__name__}.",
        hint="direct=True uses port 4143 of the URL's host; direct='10.0.3.7:4143' names the proxy.",
    )


def route_for(url: str, identity: Identity, *, server_name: str | None = None, direct: object = None) -> Route:
    """The route for ``url`` served by ``identity`` (``direct`` as in :meth:`MeshClient.request`)."""
    _check_direct(direct)
    _parts, host, port = split_url(url)
    sni = sni_for(identity, host, server_name)
    if not direct:
        return Route(host, port, identity, sni)
    return _direct_route(direct, host, port, identity, sni)


@dataclass(frozen=True)
class Target:
    """What one logical request may use: a fixed route, or a balancer over endpoints.

    With endpoints, each attempt asks the balancer for an endpoint. In direct mode the
    transport header names the endpoint's port, and the connection goes either to that
    endpoint's own inbound proxy (``direct=True``: ``endpoint_host:4143``, a cluster's shape)
    or to the one proxy ``direct="host:port"`` names (one proxy in front of several
    application ports, the sandbox's shape).
    """

    route: Route
    balancer: Balancer | None = None
    #: direct=True with endpoints: each endpoint through its own proxy (else the one named proxy)
    balancer_via_own_proxy: bool = False

    def choose(self, exclude: Endpoint | None) -> tuple[Route, Endpoint | None]:
        if self.balancer is None:
            return self.route, None
        ep = self.balancer.pick(exclude)
        r = self.route
        if r.direct_target_port is None:
            return Route(ep.host, ep.port, r.server_identity, r.sni), ep
        if self.balancer_via_own_proxy:
            return Route(ep.host, r.port, r.server_identity, r.sni, direct_target_port=ep.port), ep
        return Route(r.host, r.port, r.server_identity, r.sni, direct_target_port=ep.port), ep


Endpoints = Iterable[str] | StaticEndpoints | DnsEndpoints


def target_for(url: str, identity: Identity, *, server_name: str | None = None, direct: object = None,
               endpoints: Endpoints | None = None) -> Target:
    """The :class:`Target` for one request; ``endpoints`` spread it over several addresses."""
    route = route_for(url, identity, server_name=server_name, direct=direct)
    if endpoints is None:
        return Target(route)
    if isinstance(endpoints, (StaticEndpoints, DnsEndpoints)):
        source: StaticEndpoints | DnsEndpoints = endpoints
    elif isinstance(endpoints, (str, bytes)) or not isinstance(endpoints, Iterable):
        raise ConfigurationError(
            f"endpoints= must be a list of 'host[:port]' strings (or StaticEndpoints/DnsEndpoints), "
            f"got {type(endpoints).__name__}.",
            hint="Write endpoints=['10.0.3.7:8080', '10.0.3.8:8080'].",
        )
    else:
        port = route.direct_target_port if route.is_direct else route.port
        source = StaticEndpoints(list(endpoints), port or 443)
    balancer = Balancer(source, service=f"{redact_url(url)} ({identity})")
    return Target(route, balancer, balancer_via_own_proxy=direct is True)
