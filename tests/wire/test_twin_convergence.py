"""One order for every side: the edge merge, the uplink merge and the cloud merge agree.

The same twin updates, delivered in any order and any number of times, must leave the edge's
twin (:func:`wire.twin.merge_all`), the edge's merged upstream message
(:func:`edgecore.devicetwin.uplink.merge_property`) and the cloud's ``Device.status``
(:func:`cloudhub.devicecontroller.twins.merge_report`) holding the same values and versions.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudhub.devicecontroller.twins import merge_report, parse_twin_report
from edgecore.devicetwin.uplink import merge_property
from wire.twin import Twin, TwinValue, json_side, merge_all, twin_json

PROP = "setpoint"

values = st.builds(
    TwinValue,
    value=st.sampled_from(["20", "21.5", "22", ""]),
    cloud=st.integers(min_value=0, max_value=3),
    edge=st.integers(min_value=0, max_value=3),
    timestamp=st.integers(min_value=1, max_value=4),
)
tombstones = st.builds(
    lambda cloud, edge, ts: TwinValue(None, cloud, edge, ts, deleted=True),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=1, max_value=4),
)
updates = st.lists(
    st.builds(
        Twin,
        expected=st.one_of(st.none(), values, tombstones),
        actual=st.one_of(st.none(), values),
    ).filter(lambda t: t.expected is not None or t.actual is not None),
    min_size=1,
    max_size=8,
)


def _report(twin: Twin) -> Any:
    """What the edge sends upstream for ``twin`` (its own builder), as the cloud parses it."""
    body = {"event_id": "e", "timestamp": 9, "twin": {PROP: twin_json(twin, type_="float")}}
    return parse_twin_report(body)


def _status_side(twins: list[dict[str, Any]], key: str) -> tuple[Any, ...] | None:
    for t in twins:
        if t.get("propertyName") == PROP and key in t:
            entry = t[key]
            meta = entry["metadata"]
            removed = meta.get("removed") == "true"
            return (
                None if removed else entry["value"],
                int(meta["cloudVersion"]),
                int(meta["edgeVersion"]),
                int(meta["timestamp"]),
                removed,
            )
    return None


def _side(v: TwinValue | None) -> tuple[Any, ...] | None:
    return None if v is None else (v.value, v.cloud, v.edge, v.timestamp, v.deleted)


@given(updates=updates, seed=st.integers(), dup=st.integers(min_value=0, max_value=3))
def test_edge_uplink_and_cloud_merges_agree(updates: list[Twin], seed: int, dup: int) -> None:
    """Shuffled and duplicated, the updates end in the same twin on the edge and in the cloud."""
    rnd = random.Random(seed)
    delivered = updates + [rnd.choice(updates) for _ in range(dup)]
    rnd.shuffle(delivered)

    edge = merge_all(delivered)

    upstream: dict[str, Any] | None = None
    for twin in delivered:
        upstream = merge_property(upstream, twin_json(twin, type_="float"))
    assert upstream is not None

    status: list[dict[str, Any]] = []
    for twin in delivered:
        status = merge_report(status, _report(twin))

    assert _side(json_side(upstream, "actual")) == _side(edge.actual)
    assert _side(json_side(upstream, "expected")) == _side(edge.expected)
    assert _status_side(status, "reported") == _side(edge.actual)
    assert _status_side(status, "observedDesired") == _side(edge.expected)

    # and a second delivery order gives the same cloud status
    again = list(delivered)
    rnd.shuffle(again)
    other: list[dict[str, Any]] = []
    for twin in again:
        other = merge_report(other, _report(twin))
    assert other == status


def test_state_reason_is_optional_and_bounded() -> None:
    """A state/update may say why (``reason``); the edge forwards it, and refuses an essay."""
    import pytest
    from pydantic import ValidationError

    from wire.twin import MAX_REASON, StateIn, StateUpdateIn, state_out

    req = StateUpdateIn.model_validate({"state": "offline", "reason": "modbus 10.0.0.5: refused"})
    content = state_out("e", 1, req.state, req.reason)
    assert StateIn.model_validate(content).reason == "modbus 10.0.0.5: refused"
    assert "reason" not in state_out("e", 1, "online")
    with pytest.raises(ValidationError):
        StateUpdateIn.model_validate({"state": "offline", "reason": "x" * (MAX_REASON + 1)})
