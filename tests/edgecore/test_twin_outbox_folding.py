"""The outbox while the cloud is away: rows of one device and kind fold into one, holding the
newest value of every property, so a long outage neither fills the disk nor floods the replay."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgecore.devicetwin.store import NewOutboxRow, TwinStore, WriteSet
from edgecore.devicetwin.uplink import merge_rows
from tests.edgecore.test_twin_support import DEV, outbox_rows, report, running_edge, wait_until

pytestmark = pytest.mark.timeout(30)

TWIN_RES = "default/device/thermostat-1/twin/edge_updated"
STATE_RES = "default/device/thermostat-1/state/update"
OTHER_RES = "default/device/other/twin/edge_updated"


def _entry(value: str, edge: int) -> dict[str, Any]:
    return {
        "actual": {"value": value, "metadata": {"timestamp": edge}},
        "actual_version": {"cloud": 0, "edge": edge},
    }


def _row(msg_id: str, resource: str, content: dict[str, Any], created: int = 1) -> NewOutboxRow:
    return NewOutboxRow(msg_id, resource, content, created)


def _twin(event: str, **props: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": event, "timestamp": 1, "twin": props}


async def test_store_folds_each_resource_into_one_row(tmp_path: Path) -> None:
    """Several rows of a resource become one with each property's newest value; a resource
    with one row and a damaged row are left as they are."""
    store = await TwinStore.open(tmp_path / "edgecore.db")
    try:
        await store.commit(
            WriteSet(
                outbox=[
                    _row("a", TWIN_RES, _twin("a", temperature=_entry("1", 1)), created=10),
                    _row("b", TWIN_RES, _twin("b", setpoint=_entry("20", 2)), created=11),
                    _row("c", OTHER_RES, _twin("c", temperature=_entry("7", 1))),
                    _row("d", TWIN_RES, _twin("d", temperature=_entry("3", 3)), created=12),
                    _row("e", STATE_RES, {"event_id": "e", "state": "online"}),
                    _row("f", STATE_RES, {"event_id": "f", "state": "offline"}),
                ]
            )
        )
        db = sqlite3.connect(tmp_path / "edgecore.db")
        db.execute(
            "INSERT INTO outbox (msg_id, resource, content, created) VALUES ('bad', ?, '{', 1)",
            (TWIN_RES,),
        )
        db.commit()
        db.close()

        result = await store.compact_outbox(merge_rows)

        assert (result.rows_before, result.rows_after) == (7, 4)
        rows = {(r.resource, r.msg_id): r for r in await store.pending(limit=100)}
        assert result.last_seq == max(r.seq for r in rows.values())
        twin_rows = [r for (res, mid), r in rows.items() if res == TWIN_RES and mid != "bad"]
        (twin,) = twin_rows
        assert twin.msg_id not in {"a", "b", "d"} and twin.content["event_id"] == twin.msg_id
        assert twin.content["twin"]["temperature"]["actual"]["value"] == "3"
        assert twin.content["twin"]["setpoint"]["actual"]["value"] == "20"
        assert twin.created == 12
        assert (OTHER_RES, "c") in rows and (TWIN_RES, "bad") not in rows  # damaged: skipped
        (state,) = [r for (res, _), r in rows.items() if res == STATE_RES]
        assert state.content["state"] == "offline"
        db = sqlite3.connect(tmp_path / "edgecore.db")
        try:  # still stored, untouched
            assert db.execute("SELECT content FROM outbox WHERE msg_id = 'bad'").fetchone() == (
                "{",
            )
        finally:
            db.close()
    finally:
        await store.close()


async def test_store_folding_nothing_writes_nothing(tmp_path: Path) -> None:
    """With at most one row per resource the outbox is unchanged and nothing is committed."""
    store = await TwinStore.open(tmp_path / "edgecore.db")
    try:
        await store.commit(WriteSet(outbox=[_row("a", TWIN_RES, _twin("a"))]))
        commits = store.commits
        result = await store.compact_outbox(merge_rows)
        assert (result.rows_before, result.rows_after) == (1, 1)
        assert store.commits == commits
        assert [r.msg_id for r in await store.pending()] == ["a"]
    finally:
        await store.close()


async def test_offline_reports_fold_and_replay_as_one_message(tmp_path: Path) -> None:
    """Twenty reports made while the link is down end as one row; on ``connected`` one message
    carries the last value, and its answer empties the outbox."""
    async with running_edge(tmp_path, compact_interval=0.05) as edge:
        for v in range(1, 21):
            await edge.mqtt(f"{DEV}/twin/update", report(temperature=str(v)))
            await edge.published(f"{DEV}/twin/update/result")
        # The module counts what it folded once the compaction's commit returns, a moment
        # after the row count shows it: wait for both.
        await wait_until(lambda: len(outbox_rows(edge.path)) == 1 and edge.module.folded == 19)
        await edge.hub("connected")
        (msg,) = await edge.upstream(1)
        assert msg.content["twin"]["temperature"]["actual"]["value"] == "20"
        assert msg.id == outbox_rows(edge.path)[0][0]
        await edge.hub("response", msg.id)
        await wait_until(lambda: outbox_rows(edge.path) == [])


async def test_nothing_folds_while_the_link_is_up(tmp_path: Path) -> None:
    """Rows sent on a live link stay as they were sent until answered."""
    async with running_edge(tmp_path, compact_interval=0.01) as edge:
        await edge.hub("connected")
        for v in ("1", "2", "3"):
            await edge.mqtt(f"{DEV}/twin/update", report(temperature=v))
            await edge.published(f"{DEV}/twin/update/result")
        await edge.barrier()
        # a negative check: give the folding timer many periods to (wrongly) act
        await asyncio.sleep(0.2)
        assert edge.module.folded == 0
        assert len(outbox_rows(edge.path)) == 3


async def test_rows_left_by_an_earlier_run_fold_at_start(tmp_path: Path) -> None:
    """A restart while still offline folds what the previous run left before anything else."""
    async with running_edge(tmp_path, compact_interval=3600) as edge:
        for v in ("1", "2", "3"):
            await edge.mqtt(f"{DEV}/twin/update", report(temperature=v))
            await edge.published(f"{DEV}/twin/update/result")
        assert len(outbox_rows(edge.path)) == 3
        await edge.restart()
        assert len(outbox_rows(edge.path)) == 1
        await edge.hub("connected")
        (msg,) = await edge.upstream(1)
        assert msg.content["twin"]["temperature"]["actual"]["value"] == "3"


async def test_reports_after_a_fold_replay_after_it(tmp_path: Path) -> None:
    """Rows committed after a fold are replayed too, after the folded row, newest last."""
    async with running_edge(tmp_path, compact_interval=0.05) as edge:
        await edge.hub("connected")
        await edge.hub("disconnected")
        for v in ("1", "2"):
            await edge.mqtt(f"{DEV}/twin/update", report(temperature=v))
            await edge.published(f"{DEV}/twin/update/result")
        await wait_until(lambda: edge.module.folded == 1)
        await edge.mqtt(f"{DEV}/state/update", {"state": "online"})
        await edge.published(f"{DEV}/state/update/result")
        await edge.hub("connected")
        sent = await edge.upstream(2)
        assert sent[0].content["twin"]["temperature"]["actual"]["value"] == "2"
        assert sent[1].content["state"] == "online"
