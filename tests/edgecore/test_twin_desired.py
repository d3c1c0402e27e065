"""Desired values from the cloud's Device objects: deltas, versions, membership changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.edgecore.test_twin_support import (
    DEV,
    TwinEdge,
    device,
    model,
    outbox_rows,
    report,
    running_edge,
    wait_until,
)

ID = "default/thermostat-1"


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[TwinEdge]:
    async with running_edge(tmp_path) as e:
        yield e


def expected_of(edge: TwinEdge, prop: str = "setpoint") -> str | None:
    rec = edge.module.twin(ID).get(prop)
    e = rec.twin.expected if rec else None
    return None if e is None or e.deleted else e.value


async def test_cloud_desired_publishes_delta_and_document(edge: TwinEdge) -> None:
    """A Device with a desired value yields a delta naming it, a document, and an upstream row."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    delta = await edge.published(f"{DEV}/twin/update/delta")
    assert delta["delta"] == {"setpoint": "21.5"}
    assert "expected_version" not in delta["twin"]["setpoint"]
    doc = await edge.published(f"{DEV}/twin/update/document")
    assert doc["twin"]["setpoint"]["current"]["expected"]["value"] == "21.5"
    rows = outbox_rows(edge.path)
    assert [r[1] for r in rows] == ["default/device/thermostat-1/twin/edge_updated"]
    sent = rows[0][2]["twin"]["setpoint"]
    assert sent["expected"]["value"] == "21.5"
    assert sent["expected_version"] == {"cloud": 2, "edge": 0}


async def test_matching_report_stops_the_delta(edge: TwinEdge) -> None:
    """When the mapper reports the desired value (in any spelling), no delta follows."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.published(f"{DEV}/twin/update/delta")
    await edge.mqtt(f"{DEV}/twin/update", report(setpoint="21.50"))
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["twin"]["setpoint"]["expected"]["value"] == "21.5"
    await edge.barrier()
    assert [t for t, _ in edge.drain() if t.endswith("/delta")] == []
    row = outbox_rows(edge.path)[-1][2]["twin"]["setpoint"]
    assert row["expected"]["value"] == "21.5" and row["actual"]["value"] == "21.50"


async def test_mismatching_report_gets_delta(edge: TwinEdge) -> None:
    """A report that differs from the desired value is followed by a delta."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.published(f"{DEV}/twin/update/delta")
    await edge.mqtt(f"{DEV}/twin/update", report(setpoint="19"))
    delta = await edge.published(f"{DEV}/twin/update/delta")
    assert delta["delta"] == {"setpoint": "21.5"}
    assert delta["twin"]["setpoint"]["actual"]["value"] == "19"


async def test_redelivery_of_same_generation_changes_nothing(edge: TwinEdge) -> None:
    """The same Device again (a status write, a resync) makes no new row, document or delta."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.published(f"{DEV}/twin/update/document")
    await edge.published(f"{DEV}/twin/update/delta")
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.barrier()
    assert len(outbox_rows(edge.path)) == 1
    assert [t for t, _ in edge.drain() if t.endswith(("/delta", "/document"))] == []


async def test_newer_generation_replaces_desired(edge: TwinEdge) -> None:
    """A new generation with another desired value replaces it and deltas again."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.published(f"{DEV}/twin/update/delta")
    await edge.apply(device(desired={"setpoint": "23"}, generation=3))
    delta = await edge.published(f"{DEV}/twin/update/delta")
    assert delta["delta"] == {"setpoint": "23"}


