"""Reconnect delays start under a second, grow, stay capped, and are jittered."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

from hypothesis import given
from hypothesis import strategies as st

from hive.backoff import DEFAULT_CAP, DEFAULT_FACTOR, DEFAULT_INITIAL, backoff


def _take(n: int, delays: Iterator[float]) -> list[float]:
    return list(itertools.islice(delays, n))


def test_first_delay_is_under_a_second() -> None:
    """With the defaults the first delay is 0.25-0.5 s, far below KubeEdge's 30 s."""
    for seed in range(200):
        [first] = _take(1, backoff(rng=random.Random(seed)))
        assert 0.25 <= first <= 0.5 < 1.0


def test_defaults() -> None:
    """Defaults: start at 0.5 s, double, cap at 30 s."""
    assert (DEFAULT_INITIAL, DEFAULT_FACTOR, DEFAULT_CAP) == (0.5, 2.0, 30.0)


def test_delays_never_exceed_the_cap() -> None:
    """However long the outage, no delay is longer than the cap."""
    delays = _take(1000, backoff(rng=random.Random(1)))
    assert max(delays) <= DEFAULT_CAP
    assert min(delays[20:]) >= DEFAULT_CAP / 2, "late delays sit in [cap/2, cap]"


@given(
    initial=st.floats(min_value=0.001, max_value=10.0),
    factor=st.floats(min_value=1.0, max_value=10.0),
    cap=st.floats(min_value=0.001, max_value=100.0),
    seed=st.integers(),
)
def test_nth_delay_lies_in_half_to_full_ceiling(
    initial: float, factor: float, cap: float, seed: int
) -> None:
    """The n-th delay lies in [d/2, d] with d = min(cap, initial * factor**n)."""
    for n, delay in enumerate(
        _take(30, backoff(initial=initial, factor=factor, cap=cap, rng=random.Random(seed)))
    ):
        d = min(cap, initial * factor**n)
        assert d / 2 * (1 - 1e-9) <= delay <= d * (1 + 1e-9), (n, delay, d)


def test_ceiling_grows_geometrically_until_the_cap() -> None:
    """Each delay's ceiling doubles: 0.5, 1, 2, 4 ... then stays at the cap."""
    delays = _take(12, backoff(rng=random.Random(7)))
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]
    for delay, d in zip(delays, ceilings, strict=True):
        assert d / 2 <= delay <= d


def test_jitter_spreads_a_fleet() -> None:
    """Generators with different randomness give different delays for the same attempt."""
    firsts = {_take(1, backoff(rng=random.Random(seed)))[0] for seed in range(100)}
    assert len(firsts) > 90
    assert max(firsts) - min(firsts) > 0.1


def test_jitter_varies_between_attempts() -> None:
    """Once capped, successive delays still differ."""
    capped = _take(100, backoff(rng=random.Random(3)))[10:]
    assert len(set(capped)) > 80


def test_same_seed_gives_the_same_sequence() -> None:
    """An injected rng makes the sequence reproducible in tests."""
    assert _take(20, backoff(rng=random.Random(42))) == _take(20, backoff(rng=random.Random(42)))


def test_without_rng_each_generator_is_independent() -> None:
    """Two default generators do not produce the same delays (no shared seed)."""
    assert _take(10, backoff()) != _take(10, backoff())
