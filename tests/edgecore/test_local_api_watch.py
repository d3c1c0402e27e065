"""Local API watch: initial ADDED events, live changes, filters, clean disconnect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgecore.metaserver.server import LocalApiServer, bound_port, make_app, serve
from edgecore.metastore import Change, MetaStore


def pod(name: str, ns: str = "default", rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv},
    }


async def eventually(cond: Callable[[], bool], timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class Server:
    def __init__(self, store: MetaStore, runner: LocalApiServer, base: str) -> None:
        self.store, self.runner, self.base = store, runner, base


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    store = await MetaStore.open(tmp_path / "edgecore.db")
    await store.apply([Change("default/pod/a", "1", pod("a"))])
    runner = await serve(make_app(store=store, node_name="edge-1"), "127.0.0.1", 0)
    yield Server(store, runner, f"http://127.0.0.1:{bound_port(runner)}")
    await runner.cleanup()
    await store.close()


async def next_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    async with asyncio.timeout(2):
        line = await resp.content.readline()
    assert line.endswith(b"\n"), line
    event: dict[str, Any] = json.loads(line)
    return event


async def test_watch_lists_then_streams_changes(server: Server) -> None:
    """watch=true sends ADDED for what is cached, then MODIFIED/ADDED/DELETED as they commit."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base + "/api/v1/namespaces/default/pods?watch=true") as resp,
    ):
        assert resp.status == 200
        assert resp.headers.get("Transfer-Encoding") == "chunked"
        first = await next_event(resp)
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
        await server.store.apply([Change("default/pod/a", "2", pod("a", rv="2"))])
        await server.store.apply([Change("default/pod/b", "1", pod("b"))])
        await server.store.apply([Change("default/pod/a", None, None)])
        events = [await next_event(resp) for _ in range(3)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"),
        ("ADDED", "b"),
        ("DELETED", "a"),
    ]
    assert events[0]["object"]["metadata"]["resourceVersion"] == "2"


async def test_watch_filters_by_namespace_and_type(server: Server) -> None:
    """A namespaced watch does not see other namespaces or other types."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base + "/api/v1/namespaces/prod/pods?watch=1") as resp,
    ):
        await server.store.apply(
            [
                Change("default/pod/x", "1", pod("x")),
                Change("prod/configmap/c", "1", {"kind": "ConfigMap"}),
                Change("prod/pod/db", "1", pod("db", "prod")),
            ]
        )
        event = await next_event(resp)
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "db")


async def test_client_disconnect_releases_subscription(server: Server) -> None:
    """When the watch client goes away the server drops its store subscription."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base + "/api/v1/pods?watch=true") as resp,
    ):
        await next_event(resp)
        assert server.store.subscribers == 1
    await eventually(lambda: server.store.subscribers == 0)


async def test_shutdown_ends_open_watches(server: Server) -> None:
    """Stopping the server ends open watch streams promptly."""
    async with aiohttp.ClientSession() as session:
        async with session.get(server.base + "/api/v1/pods?watch=true") as resp:
            await next_event(resp)
            async with asyncio.timeout(2):
                await server.runner.cleanup()
                rest = await resp.content.read()
        assert rest == b""
    assert server.store.subscribers == 0


async def test_timeout_seconds_ends_the_stream(server: Server) -> None:
    """timeoutSeconds ends the watch after that long, with a complete chunked body."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base + "/api/v1/pods?watch=true&timeoutSeconds=0.05") as resp,
    ):
        async with asyncio.timeout(2):
            body = await resp.read()
    assert [json.loads(line)["type"] for line in body.splitlines()] == ["ADDED"]


async def test_watch_on_single_object_is_400(server: Server) -> None:
    """watch is refused on a named object with a BadRequest Status."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.base + "/api/v1/namespaces/default/pods/a?watch=true") as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["reason"] == "BadRequest"
