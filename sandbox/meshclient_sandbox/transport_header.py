"""Linkerd's transport header (direct mode), encoded and decoded by hand.

A meshed client that connects to a pod's inbound port 4143 negotiates ALPN
``transport.l5d.io/v1`` and then, before any application byte, writes::

    b"transport.l5d.io/v1\\r\\n\\r\\n" + u32 big-endian length + protobuf Header

with ``Header{int32 port = 1; string name = 2; SessionProtocol session_protocol = 3}`` and
``SessionProtocol{oneof kind {Http1 http1 = 1; Http2 http2 = 2;}}`` (both empty messages),
as in linkerd2-proxy ``linkerd/transport-header``. The protobuf subset is small enough to
write by hand, which keeps ``protobuf`` out of meshclient's dependencies. Decoding follows
protobuf's rules (unknown fields skipped, last scalar wins, embedded messages merge) and
then Linkerd's checks (port in 1..65535, ``name`` a DNS name when set).

The client's codec (``meshclient.transport.header``) is a separate implementation on purpose:
each tests the other on every direct-mode request in the suite.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from meshclient.errors import MeshError

__all__ = [
    "ALPN_PROTOCOL",
    "PREFACE",
    "MAX_MESSAGE_LEN",
    "SessionProtocol",
    "TransportHeader",
    "TransportHeaderError",
    "encode_header",
    "decode_header",
    "encode_prefaced",
    "read_prefaced",
]

#: The only ALPN protocol a Linkerd proxy speaks (linkerd/transport-header/src/lib.rs).
ALPN_PROTOCOL = "transport.l5d.io/v1"
PREFACE = b"transport.l5d.io/v1\r\n\r\n"
#: Largest header message accepted; Linkerd's read buffer is 8 KiB, real headers are < 300 bytes.
MAX_MESSAGE_LEN = 8 * 1024

_WT_VARINT, _WT_I64, _WT_LEN, _WT_SGROUP, _WT_EGROUP, _WT_I32 = 0, 1, 2, 3, 4, 5
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")


class TransportHeaderError(MeshError, ValueError):
    """A transport header that cannot be encoded or decoded (the proxy closes the connection)."""


class SessionProtocol(str, enum.Enum):
    """What the tunnel carries after the header; absent means an opaque TCP stream."""

    HTTP1 = "http1"
    HTTP2 = "http2"


@dataclass(frozen=True)
class TransportHeader:
    """The decoded header: the target port, an optional gateway name, the session protocol."""

    port: int
    name: str | None = None
    protocol: SessionProtocol | None = None


# -- protobuf primitives ---------------------------------------------------------------------
def _varint(value: int) -> bytes:
    """Base-128 varint of a non-negative integer below 2**64."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    for i in range(10):
        if pos >= len(data):
            raise TransportHeaderError("Transport header is truncated inside a varint.")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if result >= 1 << 64:
                raise TransportHeaderError("Transport header has a varint above 64 bits.")
            return result, pos
    raise TransportHeaderError("Transport header has a varint longer than 10 bytes.")


