"""Group commit: a burst of reports costs a few transactions, not one per report."""

from __future__ import annotations

from pathlib import Path

from tests.edgecore.test_twin_support import DEV, outbox_rows, report, running_edge


async def test_thousand_reports_in_few_transactions(tmp_path: Path) -> None:
    """1000 queued reports are committed in a handful of transactions, each answered."""
    async with running_edge(tmp_path, inbox=10_000) as edge:
        commits = edge.module.store.commits
        for i in range(1000):
            payload = report(temperature=str(i % 100))
            payload["event_id"] = f"e{i}"
            await edge.mqtt(f"{DEV}/twin/update", payload)
        results = [await edge.published(f"{DEV}/twin/update/result") for _ in range(1000)]
        assert [r["event_id"] for r in results] == [f"e{i}" for i in range(1000)]
        assert all("code" not in r for r in results)
        assert edge.module.store.commits - commits <= 10
        # one upstream row per device per transaction, the newest value in the last one
        rows = outbox_rows(edge.path)
        assert 1 <= len(rows) <= edge.module.store.commits - commits
        assert rows[-1][2]["twin"]["temperature"]["actual"]["value"] == "99"


async def test_reports_in_one_batch_share_one_upstream_row(tmp_path: Path) -> None:
    """Reports of two properties queued together leave as one row holding both, newest each."""
    async with running_edge(tmp_path, inbox=10_000) as edge:
        await edge.mqtt(f"{DEV}/twin/update", report(temperature="1"))
        await edge.mqtt(f"{DEV}/twin/update", report(mode="eco"))
        await edge.mqtt(f"{DEV}/twin/update", report(temperature="2"))
        for _ in range(3):
            await edge.published(f"{DEV}/twin/update/result")
        rows = outbox_rows(edge.path)
        assert len(rows) == 1
        twin = rows[0][2]["twin"]
        assert (twin["temperature"]["actual"]["value"], twin["mode"]["actual"]["value"]) == (
            "2",
            "eco",
        )


async def test_batch_max_bounds_a_transaction(tmp_path: Path) -> None:
    """With ``batch_max`` 10, 100 queued reports need at least 10 transactions."""
    async with running_edge(tmp_path, inbox=10_000, batch_max=10) as edge:
        commits = edge.module.store.commits
        for i in range(100):
            await edge.mqtt(f"{DEV}/twin/update", report(temperature=str(i)))
        for _ in range(100):
            await edge.published(f"{DEV}/twin/update/result")
        assert edge.module.store.commits - commits >= 10


async def test_acks_in_a_burst_are_deleted_together(tmp_path: Path) -> None:
    """Many responses arriving together delete their rows in few transactions."""
    async with running_edge(tmp_path, inbox=10_000) as edge:
        for i in range(200):  # one at a time: a transaction, and so a row, each
            await edge.mqtt(f"{DEV}/twin/update", report(temperature=str(i % 50)))
            await edge.published(f"{DEV}/twin/update/result")
        await edge.hub("connected")
        sent = await edge.upstream(200)
        commits = edge.module.store.commits
        for m in sent:
            await edge.hub("response", m.id)
        await edge.barrier()
        assert outbox_rows(edge.path) == []
        assert edge.module.store.commits - commits <= 5
