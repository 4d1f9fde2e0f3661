"""The hand-written transport header codec against bytes from Linkerd's published proto.

Reference vectors were produced once, outside the test suite, by compiling the proto below
(a verbatim copy of linkerd2-proxy ``linkerd/transport-header/proto/header.proto``) with
``grpcio-tools`` 1.85.1 (``python -m grpc_tools.protoc --python_out=. header.proto``) in a
scratch virtualenv under /tmp, and serializing ``header_pb2.Header`` messages with the
official ``protobuf`` 7.36.2 runtime (``SerializeToString``). The decode oracle values are
what that runtime's ``ParseFromString`` returned for the same inputs. The protobuf packages
are not test dependencies: the bytes are embedded here.

    syntax = "proto3";
    package transport.l5d.io;
    message Header {
      int32 port = 1;
      string name = 2;
      SessionProtocol session_protocol = 3;
    }
    message SessionProtocol {
      message Http1 {}
      message Http2 {}
      oneof kind {
        Http1 http1 = 1;
        Http2 http2 = 2;
      }
    }
"""

from __future__ import annotations

import io
import struct

import pytest

from meshclient import MeshError
from meshclient_sandbox.transport_header import (
    ALPN_PROTOCOL,
    MAX_MESSAGE_LEN,
    PREFACE,
    SessionProtocol,
    TransportHeader,
    TransportHeaderError,
    decode_header,
    encode_header,
    encode_prefaced,
    read_prefaced,
)

H1, H2 = SessionProtocol.HTTP1, SessionProtocol.HTTP2

# (header, bytes from protoc/protobuf's SerializeToString)
VECTORS = [
    (TransportHeader(8080, None, H1), "08903f1a020a00"),
    (TransportHeader(4143, None, H2), "08af201a021200"),
    (TransportHeader(5432, None, None), "08b82a"),  # opaque: no session protocol
    (TransportHeader(80, "web.ns.svc.cluster.local", H1),
     "085012187765622e6e732e7376632e636c75737465722e6c6f63616c1a020a00"),
    (TransportHeader(1, None, None), "0801"),
]
# Encodings outside Linkerd's valid range, still protobuf-exact.
RAW_VECTORS = [
    (TransportHeader(0, None, H1), "1a020a00"),  # proto3 omits the default 0
    (TransportHeader(-1, None, H1), "08ffffffffffffffffff011a020a00"),  # negative int32: 10-byte varint
    (TransportHeader(70000, None, None), "08f0a204"),
]
# protobuf's ParseFromString results: (input hex, port, name, session protocol kind)
DECODE_ORACLE = [
    ("120361626308903f", 8080, "abc", None),  # fields out of order
    ("08903f2003", 8080, None, None),  # unknown varint field 4 skipped
    ("08903f2a0378797a", 8080, None, None),  # unknown length-delimited field 5 skipped
    ("08903f3501020304", 8080, None, None),  # unknown fixed32 field 6 skipped
    ("08903f390102030405060708", 8080, None, None),  # unknown fixed64 field 7 skipped
    ("08903f1a020a001a00", 8080, None, H1),  # SessionProtocol merged: empty second keeps http1
    ("08903f1a020a001a021200", 8080, None, H2),  # oneof: the last kind wins
    ("08010802", 2, None, None),  # repeated scalar: last wins
    ("08903f1a040a020800", 8080, None, H1),  # unknown field inside Http1 skipped
    ("08ffff031a00", 65535, None, None),  # empty SessionProtocol: no kind
]
# Inputs protobuf rejects ("Wire format was corrupt" / "String field had bad UTF-8").
CORRUPT = ["08", "0890", "1205616263", "1a020a", "0b", "08ffffffffffffffffffff01", "1202c328"]


@pytest.mark.parametrize(("header", "hexbytes"), VECTORS + RAW_VECTORS)
def test_encode_matches_protobuf(header: TransportHeader, hexbytes: str) -> None:
    assert encode_header(header).hex() == hexbytes


