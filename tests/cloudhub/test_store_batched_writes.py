"""EmbeddedStore writes in batches: what apply reports, merge_statuses, and that a
transaction costs a fixed number of round trips to SQLite whatever its size."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from cloudhub.store.base import StatusUpdate
from cloudhub.store.embedded import EmbeddedStore
from cloudhub.store.settings import StoreSettings
from wire.errors import InvalidObject
from wire.manifests import validate_all


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    async with _opened(tmp_path) as s:
        yield s


@asynccontextmanager
async def _opened(tmp_path: Path, **settings: int) -> AsyncIterator[EmbeddedStore]:
    s = EmbeddedStore(tmp_path / "store.db", StoreSettings(**settings))
    await s.start()
    try:
        yield s
    finally:
        await s.close()


def configmap(name: str, **data: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def node(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}


async def test_apply_says_created_configured_unchanged(store: EmbeddedStore) -> None:
    """Each object is reported created, configured or unchanged, in the given order."""
    first = await store.apply([configmap("a", k="1"), node("n")])
    assert [a.action for a in first] == ["created", "created"]
    again = await store.apply([node("n"), configmap("a", k="2"), configmap("b")])
    assert [a.action for a in again] == ["unchanged", "configured", "created"]
    assert again[0].object == first[1].object


async def test_detailed_body_is_the_stored_json(store: EmbeddedStore) -> None:
    """The JSON text handed back is the stored object, for new and unchanged objects alike."""
    (created,) = await store.apply([configmap("a", k="1")])
    (same,) = await store.apply([configmap("a", k="1")])
    stored = await store.get("configmap", None, "a")
    assert json.loads(created.body) == stored == created.object
    assert json.loads(same.body) == stored == same.object


async def test_objects_not_handed_over_are_left_as_given(store: EmbeddedStore) -> None:
    """Without owned=True the store validates a copy: the caller's dict is not touched."""
    given = configmap("a", k="1")
    (out,) = await store.apply([given])
    assert out.action == "created"
    assert given == configmap("a", k="1")
    assert await store.get("configmap", "default", "a") == out.object


async def test_object_given_twice_is_applied_in_order(store: EmbeddedStore) -> None:
    """A batch naming one object twice applies both, in order, each with its own RV."""
    out = await store.apply([configmap("a", k="1"), configmap("a", k="2")])
    assert [a.action for a in out] == ["created", "configured"]
    assert [a.object["metadata"]["resourceVersion"] for a in out] == ["1", "2"]
    assert out[1].object["metadata"]["uid"] == out[0].object["metadata"]["uid"]
    assert (await store.get("configmap", None, "a"))["data"] == {"k": "2"}
    same = await store.apply([configmap("b"), configmap("b")])
    assert [a.action for a in same] == ["created", "unchanged"]


async def test_batch_larger_than_a_read_chunk(tmp_path: Path) -> None:
    """Objects read in several chunks still each find their stored version."""
    async with _opened(tmp_path, read_chunk=2) as store:
        await store.apply([configmap(f"c{i}") for i in range(0, 7, 2)])
        out = await store.apply([configmap(f"c{i}") for i in range(7)])
    assert [a.action for a in out] == ["unchanged", "created"] * 3 + ["unchanged"]


@pytest.mark.parametrize("owned", [False, True])
async def test_value_json_cannot_carry_writes_nothing(store: EmbeddedStore, owned: bool) -> None:
    """NaN anywhere in a batch refuses the whole batch, naming the object; no RV is used."""
    batch = [configmap("good"), {**configmap("bad"), "extra": float("nan")}]
    with pytest.raises(InvalidObject, match="default/configmap/bad: not representable"):
        await store.apply(batch, owned=owned)
    assert await store.list("configmap") == ([], "0")
    (out,) = await store.apply([configmap("next")])
    assert out.object["metadata"]["resourceVersion"] == "1"


