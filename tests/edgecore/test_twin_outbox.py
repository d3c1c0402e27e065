"""The durable edge→cloud outbox: sent on ``connected``, deleted on the cloud's answer,
kept across restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.edgecore.test_twin_support import (
    DEV,
    TwinEdge,
    outbox_rows,
    report,
    running_edge,
    wait_until,
)
from wire.messages import Message


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[TwinEdge]:
    async with running_edge(tmp_path) as e:
        yield e


async def reports(edge: TwinEdge, *values: str) -> None:
    for v in values:
        await edge.mqtt(f"{DEV}/twin/update", report(temperature=v))
        await edge.published(f"{DEV}/twin/update/result")


async def test_nothing_is_sent_before_connected(edge: TwinEdge) -> None:
    """While the cloud link is down rows wait in SQLite; none goes to edgehub."""
    await reports(edge, "1", "2")
    await edge.barrier()
    assert edge.no_upstream()
    assert len(outbox_rows(edge.path)) == 2


async def test_connected_sends_every_row_oldest_first(edge: TwinEdge) -> None:
    """On ``connected`` each row goes to edgehub, oldest first, with the row's id as msg_id."""
    await reports(edge, "1", "2", "3")
    await edge.hub("connected")
    sent = await edge.upstream(3)
    rows = outbox_rows(edge.path)
    assert [m.id for m in sent] == [r[0] for r in rows]
    assert [m.content["twin"]["temperature"]["actual"]["value"] for m in sent] == ["1", "2", "3"]
    for m in sent:
        assert (m.operation, m.route.group, m.route.source) == ("update", "twin", "twin")
        assert m.resource == "default/device/thermostat-1/twin/edge_updated"


async def test_rows_committed_while_connected_go_right_away(edge: TwinEdge) -> None:
    """A report made while connected is sent upstream right after its commit."""
    await edge.hub("connected")
    await reports(edge, "5")
    (msg,) = await edge.upstream(1)
    assert msg.content["twin"]["temperature"]["actual"]["value"] == "5"


async def test_response_and_error_delete_rows(edge: TwinEdge) -> None:
    """The cloud's ``response`` (applied) and ``error`` (refused for good) both delete a row."""
    await reports(edge, "1", "2", "3")
    await edge.hub("connected")
    a, b, c = await edge.upstream(3)
    await edge.hub("response", a.id)
    await edge.hub("error", b.id)
    await wait_until(lambda: [r[0] for r in outbox_rows(edge.path)] == [c.id])


async def test_reconnect_resends_unanswered_rows_with_same_ids(edge: TwinEdge) -> None:
    """After disconnected/connected, rows not yet answered are sent again with the same ids."""
    await reports(edge, "1", "2")
    await edge.hub("connected")
    a, b = await edge.upstream(2)
    await edge.hub("response", a.id)
    await edge.hub("disconnected")
    await reports(edge, "3")
    await edge.barrier()
    assert edge.no_upstream()
    await edge.hub("connected")
    again = await edge.upstream(2)
    assert again[0].id == b.id
    assert again[1].content["twin"]["temperature"]["actual"]["value"] == "3"


async def test_restart_keeps_twin_and_unacked_rows(edge: TwinEdge) -> None:
    """A new module on the same database has the twin and what every unanswered row said
    (folded at start-up into one row per device and kind)."""
    await edge.mqtt(f"{DEV}/state/update", {"state": "online"})
    await edge.published(f"{DEV}/state/update/result")
    await reports(edge, "1", "2")
    await edge.hub("connected")
    first, _, _ = await edge.upstream(3)
    await edge.hub("response", first.id)
    await wait_until(lambda: len(outbox_rows(edge.path)) == 2)
    before = edge.module.twin("default/thermostat-1")
    await edge.restart()
    assert edge.module.twin("default/thermostat-1") == before
    await edge.mqtt(f"{DEV}/twin/get", {"event_id": "g"})
    got = await edge.published(f"{DEV}/twin/get/result")
    assert got["twin"]["temperature"]["actual"]["value"] == "2"
    await edge.hub("connected")
    resent = await edge.upstream(1)
    assert [m.id for m in resent] == [r[0] for r in outbox_rows(edge.path)]
    assert resent[0].content["twin"]["temperature"]["actual"]["value"] == "2"


async def test_versions_keep_growing_after_restart(edge: TwinEdge) -> None:
    """A report after a restart gets an edge version above every earlier one."""
    await reports(edge, "1")
    old = edge.module.twin("default/thermostat-1")["temperature"].twin.actual
    assert old is not None
    await edge.restart()
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="2"))
    res = await edge.published(f"{DEV}/twin/update/result")
    assert res["twin"]["temperature"]["actual_version"]["edge"] > old.edge


async def test_full_edgehub_inbox_does_not_hold_the_twin(edge: TwinEdge) -> None:
    """With edgehub's inbox full and the link going down, the twin keeps serving MQTT and
    sends everything once the link is back."""
    filler = 0
    while edge.bus.send_nowait(
        "edgehub", Message.new(source="x", group="", operation="k", resource="")
    ):
        filler += 1
    await reports(edge, "1")
    await edge.hub("connected")
    await reports(edge, "2")  # the sender is now stuck on the full inbox
    await edge.hub("disconnected")
    await reports(edge, "3")  # the MQTT side still answers
    for _ in range(filler):
        assert edge.bus.receive_nowait("edgehub") is not None
    await edge.barrier()
    assert edge.no_upstream()
    await edge.hub("connected")
    sent = await edge.upstream(3)
    values = [m.content["twin"]["temperature"]["actual"]["value"] for m in sent]
    assert values == ["1", "2", "3"]
