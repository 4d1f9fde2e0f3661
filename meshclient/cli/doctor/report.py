"""How doctor prints: one line per check as it happens, and the formatting the lines share."""

from __future__ import annotations

import datetime as _dt
from collections import Counter
from typing import TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ... import pki
from ...doctor_report import DoctorCheck
from ...errors import MeshError

__all__ = ["Report", "utc", "duration", "cert_name", "key_name", "plural"]


class Report:
    """Prints check lines as they happen (a slow handshake should not hide earlier results) and
    keeps them as :class:`~meshclient.DoctorCheck` values for :func:`meshclient.doctor`."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.counts: Counter[str] = Counter()
        self.checks: list[DoctorCheck] = []

    def line(self, status: str, name: str, text: str, hint: str | None = None) -> None:
        """One check line; the same finding twice (one cause behind several checks) is shown once."""
        check = DoctorCheck(status, name, text, hint)
        if check in self.checks:
            return
        self.counts[status] += 1
        self.checks.append(check)
        print(check.line(), file=self.out)
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


def utc(dt: _dt.datetime) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(td: _dt.timedelta) -> str:
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


def cert_name(cert: x509.Certificate) -> str:
    """A leaf's identity SAN, else its subject DN: how people recognise a certificate."""
    sans = pki.identity_sans(cert)
    if sans:
        return sans[0]
    return cert.subject.rfc4514_string() or f"(empty subject, serial {cert.serial_number:x})"


def key_name(key: object) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return "ECDSA P-256" if isinstance(key.curve, ec.SECP256R1) else f"ECDSA {key.curve.name}"
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return f"RSA-{key.key_size}"
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "Ed25519"
    return type(key).__name__


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")

