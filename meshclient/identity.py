"""Mesh identities and identity patterns, with Linkerd's rules.

A Linkerd workload identity is a DNS name
``<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-ns>.<trust-domain>``;
mesh-expansion workloads may instead carry a SPIFFE ID ``spiffe://<trust-domain>/<path>``.
Patterns follow Linkerd's MeshTLSAuthentication matching: exact names, ``*.suffix`` for DNS
identities, ``*`` for any DNS identity; SPIFFE IDs match exactly and never by wildcard.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Literal

from .errors import IdentityError

__all__ = ["Identity", "IdentityPattern", "DEFAULT_CONTROL_PLANE_NS", "DEFAULT_TRUST_DOMAIN"]

DEFAULT_CONTROL_PLANE_NS = "linkerd"
DEFAULT_TRUST_DOMAIN = "cluster.local"

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SPIFFE_TD = re.compile(r"^[a-z0-9._-]+$")
_SPIFFE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_LINKERD_MARK = ".serviceaccount.identity."
_MAX_DNS = 253
_MAX_SPIFFE = 2048

IdentityKind = Literal["dns", "spiffe"]


def _check_label(label: str, what: str, text: str) -> None:
    if not label:
        raise IdentityError(
            f"Identity {text!r} has an empty {what} (two dots in a row, or a leading/trailing dot).",
            hint="Write the identity as dot-separated DNS labels.",
        )
    if len(label) > 63:
        raise IdentityError(
            f"Identity {text!r}: {what} {label!r} is {len(label)} characters; DNS labels allow 63.",
            hint="Use a shorter service-account or namespace name.",
        )
    if not _LABEL.match(label):
        fix = (
            f"Write it in lower case: {text.lower()!r}."
            if label.lower() != label and _LABEL.match(label.lower())
            else "Use lower-case letters, digits and '-', starting and ending with a letter or digit (DNS-1123)."
        )
        raise IdentityError(f"Identity {text!r}: {what} {label!r} is not a valid DNS-1123 label.", hint=fix)


def _check_dns_name(text: str) -> list[str]:
    if len(text) > _MAX_DNS:
        raise IdentityError(
            f"Identity {text[:40]!r}... is {len(text)} characters; DNS names allow {_MAX_DNS}.",
            hint="Use shorter names.",
        )
    labels = text.split(".")
    if len(labels) < 2:
        raise IdentityError(
            f"{text!r} is not a mesh identity: expected a dotted name like "
            "'<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local' or a 'spiffe://' ID.",
            hint="Pass the full identity, not just the service-account name.",
        )
    for label in labels:
        _check_label(label, "label", text)
    return labels


@dataclass(frozen=True)
class Identity:
    """A verified-shape mesh identity: a Linkerd DNS identity or a SPIFFE ID.

    Build one with :meth:`parse`, :meth:`linkerd` or :meth:`spiffe`; ``str(identity)`` gives
    the canonical text. ``service_account`` and ``namespace`` are set for the Linkerd DNS
    form and for SPIFFE IDs shaped ``/ns/<ns>/sa/<sa>``.
    """

    value: str
    kind: IdentityKind
    trust_domain: str
    service_account: str | None = None
    namespace: str | None = None
    control_plane_ns: str | None = None
    path: str | None = field(default=None, compare=False)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | Identity) -> Identity:
        """Parse a Linkerd DNS identity or a ``spiffe://`` ID, raising :class:`IdentityError`."""
        if isinstance(text, Identity):
            return text
        if not isinstance(text, str):
            raise IdentityError(f"An identity must be a string, got {type(text).__name__}.")
        return _parse_cached(text)

    @classmethod
    def linkerd(
        cls,
        service_account: str,
        namespace: str,
        *,
        control_plane_ns: str = DEFAULT_CONTROL_PLANE_NS,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
    ) -> Identity:
        """The Linkerd identity of a service account: ``sa.ns.serviceaccount.identity.cp.td``."""
        return cls.parse(f"{service_account}.{namespace}.serviceaccount.identity.{control_plane_ns}.{trust_domain}")

    @classmethod
    def spiffe(cls, trust_domain: str, namespace: str, service_account: str) -> Identity:
        """The SPIFFE ID ``spiffe://<trust-domain>/ns/<ns>/sa/<sa>``."""
        return cls.parse(f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")

    # -- views ----------------------------------------------------------------------------
    @property
    def is_spiffe(self) -> bool:
        return self.kind == "spiffe"

    @property
    def is_dns(self) -> bool:
        return self.kind == "dns"

    @property
    def is_linkerd(self) -> bool:
        """True for the Linkerd workload form ``sa.ns.serviceaccount.identity.cp.td``."""
        return self.kind == "dns" and self.control_plane_ns is not None

    def __str__(self) -> str:
        return self.value


def _parse_spiffe(text: str) -> Identity:
    if len(text) > _MAX_SPIFFE:
        raise IdentityError(f"SPIFFE ID is {len(text)} characters; the limit is {_MAX_SPIFFE}.")
    rest = text[len("spiffe://") :]
    td, slash, path = rest.partition("/")
    if not td:
        raise IdentityError(f"SPIFFE ID {text!r} has no trust domain.", hint="Write spiffe://<trust-domain>/<path>.")
    if not _SPIFFE_TD.match(td):
        fix = (
            f"Write the trust domain in lower case: {td.lower()!r}."
            if _SPIFFE_TD.match(td.lower())
            else "Trust domains allow lower-case letters, digits, '.', '_' and '-'."
        )
        raise IdentityError(f"SPIFFE ID {text!r}: trust domain {td!r} is invalid.", hint=fix)
    if not slash or not path:
        raise IdentityError(
            f"SPIFFE ID {text!r} names only a trust domain; a workload ID needs a path.",
            hint="Write spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.",
        )
    segments = path.split("/")
    for seg in segments:
        if not seg:
            raise IdentityError(f"SPIFFE ID {text!r} has an empty path segment or a trailing '/'.")
        if seg in (".", ".."):
            raise IdentityError(f"SPIFFE ID {text!r} has a '{seg}' path segment, which SPIFFE forbids.")
        if not _SPIFFE_SEGMENT.match(seg):
            raise IdentityError(
                f"SPIFFE ID {text!r}: path segment {seg!r} has characters outside [A-Za-z0-9._-].",
            )
    ns = sa = None
    if len(segments) == 4 and segments[0] == "ns" and segments[2] == "sa":
        ns, sa = segments[1], segments[3]
    return Identity(value=text, kind="spiffe", trust_domain=td, service_account=sa, namespace=ns, path="/" + path)


@functools.lru_cache(maxsize=1024)
def _parse_cached(text: str) -> Identity:
    if not text or text != text.strip():
        raise IdentityError(
            f"Identity {text!r} is empty or has surrounding whitespace.",
            hint="Pass the identity exactly, e.g. 'scorer.ml-team.serviceaccount.identity.linkerd.cluster.local'.",
        )
    if text.lower().startswith("spiffe://"):
        if not text.startswith("spiffe://"):
            raise IdentityError(f"SPIFFE ID {text!r} must start with lower-case 'spiffe://'.")
        return _parse_spiffe(text)
    if "://" in text:
        raise IdentityError(
            f"{text!r} looks like a URL, not an identity.",
            hint="Pass the URL as the target and the workload's identity separately (server_identity=...).",
        )
    if text.endswith("."):
        raise IdentityError(f"Identity {text!r} ends with a dot.", hint=f"Write {text.rstrip('.')!r}.")
    labels = _check_dns_name(text)
    head, mark, tail = text.partition(_LINKERD_MARK)
    if mark:
        parts = head.split(".")
        tail_labels = tail.split(".")
        if len(parts) == 2 and len(tail_labels) >= 2:
            return Identity(
                value=text,
                kind="dns",
                trust_domain=".".join(tail_labels[1:]),
                service_account=parts[0],
                namespace=parts[1],
                control_plane_ns=tail_labels[0],
            )
        raise IdentityError(
            f"Identity {text!r} is not in Linkerd's form "
            "'<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-ns>.<trust-domain>'.",
            hint="Check the service-account and namespace parts (one label each).",
        )
    return Identity(value=text, kind="dns", trust_domain=".".join(labels[1:]))


@dataclass(frozen=True)
class IdentityPattern:
    """One entry of an identity allow-list, matched with Linkerd's rules.

    ``*`` matches any DNS identity; ``*.suffix`` matches DNS identities ending in ``.suffix``
    (one label or more in front); anything else matches exactly. SPIFFE IDs are only ever
    matched exactly, as in Linkerd's MeshTLSAuthentication.
    """

    text: str

    def __post_init__(self) -> None:
        text = self.text
        if text == "*":
            return
        if text.startswith("*."):
            suffix = text[2:]
            if "*" in suffix:
                raise IdentityError(f"Identity pattern {text!r}: only one leading '*.' is allowed.")
            _check_dns_name(suffix) if "." in suffix else _check_label(suffix, "label", text)
            return
        if "*" in text:
            raise IdentityError(
                f"Identity pattern {text!r}: a wildcard may only be a leading '*.' (or '*' alone).",
                hint="SPIFFE IDs match exactly; write the full ID.",
            )
        Identity.parse(text)

    @classmethod
    def parse(cls, text: str | IdentityPattern | Identity) -> IdentityPattern:
        if isinstance(text, IdentityPattern):
            return text
        return cls(str(text))

    def matches(self, identity: Identity | str) -> bool:
        ident = Identity.parse(identity)
        if self.text == "*":
            return ident.is_dns
        if self.text.startswith("*."):
            return ident.is_dns and ident.value.endswith(self.text[1:])
        return ident.value == self.text

    def __str__(self) -> str:
        return self.text
