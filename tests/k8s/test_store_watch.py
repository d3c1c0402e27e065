"""KubeStore's list + watch against the emulated API server: order, resumption, 410, silence."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudhub.store.kubernetes import KubeSettings, KubeStore
from tests.k8s.objects import Collector, configmap, node, pod
from tests.support.kubeapi import KubeApiEmulator
from tests.support.procs import wait_until
from wire.errors import Gone, StoreError

pytestmark = pytest.mark.timeout(20)

PODS = "/api/v1/pods"


async def test_list_returns_items_with_kind_and_the_list_version(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Listed objects carry kind/apiVersion (the API omits them) and the RV is the list's."""
    kubeapi.seed(node("edge-1"))
    kubeapi.seed(pod("a"))
    items, rv = await store.list("pod")
    assert [(i["kind"], i["apiVersion"], i["metadata"]["name"]) for i in items] == [
        ("Pod", "v1", "a")
    ]
    assert rv == kubeapi.resource_version


async def test_watch_from_list_version_delivers_changes_in_order(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Create, update and delete after the list arrive once each, in order."""
    kubeapi.seed(pod("a"))
    _, rv = await store.list("pod")
    kubeapi.seed(pod("b"))
    changed = pod("a")
    changed["metadata"]["labels"] = {"v": "2"}
    kubeapi.seed(changed)
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: len(watch.events) == 2)
    await store.delete("pod", "default", "a")
    await wait_until(lambda: len(watch.events) == 3)
    assert [(e.type, e.object["metadata"]["name"]) for e in watch.events] == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "a"),
    ]
    assert watch.events[1].object["metadata"]["labels"] == {"v": "2"}
    assert watch.events[2].object["kind"] == "Pod"
    await watch.stop()


async def test_watch_with_empty_since_starts_from_now(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """``since=""`` replays nothing that existed before the call."""
    kubeapi.seed(pod("old"))
    watch = Collector(store.watch("pod", ""))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.seed(pod("new"))
    await wait_until(lambda: watch.events)
    assert [e.object["metadata"]["name"] for e in watch.events] == ["new"]
    await watch.stop()


async def test_bookmarks_move_the_resume_point(kubeapi: KubeApiEmulator, store: KubeStore) -> None:
    """After a bookmark the watch resumes from its RV, so compacting older history is harmless."""
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    for i in range(3):  # other kinds move the global RV; no pod event carries it
        kubeapi.seed(configmap(f"c{i}", {"k": "v"}))
    newest = kubeapi.resource_version
    sent = kubeapi.bookmarks_sent
    await wait_until(lambda: kubeapi.bookmarks_sent > sent)
    kubeapi.compact()  # the list's RV is now too old to resume from
    await kubeapi.kill_watches()
    await wait_until(lambda: len(kubeapi.calls("watch", PODS)) == 2)
    assert kubeapi.calls("watch", PODS)[1].query["resourceVersion"] == newest
    kubeapi.seed(pod("after"))
    await wait_until(lambda: watch.seen("ADDED", "after"))
    assert watch.error is None
    await watch.stop()


async def test_watch_from_compacted_history_raises_gone(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """Asking for history the server no longer has raises Gone (the caller re-lists)."""
    _, rv = await store.list("pod")
    kubeapi.seed(pod("a"))
    kubeapi.compact()
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: watch.error is not None)
    assert isinstance(watch.error, Gone)


async def test_410_error_event_mid_stream_raises_gone(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A watch ERROR event with code 410 on an open stream ends the watch with Gone."""
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.expire_watches()
    await wait_until(lambda: watch.error is not None)
    assert isinstance(watch.error, Gone)


@pytest.mark.parametrize("abrupt", [False, True], ids=["closed", "reset"])
async def test_ended_stream_resumes_from_last_version_without_loss(
    kubeapi: KubeApiEmulator, store: KubeStore, abrupt: bool
) -> None:
    """A stream the server ends (or resets) reopens from the newest RV: nothing lost or doubled."""
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.seed(pod("before"))
    await wait_until(lambda: watch.events)
    await kubeapi.kill_watches(abrupt=abrupt)
    kubeapi.seed(pod("during"))
    await wait_until(lambda: watch.seen("ADDED", "during"))
    kubeapi.seed(pod("after"))
    await wait_until(lambda: watch.seen("ADDED", "after"))
    assert [e.object["metadata"]["name"] for e in watch.events] == ["before", "during", "after"]
    assert watch.error is None
    await watch.stop()


async def test_silent_stream_is_reopened_after_the_inactivity_timeout(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """No event and no bookmark for the inactivity timeout: the store opens a new watch."""
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.freeze_watches()
    await wait_until(lambda: len(kubeapi.calls("watch", PODS)) >= 2, timeout=5)
    kubeapi.thaw_watches()
    kubeapi.seed(pod("later"))
    await wait_until(lambda: watch.seen("ADDED", "later"))
    assert len(watch.seen("ADDED", "later")) == 1
    await watch.stop()


async def test_closing_the_store_ends_its_watches(
    kubeapi: KubeApiEmulator, kubeconfig: Path
) -> None:
    """close() stops the reader threads; open watch iterators end instead of hanging."""
    s = KubeStore.from_config(kubeconfig, settings=KubeSettings(inactivity_timeout=5.0))
    await s.start()
    watch = Collector(s.watch("pod", ""))
    await wait_until(lambda: kubeapi.open_watches == 1)
    await s.close()
    await wait_until(lambda: watch.done)
    assert watch.error is None
    await wait_until(lambda: kubeapi.open_watches == 0)


async def test_after_gone_the_relist_is_not_older_than_the_newest_version_seen(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """A resumed watch lists nothing; after a 410 the re-list asks NotOlderThan what it saw."""
    _, rv = await store.list("pod")
    assert "resourceVersion" not in kubeapi.calls("list", PODS)[-1].query  # a consistent read
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.seed(pod("a"))
    await wait_until(lambda: watch.seen("ADDED", "a"))
    await kubeapi.kill_watches(abrupt=False)
    kubeapi.seed(pod("b"))
    await wait_until(lambda: watch.seen("ADDED", "b"))
    assert len(kubeapi.calls("list", PODS)) == 1
    newest = watch.events[-1].object["metadata"]["resourceVersion"]
    kubeapi.expire_watches()
    await wait_until(lambda: watch.error is not None)
    assert isinstance(watch.error, Gone)
    items, _ = await store.list("pod")
    query = kubeapi.calls("list", PODS)[-1].query
    assert query["resourceVersionMatch"] == "NotOlderThan"
    assert int(query["resourceVersion"]) >= int(newest)
    assert sorted(o["metadata"]["name"] for o in items) == ["a", "b"]


async def test_a_refused_floored_list_is_retried_as_a_consistent_read(
    kubeapi: KubeApiEmulator, store: KubeStore
) -> None:
    """The server refuses the NotOlderThan list: the next list asks without a version."""
    _, rv = await store.list("pod")
    watch = Collector(store.watch("pod", rv))
    await wait_until(lambda: kubeapi.open_watches == 1)
    kubeapi.seed(pod("a"))
    await wait_until(lambda: watch.seen("ADDED", "a"))
    await watch.stop()
    kubeapi.inject(504, method="GET", path=PODS)
    with pytest.raises(StoreError):
        await store.list("pod")
    items, _ = await store.list("pod")
    assert "resourceVersion" not in kubeapi.calls("list", PODS)[-1].query
    assert [o["metadata"]["name"] for o in items] == ["a"]
