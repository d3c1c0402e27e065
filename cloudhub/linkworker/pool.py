"""cloudhub's side of its link workers: starting them, their channels, and relayed links.

:class:`LinkWorkers` starts N ``python -m cloudhub.linkworker`` processes on the listening
socket the hub bound, restarts one that dies (with jittered backoff; its edges reconnect, to
whichever worker accepts them), and stops them with cloudhub. Each worker's channel turns
records into calls on the hub: a HELLO is answered at once from the hub's ``admit`` (identity
from the certificate, revocation, impersonation), and an accepted edge gets a
:class:`RelayedLink` and a task running the hub's ``serve`` for it, exactly as a link this
process terminated would.

Records to a worker are buffered and written once per event loop turn
(:class:`~cloudhub.linkworker.channel.RecordChannel`), so a fan-out to a thousand nodes is
one socket write, not a thousand TLS records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed

from cloudhub.linkworker.channel import RecordChannel
from cloudhub.linkworker.records import Kind, Record
from cloudhub.linkworker.worker import WorkerConfig
from hive.backoff import backoff
from wire.errors import AuthError

log = logging.getLogger(__name__)

#: frames queued for the hub on one link before its worker is told to stop reading it
PAUSE_AT = 256
#: ... and the queue length at which reading resumes
RESUME_AT = 32
#: a worker that ran this long before dying is restarted without waiting
_STABLE_AFTER = 30.0
#: seconds a stopping cloudhub waits for its workers to exit before killing them
_STOP_GRACE = 5.0


@dataclass(frozen=True, slots=True)
class Hello:
    """A peer's websocket upgrade request, as its worker saw it."""

    der: bytes | None
    path: str
    headers: Headers
    remote: tuple[Any, ...]


#: the hub's check of an upgrade: the peer (as the hub's identify returns it) or AuthError
Admit = Callable[[Hello], Any]
#: the hub's handling of an accepted link until it ends
Serve = Callable[["RelayedLink", Any], Coroutine[Any, Any, None]]


class RelayedLink:
    """An edge's connection held by a link worker (see :class:`cloudhub.hub.links.Link`).

    Writes never wait here: they join the channel's buffer, and the worker holds back what a
    slow edge cannot take yet (within its own time and size limits). Frames read arrive from
    the channel into a queue the hub's reader task drains; a long queue pauses reading at
    the worker, so pacing a node still slows its TCP sender.
    """

    __slots__ = (
        "_channel",
        "_closed",
        "_frames",
        "_paused",
        "_remote",
        "_waiting",
        "_wakeup",
        "conn",
        "sink",
    )

    def __init__(self, channel: _Channel, conn: int, remote: tuple[Any, ...]) -> None:
        self._channel = channel
        self.conn = conn
        self._remote = remote
        self._frames: deque[str | bytes] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._paused = False
        #: the reader task is parked in :meth:`__anext__` with nothing queued
        self._waiting = False
        #: takes a frame at once if it can (the hub's ACK fast path); called only while the
        #: reader is parked with nothing queued, so frames are still handled in order
        self.sink: Callable[[str | bytes], bool] | None = None

    @property
    def remote_address(self) -> Any:
        return self._remote

    def may_wait(self, frames: list[str]) -> bool:
        return not self._channel.writable.is_set()

    def may_wait_one(self, frame: str) -> bool:
        return not self._channel.writable.is_set()

    def write_now(self, frame: str) -> bool:
        if self._closed:
            return False
        try:
            data = frame.encode()
        except UnicodeEncodeError:
            return False  # send fails the link over it, as websockets' send does
        self._channel.emit(Kind.SEND, self.conn, data)
        return True

    def write_now_all(self, frames: list[str]) -> bool:
        if self._closed:
            return False
        try:
            encoded = [frame.encode() for frame in frames]
        except UnicodeEncodeError:
            return False
        for data in encoded:
            self._channel.emit(Kind.SEND, self.conn, data)
        return True

    def take_frames(self, sink: Callable[[str | bytes], bool] | None) -> None:
        self.sink = sink

    async def send(self, frame: str) -> None:
        if self._closed:
            raise ConnectionClosed(None, None)
        try:
            data = frame.encode()
        except UnicodeEncodeError:
            self.abort()
            raise
        await self._channel.writable.wait()
        if self._closed:
            raise ConnectionClosed(None, None)
        self._channel.emit(Kind.SEND, self.conn, data)

    def abort(self) -> None:
        if not self._closed:
            self._channel.emit(Kind.CLOSE, self.conn)
            self._end(drop=True)

    async def close(self, code: int, reason: str) -> None:
        if not self._closed:
            how = json.dumps({"code": code, "reason": reason}).encode()
            self._channel.emit(Kind.CLOSE, self.conn, how)
            self._end(drop=True)

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        frames = self._frames
        while True:
            if frames:
                frame = frames.popleft()
                if self._paused and len(frames) <= RESUME_AT and not self._closed:
                    self._paused = False
                    self._channel.emit(Kind.RESUME, self.conn)
                return frame
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            self._waiting = True
            try:
                await self._wakeup.wait()
            finally:
                self._waiting = False

    # -- fed by the channel --------------------------------------------------------------------

    def feed(self, frame: str | bytes) -> None:
        if self._closed:
            return
        frames = self._frames
        if self._waiting and not frames and self.sink is not None and self.sink(frame):
            return
        frames.append(frame)
        self._wakeup.set()
        if len(frames) >= PAUSE_AT and not self._paused:
            self._paused = True
            self._channel.emit(Kind.PAUSE, self.conn)

    def ended(self) -> None:
        """The worker says the connection is gone: what was read before still counts."""
        self._end(drop=False)

    def _end(self, *, drop: bool) -> None:
        self._closed = True
        if drop:
            self._frames.clear()
        self._wakeup.set()
        self._channel.forget(self.conn)


