"""A sandbox PKI with Linkerd's certificate profile, for tests, the demo and local work.

Trust anchor (CA, pathlen 1) → issuer (CA, pathlen 0) → leaves (ECDSA P-256, one DNS SAN or
one SPIFFE URI SAN, CN = identity when it fits in 64 characters, KU digitalSignature, EKU
serverAuth + clientAuth, SKI/AKI). CAs carry keyUsage keyCertSign/cRLSign and SKI/AKI so the
chains pass Python 3.13's VERIFY_X509_STRICT. Never use this PKI for anything real.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshclient.identity import Identity
from meshclient.pki import PrivateKey, certs_to_pem, key_to_pem

__all__ = ["SandboxPKI", "IssuedLeaf", "CertificateAuthority"]

_SKEW = _dt.timedelta(seconds=20)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)


def _new_key(kind: str = "p256") -> PrivateKey:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key kind {kind!r}")


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its key (sandbox only)."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        return certs_to_pem([self.cert])

    @property
    def key_pem(self) -> bytes:
        return key_to_pem(self.key)


@dataclass(frozen=True)
class IssuedLeaf:
    """A leaf and everything needed to use it: its key, the chain to send, the anchors."""

    identity: Identity
    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()  # issuer(s) to send after the leaf
    trust_anchors: tuple[x509.Certificate, ...] = ()

    @property
    def cert_pem(self) -> bytes:
        return certs_to_pem([self.cert])

    @property
    def chain_pem(self) -> bytes:
        """Leaf followed by its issuer(s): what a client sends, what ``tls.crt`` holds."""
        return certs_to_pem([self.cert, *self.chain])

    @property
    def key_pem(self) -> bytes:
        return key_to_pem(self.key)

    @property
    def trust_anchors_pem(self) -> bytes:
        return certs_to_pem(self.trust_anchors)

    def write(self, directory: str | os.PathLike[str], *, prefix: str = "") -> dict[str, Path]:
        """Write ``tls.crt`` (chain), ``tls.key`` (0600) and ``ca.crt`` (kubernetes.io/tls names)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        paths = {
            "cert": d / f"{prefix}tls.crt",
            "key": d / f"{prefix}tls.key",
            "trust_anchors": d / f"{prefix}ca.crt",
        }
        paths["cert"].write_bytes(self.chain_pem)
        fd = os.open(paths["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.key_pem)
        paths["trust_anchors"].write_bytes(self.trust_anchors_pem)
        return paths


def _ski(key: PrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def _aki(issuer: CertificateAuthority) -> x509.AuthorityKeyIdentifier:
    ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ca_cert(
    name: str,
    key: PrivateKey,
    *,
    pathlen: int | None,
    signer: CertificateAuthority | None,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.cert.subject if signer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=pathlen), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
    )
    if signer:
        builder = builder.add_extension(_aki(signer), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(key)), critical=False
        )
    return builder.sign(signer.key if signer else key, hashes.SHA256())


class SandboxPKI:
    """Trust anchor → issuer, issuing Linkerd-profile leaves.

    ``SandboxPKI.create()`` makes a fresh hierarchy; :meth:`issue` makes leaves, with knobs for
    the bad-input cases tests need (expired, not yet valid, RSA, no clientAuth, no
    digitalSignature, several SANs, a CA leaf). ``now`` and explicit keys make the whole
    hierarchy reproducible for generated documentation.
    """

    def __init__(self, root: CertificateAuthority, issuer: CertificateAuthority,
                 trust_domain: str = "cluster.local", control_plane_ns: str = "linkerd") -> None:
        self.root = root
        self.issuer = issuer
        self.trust_domain = trust_domain
        self.control_plane_ns = control_plane_ns

    @classmethod
    def create(cls, *, trust_domain: str = "cluster.local", control_plane_ns: str = "linkerd",
               root_name: str | None = None, issuer_name: str | None = None,
               root_key_kind: str = "p256", now: _dt.datetime | None = None,
               root_key: PrivateKey | None = None, issuer_key: PrivateKey | None = None) -> SandboxPKI:
        """A root (10 years, pathlen 1) and an issuer (1 year, pathlen 0), both valid from an hour ago."""
        now = now or _now()
        root_key = root_key or _new_key(root_key_kind)
        root_cert = _ca_cert(
            root_name or f"root.{control_plane_ns}.{trust_domain}", root_key, pathlen=1, signer=None,
            not_before=now - _dt.timedelta(hours=1), not_after=now + _dt.timedelta(days=3650),
        )
        root = CertificateAuthority(root_cert, root_key)
        issuer_key = issuer_key or _new_key()
        issuer_cert = _ca_cert(
            issuer_name or f"identity.{control_plane_ns}.{trust_domain}", issuer_key, pathlen=0, signer=root,
            not_before=now - _dt.timedelta(hours=1), not_after=now + _dt.timedelta(days=365),
        )
        return cls(root, CertificateAuthority(issuer_cert, issuer_key), trust_domain, control_plane_ns)

    def new_issuer(self, name: str | None = None, *, not_before: _dt.datetime | None = None,
                   not_after: _dt.datetime | None = None, pathlen: int | None = 0,
                   signer: CertificateAuthority | None = None, key: PrivateKey | None = None) -> CertificateAuthority:
        """Another issuer under the root (or ``signer``): for rotations, expired issuers, deeper chains."""
        start = not_before or (_now() - _dt.timedelta(hours=1))
        key = key or _new_key()
        cert = _ca_cert(name or f"identity.{self.control_plane_ns}.{self.trust_domain}", key, pathlen=pathlen,
                        signer=signer or self.root, not_before=start,
                        not_after=not_after or (start + _dt.timedelta(days=365)))
        return CertificateAuthority(cert, key)

    @property
    def trust_anchors(self) -> tuple[x509.Certificate, ...]:
        return (self.root.cert,)

    @property
    def trust_anchors_pem(self) -> bytes:
        return certs_to_pem(self.trust_anchors)

    def identity(self, service_account: str, namespace: str) -> Identity:
        return Identity.linkerd(service_account, namespace, control_plane_ns=self.control_plane_ns,
                                trust_domain=self.trust_domain)

    def issue(
        self,
        identity: str | Identity,
        *,
        lifetime: _dt.timedelta = _dt.timedelta(hours=24),
        not_before: _dt.datetime | None = None,
        not_after: _dt.datetime | None = None,
        key_kind: str = "p256",
        extra_sans: Sequence[str] = (),
        include_san: bool = True,
        client_auth: bool = True,
        server_auth: bool = True,
        digital_signature: bool = True,
        is_ca: bool = False,
        signer: CertificateAuthority | None = None,
        key: PrivateKey | None = None,
        serial: int | None = None,
    ) -> IssuedLeaf:
        """Issue a leaf for ``identity`` (DNS → one DNS SAN and CN; spiffe:// → one URI SAN).

        Like Linkerd's identity service: valid from 20 s ago for ``lifetime`` + 40 s, ECDSA P-256,
        KU digitalSignature (critical), EKU serverAuth + clientAuth, SKI and AKI.
        """
        ident = Identity.parse(identity)
        signer = signer or self.issuer
        key = key or _new_key(key_kind)
        start = not_before or (_now() - _SKEW)
        end = not_after or (start + lifetime + 2 * _SKEW)
        cn = [x509.NameAttribute(NameOID.COMMON_NAME, ident.value)] if ident.is_dns and len(ident.value) <= 64 else []
        names: list[x509.GeneralName] = []
        if include_san:
            names.append(x509.UniformResourceIdentifier(ident.value) if ident.is_spiffe else x509.DNSName(ident.value))
        for extra in extra_sans:
            names.append(x509.UniformResourceIdentifier(extra) if "://" in extra else x509.DNSName(extra))
        ekus = ([ExtendedKeyUsageOID.SERVER_AUTH] if server_auth else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client_auth else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(cn))
            .issuer_name(signer.cert.subject)
            .public_key(key.public_key())
            .serial_number(serial or x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=digital_signature, content_commitment=False,
                    key_encipherment=isinstance(key, rsa.RSAPrivateKey) or not digital_signature,
                    data_encipherment=False, key_agreement=False, key_cert_sign=is_ca, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(ekus or [ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(_ski(key), critical=False)
            .add_extension(_aki(signer), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=not cn)
        cert = builder.sign(signer.key, hashes.SHA256())
        chain = () if signer is self.root else (signer.cert,)
        return IssuedLeaf(ident, cert, key, chain, self.trust_anchors)

    def issue_expired(self, identity: str | Identity, *, now: _dt.datetime | None = None,
                      key: PrivateKey | None = None) -> IssuedLeaf:
        """A 24 h leaf that expired an hour before ``now``."""
        end = (now or _now()) - _dt.timedelta(hours=1)
        return self.issue(identity, not_before=end - _dt.timedelta(hours=24), not_after=end, key=key)

    def issue_not_yet_valid(self, identity: str | Identity, *, now: _dt.datetime | None = None,
                            key: PrivateKey | None = None) -> IssuedLeaf:
        """A 24 h leaf that starts a day after ``now`` (what a client with a slow clock sees)."""
        start = (now or _now()) + _dt.timedelta(days=1)
        return self.issue(identity, not_before=start, not_after=start + _dt.timedelta(hours=24), key=key)

    def write(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write ``ca.crt``, ``issuer.crt`` and ``issuer.key`` (0600) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "ca.crt").write_bytes(self.root.cert_pem)
        (d / "issuer.crt").write_bytes(self.issuer.cert_pem)
        fd = os.open(d / "issuer.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.issuer.key_pem)
        return {"trust_anchors": d / "ca.crt", "issuer_cert": d / "issuer.crt", "issuer_key": d / "issuer.key"}
