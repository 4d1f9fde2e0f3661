"""meshclient.jose + meshclient_sandbox.jose: JWS/JWK/JWT against RFC vectors and every failure path.

Runs on cryptography 41.0.3 too (Databricks Runtime 15.4's pin); it needs nothing but
cryptography and pytest.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from meshclient import MeshError
from meshclient_sandbox.jose import (
    JWKS,
    JWTError,
    b64url_decode,
    b64url_encode,
    default_algorithm,
    jwk_thumbprint,
    key_from_jwk,
    parse_jwks,
    public_jwk,
    sign_jws,
    sign_jwt,
    to_jwks,
    unverified_claims,
    unverified_header,
    verify_jws,
    verify_jwt,
)

NOW = 1_700_000_000  # 2023-11-14 22:13:20 UTC
ISS = "https://issuer.example"
AUD = "mesh-services"

# RFC 7515 Appendix A.3 (ES256): the published key and signature. The signature is the raw
# r || s concatenation; a DER-expecting verifier would reject it.
A3_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
A3_TOKEN = (
    "eyJhbGciOiJFUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)
# RFC 7638 §3.1: the RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
    "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu"
    "6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awa"
    "pJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())


@pytest.fixture(scope="module")
def other_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0xFEDCBA0987654321, ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**over: Any) -> dict[str, Any]:
    base = {"iss": ISS, "sub": "alice", "aud": AUD, "iat": NOW, "nbf": NOW, "exp": NOW + 300, "jti": "j-1"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def segments(token: str) -> list[str]:
    return token.split(".")


def assert_no_token_text(err: JWTError, token: str) -> None:
    text = str(err)
    for seg in segments(token):
        if len(seg) >= 8:
            assert seg not in text


# ------------------------------------------------------------------------ RFC vectors


def test_rfc7515_a3_es256_raw_signature_verifies() -> None:
    header, payload = verify_jws(A3_TOKEN, A3_JWK)
    assert header == {"alg": "ES256"}
    assert json.loads(payload)["iss"] == "joe"
    assert len(b64url_decode(segments(A3_TOKEN)[2])) == 64


def test_rfc7515_a3_as_jwt_with_time_and_issuer() -> None:
    got = verify_jwt(A3_TOKEN, [A3_JWK], issuer="joe", audience=None, now=1300819380 - 10)
    assert got["http://example.com/is_root"] is True
    with pytest.raises(JWTError) as e:
        verify_jwt(A3_TOKEN, [A3_JWK], issuer="joe", audience=None, now=NOW)
    assert e.value.reason == "expired"
    assert "2011-03-22 18:43:00 UTC" in str(e.value)


def test_rfc7638_thumbprint_vector() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    assert jwk_thumbprint(key_from_jwk(RFC7638_JWK)) == RFC7638_THUMBPRINT


# ------------------------------------------------------------------------ sign / verify


def test_es256_roundtrip_raw_signature(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(), ec_key, kid="k1")
    header = unverified_header(token)
    assert header == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    sig = b64url_decode(segments(token)[2])
    assert len(sig) == 64  # r || s, not DER
    # An independent check with cryptography itself: r || s converted to DER verifies.
    signing_input = ".".join(segments(token)[:2]).encode()
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    ec_key.public_key().verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    assert verify_jwt(token, ec_key.public_key(), issuer=ISS, audience=AUD, now=NOW) == claims()


def test_der_signature_is_rejected(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(), ec_key)
    signing_input = ".".join(segments(token)[:2]).encode()
    der = ec_key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    forged = ".".join([*segments(token)[:2], b64url_encode(der)])
    with pytest.raises(JWTError) as e:
        verify_jwt(forged, ec_key.public_key(), issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "bad_signature"


def test_rs256_roundtrip_and_jwk_import(rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = public_jwk(rsa_key)
    assert jwk["kty"] == "RSA" and jwk["alg"] == "RS256" and jwk["use"] == "sig"
    assert jwk["kid"] == jwk_thumbprint(rsa_key)
    assert "d" not in jwk and "p" not in jwk
    token = sign_jwt(claims(), rsa_key, kid=jwk["kid"])
    assert unverified_header(token)["alg"] == "RS256"
    assert verify_jwt(token, {"keys": [jwk]}, issuer=ISS, audience=AUD, now=NOW)["sub"] == "alice"


def test_es384_roundtrip() -> None:
    key = ec.derive_private_key(42, ec.SECP384R1())
    token = sign_jwt(claims(), key)
    assert unverified_header(token)["alg"] == "ES384"
    assert len(b64url_decode(segments(token)[2])) == 96
    assert verify_jwt(token, public_jwk(key), issuer=ISS, audience=AUD, now=NOW)["sub"] == "alice"


def test_sign_jws_arbitrary_payload_and_extra_headers(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jws(b"\x00binary", ec_key, headers={"cty": "x"}, kid="k")
    header, payload = verify_jws(token, ec_key)
    assert payload == b"\x00binary" and header["cty"] == "x" and header["kid"] == "k"


# ------------------------------------------------------------------------ JWK / JWKS


def test_ec_jwk_has_fixed_width_coordinates() -> None:
    # Find a deterministic key whose x coordinate has a leading zero byte.
    scalar = 1
    while ec.derive_private_key(scalar, ec.SECP256R1()).public_key().public_numbers().x >> 248:
        scalar += 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    jwk = public_jwk(key)
    assert len(b64url_decode(jwk["x"])) == 32 and len(b64url_decode(jwk["y"])) == 32
    assert key_from_jwk(jwk).public_numbers() == key.public_key().public_numbers()
    assert jwk["kid"] == jwk_thumbprint({k: jwk[k] for k in ("kty", "crv", "x", "y")})


def test_thumbprint_ignores_optional_members(ec_key: ec.EllipticCurvePrivateKey) -> None:
    jwk = public_jwk(ec_key, kid="custom", alg="ES256")
    assert jwk["kid"] == "custom"
    assert jwk_thumbprint(jwk) == jwk_thumbprint(ec_key) == jwk_thumbprint(ec_key.public_key())


def test_parse_jwks_skips_unknown_types_and_rejects_broken_keys(ec_key: ec.EllipticCurvePrivateKey) -> None:
    jwks = parse_jwks(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}, public_jwk(ec_key, kid="a")]}))
    assert isinstance(jwks, JWKS) and jwks.kids == ("a",)
    assert to_jwks(jwks.to_dict()).kids == ("a",)
    with pytest.raises(JWTError):
        parse_jwks({"keys": [{"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}]})  # not on the curve
    with pytest.raises(JWTError):
        parse_jwks({"nokeys": []})
    with pytest.raises(JWTError):
        parse_jwks("not json")


def test_small_rsa_keys_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(JWTError) as e:
        sign_jwt(claims(), weak)
    assert e.value.reason == "key"
    with pytest.raises(JWTError):
        key_from_jwk(public_jwk(weak))


def test_default_algorithm(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    assert default_algorithm(ec_key) == "ES256"
    assert default_algorithm(rsa_key.public_key()) == "RS256"
    assert default_algorithm(ec.derive_private_key(7, ec.SECP521R1())) == "ES512"


# ------------------------------------------------------------------------ key selection


def test_unknown_kid_names_the_kid(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(), ec_key, kid="rotated-away")
    with pytest.raises(JWTError) as e:
        verify_jwt(token, [public_jwk(ec_key, kid="current")], issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "unknown_kid"
    assert "rotated-away" in str(e.value) and "current" in str(e.value)
    assert "refetch" in str(e.value)


def test_signature_by_another_key_with_the_same_kid(
    ec_key: ec.EllipticCurvePrivateKey, other_ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign_jwt(claims(), other_ec_key, kid="k1")
    with pytest.raises(JWTError) as e:
        verify_jwt(token, [public_jwk(ec_key, kid="k1")], issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "bad_signature"
    assert_no_token_text(e.value, token)


def test_kid_selects_among_several_keys(
    ec_key: ec.EllipticCurvePrivateKey, other_ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey
) -> None:
    keys = {"keys": [public_jwk(k) for k in (ec_key, other_ec_key, rsa_key)]}
    for key in (ec_key, other_ec_key, rsa_key):
        token = sign_jwt(claims(sub=str(id(key))), key, kid=jwk_thumbprint(key))
        assert verify_jwt(token, keys, issuer=ISS, audience=AUD, now=NOW)["sub"] == str(id(key))


def test_token_without_kid_tries_compatible_keys(
    ec_key: ec.EllipticCurvePrivateKey, other_ec_key: ec.EllipticCurvePrivateKey
) -> None:
    token = sign_jwt(claims(), other_ec_key)
    assert verify_jwt(token, [ec_key.public_key(), other_ec_key.public_key()], issuer=ISS, audience=AUD, now=NOW)


def test_algorithm_must_fit_the_key(ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    token = sign_jwt(claims(), rsa_key)  # RS256, no kid
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key.public_key(), issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "unknown_kid"
    # a JWK pinned to ES256 does not verify an ES384 token even when kid matches
    key384 = ec.derive_private_key(5, ec.SECP384R1())
    jwk = public_jwk(key384, kid="x", alg="ES256")
    with pytest.raises(JWTError):
        verify_jwt(sign_jwt(claims(), key384, kid="x"), [jwk], issuer=ISS, audience=AUD, now=NOW)
    with pytest.raises(JWTError):
        sign_jwt(claims(), ec_key, alg="RS256")


@pytest.mark.parametrize("alg", ["none", "HS256", "PS256", "EdDSA"])
def test_refused_algorithms(ec_key: ec.EllipticCurvePrivateKey, alg: str) -> None:
    header = b64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64url_encode(json.dumps(claims()).encode())
    token = f"{header}.{body}.{b64url_encode(b'sig')}"
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key.public_key(), issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "unsupported_alg"
    assert alg in str(e.value)


def test_algorithms_allow_list(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(), ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW, algorithms=["RS256"])
    assert e.value.reason == "unsupported_alg"


# ------------------------------------------------------------------------ claims


def test_expired_reports_time_and_subject(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(exp=NOW), ec_key)
    assert verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW + 30)  # within leeway
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW + 31)
    assert e.value.reason == "expired"
    assert "expired at 2023-11-14 22:13:20 UTC" in str(e.value)
    assert "'alice'" in str(e.value)
    assert_no_token_text(e.value, token)
    with pytest.raises(JWTError):
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW + 1, leeway=0)


def test_now_may_be_a_datetime(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(), ec_key)
    when = dt.datetime.fromtimestamp(NOW + 100, dt.timezone.utc)
    assert verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=when)
    with pytest.raises(JWTError):
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=when + dt.timedelta(hours=1))


def test_not_yet_valid(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(nbf=NOW + 600, iat=NOW), ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "not_yet_valid" and "not valid before" in str(e.value)
    future_iat = sign_jwt(claims(nbf=None, iat=NOW + 600), ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(future_iat, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "not_yet_valid" and "issued in the future" in str(e.value)


def test_wrong_issuer(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(iss="https://evil.example"), ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "issuer"
    assert "https://evil.example" in str(e.value) and ISS in str(e.value)
    assert verify_jwt(token, ec_key, issuer=[ISS, "https://evil.example"], audience=AUD, now=NOW)


def test_audience_string_or_list(ec_key: ec.EllipticCurvePrivateKey) -> None:
    listed = sign_jwt(claims(aud=["other", AUD]), ec_key)
    assert verify_jwt(listed, ec_key, issuer=ISS, audience=AUD, now=NOW)["aud"] == ["other", AUD]
    assert verify_jwt(listed, ec_key, issuer=ISS, audience={"x", "other"}, now=NOW)
    for bad in (sign_jwt(claims(aud="other"), ec_key), sign_jwt(claims(aud=["a", "b"]), ec_key)):
        with pytest.raises(JWTError) as e:
            verify_jwt(bad, ec_key, issuer=ISS, audience=AUD, now=NOW)
        assert e.value.reason == "audience" and AUD in str(e.value)
    for weird in (None, 5, ["ok", 3]):
        with pytest.raises(JWTError) as e:
            verify_jwt(sign_jwt(claims(aud=weird), ec_key), ec_key, issuer=ISS, audience=AUD, now=NOW)
        assert e.value.reason == "audience"


def test_required_claims(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(exp=None), ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "claims" and "'exp'" in str(e.value)
    assert verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW, require=())
    with pytest.raises(JWTError) as e:
        verify_jwt(sign_jwt(claims(), ec_key), ec_key, issuer=ISS, audience=AUD, now=NOW, require=("jti", "cnf"))
    assert "'cnf'" in str(e.value)


@pytest.mark.parametrize("exp", ["1700000300", True, float("inf")])
def test_non_numeric_dates_are_malformed(ec_key: ec.EllipticCurvePrivateKey, exp: Any) -> None:
    payload = json.dumps({**claims(), "exp": exp}).encode()  # inf → "Infinity", which Python parses
    token = sign_jws(payload, ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "malformed"


# ------------------------------------------------------------------------ malformed input


def _with_segment(token: str, index: int, value: str) -> str:
    parts = segments(token)
    parts[index] = value
    return ".".join(parts)


def test_malformed_tokens(ec_key: ec.EllipticCurvePrivateKey) -> None:
    good = sign_jwt(claims(), ec_key)
    cases = {
        "two segments": ".".join(segments(good)[:2]),
        "five segments (JWE)": good + ".a.b",
        "padding": _with_segment(good, 1, segments(good)[1] + "=="),
        "bad base64": _with_segment(good, 1, "!!!!"),
        "header not json": _with_segment(good, 0, b64url_encode(b"{nope")),
        "header not object": _with_segment(good, 0, b64url_encode(b"[1]")),
        "crit header": _with_segment(good, 0, b64url_encode(b'{"alg":"ES256","crit":["exp"]}')),
        "empty": "",
        "huge": "a" * 70000,
    }
    for name, token in cases.items():
        with pytest.raises(JWTError) as e:
            verify_jwt(token, ec_key, issuer=ISS, audience=AUD, now=NOW)
        assert e.value.reason in ("malformed", "bad_signature"), name
        assert_no_token_text(e.value, token)
    claims_not_object = sign_jws(b'["not", "an", "object"]', ec_key)
    with pytest.raises(JWTError) as e:
        verify_jwt(claims_not_object, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "malformed"
    with pytest.raises(JWTError):
        verify_jwt(good.encode("utf-8") + b"\xff", ec_key, issuer=ISS, audience=AUD, now=NOW)


def test_tampered_payload(ec_key: ec.EllipticCurvePrivateKey) -> None:
    good = sign_jwt(claims(), ec_key)
    tampered = _with_segment(good, 1, b64url_encode(json.dumps(claims(sub="admin")).encode()))
    with pytest.raises(JWTError) as e:
        verify_jwt(tampered, ec_key, issuer=ISS, audience=AUD, now=NOW)
    assert e.value.reason == "bad_signature"


def test_unverified_helpers_and_bytes_tokens(ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = sign_jwt(claims(), ec_key, kid="k")
    assert unverified_claims(token)["sub"] == "alice"
    assert unverified_header(token.encode())["kid"] == "k"
    assert verify_jwt(token.encode(), ec_key, issuer=ISS, audience=AUD, now=NOW)["sub"] == "alice"


def test_error_is_a_mesh_error() -> None:
    assert issubclass(JWTError, MeshError)
    err = JWTError("x", reason="expired", hint="do y")
    assert err.reason == "expired" and str(err) == "x do y"


def test_b64url_strictness() -> None:
    assert b64url_encode(b"\xfb\xff") == "-_8"
    assert b64url_decode("-_8") == b"\xfb\xff"
    for bad in ("-_8=", "a", "ab+/", "a b"):
        with pytest.raises(ValueError):
            b64url_decode(bad)
    assert base64.urlsafe_b64decode("-_8=") == b64url_decode("-_8")


def test_private_key_jwt_client_assertion_shape(ec_key: ec.EllipticCurvePrivateKey) -> None:
    """How the client side will use it: RFC 7523 assertion with aud = token endpoint."""
    assertion = sign_jwt(
        {"iss": "cid", "sub": "cid", "aud": "https://idp/token", "exp": NOW + 60, "iat": NOW, "jti": "x"},
        ec_key,
        kid=jwk_thumbprint(ec_key),
    )
    got = verify_jwt(
        assertion, [public_jwk(ec_key)], issuer="cid", audience={"https://idp/token", "https://idp"}, now=NOW,
        require=("exp", "jti"),
    )
    assert got["sub"] == "cid"
