#!/usr/bin/env python3
"""Generate docs/bad-input.md: every bad input meshclient rejects, with the exact message it prints.

Each row is a real run of meshclient against the bad input, so the document cannot promise a
message the code does not give. ``tests/core/test_credentials.py`` regenerates the table in
memory and fails if docs/bad-input.md differs, and runs every case through its no-secret scan.

    python scripts/bad-input-table.py            # rewrite docs/bad-input.md
    python scripts/bad-input-table.py --check    # exit 1 if docs/bad-input.md is out of date

Output is deterministic: the clock is fixed (NOW), keys are derived from fixed numbers, and
the temporary directory is shown as /mnt/mesh.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import html
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from meshclient import Credentials, Identity, IdentityPattern  # noqa: E402
from meshclient.errors import MeshError  # noqa: E402
from meshclient_sandbox.pki import CertificateAuthority, IssuedLeaf, SandboxPKI  # noqa: E402

DOC = ROOT / "docs" / "bad-input.md"
SHOWN_DIR = "/mnt/mesh"
NOW = dt.datetime(2026, 1, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
CLIENT = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "hunter2-not-it"


def _key(n: int, curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fixed key, so the generated document is the same on every run."""
    return ec.derive_private_key(0xC0FFEE00 + n, curve or ec.SECP256R1())


@dataclass(frozen=True)
class Case:
    section: str
    name: str
    run: Callable[[], object]


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    error: BaseException


