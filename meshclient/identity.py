"""Mesh identities and identity patterns, with Linkerd's rules.

A Linkerd workload identity is a DNS name
``<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-ns>.<trust-domain>``;
mesh-expansion workloads may instead carry a SPIFFE ID ``spiffe://<trust-domain>/<path>``.
Patterns follow Linkerd's MeshTLSAuthentication matching: exact names, ``*.suffix`` for DNS
identities, ``*`` for any DNS identity; SPIFFE IDs match exactly and never by wildcard
(linkerd2-proxy ``is_tls_authorized``: URI ids are looked up in ``identities`` only).

Validation is strict on purpose: an identity is compared byte for byte with certificate SANs
and policy entries, so a typo must fail here, with a message that says how to write it.
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
_SERVICE_DNS = re.compile(r"^[^.]+\.[^.]+\.svc(\..+)?$")
_MAX_LABEL = 63
_MAX_DNS = 253
_MAX_SPIFFE = 2048
_MAX_SPIFFE_TD = 255
_EXAMPLE = "scorer.ml-team.serviceaccount.identity.linkerd.cluster.local"

IdentityKind = Literal["dns", "spiffe"]


def _check_label(label: str, what: str, text: str, noun: str = "Identity") -> None:
    """One DNS-1123 label (what Kubernetes requires of namespaces and, here, service accounts)."""
    if not label:
        raise IdentityError(
            f"{noun} {text!r} has an empty {what} (two dots in a row, or a leading or trailing dot).",
            hint=f"Write it as dot-separated DNS labels, e.g. {_EXAMPLE!r}.",
        )
    if len(label) > _MAX_LABEL:
        raise IdentityError(
            f"{noun} {text!r}: the {what} {label[:20]!r}... is {len(label)} characters; a DNS label allows {_MAX_LABEL}.",
            hint="Kubernetes names used in identities are DNS-1123 labels: use a shorter name.",
        )
    if not _LABEL.match(label):
        if label.lower() != label and _LABEL.match(label.lower()):
            fix = f"Identities are lower case: write {text.lower()!r}."
        elif "_" in label and _LABEL.match(label.replace("_", "-")):
            fix = f"DNS labels cannot contain '_': the Kubernetes name is probably {label.replace('_', '-')!r}."
        else:
            fix = "Use lower-case letters, digits and '-', starting and ending with a letter or digit (DNS-1123)."
        raise IdentityError(f"{noun} {text!r}: the {what} {label!r} is not a valid DNS-1123 label.", hint=fix)


def _check_dns_name(text: str, noun: str = "Identity") -> list[str]:
    """A DNS name of at least two labels, each DNS-1123, at most 253 characters."""
    if len(text) > _MAX_DNS:
        raise IdentityError(
            f"{noun} {text[:40]!r}... is {len(text)} characters; a DNS name allows {_MAX_DNS}.",
            hint="Use shorter service-account, namespace or trust-domain names.",
        )
    if ":" in text:
        raise IdentityError(
            f"{noun} {text!r} contains ':' and looks like 'host:port', not an identity.",
            hint=f"Put the address in the URL and pass the workload's identity, e.g. {_EXAMPLE!r}.",
        )
    if "/" in text:
        raise IdentityError(
            f"{noun} {text!r} contains '/' and looks like a URL path, not an identity.",
            hint=f"A Linkerd identity is a DNS name like {_EXAMPLE!r}; a SPIFFE ID starts with 'spiffe://'.",
        )
    labels = text.split(".")
    if len(labels) < 2:
        raise IdentityError(
            f"{noun} {text!r} is a single name, not a mesh identity.",
            hint=(f"Pass the full identity, e.g. {text.lower()}.<namespace>.serviceaccount.identity.linkerd.cluster.local "
                  "(or a spiffe:// ID)." if _LABEL.match(text.lower()) else
                  f"A Linkerd identity is a DNS name (lower-case letters, digits, '-' and '.', no spaces) like "
                  f"{_EXAMPLE!r}; a SPIFFE ID starts with 'spiffe://'."),
        )
    for label in labels:
        _check_label(label, "label", text, noun)
    if labels[-1].isdigit():
        raise IdentityError(
            f"{noun} {text!r} looks like an IP address; mesh identities are names, not addresses.",
            hint="Put the IP address in the URL and pass the workload's identity as server_identity=..., "
            f"e.g. {_EXAMPLE!r}.",
        )
    if _SERVICE_DNS.match(text):
        sa_guess, ns = labels[0], labels[1]
        td = ".".join(labels[3:]) or DEFAULT_TRUST_DOMAIN
        raise IdentityError(
            f"{noun} {text!r} is a Kubernetes Service DNS name, not a workload identity.",
            hint="Linkerd identities name the workload's service account: "
            f"'<serviceaccount>.{ns}.serviceaccount.identity.linkerd.{td}' "
            f"(often {sa_guess}.{ns}.serviceaccount.identity.linkerd.{td}).",
        )
    return labels


def _analyse(text: str) -> tuple[IdentityKind, str, str | None, str | None, str | None, str | None]:
    """Validate ``text``; return (kind, trust_domain, service_account, namespace, control_plane_ns, path)."""
    if not isinstance(text, str):
        raise IdentityError(f"An identity must be a string, got {type(text).__name__}.",
                            hint=f"Pass the identity text, e.g. {_EXAMPLE!r}.")
    return _analyse_cached(text)


@functools.lru_cache(maxsize=1024)
def _analyse_cached(text: str) -> tuple[IdentityKind, str, str | None, str | None, str | None, str | None]:
    if not text.strip():
        raise IdentityError("The identity is empty.", hint=f"Pass the workload's identity, e.g. {_EXAMPLE!r}.")
    if text != text.strip():
        raise IdentityError(
            f"Identity {text!r} has surrounding whitespace.",
            hint=f"Write it without spaces or newlines: {text.strip()!r} (values read from files often end in a newline).",
        )
    if text.lower().startswith("spiffe://"):
        if not text.startswith("spiffe://"):
            raise IdentityError(f"SPIFFE ID {text!r} must start with lower-case 'spiffe://'.",
                                hint=f"Write {'spiffe://' + text[9:]!r}.")
        return _analyse_spiffe(text)
    if "://" in text:
        raise IdentityError(
            f"{text!r} looks like a URL, not an identity.",
            hint="Pass the URL as the target and the workload's identity separately (server_identity=...).",
        )
    if text.endswith("."):
        raise IdentityError(f"Identity {text!r} ends with a dot.", hint=f"Write {text.rstrip('.')!r}.")
    labels = _check_dns_name(text)
    head, mark, tail = text.partition(_LINKERD_MARK)
    if not mark:
        return "dns", ".".join(labels[1:]), None, None, None, None
    parts = head.split(".")
    tail_labels = tail.split(".")
    if len(parts) != 2:
        raise IdentityError(
            f"Identity {text!r} is not in Linkerd's form "
            "'<serviceaccount>.<namespace>.serviceaccount.identity.<control-plane-ns>.<trust-domain>': "
            f"it has {len(parts)} label{'' if len(parts) == 1 else 's'} before '.serviceaccount.identity.', "
            "Linkerd has exactly 2.",
            hint="The service-account and namespace names are one label each (no dots).",
        )
    if len(tail_labels) < 2:
        raise IdentityError(
            f"Identity {text!r} lacks the trust domain after the control-plane namespace "
            f"'{tail_labels[0]}'.",
            hint=f"Linkerd identities end in '.identity.<control-plane-ns>.<trust-domain>', "
            f"e.g. '.identity.{DEFAULT_CONTROL_PLANE_NS}.{DEFAULT_TRUST_DOMAIN}'.",
        )
    return "dns", ".".join(tail_labels[1:]), parts[0], parts[1], tail_labels[0], None


def _analyse_spiffe(text: str) -> tuple[IdentityKind, str, str | None, str | None, str | None, str | None]:
    if len(text) > _MAX_SPIFFE:
        raise IdentityError(f"SPIFFE ID {text[:40]!r}... is {len(text)} characters; the limit is {_MAX_SPIFFE}.",
                            hint="Use a shorter path.")
    if "?" in text or "#" in text:  # quoted without the query: a query value is never shown
        shown = text.split("?", 1)[0].split("#", 1)[0]
        raise IdentityError(f"SPIFFE ID {shown + '?...'!r} has a query or fragment: characters outside "
                            "[A-Za-z0-9._-] in its path.",
                            hint="A SPIFFE ID is spiffe://<trust-domain>/<path> with nothing after the path.")
    rest = text[len("spiffe://") :]
    td, slash, path = rest.partition("/")
    if not td:
        raise IdentityError(f"SPIFFE ID {text!r} has no trust domain.", hint="Write spiffe://<trust-domain>/<path>.")
    if len(td) > _MAX_SPIFFE_TD:
        raise IdentityError(f"SPIFFE ID {text[:40]!r}...: the trust domain is {len(td)} characters; the limit is "
                            f"{_MAX_SPIFFE_TD}.", hint="Use a shorter trust domain.")
    if not _SPIFFE_TD.match(td):
        if _SPIFFE_TD.match(td.lower()):
            fix = f"Write the trust domain in lower case: {td.lower()!r}."
        elif ":" in td or "@" in td:
            fix = "SPIFFE trust domains carry no port or user: write spiffe://<trust-domain>/<path>."
        else:
            fix = "Trust domains allow lower-case letters, digits, '.', '_' and '-'."
        raise IdentityError(f"SPIFFE ID {text!r}: the trust domain {td!r} is invalid.", hint=fix)
    if not slash or not path:
        raise IdentityError(
            f"SPIFFE ID {text!r} names only a trust domain; a workload ID needs a path.",
            hint="Write spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.",
        )
    segments = path.split("/")
    for seg in segments:
        if not seg:
            raise IdentityError(f"SPIFFE ID {text!r} has an empty path segment ('//' or a trailing '/').",
                                hint="Remove the extra '/'.")
        if seg in (".", ".."):
            raise IdentityError(f"SPIFFE ID {text!r} has a '{seg}' path segment, which SPIFFE forbids.",
                                hint="Write the path without '.' or '..' segments.")
        if not _SPIFFE_SEGMENT.match(seg):
            raise IdentityError(
                f"SPIFFE ID {text!r}: the path segment {seg!r} has characters outside [A-Za-z0-9._-].",
                hint="SPIFFE IDs allow no '%', query ('?'), fragment ('#'), spaces or other punctuation.",
            )
    ns = sa = None
    if len(segments) == 4 and segments[0] == "ns" and segments[2] == "sa":
        ns, sa = segments[1], segments[3]
    return "spiffe", td, sa, ns, None, "/" + path


@dataclass(frozen=True)
class Identity:
    """A mesh identity of a valid shape: a Linkerd DNS identity or a SPIFFE ID.

    Build one with :meth:`parse`, :meth:`linkerd` or :meth:`spiffe`; ``str(identity)`` gives
    the canonical text. ``service_account`` and ``namespace`` are set for the Linkerd DNS
    form and for SPIFFE IDs shaped ``/ns/<ns>/sa/<sa>``. Constructing it directly validates
    ``value`` too, so an ``Identity`` always holds a valid identity.
    """

    value: str
    kind: IdentityKind
    trust_domain: str
    service_account: str | None = None
    namespace: str | None = None
    control_plane_ns: str | None = None
    path: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        expected = _analyse(self.value)
        actual = (self.kind, self.trust_domain, self.service_account, self.namespace, self.control_plane_ns)
        if actual != expected[:5]:
            raise IdentityError(
                f"Identity fields do not match its value {self.value!r}.",
                hint="Build identities with Identity.parse(...), Identity.linkerd(...) or Identity.spiffe(...).",
            )
        if self.path != expected[5]:
            object.__setattr__(self, "path", expected[5])

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | Identity) -> Identity:
        """Parse a Linkerd DNS identity or a ``spiffe://`` ID, raising :class:`IdentityError`."""
        if isinstance(text, Identity):
            return text
        kind, td, sa, ns, cp, path = _analyse(text)
        return cls(value=text, kind=kind, trust_domain=td, service_account=sa, namespace=ns,
                   control_plane_ns=cp, path=path)

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
        text = f"{service_account}.{namespace}.serviceaccount.identity.{control_plane_ns}.{trust_domain}"
        for part, what in ((service_account, "service account"), (namespace, "namespace"),
                           (control_plane_ns, "control-plane namespace")):
            _check_part(part, what, text)
        if not isinstance(trust_domain, str) or not trust_domain:
            raise IdentityError(f"The trust domain of {text!r} is empty.",
                                hint=f"Use the cluster's trust domain (default {DEFAULT_TRUST_DOMAIN!r}).")
        for label in trust_domain.split("."):
            _check_label(label, "trust-domain label", text)
        return cls.parse(text)

    @classmethod
    def spiffe(cls, trust_domain: str, namespace: str, service_account: str) -> Identity:
        """The SPIFFE ID ``spiffe://<trust-domain>/ns/<ns>/sa/<sa>`` (Kubernetes-shaped names)."""
        text = f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"
        for part, what in ((service_account, "service account"), (namespace, "namespace")):
            _check_part(part, what, text)
        return cls.parse(text)

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


