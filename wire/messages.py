"""The KubeEdge message envelope, typed.

On the wire a message is one JSON object per websocket text frame::

    {"header": {"msg_id", "parent_msg_id", "timestamp", "resourceversion", "sync", "type"},
     "route":  {"source", "destination", "group", "operation", "resource"},
     "content": <any JSON>}

``timestamp`` is milliseconds since the epoch and ``msg_id`` a UUIDv4, as KubeEdge's beehive
writes them. ``content`` is any JSON value: Kubernetes objects travel as objects, some KubeEdge
messages carry a JSON-encoded string (keepalive ``"ping"``), ACKs carry ``"OK"``.

Operations are kept as plain strings in :class:`Route` so an unknown one still decodes and can
be answered with an ``error`` reply instead of a dropped frame.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Operation(StrEnum):
    """Operations edgebridge understands (KubeEdge's names, plus ``inventory``)."""

    INSERT = "insert"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    QUERY = "query"
    RESPONSE = "response"
    ERROR = "error"
    KEEPALIVE = "keepalive"
    UPLOAD = "upload"
    #: edgebridge extension: the edge states what it has cached (key -> resourceVersion) so the
    #: cloud can send only the difference. A stock KubeEdge edgecore never sends it; the cloud
    #: then falls back to sending everything bound to the node.
    INVENTORY = "inventory"


class Group(StrEnum):
    """Route groups (KubeEdge's)."""

    RESOURCE = "resource"
    TWIN = "twin"
    USER = "user"
    META = "meta"
    HUB = "hub"
    #: logs and exec relayed to a pod (:mod:`wire.streams`)
    STREAM = "stream"


class Header(BaseModel):
    """Message header, field names exactly as KubeEdge serialises them."""

    model_config = ConfigDict(extra="ignore")

    msg_id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    parent_msg_id: str = ""
    timestamp: int = 0
    resourceversion: str = ""
    sync: bool = False
    type: str = ""


class Route(BaseModel):
    """Where a message comes from, goes to, and what it does to which resource."""

    model_config = ConfigDict(extra="ignore")

    source: str = ""
    destination: str = ""
    group: str = ""
    operation: str
    resource: str = ""


class Message(BaseModel):
    """One envelope. Build with :meth:`new`, answer with :meth:`reply` / :meth:`error_reply`."""

    model_config = ConfigDict(extra="ignore")

    header: Header = Field(default_factory=Header)
    route: Route
    content: Any = None

    @classmethod
    def new(
        cls,
        *,
        source: str,
        group: str,
        operation: str,
        resource: str,
        content: Any = None,
        resource_version: str = "",
        parent_id: str = "",
        timestamp_ms: int = 0,
    ) -> Message:
        """Build a fresh message with a new ``msg_id``."""
        return cls(
            header=Header(
                parent_msg_id=parent_id,
                timestamp=timestamp_ms,
                resourceversion=resource_version,
            ),
            route=Route(source=source, group=group, operation=operation, resource=resource),
            content=content,
        )

    @property
    def id(self) -> str:
        return self.header.msg_id

    @property
    def parent_id(self) -> str:
        return self.header.parent_msg_id

    @property
    def operation(self) -> str:
        return self.route.operation

    @property
    def resource(self) -> str:
        return self.route.resource

    def reply(self, content: Any = "OK", *, source: str = "", timestamp_ms: int = 0) -> Message:
        """A ``response`` whose ``parent_msg_id`` is this message's id (an ACK with ``"OK"``)."""
        return self._answer(Operation.RESPONSE, content, source=source, timestamp_ms=timestamp_ms)

    def error_reply(self, reason: str, *, source: str = "", timestamp_ms: int = 0) -> Message:
        """An ``error`` answer carrying a human-readable reason as its content."""
        return self._answer(Operation.ERROR, reason, source=source, timestamp_ms=timestamp_ms)

    def _answer(self, operation: str, content: Any, *, source: str, timestamp_ms: int) -> Message:
        return Message(
            header=Header(parent_msg_id=self.id, timestamp=timestamp_ms),
            route=Route(
                source=source or self.route.destination or self.route.source,
                group=self.route.group,
                operation=operation,
                resource=self.route.resource,
            ),
            content=content,
        )
