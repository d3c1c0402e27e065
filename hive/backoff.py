"""Jittered, capped exponential backoff, pure.

KubeEdge's edgehub sleeps a fixed 30 s after a lost link. We start under a second, double, cap,
and jitter every delay ("equal jitter": half fixed, half random) so a fleet that lost the cloud
at the same moment does not come back at the same moment.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

DEFAULT_INITIAL = 0.5
DEFAULT_FACTOR = 2.0
DEFAULT_CAP = 30.0


def backoff(
    *,
    initial: float = DEFAULT_INITIAL,
    factor: float = DEFAULT_FACTOR,
    cap: float = DEFAULT_CAP,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Yield delays: the n-th lies in ``[d/2, d]`` with ``d = min(cap, initial * factor**n)``.

    With the defaults the first delay is 0.25-0.5 s and no delay exceeds 30 s.
    """
    rand = rng or random.Random()
    ceiling = initial
    while True:
        d = min(cap, ceiling)
        yield d / 2 + rand.uniform(0, d / 2)
        ceiling = min(cap, ceiling * factor)
