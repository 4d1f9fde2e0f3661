"""Just enough JOSE for meshclient: compact JWS, JWK/JWKS and JWT validation.

Why here and not pyjwt: the core dependencies stay requests, urllib3 and cryptography
(Databricks runtimes pin old versions and every extra package is a conflict risk). The
module serves both sides: the sandbox issuer signs and validates access tokens, and the
client signs ``private_key_jwt`` client assertions (RFC 7523).

Algorithms: ES256/ES384/ES512 (signatures are the raw ``r || s`` of RFC 7518 §3.4, not
DER) and RS256/RS384/RS512. ``none`` and HMAC are refused outright so that a public key
can never be used as an HMAC secret (algorithm confusion).

Error messages may name subjects, issuers, audiences and key ids; never token text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import math
import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from .errors import MeshError

__all__ = [
    "JWTError",
    "JWK",
    "JWKS",
    "SigningKey",
    "VerifyingKey",
    "KeySet",
    "SUPPORTED_ALGORITHMS",
    "b64url_encode",
    "b64url_decode",
    "default_algorithm",
    "public_jwk",
    "jwk_thumbprint",
    "key_from_jwk",
    "parse_jwks",
    "to_jwks",
    "sign_jws",
    "verify_jws",
    "sign_jwt",
    "verify_jwt",
    "unverified_header",
    "unverified_claims",
]

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

_EC_ALGS: dict[str, tuple[type[ec.EllipticCurve], hashes.HashAlgorithm, str]] = {
    "ES256": (ec.SECP256R1, hashes.SHA256(), "P-256"),
    "ES384": (ec.SECP384R1, hashes.SHA384(), "P-384"),
    "ES512": (ec.SECP521R1, hashes.SHA512(), "P-521"),
}
_RSA_ALGS: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
}
_CRV_BY_NAME: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "secp256r1": (ec.SECP256R1, "P-256"),
    "secp384r1": (ec.SECP384R1, "P-384"),
    "secp521r1": (ec.SECP521R1, "P-521"),
}
_CURVE_BY_CRV: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
SUPPORTED_ALGORITHMS: tuple[str, ...] = (*_EC_ALGS, *_RSA_ALGS)
_MIN_RSA_BITS = 2048
_MAX_TOKEN_CHARS = 64 * 1024
_B64URL_RE = re.compile(rb"[A-Za-z0-9_-]*")  # far above any sane JWT; bounds the work done on garbage


class JWTError(MeshError):
    """A JWS/JWT could not be signed, parsed or verified.

    ``reason`` is a stable machine-readable code so that callers (the sandbox issuer, a
    resource server) can map failures without parsing messages: ``malformed``,
    ``unsupported_alg``, ``unknown_kid``, ``bad_signature``, ``expired``,
    ``not_yet_valid``, ``issuer``, ``audience``, ``claims``, ``key``.
    """

    def __init__(self, message: str, *, reason: str, hint: str | None = None) -> None:
        self.reason = reason
        super().__init__(message, hint=hint)


# --------------------------------------------------------------------------- base64url


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: str | bytes) -> bytes:
    """Strict unpadded base64url decode; raises ``ValueError`` on anything else."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)  # '?' fails the match
    if not _B64URL_RE.fullmatch(raw) or len(raw) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc


def _int_to_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def _b64_to_int(value: object, what: str) -> int:
    if not isinstance(value, str) or not value:
        raise JWTError(f"JWK member {what!r} is missing or not a string", reason="key")
    try:
        return int.from_bytes(b64url_decode(value), "big")
    except ValueError as exc:
        raise JWTError(f"JWK member {what!r} is not base64url", reason="key") from exc


# --------------------------------------------------------------------------- JWK


