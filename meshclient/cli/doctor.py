"""``meshclient doctor``: check the mesh material one item at a time, then optionally a live peer.

Doctor is for when things are broken, so it never stops at the first exception: it parses
each item on its own and runs the individual checks of :mod:`meshclient.pki`, printing one
line per check and the fix under each failure. Checks that need a failed item are shown as
skipped rather than hidden.

With ``--secret-scope`` it first reports the workspace and each secret read (scope, key and
size, never content); with a token option it reports the issuer, the token's subject,
audience and expiry, and whether the live request carried it. No secret, key or token text
is ever printed (a token is named by its SHA-256 fingerprint).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import socket
import ssl
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TextIO, TypeVar
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .. import pki
from ..client import MeshClient
from ..credentials import Credentials, SameSubjectIssuerWarning
from ..credentials.secret_scope import SecretReader
from ..errors import ConnectError, MeshError, ServerIdentityError, TLSHandshakeError
from ..identity import Identity
from ..outbound import OutboundClient, is_network_error
from ..redaction import redact_text
from ..tls import PeerInfo, build_client_context, sni_for, verify_server_identity
from ..tokens import (
    BaseTokenProvider,
    DatabricksOAuth,
    OutboundRetryPolicy,
    Token,
    TokenError,
    TokenProvider,
    discover_token_endpoint,
)
from ..tokens.claims import peek_jwt
from .common import (
    CERT,
    ENV_OIDC_CLIENT_SECRET,
    EXIT_ERROR,
    EXIT_OK,
    KEY,
    MATERIAL_HELP,
    TRUST_ANCHORS,
    Found,
    HelpFormatter,
    MaterialItem,
    ScopeSpec,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    client_credentials,
    databricks_config,
    for_command_line,
    group_or_world_readable,
    key_password,
    oidc_settings,
    outbound_settings,
    resolve,
    sdk_message,
    secret_reader,
    secret_scope_spec,
    simple_token_provider,
    token_source,
)

__all__ = ["register", "run", "Report", "WARN_FRACTION"]

#: Warn when less than this fraction of the leaf's lifetime is left. Linkerd proxies renew at
#: 70 % of the remaining lifetime, so a 24 h leaf with under 20 % (4.8 h) left is not being renewed.
WARN_FRACTION = 0.20
#: Warn when a trust anchor expires within this many days (anchor rotation needs restarts).
ANCHOR_WARN_DAYS = 30
#: Warn when a bearer token has less than this many seconds left (a request may outlive it).
TOKEN_WARN_SECONDS = 60

_MARKS = {"ok": "[ok]", "warn": "[warn]", "fail": "[FAIL]", "skip": "[skip]"}
_NAME_WIDTH = 14
_INDENT = " " * (6 + 1 + _NAME_WIDTH + 1)

T = TypeVar("T")

_HELP = "check this workload's mesh material and, with --target, a live mTLS handshake"
_DESCRIPTION = """\
Check the mesh material (certificate, key, trust anchors) one item at a time and print one
line per check: [ok], [warn] or [FAIL], with the fix under each failure. With --secret-scope,
first the workspace and each secret read (scope, key, size; never the content). With a token
option, the issuer, the token's subject, audience and expiry (never the token). With --target
and --server-identity, also make a live TLS handshake (showing the verified server identity,
TLS version and cipher) and one GET request, which carries the token if one was named. Exits
1 if any check failed, 0 otherwise (warnings do not fail)."""
_EPILOG = f"""\
examples:
  meshclient doctor --cert tls.crt --key tls.key --trust-anchors ca.crt
  meshclient doctor --target https://10.0.3.7:8080/health \\
      --server-identity echo.ml-platform.serviceaccount.identity.linkerd.cluster.local
  DATABRICKS_HOST=... DATABRICKS_TOKEN=... meshclient doctor --secret-scope ml-mesh
  {ENV_OIDC_CLIENT_SECRET}=... meshclient doctor --secret-scope ml-mesh \\
      --oidc-token-url https://login.example.com/oauth2/token --oidc-client-id ml-pipeline \\
      --oidc-audience mesh-services --target URL --server-identity ID