@pytest.mark.parametrize(("header", "hexbytes"), VECTORS)
def test_decode_protobuf_bytes(header: TransportHeader, hexbytes: str) -> None:
    assert decode_header(bytes.fromhex(hexbytes)) == header


@pytest.mark.parametrize(("hexbytes", "port", "name", "protocol"), DECODE_ORACLE)
def test_decode_follows_protobuf_rules(hexbytes: str, port: int, name: str | None,
                                       protocol: SessionProtocol | None) -> None:
    assert decode_header(bytes.fromhex(hexbytes), strict=False) == TransportHeader(port, name, protocol)


def test_decode_int32_truncates_like_protobuf() -> None:
    # a 5-byte varint above 2**32: protobuf keeps the low 32 bits, signed (-268435456)
    assert decode_header(bytes.fromhex("08808080801f"), strict=False).port == -268435456
    assert decode_header(bytes.fromhex("08ffffffffffffffffff01"), strict=False).port == -1


@pytest.mark.parametrize("hexbytes", CORRUPT)
def test_corrupt_input_is_rejected(hexbytes: str) -> None:
    with pytest.raises(TransportHeaderError):
        decode_header(bytes.fromhex(hexbytes), strict=False)


@pytest.mark.parametrize("hexbytes", ["1a020a00", "08ffffffffffffffffff011a020a00", "08f0a204"])
def test_strict_decode_rejects_invalid_ports_like_linkerd(hexbytes: str) -> None:
    with pytest.raises(TransportHeaderError, match="not a valid port"):
        decode_header(bytes.fromhex(hexbytes))


def test_strict_decode_checks_the_name() -> None:
    bad = encode_header(TransportHeader(80, "not a name!", None))
    assert decode_header(bad, strict=False).name == "not a name!"
    with pytest.raises(TransportHeaderError, match="not a DNS name"):
        decode_header(bad)


def test_wrong_wire_type_for_a_known_field() -> None:
    with pytest.raises(TransportHeaderError, match="wire type"):
        decode_header(bytes.fromhex("0a00"))  # field 1 (port) as length-delimited


@pytest.mark.parametrize("header", [h for h, _ in VECTORS])
def test_roundtrip(header: TransportHeader) -> None:
    assert decode_header(encode_header(header)) == header


def test_prefaced_framing() -> None:
    header = TransportHeader(4040, "foo.bar.example.com", H2)  # linkerd's roundtrip_prefaced test
    framed = encode_prefaced(header)
    assert framed.startswith(b"transport.l5d.io/v1\r\n\r\n")
    (length,) = struct.unpack(">I", framed[len(PREFACE): len(PREFACE) + 4])
    assert length == len(framed) - len(PREFACE) - 4
    stream = io.BytesIO(framed + b"12345")
    assert read_prefaced(lambda n: _exact(stream, n)) == header
    assert stream.read() == b"12345"  # application bytes stay for the caller
    assert ALPN_PROTOCOL == "transport.l5d.io/v1"


def test_read_prefaced_refuses_no_header() -> None:
    stream = io.BytesIO(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
    with pytest.raises(TransportHeaderError, match="preface"):
        read_prefaced(lambda n: _exact(stream, n))


def test_read_prefaced_refuses_oversized_length() -> None:
    stream = io.BytesIO(PREFACE + struct.pack(">I", MAX_MESSAGE_LEN + 1))
    with pytest.raises(TransportHeaderError, match="exceeds"):
        read_prefaced(lambda n: _exact(stream, n))


def test_encode_prefaced_validates_port() -> None:
    for port in (0, 65536, -5):
        with pytest.raises(TransportHeaderError):
            encode_prefaced(TransportHeader(port))
    with pytest.raises(TransportHeaderError):
        encode_header(TransportHeader(2**31))


def test_errors_are_mesh_errors() -> None:
    assert issubclass(TransportHeaderError, MeshError)


def _exact(stream: io.BytesIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data
