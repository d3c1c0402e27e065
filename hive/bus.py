"""Message passing between modules, beehive-style.

Each registered module has one bounded inbox. ``send`` waits when the inbox is full instead of
dropping (KubeEdge's edge FIFO silently drops the oldest message; we apply back-pressure).
``send_sync`` marks the message ``sync`` and waits for a reply whose ``parent_msg_id`` equals
its id; :meth:`Bus.respond` delivers such replies. A reply nobody waits for is reported to the
caller (``False``) rather than lost silently.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from wire.errors import BridgeError
from wire.messages import Message

log = logging.getLogger(__name__)

#: beehive's channel size; enough for bursts, small enough to push back on a flood.
DEFAULT_INBOX = 1024


class UnknownModule(BridgeError, LookupError):
    """A message addressed to a module or group that is not registered."""


@dataclass
class _Entry:
    name: str
    group: str
    inbox: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(DEFAULT_INBOX))


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
        await entry.inbox.put(message)

    def send_nowait(self, dest: str, message: Message) -> bool:
        """Like :meth:`send` but refuses (returns ``False``) when the inbox is full."""
        entry = self._modules.get(dest)
        if entry is None:
            raise UnknownModule(f"no module named {dest!r}")
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

    def _entry(self, name: str) -> _Entry:
        entry = self._modules.get(name)
        if entry is None:
            raise UnknownModule(f"no module named {name!r}")
        return entry
