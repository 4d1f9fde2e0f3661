"""Credentials: every way in, every bad input with its own message, and no secret in any output.

Linkerd's own test certificates are embedded below (public test keys, copied verbatim):

* ``LINKERD2_VALID_*``: linkerd/linkerd2@c4f8ba27 ``cli/cmd/testdata/valid-{trust-anchors,crt,key}.pem``
  (step-generated root and an issuer with the *same subject* as the root, linkerd/linkerd2#5350).
* ``PROXY_CA1``/``PROXY_CA2`` and the ``foo-ns1-ca1``/``foo-ns1-ca2`` leaves (``crt.der``, ``key.p8``):
  linkerd/linkerd2-proxy@968361d6 ``linkerd/tls/test-util/src/testdata/``. ca1 and ca2 share the
  subject ``OU=None`` with different keys; the leaves sit directly under them.

Every test passes ``now=NOW`` (or a clock derived from the material) so results never depend on
the day the suite runs.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import importlib.util
import logging
import os
import pickle
import re
import socket
import ssl
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshclient import (
    CertificateValidityError,
    ChainError,
    ConfigurationError,
    Credentials,
    CredentialsError,
    EncryptedKeyError,
    IdentitySANError,
    KeyMismatchError,
    KeyUsageError,
    MaterialFormatError,
    MaterialNotFoundError,
    MeshError,
    MissingIntermediateError,
    SameSubjectIssuerWarning,
    UnsupportedKeyError,
)
from meshclient import pki as mpki
from meshclient.credentials import MaterialOrigin, loaders
from meshclient.errors import (
    CertificateExpiredError,
    CertificateNotYetValidError,
    EmptyMaterialError,
    WrongKeyPasswordError,
)
from meshclient_sandbox.pki import CertificateAuthority, IssuedLeaf, SandboxPKI

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 1, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
CLIENT = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
FOO_NS1 = "foo.ns1.serviceaccount.identity.linkerd.cluster.local"

# -- Linkerd fixtures (public test material) ---------------------------------------------------
LINKERD2_VALID_TRUST_ANCHORS = b"""-----BEGIN CERTIFICATE-----
MIIBwTCCAWagAwIBAgIQeDZp5lDaIygQ5UfMKZrFATAKBggqhkjOPQQDAjApMScw
JQYDVQQDEx5pZGVudGl0eS5saW5rZXJkLmNsdXN0ZXIubG9jYWwwHhcNMjAwODI4
MDcxMjQ3WhcNMzAwODI2MDcxMjQ3WjApMScwJQYDVQQDEx5pZGVudGl0eS5saW5r
ZXJkLmNsdXN0ZXIubG9jYWwwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARqc70Z
l1vgw79rjB5uSITICUA6GyfvSFfcuIis7B/XFSkkwAHU5S/s1AAP+R0TX7HBWUC4
uaG4WWsiwJKNn7mgo3AwbjAOBgNVHQ8BAf8EBAMCAQYwEgYDVR0TAQH/BAgwBgEB
/wIBATAdBgNVHQ4EFgQU5YtjVVPfd7I7NLHsn2C26EByGV0wKQYDVR0RBCIwIIIe
aWRlbnRpdHkubGlua2VyZC5jbHVzdGVyLmxvY2FsMAoGCCqGSM49BAMCA0kAMEYC
IQCN7lBFLDDvjx6V0+XkjpKERRsJYf5adMvnloFl48ilJgIhANtxhndcr+QJPuC8
vgUC0d2/9FMueIVMb+46WTCOjsqr
-----END CERTIFICATE-----
"""
LINKERD2_VALID_CRT = b"""-----BEGIN CERTIFICATE-----
MIIBwDCCAWegAwIBAgIRAJRIgZ8RtO8Ewg1Xepf8T44wCgYIKoZIzj0EAwIwKTEn
MCUGA1UEAxMeaWRlbnRpdHkubGlua2VyZC5jbHVzdGVyLmxvY2FsMB4XDTIwMDgy
ODA3MTM0N1oXDTMwMDgyNjA3MTM0N1owKTEnMCUGA1UEAxMeaWRlbnRpdHkubGlu
a2VyZC5jbHVzdGVyLmxvY2FsMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1/Fp
fcRnDcedL6AjUaXYPv4DIMBaJufOI5NWty+XSX7JjXgZtM72dQvRaYanuxD36Dt1
2/JxyiSgxKWRdoay+aNwMG4wDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYB
Af8CAQAwHQYDVR0OBBYEFI1WnrqMYKaHHOo+zpyiiDq2pO0KMCkGA1UdEQQiMCCC
HmlkZW50aXR5LmxpbmtlcmQuY2x1c3Rlci5sb2NhbDAKBggqhkjOPQQDAgNHADBE
AiAtuoI5XuCtrGVRzSmRTl2ra28aV9MyTU7d5qnTAFHKSgIgRKCvluOSgA5O21p5
51tdrmkHEZRr0qlLSJdHYgEfMzk=
-----END CERTIFICATE-----
"""
LINKERD2_VALID_KEY = b"""-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIAAe8nfbzZu9c/OB2+8xJM0Fz7NUwTQazulkFNs4TI5+oAoGCCqGSM49
AwEHoUQDQgAE1/FpfcRnDcedL6AjUaXYPv4DIMBaJufOI5NWty+XSX7JjXgZtM72
dQvRaYanuxD36Dt12/JxyiSgxKWRdoay+Q==
-----END EC PRIVATE KEY-----
"""
PROXY_CA1 = b"""-----BEGIN CERTIFICATE-----
MIIBYTCCAQigAwIBAgIUewTQoDILah7O6hembTaJCVj+3lswCgYIKoZIzj0EAwIw
DzENMAsGA1UECxMETm9uZTAeFw0yMTEwMDgxOTI0MDBaFw0zMTEwMDYxOTI0MDBa
MA8xDTALBgNVBAsTBE5vbmUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQZSg6E
AtBwIwxadOdtC5Ta4sNX6bRpcw/SBTwfK37rP+1V8mv7olbFmjMl8GUNsynBh7Ug
faBG9KafL5PkaVE2o0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0TAQH/BAUwAwEB
/zAdBgNVHQ4EFgQUvISzIf+E7w3g82DYvMeEGY2unjEwCgYIKoZIzj0EAwIDRwAw
RAIgGjzOjxkSf24HVnB437yEJ04N4NFS+B2p/7phCuA9T3sCICXkFYXETcXySgsP
klOrbl1qhWPor7LAvdtlUAetYdvw
-----END CERTIFICATE-----
"""
PROXY_CA2 = b"""-----BEGIN CERTIFICATE-----
MIIBYjCCAQigAwIBAgIUEyLtsNtUsy3/+h198xUauimd/kswCgYIKoZIzj0EAwIw
DzENMAsGA1UECxMETm9uZTAeFw0yMTEwMDgxOTI0MDBaFw0zMTEwMDYxOTI0MDBa
MA8xDTALBgNVBAsTBE5vbmUwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASKOT0D
8c/uFBugiHMYAUvkQBos2b7plstV0Z+cbyXv83ojjEN2bsos9iMg9SiAwNBGwoaM
nlRNgQV6oGh9Xeoio0IwQDAOBgNVHQ8BAf8EBAMCAQYwDwYDVR0TAQH/BAUwAwEB
/zAdBgNVHQ4EFgQUcJPrxcZZQtZgZUPjATyM39++k9cwCgYIKoZIzj0EAwIDSAAw
RQIhAOgdSIrAptx2YNmE0FTaGpp5o8C78isaF6qXXkBUpG7LAiAzK0ZgQpxIuui/
8SEBC+k6bQm9zriIabLDY1bhu7Md+g==
-----END CERTIFICATE-----
"""
FOO_NS1_CA1_CRT_DER = base64.b64decode("""
MIIB2DCCAX2gAwIBAgIUe5HlGNuYz6wINjt337GDuQL7Sv8wCgYIKoZIzj0EAwIwDzENMAsGA1UE
CxMETm9uZTAeFw0yMTEwMDgxOTI0MDBaFw0zMTEwMDYxOTI0MDBaMAAwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAATL7snpu+1iXKNOyhBylYF6B5MfbqRzYEyjNSFvLqUoiAcpNaSKD7kZLkdIWzv7
mTgIMozXvrLeBVAvaqt8jh8oo4HFMIHCMA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAUBggrBgEF
BQcDAQYIKwYBBQUHAwIwDAYDVR0TAQH/BAIwADAdBgNVHQ4EFgQUns96Q7kMiztYbw6ZxfiSvmaT
1QIwHwYDVR0jBBgwFoAUvISzIf+E7w3g82DYvMeEGY2unjEwQwYDVR0RAQH/BDkwN4I1Zm9vLm5z
MS5zZXJ2aWNlYWNjb3VudC5pZGVudGl0eS5saW5rZXJkLmNsdXN0ZXIubG9jYWwwCgYIKoZIzj0E
AwIDSQAwRgIhAJABkaOEBFSrCpANsGSdCB5im5jI1egkyajqRBRkz7mYAiEAteuBqhObu8ebd3TQ
jUqmDpMNQ4o84c1qdfQAZjBaGmU=
""")
FOO_NS1_CA1_KEY_P8 = base64.b64decode("""
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNXo1lvGf9Y9Xf9WvQaAxnXgz7/F8
qzRR9hC6ZoSu/1mhRANCAATL7snpu+1iXKNOyhBylYF6B5MfbqRzYEyjNSFvLqUoiAcpNaSKD7kZ
LkdIWzv7mTgIMozXvrLeBVAvaqt8jh8o
""")
FOO_NS1_CA2_CRT_DER = base64.b64decode("""
MIIB1jCCAX2gAwIBAgIUSHDj/0Q1ylkakO3Uuft4BHzJiNQwCgYIKoZIzj0EAwIwDzENMAsGA1UE
CxMETm9uZTAeFw0yMTEwMDgxOTI0MDBaFw0zMTEwMDYxOTI0MDBaMAAwWTATBgcqhkjOPQIBBggq
hkjOPQMBBwNCAASPEi5VX8cSpoEf/UJLsyAmPJQv24j/2ZGtRg5cUg7D3In98n+EAKdGPDVgKZR+
qxZfLoE+YscObOhLG+aAiZtbo4HFMIHCMA4GA1UdDwEB/wQEAwIFoDAdBgNVHSUEFjAUBggrBgEF
BQcDAQYIKwYBBQUHAwIwDAYDVR0TAQH/BAIwADAdBgNVHQ4EFgQUPS16PJ0qd7ZMiGl4lDS6Qm9s
4w8wHwYDVR0jBBgwFoAUcJPrxcZZQtZgZUPjATyM39++k9cwQwYDVR0RAQH/BDkwN4I1Zm9vLm5z
MS5zZXJ2aWNlYWNjb3VudC5pZGVudGl0eS5saW5rZXJkLmNsdXN0ZXIubG9jYWwwCgYIKoZIzj0E
AwIDRwAwRAIgJ9RsBUJ6AkRBaQ2oJKYrxqYX+PC8MtPjaznbZI0HRNsCID23C7L06ShmkeE6SZ4M
qERCFcBYbftB3uh9cvmuZzCp
""")
FOO_NS1_CA2_KEY_P8 = base64.b64decode("""
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgpCg5VN0MtCFk/L7toVRXBk2Q2Vlm
1mDFzPvRymCs6PChRANCAASPEi5VX8cSpoEf/UJLsyAmPJQv24j/2ZGtRg5cUg7D3In98n+EAKdG
PDVgKZR+qxZfLoE+YscObOhLG+aAiZtb
""")


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> SandboxPKI:
    return SandboxPKI.create(now=NOW)


@pytest.fixture(scope="module")
def leaf(ca: SandboxPKI) -> IssuedLeaf:
    return ca.issue(CLIENT, not_before=NOW - dt.timedelta(minutes=10))


def issue(ca: SandboxPKI, identity: str = CLIENT, **kw: Any) -> IssuedLeaf:
    kw.setdefault("not_before", NOW - dt.timedelta(minutes=10))
    return ca.issue(identity, **kw)


def write(tmp: Path, leaf: IssuedLeaf, *, cert: bytes | None = None, key: bytes | None = None,
          anchors: bytes | None = None) -> tuple[Path, Path, Path]:
    paths = (tmp / "tls.crt", tmp / "tls.key", tmp / "ca.crt")
    paths[0].write_bytes(leaf.chain_pem if cert is None else cert)
    paths[1].write_bytes(leaf.key_pem if key is None else key)
    paths[2].write_bytes(leaf.trust_anchors_pem if anchors is None else anchors)
    return paths


def load(tmp: Path, leaf: IssuedLeaf, *, password: str | bytes | None = None, now: dt.datetime = NOW,
         **material: bytes | None) -> Credentials:
    c, k, a = write(tmp, leaf, **material)
    return Credentials.from_files(c, k, a, password=password, now=now)


E = TypeVar("E", bound=CredentialsError)


def fails(exc: type[E], fn: Callable[[], object], *fragments: str) -> E:
    """``fn`` raises exactly ``exc``, whose message holds every fragment and which has a hint."""
    with pytest.raises(exc) as info:
        fn()
    err = info.value
    assert type(err) is exc, f"expected {exc.__name__}, got {type(err).__name__}: {err}"
    for fragment in fragments:
        assert fragment in err.message, f"{fragment!r} not in {err.message!r}"
    assert err.hint, "every credentials error says what to do"
    assert str(err) == f"{err.message} {err.hint}"
    return err


def pem_key(key: Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
            password: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return bytes(key.private_bytes(serialization.Encoding.PEM, fmt, enc))


def sign_leaf(issuer_cert: x509.Certificate, issuer_key: Any, identity: str, *, not_before: dt.datetime,
              key: Any = None) -> tuple[x509.Certificate, Any]:
    """A leaf like Linkerd's identity service issues (Go template: KU, EKU, AKI, one DNS SAN)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, identity)]))
        .issuer_name(issuer_cert.subject)
        .public_key(key.public_key())
        .serial_number(506)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(hours=24, seconds=40))
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(identity)]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