def _public(key: SigningKey | VerifyingKey) -> VerifyingKey:
    if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return key.public_key()
    if isinstance(key, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        return key
    raise JWTError(f"unsupported key type {type(key).__name__}; use an EC (P-256/384/521) or RSA key", reason="key")


def default_algorithm(key: SigningKey | VerifyingKey) -> str:
    """The JWS algorithm a key implies: ES256 for P-256, ES384, ES512, RS256 for RSA."""
    pub = _public(key)
    if isinstance(pub, ec.EllipticCurvePublicKey):
        entry = _CRV_BY_NAME.get(pub.curve.name)
        if entry is None:
            raise JWTError(f"unsupported EC curve {pub.curve.name}; use P-256, P-384 or P-521", reason="key")
        return {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[entry[1]]
    return "RS256"


def _thumbprint_members(jwk: Mapping[str, Any]) -> dict[str, Any]:
    kty = jwk.get("kty")
    names: tuple[str, ...]
    if kty == "EC":
        names = ("crv", "kty", "x", "y")
    elif kty == "RSA":
        names = ("e", "kty", "n")
    else:
        raise JWTError(f"unsupported JWK key type {kty!r}; expected 'EC' or 'RSA'", reason="key")
    missing = [n for n in names if not isinstance(jwk.get(n), str)]
    if missing:
        raise JWTError(f"JWK lacks required member(s) {', '.join(missing)}", reason="key")
    return {n: jwk[n] for n in names}


def jwk_thumbprint(key: Mapping[str, Any] | SigningKey | VerifyingKey) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: a key id that anyone can recompute."""
    jwk = key if isinstance(key, Mapping) else _jwk_members(_public(key))
    canonical = json.dumps(_thumbprint_members(jwk), separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _jwk_members(pub: VerifyingKey) -> dict[str, str]:
    if isinstance(pub, ec.EllipticCurvePublicKey):
        entry = _CRV_BY_NAME.get(pub.curve.name)
        if entry is None:
            raise JWTError(f"unsupported EC curve {pub.curve.name}; use P-256, P-384 or P-521", reason="key")
        size = (pub.curve.key_size + 7) // 8
        nums = pub.public_numbers()
        return {"kty": "EC", "crv": entry[1], "x": _int_to_b64(nums.x, size), "y": _int_to_b64(nums.y, size)}
    rnums = pub.public_numbers()
    return {"kty": "RSA", "n": _int_to_b64(rnums.n), "e": _int_to_b64(rnums.e)}


def public_jwk(
    key: SigningKey | VerifyingKey, *, kid: str | None = None, alg: str | None = None, use: str | None = "sig"
) -> dict[str, str]:
    """The public JWK of ``key`` (a private key is reduced to its public half).

    ``kid`` defaults to the RFC 7638 thumbprint so that both ends agree on it without
    coordination; ``alg`` defaults to :func:`default_algorithm`.
    """
    jwk = _jwk_members(_public(key))
    jwk["kid"] = kid if kid is not None else jwk_thumbprint(jwk)
    jwk["alg"] = alg or default_algorithm(key)
    if use:
        jwk["use"] = use
    return jwk


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


# --------------------------------------------------------------------------- JWS


def _key_fits(key: VerifyingKey, alg: str) -> bool:
    if alg in _EC_ALGS:
        return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _EC_ALGS[alg][0])
    if alg in _RSA_ALGS:
        return isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_RSA_BITS
    return False


def _check_alg(alg: object) -> str:
    if not isinstance(alg, str):
        raise JWTError('JWS header has no "alg"', reason="malformed")
    if alg not in SUPPORTED_ALGORITHMS:
        raise JWTError(
            f"JWS algorithm {alg!r} is not accepted; supported: {', '.join(SUPPORTED_ALGORITHMS)}",
            reason="unsupported_alg",
        )
    return alg


def _sign(signing_input: bytes, key: SigningKey, alg: str) -> bytes:
    if alg in _EC_ALGS:
        curve, digest, _ = _EC_ALGS[alg]
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
            raise JWTError(f"{alg} needs an EC {_EC_ALGS[alg][2]} private key", reason="key")
        size = (key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < _MIN_RSA_BITS:
        raise JWTError(f"{alg} needs an RSA private key of at least {_MIN_RSA_BITS} bits", reason="key")
    return key.sign(signing_input, padding.PKCS1v15(), _RSA_ALGS[alg])


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


def _json_segment(obj: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def sign_jws(
    payload: bytes,
    key: SigningKey,
    *,
    alg: str | None = None,
    kid: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Compact JWS over ``payload``; ``alg`` defaults to the one ``key`` implies."""
    alg = _check_alg(alg or default_algorithm(key))
    header: dict[str, Any] = dict(headers or {})
    header["alg"] = alg
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{_json_segment(header)}.{b64url_encode(payload)}"
    signature = _sign(signing_input.encode("ascii"), key, alg)
    return f"{signing_input}.{b64url_encode(signature)}"


def _split(token: str | bytes) -> tuple[dict[str, Any], bytes, bytes, bytes]:
    """(header, payload, signature, signing input); raises ``malformed`` errors."""
    if isinstance(token, bytes):
        # checked, not caught: a UnicodeDecodeError would carry the whole token in its context
        if not token.isascii():
            raise JWTError("JWT is malformed: it is not ASCII", reason="malformed")
        token = token.decode("ascii")
    if not isinstance(token, str):
        raise JWTError(f"JWT is malformed: expected a string, got {type(token).__name__}", reason="malformed")
    if len(token) > _MAX_TOKEN_CHARS:
        raise JWTError(f"JWT is malformed: longer than {_MAX_TOKEN_CHARS} characters", reason="malformed")
    parts = token.strip().split(".")
    if len(parts) != 3:
        hint = " (an encrypted JWE is not supported)" if len(parts) == 5 else ""
        raise JWTError(
            f"JWT is malformed: expected 3 dot-separated segments, found {len(parts)}{hint}", reason="malformed"
        )
    try:
        header_raw, payload, signature = (b64url_decode(p) for p in parts)
    except ValueError as exc:
        raise JWTError("JWT is malformed: a segment is not unpadded base64url", reason="malformed") from exc
    try:
        header = json.loads(header_raw)
    except ValueError as exc:
        raise JWTError("JWT is malformed: the header is not JSON", reason="malformed") from exc
    if not isinstance(header, dict):
        raise JWTError("JWT is malformed: the header is not a JSON object", reason="malformed")
    crit = header.get("crit")
    if crit is not None:
        raise JWTError(f"JWS header lists critical extensions {crit!r} that are not understood", reason="malformed")
    return header, payload, signature, f"{parts[0]}.{parts[1]}".encode("ascii")


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


# --------------------------------------------------------------------------- JWT


def sign_jwt(
    claims: Mapping[str, Any],
    key: SigningKey,
    *,
    kid: str | None = None,
    alg: str | None = None,
    typ: str | None = "JWT",
    headers: Mapping[str, Any] | None = None,
) -> str:
    """Sign ``claims`` as a compact JWT (``typ`` may be e.g. ``at+jwt`` for RFC 9068)."""
    hdr = dict(headers or {})
    if typ is not None:
        hdr.setdefault("typ", typ)
    payload = json.dumps(dict(claims), separators=(",", ":"), sort_keys=True).encode("utf-8")
    return sign_jws(payload, key, alg=alg, kid=kid, headers=hdr)


def unverified_header(token: str | bytes) -> dict[str, Any]:
    """The JOSE header, unverified: for routing (which issuer, which key) only."""
    return _split(token)[0]


def unverified_claims(token: str | bytes) -> dict[str, Any]:
    """The claims, unverified: for routing (``iss``, client id) only, never for trust."""
    return _claims_object(_split(token)[1])


def _claims_object(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except ValueError as exc:
        raise JWTError("JWT is malformed: the claims are not JSON", reason="malformed") from exc
    if not isinstance(claims, dict):
        raise JWTError("JWT is malformed: the claims are not a JSON object", reason="malformed")
    return claims


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