class _Channel(RecordChannel):
    """cloudhub's end of one worker's socketpair: frames to links, HELLOs to the pool."""

    def __init__(self, pool: LinkWorkers, index: int) -> None:
        super().__init__(f"link worker {index}")
        self._pool = pool
        self.index = index
        self.links: dict[int, RelayedLink] = {}

    def received(self, records: list[Record]) -> None:
        links = self.links
        for record in records:
            kind = record.kind
            if kind == Kind.TEXT:
                link = links.get(record.conn)
                if link is not None:
                    # The worker's websockets checked the frame is UTF-8 before relaying it.
                    link.feed(record.payload.decode())
            elif kind == Kind.BINARY:
                link = links.get(record.conn)
                if link is not None:
                    link.feed(record.payload)
            elif kind == Kind.CLOSED:
                link = links.pop(record.conn, None)
                if link is not None:
                    link.ended()
            elif kind == Kind.HELLO:
                self._pool.hello(self, record)
            else:
                log.warning("link worker %d sent an unexpected %s", self.index, kind.name)

    def connection_lost(self, exc: Exception | None) -> None:
        links, self.links = self.links, {}
        for link in links.values():
            link.ended()
        self.writable.set()  # nothing will drain now: let writers fail on the closed links

    def forget(self, conn: int) -> None:
        self.links.pop(conn, None)


@dataclass
class _Worker:
    index: int
    process: asyncio.subprocess.Process
    channel: _Channel
    started: float