def scalar(key: Any) -> str:
    """The private scalar of an EC key as 64 hex digits (a form key material could leak in)."""
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return format(key.private_numbers().private_value, "064x")


# -- happy paths -------------------------------------------------------------------------------
def test_from_pem_bytes_and_text(leaf: IssuedLeaf) -> None:
    for conv in (bytes, lambda b: b.decode()):
        creds = Credentials.from_pem(conv(leaf.chain_pem), conv(leaf.key_pem), conv(leaf.trust_anchors_pem), now=NOW)
        assert creds.identity == leaf.identity


def test_snapshot_attributes(ca: SandboxPKI, leaf: IssuedLeaf) -> None:
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW)
    assert str(creds.identity) == CLIENT and creds.identity.namespace == "ml-team"
    assert creds.leaf == leaf.cert and creds.intermediates == (ca.issuer.cert,)
    assert creds.trust_anchors == (ca.root.cert,)
    assert creds.not_before == mpki.not_before(leaf.cert) and creds.not_before.tzinfo is not None
    assert creds.not_after - creds.not_before == dt.timedelta(hours=24, seconds=40)
    assert creds.serial == leaf.cert.serial_number
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", creds.fingerprint)
    assert creds.cert_chain_pem == leaf.chain_pem
    assert creds.trust_anchors_pem == creds.tls_trust_pem == leaf.trust_anchors_pem
    assert creds.warnings == () and creds.extra_trusted == ()
    assert serialization.load_pem_private_key(creds.private_key_pem(), None).public_key() == leaf.key.public_key()
    assert creds.remaining(NOW) == creds.not_after - NOW


def test_generations_increase(leaf: IssuedLeaf) -> None:
    a = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW)
    b = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW)
    assert b.generation > a.generation


def test_from_files_and_kubernetes_directory(tmp_path: Path, leaf: IssuedLeaf) -> None:
    paths = leaf.write(tmp_path)
    creds = Credentials.from_files(paths["cert"], paths["key"], paths["trust_anchors"], now=NOW)
    assert creds.identity == leaf.identity
    creds = Credentials.from_directory(tmp_path, now=NOW)
    assert creds.identity == leaf.identity and creds.intermediates
    assert creds.source == f"directory {tmp_path}"


def test_linkerd_directory_layout_der_and_pkcs8(tmp_path: Path) -> None:
    (tmp_path / "crt.der").write_bytes(FOO_NS1_CA1_CRT_DER)
    (tmp_path / "key.p8").write_bytes(FOO_NS1_CA1_KEY_P8)
    (tmp_path / "csr.der").write_bytes(b"ignored")
    anchors = tmp_path.parent / "ca1.pem"
    anchors.write_bytes(PROXY_CA1)
    for given in (anchors, str(anchors), PROXY_CA1, PROXY_CA1.decode()):
        creds = Credentials.from_directory(tmp_path, trust_anchors=given, now=NOW)  # type: ignore[arg-type]
        assert str(creds.identity) == FOO_NS1 and creds.intermediates == ()
    creds = Credentials.from_files(tmp_path / "crt.der", tmp_path / "key.p8", anchors, now=NOW)
    assert creds.fingerprint == mpki.fingerprint(x509.load_der_x509_certificate(FOO_NS1_CA1_CRT_DER))
    # Linkerd's fixture leaf has an empty subject and a critical SAN: nothing to warn about but the missing CN
    assert creds.warnings == ()


def test_from_env_paths_and_pem_text(tmp_path: Path, leaf: IssuedLeaf, monkeypatch: pytest.MonkeyPatch) -> None:
    c, k, a = write(tmp_path, leaf)
    env = {"MESHCLIENT_CERT": f" {c}\n", "MESHCLIENT_KEY": str(k), "MESHCLIENT_TRUST_ANCHORS": str(a)}
    assert Credentials.from_env(env, now=NOW).identity == leaf.identity
    env = {"MESHCLIENT_CERT": leaf.chain_pem.decode(), "MESHCLIENT_KEY": leaf.key_pem.decode(),
           "MESHCLIENT_TRUST_ANCHORS": str(a)}
    creds = Credentials.from_env(env, now=NOW)
    assert creds.identity == leaf.identity and creds.source == "environment"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Credentials.from_env(now=NOW).identity == leaf.identity  # os.environ by default


def test_from_env_with_encrypted_key(tmp_path: Path, leaf: IssuedLeaf) -> None:
    env = {"MESHCLIENT_CERT": leaf.chain_pem.decode(), "MESHCLIENT_TRUST_ANCHORS": leaf.trust_anchors_pem.decode(),
           "MESHCLIENT_KEY": pem_key(leaf.key, password=b"s3cret pass").decode(),
           "MESHCLIENT_KEY_PASSWORD": "s3cret pass"}
    assert Credentials.from_env(env, now=NOW).identity == leaf.identity


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pem: pem.replace(b"\n", b"\r\n"),  # Windows line endings
        lambda pem: b"\n".join(b"    " + line for line in pem.split(b"\n")),  # indented (YAML block)
        lambda pem: pem.replace(b"\n", b"\\n"),  # literal \n, as in a JSON or .env value
        lambda pem: pem.replace(b"\n", b" "),  # pasted onto one line
        lambda pem: b"Bag Attributes\n    friendlyName: tls\n" + pem + b"\n\n",  # openssl pkcs12 -nodes output
    ],
    ids=["crlf", "indented", "escaped-newlines", "one-line", "with-text-around"],
)
def test_pem_layout_is_tolerated(leaf: IssuedLeaf, mangle: Callable[[bytes], bytes]) -> None:
    creds = Credentials.from_pem(mangle(leaf.chain_pem), mangle(leaf.key_pem), mangle(leaf.trust_anchors_pem), now=NOW)
    assert creds.identity == leaf.identity


@pytest.mark.parametrize("password", [b"pw-bytes", "pw-text"])
@pytest.mark.parametrize(
    "encode",
    [
        lambda k, pw: pem_key(k, password=pw),
        lambda k, pw: pem_key(k, serialization.PrivateFormat.TraditionalOpenSSL, password=pw),
        lambda k, pw: k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.BestAvailableEncryption(pw)),
    ],
    ids=["pkcs8-pem", "legacy-pem", "pkcs8-der"],
)
def test_encrypted_keys_with_the_right_password(leaf: IssuedLeaf, encode: Callable[[Any, bytes], bytes],
                                                password: bytes | str) -> None:
    pw = password.encode() if isinstance(password, str) else password
    creds = Credentials.from_pem(leaf.chain_pem, encode(leaf.key, pw), leaf.trust_anchors_pem, password=password,
                                 now=NOW)
    assert creds.identity == leaf.identity


def test_password_for_an_unencrypted_key_is_ignored(leaf: IssuedLeaf) -> None:
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, password="unused", now=NOW)
    assert creds.identity == leaf.identity


def test_key_formats(leaf: IssuedLeaf) -> None:
    for key in (pem_key(leaf.key, serialization.PrivateFormat.TraditionalOpenSSL),
                leaf.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()),
                b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
                + pem_key(leaf.key, serialization.PrivateFormat.TraditionalOpenSSL)):
        assert Credentials.from_pem(leaf.chain_pem, key, leaf.trust_anchors_pem, now=NOW).identity == leaf.identity


def test_chain_with_the_root_and_strays_keeps_only_the_path(ca: SandboxPKI, leaf: IssuedLeaf) -> None:
    stray = SandboxPKI.create(now=NOW, root_name="root.elsewhere").issuer.cert_pem
    creds = Credentials.from_pem(leaf.chain_pem + stray + ca.root.cert_pem, leaf.key_pem, leaf.trust_anchors_pem,
                                 now=NOW)
    assert creds.intermediates == (ca.issuer.cert,)
    assert creds.cert_chain_pem == leaf.chain_pem


def test_spiffe_leaf(ca: SandboxPKI) -> None:
    spiffe = issue(ca, "spiffe://cluster.local/ns/ml-team/sa/notebook")
    creds = Credentials.from_pem(spiffe.chain_pem, spiffe.key_pem, spiffe.trust_anchors_pem, now=NOW)
    assert creds.identity.is_spiffe and creds.identity.service_account == "notebook"


def test_other_curves_load_with_a_warning(ca: SandboxPKI) -> None:
    p384 = issue(ca, key_kind="p384")
    creds = Credentials.from_pem(p384.chain_pem, p384.key_pem, p384.trust_anchors_pem, now=NOW)
    assert any("secp384r1" in w for w in creds.warnings)
    ed = issue(ca, key=ed25519.Ed25519PrivateKey.generate())
    creds = Credentials.from_pem(ed.chain_pem, ed.key_pem, ed.trust_anchors_pem, now=NOW)
    assert any("Ed25519" in w for w in creds.warnings)


def test_from_objects(leaf: IssuedLeaf) -> None:
    creds = Credentials.from_objects(leaf.cert, leaf.chain, leaf.trust_anchors, leaf.key, source="issuer", now=NOW)
    assert creds.identity == leaf.identity and creds.source == "issuer"


# -- several anchors (rotation overlap) ----------------------------------------------------------
def test_leaf_from_either_of_two_anchors(tmp_path: Path) -> None:
    old, new = SandboxPKI.create(now=NOW), SandboxPKI.create(now=NOW)  # same names, different keys
    assert old.root.cert.subject == new.root.cert.subject
    bundle = old.trust_anchors_pem + new.trust_anchors_pem
    for pki, anchor in ((old, old.root.cert), (new, new.root.cert)):
        leaf = issue(pki)
        for anchors in (bundle, new.trust_anchors_pem + old.trust_anchors_pem):
            creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, anchors, now=NOW)
            assert creds.identity == leaf.identity and len(creds.trust_anchors) == 2
            assert creds.intermediates == (pki.issuer.cert,)
        # and each anchor alone rejects the other's leaf
        other = new if pki is old else old
        fails(ChainError, lambda leaf=leaf, other=other: Credentials.from_pem(  # type: ignore[misc]
            leaf.chain_pem, leaf.key_pem, other.trust_anchors_pem, now=NOW), "does not verify to the trust anchors")
        assert anchor in creds.trust_anchors


def test_linkerd_proxy_fixtures_with_a_two_anchor_bundle(tmp_path: Path) -> None:
    bundle = PROXY_CA1 + PROXY_CA2
    for crt, key in ((FOO_NS1_CA1_CRT_DER, FOO_NS1_CA1_KEY_P8), (FOO_NS1_CA2_CRT_DER, FOO_NS1_CA2_KEY_P8)):
        creds = Credentials.from_pem(crt, key, bundle, now=NOW)
        assert str(creds.identity) == FOO_NS1
    # ca1 and ca2 share the subject OU=None: the wrong one alone is told apart by signature
    err = fails(MissingIntermediateError, lambda: Credentials.from_pem(FOO_NS1_CA1_CRT_DER, FOO_NS1_CA1_KEY_P8,
                                                                         PROXY_CA2, now=NOW), "OU=None")
    assert "belong to another cluster" in err.message


def test_unused_expired_anchor_is_noted(leaf: IssuedLeaf) -> None:
    old = SandboxPKI.create(now=NOW - dt.timedelta(days=3660))
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, old.trust_anchors_pem + leaf.trust_anchors_pem, now=NOW)
    assert any("expired" in w and "unused" in w for w in creds.warnings)


def test_intermediate_as_anchor_needs_partial_chain(ca: SandboxPKI, leaf: IssuedLeaf) -> None:
    creds = Credentials.from_pem(leaf.cert_pem, leaf.key_pem, ca.issuer.cert_pem, now=NOW)
    assert creds.extra_trusted == (ca.issuer.cert,)  # tells the TLS layer to set VERIFY_X509_PARTIAL_CHAIN
    assert creds.tls_trust_pem == ca.issuer.cert_pem  # no duplicate


# -- Linkerd's same-subject issuer (linkerd/linkerd2#5350) ------------------------------------------
@pytest.fixture(scope="module")
def same_subject() -> dict[str, Any]:
    issuer_cert = x509.load_pem_x509_certificate(LINKERD2_VALID_CRT)
    issuer_key = serialization.load_pem_private_key(LINKERD2_VALID_KEY, None)
    start = NOW - dt.timedelta(minutes=1)
    cert, key = sign_leaf(issuer_cert, issuer_key, CLIENT, not_before=start)
    return {"issuer": issuer_cert, "issuer_key": issuer_key, "leaf": cert, "key": key,
            "chain": cert.public_bytes(serialization.Encoding.PEM) + LINKERD2_VALID_CRT, "key_pem": pem_key(key)}


def test_same_subject_issuer_loads_with_a_warning(same_subject: dict[str, Any]) -> None:
    issuer = same_subject["issuer"]
    assert issuer.subject == issuer.issuer == x509.load_pem_x509_certificate(LINKERD2_VALID_TRUST_ANCHORS).subject
    with pytest.warns(SameSubjectIssuerWarning, match="same subject as its trust anchor") as record:
        creds = Credentials.from_pem(same_subject["chain"], same_subject["key_pem"], LINKERD2_VALID_TRUST_ANCHORS,
                                     now=NOW)
    assert record[0].filename == __file__, "the warning points at the caller, not at meshclient"
    assert str(creds.identity) == CLIENT
    assert creds.intermediates == (issuer,) and creds.extra_trusted == (issuer,)
    assert any("linkerd/linkerd2#5350" in w for w in creds.warnings)
    assert creds.tls_trust_pem == LINKERD2_VALID_TRUST_ANCHORS + LINKERD2_VALID_CRT


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> dict[str, Any]:
    a, b = socket.socketpair()
    result: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                result["client_cert"] = s.getpeercert()
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client.wrap_socket(b, server_hostname=server_hostname) as c:
            result["server_cert"] = c.getpeercert()
    except (ssl.SSLError, OSError) as exc:
        result["client_error"] = exc
    finally:
        b.close()
        t.join(10)
    return result


