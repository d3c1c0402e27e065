"""ACK deadlines, retries, stale ACKs and the in-flight window, driven by explicit time."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from wire.delivery import DEFAULT_ACK_TIMEOUT, DEFAULT_WINDOW, Downstream

KEY = "default/pod/a"


def _ds(**kwargs: Any) -> Downstream:
    counter = itertools.count()
    return Downstream(new_id=lambda: f"m{next(counter)}", **kwargs)


def test_defaults_match_kubeedge_retry_and_a_bounded_window() -> None:
    """The default ACK timeout is KubeEdge's 5 s and the window is bounded."""
    ds = Downstream()
    assert ds.ack_timeout == DEFAULT_ACK_TIMEOUT == 5.0
    assert ds.window == DEFAULT_WINDOW == 256


def test_no_retry_before_the_deadline() -> None:
    """Nothing is resent while the ACK deadline has not passed."""
    ds = _ds(ack_timeout=5.0)
    ds.start({}, {KEY: ("1", {})})
    ds.poll(now=100.0)
    assert ds.next_deadline() == pytest.approx(105.0)
    assert ds.poll(now=104.999) == []


def test_retry_at_deadline_resends_with_a_new_id() -> None:
    """At the deadline the key goes out again, flagged retry, under a new msg_id."""
    ds = _ds(ack_timeout=5.0)
    ds.start({}, {KEY: ("1", {"x": 1})})
    [first] = ds.poll(now=0.0)
    [again] = ds.poll(now=5.0)
    assert again.retry
    assert again.msg_id != first.msg_id
    assert again.resource_version == "1" and again.content == {"x": 1}
    assert again.insert
    assert ds.retries == 1 and ds.sent == 2
    assert ds.next_deadline() == pytest.approx(10.0)


def test_retry_sends_the_newest_version() -> None:
    """A retry carries the newest wanted version, not the one that timed out."""
    ds = _ds(ack_timeout=5.0)
    ds.start({KEY: "1"}, {KEY: ("2", {"v": 2})})
    [first] = ds.poll(now=0.0)
    assert first.resource_version == "2"
    ds.update(KEY, "3", {"v": 3})
    [again] = ds.poll(now=6.0)
    assert again.retry
    assert again.resource_version == "3" and again.content == {"v": 3}
    assert not again.insert
    assert ds.ack(again.msg_id)
    assert ds.edge == {KEY: "3"}
    assert ds.poll(now=7.0) == []


def test_stale_ack_is_ignored() -> None:
    """The ACK of a message that was superseded by a retry changes nothing."""
    ds = _ds(ack_timeout=5.0)
    ds.start({KEY: "1"}, {KEY: ("2", {})})
    [first] = ds.poll(now=0.0)
    ds.update(KEY, "3", {})
    [again] = ds.poll(now=5.0)
    assert not ds.ack(first.msg_id)
    assert ds.edge == {KEY: "1"}
    assert ds.in_flight == 1
    assert ds.ack(again.msg_id)
    assert ds.edge == {KEY: "3"}


def test_unknown_and_duplicate_acks_return_false() -> None:
    """ACKs for ids never sent, or ACKed already, are refused."""
    ds = _ds()
    ds.start({}, {KEY: ("1", {})})
    [o] = ds.poll(now=0.0)
    assert not ds.ack("never-sent")
    assert ds.ack(o.msg_id)
    assert not ds.ack(o.msg_id)


def test_acked_message_is_not_retried() -> None:
    """After the ACK there is no deadline and no retry."""
    ds = _ds(ack_timeout=1.0)
    ds.start({}, {KEY: ("1", {})})
    [o] = ds.poll(now=0.0)
    ds.ack(o.msg_id)
    assert ds.next_deadline() is None
    assert ds.poll(now=100.0) == []


def test_next_deadline_is_the_earliest_flight() -> None:
    """next_deadline() is the smallest deadline among the messages in flight."""
    ds = _ds(ack_timeout=5.0)
    ds.start({}, {})
    assert ds.next_deadline() is None
    ds.update("default/pod/a", "1", {})
    ds.poll(now=1.0)
    ds.update("default/pod/b", "1", {})
    ds.poll(now=3.0)
    assert ds.next_deadline() == pytest.approx(6.0)


def test_window_bounds_messages_in_flight() -> None:
    """No more than window messages are in flight; ACKs open room for the rest."""
    ds = _ds(window=3)
    desired: dict[str, tuple[str, Any]] = {f"default/pod/p{i}": ("1", {}) for i in range(10)}
    ds.start({}, desired)
    first = ds.poll(now=0.0)
    assert len(first) == 3 and ds.in_flight == 3
    assert ds.poll(now=0.1) == []
    assert not ds.ready
    ds.ack(first[0].msg_id)
    assert ds.ready
    second = ds.poll(now=0.2)
    assert len(second) == 1 and ds.in_flight == 3
    sent = [o.key for o in first + second]
    outstanding = [o.msg_id for o in first[1:] + second]
    while outstanding:
        for msg_id in outstanding:
            assert ds.ack(msg_id)
        batch = ds.poll(now=0.3)
        assert len(batch) <= 3 and ds.in_flight <= 3
        sent += [o.key for o in batch]
        outstanding = [o.msg_id for o in batch]
    assert sorted(sent) == sorted(desired), "each key sent exactly once"
    assert ds.edge == {k: "1" for k in desired}


def test_retries_do_not_exceed_the_window() -> None:
    """Retries replace their own flights, so a full window stays full, not over."""
    ds = _ds(window=2, ack_timeout=1.0)
    ds.start({}, {f"default/pod/p{i}": ("1", {}) for i in range(5)})
    assert len(ds.poll(now=0.0)) == 2
    again = ds.poll(now=1.0)
    assert len(again) == 2 and all(o.retry for o in again)
    assert ds.in_flight == 2
