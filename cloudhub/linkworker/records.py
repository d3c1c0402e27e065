"""The records cloudhub and its link workers exchange over their socketpair: a pure codec.

Each record is a 9-byte header (payload length, kind, connection id; network byte order) and
its payload. Connection ids are the worker's; cloudhub names a link by (worker, id).

A link worker terminates TLS and websocket framing for the edges it accepted and relays
frames; it decides nothing. Every decision (who the peer is, what it may do, what it is sent)
stays in the cloudhub process, which answers each handshake with ACCEPT or REFUSE.

Frames are relayed as the UTF-8 of the text (binary frames as their bytes), so a record
costs a header and one copy; many records go out in one socket write. The reader is
incremental: feed it whatever the socket returned and take the complete records.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from wire.errors import WireError

_HEADER = struct.Struct("!IBI")
HEADER_SIZE = _HEADER.size
#: a record's payload may not exceed this (a frame is capped far lower by ``max_frame``)
MAX_PAYLOAD = 256 * 1024 * 1024


class Kind(enum.IntEnum):
    """What a record says. Worker -> cloudhub first, then cloudhub -> worker."""

    #: a peer finished TLS and asks to upgrade; payload: :class:`Hello` as JSON
    HELLO = 1
    #: a text frame from the edge (UTF-8)
    TEXT = 2
    #: a binary frame from the edge
    BINARY = 3
    #: the link ended; payload: the reason (UTF-8)
    CLOSED = 4
    #: cloudhub -> worker: upgrade the connection (the handshake was accepted)
    ACCEPT = 10
    #: refuse the upgrade; payload: JSON ``{"status": int, "body": str}``
    REFUSE = 11
    #: a text frame to write to the edge (UTF-8)
    SEND = 12
    #: close the link; payload: JSON ``{"code": int, "reason": str}``, or empty to abort it
    CLOSE = 13
    #: stop reading the link (cloudhub's queue for it is full); TCP then slows the edge
    PAUSE = 14
    #: read the link again
    RESUME = 15


@dataclass(frozen=True, slots=True)
class Record:
    kind: Kind
    conn: int
    payload: bytes


def encode_record(kind: Kind, conn: int, payload: bytes = b"") -> bytes:
    """One record's bytes.

    Raises:
        WireError: the payload is larger than :data:`MAX_PAYLOAD`.
    """
    if len(payload) > MAX_PAYLOAD:
        raise WireError(f"relay record of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return _HEADER.pack(len(payload), kind, conn) + payload


def record_header(kind: Kind, conn: int, size: int) -> bytes:
    """The header alone, for a writer that sends the payload as a separate buffer."""
    return _HEADER.pack(size, kind, conn)


class RecordReader:
    """Splits a byte stream into records (sans-I/O: no socket here)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Record]:
        """Add what the socket returned; the records now complete, in order.

        Raises:
            WireError: an unknown kind or an impossible length: the stream is corrupt and
                the channel must be dropped (nothing after it can be trusted).
        """
        buf = self._buffer
        buf += data
        out: list[Record] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            size, kind, conn = _HEADER.unpack_from(buf, pos)
            if size > MAX_PAYLOAD:
                raise WireError(f"relay record claims {size} bytes")
            start = pos + HEADER_SIZE
            if end - start < size:
                break
            try:
                typed = Kind(kind)
            except ValueError:
                raise WireError(f"unknown relay record kind {kind}") from None
            out.append(Record(typed, conn, bytes(buf[start : start + size])))
            pos = start + size
        if pos:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete record held back."""
        return len(self._buffer)
