"""A per-key pause after each send coalesces bursts even when ACKs come back at once."""

from __future__ import annotations

import itertools

from wire.delivery import Downstream

ids = itertools.count()


def ds(min_interval: float) -> Downstream:
    return Downstream(
        ack_timeout=5.0, window=16, min_interval=min_interval, new_id=lambda: str(next(ids))
    )


def test_first_change_after_quiet_goes_at_once() -> None:
    """With nothing sent recently, a change is sent on the first poll."""
    d = ds(0.05)
    d.start({}, {})
    d.update("default/configmap/c", "1", {})
    assert [o.resource_version for o in d.poll(10.0)] == ["1"]


def test_burst_within_interval_sends_only_the_newest_after_the_pause() -> None:
    """Versions arriving right after a send are held, then only the newest goes."""
    d = ds(0.05)
    d.start({}, {})
    d.update("k/configmap/c", "1", {})
    (first,) = d.poll(10.0)
    d.ack(first.msg_id)
    for v in range(2, 200):
        d.update("k/configmap/c", str(v), {})
        assert d.poll(10.0 + v * 0.0001) == []
    assert not d.ready
    deadline = d.next_deadline()
    assert deadline is not None and abs(deadline - 10.05) < 1e-9
    (second,) = d.poll(10.05)
    assert second.resource_version == "199"


def test_other_keys_are_not_held_back() -> None:
    """A key held by its pause does not delay a different key."""
    d = ds(0.05)
    d.start({}, {})
    d.update("a/configmap/x", "1", {})
    (x,) = d.poll(1.0)
    d.ack(x.msg_id)
    d.update("a/configmap/x", "2", {})
    d.update("a/configmap/y", "1", {})
    assert [o.key for o in d.poll(1.01)] == ["a/configmap/y"]


def test_zero_interval_keeps_old_behaviour() -> None:
    """Without a pause, every version after an ACK goes out immediately."""
    d = ds(0.0)
    d.start({}, {})
    for v in range(1, 5):
        d.update("k/configmap/c", str(v), {})
        (o,) = d.poll(1.0)
        d.ack(o.msg_id)
    assert d.edge == {"k/configmap/c": "4"}