class LinkWorkers:
    """N link worker processes sharing the hub's listening socket."""

    def __init__(
        self,
        *,
        count: int,
        sock: socket.socket,
        config: WorkerConfig,
        admit: Admit,
        serve: Serve,
    ) -> None:
        self.count = count
        self._sock = sock
        self._config = config
        self._admit = admit
        self._serve = serve
        self._workers: dict[int, _Worker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        #: workers started since cloudhub started, restarts included (for tests and logs)
        self.started_total = 0

    async def start(self) -> None:
        """Start every worker.

        Raises:
            OSError: a worker process could not be started.
        """
        for index in range(self.count):
            await self._spawn(index)
        log.info("%d link worker(s) terminate TLS for edges", self.count)

    async def run(self) -> None:
        """Restart workers that die, until cancelled; then stop them all."""
        delays = {i: backoff(initial=0.5, cap=10.0) for i in range(self.count)}
        try:
            while True:
                waits = {asyncio.ensure_future(w.process.wait()): w for w in self._workers.values()}
                if not waits:
                    await asyncio.sleep(1.0)
                    continue
                try:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for fut in waits:
                        fut.cancel()
                for fut in done:
                    worker = waits[fut]
                    self._workers.pop(worker.index, None)
                    worker.channel.close()
                    lived = time.monotonic() - worker.started
                    if lived > _STABLE_AFTER:
                        delays[worker.index] = backoff(initial=0.5, cap=10.0)
                    delay = next(delays[worker.index])
                    log.error(
                        "link worker %d exited (code %s) after %.0fs; its edges reconnect; "
                        "restarting it in %.1fs",
                        worker.index,
                        worker.process.returncode,
                        lived,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    try:
                        await self._spawn(worker.index)
                    except OSError as exc:
                        log.error("link worker %d could not start: %s", worker.index, exc)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Close every channel (a worker exits when its channel ends), then reap them."""
        if self._stopping:
            return
        self._stopping = True
        workers = list(self._workers.values())
        for worker in workers:
            worker.channel.close()
        for worker in workers:
            try:
                async with asyncio.timeout(_STOP_GRACE):
                    await worker.process.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
                await worker.process.wait()
        for task in list(self._tasks):
            task.cancel()

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values()]

    def _channels(self) -> list[_Channel]:
        """The live workers' channels (for tests)."""
        return [w.channel for w in self._workers.values()]

    def hello(self, channel: _Channel, record: Record) -> None:
        """Answer a worker's HELLO: ACCEPT (and serve the link) or REFUSE with the reason."""
        try:
            raw = json.loads(record.payload)
            hello = Hello(
                der=base64.b64decode(raw["der"]) if raw["der"] else None,
                path=str(raw["path"]),
                headers=Headers([(str(k), str(v)) for k, v in raw["headers"]]),
                remote=tuple(raw["remote"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.error("link worker %d sent a bad HELLO: %s", channel.index, exc)
            self._refuse(channel, record.conn, 500, "internal error\n")
            return
        try:
            peer = self._admit(hello)
        except AuthError as exc:
            log.warning("refused websocket from %s: %s", hello.remote, exc)
            self._refuse(channel, record.conn, 403, f"{exc}\n")
            return
        link = RelayedLink(channel, record.conn, hello.remote)
        channel.links[record.conn] = link
        channel.emit(Kind.ACCEPT, record.conn)
        task = asyncio.get_running_loop().create_task(
            self._serve(link, peer), name=f"link:{getattr(peer, 'node', record.conn)}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, channel: _Channel, conn: int, status: int, body: str) -> None:
        channel.emit(Kind.REFUSE, conn, json.dumps({"status": status, "body": body}).encode())

    async def _spawn(self, index: int) -> None:
        parent, child = socket.socketpair()
        try:
            config = self._config.model_copy(
                update={
                    "index": index,
                    "listen_fd": self._sock.fileno(),
                    "channel_fd": child.fileno(),
                }
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cloudhub.linkworker",
                config.model_dump_json(),
                stdin=subprocess.DEVNULL,
                pass_fds=(self._sock.fileno(), child.fileno()),
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        loop = asyncio.get_running_loop()
        _, channel = await loop.connect_accepted_socket(lambda: _Channel(self, index), parent)
        self._workers[index] = _Worker(index, process, channel, time.monotonic())
        self.started_total += 1
        log.info("link worker %d started (pid %d)", index, process.pid)


__all__ = ["Hello", "LinkWorkers", "RelayedLink"]
