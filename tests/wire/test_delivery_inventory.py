"""On (re)connect the cloud sends only the difference between inventory and desired state."""

from __future__ import annotations

import itertools
from typing import Any

from wire.delivery import Downstream, Outgoing


def _ids() -> Any:
    counter = itertools.count()
    return lambda: f"m{next(counter)}"


def _desired(n: int, rv: str = "1") -> dict[str, tuple[str, Any]]:
    return {f"default/configmap/c{i}": (rv, {"name": f"c{i}", "rv": rv}) for i in range(n)}


def _by_key(out: list[Outgoing]) -> dict[str, Outgoing]:
    by_key = {o.key: o for o in out}
    assert len(by_key) == len(out), "a key was sent twice in one poll"
    return by_key


def test_inventory_diff_sends_only_changes_and_deletes() -> None:
    """1000 cached, 10 changed, 5 gone, 3 new: exactly 10 updates, 5 deletes, 3 inserts."""
    inventory = {f"default/configmap/c{i}": "1" for i in range(1000)}
    desired = _desired(1000)
    for i in range(10):
        desired[f"default/configmap/c{i}"] = ("2", {"changed": i})
    for i in range(995, 1000):
        del desired[f"default/configmap/c{i}"]
    for i in range(3):
        desired[f"default/pod/new{i}"] = ("9", {"new": i})

    ds = Downstream(new_id=_ids())
    ds.start(inventory, desired, stub=lambda key: {"stub": key})
    out = _by_key(ds.poll(now=0.0))

    updates = {k for k, o in out.items() if o.resource_version == "2"}
    deletes = {k for k, o in out.items() if o.resource_version is None}
    inserts = {k for k, o in out.items() if o.insert}
    assert updates == {f"default/configmap/c{i}" for i in range(10)}
    assert deletes == {f"default/configmap/c{i}" for i in range(995, 1000)}
    assert inserts == {f"default/pod/new{i}" for i in range(3)}
    assert len(out) == 18
    assert all(not out[k].insert for k in updates | deletes)
    assert out["default/configmap/c0"].content == {"changed": 0}
    assert out["default/configmap/c999"].content == {"stub": "default/configmap/c999"}
    assert not any(o.retry for o in out.values())
    assert ds.sent == 18


def test_inventory_equal_to_desired_sends_nothing() -> None:
    """An edge that already has everything gets no message at all."""
    ds = Downstream(new_id=_ids())
    desired = _desired(1000)
    ds.start({k: rv for k, (rv, _) in desired.items()}, desired)
    assert ds.poll(now=0.0) == []
    assert ds.backlog == 0
    assert not ds.ready
    assert ds.next_deadline() is None


def test_no_inventory_sends_all_desired_and_deletes_nothing() -> None:
    """A stock edgecore (inventory None) gets every desired object as an insert."""
    ds = Downstream(new_id=_ids())
    desired = _desired(50)
    ds.start(None, desired)
    out = _by_key(ds.poll(now=0.0))
    assert set(out) == set(desired)
    assert all(o.insert and o.resource_version == "1" for o in out.values())
    assert ds.edge == {}


def test_empty_inventory_is_not_the_same_as_none() -> None:
    """An empty inventory also sends everything, as inserts."""
    ds = Downstream(new_id=_ids())
    ds.start({}, _desired(3))
    assert {o.key for o in ds.poll(now=0.0)} == set(_desired(3))


def test_resource_versions_compare_for_equality_only() -> None:
    """An older-looking resourceVersion is still sent: versions are opaque strings."""
    ds = Downstream(new_id=_ids())
    ds.start({"default/pod/a": "10"}, {"default/pod/a": ("9", {})})
    [o] = ds.poll(now=0.0)
    assert o.resource_version == "9"


def test_restart_forgets_the_previous_session() -> None:
    """start() drops flights and wanted keys of the previous connection."""
    ds = Downstream(new_id=_ids())
    ds.start(None, _desired(5))
    first = ds.poll(now=0.0)
    ds.start({"default/configmap/c0": "1"}, {"default/configmap/c0": ("1", {})})
    assert ds.in_flight == 0
    assert ds.poll(now=100.0) == []
    assert not ds.ack(first[0].msg_id), "an ACK from the old connection must be stale"


def test_acks_after_start_record_the_edge_state() -> None:
    """Once every diff message is ACKed, edge equals the desired versions."""
    ds = Downstream(new_id=_ids())
    desired = _desired(20, rv="3")
    ds.start({"default/configmap/c0": "1", "default/pod/old": "1"}, desired)
    for o in ds.poll(now=0.0):
        assert ds.ack(o.msg_id)
    assert ds.edge == {k: rv for k, (rv, _) in desired.items()}
    assert ds.backlog == 0
