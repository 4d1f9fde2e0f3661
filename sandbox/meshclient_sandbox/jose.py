"""JWT and JWKS *verification* for the sandbox's issuer, Vault emulator and apps.

Signing, public JWKs and unverified claims are the client's and live in :mod:`meshclient.jose`
(re-exported here, so this module is the whole JOSE toolkit a server needs). Error messages may
name subjects, issuers, audiences and key ids; never token text.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from meshclient.jose import *  # noqa: F403  (one import for servers: signing and verification)
from meshclient.jose import (
    _CURVE_BY_CRV,
    _EC_ALGS,
    _MIN_RSA_BITS,
    _RSA_ALGS,
    SUPPORTED_ALGORITHMS,
    JWTError,
    SigningKey,
    VerifyingKey,
    _b64_to_int,
    _check_alg,
    _claims_object,
    _jwk_members,
    _public,
    _split,
)
from meshclient.jose import __all__ as _CLIENT_NAMES

__all__ = [*_CLIENT_NAMES, "JWK", "JWKS", "KeySet", "key_from_jwk", "parse_jwks", "to_jwks", "verify_jws",
           "verify_jwt"]


def key_from_jwk(jwk: Mapping[str, Any]) -> VerifyingKey:
    """The public key a JWK describes (private members, if any, are ignored)."""
    kty = jwk.get("kty")
    if kty == "EC":
        crv = jwk.get("crv")
        curve = _CURVE_BY_CRV.get(crv) if isinstance(crv, str) else None
        if curve is None:
            raise JWTError(f"unsupported JWK curve {crv!r}; expected P-256, P-384 or P-521", reason="key")
        x, y = _b64_to_int(jwk.get("x"), "x"), _b64_to_int(jwk.get("y"), "y")
        try:
            return ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
        except ValueError as exc:
            raise JWTError(f"JWK point is not on curve {crv}", reason="key") from exc
    if kty == "RSA":
        n, e = _b64_to_int(jwk.get("n"), "n"), _b64_to_int(jwk.get("e"), "e")
        try:
            pub = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as exc:
            raise JWTError("JWK RSA parameters are invalid", reason="key") from exc
        if pub.key_size < _MIN_RSA_BITS:
            raise JWTError(f"JWK RSA key has {pub.key_size} bits; at least {_MIN_RSA_BITS} are required", reason="key")
        return pub
    raise JWTError(f"unsupported JWK key type {kty!r}; expected 'EC' or 'RSA'", reason="key")


@dataclass(frozen=True)
class JWK:
    """One verification key with the metadata that selects it (``kid``, ``alg``, ``use``)."""

    key: VerifyingKey
    kid: str | None = None
    alg: str | None = None
    use: str | None = None

    @classmethod
    def from_dict(cls, jwk: Mapping[str, Any]) -> JWK:
        kid, alg, use = jwk.get("kid"), jwk.get("alg"), jwk.get("use")
        return cls(
            key_from_jwk(jwk),
            kid=kid if isinstance(kid, str) else None,
            alg=alg if isinstance(alg, str) else None,
            use=use if isinstance(use, str) else None,
        )

    def accepts(self, alg: str) -> bool:
        """Whether this key may verify a signature made with ``alg``."""
        if self.use not in (None, "sig") or (self.alg is not None and self.alg != alg):
            return False
        return _key_fits(self.key, alg)

    def to_dict(self) -> dict[str, str]:
        d = _jwk_members(self.key)
        for name, value in (("kid", self.kid), ("alg", self.alg), ("use", self.use)):
            if value is not None:
                d[name] = value
        return d


@dataclass(frozen=True)
class JWKS:
    """A JSON Web Key Set: the keys an issuer publishes for verification."""

    keys: tuple[JWK, ...]

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self.keys if k.kid is not None)

    def candidates(self, kid: str | None, alg: str) -> list[JWK]:
        """Keys that may verify a token with this header: same ``kid`` (keys without a
        ``kid`` always qualify), compatible algorithm."""
        return [k for k in self.keys if (kid is None or k.kid is None or k.kid == kid) and k.accepts(alg)]

    def to_dict(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.to_dict() for k in self.keys]}


def parse_jwks(data: str | bytes | Mapping[str, Any]) -> JWKS:
    """Parse a JWKS document. Keys of unknown type are skipped (RFC 7517 §5), broken
    keys of a known type are an error."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise JWTError("JWKS is not valid JSON", reason="key") from exc
    if not isinstance(data, Mapping) or not isinstance(data.get("keys"), list):
        raise JWTError('JWKS must be a JSON object with a "keys" array', reason="key")
    keys: list[JWK] = []
    for entry in data["keys"]:
        if not isinstance(entry, Mapping):
            raise JWTError("JWKS entry is not a JSON object", reason="key")
        if entry.get("kty") not in ("EC", "RSA"):
            continue
        keys.append(JWK.from_dict(entry))
    return JWKS(tuple(keys))


KeySet = JWKS | JWK | Mapping[str, Any] | VerifyingKey | SigningKey | Sequence[JWK | Mapping[str, Any] | VerifyingKey | SigningKey]


def to_jwks(keys: KeySet) -> JWKS:
    """Normalise any accepted key form (JWKS document, JWK dict, key objects, lists) to a :class:`JWKS`."""
    if isinstance(keys, JWKS):
        return keys
    if isinstance(keys, JWK):
        return JWKS((keys,))
    if isinstance(keys, Mapping):
        return parse_jwks(keys) if "keys" in keys else JWKS((JWK.from_dict(keys),))
    if isinstance(keys, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        return JWKS((JWK(_public(keys)),))
    out: list[JWK] = []
    for item in keys:
        if isinstance(item, JWK):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(JWK.from_dict(item))
        else:
            out.append(JWK(_public(item)))
    return JWKS(tuple(out))


def _key_fits(key: VerifyingKey, alg: str) -> bool:
    if alg in _EC_ALGS:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_ALGS[alg][0])
    if alg in _RSA_ALGS:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS
    return False


