"""Ids for bus messages modules make by the thousand.

The messages themselves are assembled by :func:`wire.codec.bus_message` (the codec's fast path,
beside the slow one it must equal).
"""

from __future__ import annotations

import itertools
import os


class MessageIds:
    """Ids for messages a process makes by the thousand: UUIDv4-shaped, unique per instance.

    uuid4 reads the OS's random source for every id; a random prefix chosen once and a counter
    cost a fifth of that and cannot collide within the process. That they are predictable gives
    nobody anything: they name bus-internal messages (eventbus <-> twin, never on the wire) and
    the hub's own replies, forwarded requests and object messages, which an edge can only ACK
    (by id) on its own link. Call an instance for the next id.
    """

    def __init__(self) -> None:
        r = os.urandom(10).hex()
        variant = "89ab"[int(r[15], 16) & 3]
        self._prefix = f"{r[:8]}-{r[8:12]}-4{r[12:15]}-{variant}{r[16:19]}-"
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"
