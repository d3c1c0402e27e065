"""The emulated API server keeps the Kubernetes semantics the backend relies on."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from cloudhub.k8s.api import CONFIGMAPS, NODES, PODS, KubeApi, json_patch
from tests.k8s.objects import configmap, node, pod
from tests.support.kubeapi import KubeApiEmulator
from tests.support.kubeapi_model import label_selector, merge_patch
from wire.errors import Conflict, InvalidObject, NotFound

pytestmark = pytest.mark.timeout(20)


async def watch_lines(url: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` events of a raw watch request."""
    out: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        async for line in resp.content:
            out.append(json.loads(line))
            if len(out) == limit:
                break
    return out


async def test_one_global_resource_version_across_kinds(api: KubeApi) -> None:
    """Every write of any kind takes the next version; a list reports the current one."""
    a = await api.create(CONFIGMAPS, "default", configmap("a", {"k": "v"}))
    b = await api.create(NODES, None, node("edge-1"))
    listed = await api.list(CONFIGMAPS)
    rv_a, rv_b = int(a["metadata"]["resourceVersion"]), int(b["metadata"]["resourceVersion"])
    assert rv_b == rv_a + 1 and listed["metadata"]["resourceVersion"] == str(rv_b)
    assert "kind" not in listed["items"][0]  # as the API server: built-in list items lack it


async def test_create_twice_and_stale_replace_conflict(api: KubeApi) -> None:
    """409 AlreadyExists on a second create, 409 Conflict on a replace with an old version."""
    first = await api.create(CONFIGMAPS, "default", configmap("a", {"k": "v"}))
    with pytest.raises(Conflict, match="already exists"):
        await api.create(CONFIGMAPS, "default", configmap("a", {"k": "v"}))
    newer = dict(first, data={"k": "2"})
    await api.replace(CONFIGMAPS, "default", "a", newer)
    with pytest.raises(Conflict, match="modified"):
        await api.replace(CONFIGMAPS, "default", "a", dict(first, data={"k": "3"}))


async def test_unchanged_replace_is_a_no_op_and_spec_changes_bump_generation(
    api: KubeApi,
) -> None:
    """No new version for a write that changes nothing; generation counts spec changes."""
    created = await api.create(PODS, "default", pod("a"))
    same = await api.replace(PODS, "default", "a", created)
    assert same["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    labelled = await api.replace(
        PODS, "default", "a", dict(same, metadata=same["metadata"] | {"labels": {"x": "y"}})
    )
    assert labelled["metadata"]["generation"] == 1
    respec = dict(labelled, spec=labelled["spec"] | {"hostname": "h"})
    assert (await api.replace(PODS, "default", "a", respec))["metadata"]["generation"] == 2


async def test_status_subresource_separates_spec_and_status(api: KubeApi) -> None:
    """The main resource ignores status; /status changes status only."""
    created = await api.create(PODS, "default", pod("a"))
    with_status = dict(created, status={"phase": "Running"})
    assert "status" not in await api.replace(PODS, "default", "a", with_status)
    fresh = await api.get(PODS, "default", "a")
    written = await api.replace(
        PODS, "default", "a", dict(fresh, status={"phase": "Running"}), status=True
    )
    assert written["status"] == {"phase": "Running"}
    patched = await api.patch(PODS, "default", "a", {"status": {"podIP": "10.0.0.1"}}, status=True)
    assert patched["status"] == {"phase": "Running", "podIP": "10.0.0.1"}


async def test_dry_run_stores_nothing(kubeapi: KubeApiEmulator, api: KubeApi) -> None:
    """``dryRun=All`` answers as if written, without writing."""
    await api.create(CONFIGMAPS, "default", configmap("a", {"k": "v"}), dry_run=True)
    assert kubeapi.get("configmaps", "default", "a") is None
    with pytest.raises(NotFound):
        await api.get(CONFIGMAPS, "default", "a")


async def test_unsupported_field_selector_is_a_bad_request(api: KubeApi) -> None:
    """Like the API server, only known fields may be selected on."""
    with pytest.raises(InvalidObject, match="field label not supported"):
        await api.list(PODS, field_selector="spec.schedulerName=x")


async def test_watch_replays_history_then_reports_leaving_the_selector_as_deleted(
    kubeapi: KubeApiEmulator,
) -> None:
    """From an RV: history in order; an object that stops matching comes as DELETED."""
    start = kubeapi.resource_version
    kubeapi.seed(node("edge-1"))
    kubeapi.seed(node("edge-1", edge=False))
    query = f"watch=1&resourceVersion={start}&labelSelector=node-role.kubernetes.io/edge"
    url = f"{kubeapi.url}/api/v1/nodes?{query}"
    events = await watch_lines(url, 2)
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


async def test_watch_from_compacted_history_gets_an_error_410_event(
    kubeapi: KubeApiEmulator,
) -> None:
    """The stream answers 200 and carries one ERROR event whose Status code is 410."""
    start = kubeapi.resource_version
    kubeapi.seed(node("edge-1"))
    kubeapi.compact()
    (event,) = await watch_lines(f"{kubeapi.url}/api/v1/nodes?watch=1&resourceVersion={start}", 1)
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_bookmarks_carry_the_current_version(kubeapi: KubeApiEmulator) -> None:
    """A silent watch that asked for bookmarks gets one with the latest resourceVersion."""
    kubeapi.seed(configmap("a", {"k": "v"}))
    query = f"watch=1&resourceVersion={kubeapi.resource_version}&allowWatchBookmarks=true"
    url = f"{kubeapi.url}/api/v1/nodes?{query}"
    (event,) = await watch_lines(url, 1)
    assert event["type"] == "BOOKMARK"
    assert event["object"]["metadata"]["resourceVersion"] == kubeapi.resource_version


def test_merge_patch_and_label_selector_rules() -> None:
    """null deletes, objects merge, lists replace; ``!key`` and ``key!=v`` select as documented."""
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None}, "l": [3]}) == {
        "a": {"c": 2},
        "l": [3],
    }
    labelled = {"metadata": {"labels": {"role": "edge"}}}
    assert label_selector("role")(labelled) and not label_selector("!role")(labelled)
    assert label_selector("role!=cloud")(labelled) and not label_selector("role=cloud")(labelled)


async def test_json_patch_applies_atomically_and_a_failed_test_writes_nothing(
    kubeapi: KubeApiEmulator, api: KubeApi
) -> None:
    """RFC 6902: a patch whose ``test`` fails is 422 and leaves the object as it was."""
    await api.create(CONFIGMAPS, "default", configmap("a", {"k": "v"}))
    ok = [{"op": "test", "path": "/data/k", "value": "v"}]
    await json_patch(
        api, CONFIGMAPS, "default", "a", [*ok, {"op": "add", "path": "/data/n", "value": "1"}]
    )
    refused = [{"op": "test", "path": "/data/k", "value": "x"}, {"op": "remove", "path": "/data/k"}]
    with pytest.raises(InvalidObject):
        await json_patch(api, CONFIGMAPS, "default", "a", refused)
    with pytest.raises(NotFound):
        await json_patch(api, CONFIGMAPS, "default", "missing", ok)
    stored = kubeapi.get("configmaps", "default", "a")
    assert stored is not None and stored["data"] == {"k": "v", "n": "1"}
