"""Keepalive timing and half-open link detection, driven by explicit time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.liveness import DEFAULT_HEARTBEAT, Liveness


def test_default_heartbeat_is_below_kubeedge() -> None:
    """The default heartbeat is 10 s, so a half-open link dies within 20 s."""
    assert DEFAULT_HEARTBEAT == 10.0


def test_timeout_defaults_to_two_intervals() -> None:
    """Without an explicit timeout the link expires after two heartbeats of silence."""
    assert Liveness(interval=10.0, now=0.0).timeout == 20.0
    assert Liveness(interval=10.0, now=0.0, timeout=7.0).timeout == 7.0


@pytest.mark.parametrize("interval", [0.0, -1.0])
def test_non_positive_interval_is_refused(interval: float) -> None:
    """A heartbeat interval of zero or less is a programming error."""
    with pytest.raises(ValueError, match="positive"):
        Liveness(interval=interval, now=0.0)


def test_expires_after_two_intervals_of_silence() -> None:
    """Silence up to 2x interval is tolerated; beyond it the link is dead."""
    live = Liveness(interval=10.0, now=100.0)
    assert not live.expired(100.0)
    assert not live.expired(120.0)
    assert live.expired(120.001)


def test_any_receive_postpones_expiry() -> None:
    """Every frame heard restarts the silence clock."""
    live = Liveness(interval=10.0, now=0.0)
    live.received(15.0)
    assert not live.expired(35.0)
    assert live.expired(35.5)


def test_sending_keepalives_does_not_keep_the_link_alive() -> None:
    """Only what we receive counts: a peer that never answers is declared dead."""
    live = Liveness(interval=1.0, now=0.0)
    for t in (1.0, 2.0, 3.0):
        live.keepalive_sent(t)
    assert live.expired(2.5)


def test_keepalive_due_every_interval() -> None:
    """A keepalive is due one interval after the last one sent."""
    live = Liveness(interval=10.0, now=0.0)
    assert not live.keepalive_due(9.999)
    assert live.keepalive_due(10.0)
    live.keepalive_sent(10.0)
    assert not live.keepalive_due(19.0)
    assert live.keepalive_due(20.0)


def test_receiving_does_not_reset_keepalive_schedule() -> None:
    """Traffic from the peer does not postpone our own keepalives."""
    live = Liveness(interval=10.0, now=0.0)
    live.received(9.0)
    assert live.keepalive_due(10.0)


def test_next_deadline_for_a_sender_is_the_next_keepalive() -> None:
    """The side that sends keepalives wakes at the next keepalive, before expiry."""
    live = Liveness(interval=10.0, now=0.0)
    assert live.next_deadline(sending=True) == 10.0
    live.keepalive_sent(10.0)
    assert live.next_deadline(sending=True) == 20.0


def test_next_deadline_for_a_listener_is_expiry() -> None:
    """The side that only answers wakes when the silence would expire."""
    live = Liveness(interval=10.0, now=0.0)
    live.received(5.0)
    assert live.next_deadline(sending=False) == 25.0


def test_next_deadline_for_a_sender_is_expiry_when_that_is_sooner() -> None:
    """With keepalives just sent and a silent peer, expiry comes first."""
    live = Liveness(interval=10.0, now=0.0, timeout=3.0)
    assert live.next_deadline(sending=True) == 3.0


@given(
    interval=st.floats(min_value=0.01, max_value=1e4),
    start=st.floats(min_value=-1e6, max_value=1e6),
    silence=st.floats(min_value=0.0, max_value=1e5),
)
def test_expiry_is_exactly_past_the_timeout(interval: float, start: float, silence: float) -> None:
    """expired(now) holds exactly when more than the timeout passed since the last receive."""
    live = Liveness(interval=interval, now=start)
    now = start + silence
    assert live.expired(now) == (now - start > live.timeout)
    assert live.next_deadline(sending=False) == start + live.timeout
    assert live.next_deadline(sending=True) <= live.next_deadline(sending=False)
