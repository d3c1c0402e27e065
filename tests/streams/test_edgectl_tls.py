"""edgectl's logs/exec websocket never has two threads inside its TLS connection at once.

websockets' threaded client reads in a background thread while edgectl's thread writes; right
after the TLS 1.3 handshake cloudhub sends session tickets, and a read processing them while
the upgrade request was written lost the request now and then: ``edgectl logs`` waited for a
101 that cloudhub, still waiting for the request, never sent (the flaky streams tests). The
race itself is too rare to hit on purpose, so the test checks what prevents it: the TLS
socket's reads and writes take turns. Each watched call waits a moment inside the socket for
a call of the other kind to come in beside it, so that an overlap the connection allows is
seen every time, not once in a few hundred runs.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from edgectl.client import AdminClient
from tests.support.inproc import start_cloud
from wire.errors import NotFound

pytestmark = pytest.mark.timeout(60)

#: seconds a watched call waits inside the socket for a call of the other kind
_OVERLAP_WAIT = 1.0


class _Watch:
    """Which kinds of call are inside the socket now, and whether two ever were at once."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.inside: dict[str, int] = {"read": 0, "write": 0}
        self.waited: set[str] = set()
        self.overlaps: list[str] = []

    def call(self, kind: str, fn: Any, *args: Any) -> Any:
        other = "write" if kind == "read" else "read"
        with self.changed:
            if self.inside[other]:
                self.overlaps.append(f"{kind} while a {other} was inside")
            self.inside[kind] += 1
            self.changed.notify_all()
            if kind not in self.waited:  # the first call of each kind waits for the other
                self.waited.add(kind)
                self.changed.wait_for(lambda: self.inside[other] > 0, timeout=_OVERLAP_WAIT)
        try:
            return fn(*args)
        finally:
            with self.changed:
                self.inside[kind] -= 1
                self.changed.notify_all()


def _watched_socket_class(watch: _Watch) -> type[ssl.SSLSocket]:
    class Watched(ssl.SSLSocket):
        def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
            return watch.call("read", super().recv, buflen, flags)  # type: ignore[no-any-return]

        def sendall(self, data: Any, flags: int = 0) -> None:
            watch.call("write", super().sendall, data, flags)

    return Watched


async def test_channel_reads_and_writes_take_turns_on_tls(tmp_path: Path) -> None:
    """The opening handshake of a logs websocket completes, and no read of the TLS socket
    ever runs beside a write."""
    cloud = await start_cloud(tmp_path / "cloud")
    try:
        data = tmp_path / "cloud"
        client = AdminClient(
            server=f"https://127.0.0.1:{cloud.https_port}",
            token=(data / "admin.token").read_text().strip(),
            ca_file=data / "ca.crt",
            timeout=20,
        )
        watch = _Watch()
        context = client._ssl
        assert context is not None
        context.sslsocket_class = _watched_socket_class(watch)

        def open_logs() -> None:
            # an unknown pod: cloudhub answers the upgrade request with its 404
            with pytest.raises(NotFound, match='pods "nosuch" not found'):
                client.open_channels("/pods/default/nosuch/log", [("follow", "false")])

        await asyncio.to_thread(open_logs)
        assert watch.waited == {"read", "write"}
        assert watch.overlaps == []
    finally:
        await cloud.stop()
