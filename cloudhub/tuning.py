"""Process-level tuning for a cloudhub that holds thousands of TLS websockets.

Measured with ``bench/hub_scale.py`` at 10,000 nodes on a 2-core box:

- CPython 3.11's asyncio TLS transport reads into a 256 KiB buffer per connection
  (``SSLProtocol.max_size``): about 225 of the 315 KiB each link cost. Our frames are small
  and websockets buffers messages itself, so 32 KiB per link is plenty; memory per node drops
  to about a third.
- Full garbage collections walk every long-lived object (sessions, delivery state, cached
  objects) and took 1-2 s at 10,000 nodes, which set the delivery latency tail. Objects that
  survive a connection burst live as long as their session, so after a burst we collect once
  and move the survivors out of the collector's sight (``gc.freeze``); later garbage is still
  collected normally. The check runs every few seconds: checked every 30 s, a fleet that had
  just connected went through full collections of all its links for up to half a minute
  (0.3-0.5 s each at 3,000 nodes) while updates flowed.
- Young-generation collections are triggered by the net number of containers allocated. An
  apply of 500 pods holds about 35 containers per pod at each stage (request body, stored
  copy, watch copy), so at a threshold of 10,000 every batch set off a couple of young
  collections and, every ten of those, a middle one, each walking everything alive at the
  time: about 35 us of CPU per pod update at 3,000 nodes. At 50,000 a batch's transient
  objects are gone before the threshold is reached, and the collections nearly vanish
  (one young collection, ~25 ms, per 20,000 updates).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: bytes of TLS read buffer per connection (CPython's default is 256 KiB)
TLS_READ_BUFFER = 32 * 1024
#: young-generation threshold: fewer, larger young collections under message load
GC_THRESHOLD0 = 50_000
#: re-freeze after this many new connections since the last freeze
FREEZE_AFTER_CONNECTIONS = 500
#: seconds between checks
FREEZE_CHECK_INTERVAL = 5.0


def tune_process() -> None:
    """Apply the process-wide settings once, at start-up."""
    try:
        from asyncio import sslproto

        if getattr(sslproto.SSLProtocol, "max_size", 0) > TLS_READ_BUFFER:
            sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    except (ImportError, AttributeError):  # another Python: keep its defaults
        log.debug("asyncio TLS buffer size not tunable here")
    _, t1, t2 = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD0, t1, t2)


async def freeze_after_bursts(connections: Callable[[], int]) -> None:
    """Forever: after each burst of new connections, collect once and freeze the survivors."""
    frozen_at = 0
    while True:
        await asyncio.sleep(FREEZE_CHECK_INTERVAL)
        now = connections()
        if now - frozen_at >= FREEZE_AFTER_CONNECTIONS:
            gc.collect()
            gc.freeze()
            log.info("froze %d long-lived objects after %d connections", gc.get_freeze_count(), now)
            frozen_at = now