def test_same_subject_issuer_handshake_needs_the_extra_trust(same_subject: dict[str, Any], tmp_path: Path) -> None:
    """OpenSSL rejects the chain with anchors alone; with ``tls_trust_pem`` + partial chain it verifies."""
    if mpki.not_after(same_subject["issuer"]) < dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2):
        pytest.skip("Linkerd's fixture issuer expires 2030-08-26; OpenSSL checks the real clock")
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    server_cert, server_key = sign_leaf(same_subject["issuer"], same_subject["issuer_key"],
                                        "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local",
                                        not_before=now - dt.timedelta(minutes=1))
    client_cert, client_key = sign_leaf(same_subject["issuer"], same_subject["issuer_key"], CLIENT,
                                        not_before=now - dt.timedelta(minutes=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SameSubjectIssuerWarning)
        server = Credentials.from_objects(server_cert, [same_subject["issuer"]],
                                          [x509.load_pem_x509_certificate(LINKERD2_VALID_TRUST_ANCHORS)], server_key)
        client = Credentials.from_objects(client_cert, [same_subject["issuer"]],
                                          [x509.load_pem_x509_certificate(LINKERD2_VALID_TRUST_ANCHORS)], client_key)

    def ctx(purpose: ssl._SSLMethod, creds: Credentials, trust: bytes, partial: bool) -> ssl.SSLContext:
        c = ssl.SSLContext(purpose)
        c.minimum_version = ssl.TLSVersion.TLSv1_3
        c.check_hostname = False
        c.verify_mode = ssl.CERT_REQUIRED
        c.load_verify_locations(cadata=trust.decode())
        if partial:
            c.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        chain = tmp_path / f"{id(c)}.pem"
        chain.write_bytes(creds.cert_chain_pem + creds.private_key_pem())
        c.load_cert_chain(chain)
        return c

    sni = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
    plain = _handshake(ctx(ssl.PROTOCOL_TLS_SERVER, server, server.trust_anchors_pem, False),
                       ctx(ssl.PROTOCOL_TLS_CLIENT, client, client.trust_anchors_pem, False), sni)
    assert "self-signed certificate in certificate chain" in str(plain.get("client_error"))
    fixed = _handshake(ctx(ssl.PROTOCOL_TLS_SERVER, server, server.tls_trust_pem, True),
                       ctx(ssl.PROTOCOL_TLS_CLIENT, client, client.tls_trust_pem, True), sni)
    assert "client_error" not in fixed and "server_error" not in fixed, fixed
    assert fixed["client_cert"]["subjectAltName"] == (("DNS", CLIENT),)


# -- pickling, copying, repr, direct construction -------------------------------------------------
def test_pickle_round_trip_keeps_identity_and_fingerprint(pki: SandboxPKI) -> None:
    live = pki.issue(CLIENT)  # the session PKI is valid around the real clock: unpickling re-validates
    creds = Credentials.from_pem(live.chain_pem, live.key_pem, live.trust_anchors_pem, source="secret scope ml-mesh")
    back = pickle.loads(pickle.dumps(creds))
    assert (back.identity, back.fingerprint, back.source) == (creds.identity, creds.fingerprint, creds.source)
    assert back.cert_chain_pem == creds.cert_chain_pem and back.private_key_pem() == creds.private_key_pem()
    assert back.generation != creds.generation  # a new snapshot in the receiving process
    assert copy.copy(creds) is creds and copy.deepcopy(creds) is creds


def test_repr_shows_identity_not_key(leaf: IssuedLeaf) -> None:
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW)
    text = repr(creds)
    assert CLIENT in text and creds.fingerprint[:23] in text
    assert "PRIVATE" not in text and "BEGIN" not in text
    assert "key=" not in repr(leaf)


def test_direct_construction_is_refused(leaf: IssuedLeaf) -> None:
    with pytest.raises(ConfigurationError, match="cannot be constructed directly"):
        Credentials(identity=leaf.identity, leaf=leaf.cert, intermediates=(), trust_anchors=(), _key=leaf.key)


def test_errors_pickle_with_their_hint_and_fields(ca: SandboxPKI, tmp_path: Path) -> None:
    err = fails(CertificateExpiredError, lambda: load(tmp_path, ca.issue_expired(CLIENT, now=NOW)))
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CertificateExpiredError
    assert (back.message, back.hint, back.not_after) == (err.message, err.hint, err.not_after)


# -- every bad input: its own class or message, naming the file and the fix ------------------------
def test_key_does_not_match(tmp_path: Path, ca: SandboxPKI, leaf: IssuedLeaf) -> None:
    err = fails(KeyMismatchError, lambda: load(tmp_path, leaf, key=issue(ca).key_pem),
                f"file '{tmp_path / 'tls.key'}'", f"file '{tmp_path / 'tls.crt'}'", "does not belong", CLIENT)
    assert "same issuance" in (err.hint or "")


def test_key_is_the_issuers(tmp_path: Path, ca: SandboxPKI, leaf: IssuedLeaf) -> None:
    fails(KeyMismatchError, lambda: load(tmp_path, leaf, key=ca.issuer.key_pem),
          "belongs to the CA certificate 'CN=identity.linkerd.cluster.local'")


def test_chain_does_not_verify_to_the_anchors(tmp_path: Path, leaf: IssuedLeaf) -> None:
    other = SandboxPKI.create(now=NOW)
    err = fails(ChainError, lambda: load(tmp_path, leaf, anchors=other.trust_anchors_pem),
                "does not verify to the trust anchors", "different key", f"file '{tmp_path / 'tls.crt'}'")
    assert "linkerd-identity-trust-roots" in (err.hint or "")
    renamed = SandboxPKI.create(now=NOW, root_name="root.prod.example")
    fails(ChainError, lambda: load(tmp_path, leaf, anchors=renamed.trust_anchors_pem),
          "'CN=root.linkerd.cluster.local', which is neither in the chain nor among the anchors",
          "'CN=root.prod.example'")


def test_chain_ending_at_a_foreign_root(tmp_path: Path, leaf: IssuedLeaf, ca: SandboxPKI) -> None:
    renamed = SandboxPKI.create(now=NOW, root_name="root.prod.example")
    fails(ChainError, lambda: load(tmp_path, leaf, cert=leaf.chain_pem + ca.root.cert_pem,
                                   anchors=renamed.trust_anchors_pem),
          "it ends at the root 'CN=root.linkerd.cluster.local', which is not one of them")


def test_missing_intermediate(tmp_path: Path, leaf: IssuedLeaf) -> None:
    err = fails(MissingIntermediateError, lambda: load(tmp_path, leaf, cert=leaf.cert_pem),
                "issued by 'CN=identity.linkerd.cluster.local'", "the chain holds only the leaf")
    assert isinstance(err, ChainError)
    assert "Append the issuer" in (err.hint or "")


def test_leaf_and_issuer_from_different_rotations(tmp_path: Path, ca: SandboxPKI) -> None:
    rotated = ca.new_issuer(not_before=NOW - dt.timedelta(days=1))
    leaf = issue(ca, signer=rotated)
    fails(ChainError, lambda: load(tmp_path, leaf, cert=leaf.cert_pem + ca.issuer.cert_pem), "did not sign the leaf",
          "different issuances")


def test_wrong_order_and_ca_only(tmp_path: Path, ca: SandboxPKI, leaf: IssuedLeaf) -> None:
    fails(ChainError, lambda: load(tmp_path, leaf, cert=ca.issuer.cert_pem + leaf.cert_pem), "wrong order",
          "certificate number 2")
    fails(ChainError, lambda: load(tmp_path, leaf, cert=ca.issuer.cert_pem), "holds only CA certificates")


def test_self_signed_leaf(tmp_path: Path, leaf: IssuedLeaf) -> None:
    me = CertificateAuthority(leaf.cert, leaf.key)
    selfie = SandboxPKI(me, me).issue(CLIENT, key=leaf.key, signer=me, not_before=NOW - dt.timedelta(minutes=1))
    fails(ChainError, lambda: load(tmp_path, selfie, cert=selfie.cert_pem, anchors=leaf.trust_anchors_pem),
          "is self-signed")


