"""A hand-driven stock KubeEdge v1.15 edgecore link for protocol tests (no KubeEdge binaries).

It connects as stock edgehub does (``node_id`` and ``project_id`` headers, no heartbeat
header, no inventory) and ACKs every object (group ``resource``, no parent) as stock
metamanager does after writing its SQLite row.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from cloudhub.app import CloudApp
from edgecore.config import EdgeSettings
from tests.support.inproc import edge_tls
from wire.codec import encode
from wire.messages import Message

#: the project id stock edgehub puts in its URL and headers
PROJECT = "e632aba927ea4ac2b575ec1603d56f10"


class StockEdge:
    """The cloud side of a hand-driven stock link: frames kept in arrival order; every
    object (group ``resource``, no parent) is ACKed as stock metamanager does."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []

    async def send(self, msg: Message) -> None:
        await self.ws.send(encode(msg))

    def objects(self) -> list[dict[str, Any]]:
        """The object frames received so far (not replies, not twin messages)."""
        return [
            f
            for f in self.frames
            if f["route"]["group"] == "resource" and not f["header"]["parent_msg_id"]
        ]

    async def until(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first frame (already received or next) that ``match`` accepts."""
        frame: dict[str, Any]
        for frame in self.frames:
            if match(frame):
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                route, header = frame["route"], frame["header"]
                if route["group"] == "resource" and not header["parent_msg_id"]:
                    ack = Message.new(
                        source="metaManager",
                        group="resource",
                        operation="response",
                        resource=route["resource"],
                        content="OK",
                    )
                    ack.header.parent_msg_id = header["msg_id"]
                    await self.send(ack)
                if match(frame):
                    return frame


@asynccontextmanager
async def stock_connect(cloud: CloudApp, edge: EdgeSettings, node: str) -> AsyncIterator[StockEdge]:
    """``node``'s link to ``cloud`` as a stock edgecore opens it."""
    url = f"wss://127.0.0.1:{cloud.ws_port}/{PROJECT}/{node}/events"
    headers = {"node_id": node, "project_id": PROJECT}
    async with connect(url, ssl=edge_tls(edge), additional_headers=headers) as ws:
        yield StockEdge(ws)
