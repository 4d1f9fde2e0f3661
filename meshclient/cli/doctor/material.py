"""Doctor's material checks: certificate, key, trust anchors, then what they must satisfy.

Each item is parsed on its own and each check of :mod:`meshclient.pki` runs separately, so
one broken item does not hide what is wrong with the others.
"""

from __future__ import annotations

import datetime as _dt
import ssl
import warnings
from collections.abc import Callable
from typing import TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ... import pki
from ...credentials import Credentials, SameSubjectIssuerWarning
from ...errors import MeshError
from ...identity import Identity
from ...tls import build_client_context
from ..common import (
    CERT,
    KEY,
    TRUST_ANCHORS,
    Found,
    MaterialItem,
    for_command_line,
    group_or_world_readable,
    key_password,
    resolve,
)
from .report import cert_name, duration, key_name, plural, utc
from .state import CheckupState

__all__ = ["MaterialChecks", "WARN_FRACTION", "ANCHOR_WARN_DAYS"]

#: Warn when less than this fraction of the leaf's lifetime is left. Linkerd proxies renew at
#: 70 % of the remaining lifetime, so a 24 h leaf with under 20 % (4.8 h) left is not being renewed.
WARN_FRACTION = 0.20
#: Warn when a trust anchor expires within this many days (anchor rotation needs restarts).
ANCHOR_WARN_DAYS = 30

T = TypeVar("T")


def profile_summary(leaf: x509.Certificate, identity: Identity) -> str:
    parts = [f"{key_name(leaf.public_key())} key", f"one {'URI' if identity.is_spiffe else 'DNS'} SAN"]
    cns = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    parts.append("CN = identity" if cns else "empty CN")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        parts.append("keyUsage " + " + ".join(
            n for n, on in (("digitalSignature", ku.digital_signature), ("keyEncipherment", ku.key_encipherment)) if on
        ))
    except x509.ExtensionNotFound:
        parts.append("no keyUsage")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        names = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}
        parts.append("extendedKeyUsage " + " + ".join(names.get(oid, oid.dotted_string) for oid in eku))
    except x509.ExtensionNotFound:
        parts.append("no extendedKeyUsage")
    return ", ".join(parts)



