"""Interactive exec (``-i``/``-t``): the runtime's streaming server, relayed.

CRI ``Exec`` answers with a URL of the runtime's streaming server (kubelet's, built into
containerd, on 127.0.0.1), which speaks Kubernetes' websocket channel protocol
(:mod:`wire.channels`; containerd 1.6 offers ``v4.channel.k8s.io``). edgestream connects to it
from the edge itself, so nothing is exposed beyond the box: input and terminal resizes from the
cloud go in, stdout/stderr come out through the stream's window, and the closing Status gives
the exit code.

``v4`` cannot say "stdin ended" (``v5`` added that): a command reading its input to the end
keeps waiting after the client's input ended, as with kubectl against such a runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from wire import channels
from wire.errors import DecodeError
from wire.streams import Channel, Input, Resize

log = logging.getLogger(__name__)

#: seconds to reach the runtime's streaming server
CONNECT_TIMEOUT = 10.0

Output = Callable[[bytes, Channel], Awaitable[None]]


def websocket_url(url: str) -> str:
    """The streaming URL (``http://…``) as the websocket URL it serves."""
    if url.startswith("http://"):
        return "ws://" + url.removeprefix("http://")
    if url.startswith("https://"):
        return "wss://" + url.removeprefix("https://")
    return url


async def relay(
    url: str, *, inputs: asyncio.Queue[Input | Resize], output: Output
) -> tuple[int | None, str | None]:
    """Run one interactive exec to its end: ``(exit code, None)`` or ``(None, error)``."""
    try:
        async with connect(
            websocket_url(url),
            subprotocols=[Subprotocol(p) for p in channels.PROTOCOLS],
            compression=None,
            ping_interval=None,
            open_timeout=CONNECT_TIMEOUT,
            max_size=4 * 1024 * 1024,
        ) as ws:
            feeder = asyncio.create_task(_feed(ws, inputs), name="edgestream:stdin")
            try:
                return await _read(ws, output)
            finally:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
    except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
        return None, f"cannot reach the runtime's streaming server: {exc}"


async def _read(ws: ClientConnection, output: Output) -> tuple[int | None, str | None]:
    try:
        async for message in ws:
            if isinstance(message, str):
                continue
            try:
                channel, data = channels.parse_frame(message)
            except DecodeError:
                continue
            if channel in (channels.STDOUT, channels.STDERR) and data:
                await output(data, "stderr" if channel == channels.STDERR else "stdout")
            elif channel == channels.ERROR:
                try:
                    code, error = channels.read_status(data)
                except DecodeError as exc:
                    return None, f"the runtime sent a bad status: {exc}"
                return (None, error) if error else (code, None)
    except ConnectionClosed:
        pass
    return 0, None  # closed without a status: the command ended normally


async def _feed(ws: ClientConnection, inputs: asyncio.Queue[Input | Resize]) -> None:
    while True:
        item = await inputs.get()
        if isinstance(item, Resize):
            await ws.send(channels.resize_frame(item.width, item.height))
        elif item.data:
            await ws.send(channels.frame(channels.STDIN, item.data))
