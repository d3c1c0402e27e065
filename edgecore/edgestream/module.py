"""The ``edgestream`` module: answers the cloud's logs and exec streams (:mod:`wire.streams`).

KubeEdge's edgestream keeps its own tunnel to cloudstream; here the streams ride the node's
link, in and out through edgehub like every other message. For each ``open`` the module
starts one task (owned by the module's TaskGroup) that finds the container by edged's labels
and then:

- **logs**: reads its CRI log file (the last N lines with ``tail``), and with ``follow``
  keeps reading what is written next; when the file is rotated it reopens it, and when the
  container restarts it goes on with the new container's file. A follow ends when the
  container has exited and no new one started within :data:`RESTART_GRACE`.
- **exec**: runs the command through CRI ``ExecSync`` and sends stdout and stderr as two
  channels, then the exit code. With input or a terminal (``-i``/``-t``) it goes through
  CRI ``Exec`` and the runtime's streaming server instead (:mod:`.interactive`).

Output respects the stream's window (:class:`wire.streams.Outflow`): the task waits for the
cloud's credit rather than queueing, so a chatty ``-f`` holds at most one window of the
link. ``cancel`` from the cloud, or the link going down, stops the task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from edgecore.edgestream import interactive
from edgecore.edgestream.logfile import LogFile, previous_log, read_tail
from edgecore.edgestream.runtime import RuntimeContainer, StreamRuntime
from edgecore.modules import EDGEHUB, EDGESTREAM, EDGESTREAM_GROUP
from hive.bus import Bus
from wire.errors import BridgeError, DecodeError, StreamError
from wire.messages import Message
from wire.session import DISCONNECTED
from wire.streams import (
    Cancel,
    Channel,
    Chunk,
    Close,
    Credit,
    ExecRequest,
    Input,
    LogsRequest,
    Open,
    Opened,
    Outflow,
    Resize,
    StreamContent,
    chunks,
    from_message,
    is_stream,
    log_output,
    to_message,
)

log = logging.getLogger(__name__)

#: edgehub's notices of the link going down (see edgecore.edgehub.module)
#: streams open at once on this node; more are refused (each holds a window of memory)
MAX_STREAMS = 64
#: seconds between looks at a followed log that has nothing new
POLL_INTERVAL = 0.2
#: seconds between looks for a newer container (a restart) while following
RESTART_CHECK = 1.0
#: seconds a follow waits for an exited container to be restarted before it ends
RESTART_GRACE = 15.0
#: input messages of an interactive exec not yet written to the runtime; more are dropped
MAX_PENDING_INPUT = 1024


@dataclass
class _Stream:
    open: Open
    resource: str
    outflow: Outflow
    room: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    #: input and terminal resizes for an interactive exec
    inputs: asyncio.Queue[Input | Resize] = field(
        default_factory=lambda: asyncio.Queue(MAX_PENDING_INPUT)
    )


class EdgeStream:
    """Serves every stream the cloud opens on this node."""

    name = EDGESTREAM
    group = EDGESTREAM_GROUP
    enabled = True

    def __init__(
        self, *, bus: Bus, runtime: StreamRuntime | None, node_name: str, no_runtime: str = ""
    ) -> None:
        """Args:
        runtime: the container runtime; None when this node runs none (``--runtime none``).
        no_runtime: why there is none (said to the user who asks for logs or exec).
        """
        self._bus = bus
        self._runtime = runtime
        self._node = node_name
        self._no_runtime = no_runtime or f"node {node_name} runs no container runtime"
        self.streams: dict[str, _Stream] = {}

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                try:
                    while True:
                        msg = await self._bus.receive(self.name)
                        if msg.operation == DISCONNECTED:
                            self._cancel_all("the cloud link went down")
                        elif is_stream(msg):
                            await self._route(msg, tg)
                finally:
                    self._cancel_all("edgecore stopping")
        except asyncio.CancelledError:
            # stopping (a crash is restarted by the runner and keeps the connection)
            if self._runtime is not None:
                await self._runtime.close()
            raise

    def _cancel_all(self, why: str) -> None:
        for stream in list(self.streams.values()):
            if stream.task is not None:
                stream.task.cancel(why)
        self.streams.clear()

    async def _route(self, msg: Message, tg: asyncio.TaskGroup) -> None:
        try:
            content = from_message(msg)
        except DecodeError as exc:
            log.warning("bad stream message from the cloud: %s", exc)
            return
        stream = self.streams.get(content.stream)
        if isinstance(content, Open):
            if stream is not None:
                return  # a repeat
            if len(self.streams) >= MAX_STREAMS:
                await self._send(
                    msg.resource,
                    Close(
                        stream=content.stream,
                        error=f"node {self._node} has {MAX_STREAMS} streams open; try later",
                        reason="Unavailable",
                    ),
                )
                return
            stream = _Stream(content, msg.resource, Outflow(content.window))
            stream.room.set()
            self.streams[content.stream] = stream
            # First, so that the cloud knows the stream is served even while it is silent.
            await self._send(msg.resource, Opened(stream=content.stream))
            stream.task = tg.create_task(
                self._serve(stream), name=f"edgestream:{content.stream[:8]}"
            )
        elif stream is None:
            return  # ended here already
        elif isinstance(content, Credit):
            try:
                if stream.outflow.credit(content.consumed):
                    stream.room.set()
            except StreamError as exc:
                log.warning("stream %s: %s", content.stream[:8], exc)
        elif isinstance(content, Cancel):
            log.info("stream %s cancelled: %s", content.stream[:8], content.reason or "by cloud")
            self.streams.pop(content.stream, None)
            if stream.task is not None:
                stream.task.cancel()
        elif isinstance(content, Input | Resize):
            try:
                stream.inputs.put_nowait(content)
            except asyncio.QueueFull:
                log.warning("stream %s: input not read by the command; dropped", content.stream[:8])

    async def _send(self, resource: str, content: StreamContent) -> None:
        await self._bus.send(EDGEHUB, to_message(content, source=self.name, resource=resource))

    async def _serve(self, stream: _Stream) -> None:
        """One stream from open to close; never raises (a failure is the stream's Close)."""
        sid = stream.open.stream
        req = stream.open.request
        end: Close
        try:
            if self._runtime is None:
                end = Close(stream=sid, error=self._no_runtime, reason="BadRequest")
            elif isinstance(req, LogsRequest):
                end = await self._logs(stream, self._runtime, req)
            else:
                end = await self._exec(stream, self._runtime, req)
        except asyncio.CancelledError:
            self.streams.pop(sid, None)
            return  # the cloud cancelled, or the link is gone: nobody to tell
        except BridgeError as exc:
            end = Close(stream=sid, error=" ".join(str(exc).split()), reason="Failed")
        except Exception as exc:
            log.exception("stream %s failed", sid[:8])
            end = Close(stream=sid, error=f"edgestream failed: {exc}", reason="Failed")
        if self.streams.pop(sid, None) is not None:
            await self._send(stream.resource, end)

    async def _find(
        self, runtime: StreamRuntime, req: LogsRequest | ExecRequest
    ) -> RuntimeContainer | None:
        assert req.container is not None
        return await runtime.find(req.namespace, req.pod, req.container)

    def _not_found(self, stream: _Stream) -> Close:
        req = stream.open.request
        return Close(
            stream=stream.open.stream,
            error=f"container {req.container} of pod {req.namespace}/{req.pod} has not been "
            f"created on node {self._node}",
            reason="NotFound",
        )

    async def _output(self, stream: _Stream, data: bytes, channel: Channel = "stdout") -> None:
        """Send ``data`` as chunks, each when the window has room for it."""
        for piece in chunks(data):
            while stream.outflow.room() < len(piece):
                stream.room.clear()
                await stream.room.wait()
            seq = stream.outflow.sent(len(piece))
            await self._send(
                stream.resource,
                Chunk(stream=stream.open.stream, seq=seq, channel=channel, data=piece),
            )

    async def _logs(self, stream: _Stream, runtime: StreamRuntime, req: LogsRequest) -> Close:
        container = await self._find(runtime, req)
        if container is None:
            return self._not_found(stream)
        sid = stream.open.stream
        path = container.log_path
        if req.previous:
            previous = previous_log(path)
            if previous is None:
                return Close(
                    stream=sid,
                    error=f'previous terminated container "{req.container}" in pod '
                    f'"{req.pod}" not found',
                    reason="BadRequest",
                )
            path, req = previous, req.model_copy(update={"follow": False})
        if req.tail is not None:
            text, logfile = read_tail(path, req.tail, timestamps=req.timestamps)
            await self._output(stream, text)
        else:
            logfile = LogFile(path)
            await self._drain(stream, logfile, req)
        try:
            if req.follow:
                await self._follow(stream, runtime, req, container, logfile)
        finally:
            logfile.close()
        return Close(stream=sid, exit_code=0)

    async def _drain(self, stream: _Stream, logfile: LogFile, req: LogsRequest) -> bool:
        """Send every complete line written so far; whether there were any."""
        sent = False
        for block in logfile.lines():
            data = b"".join(log_output(e, timestamps=req.timestamps) for e in block)
            await self._output(stream, data)
            sent = True
        return sent

    async def _follow(
        self,
        stream: _Stream,
        runtime: StreamRuntime,
        req: LogsRequest,
        container: RuntimeContainer,
        logfile: LogFile,
    ) -> None:
        """Keep sending what is written, across rotations and restarts."""
        loop = asyncio.get_running_loop()
        next_check = loop.time() + RESTART_CHECK
        exited_since: float | None = None
        while True:
            if await self._drain(stream, logfile, req):
                continue
            if logfile.replaced():
                continue
            if loop.time() >= next_check:
                next_check = loop.time() + RESTART_CHECK
                newest = await self._find(runtime, req)
                if newest is not None and newest.id != container.id:
                    # a restart: finish the old file, then the new container's from its start
                    await self._drain(stream, logfile, req)
                    logfile.close()
                    container, logfile = newest, LogFile(newest.log_path)
                    exited_since = None
                    continue
                if newest is None or not newest.running:
                    exited_since = exited_since or time.monotonic()
                    if time.monotonic() - exited_since > RESTART_GRACE:
                        await self._drain(stream, logfile, req)
                        return
                else:
                    exited_since = None
            await asyncio.sleep(POLL_INTERVAL)

    async def _exec(self, stream: _Stream, runtime: StreamRuntime, req: ExecRequest) -> Close:
        sid = stream.open.stream
        container = await self._find(runtime, req)
        if container is None:
            return self._not_found(stream)
        if not container.running:
            return Close(
                stream=sid,
                error=f"container {req.container} of pod {req.namespace}/{req.pod} is not running",
                reason="BadRequest",
            )
        if req.tty or req.stdin:
            url = await runtime.exec_url(container.id, req.command, tty=req.tty, stdin=req.stdin)

            async def output(data: bytes, channel: Channel) -> None:
                await self._output(stream, data, channel)

            code, error = await interactive.relay(url, inputs=stream.inputs, output=output)
            if error is not None:
                return Close(stream=sid, error=error, reason="Failed")
            return Close(stream=sid, exit_code=code)
        result = await runtime.exec_sync(container.id, req.command)
        await self._output(stream, result.stdout, "stdout")
        await self._output(stream, result.stderr, "stderr")
        return Close(stream=sid, exit_code=result.exit_code)


__all__ = ["EdgeStream"]
