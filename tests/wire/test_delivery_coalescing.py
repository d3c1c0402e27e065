"""Latest wins per key: one message in flight per key, newer versions replace each other."""

from __future__ import annotations

import itertools
from typing import Any

from wire.delivery import Downstream

KEY = "default/configmap/hot"


def _ds(**kwargs: Any) -> Downstream:
    counter = itertools.count()
    return Downstream(new_id=lambda: f"m{next(counter)}", **kwargs)


def test_updates_while_in_flight_coalesce_to_the_newest() -> None:
    """2000 updates during one flight cost exactly one more send, carrying the newest rv."""
    ds = _ds()
    ds.start({}, {KEY: ("0", {"v": 0})})
    [first] = ds.poll(now=0.0)
    for v in range(1, 2001):
        ds.update(KEY, str(v), {"v": v})
        assert ds.poll(now=0.1) == []
    assert ds.backlog == 1
    assert ds.ack(first.msg_id)
    [second] = ds.poll(now=0.2)
    assert second.key == KEY
    assert second.resource_version == "2000"
    assert second.content == {"v": 2000}
    assert not second.insert and not second.retry
    assert ds.ack(second.msg_id)
    assert ds.poll(now=0.3) == []
    assert ds.edge == {KEY: "2000"}
    assert ds.sent == 2


def test_updates_before_poll_coalesce() -> None:
    """Versions that replace each other before any poll go out once, as the newest."""
    ds = _ds()
    ds.start({}, {})
    for v in range(100):
        ds.update(KEY, str(v), v)
    [o] = ds.poll(now=0.0)
    assert o.resource_version == "99"
    assert o.insert


def test_update_to_the_version_the_edge_has_is_dropped() -> None:
    """An update back to what the edge already has cancels the pending one."""
    ds = _ds()
    ds.start({KEY: "1"}, {KEY: ("1", {})})
    ds.update(KEY, "2", {})
    ds.update(KEY, "1", {})
    assert ds.poll(now=0.0) == []
    assert ds.backlog == 0


def test_update_back_to_acked_version_while_in_flight_is_resolved_by_the_ack() -> None:
    """If the in-flight version turns out to be the newest again, nothing more is sent."""
    ds = _ds()
    ds.start({KEY: "1"}, {KEY: ("2", {})})
    [o] = ds.poll(now=0.0)
    ds.update(KEY, "3", {})
    ds.update(KEY, "2", {})
    assert ds.ack(o.msg_id)
    assert ds.poll(now=0.1) == []
    assert ds.edge == {KEY: "2"}


def test_remove_while_in_flight_sends_delete_after_ack() -> None:
    """A key unbound while its insert is in flight is deleted once the insert is ACKed."""
    ds = _ds()
    ds.start({}, {KEY: ("1", {})})
    [ins] = ds.poll(now=0.0)
    ds.remove(KEY, {"stub": True})
    assert ds.poll(now=0.1) == []
    assert ds.ack(ins.msg_id)
    [dele] = ds.poll(now=0.2)
    assert dele.resource_version is None
    assert dele.content == {"stub": True}
    assert not dele.insert
    assert ds.ack(dele.msg_id)
    assert ds.edge == {}


def test_remove_of_unknown_key_is_a_noop() -> None:
    """Removing a key the edge never had sends nothing."""
    ds = _ds()
    ds.start({}, {})
    ds.remove("default/pod/ghost", None)
    assert ds.poll(now=0.0) == []
    assert ds.backlog == 0


def test_remove_cancels_a_pending_insert() -> None:
    """Add then remove before any poll: the edge never hears of the key."""
    ds = _ds()
    ds.start({}, {})
    ds.update(KEY, "1", {})
    ds.remove(KEY, {})
    assert ds.poll(now=0.0) == []


def test_ack_of_delete_removes_the_key_from_edge() -> None:
    """The edge's ACK of a delete drops the key from the recorded edge state."""
    ds = _ds()
    ds.start({KEY: "1", "default/pod/keep": "1"}, {"default/pod/keep": ("1", {})})
    [dele] = ds.poll(now=0.0)
    assert dele.key == KEY and dele.resource_version is None
    assert KEY in ds.edge, "not removed before the ACK"
    assert ds.ack(dele.msg_id)
    assert ds.edge == {"default/pod/keep": "1"}


def test_readd_after_delete_in_flight_is_an_insert() -> None:
    """A key re-bound while its delete is in flight is re-inserted after the delete's ACK."""
    ds = _ds()
    ds.start({KEY: "1"}, {})
    [dele] = ds.poll(now=0.0)
    ds.update(KEY, "1", {"back": True})
    assert ds.poll(now=0.1) == []
    assert ds.ack(dele.msg_id)
    [ins] = ds.poll(now=0.2)
    assert ins.insert and ins.resource_version == "1"
    assert ds.ack(ins.msg_id)
    assert ds.edge == {KEY: "1"}


def test_ready_and_backlog_track_pending_work() -> None:
    """ready is true only when something can go out now; backlog counts wanted and in flight."""
    ds = _ds()
    ds.start({}, {})
    assert not ds.ready and ds.backlog == 0
    ds.update(KEY, "1", {})
    assert ds.ready and ds.backlog == 1
    [o] = ds.poll(now=0.0)
    assert not ds.ready and ds.backlog == 1
    ds.update(KEY, "2", {})
    assert not ds.ready, "the newer version waits for the ACK"
    assert ds.backlog == 1
    ds.ack(o.msg_id)
    assert ds.ready


def test_update_back_to_edge_version_while_another_is_in_flight_is_sent() -> None:
    """Edge has 1, 2 is in flight, desired goes back to 1: after the ACK of 2, 1 goes out."""
    ds = _ds()
    ds.start({KEY: "1"}, {KEY: ("2", {"v": 2})})
    [o] = ds.poll(now=0.0)
    ds.update(KEY, "1", {"v": 1})
    assert ds.ack(o.msg_id)
    [back] = ds.poll(now=0.1)
    assert back.resource_version == "1" and back.content == {"v": 1}
    assert ds.ack(back.msg_id)
    assert ds.edge == {KEY: "1"}


def test_remove_while_insert_in_flight_after_reconnect_sends_delete() -> None:
    """A key not on the edge but in flight is deleted after its ACK, not forgotten."""
    ds = _ds()
    ds.start({}, {})
    ds.update(KEY, "1", {})
    [o] = ds.poll(now=0.0)
    ds.remove(KEY, {"stub": True})
    assert ds.backlog == 1
    ds.ack(o.msg_id)
    [dele] = ds.poll(now=0.1)
    assert dele.resource_version is None
