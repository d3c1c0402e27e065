"""Downstream keeps its earliest deadline: retries and releases found without a scan, exactly."""

from __future__ import annotations

import itertools

from wire.delivery import Downstream


def _ds(**kw: float) -> Downstream:
    counter = itertools.count()
    ds = Downstream(ack_timeout=5.0, window=8, new_id=lambda: f"m{next(counter)}", **kw)
    ds.start({}, {})
    return ds


def test_an_unacked_flight_is_retried_once_after_many_acked_ones() -> None:
    """One message never ACKed while thousands of others are: its deadline stays the earliest
    and it is retried once, alone, when it passes."""
    ds = _ds()
    ds.update("ns/configmap/stuck", "1", {})
    (stuck,) = ds.poll(0.0)
    for i in range(3000):
        now = 1.0 + i / 1000
        ds.update(f"ns/pod/p{i}", "1", {})
        (out,) = ds.poll(now)
        assert ds.next_deadline() == 5.0
        assert ds.ack(out.msg_id)
    assert ds.poll(4.9) == []
    (retry,) = ds.poll(5.0)
    assert (retry.key, retry.retry) == ("ns/configmap/stuck", True)
    assert ds.next_deadline() == 10.0
    assert not ds.ack(stuck.msg_id), "the first message's ACK is stale once it was sent again"
    assert ds.ack(retry.msg_id)
    assert ds.next_deadline() is None


def test_retries_come_in_deadline_order_and_each_once() -> None:
    """Messages sent at different times time out in that order; none is sent twice."""
    ds = _ds()
    for i in range(5):
        ds.update(f"ns/pod/p{i}", "1", {})
        ds.poll(float(i))
    out = ds.poll(20.0)
    assert [o.key for o in out] == [f"ns/pod/p{i}" for i in range(5)]
    assert all(o.retry for o in out)
    assert ds.next_deadline() == 25.0


def test_a_key_is_held_only_within_min_interval_of_its_last_send() -> None:
    """With a pause, a key sent long ago goes at once while one sent a moment ago waits."""
    ds = _ds(min_interval=1.0)
    ds.update("ns/pod/old", "1", {})
    (old,) = ds.poll(0.0)
    ds.ack(old.msg_id)
    ds.update("ns/pod/new", "1", {})
    (new,) = ds.poll(0.8)
    ds.ack(new.msg_id)
    ds.update("ns/pod/old", "2", {})
    ds.update("ns/pod/new", "2", {})
    (out,) = ds.poll(1.5)
    assert out.key == "ns/pod/old"
    assert ds.next_deadline() == 1.8
    (out,) = ds.poll(1.8)
    assert out.key == "ns/pod/new"