def _verify(signing_input: bytes, signature: bytes, key: VerifyingKey, alg: str) -> bool:
    try:
        if alg in _EC_ALGS and isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(_EC_ALGS[alg][1]))
            return True
        if alg in _RSA_ALGS and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signing_input, padding.PKCS1v15(), _RSA_ALGS[alg])
            return True
    except InvalidSignature:
        return False
    return False


def verify_jws(
    token: str | bytes,
    keys: KeySet,
    *,
    algorithms: Collection[str] = SUPPORTED_ALGORITHMS,
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS; return (header, payload).

    Key selection: keys with the header's ``kid`` (keys without a ``kid`` always
    qualify); a ``kid`` that matches nothing is reported as ``unknown_kid`` so a caller
    can refetch its JWKS.
    """
    header, payload, signature, signing_input = _split(token)
    alg = _check_alg(header.get("alg"))
    if alg not in algorithms:
        raise JWTError(
            f"JWS algorithm {alg} is not allowed here; allowed: {', '.join(sorted(algorithms))}",
            reason="unsupported_alg",
        )
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JWTError('JWS header "kid" is not a string', reason="malformed")
    jwks = to_jwks(keys)
    candidates = jwks.candidates(kid, alg)
    if not candidates:
        if kid is not None and kid not in jwks.kids:
            raise JWTError(
                f"JWS key id {kid!r} is not among the known keys ({', '.join(jwks.kids) or 'none'})",
                reason="unknown_kid",
                hint="The issuer may have rotated its key: refetch its JWKS.",
            )
        raise JWTError(f"no known key can verify an {alg} signature" + (f" for kid {kid!r}" if kid else ""),
                       reason="unknown_kid")
    if not any(_verify(signing_input, signature, c.key, alg) for c in candidates):
        raise JWTError(
            f"JWS signature does not verify ({alg}" + (f", kid {kid!r})" if kid else ")"), reason="bad_signature"
        )
    return header, payload


def _numeric(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise JWTError(f"JWT claim {name!r} is not a NumericDate", reason="malformed")
    return float(value)


def _fmt_time(ts: float) -> str:
    try:
        return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"


def _to_epoch(now: float | int | _dt.datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, _dt.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=_dt.timezone.utc)
        return now.timestamp()
    return float(now)


def _subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    return f" for subject {sub!r}" if isinstance(sub, str) else ""


def verify_jwt(
    token: str | bytes,
    jwks_or_keys: KeySet,
    *,
    issuer: str | Collection[str] | None,
    audience: str | Collection[str] | None,
    now: float | int | _dt.datetime | None = None,
    leeway: float = 30,
    algorithms: Collection[str] = SUPPORTED_ALGORITHMS,
    require: Iterable[str] = ("exp",),
) -> dict[str, Any]:
    """Verify signature, time window, issuer and audience; return the claims.

    ``issuer``/``audience`` name what is acceptable (one value or several); pass
    ``None`` only when the caller checks that claim itself. The token's ``aud`` may be a
    string or a list; it matches if any of its values is acceptable. ``leeway`` (seconds)
    absorbs clock skew on ``exp``, ``nbf`` and ``iat``.
    """
    _, payload = verify_jws(token, jwks_or_keys, algorithms=algorithms)
    claims = _claims_object(payload)
    for name in require:
        if name not in claims:
            raise JWTError(f"JWT lacks the required claim {name!r}{_subject(claims)}", reason="claims")
    t = _to_epoch(now)
    exp, nbf, iat = _numeric(claims, "exp"), _numeric(claims, "nbf"), _numeric(claims, "iat")
    who = _subject(claims)
    if exp is not None and t > exp + leeway:
        raise JWTError(
            f"JWT{who} expired at {_fmt_time(exp)} (now {_fmt_time(t)}, leeway {leeway:g} s)",
            reason="expired",
            hint="Request a fresh token.",
        )
    if nbf is not None and t + leeway < nbf:
        raise JWTError(
            f"JWT{who} is not valid before {_fmt_time(nbf)} (now {_fmt_time(t)}, leeway {leeway:g} s)",
            reason="not_yet_valid",
            hint="Check the clocks of the issuer and this host.",
        )
    if iat is not None and t + leeway < iat:
        raise JWTError(
            f"JWT{who} was issued in the future at {_fmt_time(iat)} (now {_fmt_time(t)}, leeway {leeway:g} s)",
            reason="not_yet_valid",
            hint="Check the clocks of the issuer and this host.",
        )
    if issuer is not None:
        accepted_iss = {issuer} if isinstance(issuer, str) else set(issuer)
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss not in accepted_iss:
            raise JWTError(
                f"JWT{who} has issuer {iss!r}, expected {_one_or_list(accepted_iss)}",
                reason="issuer",
            )
    if audience is not None:
        accepted_aud = {audience} if isinstance(audience, str) else set(audience)
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if auds is None or not all(isinstance(a, str) for a in auds):
            raise JWTError(
                f"JWT{who} has no usable audience (aud {aud!r}), expected {_one_or_list(accepted_aud)}",
                reason="audience",
            )
        if not accepted_aud.intersection(auds):
            raise JWTError(
                f"JWT{who} is for audience {aud!r}, expected {_one_or_list(accepted_aud)}",
                reason="audience",
                hint="Request a token for this audience.",
            )
    return claims


def _one_or_list(values: set[str]) -> str:
    ordered = sorted(values)
    return repr(ordered[0]) if len(ordered) == 1 else f"one of {ordered!r}"


