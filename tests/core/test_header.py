"""Linkerd's transport header (direct mode): encode/decode round trips and byte-exact vectors.

The vectors were produced independently of meshclient's hand-written encoder: the proto of
research/linkerd.md §2.4 (linkerd2-proxy ``linkerd/transport-header/proto/header.proto``)::

    syntax = "proto3";
    package transport.l5d.io;
    message Header { int32 port = 1; string name = 2; SessionProtocol session_protocol = 3; }
    message SessionProtocol { oneof kind { Http1 http1 = 1; Http2 http2 = 2; }
                              message Http1 {} message Http2 {} }

compiled with ``grpcio-tools`` 1.85.1 (``python -m grpc_tools.protoc --python_out=.``) and
serialised with the ``protobuf`` 7.36.2 runtime (``SerializeToString(deterministic=True)``) in a
scratch venv; each vector is ``b"transport.l5d.io/v1\\r\\n\\r\\n" + struct.pack(">I", len(msg)) + msg``.
The decode-only vectors were parsed with the same runtime (``Header.ParseFromString``) to
record what protobuf itself makes of them.
"""

from __future__ import annotations

import struct

import pytest

from meshclient.transport.header import (
    ALPN,
    MAX_HEADER_LEN,
    PREFACE,
    HeaderError,
    TransportHeader,
    decode_header,
    decode_message,
    encode_header,
    encode_message,
)

# (header, bytes protobuf produced for it, framed)
VECTORS: list[tuple[TransportHeader, bytes]] = [
    (TransportHeader(port=8080, session_protocol="http1"),
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x07\x08\x90?\x1a\x02\n\x00"),
    (TransportHeader(port=8080, session_protocol="http2"),
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x07\x08\x90?\x1a\x02\x12\x00"),
    (TransportHeader(port=4143, session_protocol=None),  # opaque: no session protocol
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x03\x08\xaf "),
    (TransportHeader(port=80, name="web.ns.svc.cluster.local:80", session_protocol="http1"),  # gateway form
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00#\x08P\x12\x1bweb.ns.svc.cluster.local:80\x1a\x02\n\x00"),
    (TransportHeader(port=65535, session_protocol="http2"),
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x08\x08\xff\xff\x03\x1a\x02\x12\x00"),
    (TransportHeader(port=-1, session_protocol="http1"),  # int32 negatives are 10-byte varints
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x0f\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x1a\x02\n\x00"),
    (TransportHeader(port=0, session_protocol="http1"),  # proto3: a zero port is not written
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x04\x1a\x02\n\x00"),
    (TransportHeader(port=0, session_protocol=None),
     b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x00"),
]


def test_constants() -> None:
    assert ALPN == "transport.l5d.io/v1"
    assert PREFACE == b"transport.l5d.io/v1\r\n\r\n"
    assert MAX_HEADER_LEN == 64 * 1024


def test_the_briefs_vector() -> None:
    assert encode_header(TransportHeader(port=8080)) == b"transport.l5d.io/v1\r\n\r\n\x00\x00\x00\x07\x08\x90?\x1a\x02\n\x00"


@pytest.mark.parametrize(("header", "wire"), VECTORS, ids=[repr(h) for h, _ in VECTORS])
def test_encode_matches_protobuf_byte_for_byte(header: TransportHeader, wire: bytes) -> None:
    assert encode_header(header) == wire
    assert encode_message(header) == wire[len(PREFACE) + 4:]


@pytest.mark.parametrize(("header", "wire"), VECTORS, ids=[repr(h) for h, _ in VECTORS])
def test_decode_protobuf_bytes(header: TransportHeader, wire: bytes) -> None:
    decoded, used = decode_header(wire)
    assert decoded == header
    assert used == len(wire)


@pytest.mark.parametrize("port", [1, 80, 127, 128, 443, 4143, 8080, 16383, 16384, 65535, 2**31 - 1, -(2**31)])
@pytest.mark.parametrize("name", ["", "a", "web.ns.svc.cluster.local:8080", "ünïcødé.example:1"])
@pytest.mark.parametrize("protocol", ["http1", "http2", None])
def test_round_trip(port: int, name: str, protocol: str | None) -> None:
    header = TransportHeader(port=port, name=name, session_protocol=protocol)
    wire = encode_header(header)
    decoded, used = decode_header(wire)
    assert decoded == header
    assert used == len(wire)
    (length,) = struct.unpack(">I", wire[len(PREFACE):len(PREFACE) + 4])
    assert length == len(wire) - len(PREFACE) - 4


def test_decode_leaves_the_application_bytes_alone() -> None:
    wire = encode_header(TransportHeader(port=8080))
    app = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    decoded, used = decode_header(wire + app)
    assert decoded.port == 8080
    assert (wire + app)[used:] == app


# What protobuf's own parser makes of inputs an encoder would not write (hex message bodies).
PROTOBUF_DECODES = [
    ("120361626308903f", TransportHeader(port=8080, name="abc", session_protocol=None)),  # name before port
    ("08903f2003", TransportHeader(port=8080, session_protocol=None)),  # unknown varint field 4
    ("08903f2a0378797a", TransportHeader(port=8080, session_protocol=None)),  # unknown bytes field 5
    ("08903f1a020a001a021200", TransportHeader(port=8080, session_protocol="http2")),  # later oneof wins
    ("08903f1a020a001a00", TransportHeader(port=8080, session_protocol="http1")),  # empty merge keeps http1
    ("08011a040a020800", TransportHeader(port=1, session_protocol="http1")),  # unknown field inside Http1
    ("08010802", TransportHeader(port=2, session_protocol=None)),  # repeated scalar: last wins
]


@pytest.mark.parametrize(("hex_message", "expected"), PROTOBUF_DECODES, ids=[h for h, _ in PROTOBUF_DECODES])
def test_decode_agrees_with_protobuf_on_unusual_inputs(hex_message: str, expected: TransportHeader) -> None:
    assert decode_message(bytes.fromhex(hex_message)) == expected


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "preface"),
        (b"GET / HTTP/1.1\r\n\r\n", "preface"),
        (b"transport.l5d.io/v2\r\n\r\n\x00\x00\x00\x00", "preface"),
        (PREFACE + b"\x00\x00", "truncated length"),
        (PREFACE + b"\x00\x00\x00\x07\x08\x90", "truncated message"),
        (PREFACE + struct.pack(">I", MAX_HEADER_LEN + 1), "exceeds"),
    ],
)
def test_decode_rejects_bad_framing(data: bytes, match: str) -> None:
    with pytest.raises(HeaderError, match=match):
        decode_header(data)


@pytest.mark.parametrize(
    "hex_message",
    [
        "08",  # key without value
        "0890",  # truncated varint
        "1205616263",  # name longer than the message
        "0b",  # group start: unsupported wire type
        "08ffffffffffffffffffff01",  # varint longer than 64 bits
    ],
)
def test_decode_rejects_malformed_messages(hex_message: str) -> None:
    # protobuf 7.36.2's ParseFromString raises DecodeError for each of these too
    with pytest.raises(HeaderError):
        decode_message(bytes.fromhex(hex_message))


def test_header_error_is_a_value_error() -> None:
    assert issubclass(HeaderError, ValueError)