def _field(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _len_delimited(number: int, payload: bytes) -> bytes:
    return _field(number, _WT_LEN) + _varint(len(payload)) + payload


def _skip(data: bytes, pos: int, wire_type: int) -> int:
    """Skip one unknown field's value, as protobuf requires of a decoder."""
    if wire_type == _WT_VARINT:
        return _read_varint(data, pos)[1]
    if wire_type == _WT_I64:
        end = pos + 8
    elif wire_type == _WT_I32:
        end = pos + 4
    elif wire_type == _WT_LEN:
        length, pos = _read_varint(data, pos)
        end = pos + length
    else:  # groups are long deprecated and never appear in this message
        raise TransportHeaderError(f"Transport header uses unsupported wire type {wire_type}.")
    if end > len(data):
        raise TransportHeaderError("Transport header is truncated inside a field.")
    return end


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field; values of unknown types are skipped."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise TransportHeaderError("Transport header has a field numbered 0.")
        if wire_type == _WT_VARINT:
            value, pos = _read_varint(data, pos)
            out.append((number, wire_type, value))
        elif wire_type == _WT_LEN:
            length, start = _read_varint(data, pos)
            pos = start + length
            if pos > len(data):
                raise TransportHeaderError("Transport header is truncated inside a field.")
            out.append((number, wire_type, data[start:pos]))
        else:
            pos = _skip(data, pos, wire_type)
    return out


def _expect(number: int, wire_type: int, want: int, what: str) -> None:
    if wire_type != want:
        raise TransportHeaderError(f"Transport header field {number} ({what}) has wire type {wire_type}.")


# -- the Header message ----------------------------------------------------------------------
def encode_header(header: TransportHeader) -> bytes:
    """The protobuf bytes of ``header`` (canonical proto3: defaults omitted, fields in order)."""
    port = header.port
    if not _INT32_MIN <= port <= _INT32_MAX:
        raise TransportHeaderError(f"Transport header port {port} does not fit an int32.")
    out = b""
    if port:
        out += _field(1, _WT_VARINT) + _varint(port & 0xFFFFFFFFFFFFFFFF)  # negative int32: 10 bytes
    if header.name:
        out += _len_delimited(2, header.name.encode("utf-8"))
    if header.protocol is not None:
        kind = 1 if SessionProtocol(header.protocol) is SessionProtocol.HTTP1 else 2
        out += _len_delimited(3, _len_delimited(kind, b""))
    return out


def _decode_session_protocol(data: bytes, current: SessionProtocol | None) -> SessionProtocol | None:
    for number, wire_type, _value in _fields(data):
        if number in (1, 2):
            _expect(number, wire_type, _WT_LEN, "session protocol kind")
            current = SessionProtocol.HTTP1 if number == 1 else SessionProtocol.HTTP2
    return current


def decode_header(data: bytes, *, strict: bool = True) -> TransportHeader:
    """Decode the protobuf ``Header``; ``strict`` adds Linkerd's checks on port and name."""
    port = 0
    name = ""
    protocol: SessionProtocol | None = None
    for number, wire_type, value in _fields(bytes(data)):
        if number == 1:
            _expect(number, wire_type, _WT_VARINT, "port")
            assert isinstance(value, int)
            low = value & 0xFFFFFFFF
            port = low - (1 << 32) if low & 0x80000000 else low
        elif number == 2:
            _expect(number, wire_type, _WT_LEN, "name")
            assert isinstance(value, bytes)
            try:
                name = value.decode("utf-8")
            except UnicodeDecodeError:
                raise TransportHeaderError("Transport header name is not valid UTF-8.") from None
        elif number == 3:
            _expect(number, wire_type, _WT_LEN, "session protocol")
            assert isinstance(value, bytes)
            protocol = _decode_session_protocol(value, protocol)
    if strict:
        if not 0 < port <= 0xFFFF:
            raise TransportHeaderError(f"Transport header port {port} is not a valid port (1-65535).")
        if name and not _DNS_NAME.match(name):
            raise TransportHeaderError(f"Transport header name {name[:80]!r} is not a DNS name.")
    return TransportHeader(port=port, name=name or None, protocol=protocol)


# -- framing ---------------------------------------------------------------------------------
def encode_prefaced(header: TransportHeader) -> bytes:
    """What a direct-mode client writes right after the handshake: preface, length, message."""
    if not 0 < header.port <= 0xFFFF:
        raise TransportHeaderError(f"Transport header port {header.port} is not a valid port (1-65535).")
    message = encode_header(header)
    return PREFACE + struct.pack(">I", len(message)) + message


def read_prefaced(read_exact: Callable[[int], bytes]) -> TransportHeader:
    """Read and decode a prefaced header with ``read_exact(n)`` (which raises on short reads).

    Raises :class:`TransportHeaderError` when the preface is missing (Linkerd's
    ``TransportHeaderRequired``), the length is over :data:`MAX_MESSAGE_LEN`, or the message
    is invalid.
    """
    head = read_exact(len(PREFACE) + 4)
    if head[: len(PREFACE)] != PREFACE:
        raise TransportHeaderError("The connection did not start with the transport header preface.")
    (length,) = struct.unpack(">I", head[len(PREFACE) :])
    if length > MAX_MESSAGE_LEN:
        raise TransportHeaderError(f"Transport header length {length} exceeds {MAX_MESSAGE_LEN} bytes.")
    return decode_header(read_exact(length) if length else b"")