async def test_merge_statuses_computes_inside_the_write(store: EmbeddedStore) -> None:
    """compute sees each stored object (None if missing); what it returns is merged."""
    await store.apply([node("a"), node("b")])
    await store.update_status("node", None, "a", {"keep": 1, "n": 1})
    seen: list[tuple[int, str | None]] = []

    def compute(index: int, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        seen.append((index, None if obj is None else obj["metadata"]["name"]))
        if obj is None or obj["metadata"]["name"] == "b":
            return None
        return {"n": obj["status"]["n"] + 1}

    out = await store.merge_statuses("node", [(None, "a"), (None, "ghost"), (None, "b")], compute)
    assert seen == [(0, "a"), (1, None), (2, "b")]
    assert out[1] is None and out[2] is not None and "status" not in out[2]
    stored = await store.get("node", None, "a")
    assert stored["status"] == {"keep": 1, "n": 2} == (out[0] or {}).get("status")
    assert (await store.list("node"))[1] == "4"  # two creates, one status, one merge


async def test_merge_statuses_sees_its_own_earlier_merges(store: EmbeddedStore) -> None:
    """A key given twice is computed the second time from the first merge's result."""
    await store.apply([node("a")])

    def bump(index: int, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        assert obj is not None
        return {"n": (obj.get("status") or {}).get("n", 0) + 1}

    await store.merge_statuses("node", [(None, "a"), (None, "a")], bump)
    assert (await store.get("node", None, "a"))["status"] == {"n": 2}


async def test_failed_compute_writes_nothing(store: EmbeddedStore) -> None:
    """If compute raises, no status of the batch is written and no RV is used."""
    await store.apply([node("a"), node("b")])

    def compute(index: int, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        if index == 1:
            raise RuntimeError("boom")
        return {"x": 1}

    with pytest.raises(RuntimeError):
        await store.merge_statuses("node", [(None, "a"), (None, "b")], compute)
    assert "status" not in await store.get("node", None, "a")
    assert (await store.list("node"))[1] == "2"


async def test_update_statuses_keeps_the_callers_dict_private(store: EmbeddedStore) -> None:
    """The stored status is a copy: changing the caller's dict afterwards changes nothing."""
    await store.apply([node("a")])
    status: dict[str, Any] = {"list": [1, 2]}
    (out,) = await store.update_statuses([StatusUpdate("node", None, "a", status)])
    status["list"].append(3)
    assert out is not None and out["status"] == {"list": [1, 2]}
    assert (await store.get("node", None, "a"))["status"] == {"list": [1, 2]}


class _Counting:
    """Counts the statements a store sends its aiosqlite connection."""

    def __init__(self, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        db = store._conn()
        for name in ("execute", "executemany", "execute_fetchall"):
            monkeypatch.setattr(db, name, self._wrap(getattr(db, name)))

    def _wrap(self, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return method(*args, **kwargs)

        return counted


async def test_a_write_costs_the_same_round_trips_for_1_or_200_objects(
    store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN, one read, the rows, the events, COMMIT: five statements at any batch size."""
    await store.apply([configmap(f"c{i}") for i in range(100)])
    counting = _Counting(store, monkeypatch)
    await store.apply([configmap("c0", k="1")])
    assert counting.calls == 5
    counting.calls = 0
    await store.apply([configmap(f"c{i}", k="2") for i in range(200)])
    assert counting.calls == 5
    counting.calls = 0
    await store.update_statuses(
        [StatusUpdate("configmap", None, f"c{i}", {"a": 1}) for i in range(50)]
    )
    assert counting.calls == 5


async def test_object_containing_itself_writes_nothing(store: EmbeddedStore) -> None:
    """A hand-built cycle is refused as an invalid object, not looped on."""
    bad = configmap("loop")
    bad["data"] = {"self": bad}
    with pytest.raises(InvalidObject, match="loop"):
        await store.apply([bad])
    assert await store.list("configmap") == ([], "0")


async def test_owned_objects_are_validated_in_place_as_they_are_applied(
    store: EmbeddedStore,
) -> None:
    """owned=True: the store validates each object itself; the result is what validating
    first gives (namespace defaulted, stringData folded), and the caller's dicts are used."""
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "stringData": {"k": "v"},
    }
    out = await store.apply([configmap("a", k="1"), secret], owned=True)
    assert [a.action for a in out] == ["created", "created"]
    assert secret["metadata"]["namespace"] == "default" and secret["data"] == {"k": "dg=="}
    assert await store.get("secret", "default", "s") == out[1].object


async def test_an_invalid_owned_object_writes_nothing_and_names_the_first_bad_one(
    store: EmbeddedStore,
) -> None:
    """An invalid object in the middle of an owned batch: nothing written, no resourceVersion
    used, and the error is the first invalid object's, as validating all first says it."""
    bad_name = configmap("Bad_Name")
    bad_kind = {"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(InvalidObject) as owned:
        await store.apply([configmap("a"), bad_name, bad_kind], owned=True)
    with pytest.raises(InvalidObject) as first:
        validate_all([configmap("a"), configmap("Bad_Name"), dict(bad_kind)])
    assert str(owned.value) == str(first.value)
    with pytest.raises(InvalidObject, match="Widget"):
        await store.apply([configmap("a"), bad_kind], owned=True)
    assert await store.list("configmap") == ([], "0")
    (created,) = await store.apply([configmap("a")], owned=True)
    assert created.object["metadata"]["resourceVersion"] == "1"


def pod(name: str, image: str = "nginx", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }


async def test_owned_updates_check_a_changed_spec_and_always_the_metadata(
    store: EmbeddedStore,
) -> None:
    """An owned update whose spec equals the stored one skips the spec's checks (it passed them
    when stored) but not the metadata's; a changed spec is checked and bumps generation."""
    await store.apply([pod("web")], owned=True)
    (same,) = await store.apply([pod("web", v="2")], owned=True)
    assert same.action == "configured"
    assert same.object["metadata"]["generation"] == 1
    bad_label = pod("web")
    bad_label["metadata"]["labels"] = {"v": 3}
    with pytest.raises(InvalidObject, match="labels"):
        await store.apply([bad_label], owned=True)
    with pytest.raises(InvalidObject, match="image"):
        await store.apply([pod("web", image=" ")], owned=True)
    (changed,) = await store.apply([pod("web", image="nginx:2", v="2")], owned=True)
    assert changed.object["metadata"]["generation"] == 2
    assert (await store.get("pod", "default", "web"))["metadata"]["labels"] == {"v": "2"}


async def test_an_owned_object_with_a_namespace_that_is_not_text_is_refused(
    store: EmbeddedStore,
) -> None:
    """A namespace that is a list (fuzzed input) is an invalid object, not a crash."""
    bad = pod("web")
    bad["metadata"]["namespace"] = [None]
    with pytest.raises(InvalidObject, match=r"metadata\.namespace"):
        await store.apply([bad], owned=True)
    assert await store.list("pod") == ([], "0")


async def test_an_apply_compares_with_what_was_committed_last(store: EmbeddedStore) -> None:
    """The store keeps the objects it last applied to compare the next apply with; what it
    compares with is still what is stored: not a batch that rolled back, not a status written
    since, not an object deleted since."""
    await store.apply([pod("web")], owned=True)
    with pytest.raises(InvalidObject):
        await store.apply([pod("web", v="2"), configmap("Bad_Name")], owned=True)
    (after_rollback,) = await store.apply([pod("web", v="2")], owned=True)
    assert after_rollback.action == "configured"
    await store.update_status("pod", "default", "web", {"phase": "Running"})
    (after_status,) = await store.apply([pod("web", v="3")], owned=True)
    assert after_status.object["status"] == {"phase": "Running"}
    (same,) = await store.apply([pod("web", v="3")], owned=True)
    assert same.action == "unchanged"
    uid = same.object["metadata"]["uid"]
    await store.delete("pod", "default", "web")
    (again,) = await store.apply([pod("web", v="3")], owned=True)
    assert again.action == "created" and again.object["metadata"]["uid"] != uid


async def test_a_status_written_twice_in_one_batch_ends_with_the_last(
    store: EmbeddedStore,
) -> None:
    """Status writes go out as one multi-row statement: a key given twice keeps its last."""
    await store.apply([configmap("a")])
    await store.update_statuses(
        [
            StatusUpdate("configmap", None, "a", {"phase": "one"}),
            StatusUpdate("configmap", None, "a", {"phase": "two"}),
        ]
    )
    stored = await store.get("configmap", None, "a")
    assert stored["status"] == {"phase": "two"}
    assert stored["metadata"]["resourceVersion"] == "3"


async def test_batches_larger_than_a_statement_are_written_whole(tmp_path: Path) -> None:
    """Rows beyond one multi-row statement's share go in further statements, all of them."""
    async with _opened(tmp_path, rows_per_statement=3) as store:
        out = await store.apply([configmap(f"c{i}", k="1") for i in range(8)])
        assert [a.action for a in out] == ["created"] * 8
        objects, rv = await store.list("configmap")
        assert [o["metadata"]["name"] for o in objects] == [f"c{i}" for i in range(8)]
        assert rv == "8"
        events = [e async for e in _first(store.watch("configmap", "0"), 8)]
        assert [e.object["metadata"]["resourceVersion"] for e in events] == [
            str(i) for i in range(1, 9)
        ]


async def _first(events: AsyncIterator[Any], count: int) -> AsyncIterator[Any]:
    async for event in events:
        yield event
        count -= 1
        if not count:
            return
