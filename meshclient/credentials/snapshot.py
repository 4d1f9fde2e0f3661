"""``Credentials``: one immutable, fully checked snapshot of a workload's mesh material."""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from .. import pki
from ..errors import ConfigurationError, EmptyMaterialError
from ..identity import Identity
from . import loaders
from .loaders import MaterialOrigin

__all__ = ["Credentials", "MaterialOrigin", "SameSubjectIssuerWarning"]

log = logging.getLogger("meshclient.credentials")
_generation = itertools.count(1)
_SEALED = object()  # only the validating constructors hold it
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class SameSubjectIssuerWarning(UserWarning):
    """The issuer has the same subject DN as its root; meshclient trusts it explicitly.

    Linkerd's step-generated issuer can carry the root's name (linkerd/linkerd2#5350); OpenSSL
    then takes it for self-signed and rejects the chain, so the TLS layer trusts the issuer too.
    """


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside meshclient."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


@dataclass(frozen=True, repr=False, eq=False)
class Credentials:
    """A workload's leaf, chain, key and trust anchors, validated together.

    Build it with :meth:`from_pem`, :meth:`from_files`, :meth:`from_env`,
    :meth:`from_directory` or :meth:`from_objects`. Construction checks everything up front
    (format, key match, chain to the anchors, validity dates, key type, identity SAN,
    client-auth usage) and raises a :class:`~meshclient.CredentialsError` subclass whose
    message names the file or variable and the fix. Direct construction is refused, so every
    instance is a checked one.

    The key never appears in ``repr``; the object pickles (to ship to Spark executors) as its
    PEM and is validated again on arrival.
    """

    identity: Identity
    leaf: x509.Certificate
    intermediates: tuple[x509.Certificate, ...]
    trust_anchors: tuple[x509.Certificate, ...]
    _key: pki.PrivateKey = field(repr=False)
    source: str = "memory"
    warnings: tuple[str, ...] = ()
    extra_trusted: tuple[x509.Certificate, ...] = ()
    generation: int = field(default_factory=lambda: next(_generation))
    _sealed: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._sealed is not _SEALED:
            raise ConfigurationError(
                "Credentials cannot be constructed directly: that would skip the checks.",
                hint="Use Credentials.from_files(...), from_pem(...), from_directory(...), from_env() or "
                "from_objects(...).",
            )

    # -- derived views --------------------------------------------------------------------
    @property
    def not_before(self) -> _dt.datetime:
        return pki.not_before(self.leaf)

    @property
    def not_after(self) -> _dt.datetime:
        return pki.not_after(self.leaf)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the leaf certificate (public, safe to log)."""
        return pki.fingerprint(self.leaf)

    @property
    def serial(self) -> int:
        return self.leaf.serial_number

    @property
    def cert_chain_pem(self) -> bytes:
        """Leaf followed by intermediates, as sent in the handshake."""
        return pki.certs_to_pem([self.leaf, *self.intermediates])

    @property
    def trust_anchors_pem(self) -> bytes:
        return pki.certs_to_pem(self.trust_anchors)

    @property
    def tls_trust_pem(self) -> bytes:
        """What the TLS layer trusts: the anchors, plus ``extra_trusted`` (without duplicates).

        ``extra_trusted`` holds certificates OpenSSL must treat as anchors of their own
        (``VERIFY_X509_PARTIAL_CHAIN``): same-DN issuers, and an anchor that is not a root.
        """
        unique: list[x509.Certificate] = []
        for cert in (*self.trust_anchors, *self.extra_trusted):
            if cert not in unique:
                unique.append(cert)
        return pki.certs_to_pem(unique)

    def private_key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM, for in-memory TLS loading only. Never log it."""
        return pki.key_to_pem(self._key)

    def remaining(self, now: _dt.datetime | None = None) -> _dt.timedelta:
        """Time left until the leaf expires (negative once expired)."""
        return self.not_after - (now or _now())

    def __repr__(self) -> str:
        return (
            f"Credentials(identity='{self.identity}', not_after='{self.not_after:%Y-%m-%dT%H:%M:%SZ}', "
            f"fingerprint='{self.fingerprint[:23]}...', source={self.source!r}, generation={self.generation})"
        )

    # Immutable: copies are the object itself (no re-validation, same generation).
    def __copy__(self) -> Credentials:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Credentials:
        return self

    # Pickling ships PEM and re-validates on arrival (contexts and locks are never pickled).
    def __reduce__(self) -> tuple[Any, ...]:
        return (_unpickle, (self.cert_chain_pem, self.private_key_pem(), self.trust_anchors_pem, self.source))

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_pem(
        cls,
        cert_chain: bytes | str,
        key: bytes | str,
        trust_anchors: bytes | str,
        *,
        password: bytes | str | None = None,
        source: str | None = None,
        origin: MaterialOrigin | None = None,
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Validate PEM (or DER) material held in memory, e.g. values of ``dbutils.secrets.get``.

        ``source`` names the material in ``repr`` and messages ("secret scope ml-mesh");
        ``origin`` names each piece separately ("secret ml-mesh/tls.key").
        """
        if origin is None:
            origin = (
                MaterialOrigin(cert=f"{source} (certificate)", key=f"{source} (key)",
                               trust_anchors=f"{source} (trust anchors)")
                if source else MaterialOrigin()
            )
        chain = pki.load_certificates(cert_chain, where=origin.cert, what="certificate chain")
        anchors = pki.load_certificates(trust_anchors, where=origin.trust_anchors, what="trust anchor bundle")
        private_key = pki.load_private_key(key, where=origin.key, password=password,
                                           password_option=origin.password_option)
        return cls._validate(chain[0], chain[1:], anchors, private_key, source=source or "PEM given in memory",
                             origin=origin, now=now)

    @classmethod
    def from_objects(
        cls,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        trust_anchors: Sequence[x509.Certificate],
        key: pki.PrivateKey,
        *,
        source: str = "memory",
        origin: MaterialOrigin | None = None,
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Validate already-parsed objects (used by sources and certificate issuers)."""
        if origin is None:
            origin = MaterialOrigin(cert=f"{source} (certificate)", key=f"{source} (key)",
                                    trust_anchors=f"{source} (trust anchors)")
        return cls._validate(leaf, intermediates, trust_anchors, key, source=source, origin=origin, now=now)

    @classmethod
    def _validate(
        cls,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        trust_anchors: Sequence[x509.Certificate],
        key: pki.PrivateKey,
        *,
        source: str,
        origin: MaterialOrigin,
        now: _dt.datetime | None,
    ) -> Credentials:
        """Every check, most fundamental first, so the first error is the one to fix first."""
        now = now or _now()
        if not trust_anchors:
            raise EmptyMaterialError(
                f"The trust anchor bundle in {origin.trust_anchors} holds no certificate.",
                hint="Give the mesh trust anchors (Linkerd's ca-bundle.crt from ConfigMap "
                "linkerd-identity-trust-roots, or ca.crt).",
            )
        pki.check_end_entity([leaf, *intermediates], where=origin.cert)
        notes = pki.check_leaf_profile(leaf, where=origin.cert)
        pki.check_key_matches(leaf, key, where=origin.key, cert_where=origin.cert,
                              others=[*intermediates, *trust_anchors])
        identity = pki.identity_of(leaf, where=origin.cert)
        pki.check_validity(leaf, role="leaf", where=origin.cert, now=now)
        result = pki.build_chain(leaf, intermediates, trust_anchors, where=origin.cert, now=now,
                                 anchors_where=origin.trust_anchors)
        for anchor in trust_anchors:
            if anchor is not result.anchor and pki.not_after(anchor) < now:
                notes.append(f"trust anchor '{pki.describe(anchor)}' in {origin.trust_anchors} expired at "
                             f"{pki.not_after(anchor):%Y-%m-%d %H:%M:%S} UTC; it is unused and can be removed")
        if result.same_dn_issuers:
            names = ", ".join(c.subject.rfc4514_string() for c in result.same_dn_issuers)
            msg = (
                f"the issuer '{names}' in {origin.cert} has the same subject as its trust anchor (a known Linkerd "
                "setup, linkerd/linkerd2#5350); OpenSSL would reject the chain as 'self-signed certificate in "
                "certificate chain', so meshclient trusts this issuer explicitly. To drop this workaround, "
                "re-issue the issuer with its own name (e.g. CN=identity.linkerd.cluster.local under "
                "CN=root.linkerd.cluster.local)"
            )
            notes.append(msg)
            warnings.warn(msg[0].upper() + msg[1:] + ".", SameSubjectIssuerWarning, stacklevel=_caller_stacklevel())
        extra = list(result.same_dn_issuers)
        if result.partial_anchor:
            extra.append(result.anchor)
        # Keep only intermediates on the verified path, in order; drop strays and the anchors themselves.
        chain = tuple(c for c in result.path[1:] if c not in trust_anchors)
        creds = cls(
            identity=identity,
            leaf=leaf,
            intermediates=chain,
            trust_anchors=tuple(trust_anchors),
            _key=key,
            source=source,
            warnings=tuple(notes),
            extra_trusted=tuple(extra),
            _sealed=_SEALED,
        )
        log.debug("loaded mesh credentials %r (chain of %d, %d trust anchor(s), %d warning(s))",
                  creds, len(chain) + 1, len(trust_anchors), len(notes))
        return creds

    @classmethod
    def from_files(
        cls,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        trust_anchors: str | os.PathLike[str],
        *,
        password: bytes | str | None = None,
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Load from files: PEM, or Linkerd's DER ``crt.der`` / PKCS#8 ``key.p8``."""
        cert_bytes = loaders.read_file(cert, "certificate")
        key_bytes = loaders.read_file(key, "private key")
        anchor_bytes = loaders.read_file(trust_anchors, "trust anchors")
        origin = MaterialOrigin(cert=f"file '{os.fspath(cert)}'", key=f"file '{os.fspath(key)}'",
                                trust_anchors=f"file '{os.fspath(trust_anchors)}'")
        return cls.from_pem(cert_bytes, key_bytes, anchor_bytes, password=password,
                            source=f"files {os.fspath(cert)}, {os.fspath(key)}, {os.fspath(trust_anchors)}",
                            origin=origin, now=now)

    @classmethod
    def from_directory(
        cls,
        directory: str | os.PathLike[str],
        *,
        trust_anchors: str | os.PathLike[str] | bytes | None = None,
        password: bytes | str | None = None,
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Load a directory in kubernetes.io/tls (``tls.crt``, ``tls.key``, ``ca.crt``) or Linkerd
        (``crt.der``/``crt.pem``, ``key.p8``/``key.pem``) layout; anchors may be given separately."""
        found = loaders.find_in_directory(directory, trust_anchors=trust_anchors)
        return cls.from_pem(found.cert, found.key, found.trust_anchors, password=password, source=found.source,
                            origin=found.origin, now=now)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, now: _dt.datetime | None = None) -> Credentials:
        """Load from ``MESHCLIENT_CERT``, ``MESHCLIENT_KEY``, ``MESHCLIENT_TRUST_ANCHORS``
        (each a path or the PEM text itself) and optional ``MESHCLIENT_KEY_PASSWORD``."""
        found = loaders.from_environment(os.environ if environ is None else environ)
        return cls.from_pem(found.cert, found.key, found.trust_anchors, password=found.password,
                            source=found.source, origin=found.origin, now=now)

    @classmethod
    def from_secret_scope(
        cls,
        scope: str,
        *,
        cert_key: str = "tls.crt",
        key_key: str = "tls.key",
        anchors_key: str = "ca.crt",
        workspace_client: Any | None = None,
        password: bytes | str | None = None,
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Load from a Databricks secret scope (kubernetes.io/tls key names by default).

        In a notebook this reads through ``dbutils.secrets``; elsewhere through a
        ``databricks-sdk`` ``WorkspaceClient`` (unified auth: profile, environment, PAT,
        OAuth M2M) or the ``workspace_client`` given. Errors name the scope and key and what
        to check (missing scope or key, no READ permission) — never a secret value.
        """
        from .secret_scope import default_secret_reader, read_secrets

        reader = default_secret_reader(workspace_client)
        values = read_secrets(scope, (cert_key, key_key, anchors_key), reader)
        where = f"secret scope '{scope}' via {reader.description}"
        origin = MaterialOrigin(cert=f"{where}, key '{cert_key}'", key=f"{where}, key '{key_key}'",
                                trust_anchors=f"{where}, key '{anchors_key}'",
                                password_option="password=...")
        return cls.from_pem(values[cert_key], values[key_key], values[anchors_key], password=password,
                            source=f"secret scope '{scope}' ({cert_key}, {key_key}, {anchors_key})", origin=origin,
                            now=now)


def _unpickle(chain: bytes, key: bytes, anchors: bytes, source: str) -> Credentials:
    origin = MaterialOrigin(cert=f"the unpickled credentials from {source} (certificate)",
                            key=f"the unpickled credentials from {source} (key)",
                            trust_anchors=f"the unpickled credentials from {source} (trust anchors)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SameSubjectIssuerWarning)
        return Credentials.from_pem(chain, key, anchors, source=source, origin=origin)