def test_issuer_must_be_a_ca_and_respect_pathlen(tmp_path: Path, ca: SandboxPKI) -> None:
    fake = issue(ca, identity="fake.ml-team.serviceaccount.identity.linkerd.cluster.local")
    under = issue(ca, signer=CertificateAuthority(fake.cert, fake.key))
    fails(ChainError, lambda: load(tmp_path, under, cert=under.chain_pem + ca.issuer.cert_pem), "is not a CA")
    sub = ca.new_issuer("sub.identity.linkerd.cluster.local", signer=ca.issuer, not_before=NOW - dt.timedelta(days=1))
    deep = issue(ca, signer=sub)
    fails(ChainError, lambda: load(tmp_path, deep, cert=deep.chain_pem + ca.issuer.cert_pem), "pathlen:0")


def test_expired_leaf_names_both_dates(tmp_path: Path, ca: SandboxPKI) -> None:
    expired = ca.issue_expired(CLIENT, now=NOW)
    err = fails(CertificateExpiredError, lambda: load(tmp_path, expired),
                "expired at 2026-01-15 11:00:00 UTC", "valid from 2026-01-14 11:00:00 UTC",
                "clock says 2026-01-15 12:00:00 UTC")
    assert isinstance(err, CertificateValidityError)
    assert err.not_after == mpki.not_after(expired.cert)
    assert "24 hours" in (err.hint or "")


def test_not_yet_valid_leaf_names_both_dates(tmp_path: Path, ca: SandboxPKI) -> None:
    early = ca.issue_not_yet_valid(CLIENT, now=NOW)
    err = fails(CertificateNotYetValidError, lambda: load(tmp_path, early), "not valid yet",
                "valid from 2026-01-16 12:00:00 UTC to 2026-01-17 12:00:00 UTC")
    assert "clock" in (err.hint or "")


def test_expired_issuer_and_anchor(tmp_path: Path, ca: SandboxPKI) -> None:
    old = ca.new_issuer(not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(seconds=1))
    leaf = issue(ca, signer=old)
    fails(CertificateExpiredError, lambda: load(tmp_path, leaf), "The issuer certificate")
    ancient = SandboxPKI.create(now=NOW - dt.timedelta(days=3651))
    fresh = ancient.new_issuer(not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=30))
    leaf = issue(ancient, signer=fresh)
    err = fails(CertificateExpiredError, lambda: load(tmp_path, leaf), "The trust anchor certificate",
                f"file '{tmp_path / 'ca.crt'}'")
    assert "rotate" in (err.hint or "")


def test_rsa_leaf_is_refused_with_the_reason(tmp_path: Path, ca: SandboxPKI) -> None:
    rsa_leaf = issue(ca, key_kind="rsa")
    fails(UnsupportedKeyError, lambda: load(tmp_path, rsa_leaf), "RSA-2048", "TLS 1.3", "ECDSA P-256")


def test_rsa_anchor_above_a_p256_issuer_is_fine(ca: SandboxPKI) -> None:
    rsa_root = SandboxPKI.create(now=NOW, root_key_kind="rsa")
    leaf = issue(rsa_root)
    assert Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW).identity == leaf.identity


def test_unsupported_curve(tmp_path: Path, leaf: IssuedLeaf) -> None:
    k1 = pem_key(ec.generate_private_key(ec.SECP256K1()))
    fails(UnsupportedKeyError, lambda: load(tmp_path, leaf, key=k1), "secp256k1")


def test_identity_san_problems(tmp_path: Path, ca: SandboxPKI) -> None:
    fails(IdentitySANError, lambda: load(tmp_path, issue(ca, include_san=False)), "no DNS or URI subject alternative",
          "Linkerd reads identities from SANs only")
    fails(IdentitySANError, lambda: load(tmp_path, issue(ca, extra_sans=["other.ml-team.serviceaccount.identity."
                                                                          "linkerd.cluster.local"])),
          "has 2 identity SANs", "silently use the first")
    fails(IdentitySANError, lambda: load(tmp_path, issue(ca, include_san=False, extra_sans=["Bad_Name.example"])),
          "carries the SAN 'Bad_Name.example', which is not a mesh identity")


def test_leaf_not_usable_for_client_auth(tmp_path: Path, ca: SandboxPKI) -> None:
    fails(KeyUsageError, lambda: load(tmp_path, issue(ca, client_auth=False)), "lacks clientAuth", "(serverAuth)")
    fails(KeyUsageError, lambda: load(tmp_path, issue(ca, digital_signature=False)), "lacks digitalSignature")


def test_encrypted_key_without_or_with_a_wrong_password(tmp_path: Path, leaf: IssuedLeaf) -> None:
    for encrypted in (pem_key(leaf.key, password=b"right"),
                      pem_key(leaf.key, serialization.PrivateFormat.TraditionalOpenSSL, password=b"right"),
                      leaf.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"right"))):
        err = fails(EncryptedKeyError, lambda e=encrypted: load(tmp_path, leaf, key=e),  # type: ignore[misc]
                    "is encrypted and no password was given", f"file '{tmp_path / 'tls.key'}'")
        assert "password=..." in (err.hint or "")
        err = fails(WrongKeyPasswordError, lambda e=encrypted: load(tmp_path, leaf, key=e, password="wrong"),  # type: ignore[misc]
                    "the password given does not decrypt it")
        assert isinstance(err, EncryptedKeyError) and "wrong" not in err.message


def test_encrypted_key_from_env_hints_the_variable(leaf: IssuedLeaf) -> None:
    env = {"MESHCLIENT_CERT": leaf.chain_pem.decode(), "MESHCLIENT_TRUST_ANCHORS": leaf.trust_anchors_pem.decode(),
           "MESHCLIENT_KEY": pem_key(leaf.key, password=b"right").decode()}
    err = fails(EncryptedKeyError, lambda: Credentials.from_env(env, now=NOW), "$MESHCLIENT_KEY (PEM text)")
    assert "MESHCLIENT_KEY_PASSWORD" in (err.hint or "")
    env["MESHCLIENT_KEY_PASSWORD"] = "nope"
    fails(WrongKeyPasswordError, lambda: Credentials.from_env(env, now=NOW))


def test_garbage_truncated_damaged_and_empty(tmp_path: Path, leaf: IssuedLeaf) -> None:
    lines = leaf.cert_pem.splitlines(keepends=True)
    crt = f"file '{tmp_path / 'tls.crt'}'"
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=os.urandom(0) + b"\x13\x37garbage"),
          "neither PEM nor a DER certificate", crt)
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=b"".join(lines[:4])), "is truncated", crt)
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=b"".join(lines[:2] + lines[3:])), "is damaged")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=leaf.cert_pem.replace(b"END CERTIFICATE",
                                                                                      b"END PRIVATE KEY")),
          "is truncated")
    fails(EmptyMaterialError, lambda: load(tmp_path, leaf, cert=b""), "is empty", crt)
    fails(EmptyMaterialError, lambda: load(tmp_path, leaf, cert=b" \n\t"), "is empty")
    fails(EmptyMaterialError, lambda: load(tmp_path, leaf, anchors=b""), "trust anchor bundle", "is empty")
    fails(EmptyMaterialError, lambda: load(tmp_path, leaf, key=b"\n"), "private key", "is empty")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, anchors=b"-----BEGIN X509 CRL-----\nAA==\n"
                                                                  b"-----END X509 CRL-----\n"),
          "holds no '-----BEGIN CERTIFICATE-----' block (PEM blocks found: X509 CRL)")
    key_lines = leaf.key_pem.splitlines(keepends=True)
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=b"".join(key_lines[:2])), "truncated")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=b"".join(key_lines[:1] + key_lines[2:])), "damaged")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=b"\x30\x03\x02\x01\x00"),
          "neither PEM nor a DER (PKCS#8/SEC1) key")