{MATERIAL_HELP}"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("--target", metavar="URL",
                   help="an https:// URL served by a meshed workload, e.g. https://10.0.3.7:8080/health")
    p.add_argument("--server-identity", metavar="ID",
                   help="the mesh identity that must serve --target: "
                   "<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local or a spiffe:// ID")
    p.add_argument("--server-name", metavar="NAME",
                   help="TLS server name (SNI) to send instead of the identity; needed for spiffe:// identities")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=10.0,
                   help="give up connecting, handshaking or waiting for the answer after this long (default 10)")
    add_material_options(p)
    add_token_options(p)
    add_debug_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=run)


class Report:
    """Prints check lines as they happen (a slow handshake should not hide earlier results)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()

    def line(self, status: str, name: str, text: str, hint: str | None = None) -> None:
        self.counts[status] += 1
        print(f"{_MARKS[status]:<6} {name:<{_NAME_WIDTH}} {text}", file=self.out)
        if hint:
            label = "fix:" if status == "fail" else "note:"
            print(f"{_INDENT}{label} {hint}", file=self.out)
        self.out.flush()

    def ok(self, name: str, text: str) -> None:
        self.line("ok", name, text)

    def warn(self, name: str, text: str, hint: str | None = None) -> None:
        self.line("warn", name, text, hint)

    def fail(self, name: str, text: str, hint: str | None = None) -> None:
        self.line("fail", name, text, hint)

    def error(self, name: str, err: MeshError) -> None:
        self.fail(name, err.message, err.hint)

    def skip(self, name: str, text: str) -> None:
        self.line("skip", name, text)

    @property
    def failed(self) -> int:
        return self.counts["fail"]

    def summary(self) -> str:
        c = self.counts
        warn = f"{c['warn']} warning" + ("" if c["warn"] == 1 else "s")
        if c["fail"]:
            return f"doctor: FAILED: {c['fail']} failed, {warn}, {c['ok']} ok (the fix is under each [FAIL] line)"
        return f"doctor: all checks passed ({c['ok']} ok, {warn})"


# -- formatting helpers -----------------------------------------------------------------------
def _utc(dt: _dt.datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(td: _dt.timedelta) -> str:
    """Hours and minutes up to two days (Linkerd leaves live 24 h), days beyond."""
    seconds = int(abs(td.total_seconds()))
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    if days >= 2:
        return f"{days} d {hours} h"
    if days or hours:
        return f"{days * 24 + hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def _name(cert: x509.Certificate) -> str:
    """A leaf's identity SAN, else its subject DN: how people recognise a certificate."""
    sans = pki.identity_sans(cert)
    if sans:
        return sans[0]
    return cert.subject.rfc4514_string() or f"(empty subject, serial {cert.serial_number:x})"


def _key_name(key: object) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ECDSA P-256" if isinstance(key.curve, ec.SECP256R1) else f"ECDSA {key.curve.name}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA-{key.key_size}"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "Ed25519"
    return type(key).__name__


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _profile_summary(leaf: x509.Certificate, identity: Identity) -> str:
    parts = [f"{_key_name(leaf.public_key())} key", f"one {'URI' if identity.is_spiffe else 'DNS'} SAN"]
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