async def test_local_edit_survives_same_generation_but_not_a_newer_one(edge: TwinEdge) -> None:
    """A mapper's expected beats the cloud's value of that generation; a newer one beats it."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await wait_until(lambda: expected_of(edge) == "21.5")
    local = {"event_id": "l", "twin": {"setpoint": {"expected": {"value": "30"}}}}
    await edge.mqtt(f"{DEV}/twin/update", local)
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["twin"]["setpoint"]["expected_version"] == {"cloud": 2, "edge": 1}
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.barrier()
    assert expected_of(edge) == "30"
    await edge.apply(device(desired={"setpoint": "22"}, generation=3))
    await wait_until(lambda: expected_of(edge) == "22")


async def test_removed_desired_becomes_tombstone(edge: TwinEdge) -> None:
    """A desired value the next generation no longer has is removed: no delta for it."""
    await edge.apply(device(desired={"setpoint": "21.5"}, generation=2))
    await edge.published(f"{DEV}/twin/update/document")
    await edge.apply(device(desired={}, generation=3))
    doc = await edge.published(f"{DEV}/twin/update/document")
    assert "value" not in doc["twin"]["setpoint"]["current"]["expected"]
    edge.drain()  # the first generation's delta
    await edge.mqtt(f"{DEV}/twin/update", report(setpoint="10"))
    await edge.barrier()
    assert [t for t, _ in edge.drain() if t.endswith("/delta")] == []
    assert expected_of(edge) is None


async def test_invalid_cloud_desired_is_ignored(edge: TwinEdge) -> None:
    """A desired value the model forbids (out of range, ReadOnly) is not adopted."""
    await edge.apply(device(desired={"setpoint": "99", "temperature": "5"}, generation=2))
    await edge.apply(device(desired={"setpoint": "10"}, generation=3))
    await wait_until(lambda: expected_of(edge) == "10")
    assert expected_of(edge, "temperature") is None
    assert len(outbox_rows(edge.path)) == 1


async def test_device_before_model_gets_desired_when_model_arrives(tmp_path: Path) -> None:
    """Desired values wait for the model, then apply (validated) when it arrives."""
    async with running_edge(tmp_path, objects=False) as edge:
        await edge.apply(device(desired={"setpoint": "12"}, generation=2))
        await edge.member(ID)
        await edge.apply(model())
        delta = await edge.published(f"{DEV}/twin/update/delta")
        assert delta["delta"] == {"setpoint": "12"}


async def test_deleted_device_is_dropped(edge: TwinEdge) -> None:
    """Deleting the Device drops its twin rows and announces the removal; reports get 404."""
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="20"))
    await edge.published(f"{DEV}/twin/update/result")
    await edge.delete(device())
    upd = await edge.published("$hw/events/node/edge-1/membership/updated")
    assert [d["id"] for d in upd["removed_devices"]] == [ID]
    assert edge.module.members() == []
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="20"))
    assert (await edge.published(f"{DEV}/twin/update/result"))["code"] == 404


async def test_device_moved_to_another_node_leaves(edge: TwinEdge) -> None:
    """A Device rebound to another node stops being a member."""
    await edge.apply(device(node="edge-2"))
    await wait_until(lambda: edge.module.members() == [])


async def test_other_nodes_devices_are_ignored(edge: TwinEdge) -> None:
    """A Device bound to another node never becomes a member."""
    await edge.apply(device("other", node="edge-2", desired={"setpoint": "10"}))
    await edge.barrier()
    assert edge.module.members() == [ID]
    await edge.mqtt("$hw/events/device/other/twin/get", {})
    assert (await edge.published("$hw/events/device/other/twin/get/result"))["code"] == 404


async def test_device_in_other_namespace_uses_namespaced_topics(edge: TwinEdge) -> None:
    """A device outside ``default`` is addressed, and deltas it, as ``{ns}/{name}``."""
    await edge.apply(model(namespace="lab"), device("d", namespace="lab", desired={"mode": "eco"}))
    delta = await edge.published("$hw/events/device/lab/d/twin/update/delta")
    assert delta["delta"] == {"mode": "eco"}


async def test_model_deleted_while_in_use_is_kept_until_it_returns(
    edge: TwinEdge, caplog: pytest.LogCaptureFixture
) -> None:
    """A model deleted in the cloud while a member device uses it is kept, with a warning:
    reports are still accepted and range-checked; when it returns, the new one applies."""
    await edge.delete(model())
    await edge.barrier()
    assert "device model default/thermostat-model was deleted in the cloud" in caplog.text
    assert "default/thermostat-1 still use it" in caplog.text
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="20"))
    assert "code" not in await edge.published(f"{DEV}/twin/update/result")
    await edge.mqtt(f"{DEV}/twin/update", report(setpoint="99"))
    assert (await edge.published(f"{DEV}/twin/update/result"))["code"] == 400
    wide = model()
    wide["spec"]["properties"][1]["maximum"] = "120"
    await edge.apply(wide)
    await edge.barrier()
    assert "device model default/thermostat-model is back" in caplog.text
    await edge.mqtt(f"{DEV}/twin/update", report(setpoint="99"))
    assert "code" not in await edge.published(f"{DEV}/twin/update/result")
    await edge.apply(device(desired={"setpoint": "110"}, generation=5))
    delta = await edge.published(f"{DEV}/twin/update/delta")
    assert delta["delta"] == {"setpoint": "110"}


async def test_unused_model_deleted_is_dropped(tmp_path: Path) -> None:
    """A model no member device uses is forgotten when deleted, without a warning."""
    async with running_edge(tmp_path, objects=False) as edge:
        await edge.apply(model())
        await edge.delete(model())
        await edge.apply(device(desired={"setpoint": "12"}, generation=2))
        await edge.member(ID)
        await edge.mqtt(f"{DEV}/twin/update", report(temperature="20"))
        assert (await edge.published(f"{DEV}/twin/update/result"))["code"] == 404


async def test_kept_model_survives_a_restart_and_is_dropped_once_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A model kept after its deletion is still used after edgecore restarts with it missing
    from the cache; once it returns, the kept copy is forgotten."""
    async with running_edge(tmp_path) as edge:
        await edge.delete(model())
        await edge.barrier()
    caplog.clear()
    async with running_edge(tmp_path, objects=False) as edge:
        await edge.member(ID)
        assert "default/thermostat-1 still use it" in caplog.text
        await edge.mqtt(f"{DEV}/twin/update", report(setpoint="99"))
        assert (await edge.published(f"{DEV}/twin/update/result"))["code"] == 400
        await edge.mqtt(f"{DEV}/twin/update", report(setpoint="20"))
        assert "code" not in await edge.published(f"{DEV}/twin/update/result")
        await edge.apply(model())
        await edge.barrier()
        assert await edge.module.store.kept_models() == {}