def test_swapped_and_wrong_kinds_of_material(tmp_path: Path, leaf: IssuedLeaf) -> None:
    der_key = leaf.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    der_cert = leaf.cert.public_bytes(serialization.Encoding.DER)
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=leaf.key_pem, key=leaf.chain_pem),
          "contains a private key")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=leaf.chain_pem), "is a certificate, not a key")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=der_key, key=der_cert),
          "is a private key (DER/PKCS#8), not a certificate")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=der_cert), "is a certificate (DER), not a key")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, anchors=leaf.key_pem), "trust anchor bundle",
          "contains a private key")
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .sign(leaf.key, hashes.SHA256()))
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=csr.public_bytes(serialization.Encoding.PEM)),
          "certificate signing request")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, cert=csr.public_bytes(serialization.Encoding.DER)),
          "certificate signing request (DER CSR")
    public = leaf.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=public), "holds no private key", "PUBLIC KEY")
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=leaf.key_pem + leaf.key_pem), "holds 2 private keys")
    openssh = leaf.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                     serialization.NoEncryption())
    fails(MaterialFormatError, lambda: load(tmp_path, leaf, key=openssh), "OpenSSH key")


def test_from_pem_given_paths_or_base64(tmp_path: Path, leaf: IssuedLeaf) -> None:
    c, k, a = write(tmp_path, leaf)
    fails(MaterialFormatError, lambda: Credentials.from_pem(str(c), leaf.key_pem, leaf.trust_anchors_pem, now=NOW),
          f"is a file path ('{c}')")
    fails(MaterialFormatError, lambda: Credentials.from_pem(c, leaf.key_pem, leaf.trust_anchors_pem, now=NOW),  # type: ignore[arg-type]
          "is a path object")
    fails(MaterialFormatError, lambda: Credentials.from_pem(leaf.chain_pem, str(k), leaf.trust_anchors_pem, now=NOW),
          "is a file path, not the material")  # the key slot never quotes its content
    fails(MaterialFormatError, lambda: Credentials.from_pem(leaf.chain_pem, leaf.key_pem, 42, now=NOW),  # type: ignore[arg-type]
          "is a int, not text or bytes")
    b64 = base64.b64encode(leaf.chain_pem)
    err = fails(MaterialFormatError, lambda: Credentials.from_pem(b64, leaf.key_pem, leaf.trust_anchors_pem, now=NOW),
                "base64-encoded PEM")
    assert "base64 -d" in (err.hint or "")


def test_custom_origin_names_each_piece(leaf: IssuedLeaf, ca: SandboxPKI) -> None:
    origin = MaterialOrigin(cert="secret ml-mesh/tls.crt", key="secret ml-mesh/tls.key",
                            trust_anchors="secret ml-mesh/ca.crt", password_option="the tls.key.password secret")
    fails(KeyMismatchError, lambda: Credentials.from_pem(leaf.chain_pem, issue(ca).key_pem, leaf.trust_anchors_pem,
                                                         origin=origin, now=NOW),
          "secret ml-mesh/tls.key", "secret ml-mesh/tls.crt")
    err = fails(EncryptedKeyError, lambda: Credentials.from_pem(leaf.chain_pem, pem_key(leaf.key, password=b"x"),
                                                                leaf.trust_anchors_pem, origin=origin, now=NOW))
    assert "the tls.key.password secret" in (err.hint or "")
    fails(EmptyMaterialError, lambda: Credentials.from_pem(leaf.chain_pem, leaf.key_pem, "", source="scope ml-mesh"),
          "scope ml-mesh (trust anchors)")


# -- finding material ------------------------------------------------------------------------------
def test_missing_files_and_directories(tmp_path: Path, leaf: IssuedLeaf, monkeypatch: pytest.MonkeyPatch) -> None:
    c, k, a = write(tmp_path, leaf)
    fails(MaterialNotFoundError, lambda: Credentials.from_files(tmp_path / "nope.crt", k, a, now=NOW),
          f"The certificate file '{tmp_path / 'nope.crt'}' does not exist")
    monkeypatch.chdir(tmp_path)
    fails(MaterialNotFoundError, lambda: Credentials.from_files(c, "nope.key", a, now=NOW),
          "The private key file 'nope.key' does not exist, relative to the working directory")
    fails(MaterialNotFoundError, lambda: Credentials.from_files(c, k, tmp_path, now=NOW), "is a directory")
    fails(MaterialNotFoundError, lambda: Credentials.from_directory(tmp_path / "none", now=NOW), "does not exist")
    fails(MaterialNotFoundError, lambda: Credentials.from_directory(c, now=NOW), "is a file, not a directory")
    a.unlink()
    fails(MaterialNotFoundError, lambda: Credentials.from_directory(tmp_path, now=NOW), "No trust anchors",
          "ca.crt, ca-bundle.crt")
    k.unlink()
    err = fails(MaterialNotFoundError, lambda: Credentials.from_directory(tmp_path, now=NOW), "No private key",
                "found tls.crt")
    assert "key.p8" in err.message
    with pytest.raises(ConfigurationError, match="must be a str or a path"):
        Credentials.from_files(c, None, a)  # type: ignore[arg-type]