class Material:
    """Every piece of (deliberately bad) material the cases use, written under one directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.pki = SandboxPKI.create(now=NOW, root_key=_key(1), issuer_key=_key(2))
        # Another cluster with the same default names (root.linkerd.cluster.local, identity.linkerd.cluster.local).
        self.other = SandboxPKI.create(now=NOW, root_key=_key(3), issuer_key=_key(4))
        # A cluster whose root has another name.
        self.renamed = SandboxPKI.create(now=NOW, root_key=_key(5), issuer_key=_key(6), root_name="root.prod.example")
        start = NOW - dt.timedelta(minutes=30)
        self.good = self.pki.issue(CLIENT, key=_key(10), not_before=start, serial=0x1001)
        self.keys = [_key(i) for i in (1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)]
        self.passwords = [PASSWORD, WRONG_PASSWORD]

    # -- helpers -----------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.dir / name

    def write(self, name: str, data: bytes) -> Path:
        p = self.path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        return p

    def files(self, leaf: IssuedLeaf, name: str, *, cert: bytes | None = None, key: bytes | None = None,
              anchors: bytes | None = None) -> tuple[Path, Path, Path]:
        return (
            self.write(f"{name}/tls.crt", leaf.chain_pem if cert is None else cert),
            self.write(f"{name}/tls.key", leaf.key_pem if key is None else key),
            self.write(f"{name}/ca.crt", leaf.trust_anchors_pem if anchors is None else anchors),
        )

    def load(self, leaf: IssuedLeaf, name: str, *, cert: bytes | None = None, key: bytes | None = None,
             anchors: bytes | None = None, password: str | None = None) -> Credentials:
        c, k, a = self.files(leaf, name, cert=cert, key=key, anchors=anchors)
        return Credentials.from_files(c, k, a, password=password, now=NOW)

    def env(self, **values: str) -> Callable[[], object]:
        return lambda: Credentials.from_env({f"MESHCLIENT_{k.upper()}": v for k, v in values.items()}, now=NOW)

    # -- the catalogue -----------------------------------------------------------------------
    def cases(self) -> list[Case]:
        good, pki = self.good, self.pki
        pem = good.chain_pem
        leaf_pem = good.cert_pem
        ok_c, ok_k, ok_a = self.files(good, "good")
        lines = leaf_pem.splitlines(keepends=True)
        enc_key = good.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(PASSWORD.encode()))
        der_key = good.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        key_lines = good.key_pem.splitlines(keepends=True)
        linkerd_dir = self.dir / "linkerd-identity"
        direct = pki.issue(CLIENT, signer=pki.root, key=_key(11), not_before=NOW - dt.timedelta(minutes=5))
        self.write("linkerd-identity/crt.der", direct.cert.public_bytes(serialization.Encoding.DER))
        self.write("linkerd-identity/key.p8", direct.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.write("half/tls.crt", pem)
        self.write("big.pem", b"-----BEGIN CERTIFICATE-----\n" + b"A" * (1 << 20) + b"\n")
        recent = NOW - dt.timedelta(minutes=5)

        def issue(identity: str = CLIENT, n: int = 12, **kw: object) -> IssuedLeaf:
            kw.setdefault("not_before", recent)
            return pki.issue(identity, key=_key(n), **kw)  # type: ignore[arg-type]

        other_leaf = self.other.issue(CLIENT, key=_key(13), not_before=recent)
        renamed_leaf = self.renamed.issue(CLIENT, key=_key(14), not_before=recent)
        direct_other = self.other.issue(CLIENT, key=_key(15), signer=self.other.root, not_before=recent)
        rotated_issuer = pki.new_issuer(key=_key(16), not_before=NOW - dt.timedelta(days=1))
        rotated_leaf = pki.issue(CLIENT, key=_key(17), signer=rotated_issuer, not_before=recent)
        pseudo_ca_leaf = issue(n=18)
        under_leaf = pki.issue(CLIENT, key=_key(19), signer=CertificateAuthority(pseudo_ca_leaf.cert, pseudo_ca_leaf.key),
                               not_before=recent)
        sub_issuer = pki.new_issuer("sub.identity.linkerd.cluster.local", key=_key(20), signer=pki.issuer,
                                    not_before=NOW - dt.timedelta(days=1))
        deep_leaf = pki.issue(CLIENT, key=_key(21), signer=sub_issuer, not_before=recent)
        old_issuer = pki.new_issuer(key=_key(22), not_before=NOW - dt.timedelta(days=400),
                                    not_after=NOW - dt.timedelta(days=1))
        old_issuer_leaf = pki.issue(CLIENT, key=_key(23), signer=old_issuer, not_before=recent,
                                    not_after=NOW + dt.timedelta(hours=23))
        old_root_pki = SandboxPKI.create(now=NOW - dt.timedelta(days=3651), root_key=_key(7), issuer_key=_key(8))
        fresh_issuer = old_root_pki.new_issuer(key=_key(9), not_before=NOW - dt.timedelta(days=30),
                                               not_after=NOW + dt.timedelta(days=300))
        old_root_leaf = old_root_pki.issue(CLIENT, key=_key(24), signer=fresh_issuer, not_before=recent)
        self_signed = CertificateAuthority(pseudo_ca_leaf.cert, pseudo_ca_leaf.key)
        self_signed_leaf = SandboxPKI(self_signed, self_signed).issue(CLIENT, key=pseudo_ca_leaf.key, signer=self_signed,
                                                                      not_before=recent)
        rsa_leaf = pki.issue(CLIENT, key_kind="rsa", not_before=recent)
        k1_key = ec.derive_private_key(0xC0FFEE99, ec.SECP256K1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        csr = b"-----BEGIN CERTIFICATE REQUEST-----\nMIGbMEMCAQAwADBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABA==\n-----END CERTIFICATE REQUEST-----\n"
        public_key = good.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        F, P, K, C, V, U = ("Finding the material", "Format", "The private key", "The chain",
                            "Validity dates", "Identity and usage")
        return [
            # -- finding the material
            Case(F, "Certificate file does not exist",
                 lambda: Credentials.from_files(self.path("missing/tls.crt"), ok_k, ok_a, now=NOW)),
            Case(F, "Certificate path is a directory", lambda: Credentials.from_files(self.dir, ok_k, ok_a, now=NOW)),
            Case(F, "Credentials directory does not exist",
                 lambda: Credentials.from_directory(self.path("no-such-dir"), now=NOW)),
            Case(F, "Directory holds a certificate but no key",
                 lambda: Credentials.from_directory(self.path("half"), now=NOW)),
            Case(F, "Linkerd identity directory (crt.der, key.p8) without trust anchors",
                 lambda: Credentials.from_directory(linkerd_dir, now=NOW)),
            Case(F, "File far larger than any certificate (wrong file)",
                 lambda: Credentials.from_files(self.path("big.pem"), ok_k, ok_a, now=NOW)),
            Case(F, "No MESHCLIENT_* variable set", self.env()),
            Case(F, "MESHCLIENT_KEY not set (the other two are)", self.env(cert=str(ok_c), trust_anchors=str(ok_a))),
            Case(F, "MESHCLIENT_KEY names a file that does not exist",
                 self.env(cert=str(ok_c), key=str(self.path("good/tls-key.pem")), trust_anchors=str(ok_a))),
            Case(F, "MESHCLIENT_KEY holds base64 of the PEM (a Kubernetes Secret 'data' value)",
                 self.env(cert=str(ok_c), key=base64.b64encode(good.key_pem).decode(), trust_anchors=str(ok_a))),
            # -- format
            Case(P, "Empty certificate file", lambda: self.load(good, "empty-cert", cert=b"")),
            Case(P, "Empty trust anchor bundle", lambda: self.load(good, "empty-anchors", anchors=b"\n")),
            Case(P, "Empty key file", lambda: self.load(good, "empty-key", key=b"")),
            Case(P, "Certificate file holds garbage",
                 lambda: self.load(good, "garbage", cert=b"\x00\x01 this is not a certificate")),
            Case(P, "Truncated PEM (cut off before '-----END')",
                 lambda: self.load(good, "truncated", cert=b"".join(lines[: len(lines) // 2]))),
            Case(P, "Damaged PEM (a base64 line lost)",
                 lambda: self.load(good, "damaged", cert=b"".join(lines[:3] + lines[4:]) + good.chain_pem[len(leaf_pem):])),
            Case(P, "Certificate and key swapped (PEM)",
                 lambda: self.load(good, "swapped", cert=good.key_pem, key=pem)),
            Case(P, "Key file holds the certificate", lambda: self.load(good, "cert-as-key", key=pem)),
            Case(P, "crt.der and key.p8 swapped (DER)", lambda: self.load(good, "swapped-der", cert=der_key)),
            Case(P, "Certificate signing request given as the certificate", lambda: self.load(good, "csr", cert=csr)),
            Case(P, "Key file holds a public key", lambda: self.load(good, "public-key", key=public_key)),
            Case(P, "Truncated key", lambda: self.load(good, "truncated-key", key=b"".join(key_lines[:2]))),
            Case(P, "Damaged key (a base64 line lost)",
                 lambda: self.load(good, "damaged-key", key=b"".join(key_lines[:1] + key_lines[2:]))),
            Case(P, "Path given to from_pem instead of the PEM",
                 lambda: Credentials.from_pem(str(ok_c), good.key_pem, good.trust_anchors_pem, now=NOW)),
            Case(P, "Two keys in the key file",
                 lambda: self.load(good, "two-keys", key=good.key_pem + issue(n=12).key_pem)),
            # -- the key
            Case(K, "Encrypted key, no password", lambda: self.load(good, "encrypted", key=enc_key)),
            Case(K, "Encrypted key, wrong password",
                 lambda: self.load(good, "encrypted-wrong", key=enc_key, password=WRONG_PASSWORD)),
            Case(K, "Encrypted key in MESHCLIENT_KEY, no MESHCLIENT_KEY_PASSWORD",
                 self.env(cert=str(ok_c), key=enc_key.decode(), trust_anchors=str(ok_a))),
            Case(K, "Key from another issuance (does not match the certificate)",
                 lambda: self.load(good, "mismatch", key=issue(n=12).key_pem)),
            Case(K, "The issuer's key instead of the workload's", lambda: self.load(good, "issuer-key", key=pki.issuer.key_pem)),
            Case(K, "RSA leaf", lambda: self.load(rsa_leaf, "rsa")),
            Case(K, "Key on an unsupported curve (secp256k1)", lambda: self.load(good, "k1", key=k1_key)),
            Case(K, "Truncated DER key (Linkerd's key.p8 cut short)",
                 lambda: self.load(good, "short-p8", key=der_key[: len(der_key) // 2])),
            # -- the chain
            Case(C, "Chain from another cluster (same CA names, other keys)", lambda: self.load(other_leaf, "other",
                                                                                                anchors=good.trust_anchors_pem)),
            Case(C, "Chain ends at a root that is not a trust anchor",
                 lambda: self.load(renamed_leaf, "renamed", cert=renamed_leaf.chain_pem + self.renamed.root.cert_pem,
                                   anchors=good.trust_anchors_pem)),
            Case(C, "Missing intermediate (the certificate file holds only the leaf)",
                 lambda: self.load(good, "leaf-only", cert=leaf_pem)),
            Case(C, "Leaf signed by a root with the anchor's name but another key",
                 lambda: self.load(direct_other, "same-name-root", anchors=good.trust_anchors_pem)),
            Case(C, "Issuer first, leaf second (wrong order)",
                 lambda: self.load(good, "order", cert=pki.issuer.cert_pem + leaf_pem)),
            Case(C, "Issuer certificate given instead of the leaf", lambda: self.load(good, "ca-only", cert=pki.issuer.cert_pem)),
            Case(C, "Leaf and issuer from different rotations",
                 lambda: self.load(rotated_leaf, "rotation", cert=rotated_leaf.cert_pem + pki.issuer.cert_pem)),
            Case(C, "Self-signed leaf", lambda: self.load(self_signed_leaf, "self-signed", cert=self_signed_leaf.cert_pem,
                                                           anchors=good.trust_anchors_pem)),
            Case(C, "Issuer is not a CA certificate",
                 lambda: self.load(under_leaf, "not-ca", cert=under_leaf.chain_pem + pki.issuer.cert_pem)),
            Case(C, "Chain longer than the issuer's pathlen:0 allows",
                 lambda: self.load(deep_leaf, "pathlen", cert=deep_leaf.chain_pem + pki.issuer.cert_pem)),
            # -- validity
            Case(V, "Leaf expired", lambda: self.load(pki.issue_expired(CLIENT, now=NOW, key=_key(12)), "expired")),
            Case(V, "Leaf not yet valid (or this machine's clock is behind)",
                 lambda: self.load(pki.issue_not_yet_valid(CLIENT, now=NOW, key=_key(12)), "not-yet")),
            Case(V, "Issuer expired", lambda: self.load(old_issuer_leaf, "old-issuer")),
            Case(V, "Trust anchor expired", lambda: self.load(old_root_leaf, "old-root")),
            # -- identity and usage
            Case(U, "No identity SAN (identity only in the CN)", lambda: self.load(issue(include_san=False), "no-san")),
            Case(U, "Two identity SANs",
                 lambda: self.load(issue(extra_sans=["spiffe://cluster.local/ns/ml-team/sa/notebook"]), "two-sans")),
            Case(U, "SAN is a Kubernetes Service name, not an identity",
                 lambda: self.load(issue(include_san=False,
                                         extra_sans=["scorer.ml-team.svc.cluster.local"]), "svc-san")),
            Case(U, "Leaf without clientAuth (a server-only certificate)",
                 lambda: self.load(issue(client_auth=False), "no-client-auth")),
            Case(U, "Leaf keyUsage without digitalSignature",
                 lambda: self.load(issue(digital_signature=False), "no-digital-signature")),
            # -- identities typed by hand
            *_identity_cases(),
        ]


def _identity_cases() -> list[Case]:
    s = "Identities (server_identity=..., policies)"
    long_label = "a" * 64
    cases: list[tuple[str, Callable[[], object]]] = [
        ("Empty identity", lambda: Identity.parse("")),
        ("Trailing newline (read from a file)", lambda: Identity.parse(CLIENT + "\n")),
        ("Upper case", lambda: Identity.parse("Scorer.ml-team.serviceaccount.identity.linkerd.cluster.local")),
        ("Underscore in a name", lambda: Identity.parse("fraud_model.ml-team.serviceaccount.identity.linkerd.cluster.local")),
        ("Label longer than 63 characters", lambda: Identity.parse(f"{long_label}.ml-team.serviceaccount.identity.linkerd.cluster.local")),
        ("Name longer than 253 characters", lambda: Identity.parse(".".join(["a" * 60] * 5))),
        ("Only the service-account name", lambda: Identity.parse("scorer")),
        ("A URL instead of an identity", lambda: Identity.parse("https://10.0.3.7:8080/health")),
        ("host:port instead of an identity", lambda: Identity.parse("10.0.3.7:8080")),
        ("An IP address", lambda: Identity.parse("10.0.3.7")),
        ("A Kubernetes Service DNS name", lambda: Identity.parse("fraud-model.ml-serving.svc.cluster.local")),
        ("Dotted service-account name in the Linkerd form",
         lambda: Identity.parse("fraud.model.ml-serving.serviceaccount.identity.linkerd.cluster.local")),
        ("Linkerd form without the trust domain", lambda: Identity.parse("scorer.ml-team.serviceaccount.identity.linkerd")),
        ("Trailing dot", lambda: Identity.parse(CLIENT + ".")),
        ("Identity.linkerd() with a dotted name", lambda: Identity.linkerd("fraud.model", "ml-serving")),
        ("SPIFFE ID with an upper-case scheme", lambda: Identity.parse("SPIFFE://cluster.local/ns/ml-team/sa/scorer")),
        ("SPIFFE ID without a path", lambda: Identity.parse("spiffe://cluster.local")),
        ("SPIFFE ID with an upper-case trust domain", lambda: Identity.parse("spiffe://Cluster.Local/ns/ml-team/sa/scorer")),
        ("SPIFFE ID with a port", lambda: Identity.parse("spiffe://cluster.local:443/ns/ml-team/sa/scorer")),
        ("SPIFFE ID with a trailing slash", lambda: Identity.parse("spiffe://cluster.local/ns/ml-team/sa/scorer/")),
        ("SPIFFE ID with a '..' segment", lambda: Identity.parse("spiffe://cluster.local/ns/../sa/scorer")),
        ("SPIFFE ID with a percent-encoded character", lambda: Identity.parse("spiffe://cluster.local/ns/ml%20team/sa/x")),
        ("Pattern with a wildcard in the middle",
         lambda: IdentityPattern("scorer.*.serviceaccount.identity.linkerd.cluster.local")),
        ("Pattern with two wildcards", lambda: IdentityPattern("*.*.serviceaccount.identity.linkerd.cluster.local")),
        ("Wildcard in a SPIFFE pattern", lambda: IdentityPattern("spiffe://cluster.local/ns/ml-team/sa/*")),
    ]
    return [Case(s, name, run) for name, run in cases]


@contextlib.contextmanager
def material() -> Iterator[Material]:
    """The catalogue's material in a fresh temporary directory (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="meshclient-bad-input-") as tmp:
        yield Material(Path(tmp))


