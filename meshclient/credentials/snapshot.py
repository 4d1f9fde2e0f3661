"""``Credentials``: one immutable, fully checked snapshot of a workload's mesh material."""

from __future__ import annotations

import datetime as _dt
import itertools
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from .. import pki
from ..errors import MaterialFormatError
from ..identity import Identity
from . import loaders

__all__ = ["Credentials", "SameSubjectIssuerWarning"]

log = logging.getLogger("meshclient.credentials")
_generation = itertools.count(1)


class SameSubjectIssuerWarning(UserWarning):
    """The issuer has the same subject DN as its root; meshclient trusts it explicitly."""


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


@dataclass(frozen=True, repr=False, eq=False)
class Credentials:
    """A workload's leaf, chain, key and trust anchors, validated together.

    Build it with :meth:`from_pem`, :meth:`from_files`, :meth:`from_env` or
    :meth:`from_directory`. Construction checks everything up front (key match, chain to the
    anchors, validity dates, key type, identity SAN, client-auth usage) and raises a
    :class:`~meshclient.CredentialsError` subclass naming the problem and the fix.

    The key never appears in ``repr``; the object is picklable (for shipping to Spark
    executors) and rebuilds nothing but itself on arrival.
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

    # -- derived views --------------------------------------------------------------------
    @property
    def not_before(self) -> _dt.datetime:
        return pki.not_before(self.leaf)

    @property
    def not_after(self) -> _dt.datetime:
        return pki.not_after(self.leaf)

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint of the leaf certificate (safe to log)."""
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
        """What the TLS layer trusts: the anchors, plus same-DN issuers OpenSSL cannot chain through."""
        return pki.certs_to_pem([*self.trust_anchors, *self.extra_trusted])

    def private_key_pem(self) -> bytes:
        """The key as unencrypted PKCS#8 PEM, for in-memory TLS loading only. Never log it."""
        return pki.key_to_pem(self._key)

    def remaining(self, now: _dt.datetime | None = None) -> _dt.timedelta:
        return self.not_after - (now or _now())

    def __repr__(self) -> str:
        return (
            f"Credentials(identity='{self.identity}', not_after='{self.not_after:%Y-%m-%dT%H:%M:%SZ}', "
            f"fingerprint='{self.fingerprint[:23]}...', source={self.source!r})"
        )

    # pickling: ship PEM, re-validate on arrival (keeps invariants; contexts are never pickled)
    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _unpickle,
            (self.cert_chain_pem, self.private_key_pem(), self.trust_anchors_pem, self.source),
        )

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_pem(
        cls,
        cert_chain: bytes | str,
        key: bytes | str,
        trust_anchors: bytes | str,
        *,
        password: bytes | str | None = None,
        source: str = "PEM given in memory",
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Validate PEM (or DER) material held in memory."""
        chain = pki.load_certificates(cert_chain, where=f"{source} (certificate)", what="certificate chain")
        anchors = pki.load_certificates(trust_anchors, where=f"{source} (trust anchors)", what="trust anchor")
        private_key = pki.load_private_key(key, where=f"{source} (key)", password=password)
        return cls.from_objects(chain[0], chain[1:], anchors, private_key, source=source, now=now)

    @classmethod
    def from_objects(
        cls,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        trust_anchors: Sequence[x509.Certificate],
        key: pki.PrivateKey,
        *,
        source: str = "memory",
        now: _dt.datetime | None = None,
    ) -> Credentials:
        """Validate already-parsed objects (used by sources and issuers)."""
        now = now or _now()
        where = source
        if not trust_anchors:
            raise MaterialFormatError(f"The trust-anchor bundle ({where}) is empty.",
                                      hint="Give the mesh trust anchors (Linkerd's ca-bundle.crt / ca.crt).")
        profile_warnings = pki.check_leaf_profile(leaf, where=where)
        pki.check_key_matches(leaf, key, where=where)
        identity = pki.identity_of(leaf, where=where)
        pki.check_validity(leaf, role="leaf", where=where, now=now)
        result = pki.build_chain(leaf, intermediates, trust_anchors, where=where, now=now)
        notes = list(profile_warnings)
        if result.same_dn_issuers:
            names = ", ".join(c.subject.rfc4514_string() for c in result.same_dn_issuers)
            msg = (
                f"issuer '{names}' has the same subject as its trust anchor; OpenSSL would reject the chain as "
                "'self-signed certificate in certificate chain', so meshclient trusts this issuer explicitly "
                "(re-issue the issuer with its own name, e.g. CN=identity.linkerd.cluster.local under "
                "CN=root.linkerd.cluster.local, to drop this workaround)"
            )
            notes.append(msg)
            warnings.warn(f"{where}: {msg}", SameSubjectIssuerWarning, stacklevel=3)
        # Keep only intermediates on the verified path, in order; drop strays and the anchor itself.
        chain = tuple(c for c in result.path[1:] if c not in trust_anchors)
        creds = cls(
            identity=identity,
            leaf=leaf,
            intermediates=chain,
            trust_anchors=tuple(trust_anchors),
            _key=key,
            source=source,
            warnings=tuple(notes),
            extra_trusted=result.same_dn_issuers,
        )
        log.debug("loaded mesh credentials %r", creds)
        return creds

    @classmethod
    def from_files(
        cls,
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
        trust_anchors: str | os.PathLike[str],
        *,
        password: bytes | str | None = None,
    ) -> Credentials:
        """Load from files: PEM, or Linkerd's DER ``crt.der`` / PKCS#8 ``key.p8``."""
        cert_bytes = loaders.read_file(cert, "certificate")
        key_bytes = loaders.read_file(key, "private key")
        anchor_bytes = loaders.read_file(trust_anchors, "trust anchors")
        return cls.from_pem(cert_bytes, key_bytes, anchor_bytes, password=password,
                            source=f"files {os.fspath(cert)}, {os.fspath(key)}, {os.fspath(trust_anchors)}")

    @classmethod
    def from_directory(
        cls,
        directory: str | os.PathLike[str],
        *,
        trust_anchors: str | os.PathLike[str] | bytes | None = None,
        password: bytes | str | None = None,
    ) -> Credentials:
        """Load a directory in kubernetes.io/tls (``tls.crt``, ``tls.key``, ``ca.crt``) or Linkerd
        (``crt.der``/``crt.pem``, ``key.p8``/``key.pem``) layout."""
        found = loaders.find_in_directory(Path(directory), trust_anchors=trust_anchors)
        return cls.from_pem(found.cert, found.key, found.trust_anchors, password=password, source=found.source)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Credentials:
        """Load from ``MESHCLIENT_CERT``, ``MESHCLIENT_KEY``, ``MESHCLIENT_TRUST_ANCHORS``
        (each a path or the PEM text itself) and optional ``MESHCLIENT_KEY_PASSWORD``."""
        found = loaders.from_environment(os.environ if environ is None else environ)
        return cls.from_pem(found.cert, found.key, found.trust_anchors, password=found.password, source=found.source)


def _unpickle(chain: bytes, key: bytes, anchors: bytes, source: str) -> Credentials:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SameSubjectIssuerWarning)
        return Credentials.from_pem(chain, key, anchors, source=source)