def test_unreadable_and_oversized_files(tmp_path: Path, leaf: IssuedLeaf, monkeypatch: pytest.MonkeyPatch) -> None:
    c, k, a = write(tmp_path, leaf)
    big = tmp_path / "big.crt"
    big.write_bytes(b"x" * ((1 << 20) + 1))
    fails(MaterialFormatError, lambda: Credentials.from_files(big, k, a, now=NOW), "larger than 1 MiB")
    real_open = Path.open

    def deny(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self.name == "tls.key":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    fails(MaterialNotFoundError, lambda: Credentials.from_files(c, k, a, now=NOW), "cannot be read: permission denied")


def test_environment_errors(tmp_path: Path, leaf: IssuedLeaf) -> None:
    c, k, a = write(tmp_path, leaf)
    fails(MaterialNotFoundError, lambda: Credentials.from_env({}, now=NOW), "No mesh credentials in the environment")
    fails(MaterialNotFoundError, lambda: Credentials.from_env({"MESHCLIENT_CERT": str(c), "MESHCLIENT_KEY": " "},
                                                              now=NOW),
          "MESHCLIENT_KEY and MESHCLIENT_TRUST_ANCHORS are not set", "while MESHCLIENT_CERT is")
    env = {"MESHCLIENT_CERT": str(c), "MESHCLIENT_KEY": str(tmp_path / "gone.key"), "MESHCLIENT_TRUST_ANCHORS": str(a)}
    err = fails(MaterialNotFoundError, lambda: Credentials.from_env(env, now=NOW), "(from $MESHCLIENT_KEY)",
                str(tmp_path / "gone.key"))
    assert "Fix $MESHCLIENT_KEY" in (err.hint or "")
    env["MESHCLIENT_KEY"] = base64.b64encode(leaf.key_pem).decode()
    fails(MaterialFormatError, lambda: Credentials.from_env(env, now=NOW), "$MESHCLIENT_KEY is base64-encoded PEM")
    env["MESHCLIENT_KEY"] = scalar(leaf.key)  # a raw scalar: never echoed
    bad = fails(MaterialFormatError, lambda: Credentials.from_env(env, now=NOW), "$MESHCLIENT_KEY")
    assert env["MESHCLIENT_KEY"] not in str(bad)


def test_every_credentials_error_is_distinct(bad_input_rows: list[Any]) -> None:
    """The catalogue behind docs/bad-input.md: one message per case, every one a MeshError with a hint."""
    messages = [row.error.message for row in bad_input_rows]
    assert len(set(messages)) == len(messages), "two bad inputs share a message"
    for row in bad_input_rows:
        assert isinstance(row.error, MeshError) and row.error.hint, row.name
        if row.section.startswith("Identities"):
            continue
        assert isinstance(row.error, CredentialsError), row.name


# -- the generated table -------------------------------------------------------------------------
def _script() -> ModuleType:
    path = ROOT / "scripts" / "bad-input-table.py"
    spec = importlib.util.spec_from_file_location("bad_input_table", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bad_input_table", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return _script()


@pytest.fixture(scope="module")
def bad_input_rows(script: ModuleType) -> list[Any]:
    with script.material() as m:
        return list(script.collect(m))


def test_bad_input_doc_is_up_to_date(script: ModuleType) -> None:
    doc = ROOT / "docs" / "bad-input.md"
    assert doc.read_text(encoding="utf-8") == script.generate(), (
        "docs/bad-input.md is out of date: run `python scripts/bad-input-table.py` and commit the result")


# -- no secret in any error, repr or log ---------------------------------------------------------
def _windows(secret: str, size: int = 20) -> set[str]:
    return {secret[i : i + size] for i in range(max(1, len(secret) - size + 1))}


def _key_forms(key: Any) -> list[str]:
    """Every textual form key material could leak in: PEM bodies, base64 of DER, the scalar."""
    forms = []
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        forms += [base64.b64encode(der).decode(), der.hex()]
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        forms += [line for line in pem.splitlines() if len(line) >= 20 and "-----" not in line]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        value = key.private_numbers().private_value
        forms += [str(value), format(value, "x"), format(value, "064x")]
    return forms


def _assert_clean(haystacks: list[str], keys: list[Any], passwords: list[str]) -> None:
    text = "\n".join(haystacks)
    grams = {text[i : i + 20] for i in range(len(text) - 19)}
    for key in keys:
        for form in _key_forms(key):
            leaked = _windows(form) & grams
            assert not leaked, f"key material leaked: {sorted(leaked)[:1]}"
    for password in passwords:
        assert password not in text, "a password leaked"


def _outputs(err: BaseException) -> list[str]:
    return [str(err), repr(err), "".join(traceback.format_exception(type(err), err, err.__traceback__))]


@pytest.fixture()
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="meshclient")
    yield caplog


def test_no_secret_in_any_catalogued_error_or_log(script: ModuleType, debug_logs: pytest.LogCaptureFixture) -> None:
    with script.material() as m:
        rows = script.collect(m)
        good = Credentials.from_pem(m.good.chain_pem, m.good.key_pem, m.good.trust_anchors_pem, now=script.NOW)
        haystacks = [repr(good), str(good), repr(m.good)]
        keys = [*m.keys, m.pki.root.key, m.pki.issuer.key]
    assert len(rows) > 70
    for row in rows:
        haystacks += _outputs(row.error)
    haystacks += [r.getMessage() for r in debug_logs.records]
    assert any(r.levelno == logging.DEBUG for r in debug_logs.records), "meshclient logs at DEBUG while loading"
    _assert_clean(haystacks, keys, m.passwords)


def test_the_leak_check_does_not_depend_on_where_the_checkout_lives(leaf: IssuedLeaf) -> None:
    """A CI checkout path like /tmp/ci.1AXt/src is not key material (an old heuristic took it for some)."""
    trace = 'File "/tmp/ci.1AXt/src/meshclient/credentials/snapshot.py", line 260, in from_pem'
    _assert_clean([trace], [leaf.key], [])
    with pytest.raises(AssertionError, match="key material leaked"):
        _assert_clean([trace + _key_forms(leaf.key)[0][:40]], [leaf.key], [])


def test_no_secret_when_key_material_is_in_the_wrong_place(tmp_path: Path, leaf: IssuedLeaf,
                                                           debug_logs: pytest.LogCaptureFixture) -> None:
    password = "pa55-w0rd-Xyz-123"
    enc = pem_key(leaf.key, password=password.encode())
    der = leaf.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    key_text = leaf.key_pem.decode()
    raw_scalar = scalar(leaf.key)
    anchors = leaf.trust_anchors_pem
    attempts: list[Callable[[], object]] = [
        lambda: Credentials.from_pem(leaf.key_pem, leaf.key_pem, anchors, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.key_pem, now=NOW),
        lambda: Credentials.from_pem(der, leaf.key_pem, anchors, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, base64.b64encode(der), anchors, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, key_text.replace("\n", " ")[:-40], anchors, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, enc, anchors, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, enc, anchors, password="wrong-" + password, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, enc, b"", password=password, now=NOW),
        lambda: Credentials.from_pem(leaf.chain_pem, base64.b64encode(der).decode()[:-8], anchors, now=NOW),
        lambda: loaders.read_file(base64.b64encode(der).decode(), "private key", via="$MESHCLIENT_KEY"),
        lambda: loaders.read_file(raw_scalar, "private key"),
        lambda: Credentials.from_env({"MESHCLIENT_CERT": key_text, "MESHCLIENT_KEY": key_text,
                                      "MESHCLIENT_TRUST_ANCHORS": anchors.decode()}, now=NOW),
        lambda: Credentials.from_env({"MESHCLIENT_CERT": leaf.chain_pem.decode(), "MESHCLIENT_KEY": raw_scalar,
                                      "MESHCLIENT_TRUST_ANCHORS": anchors.decode()}, now=NOW),
        lambda: Credentials.from_env({"MESHCLIENT_CERT": leaf.chain_pem.decode(),
                                      "MESHCLIENT_KEY": base64.b64encode(der).decode(),
                                      "MESHCLIENT_TRUST_ANCHORS": anchors.decode()}, now=NOW),
        lambda: Credentials.from_env({"MESHCLIENT_CERT": leaf.chain_pem.decode(), "MESHCLIENT_KEY": enc.decode(),
                                      "MESHCLIENT_KEY_PASSWORD": "x" + password,
                                      "MESHCLIENT_TRUST_ANCHORS": anchors.decode()}, now=NOW),
        lambda: Credentials.from_env({"MESHCLIENT_CERT": leaf.chain_pem.decode(), "MESHCLIENT_KEY": enc.decode(),
                                      "MESHCLIENT_KEY_PASSWORD": password,
                                      "MESHCLIENT_TRUST_ANCHORS": "/nonexistent/ca.crt"}, now=NOW),
    ]
    haystacks = []
    for attempt in attempts:
        with pytest.raises(CredentialsError) as info:
            attempt()
        haystacks += _outputs(info.value)
    good = Credentials.from_pem(leaf.chain_pem, enc, anchors, password=password, now=NOW)
    haystacks += [repr(good), str(good)]
    haystacks += [r.getMessage() for r in debug_logs.records]
    _assert_clean(haystacks, [leaf.key], [password, "wrong-" + password, "x" + password])
    with pytest.raises(AssertionError):  # the scan itself works: it finds a leaked line
        _assert_clean([key_text], [leaf.key], [])
