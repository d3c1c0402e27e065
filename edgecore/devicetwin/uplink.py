"""Where the twin's upstream messages leave: the outbox sender (twin -> edgehub -> cloud).

Every accepted report and state change is an outbox row, committed in the same transaction
as the twin (:mod:`.store`) and deleted only when the cloud answers it. This module decides
what is handed to edgehub, and when:

- while the cloud link is down nothing is sent (edgehub would drop it): rows wait in SQLite;
- on each ``connected`` every row committed so far is read back from SQLite and sent, oldest
  first, one message per row with the row's stable id (a resend carries the same id; the cloud
  applies reports idempotently, by version);
- after that, while the link stays up, rows committed later are sent from memory right after
  their commit (no SQLite read, no JSON decode), and the rows waiting for one device and kind
  (one resource) become ONE message: per property the newest expected and the newest actual
  with their versions, for ``state/update`` the latest state. The cloud keeps the greatest
  version per property, so nothing is lost. One such message per resource is in flight at a
  time (unless unanswered for ``answer_timeout``): rows committed meanwhile wait and merge,
  so under load the cloud gets fewer, fuller messages, and the edge fewer answers;
- the cloud's answer (``response`` or ``error``) names a message id; :meth:`Uplink.answered`
  maps it to every row that message covered, for the module to delete in its next commit.

Why a ``floor``: rows with ``seq <= floor`` are sent from SQLite, rows above it from memory.
A disconnect (or memory holding more than ``memory_rows``) raises the floor to the last row
committed, so a row sent on a link that died before answering, or dropped from memory, is in
the next replay. Restarted, the module starts with everything in SQLite (floor = last seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgecore.devicetwin.store import NewOutboxRow, TwinStore
from edgecore.modules import EDGEHUB, TWIN, TWIN_GROUP
from hive.bus import Bus
from wire.codec import bus_message
from wire.errors import StoreError
from wire.twin import json_side, merge

log = logging.getLogger(__name__)

#: outbox rows read per query while replaying
PAGE = 256
#: seconds an unanswered message holds back the next one for the same resource
ANSWER_TIMEOUT = 5.0
#: rows waiting in memory at most; past that the sender reads them back from SQLite
MEMORY_ROWS = 100_000
#: unanswered messages remembered at most (the oldest are forgotten: their rows stay in
#: SQLite and go again on the next link)
MAX_FLIGHTS = 10_000

_STATE_SUFFIX = "/state/update"


@dataclass(slots=True)
class _Flight:
    """A message handed to edgehub and not answered yet."""

    resource: str
    rows: list[str]
    #: loop time after which it no longer holds back the next message for its resource
    deadline: float


def merge_property(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """Two upstream twin entries of one property as one: each side the newer by version.

    ``new`` is the later row's. Both sides only grow on the edge, so ``new`` nearly always wins
    whole; the per-side check keeps the merge lossless whatever the order.
    """
    if old is None:
        return new
    out: dict[str, Any] | None = None
    for side in ("expected", "actual"):
        o, n = json_side(old, side), json_side(new, side)
        # the twin's own total order (wire.twin): the cloud keeps the same winner
        if o is None or merge(o, n) is not o:
            continue
        if out is None:
            out = dict(new)
        out[side] = old[side]
        out[f"{side}_version"] = old[f"{side}_version"]
    return new if out is None else out


def merge_rows(rows: list[NewOutboxRow]) -> tuple[str, dict[str, Any]]:
    """One upstream message for rows of one resource, oldest first: ``(msg_id, content)``.

    A single row goes as it is, under its own id; several get a new id (also the content's
    ``event_id``).
    """
    if len(rows) == 1:
        return rows[0].msg_id, rows[0].content
    msg_id = str(uuid.uuid4())
    last = rows[-1].content
    if rows[-1].resource.endswith(_STATE_SUFFIX):
        return msg_id, {**last, "event_id": msg_id}
    twin: dict[str, dict[str, Any]] = {}
    for row in rows:
        props = row.content.get("twin")
        if isinstance(props, dict):
            for name, entry in props.items():
                twin[name] = merge_property(twin.get(name), entry)
    return msg_id, {"event_id": msg_id, "timestamp": last.get("timestamp", 0), "twin": twin}


class Uplink:
    """Sends committed outbox rows to edgehub while the cloud link is up."""

    def __init__(
        self,
        *,
        bus: Bus,
        clock: Callable[[], int],
        answer_timeout: float = ANSWER_TIMEOUT,
        memory_rows: int = MEMORY_ROWS,
    ) -> None:
        """
        Args:
            bus: the process's bus.
            clock: milliseconds since the epoch (message timestamps).
            answer_timeout: seconds an unanswered message holds back its resource (5).
            memory_rows: rows kept in memory for sending at most (100,000).
        """
        self._bus = bus
        self._clock = clock
        self._timeout = answer_timeout
        self._max_rows = max(1, memory_rows)
        self._store: TwinStore | None = None
        self._link_up = False
        self._link_down = asyncio.Event()
        self._link_down.set()
        #: bumped on each ``connected``: the replay starts again from the oldest row
        self._epoch = 0
        self._kick = asyncio.Event()
        #: the last outbox seq committed
        self._high = 0
        #: rows up to here are sent from SQLite, later ones from memory
        self._floor = 0
        #: replay progress on this link
        self._cursor = 0
        #: committed rows not sent yet, by resource, oldest first
        self._waiting: dict[str, list[NewOutboxRow]] = {}
        self._rows_waiting = 0
        self._flights: dict[str, _Flight] = {}
        #: the message in flight for a resource, which holds back the next one
        self._gates: dict[str, _Flight] = {}
        #: upstream messages handed to edgehub
        self.sent = 0

    @property
    def link_up(self) -> bool:
        return self._link_up

    def opened(self, store: TwinStore, last_seq: int) -> None:
        """Start from the store's rows: all of them go from SQLite once the link is up."""
        self._store = store
        self._high = self._floor = last_seq
        self._cursor = 0
        self._forget_waiting()
        self._flights.clear()
        self._kick.set()

    # -- events from the module's loop (serialised with its commits) -------------------------

    def connected(self) -> None:
        self._link_up = True
        self._epoch += 1
        self._link_down.clear()
        self._cursor = 0
        # Every row not answered goes again from SQLite; messages still in flight stay known,
        # so an answer that comes late deletes what it covered all the same.
        self._forget_waiting()
        self._kick.set()

    def disconnected(self) -> None:
        self._link_up = False
        self._link_down.set()
        self._forget_waiting()

    def committed(self, rows: list[NewOutboxRow], last_seq: int) -> None:
        """Rows just committed (``last_seq`` = the last one's seq): send them soon."""
        if not rows:
            return
        self._high = max(self._high, last_seq)
        if not self._link_up or self._rows_waiting + len(rows) > self._max_rows:
            if self._link_up:
                log.info(
                    "twin: over %d upstream rows wait for the cloud; sending them from SQLite",
                    self._max_rows,
                )
            self._forget_waiting()  # they are all in SQLite, up to the new floor
        else:
            waiting = self._waiting
            for row in rows:
                queue = waiting.get(row.resource)
                if queue is None:
                    waiting[row.resource] = [row]
                else:
                    queue.append(row)
            self._rows_waiting += len(rows)
        self._kick.set()

    def compacted(self, last_seq: int) -> None:
        """The outbox was folded while the link was down (new rows up to ``last_seq``): the
        next replay must reach them."""
        self._high = max(self._high, last_seq)

    def answered(self, msg_id: str) -> list[str]:
        """The outbox row ids the cloud's answer to ``msg_id`` covers."""
        flight = self._flights.pop(msg_id, None)
        if flight is None:
            return [msg_id]  # sent from SQLite (or before a restart): a row's own id
        if self._gates.get(flight.resource) is flight:
            del self._gates[flight.resource]
            if flight.resource in self._waiting:
                self._kick.set()
        return flight.rows

    def _forget_waiting(self) -> None:
        """Leave every row committed so far to the SQLite replay."""
        self._floor = self._high
        self._waiting.clear()
        self._rows_waiting = 0
        self._gates.clear()

    # -- the sender task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Send forever: the replay from SQLite first on each link, then from memory."""
        while True:
            await self._wait()
            while self._link_up:
                if self._cursor < self._floor:
                    await self._replay_page()
                    continue
                await self._send_waiting()
                break

    async def _wait(self) -> None:
        """Until kicked, or until a held-back resource's message times out."""
        loop = asyncio.get_running_loop()
        wake: float | None = None
        if self._link_up:
            for resource in self._waiting:
                gate = self._gates.get(resource)
                if gate is not None and (wake is None or gate.deadline < wake):
                    wake = gate.deadline
        if wake is None:
            await self._kick.wait()
        else:
            delay = wake - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._kick.wait()
        self._kick.clear()

    async def _replay_page(self) -> None:
        """Send the next page of rows at or below the floor, one message per row."""
        if self._store is None:
            raise StoreError("the twin uplink has no store")
        epoch, floor = self._epoch, self._floor
        rows, next_after = await self._store.pending_page(
            after=self._cursor, upto=floor, limit=PAGE
        )
        for row in rows:
            if not self._link_up or epoch != self._epoch:
                return
            if not await self._send(row.msg_id, row.resource, row.content):
                return
            self.sent += 1
            if epoch != self._epoch:
                return
            self._cursor = row.seq
        if epoch == self._epoch:
            self._cursor = floor if next_after is None else max(self._cursor, next_after)

    async def _send_waiting(self) -> None:
        """Send what waits in memory: one merged message per resource not held back."""
        loop = asyncio.get_running_loop()
        epoch = self._epoch
        for resource in list(self._waiting):
            if not self._link_up or epoch != self._epoch:
                return
            now = loop.time()
            gate = self._gates.get(resource)
            if gate is not None and gate.deadline > now:
                continue
            rows = self._waiting.pop(resource, None)
            if not rows:
                continue
            self._rows_waiting -= len(rows)
            msg_id, content = merge_rows(rows)
            flight = _Flight(resource, [r.msg_id for r in rows], now + self._timeout)
            self._flights[msg_id] = flight
            self._gates[resource] = flight
            if len(self._flights) > MAX_FLIGHTS:
                del self._flights[next(iter(self._flights))]
            if not await self._send(msg_id, resource, content):
                return
            self.sent += 1

    async def _send(self, msg_id: str, resource: str, content: dict[str, Any]) -> bool:
        """Hand one message to edgehub; give up (``False``) if the link goes down meanwhile."""
        msg = bus_message(
            source=TWIN,
            group=TWIN_GROUP,
            operation="update",
            resource=resource,
            content=content,
            msg_id=msg_id,
            timestamp=self._clock(),
        )
        if self._bus.send_nowait(EDGEHUB, msg):
            return True
        put = asyncio.ensure_future(self._bus.send(EDGEHUB, msg))
        down = asyncio.ensure_future(self._link_down.wait())
        try:
            await asyncio.wait({put, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not put.done():
                put.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await put
        return put.done() and not put.cancelled() and put.exception() is None