def collect(m: Material) -> list[Row]:
    """Run every case; each must raise a MeshError (anything else is a bug in the catalogue or the code)."""
    rows = []
    for case in m.cases():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                case.run()
            except MeshError as err:
                rows.append(Row(case.section, case.name, err))
                continue
        raise AssertionError(f"bad-input case {case.name!r} did not raise a MeshError")
    return rows


def _md(text: str) -> str:
    text = html.escape(text, quote=False)
    for ch in "\\`*_|[]":
        text = text.replace(ch, "\\" + ch)
    return text.replace("\n", "<br>")


def _hierarchy(cls: type) -> str:
    names = [c.__name__ for c in reversed(cls.__mro__) if issubclass(c, MeshError)]
    return " › ".join(names[1:]) if len(names) > 1 else names[0]


def render(rows: list[Row], m: Material) -> str:
    shown = str(m.dir)
    clean = (lambda s: s.replace(shown, SHOWN_DIR)) if shown else (lambda s: s)
    out = [
        "# Bad input: what meshclient says",
        "",
        "<!-- Generated by scripts/bad-input-table.py; do not edit by hand. "
        "tests/core/test_credentials.py fails when this file is out of date. -->",
        "",
        "Every row below is a real run of meshclient on one bad input, with the exception it raises and the",
        "exact message and hint it prints (`str(err)` is the message followed by the hint; `err.message` and",
        "`err.hint` hold them separately). Every exception is a `meshclient.MeshError`; all credential problems",
        "are `meshclient.CredentialsError` subclasses, and identity typos are `meshclient.IdentityError`",
        "(also a `ValueError`). No message ever contains a key, a password or secret text: a test scans every",
        "one of these errors, their `repr` and meshclient's DEBUG logs for the key material used here.",
        "",
        f"The runs use a fixed clock ({NOW:%Y-%m-%d %H:%M:%S} UTC) and files under `{SHOWN_DIR}`; material from",
        "files names the file, from the environment the variable, from `Credentials.from_pem` the argument.",
        "Regenerate with `python scripts/bad-input-table.py`.",
    ]
    section = None
    n = 0
    for row in rows:
        if row.section != section:
            section = row.section
            out += ["", f"## {section}", "", "| # | Bad input | Exception | Message | Hint |", "| --- | --- | --- | --- | --- |"]
        n += 1
        err = row.error
        assert isinstance(err, MeshError)
        out.append(f"| {n} | {_md(row.name)} | `{type(err).__name__}` | {_md(clean(err.message))} | "
                   f"{_md(clean(err.hint or ''))} |")
    out += ["", "## Warnings (not errors)", "", "| Input | Warning | Message |", "| --- | --- | --- |"]
    for name, category, message in _warning_rows(m):
        out.append(f"| {_md(name)} | `{category}` | {_md(clean(message))} |")
    classes = sorted({type(r.error) for r in rows}, key=lambda c: _hierarchy(c))
    out += ["", "## Exception classes used above", ""]
    out += [f"- `{c.__name__}`: {_hierarchy(c)}. {(c.__doc__ or '').strip().splitlines()[0]}" for c in classes]
    return "\n".join(out) + "\n"


def _warning_rows(m: Material) -> list[tuple[str, str, str]]:
    same = SandboxPKI.create(now=NOW, root_key=_key(30), issuer_key=_key(31),
                             root_name="identity.linkerd.cluster.local", issuer_name="identity.linkerd.cluster.local")
    leaf = same.issue(CLIENT, key=_key(32), not_before=NOW - dt.timedelta(minutes=5))
    c, k, a = m.files(leaf, "same-subject")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Credentials.from_files(c, k, a, now=NOW)
    return [("Linkerd issuer with the same subject as its root (linkerd/linkerd2#5350); the credentials load",
             type(w.message).__name__, str(w.message)) for w in caught]


def generate() -> str:
    """The document, built from scratch in a temporary directory."""
    with material() as m:
        return render(collect(m), m)


def main(argv: list[str]) -> int:
    text = generate()
    if "--check" in argv:
        current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run python scripts/bad-input-table.py", file=sys.stderr)
            return 1
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv[1:]))
