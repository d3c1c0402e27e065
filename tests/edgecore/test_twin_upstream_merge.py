"""Upstream merging: rows waiting for one device go as ONE message, answered for all of them,
lossless for the cloud, and never lost when the link or the process goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.devicecontroller.twins import merge_report, parse_twin_report
from edgecore.devicetwin.store import NewOutboxRow, TwinStore, WriteSet
from edgecore.devicetwin.uplink import Uplink, merge_rows
from hive.bus import Bus
from tests.edgecore.test_twin_support import (
    DEV,
    TwinEdge,
    device,
    outbox_rows,
    report,
    running_edge,
    wait_until,
)

TWIN_RES = "default/device/thermostat-1/twin/edge_updated"


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[TwinEdge]:
    async with running_edge(tmp_path) as e:
        yield e


async def reports(edge: TwinEdge, *values: str, topic: str = DEV) -> None:
    for v in values:
        await edge.mqtt(f"{topic}/twin/update", report(temperature=v))
        await edge.published(f"{topic}/twin/update/result")


def value_of(content: dict[str, Any], side: str = "actual") -> str:
    return str(content["twin"]["temperature"][side]["value"])


# -- pure ------------------------------------------------------------------------------------


def _entry(side: str, value: str, cloud: int, edge: int, ts: int) -> dict[str, Any]:
    return {
        side: {"value": value, "metadata": {"timestamp": ts}},
        "metadata": {"type": "float"},
        f"{side}_version": {"cloud": cloud, "edge": edge},
    }


def _row(i: int, twin: dict[str, Any], resource: str = TWIN_RES) -> NewOutboxRow:
    return NewOutboxRow(
        f"row-{i}", resource, {"event_id": f"row-{i}", "timestamp": i, "twin": twin}, i
    )


def test_single_row_goes_as_it_is() -> None:
    """One waiting row is sent unchanged under its own id."""
    row = _row(1, {"temperature": _entry("actual", "1", 0, 5, 5)})
    assert merge_rows([row]) == ("row-1", row.content)


def test_rows_merge_to_the_newest_side_by_version() -> None:
    """Per property and side the greatest version wins, whatever the row order."""
    rows = [
        _row(1, {"temperature": _entry("actual", "new", 0, 9, 9)}),
        _row(
            2,
            {
                "temperature": _entry("actual", "old", 0, 3, 3),
                "setpoint": _entry("expected", "20", 2, 0, 1),
            },
        ),
    ]
    msg_id, content = merge_rows(rows)
    assert msg_id not in ("row-1", "row-2") and content["event_id"] == msg_id
    assert content["twin"]["temperature"]["actual"]["value"] == "new"
    assert content["twin"]["setpoint"]["expected"]["value"] == "20"


def test_state_rows_merge_to_the_latest() -> None:
    """Waiting ``state/update`` rows of one device go as the latest state."""
    res = "default/device/thermostat-1/state/update"
    rows = [
        NewOutboxRow("a", res, {"event_id": "a", "timestamp": 1, "state": "online"}, 1),
        NewOutboxRow("b", res, {"event_id": "b", "timestamp": 2, "state": "offline"}, 2),
    ]
    msg_id, content = merge_rows(rows)
    assert content == {"event_id": msg_id, "timestamp": 2, "state": "offline"}


_side_values = st.tuples(
    st.sampled_from(["expected", "actual"]),
    st.sampled_from(["1", "2", "3"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 3),
)


@given(st.lists(st.lists(_side_values, min_size=1, max_size=3), min_size=1, max_size=6))
def test_merged_message_is_lossless_for_the_cloud(rows_spec: list[list[Any]]) -> None:
    """The cloud's status after the merged message equals that after every row one by one."""
    rows = []
    for i, sides in enumerate(rows_spec):
        entry: dict[str, Any] = {"metadata": {"type": "float"}}
        for side, value, cloud, edge, ts in sides:
            entry[side] = {"value": value, "metadata": {"timestamp": ts}}
            entry[f"{side}_version"] = {"cloud": cloud, "edge": edge}
        rows.append(_row(i, {"temperature": entry}))
    one_by_one: list[dict[str, Any]] = []
    for row in rows:
        one_by_one = merge_report(one_by_one, parse_twin_report(row.content))
    _, merged = merge_rows(rows)
    # equal versions may carry different values; the cloud keeps the first it saw, the merge
    # the last, so compare versions (what the cloud orders by) and, where unique, values
    at_once = merge_report([], parse_twin_report(merged))

    def versions(status: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        out = []
        for t in status:
            for k in ("reported", "observedDesired"):
                if k in t:
                    meta = t[k]["metadata"]
                    out.append((k, meta["cloudVersion"], meta["edgeVersion"]))
        return sorted(out)

    assert versions(at_once) == versions(one_by_one)


# -- the module ------------------------------------------------------------------------------


async def test_reports_waiting_for_an_answer_go_as_one_message(edge: TwinEdge) -> None:
    """While a device's message is unanswered, its next reports wait and then go merged; the
    answer to the merged message deletes every row it covers."""
    await edge.hub("connected")
    await reports(edge, "1")
    (first,) = await edge.upstream(1)
    await reports(edge, "2", "3", "4")
    await edge.barrier()
    assert edge.no_upstream()
    await edge.hub("response", first.id)
    (merged,) = await edge.upstream(1)
    rows = outbox_rows(edge.path)
    assert merged.id not in [r[0] for r in rows]
    assert value_of(merged.content) == "4"
    assert (
        merged.content["twin"]["temperature"]["actual_version"]
        == rows[-1][2]["twin"]["temperature"]["actual_version"]
    )
    await edge.hub("response", merged.id)
    await wait_until(lambda: outbox_rows(edge.path) == [])


async def test_error_for_a_merged_message_deletes_its_rows(edge: TwinEdge) -> None:
    """A refusal (``error``) of a merged message drops every row it covered."""
    await edge.hub("connected")
    await reports(edge, "1")
    (first,) = await edge.upstream(1)
    await reports(edge, "2", "3")
    await edge.hub("error", first.id)
    (merged,) = await edge.upstream(1)
    await edge.hub("error", merged.id)
    await wait_until(lambda: outbox_rows(edge.path) == [])


async def test_other_devices_are_not_held_back(tmp_path: Path) -> None:
    """A device waiting for an answer does not delay another device's report."""
    async with running_edge(tmp_path) as edge:
        await edge.apply(device("thermostat-2"))
        await edge.member("default/thermostat-2")
        await edge.hub("connected")
        await reports(edge, "1")
        await edge.upstream(1)
        await reports(edge, "2")
        await reports(edge, "7", topic="$hw/events/device/thermostat-2")
        (other,) = await edge.upstream(1)
        assert other.resource == "default/device/thermostat-2/twin/edge_updated"
        assert value_of(other.content) == "7"


async def test_rows_of_a_merged_message_lost_with_the_link_are_resent(edge: TwinEdge) -> None:
    """A merged message never answered: after reconnecting, its rows go again, one each."""
    await edge.hub("connected")
    await reports(edge, "1")
    (first,) = await edge.upstream(1)
    await reports(edge, "2", "3")
    await edge.hub("response", first.id)
    (merged,) = await edge.upstream(1)
    await edge.hub("disconnected")
    await edge.hub("connected")
    again = await edge.upstream(2)
    assert [m.id for m in again] == [r[0] for r in outbox_rows(edge.path)]
    assert [value_of(m.content) for m in again] == ["2", "3"]
    await edge.hub("response", merged.id)  # a late answer still deletes what it covered
    await wait_until(lambda: outbox_rows(edge.path) == [])


async def test_restart_resends_rows_of_an_unanswered_merged_message(edge: TwinEdge) -> None:
    """After a restart (as after kill -9), what every unanswered row said is sent again: the
    rows fold at start-up into one, under the id of the row that replaced them."""
    await edge.hub("connected")
    await reports(edge, "1")
    await edge.upstream(1)
    await reports(edge, "2", "3")
    await edge.restart()
    await edge.hub("connected")
    again = await edge.upstream(1)
    assert [m.id for m in again] == [r[0] for r in outbox_rows(edge.path)]
    assert [value_of(m.content) for m in again] == ["3"]


async def test_unanswered_message_stops_holding_back_after_the_timeout() -> None:
    """Without an answer, the next message for the resource goes after ``answer_timeout``."""
    bus = Bus()
    bus.register("edgehub", "hub")
    up = Uplink(bus=bus, clock=lambda: 1, answer_timeout=0.05)
    task = asyncio.create_task(up.run())
    try:
        up.connected()
        up.committed([_row(1, {"temperature": _entry("actual", "1", 0, 1, 1)})], 1)
        first = await asyncio.wait_for(bus.receive("edgehub"), 1)
        up.committed([_row(2, {"temperature": _entry("actual", "2", 0, 2, 2)})], 2)
        second = await asyncio.wait_for(bus.receive("edgehub"), 1)
        assert (first.id, second.id) == ("row-1", "row-2")
        assert up.answered("row-1") == ["row-1"] and up.answered("row-2") == ["row-2"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_rows_beyond_memory_are_sent_from_sqlite(tmp_path: Path) -> None:
    """More rows waiting than ``memory_rows``: they are read back from SQLite, one per row."""
    store = await TwinStore.open(tmp_path / "edgecore.db")
    bus = Bus()
    bus.register("edgehub", "hub")
    up = Uplink(bus=bus, clock=lambda: 1, memory_rows=2)
    up.opened(store, await store.last_seq())
    up.connected()
    rows = [_row(i, {"temperature": _entry("actual", str(i), 0, i, i)}) for i in range(1, 5)]
    task = asyncio.create_task(up.run())
    try:
        up.committed(rows[:1], await store.commit(WriteSet(outbox=rows[:1])))
        first = await asyncio.wait_for(bus.receive("edgehub"), 1)
        up.committed(rows[1:], await store.commit(WriteSet(outbox=rows[1:])))
        again = [await asyncio.wait_for(bus.receive("edgehub"), 1) for _ in range(4)]
        assert first.id == "row-1"
        assert [m.id for m in again] == ["row-1", "row-2", "row-3", "row-4"]
        assert [m.content for m in again] == [r.content for r in rows]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
