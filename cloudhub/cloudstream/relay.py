"""The ``cloudstream`` module: logs and exec streams relayed over a node's link.

KubeEdge's cloudstream keeps a second tunnel per edge; here a stream is a few messages on the
link the node already has (:mod:`wire.streams`). An HTTP handler (admin API, kubelet-shaped
endpoints) calls :meth:`CloudStream.open` and reads the :class:`RelayedStream` it returns;
the module sends the ``open`` through the hub, and routes what the edge sends back to the
stream it belongs to::

    handler ──open()──> cloudstream ──bus──> hub ──link──> edgestream (edge)
    handler <──next()── cloudstream <──bus── hub <──link── data / close

Rules kept here:

- a stream belongs to the node it was opened on: data or a close from any other node (named
  by the hub from the certificate) is dropped and logged;
- flow control (:class:`wire.streams.Inflow`): credits go out as the handler consumes, and an
  edge that overruns its window gets its stream closed with an error;
- a node that disconnects ends its streams at once, with an error naming it (the hub's
  presence report; the module is in the ``lifecycle`` group for that);
- a node that does not answer an open (``opened``, data or a close) within
  ``answer_timeout`` seconds gets the stream cancelled, and the user one line saying so;
- a handler that goes away (client gone, Ctrl-C of ``-f``) cancels its stream on the edge.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Protocol

from cloudhub import routes
from hive.bus import Bus
from wire.errors import BridgeError, DecodeError, InvalidResource, StreamError
from wire.messages import Message
from wire.resources import split_node_prefix
from wire.streams import (
    DEFAULT_WINDOW,
    Cancel,
    Chunk,
    Close,
    Credit,
    ExecRequest,
    Inflow,
    Input,
    LogsRequest,
    Open,
    Opened,
    Resize,
    StreamContent,
    from_message,
    is_stream,
    pod_resource,
    to_message,
)

log = logging.getLogger(__name__)

#: seconds an edge has to answer an open before the user is told it did not
ANSWER_TIMEOUT = 15.0


class NodeOffline(BridgeError):
    """The pod's node has no link to this cloudhub."""


class StreamOpener(Protocol):
    """What HTTP handlers need: open a stream to a pod on a node."""

    async def open(
        self, node: str, request: LogsRequest | ExecRequest, *, window: int = DEFAULT_WINDOW
    ) -> RelayedStream: ...


class RelayedStream:
    """One stream, as its HTTP handler sees it: :meth:`next` until a :class:`Close`."""

    def __init__(
        self, relay: CloudStream, *, stream_id: str, node: str, resource: str, window: int
    ) -> None:
        self._relay = relay
        self.id = stream_id
        self.node = node
        #: cloud-side resource (``node/{node}/{ns}/pod/{name}``)
        self.resource = resource
        self.inflow = Inflow(window)
        self._events: asyncio.Queue[Chunk | Close] = asyncio.Queue()
        self.closed = False
        #: the edge said something about this stream (opened, data or close)
        self.answered = False
        self._unanswered: asyncio.TimerHandle | None = None

    async def next(self) -> Chunk | Close:
        """The next chunk, or the end; call :meth:`consumed` once a chunk's bytes are out."""
        return await self._events.get()

    def consumed(self, size: int) -> None:
        """The client took ``size`` bytes: grant the edge more when due."""
        if self.closed:
            return
        granted = self.inflow.consumed(size)
        if granted is not None:
            self._relay.send(self, Credit(stream=self.id, consumed=granted))

    def send_input(self, data: bytes, *, eof: bool = False) -> None:
        if not self.closed:
            self._relay.send(self, Input(stream=self.id, data=data, eof=eof))

    def resize(self, width: int, height: int) -> None:
        if not self.closed:
            self._relay.send(self, Resize(stream=self.id, width=width, height=height))

    def cancel(self, reason: str = "client went away") -> None:
        """Stop the stream on the edge (no-op once it ended)."""
        if not self.closed:
            self._relay.send(self, Cancel(stream=self.id, reason=reason))
            self._relay.forget(self, None)

    def _deliver(self, event: Chunk | Close) -> None:
        self._events.put_nowait(event)


