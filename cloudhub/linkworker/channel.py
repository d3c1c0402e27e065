"""One end of the socketpair between cloudhub and a link worker, as an asyncio protocol.

Both ends are the same machine: records in (:class:`~cloudhub.linkworker.records.RecordReader`
splits the stream), records out, buffered and written once per event loop turn, so that a
fan-out to a thousand links is one socket write. ``writable`` follows asyncio's flow control,
so a writer can wait while the other end does not keep up. What the records mean is each
side's business (:meth:`RecordChannel.received`).
"""

from __future__ import annotations

import abc
import asyncio
import logging

from cloudhub.linkworker.records import Kind, Record, RecordReader, record_header
from wire.errors import WireError

log = logging.getLogger(__name__)


class RecordChannel(asyncio.Protocol, abc.ABC):
    """Records in and out over one stream; subclasses handle what arrives."""

    def __init__(self, name: str) -> None:
        #: what the log calls this channel
        self.name = name
        self._reader = RecordReader()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        #: set while the other end keeps up with what we write; cleared when asyncio pauses us
        self.writable = asyncio.Event()
        self.writable.set()

    @abc.abstractmethod
    def received(self, records: list[Record]) -> None:
        """Handle records just read, in order."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            records = self._reader.feed(data)
        except WireError as exc:
            # Nothing after a corrupt record can be trusted: drop the whole channel.
            log.error("%s: corrupt channel (%s); dropping it", self.name, exc)
            if self._transport is not None:
                self._transport.abort()
            return
        self.received(records)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def emit(self, kind: Kind, conn: int, payload: bytes = b"") -> None:
        """Queue a record; everything queued in this loop turn goes out in one write."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(record_header(kind, conn, len(payload)))
        if payload:
            self._out.append(payload)

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(b"".join(out))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
