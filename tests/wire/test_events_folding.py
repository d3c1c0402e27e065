"""Events fold repeats into one counted event and are kept for a bounded time and number."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from wire.events import Event, EventLog, ObjectReference, fold_all, keep, new_event

NODE = ObjectReference(kind="Node", name="edge-1")


def _ev(reason: str, at: float, name: str = "edge-1") -> Event:
    return new_event(NODE.model_copy(update={"name": name}), reason=reason, message=reason, at=at)


def test_repeats_share_a_name_and_fold_into_one_count() -> None:
    """The same happening twice is one event with count 2 spanning both times."""
    first, again = _ev("NodeReady", 1000), _ev("NodeReady", 1060)
    assert first.metadata.name == again.metadata.name
    [folded] = fold_all([first, again])
    assert folded.count == 2
    assert folded.first_timestamp == first.first_timestamp
    assert folded.last_timestamp == again.last_timestamp


def test_different_reasons_are_different_events() -> None:
    """Online and offline of one node are two events."""
    assert len(fold_all([_ev("NodeReady", 1), _ev("NodeNotReady", 2)])) == 2


def test_shape_is_a_core_v1_event() -> None:
    """The object has the fields kubectl reads, camelCased, and lives in default for nodes."""
    obj = _ev("NodeReady", 0).to_object()
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Event"
    assert obj["involvedObject"] == {"kind": "Node", "name": "edge-1"}
    assert obj["metadata"]["namespace"] == "default"
    assert obj["firstTimestamp"] == "1970-01-01T00:00:00Z"
    assert obj["source"] == {"component": "edgebridge-cloudhub"}
    assert Event.model_validate(obj) == _ev("NodeReady", 0)


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5000)), max_size=60))
def test_log_counts_every_occurrence_within_bounds(seq: list[tuple[str, int]]) -> None:
    """Counts add up to the occurrences kept; age and count caps hold; list is by last seen."""
    log = EventLog(retention=1000, max_events=2)
    now = 0.0
    for name, at in sorted(seq, key=lambda p: p[1]):
        now = float(at)
        log.record(_ev("R", now, name), now=now)
    log.prune(now=now)
    kept = log.list()
    assert len(kept) <= 2
    assert [e.last_timestamp for e in kept] == sorted(e.last_timestamp for e in kept)
    assert all(e.last_timestamp >= _ev("R", now - 1000).last_timestamp for e in kept)
    assert sum(e.count for e in kept) <= len(seq)
    assert keep(kept, now=now, retention=1000, max_events=2) == kept


def test_list_filters_by_involved_object() -> None:
    """Kind matches in any case or plural; name and namespace exactly."""
    log = EventLog()
    log.record(_ev("NodeReady", 10), now=10)
    log.record(_ev("NodeReady", 10, name="edge-2"), now=10)
    assert [e.involved_object.name for e in log.list(kind="nodes", name="edge-2")] == ["edge-2"]
    assert log.list(kind="Pod") == []
    assert len(log.list(namespace="default")) == 2
