"""Addresses and URLs, checked strictly before anything is dialled.

A mesh URL is ``https://HOST[:PORT]/PATH`` with a DNS name, an IPv4 address or a bracketed IPv6
address, a port in 1-65535 and no userinfo; an address (``direct=``, ``endpoints=``) is
``host[:port]`` of the same kinds. Anything else is a :class:`~meshclient.ConfigurationError`
that never quotes a query value — so a stray int cannot be dialled as ``0.0.4.210``.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from ..errors import ConfigurationError
from ..redaction import redact_url

__all__ = ["parse_address", "split_url"]

# Host name labels: letters, digits, hyphens (and underscores, which some clusters use), not
# starting or ending with a hyphen.
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def _check_host(host: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ConfigurationError(
            f"{where}: {host!r} is not a host name or an IP address.",
            hint="Write host:port with a DNS name, an IPv4 address or a bracketed IPv6 address ([::1]:4143).",
        )
    if all(label.isdigit() for label in name.split(".")):  # '1234' would be dialled as 0.0.4.210
        raise ConfigurationError(
            f"{where}: {host!r} is neither a host name nor a complete IPv4 address.",
            hint="Write host:port with four-part IPv4 addresses, e.g. 10.0.3.7:4143.",
        )
    return name.lower()


def _check_port(port: int, where: str) -> int:
    if not 0 < port < 65536:
        raise ConfigurationError(f"{where}: port {port} is out of range.", hint="Ports run from 1 to 65535.")
    return port


def parse_address(text: object, default_port: int | None, *, what: str = "address") -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]``, ``[v6]:port`` → (host, port), strictly validated."""
    if not isinstance(text, str):
        raise ConfigurationError(
            f"The {what} must be a string 'host:port', got {type(text).__name__}.",
            hint="Write it as a string, e.g. '10.0.3.7:4143'.",
        )
    raw = text.strip()
    where = f"The {what} {raw!r}"
    if raw.startswith("["):
        host, close, rest = raw[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ConfigurationError(f"{where} is not [IPv6]:port.", hint="Write e.g. [fd00::7]:4143.")
        v6 = _ipv6(host)
        if v6 is None:
            raise ConfigurationError(f"{where} has no valid IPv6 address in brackets.", hint="Write e.g. [fd00::7]:4143.")
        host = v6
        port_text = rest[1:] if rest else ""
    elif raw.count(":") > 1:  # '::1:4143' is itself a valid (non-loopback) IPv6 address: never guess
        raise ConfigurationError(f"{where}: an IPv6 address needs brackets.", hint="Write e.g. [fd00::7]:4143.")
    else:
        host, _, port_text = raw.partition(":")
        if _ and not port_text:
            raise ConfigurationError(f"{where} ends in ':' without a port.", hint="Write host:port, e.g. 10.0.3.7:4143.")
        host = _check_host(host, where)
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
            raise ConfigurationError(f"{where} has a port that is not a number.",
                                     hint="Write host:port, e.g. 10.0.3.7:4143.")
        return host, _check_port(int(port_text), where)
    if default_port is None:
        raise ConfigurationError(f"{where} has no port.", hint="Write host:port, e.g. 10.0.3.7:4143.")
    return host, default_port


def _ipv6(text: str) -> str | None:
    try:
        return str(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def _split(url: str) -> tuple[SplitResult, int | None] | None:
    try:
        parts = urlsplit(url)
        return parts, parts.port
    except ValueError:
        return None


def split_url(url: object) -> tuple[SplitResult, str, int]:
    """Parse and check a mesh URL: https, a valid host and port, no userinfo. Never echoes a query."""
    if not isinstance(url, str):
        raise ConfigurationError(f"The URL must be a string, got {type(url).__name__}.",
                                 hint="Pass the service URL, e.g. 'https://10.0.3.7:8080/health'.")
    if "://" not in url:  # 'localhost:8080/health' would parse as the scheme 'localhost'
        bare = url.partition("?")[0].rpartition("@")[2]
        raise ConfigurationError(
            f"The URL {bare!r} has no scheme." if bare else "The URL is empty.",
            hint=f"Write https://{bare or 'HOST:PORT/PATH'} (meshclient only speaks mutual TLS).",
        )
    shown = redact_url(url)
    parsed = _split(url)
    if parsed is None:  # raised outside an except block: no chained context quoting the URL
        raise ConfigurationError(
            f"The URL {shown!r} is not valid: its host or port cannot be read.",
            hint="Write https://HOST:PORT/PATH with a numeric port (1-65535) and IPv6 hosts in brackets.",
        )
    parts, port = parsed
    if parts.scheme != "https":
        raise ConfigurationError(
            f"The URL {shown!r} is not https: meshclient only speaks mutual TLS.",
            hint="Use https:// with the workload's address and port (the Linkerd proxy terminates mTLS there).",
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"The URL {shown!r} carries user information (user:password@): meshclient refuses it.",
            hint="The mesh identity is the credential; drop the userinfo (use token= for bearer tokens).",
        )
    if not parts.hostname:
        raise ConfigurationError(f"The URL {shown!r} has no host.",
                                 hint="Write https://HOST:PORT/PATH.")
    host = parts.hostname
    if ":" in host:
        v6 = _ipv6(host)
        if v6 is None:
            raise ConfigurationError(f"The URL {shown!r} has an invalid IPv6 host.",
                                     hint="Write IPv6 hosts in brackets, e.g. https://[fd00::7]:8080/.")
        host = v6
    else:
        host = _check_host(host, f"The URL {shown!r}")
    if port is None:
        port = 443
    return parts, host, _check_port(port, f"The URL {shown!r}")
