"""Random and mutated frames to a live cloudhub link: no crash, no state change, an error
naming the problem for every frame that is not a valid message, and the link keeps working."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from tests.security.conftest import ws_url
from tests.security.fuzzing import (
    LoopThread,
    json_values,
    mutated_json,
    mutated_text,
    store_contents,
)
from tests.support.inproc import edge_tls, join_node
from tests.support.procs import wait_until
from wire.codec import decode, encode
from wire.errors import WireError
from wire.messages import Message

pytestmark = pytest.mark.timeout(120)

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p1", "namespace": "default"},
    "spec": {"nodeName": "edge-1", "containers": [{"name": "c", "image": "x"}]},
}
SEED = json.loads(
    encode(
        Message.new(
            source="edged", group="resource", operation="update",
            resource="default/podstatus/p1", content={"phase": "Running"},
        )
    )
)  # fmt: skip


class Harness:
    def __init__(self, tmp: Path) -> None:
        from websockets.asyncio.client import connect

        self.loop = LoopThread()
        settings = CloudSettings(
            data_dir=tmp / "cloud",
            https_port=0,
            hub=HubSettings(bind="127.0.0.1", ws_port=0, node_rate=0, node_byte_rate=0),
        )
        self.cloud = self.loop.run(cloud_app.start(settings))
        self.loop.run(self.cloud.store.apply([POD]))
        edge = self.loop.run(join_node(self.cloud, "edge-1", tmp / "edge-1"))

        async def open_link() -> ClientConnection:
            return await connect(ws_url(self.cloud, "edge-1"), ssl=edge_tls(edge))

        self.ws = self.loop.run(open_link())

        async def ready() -> bool:
            node = await self.cloud.store.get("node", None, "edge-1")
            conds = (node.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

        # The presence write on connect is the one legitimate change: baseline after it.
        self.loop.run(wait_until(ready, timeout=5))
        self.before = self.snapshot()

    def snapshot(self) -> list[list[str]]:
        return self.loop.run(store_contents(self.cloud.store))

    def exchange(self, frame: str | bytes) -> list[dict[str, Any]]:
        """Send ``frame``, then a keepalive and a query; what the cloud sent until both answers."""

        async def go() -> list[dict[str, Any]]:
            ping = Message.new(
                source="edgehub", group="resource", operation="keepalive", resource="node"
            )
            # edgecontroller answers in order: once this is answered, so is anything the
            # frame made the hub forward to it
            barrier = Message.new(
                source="metamanager", group="resource", operation="query",
                resource="null/node/edge-1",
            )  # fmt: skip
            await self.ws.send(frame)
            await self.ws.send(encode(ping))
            await self.ws.send(encode(barrier))
            got: list[dict[str, Any]] = []
            waiting = {ping.id, barrier.id}
            while waiting:
                msg = json.loads(await self.ws.recv())
                if msg["header"]["parent_msg_id"] in waiting:
                    waiting.discard(msg["header"]["parent_msg_id"])
                else:
                    got.append(msg)
            return got

        return self.loop.run(go())

    def close(self) -> None:
        self.loop.run(self.ws.close())
        self.loop.run(self.cloud.stop())
        self.loop.close()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("fuzz-hub"))
    yield h
    h.close()


def _check(hub: Harness, frame: str | bytes) -> None:
    replies = hub.exchange(frame)
    try:
        decode(frame)
    except WireError:
        # (answers to earlier examples' forwarded writes may still trickle in: skip those)
        errors = [
            r["content"]
            for r in replies
            if r["route"]["operation"] == "error" and not r["header"]["parent_msg_id"]
        ]
        assert errors, f"no error for undecodable frame {frame!r}"
        assert isinstance(errors[0], str) and errors[0].startswith("bad frame: ")
        assert "\n" not in errors[0]
    assert hub.snapshot() == hub.before
    assert "edge-1" in hub.cloud.hub.sessions


_SETTINGS = settings(
    max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)


@_SETTINGS
@given(frame=st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_random_frames_are_refused_and_change_nothing(hub: Harness, frame: str | bytes) -> None:
    """Arbitrary text or bytes: an error reply, the link stays up, the store is untouched."""
    _check(hub, frame)


@_SETTINGS
@given(frame=mutated_text(json.dumps(SEED)))
def test_byte_mutated_frames_are_refused_and_change_nothing(hub: Harness, frame: str) -> None:
    """A real message with bytes flipped, cut or inserted."""
    _check(hub, frame)


@_SETTINGS
@given(doc=mutated_json(SEED))
def test_structure_mutated_frames_are_refused_and_change_nothing(hub: Harness, doc: Any) -> None:
    """A real message with fields removed, retyped or replaced by random JSON."""
    _check(hub, json.dumps(doc))


@_SETTINGS
@given(content=json_values, op=st.sampled_from(["insert", "update", "delete", "query", "upload"]))
def test_writes_and_queries_with_random_content_change_nothing(
    hub: Harness, content: Any, op: str
) -> None:
    """Valid envelopes with random content aimed at other nodes' objects change nothing."""
    for resource in ("null/node/edge-2", "default/pod/other", "default/device/d/twin/x"):
        msg = Message.new(
            source="edged", group="resource", operation=op, resource=resource, content=content
        )
        _check(hub, encode(msg))