class MaterialChecks(CheckupState):
    """Certificate, key and anchors one by one; identity, key match, expiry, chain, profile, TLS context."""

    def _material(self, item: MaterialItem, parse: Callable[[Found], T]) -> T | None:
        if self.scope_found is not None:
            scoped = self.scope_found.get(item.dest)
            if scoped is None:
                self.r.skip(item.what, "not read from the secret scope (see above)")
                return None
            found = scoped
        else:
            try:
                found = resolve(item, self.args, self.env)
            except MeshError as err:
                self.r.error(item.what, err)
                return None
        self.where[item.dest] = found.where
        try:
            return parse(found)
        except MeshError as err:
            self.r.error(item.what, for_command_line(err))
            return None

    def material(self) -> None:
        def parse_cert(found: Found) -> list[x509.Certificate]:
            certs = pki.load_certificates(found.data, where=found.where, what="certificate chain")
            more = f" + {plural(len(certs) - 1, 'issuer certificate')}" if len(certs) > 1 else " (no issuer after it)"
            self.r.ok(CERT.what, f"{found.where}: leaf '{cert_name(certs[0])}'{more}")
            return certs

        def parse_key(found: Found) -> pki.PrivateKey:
            password = key_password(self.env)
            key = pki.load_private_key(found.data, where=found.where, password=password)
            text = f"{found.where}: {key_name(key)} private key" + (" (decrypted)" if password else "")
            mode = group_or_world_readable(found.path) if found.path else None
            if mode is not None:
                self.r.warn(KEY.what, f"{text}; the file is readable by other users (mode {mode:04o})",
                            f"chmod 600 {found.path} (or keep the key in a secret store and pass it as PEM text).")
            else:
                self.r.ok(KEY.what, text)
            return key

        def parse_anchors(found: Found) -> list[x509.Certificate]:
            anchors = pki.load_certificates(found.data, where=found.where, what="trust anchor")
            self.r.ok(TRUST_ANCHORS.what, f"{found.where}: {plural(len(anchors), 'certificate')}")
            return anchors

        chain = self._material(CERT, parse_cert)
        if chain:
            self.leaf, self.intermediates = chain[0], chain[1:]
        self.key = self._material(KEY, parse_key)
        self.anchors = self._material(TRUST_ANCHORS, parse_anchors)

    def identity_check(self) -> None:
        if self.leaf is None:
            self.r.skip("identity", "needs the certificate")
            return
        try:
            self.identity = pki.identity_of(self.leaf, where=self.where["cert"])
        except MeshError as err:
            self.r.error("identity", err)
            return
        ident = self.identity
        detail = f" (service account '{ident.service_account}' in namespace '{ident.namespace}')" \
            if ident.service_account and ident.namespace else ""
        self.r.ok("identity", f"{ident}{detail}")

    def key_match(self) -> None:
        if self.leaf is None or self.key is None:
            self.r.skip("key match", "needs the certificate and the private key")
            return
        try:
            pki.check_key_matches(self.leaf, self.key, where=self.where["key"])
        except MeshError as err:
            self.r.error("key match", err)
            return
        self.r.ok("key match", f"the private key belongs to the leaf (leaf SHA-256 {pki.fingerprint(self.leaf)[:23]}...)")

    def expiry(self) -> None:
        if self.leaf is None:
            self.r.skip("expiry", "needs the certificate")
            return
        start, end = pki.not_before(self.leaf), pki.not_after(self.leaf)
        lifetime, left = end - start, end - self.now
        if self.now < start:
            self.r.fail("expiry", f"the leaf is not valid yet: valid from {utc(start)} (in {duration(start - self.now)}) "
                        f"to {utc(end)}; now is {utc(self.now)}",
                        "Check this machine's clock (NTP), or wait until the certificate's start time.")
            return
        if left.total_seconds() <= 0:
            self.r.fail("expiry", f"the leaf expired at {utc(end)}, {duration(left)} ago "
                        f"(it was valid for {duration(lifetime)})",
                        "Fetch a freshly issued certificate and key (Linkerd leaves live 24 hours), e.g. re-export "
                        "the secret; use a rotating source so long jobs pick up renewals.")
            return
        share = left / lifetime if lifetime.total_seconds() > 0 else 0.0
        text = f"valid until {utc(end)}: {duration(left)} left of {duration(lifetime)} ({share:.0%})"
        if share < WARN_FRACTION:
            self.r.warn("expiry", f"{text}, renew soon",
                        "Linkerd renews leaves at 70 % of their lifetime; under 20 % left means nothing renews this "
                        "copy. Fetch a fresh certificate before it expires.")
        else:
            self.r.ok("expiry", text)

    def chain(self) -> None:
        if self.leaf is None or self.anchors is None:
            self.r.skip("chain", "needs the certificate and the trust anchors")
            return
        try:
            result = pki.build_chain(self.leaf, self.intermediates, self.anchors,
                                     where=f"{self.where['cert']} / {self.where['trust_anchors']}", now=self.now)
        except MeshError as err:
            self.r.error("chain", err)
            return
        names = " -> ".join(f"'{cert_name(c)}'" for c in result.path)
        text = f"{names} -> trust anchor '{cert_name(result.anchor)}'"
        notes: list[str] = []
        strays = [c for c in self.intermediates if c not in result.path]
        if strays:
            notes.append(f"the certificate file also holds {plural(len(strays), 'certificate')} not on this path "
                         f"({', '.join(repr(cert_name(c)) for c in strays)}); it is not sent")
        if result.same_dn_issuers:
            notes.append("an issuer has the same subject as its trust anchor; OpenSSL would call the chain "
                         "'self-signed certificate in certificate chain', so meshclient trusts that issuer explicitly "
                         "(re-issue it with its own name, e.g. CN=identity.linkerd.cluster.local)")
        if notes:
            self.r.warn("chain", text, "; ".join(notes))
        else:
            self.r.ok("chain", text)

    def profile(self) -> None:
        if self.leaf is None:
            self.r.skip("profile", "needs the certificate")
            return
        try:
            soft = pki.check_leaf_profile(self.leaf, where=self.where["cert"])
        except MeshError as err:
            self.r.error("profile", err)
            return
        if self.identity is None:
            if soft:
                self.r.warn("profile", "; ".join(soft))
            else:
                self.r.skip("profile", "the Linkerd profile comparison needs a valid identity SAN")
            return
        notes = pki.linkerd_profile_notes(self.leaf, self.identity)
        if notes:
            self.r.warn("profile", "differs from a Linkerd-issued leaf: " + "; ".join(notes),
                        "Usually harmless; Linkerd issues ECDSA P-256 leaves with one DNS SAN, CN = identity, "
                        "keyUsage digitalSignature and extendedKeyUsage serverAuth + clientAuth.")
        else:
            self.r.ok("profile", f"like Linkerd's: {profile_summary(self.leaf, self.identity)}")

    def anchor_validity(self) -> None:
        if not self.anchors:
            self.r.skip("anchor expiry", "needs the trust anchors")
            return
        expired, soon, not_ca, parts = [], [], [], []
        for anchor in self.anchors:
            end = pki.not_after(anchor)
            left = end - self.now
            if left.total_seconds() <= 0:
                expired.append(anchor)
                parts.append(f"'{cert_name(anchor)}' EXPIRED {utc(end)}")
                continue
            if left < _dt.timedelta(days=ANCHOR_WARN_DAYS):
                soon.append(anchor)
            parts.append(f"'{cert_name(anchor)}' until {end:%Y-%m-%d} ({left.days} days left)"
                         if left.days >= 2 else f"'{cert_name(anchor)}' until {utc(end)} ({duration(left)} left)")
            try:
                if not anchor.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                    not_ca.append(anchor)
            except x509.ExtensionNotFound:
                not_ca.append(anchor)
        text = f"{plural(len(self.anchors), 'anchor')}: " + "; ".join(parts)
        if len(expired) == len(self.anchors):
            self.r.fail("anchor expiry", text, "Every trust anchor has expired: get the cluster's current anchors "
                        "(ConfigMap linkerd-identity-trust-roots, key ca-bundle.crt).")
        elif expired or soon or not_ca:
            hints = []
            if expired:
                hints.append("drop expired anchors from the bundle")
            if soon:
                hints.append(f"an anchor expires within {ANCHOR_WARN_DAYS} days: plan the anchor rotation")
            if not_ca:
                hints.append("a non-CA certificate is in the anchor bundle (is it a leaf or the wrong file?)")
            self.r.warn("anchor expiry", text, "; ".join(hints) + ".")
        else:
            self.r.ok("anchor expiry", text)

    def tls_context(self) -> tuple[Credentials, ssl.SSLContext] | None:
        if self.r.failed or self.leaf is None or self.key is None or not self.anchors:
            self.r.skip("tls context", "fix the failures above first")
            return None
        source = f"{self.where['cert']}, {self.where['key']}, {self.where['trust_anchors']}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SameSubjectIssuerWarning)
                creds = Credentials.from_objects(self.leaf, self.intermediates, self.anchors, self.key,
                                                 source=source, now=self.now)
            ctx = build_client_context(creds)
        except MeshError as err:
            self.r.error("tls context", err)
            return None
        except ssl.SSLError as exc:
            self.r.fail("tls context", f"OpenSSL refused the material: {exc.reason or exc}",
                        "Re-export the certificate chain and key from the same issuance.")
            return None
        self.r.ok("tls context", f"OpenSSL loads the chain and key; TLS 1.3 only; trusts "
                  f"{plural(len(creds.trust_anchors), 'mesh anchor')} and nothing else")
        return creds, ctx
