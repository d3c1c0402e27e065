"""Process-level tuning for a cloudhub that holds thousands of TLS websockets.

Each setting here answers a cost ``bench/hub_scale.py`` and ``bench/link_churn.py`` showed at
thousands of nodes on a 2-core box (the figures are in ``bench/README.md``):

- CPython 3.11's asyncio TLS transport reads into a 256 KiB buffer per connection
  (``SSLProtocol.max_size``), most of what a link costs. Our frames are small and websockets
  buffers messages itself, so 32 KiB per link is plenty.
- Full garbage collections walk every long-lived object (sessions, delivery state, cached
  objects), which sets the delivery latency tail at 10,000 nodes. Objects that survive a
  connection burst live as long as their session, so after a burst we collect once and move
  the survivors out of the collector's sight (``gc.freeze``); later garbage is still
  collected normally. The check runs every few seconds, so a fleet that just connected is
  frozen before updates flow, not after many full collections of all its links.
- Young-generation collections are triggered by the net number of containers allocated. An
  apply of 500 pods holds about 35 containers per pod at each stage (request body, stored
  copy, watch copy), so a low threshold sets off young and middle collections within every
  batch, each walking everything alive at the time. A threshold above a batch's transient
  objects lets them die before any collection runs.
- Frozen objects are never collected, so the links frozen after a burst must be let go of
  when they end: a session is a web of reference cycles (its task, its websocket, the
  exception that ended it), and a link that connected before a freeze and closed after it
  would stay in memory for good, growing cloudhub with every fleet outage. After enough links
  have closed since the last freeze, :class:`FreezePolicy` unfreezes, collects everything
  once and freezes what is left (logged with its duration, as it stops the loop for as long
  as the collection takes).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

#: bytes of TLS read buffer per connection (CPython's default is 256 KiB)
TLS_READ_BUFFER = 32 * 1024
#: young-generation threshold: fewer, larger young collections under message load
GC_THRESHOLD0 = 50_000
#: re-freeze after this many new connections since the last freeze
FREEZE_AFTER_CONNECTIONS = 500
#: unfreeze and collect after this many closed links since the last freeze, or after this
#: share of the links alive, whichever is larger: garbage frozen links leave is bounded by a
#: quarter of what the fleet holds, and a fleet losing a few links a minute is not fully
#: collected every few minutes
REFREEZE_AFTER_CLOSED = 500
REFREEZE_SHARE = 0.25
#: seconds between checks
FREEZE_CHECK_INTERVAL = 5.0

Decision = Literal["freeze", "refreeze"]


@dataclass
class FreezePolicy:
    """When to freeze the collector's long-lived objects, and when to let them go again.

    Pure: it sees counters, and :func:`freeze_after_bursts` does what it decides.
    """

    freeze_after: int = FREEZE_AFTER_CONNECTIONS
    refreeze_after: int = REFREEZE_AFTER_CLOSED
    refreeze_share: float = REFREEZE_SHARE
    #: links accepted / closed since start, as of the last freeze
    frozen_at_connections: int = 0
    frozen_at_closed: int = 0

    def decide(self, *, connections: int, closed: int, live: int) -> Decision | None:
        """``connections``/``closed``: links accepted / ended since start; ``live``: open now.

        ``refreeze`` (unfreeze, collect all, freeze) once enough links closed since the last
        freeze that the frozen ones among them matter; else ``freeze`` after a burst of new
        links; else nothing.
        """
        gone = closed - self.frozen_at_closed
        if gone >= max(self.refreeze_after, self.refreeze_share * live):
            decision: Decision = "refreeze"
        elif connections - self.frozen_at_connections >= self.freeze_after:
            decision = "freeze"
        else:
            return None
        self.frozen_at_connections = connections
        self.frozen_at_closed = closed
        return decision


def refreeze() -> tuple[int, float]:
    """Unfreeze, collect everything, freeze the survivors; (objects collected, seconds)."""
    start = time.perf_counter()
    gc.unfreeze()
    collected = gc.collect()
    gc.freeze()
    return collected, time.perf_counter() - start


def shrink_tls_read_buffer() -> None:
    """Give this process's asyncio TLS connections a :data:`TLS_READ_BUFFER` read buffer."""
    try:
        from asyncio import sslproto

        if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
            sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    except (ImportError, AttributeError):  # another Python: keep its defaults
        log.debug("asyncio TLS buffer size not tunable here")


def tune_process() -> None:
    """Apply the process-wide settings once, at start-up."""
    shrink_tls_read_buffer()
    _, t1, t2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, t1, t2)


async def freeze_after_bursts(
    connections: Callable[[], int],
    closed: Callable[[], int],
    live: Callable[[], int],
    *,
    policy: FreezePolicy | None = None,
    interval: float = FREEZE_CHECK_INTERVAL,
) -> None:
    """Forever: after each burst of new connections, collect once and freeze the survivors;
    after enough closed links, collect what the frozen ones left (:class:`FreezePolicy`).

    Args:
        connections, closed, live: links accepted since start, ended since start, open now.
    """
    policy = policy or FreezePolicy()
    while True:
        await asyncio.sleep(interval)
        gone = closed() - policy.frozen_at_closed
        decision = policy.decide(connections=connections(), closed=closed(), live=live())
        if decision == "freeze":
            gc.collect()
            gc.freeze()
            log.info(
                "froze %d long-lived objects after %d connections",
                gc.get_freeze_count(),
                connections(),
            )
        elif decision == "refreeze":
            collected, seconds = refreeze()
            log.info(
                "%d links closed since the last freeze: collected %d objects in %.2fs, "
                "froze %d long-lived objects",
                gone,
                collected,
                seconds,
                gc.get_freeze_count(),
            )