class CloudStream:
    """Owns every open stream of this cloudhub."""

    name = routes.CLOUDSTREAM
    group = routes.LIFECYCLE_GROUP
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        is_online: Callable[[str], bool],
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self._bus = bus
        self._is_online = is_online
        #: seconds a node has to answer an open
        self.answer_timeout = answer_timeout
        self.streams: dict[str, RelayedStream] = {}

    async def open(
        self, node: str, request: LogsRequest | ExecRequest, *, window: int = DEFAULT_WINDOW
    ) -> RelayedStream:
        """Start a stream to ``request``'s pod on ``node``.

        Raises:
            NodeOffline: the node has no link now.
        """
        if not self._is_online(node):
            raise NodeOffline(f"node {node} is offline (no link to cloudhub)")
        stream_id = uuid.uuid4().hex
        resource = f"node/{node}/{pod_resource(request.namespace, request.pod)}"
        stream = RelayedStream(
            self, stream_id=stream_id, node=node, resource=resource, window=window
        )
        # Registered before the open leaves: a disconnect reported meanwhile ends it.
        self.streams[stream_id] = stream
        stream._unanswered = asyncio.get_running_loop().call_later(
            self.answer_timeout, self._no_answer, stream
        )
        log.info(
            "stream %s: %s of %s/%s on node %s",
            stream_id[:8],
            request.kind,
            request.namespace,
            request.pod,
            node,
        )
        await self._bus.send(
            routes.HUB,
            to_message(
                Open(stream=stream_id, request=request, window=window),
                source=self.name,
                resource=resource,
            ),
        )
        return stream

    def send(self, stream: RelayedStream, content: StreamContent) -> None:
        """Queue a message to the stream's edge (never waits: credits, input and cancels are
        small, and the hub's inbox is drained by one task that does not block)."""
        msg = to_message(content, source=self.name, resource=stream.resource)
        if not self._bus.send_nowait(routes.HUB, msg):
            asyncio.get_running_loop().create_task(
                self._bus.send(routes.HUB, msg), name=f"stream:{stream.id[:8]}"
            )

    def forget(self, stream: RelayedStream, end: Close | None) -> None:
        """Drop ``stream``; hand it ``end`` as its last event, if given."""
        if self.streams.pop(stream.id, None) is None:
            return
        stream.closed = True
        if stream._unanswered is not None:
            stream._unanswered.cancel()
        if end is not None:
            stream._deliver(end)

    async def run(self) -> None:
        try:
            while True:
                msg = await self._bus.receive(self.name)
                try:
                    self._route(msg)
                except Exception:
                    log.exception("cloudstream failed on %s %s", msg.operation, msg.resource)
        finally:
            for stream in list(self.streams.values()):
                self.forget(
                    stream, Close(stream=stream.id, error="cloudhub stopping", reason="Failed")
                )

    def _route(self, msg: Message) -> None:
        if isinstance(msg.content, routes.NodeStatusReport):
            if not msg.content.online:
                node, _ = split_node_prefix(msg.resource)
                self._node_gone(node)
            return
        if not is_stream(msg):
            return
        try:
            node, _ = split_node_prefix(msg.resource)
            content = from_message(msg)
        except (DecodeError, InvalidResource) as exc:
            log.warning("dropped a stream message: %s", exc)
            return
        stream = self.streams.get(content.stream)
        if stream is None:
            return  # ended here already (cancelled, node gone): the edge's late output
        if stream.node != node:
            log.warning(
                "node %s sent %s for a stream of node %s; dropped", node, msg.operation, stream.node
            )
            return
        if isinstance(content, Opened | Chunk | Close):
            stream.answered = True
            if stream._unanswered is not None:
                stream._unanswered.cancel()
        if isinstance(content, Chunk):
            try:
                stream.inflow.received(content.seq, len(content.data))
            except StreamError as exc:
                log.warning("stream %s from node %s: %s", stream.id[:8], node, exc)
                stream.cancel(str(exc))
                stream._deliver(Close(stream=stream.id, error=str(exc), reason="Failed"))
                return
            stream._deliver(content)
        elif isinstance(content, Close):
            self.forget(stream, content)
        elif not isinstance(content, Opened):
            log.warning("node %s sent a cloud-side stream %s; dropped", node, msg.operation)

    def _no_answer(self, stream: RelayedStream) -> None:
        """The edge said nothing about ``stream`` in time: stop it there, tell the user."""
        if stream.answered or stream.closed:
            return
        error = f"node {stream.node} did not answer within {self.answer_timeout:g}s"
        log.warning("stream %s: %s", stream.id[:8], error)
        stream.cancel(error)
        stream._deliver(Close(stream=stream.id, error=error, reason="Unavailable"))

    def _node_gone(self, node: str) -> None:
        for stream in [s for s in self.streams.values() if s.node == node]:
            self.forget(
                stream,
                Close(stream=stream.id, error=f"node {node} disconnected", reason="Unavailable"),
            )
