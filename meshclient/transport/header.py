"""Linkerd's transport header, sent first on a *direct* connection (port 4143).

After a TLS handshake with ALPN ``transport.l5d.io/v1`` the client writes the preface
``transport.l5d.io/v1\\r\\n\\r\\n``, a big-endian u32 length and a protobuf message::

    message Header { int32 port = 1; string name = 2; SessionProtocol session_protocol = 3; }
    message SessionProtocol { oneof kind { Http1 http1 = 1; Http2 http2 = 2; } message Http1 {} message Http2 {} }

(linkerd2-proxy ``linkerd/transport-header/proto/header.proto``). The message is small enough
to hand-encode. The sandbox's inbound proxy has its own, independent codec
(``meshclient_sandbox.transport_header``), kept apart on purpose: two implementations written
from the same spec test each other on every direct-mode request, and a bug shared by client and
server would otherwise go unnoticed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ALPN", "PREFACE", "TransportHeader", "encode_header", "decode_header", "HeaderError", "MAX_HEADER_LEN"]

ALPN = "transport.l5d.io/v1"
PREFACE = b"transport.l5d.io/v1\r\n\r\n"
MAX_HEADER_LEN = 64 * 1024

_HTTP1, _HTTP2 = 1, 2


class HeaderError(ValueError):
    """The bytes are not a valid transport header."""


@dataclass(frozen=True)
class TransportHeader:
    port: int
    name: str = ""
    session_protocol: str | None = "http1"  # "http1", "http2" or None (opaque)


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32 negatives are 10-byte varints in protobuf
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise HeaderError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise HeaderError("varint too long")


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def encode_message(header: TransportHeader) -> bytes:
    """The protobuf ``Header`` message alone."""
    out = bytearray()
    if header.port:
        out += _field(1, 0) + _varint(header.port)
    if header.name:
        name = header.name.encode("utf-8")
        out += _field(2, 2) + _varint(len(name)) + name
    if header.session_protocol is not None:
        kind = {"http1": _HTTP1, "http2": _HTTP2}[header.session_protocol]
        inner = _field(kind, 2) + _varint(0)
        out += _field(3, 2) + _varint(len(inner)) + inner
    return bytes(out)


def encode_header(header: TransportHeader) -> bytes:
    """Preface + u32 big-endian length + protobuf message: what a client writes."""
    message = encode_message(header)
    return PREFACE + struct.pack(">I", len(message)) + message


def _skip(buf: bytes, pos: int, wire_type: int) -> int:
    if wire_type == 0:
        return _read_varint(buf, pos)[1]
    if wire_type == 1:
        return pos + 8
    if wire_type == 2:
        length, pos = _read_varint(buf, pos)
        return pos + length
    if wire_type == 5:
        return pos + 4
    raise HeaderError(f"unsupported wire type {wire_type}")


def decode_message(buf: bytes) -> TransportHeader:
    port, name, protocol = 0, "", None
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if number == 1 and wire_type == 0:
            value, pos = _read_varint(buf, pos)
            port = value - (1 << 64) if value >= 1 << 63 else value
        elif number == 2 and wire_type == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise HeaderError("truncated name")
            name = buf[pos : pos + length].decode("utf-8")
            pos += length
        elif number == 3 and wire_type == 2:
            length, pos = _read_varint(buf, pos)
            inner = buf[pos : pos + length]
            pos += length
            ipos = 0
            while ipos < len(inner):
                ikey, ipos = _read_varint(inner, ipos)
                if ikey >> 3 == _HTTP1:
                    protocol = "http1"
                elif ikey >> 3 == _HTTP2:
                    protocol = "http2"
                ipos = _skip(inner, ipos, ikey & 7)
        else:
            pos = _skip(buf, pos, wire_type)
        if pos > len(buf):
            raise HeaderError("truncated field")
    return TransportHeader(port=port, name=name, session_protocol=protocol)


def decode_header(data: bytes) -> tuple[TransportHeader, int]:
    """Decode preface + length + message from the start of ``data``; return it and the bytes used."""
    if not data.startswith(PREFACE):
        raise HeaderError("missing transport.l5d.io/v1 preface")
    start = len(PREFACE)
    if len(data) < start + 4:
        raise HeaderError("truncated length")
    (length,) = struct.unpack(">I", data[start : start + 4])
    if length > MAX_HEADER_LEN:
        raise HeaderError(f"header length {length} exceeds {MAX_HEADER_LEN}")
    end = start + 4 + length
    if len(data) < end:
        raise HeaderError("truncated message")
    return decode_message(data[start + 4 : end]), end
