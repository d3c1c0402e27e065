"""Message passing between modules, beehive-style.

Each registered module has one bounded inbox. ``send`` waits when the inbox is full instead of
dropping (KubeEdge's edge FIFO silently drops the oldest message; we apply back-pressure).
``send_sync`` marks the message ``sync`` and waits for a reply whose ``parent_msg_id`` equals
its id; :meth:`Bus.respond` delivers such replies. A reply nobody waits for is reported to the
caller (``False``) rather than lost silently.

A module whose handling of a message is synchronous may :meth:`Bus.serve` its inbox with a
handler instead of receiving: while it does, a message sent to it when its inbox is empty is
handled at once, in the sender's task, instead of waking the receiver's task in a later loop
iteration (see :meth:`Bus.serve` for why that keeps the order).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from wire.errors import BridgeError
from wire.messages import Message

log = logging.getLogger(__name__)

#: handles one message synchronously (:meth:`Bus.serve`)
Handler = Callable[[Message], None]

#: beehive's channel size; enough for bursts, small enough to push back on a flood.
DEFAULT_INBOX = 1024


class UnknownModule(BridgeError, LookupError):
    """A message addressed to a module or group that is not registered."""


@dataclass
class _Entry:
    name: str
    group: str
    inbox: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(DEFAULT_INBOX))
    #: set while the module serves its inbox (:meth:`Bus.serve`)
    handler: Handler | None = None
    #: a message of this module is being handled: one sent meanwhile waits its turn
    handling: bool = False


class Bus:
    """Routes messages between modules of one process."""

    def __init__(self, *, inbox_size: int = DEFAULT_INBOX) -> None:
        self._inbox_size = inbox_size
        self._modules: dict[str, _Entry] = {}
        self._waiters: dict[str, asyncio.Future[Message]] = {}

    def register(self, name: str, group: str) -> None:
        """Give module ``name`` (member of ``group``) an inbox."""
        if name in self._modules:
            raise ValueError(f"module {name!r} registered twice")
        self._modules[name] = _Entry(name, group, asyncio.Queue(self._inbox_size))

    def modules(self, group: str) -> list[str]:
        return [e.name for e in self._modules.values() if e.group == group]

    async def send(self, dest: str, message: Message) -> None:
        """Put ``message`` in ``dest``'s inbox, waiting while it is full."""
        entry = self._modules.get(dest)
        if entry is None:
            raise UnknownModule(f"no module named {dest!r}")
        if entry.handler is None or not self._handled_inline(entry, message):
            await entry.inbox.put(message)

    def send_nowait(self, dest: str, message: Message) -> bool:
        """Like :meth:`send` but refuses (returns ``False``) when the inbox is full."""
        entry = self._modules.get(dest)
        if entry is None:
            raise UnknownModule(f"no module named {dest!r}")
        if entry.handler is not None and self._handled_inline(entry, message):
            return True
        try:
            entry.inbox.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    async def send_to_group(self, group: str, message: Message) -> None:
        """Deliver to every module of ``group``."""
        targets = self.modules(group)
        if not targets:
            raise UnknownModule(f"no module in group {group!r}")
        for name in targets:
            await self.send(name, message)

    async def send_sync(self, dest: str, message: Message, *, timeout: float = 30.0) -> Message:
        """Send and wait for the reply (matched on ``parent_msg_id``).

        Raises:
            TimeoutError: no reply within ``timeout`` seconds.
        """
        message.header.sync = True
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[message.id] = fut
        try:
            async with asyncio.timeout(timeout):  # covers a full inbox as well as the reply
                await self.send(dest, message)
                return await fut
        finally:
            self._waiters.pop(message.id, None)

    def respond(self, reply: Message) -> bool:
        """Hand a reply to whoever waits in :meth:`send_sync`. ``False`` if nobody does."""
        fut = self._waiters.get(reply.parent_id)
        if fut is None or fut.done():
            return False
        fut.set_result(reply)
        return True

    async def receive(self, name: str) -> Message:
        """Next message for module ``name``."""
        return await self._entry(name).inbox.get()

    def receive_nowait(self, name: str) -> Message | None:
        try:
            return self._entry(name).inbox.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def serve(self, name: str, handler: Handler) -> None:
        """Handle module ``name``'s messages with ``handler`` until cancelled.

        While this runs, a message sent to ``name`` when its inbox is empty is handled at once
        in the sender's task; otherwise it is queued and handled here after those ahead of it.
        The order is kept because an empty inbox means no message of ``name`` is in flight:
        this loop takes a message and handles it in the same task step (``handler`` is
        synchronous), so a message is either in the inbox or already handled. A message sent
        while one is being handled (by the handler itself, say) is queued, not nested.
        ``handler``'s errors are its own: logged here, never raised into a sender.
        """
        entry = self._entry(name)
        if entry.handler is not None:
            raise ValueError(f"module {name!r} is served twice")
        entry.handler = handler
        try:
            while True:
                message = await entry.inbox.get()
                self._handle(entry, handler, message)
        finally:
            entry.handler = None

    def _handled_inline(self, entry: _Entry, message: Message) -> bool:
        """Handle ``message`` now if its module serves its inbox and nothing is ahead of it."""
        handler = entry.handler
        if handler is None or entry.handling or entry.inbox.qsize():
            return False
        self._handle(entry, handler, message)
        return True

    @staticmethod
    def _handle(entry: _Entry, handler: Handler, message: Message) -> None:
        entry.handling = True
        try:
            handler(message)
        except Exception:
            log.exception(
                "%s failed to handle %s %s", entry.name, message.operation, message.resource
            )
        finally:
            entry.handling = False

    def _entry(self, name: str) -> _Entry:
        entry = self._modules.get(name)
        if entry is None:
            raise UnknownModule(f"no module named {name!r}")
        return entry
