"""Rate bounds shared by cloud and edge (pure: the caller passes the clock)."""

from __future__ import annotations


class TokenBucket:
    """A token bucket that goes into debt instead of refusing.

    ``reserve(cost, now)`` always succeeds and returns how long the caller should wait before
    doing the work, so that over time no more than ``rate`` units per second pass, with bursts
    of up to ``burst``. A ``rate`` of 0 (or less) means unlimited.
    """

    def __init__(self, *, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 0.0)
        self._tokens = self.burst
        self._last = now

    def wait(self, cost: float, now: float) -> float:
        """Seconds :meth:`reserve` would ask to wait for ``cost`` now, spending nothing."""
        if self.rate <= 0:
            return 0.0
        elapsed = max(0.0, now - self._last)
        tokens = min(self.burst, self._tokens + elapsed * self.rate) - cost
        return 0.0 if tokens >= 0 else -tokens / self.rate

    def reserve(self, cost: float, now: float) -> float:
        """Spend ``cost``; seconds to wait before acting (0 while within the budget)."""
        if self.rate <= 0:
            return 0.0
        elapsed = max(0.0, now - self._last)
        self._last = max(self._last, now)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._tokens -= cost
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate
