"""Mapper reports (``twin/update``): results after commit, documents, upstream rows, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edgecore.devicetwin.store import WriteSet
from tests.edgecore.test_twin_support import DEV, TwinEdge, outbox_rows, report, running_edge
from wire.errors import StoreError


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[TwinEdge]:
    async with running_edge(tmp_path) as e:
        yield e


async def test_report_gets_result_with_versions_then_document(edge: TwinEdge) -> None:
    """An accepted report is answered with the stored twin (value, version, type) and a document."""
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="21.5"))
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["event_id"] == "ev-1"
    t = result["twin"]["temperature"]
    assert t["actual"]["value"] == "21.5"
    assert t["actual_version"]["cloud"] == 0 and t["actual_version"]["edge"] > 0
    assert t["metadata"] == {"type": "float"}
    assert "code" not in result
    doc = await edge.published(f"{DEV}/twin/update/document")
    assert "last" not in doc["twin"]["temperature"]
    assert doc["twin"]["temperature"]["current"]["actual"]["value"] == "21.5"


async def test_result_is_published_only_after_commit(edge: TwinEdge) -> None:
    """When the result arrives, a fresh connection already reads the twin and its outbox row."""
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="22"))
    await edge.published(f"{DEV}/twin/update/result")
    rows = outbox_rows(edge.path)
    assert len(rows) == 1
    _id, resource, content = rows[0]
    assert resource == "default/device/thermostat-1/twin/edge_updated"
    assert content["twin"]["temperature"]["actual"]["value"] == "22"


async def test_second_report_has_newer_version_and_last_state(edge: TwinEdge) -> None:
    """Each report gets a greater edge version; the document shows the previous state as last."""
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="1"))
    first = await edge.published(f"{DEV}/twin/update/result")
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="2"))
    second = await edge.published(f"{DEV}/twin/update/result")
    v1 = first["twin"]["temperature"]["actual_version"]["edge"]
    v2 = second["twin"]["temperature"]["actual_version"]["edge"]
    assert v2 > v1
    await edge.published(f"{DEV}/twin/update/document")
    doc = await edge.published(f"{DEV}/twin/update/document")
    assert doc["twin"]["temperature"]["last"]["actual"]["value"] == "1"
    assert doc["twin"]["temperature"]["current"]["actual"]["value"] == "2"


async def test_namespaced_topic_form_gets_replies_on_that_form(edge: TwinEdge) -> None:
    """A mapper using ``{ns}/{name}`` in the topic is answered on ``{ns}/{name}`` topics."""
    topic = "$hw/events/device/default/thermostat-1"
    await edge.mqtt(f"{topic}/twin/update", report(temperature="3"))
    result = await edge.published(f"{topic}/twin/update/result")
    assert result["twin"]["temperature"]["actual"]["value"] == "3"


async def test_numbers_are_taken_as_their_text(edge: TwinEdge) -> None:
    """A JSON number given as a value is stored as its text."""
    payload = {"event_id": "n", "twin": {"temperature": {"actual": {"value": 21.5}}}}
    await edge.mqtt(f"{DEV}/twin/update", payload)
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["twin"]["temperature"]["actual"]["value"] == "21.5"


async def test_expected_from_mapper_sets_local_desired(edge: TwinEdge) -> None:
    """A mapper's ``expected`` on a ReadWrite property is stored with an edge version and deltas."""
    payload = {"event_id": "e", "twin": {"setpoint": {"expected": {"value": "25"}}}}
    await edge.mqtt(f"{DEV}/twin/update", payload)
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["twin"]["setpoint"]["expected"]["value"] == "25"
    assert result["twin"]["setpoint"]["expected_version"] == {"cloud": 1, "edge": 1}
    delta = await edge.published(f"{DEV}/twin/update/delta")
    assert delta["delta"] == {"setpoint": "25"}


BAD: list[tuple[str, str, Any, int, str]] = [
    ("unknown device", "$hw/events/device/nope", report(temperature="1"), 404, "nope"),
    ("bad device id", "$hw/events/device/a/b/c", report(temperature="1"), 404, "a/b/c"),
    ("unknown property", DEV, report(humidity="1"), 404, "humidity"),
    ("not JSON", DEV, "{not json", 400, "not JSON"),
    ("not an object", DEV, "[1, 2]", 400, "list"),
    ("not UTF-8", DEV, None, 400, "UTF-8"),
    ("twin not a map", DEV, {"event_id": "x", "twin": [1]}, 400, "twin"),
    ("no twin", DEV, {"event_id": "x"}, 400, "twin"),
    ("null value", DEV, {"twin": {"temperature": {"actual": {"value": None}}}}, 400, "value"),
    ("nothing given", DEV, {"twin": {"temperature": {"optional": True}}}, 400, "neither"),
    ("wrong type", DEV, report(temperature="warm"), 400, "temperature"),
    ("above maximum", DEV, report(temperature="150"), 400, "maximum 100"),
    ("below minimum", DEV, report(temperature="-51"), 400, "minimum -50"),
    ("int not int", DEV, report(count="1.5"), 400, "INT"),
    ("bool not bool", DEV, report(power="maybe"), 400, "BOOLEAN"),
    (
        "expected on ReadOnly",
        DEV,
        {"twin": {"temperature": {"expected": {"value": "20"}}}},
        400,
        "ReadOnly",
    ),
    ("one bad among good", DEV, report(setpoint="20", temperature="500"), 400, "temperature"),
]


@pytest.mark.parametrize(
    ("topic", "payload", "code", "needle"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
async def test_bad_update_is_refused_and_changes_nothing(
    edge: TwinEdge, topic: str, payload: Any, code: int, needle: str
) -> None:
    """Each bad update gets a result with its code and a reason; no twin, no outbox row."""
    await edge.hub("connected")
    await edge.mqtt(f"{topic}/twin/update", payload)
    result = await edge.published(f"{topic}/twin/update/result")
    assert result["code"] == code
    assert needle in result["reason"]
    assert "twin" not in result
    await edge.barrier()
    assert edge.module.twin("default/thermostat-1") == {}
    assert outbox_rows(edge.path) == []
    assert edge.no_upstream()
    assert [t for t, _ in edge.drain() if t.endswith(("/document", "/delta"))] == []


async def test_refusal_echoes_event_id(edge: TwinEdge) -> None:
    """A refused update's result carries the request's event_id."""
    await edge.mqtt(
        f"{DEV}/twin/update", {"event_id": "abc", "twin": {"x": {"actual": {"value": "1"}}}}
    )
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["event_id"] == "abc" and result["code"] == 404


async def test_bus_keeps_serving_after_bad_input(edge: TwinEdge) -> None:
    """After refusals, the next good report is accepted."""
    await edge.mqtt(f"{DEV}/twin/update", "garbage")
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="999"))
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="20"))
    codes = [(await edge.published(f"{DEV}/twin/update/result")).get("code") for _ in range(3)]
    assert codes == [400, 400, None]
    assert edge.module.twin("default/thermostat-1")["temperature"].twin.actual is not None


async def test_model_missing_is_404(tmp_path: Path) -> None:
    """A member device whose model is not on the edge refuses reports with 404."""
    from tests.edgecore.test_twin_support import device

    async with running_edge(tmp_path, objects=False) as edge:
        await edge.apply(device())
        await edge.member()
        await edge.mqtt(f"{DEV}/twin/update", report(temperature="1"))
        result = await edge.published(f"{DEV}/twin/update/result")
        assert result["code"] == 404 and "thermostat-model" in result["reason"]


async def test_failed_commit_answers_500_and_changes_nothing(
    edge: TwinEdge, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If SQLite refuses the batch, accepted updates are answered 500 and nothing changes."""

    async def refuse(_writes: WriteSet) -> None:
        raise StoreError("disk full")

    store = edge.module.store
    monkeypatch.setattr(store, "commit", refuse)
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="20"))
    result = await edge.published(f"{DEV}/twin/update/result")
    assert result["code"] == 500 and result["event_id"] == "ev-1"
    assert edge.module.twin("default/thermostat-1") == {}
    monkeypatch.undo()
    await edge.barrier()
    assert [t for t, _ in edge.drain() if t.endswith("/document")] == []
    await edge.mqtt(f"{DEV}/twin/update", report(temperature="21"))
    assert "code" not in await edge.published(f"{DEV}/twin/update/result")
    assert len(outbox_rows(edge.path)) == 1
