"""Keepalive and half-open link detection, pure.

KubeEdge's edge has no read deadline, so a half-open TCP link (peer silent, socket still up)
goes unnoticed for 10-20 minutes. Here both sides run the same rule: the edge sends a keepalive
every ``interval``; the cloud answers each one; either side declares the link dead when it has
received nothing for ``2 * interval``. A frozen link is therefore noticed within two heartbeats
on both sides.
"""

from __future__ import annotations

#: KubeEdge's edgehub heartbeat is 15 s; we default lower so half-open links die in 20 s.
DEFAULT_HEARTBEAT = 10.0


class Liveness:
    """Tracks when we last heard from and spoke to the peer."""

    def __init__(self, *, interval: float, now: float, timeout: float | None = None) -> None:
        if interval <= 0:
            raise ValueError("heartbeat interval must be positive")
        self.interval = interval
        self.timeout = timeout if timeout is not None else 2 * interval
        self.last_received = now
        self.last_keepalive = now

    def received(self, now: float) -> None:
        """Any frame from the peer counts as a sign of life."""
        self.last_received = now

    def keepalive_sent(self, now: float) -> None:
        self.last_keepalive = now

    def keepalive_due(self, now: float) -> bool:
        return now - self.last_keepalive >= self.interval

    def expired(self, now: float) -> bool:
        """Nothing received for longer than the timeout: treat the link as dead."""
        return now - self.last_received > self.timeout

    def next_deadline(self, *, sending: bool) -> float:
        """When to look again: the next keepalive (if we send them) or the expiry."""
        expiry = self.last_received + self.timeout
        if sending:
            return min(expiry, self.last_keepalive + self.interval)
        return expiry