def _check_part(part: object, what: str, text: str) -> None:
    if not isinstance(part, str):
        raise IdentityError(f"The {what} must be a string, got {type(part).__name__}.",
                            hint="Pass Kubernetes names as text.")
    if "." in part:
        raise IdentityError(
            f"Identity {text!r}: the {what} {part!r} contains '.'; Linkerd identities need it to be one DNS label.",
            hint="Pass only the name (e.g. 'scorer', 'ml-team'), not a dotted or qualified name.",
        )
    _check_label(part, what, text)


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
        if not isinstance(text, str):
            raise IdentityError(f"An identity pattern must be a string, got {type(text).__name__}.",
                                hint="Write '*', '*.<suffix>' or an exact identity.")
        if text == "*":
            return
        if text.startswith("*."):
            suffix = text[2:]
            if "*" in suffix:
                raise IdentityError(
                    f"Identity pattern {text!r}: only one leading '*.' is allowed.",
                    hint="'*.' matches one label or more, so '*.ml-team.serviceaccount.identity.linkerd.cluster.local' "
                    "already covers every service account of ml-team.",
                )
            if suffix.startswith("spiffe:") or "/" in suffix:
                raise IdentityError(
                    f"Identity pattern {text!r}: wildcards never match SPIFFE IDs (as in Linkerd).",
                    hint="List each SPIFFE ID exactly.",
                )
            if "." in suffix:
                _check_dns_name(suffix, noun="Identity pattern suffix")
            else:
                _check_label(suffix, "suffix", text, noun="Identity pattern")
            return
        if "*" in text:
            if text.startswith("spiffe://"):
                hint = "Wildcards never match SPIFFE IDs (as in Linkerd): list each SPIFFE ID exactly."
            else:
                hint = "Use '*' alone or a leading '*.', e.g. '*.ml-team.serviceaccount.identity.linkerd.cluster.local'."
            raise IdentityError(
                f"Identity pattern {text!r}: a wildcard may only be a leading '*.' (or '*' alone).", hint=hint
            )
        try:
            Identity.parse(text)
        except IdentityError as err:
            raise IdentityError(f"Identity pattern: {err.message}", hint=err.hint) from None

    @classmethod
    def parse(cls, text: str | IdentityPattern | Identity) -> IdentityPattern:
        """A pattern from text (or an exact pattern from an :class:`Identity`)."""
        if isinstance(text, IdentityPattern):
            return text
        if isinstance(text, Identity):
            return cls(text.value)
        return cls(text)

    @property
    def is_wildcard(self) -> bool:
        return self.text == "*" or self.text.startswith("*.")

    def matches(self, identity: Identity | str) -> bool:
        """Linkerd's rule: exact match for any identity; ``*``/``*.suffix`` for DNS identities only."""
        ident = Identity.parse(identity)
        if self.text == "*":
            return ident.is_dns
        if self.text.startswith("*."):
            return ident.is_dns and ident.value.endswith(self.text[1:])
        return ident.value == self.text

    def __str__(self) -> str:
        return self.text
