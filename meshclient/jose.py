"""Just enough JOSE for the client: compact JWS signing, public JWKs, and reading a JWT's claims.

Why here and not pyjwt: the core dependencies stay requests, urllib3 and cryptography
(Databricks runtimes pin old versions and every extra package is a conflict risk). The client
signs ``private_key_jwt`` client assertions (RFC 7523) and reads a token's unverified claims
for its lifetime and subject; *verifying* tokens (JWKS, signatures, claims) is a server's job
and lives in the sandbox distribution (``meshclient_sandbox.jose``).

Algorithms: ES256/ES384/ES512 (signatures are the raw ``r || s`` of RFC 7518 §3.4, not
DER) and RS256/RS384/RS512. ``none`` and HMAC are refused outright so that a public key
can never be used as an HMAC secret (algorithm confusion).

Error messages may name subjects, issuers, audiences and key ids; never token text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .errors import MeshError

__all__ = [
    "JWTError",
    "SigningKey",
    "VerifyingKey",
    "SUPPORTED_ALGORITHMS",
    "b64url_encode",
    "b64url_decode",
    "default_algorithm",
    "public_jwk",
    "jwk_thumbprint",
    "sign_jws",
    "sign_jwt",
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














# --------------------------------------------------------------------------- JWS




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