# -- the checks -------------------------------------------------------------------------------
class _Doctor:
    """Runs each check on whatever material could be read, remembering parsed pieces for later checks."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], report: Report,
                 now: _dt.datetime) -> None:
        self.args = args
        self.env = environ
        self.r = report
        self.now = now
        self.where: dict[str, str] = {}
        self.leaf: x509.Certificate | None = None
        self.intermediates: list[x509.Certificate] = []
        self.anchors: list[x509.Certificate] | None = None
        self.key: pki.PrivateKey | None = None
        self.identity: Identity | None = None
        self.scope_found: dict[str, Found] | None = None  # with --secret-scope: what could be read
        self.token_provider: TokenProvider | None = None
        self.token: Token | None = None

    # -- Databricks secret scope ------------------------------------------------------------
    def secret_scope(self, spec: ScopeSpec) -> None:
        """One line for the workspace, then one per key: scope, key and size, never the content."""
        self.scope_found = {}
        items = (CERT, KEY, TRUST_ANCHORS)
        try:
            reader, workspace = secret_reader(spec, self.args.timeout)
        except MeshError as err:
            self.r.error("workspace", err)
            for item in items:
                self.r.skip("secret", f"scope '{spec.scope}' key '{spec.key_for(item)}': needs a workspace")
            return
        if not self._workspace_line(reader, workspace):
            for item in items:
                self.r.skip("secret", f"scope '{spec.scope}' key '{spec.key_for(item)}': needs a usable workspace")
            return
        for item in items:
            self._read_secret(reader, spec, item)

    def _workspace_line(self, reader: SecretReader, workspace: object) -> bool:
        """Who the workspace says we are; ``False`` when it is unreachable or refuses us."""
        if workspace is None:
            self.r.ok("workspace", f"{reader.description} (Databricks notebook)")
            return True
        cfg = getattr(workspace, "config", None)
        host, auth = getattr(cfg, "host", None), getattr(cfg, "auth_type", None)
        where = f"{host} (databricks-sdk, auth type {auth})"
        try:
            me = workspace.current_user.me()  # type: ignore[attr-defined]
        except Exception as exc:  # typed SDK errors differ across versions: classify by name
            text = sdk_message(exc)
            if type(exc).__name__ in ("Unauthenticated", "Unauthorized") or "UNAUTHENTICATED" in str(exc):
                self.r.fail("workspace", f"{where} refused these credentials: {text}",
                            f"The credentials databricks-sdk found (auth type {auth}) are wrong or expired: renew "
                            "DATABRICKS_TOKEN, or check DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET or the profile.")
                return False
            if is_network_error(exc):
                self.r.fail("workspace", f"{where} cannot be reached: {type(exc).__name__}: {text}",
                            "Check DATABRICKS_HOST (the workspace URL) and the network path from here (proxy "
                            "variables, firewalls).")
                return False
            self.r.warn("workspace", f"{where}: could not ask who this principal is: {type(exc).__name__}: {text}",
                        "Reading the secrets below tells whether the workspace can be used.")
            return True
        who = getattr(me, "user_name", None) or getattr(me, "display_name", None) or "?"
        self.r.ok("workspace", f"{where} as '{who}'")
        return True

    def _read_secret(self, reader: SecretReader, spec: ScopeSpec, item: MaterialItem) -> None:
        key = spec.key_for(item)
        try:
            data = reader.get_bytes(spec.scope, key)
        except MeshError as err:
            self.r.error("secret", err)
            return
        if not data.strip():
            self.r.fail("secret", f"scope '{spec.scope}' key '{key}' is empty ({reader.description})",
                        f"Store the {item.what} there as PEM text: databricks secrets put-secret {spec.scope} {key} "
                        "--binary-file FILE.")
            return
        self.r.ok("secret", f"scope '{spec.scope}' key '{key}': {_plural(len(data), 'byte')} ({reader.description})")
        self.scope_found[item.dest] = Found(data, f"secret scope '{spec.scope}' key '{key}'")  # type: ignore[index]

    # -- material ---------------------------------------------------------------------------
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
            more = f" + {_plural(len(certs) - 1, 'issuer certificate')}" if len(certs) > 1 else " (no issuer after it)"
            self.r.ok(CERT.what, f"{found.where}: leaf '{_name(certs[0])}'{more}")
            return certs

        def parse_key(found: Found) -> pki.PrivateKey:
            password = key_password(self.env)
            key = pki.load_private_key(found.data, where=found.where, password=password)
            text = f"{found.where}: {_key_name(key)} private key" + (" (decrypted)" if password else "")
            mode = group_or_world_readable(found.path) if found.path else None
            if mode is not None:
                self.r.warn(KEY.what, f"{text}; the file is readable by other users (mode {mode:04o})",
                            f"chmod 600 {found.path} (or keep the key in a secret store and pass it as PEM text).")
            else:
                self.r.ok(KEY.what, text)
            return key

        def parse_anchors(found: Found) -> list[x509.Certificate]:
            anchors = pki.load_certificates(found.data, where=found.where, what="trust anchor")
            self.r.ok(TRUST_ANCHORS.what, f"{found.where}: {_plural(len(anchors), 'certificate')}")
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
            self.r.fail("expiry", f"the leaf is not valid yet: valid from {_utc(start)} (in {_duration(start - self.now)}) "
                        f"to {_utc(end)}; now is {_utc(self.now)}",
                        "Check this machine's clock (NTP), or wait until the certificate's start time.")
            return
        if left.total_seconds() <= 0:
            self.r.fail("expiry", f"the leaf expired at {_utc(end)}, {_duration(left)} ago "
                        f"(it was valid for {_duration(lifetime)})",
                        "Fetch a freshly issued certificate and key (Linkerd leaves live 24 hours), e.g. re-export "
                        "the secret; use a rotating source so long jobs pick up renewals.")
            return
        share = left / lifetime if lifetime.total_seconds() > 0 else 0.0
        text = f"valid until {_utc(end)}: {_duration(left)} left of {_duration(lifetime)} ({share:.0%})"
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
        names = " -> ".join(f"'{_name(c)}'" for c in result.path)
        text = f"{names} -> trust anchor '{_name(result.anchor)}'"
        notes: list[str] = []
        strays = [c for c in self.intermediates if c not in result.path]
        if strays:
            notes.append(f"the certificate file also holds {_plural(len(strays), 'certificate')} not on this path "
                         f"({', '.join(repr(_name(c)) for c in strays)}); it is not sent")
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
            self.r.ok("profile", f"like Linkerd's: {_profile_summary(self.leaf, self.identity)}")

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
                parts.append(f"'{_name(anchor)}' EXPIRED {_utc(end)}")
                continue
            if left < _dt.timedelta(days=ANCHOR_WARN_DAYS):
                soon.append(anchor)
            parts.append(f"'{_name(anchor)}' until {end:%Y-%m-%d} ({left.days} days left)"
                         if left.days >= 2 else f"'{_name(anchor)}' until {_utc(end)} ({_duration(left)} left)")
            try:
                if not anchor.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                    not_ca.append(anchor)
            except x509.ExtensionNotFound:
                not_ca.append(anchor)
        text = f"{_plural(len(self.anchors), 'anchor')}: " + "; ".join(parts)
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
                  f"{_plural(len(creds.trust_anchors), 'mesh anchor')} and nothing else")
        return creds, ctx

    # -- bearer token -----------------------------------------------------------------------
    def tokens(self, kind: str) -> None:
        """Issuer, token, subject, audience, expiry: one line each, never the token itself."""
        timeout = self.args.timeout
        provider: TokenProvider | None = None
        secrets: list[str | None] = []
        try:
            if kind == "oidc":
                settings = oidc_settings(self.args, self.env)
                secrets.append(settings.client_secret)
                token_url = self._oidc_issuer(settings.issuer, settings.token_url)
                if token_url is None:
                    self._skip_token_lines("needs a reachable issuer")
                    return
                provider = client_credentials(settings, token_url, timeout)
            elif kind == "databricks":
                cfg = databricks_config(timeout)
                self.r.ok("token issuer", f"databricks-sdk unified auth: host {getattr(cfg, 'host', None)}, "
                          f"auth type {getattr(cfg, 'auth_type', None)}")
                provider = DatabricksOAuth(config=cfg, retries=OutboundRetryPolicy(attempts=1))
            else:
                provider = simple_token_provider(self.args, kind, timeout)
        except MeshError as err:
            self.r.fail("token issuer" if kind == "databricks" else "token", redact_text(err.message, secrets), err.hint)
            self._skip_token_lines("needs a token")
            return
        try:
            token = provider.token()
        except TokenError as err:
            self.r.fail("token", f"no token from {provider!r}: {redact_text(err.message, secrets)}",
                        err.hint or _token_hint(kind))
            self._skip_token_lines("needs a token")
            if isinstance(provider, BaseTokenProvider):
                provider.close()
            return
        self.token_provider, self.token = provider, token
        claims = peek_jwt(token.value)
        form = "an opaque token (not a JWT)"
        if claims is not None:
            iss = claims.get("iss")
            form = f"a JWT from issuer '{iss}'" if isinstance(iss, str) else "a JWT without an issuer claim"
        self.r.ok("token", f"obtained from {provider!r}: {form}, fingerprint {token.fingerprint}")
        self._token_claims(token, claims is not None)

    def _skip_token_lines(self, why: str) -> None:
        for name in ("token subject", "token audience", "token expiry"):
            self.r.skip(name, why)

    def _oidc_issuer(self, issuer: str | None, token_url: str | None) -> str | None:
        """The token endpoint, after showing that the issuer (or the endpoint itself) answers."""
        timeout = self.args.timeout
        if issuer:
            try:
                url = discover_token_endpoint(issuer, outbound=outbound_settings(timeout))
            except MeshError as err:
                self.r.fail("token issuer", err.message, err.hint or "Check the issuer URL and that it is reachable.")
                return None
            self.r.ok("token issuer", f"{issuer} answers; its discovery document names token endpoint {url}")
            return url
        assert token_url is not None
        http = OutboundClient(outbound_settings(timeout))
        try:
            resp = http.send_once("GET", token_url)
            resp.close()
        except Exception as exc:  # requests' ConnectionError, SSLError, Timeout, InvalidURL...
            self.r.fail("token issuer", f"{token_url} cannot be reached: {type(exc).__name__}",
                        "Check the token URL and the network path (proxy variables, firewalls, the issuer's CA).")
            return None
        finally:
            http.close()
        if resp.status_code == 404:
            self.r.warn("token issuer", f"{token_url} answers 404 to a GET: is it the token endpoint?",
                        "Token endpoints usually answer a GET with 400 or 405; try --oidc-issuer to discover it.")
        else:
            self.r.ok("token issuer", f"{token_url} answers (HTTP {resp.status_code} to a plain GET)")
        return token_url

    def _token_claims(self, token: Token, is_jwt: bool) -> None:
        if token.subject:
            self.r.ok("token subject", f"'{token.subject}'")
        elif is_jwt:
            self.r.warn("token subject", "the token has no 'sub' claim",
                        "Services that authorize or audit by subject will see no caller.")
        else:
            self.r.skip("token subject", "an opaque token: its subject is known only to the issuer")
        expected = getattr(self.args, "oidc_audience", None)
        audiences = (token.audience or "").split()
        if expected and audiences and expected not in audiences:
            self.r.fail("token audience", f"{' '.join(repr(a) for a in audiences)}, not '{expected}'",
                        f"Ask the issuer for a token for '{expected}' (the client must be allowed that audience), "
                        "or check which audience the service expects.")
        elif audiences:
            self.r.ok("token audience", " ".join(f"'{a}'" for a in audiences))
        elif is_jwt:
            self.r.warn("token audience", "the token has no 'aud' claim",
                        "Services that check the audience (they should) will refuse it: ask for one with "
                        "--oidc-audience.")
        else:
            self.r.skip("token audience", "an opaque token: its audience is known only to the issuer")
        left = token.expires_in()
        if left is None or token.expires_at is None:
            self.r.warn("token expiry", "the token does not say when it expires",
                        "meshclient cannot refresh it ahead of expiry; requests will start failing with 401 when "
                        "it does.")
        elif left <= 0:
            self.r.fail("token expiry", f"expired at {_utc(token.expires_at)}, {_duration(_dt.timedelta(seconds=left))} ago",
                        "Put a fresh token in place (a token file or variable is not renewed by meshclient).")
        elif left < TOKEN_WARN_SECONDS:
            self.r.warn("token expiry", f"valid until {_utc(token.expires_at)}: only "
                        f"{_duration(_dt.timedelta(seconds=left))} left",
                        "meshclient refreshes provider tokens ahead of expiry; a fixed token must be replaced now.")
        else:
            self.r.ok("token expiry", f"valid until {_utc(token.expires_at)}: {_duration(_dt.timedelta(seconds=left))} left")

    def handshake(self, ctx: ssl.SSLContext | None, expected: Identity) -> bool:
        url = self.args.target
        parts = urlsplit(url)
        try:
            port = parts.port or 443
        except ValueError:
            self.r.fail("handshake", f"the target {url!r} has an invalid port", "Use https://HOST:PORT/PATH.")
            return False
        if parts.scheme != "https" or not parts.hostname:
            self.r.fail("handshake", f"the target {url!r} is not an https:// URL with a host",
                        "meshclient only speaks mutual TLS: use https://<pod IP or service name>:<port>/<path>.")
            return False
        if ctx is None:
            self.r.skip("handshake", "needs working material (see above)")
            return False
        host = parts.hostname
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        sni = sni_for(expected, host, self.args.server_name)
        timeout = self.args.timeout
        try:
            peer = _handshake(ctx, host, port, sni, expected, address, timeout)
        except MeshError as err:
            self.r.error("handshake", err)
            return False
        except TimeoutError:
            self.r.fail("handshake", f"no TLS connection to {address} within {timeout:g} s",
                        "Check that the address is reachable from here (network path, firewalls) and that the port "
                        "is the workload's port.")
            return False
        except ssl.SSLCertVerificationError as exc:
            self.r.fail("handshake", f"the server at {address} presented a certificate that does not verify "
                        f"against the mesh trust anchors ({exc.verify_message})",
                        "The server is not in this mesh, or these trust anchors are from another cluster or out of "
                        "date: use the anchors of the cluster that runs the server.")
            return False
        except ssl.SSLError as exc:
            self.r.fail("handshake", f"TLS handshake with {address} (SNI '{sni}') failed: {exc.reason or exc}",
                        _tls_hint(str(exc), sni))
            return False
        except ConnectionRefusedError:
            self.r.fail("handshake", f"{address} refused the connection",
                        "Nothing listens there: check the port (the workload's port, or 4143 for Linkerd's "
                        "direct mode).")
            return False
        except OSError as exc:
            self.r.fail("handshake", f"could not connect to {address}: {exc.strerror or exc}",
                        "Check the host name and that this machine can reach it.")
            return False
        self.r.ok("handshake", f"{address} proved '{peer.identity}' ({peer.tls_version}, {peer.cipher}, SNI '{sni}')")
        return True

    def request(self, creds: Credentials, expected: Identity) -> None:
        url = self.args.target
        timeout = self.args.timeout
        try:
            with MeshClient(creds, timeout=(timeout, timeout), token=self.token_provider) as client:
                resp = client.request("GET", url, server_identity=expected, server_name=self.args.server_name,
                                      stream=True, allow_redirects=False)
                resp.close()
        except (TLSHandshakeError, ConnectError) as err:
            self._skip_token_sent("needs an answered request")
            if isinstance(err, ServerIdentityError):
                self.r.error("request", err)
                return
            # TLS 1.3 clients finish the handshake before the server checks their certificate, so a refused
            # client certificate surfaces only now: as an alert, or (racing the close) as a bare EOF / reset.
            self.r.fail("request", err.message,
                        "The handshake above worked, so the server most likely refused this client's certificate "
                        "(TLS 1.3 reports that only after the handshake): check that the server trusts the anchors "
                        "that issued this certificate and that its policy allows this identity.")
            return
        except MeshError as err:
            self.r.error("request", err)
            self._skip_token_sent("needs an answered request")
            return
        status = resp.status_code
        text = f"GET {url} -> {status} {resp.reason or ''}".rstrip()
        proxy_error = resp.headers.get("l5d-proxy-error")
        if status == 403 and proxy_error:
            self.r.fail("request", f"{text}: the mesh policy denied this client's identity '{creds.identity}' "
                        f"({proxy_error})",
                        "Ask the service owner to authorize this identity (a MeshTLSAuthentication naming it or its "
                        "namespace, used by an AuthorizationPolicy).")
        elif proxy_error:
            self.r.fail("request", f"{text}: the server's mesh proxy answered with an error ({proxy_error})",
                        "The proxy could not reach the application behind it: check the workload's port and health.")
        elif status in (401, 403) and self.token is not None:
            self.r.warn("request", f"{text}", "Mutual TLS works; the application refused the request (see the "
                        "token line below).")
        elif status >= 400:
            self.r.warn("request", f"{text}", "Mutual TLS works; the application itself answered with an error "
                        "for this path (try another --target path).")
        else:
            self.r.ok("request", text)
        self._token_sent(resp, text, bool(proxy_error))

    def _skip_token_sent(self, why: str) -> None:
        if self.token is not None:
            self.r.skip("token sent", why)

    def _token_sent(self, resp: requests.Response, text: str, proxy_error: bool) -> None:
        """Did the GET carry the bearer token, and did the application take it?"""
        token = self.token
        if token is None or self.token_provider is None:
            return
        sent = resp.request.headers.get("Authorization") if resp.request is not None else None
        current = self.token_provider.token()
        if sent != current.authorization and sent != token.authorization:
            self.r.fail("token sent", "the request went without the bearer token",
                        "This is a meshclient bug: rerun with --debug and report it.")
            return
        who = f"subject '{current.subject}', " if current.subject else ""
        if resp.status_code == 401 and not proxy_error:
            self.r.fail("token sent", f"the request carried the bearer token ({who}fingerprint {current.fingerprint}) "
                        f"and the application refused it: {text}",
                        "Check that the service trusts this issuer and expects this audience (--oidc-audience), "
                        "and that the token is not expired.")
        elif resp.status_code == 403 and not proxy_error:
            self.r.warn("token sent", f"the request carried the bearer token ({who}fingerprint {current.fingerprint}); "
                        f"the application answered {text}",
                        "The token was accepted but this subject may not do this: ask the service owner for access.")
        else:
            self.r.ok("token sent", f"the request carried the bearer token ({who}fingerprint {current.fingerprint})")


def _handshake(ctx: ssl.SSLContext, host: str, port: int, sni: str, expected: Identity, address: str,
               timeout: float) -> PeerInfo:
    """Connect, handshake and verify the server identity ourselves, with a timeout."""
    with socket.create_connection((host, port), timeout=timeout) as raw, \
            ctx.wrap_socket(raw, server_hostname=sni) as tls:
        return verify_server_identity(tls, expected, where=address)


def _token_hint(kind: str) -> str:
    """The usual fix when a token source gives nothing."""
    if kind == "oidc":
        return (f"Check --oidc-client-id and ${ENV_OIDC_CLIENT_SECRET}, and that this client may ask for the "
                "--oidc-audience/--oidc-scope given.")
    if kind == "databricks":
        return ("Check the databricks-sdk settings (DATABRICKS_HOST with DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET, "
                "DATABRICKS_TOKEN or a profile).")
    if kind == "env":
        return "Put the token in that variable (on Databricks: a cluster variable referencing a secret)."
    return "Check the token file's path and that something (kubelet, a sidecar) writes it."


def _tls_hint(reason: str, sni: str) -> str:
    low = reason.lower()
    if "certificate required" in low or "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low:
        return ("The server refused this client's certificate: check that it trusts the same anchors and that the "
                "certificate is current.")
    if "unrecognized name" in low or "handshake failure" in low:
        return (f"The server did not accept SNI '{sni}': a Linkerd proxy only terminates TLS for its own identity. "
                "Check --server-identity.")
    if "protocol version" in low or "wrong version" in low or "unsupported protocol" in low:
        return "The server does not speak TLS 1.3 as Linkerd does, or the port is not a TLS port."
    return "Check that the address is the workload's mTLS port and that both sides share the trust anchors."


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Every check in order (material, then the live peer); 1 if any failed, warnings never fail."""
    if bool(args.target) != bool(args.server_identity):
        raise UsageError("--target and --server-identity go together: the live check needs the URL and the "
                         "identity that must serve it, e.g. --target https://10.0.3.7:8080/health "
                         "--server-identity echo.ml-platform.serviceaccount.identity.linkerd.cluster.local")
    expected = Identity.parse(args.server_identity) if args.server_identity else None
    spec = secret_scope_spec(args)
    token_kind = token_source(args)
    report = Report(out or sys.stdout)
    doc = _Doctor(args, os.environ if environ is None else environ, report, _dt.datetime.now(_dt.timezone.utc))
    if spec is not None:
        doc.secret_scope(spec)
    doc.material()
    doc.identity_check()
    doc.key_match()
    doc.expiry()
    doc.chain()
    doc.profile()
    doc.anchor_validity()
    built = doc.tls_context()
    if token_kind is not None:
        doc.tokens(token_kind)
    try:
        if expected is not None:
            handshake_ok = doc.handshake(built[1] if built else None, expected)
            if handshake_ok and built:
                doc.request(built[0], expected)
            else:
                report.skip("request", "needs a verified handshake")
                doc._skip_token_sent("needs a verified handshake")
    finally:
        if isinstance(doc.token_provider, BaseTokenProvider):
            doc.token_provider.close()
    print(report.summary(), file=report.out)
    if expected is None and not report.failed:
        print("(add --target URL --server-identity ID to check a live mTLS handshake with a meshed service)",
              file=report.out)
    return EXIT_ERROR if report.failed else EXIT_OK

