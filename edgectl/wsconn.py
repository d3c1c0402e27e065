"""The websocket connection ``logs`` and ``exec`` use: websockets' threaded client, with its
TLS socket entered by one thread at a time.

websockets' sync client reads in a background thread while the caller's thread writes (the
opening request, stdin, resizes). On a TLS socket that puts two threads inside one OpenSSL
connection at once, which OpenSSL does not support. It shows right after the handshake: a
TLS 1.3 server (cloudhub) sends its session tickets then, the reader thread processes them
while the caller writes the HTTP upgrade request, and now and then the request never leaves
(the client waits for the 101, the server for the request: ``edgectl logs`` hung until its
timeout, about once in a few hundred calls on a loaded box).

:class:`TakingTurns` makes reads and writes take turns on one lock. A read must not hold it
while it waits for data (the writer would wait behind it, and the server waits for what the
writer sends), so it reads without blocking under the lock and waits for the socket outside
it.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from typing import Any

from websockets.sync.client import ClientConnection


class TakingTurns:
    """An :class:`ssl.SSLSocket` whose reads and writes never overlap (what websockets'
    connection calls of its socket: ``recv``, ``sendall``, ``settimeout``, ``shutdown``,
    ``close``, ``fileno``, the addresses)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        self._turn = threading.Lock()
        #: the timeout websockets asked for; the socket itself is non-blocking during reads
        self._timeout = sock.gettimeout()

    def fileno(self) -> int:
        return self._sock.fileno()

    def getpeername(self) -> Any:
        return self._sock.getpeername()

    def getsockname(self) -> Any:
        return self._sock.getsockname()

    def gettimeout(self) -> float | None:
        return self._timeout

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def recv(self, bufsize: int) -> bytes:
        """What the peer sent, as ``SSLSocket.recv`` (waits for application data)."""
        while True:
            with self._turn:
                self._sock.settimeout(0.0)
                try:
                    return self._sock.recv(bufsize)
                except ssl.SSLWantReadError:
                    # only TLS's own messages (a session ticket), or part of a record
                    wait: tuple[list[Any], list[Any]] = ([self._sock], [])
                except ssl.SSLWantWriteError:
                    wait = ([], [self._sock])  # TLS must answer first (a key update)
            # the socket shut down or closed meanwhile makes it ready (or raises here)
            select.select(*wait, [])

    def sendall(self, data: bytes) -> None:
        with self._turn:
            self._sock.settimeout(self._timeout)
            self._sock.sendall(data)

    def shutdown(self, how: int) -> None:
        # not in turn: it is how a writer blocked on a peer that stopped reading is released
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()


class TurnTakingConnection(ClientConnection):
    """websockets' :class:`ClientConnection` over :class:`TakingTurns` when the socket is TLS
    (pass as ``create_connection``)."""

    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        if isinstance(sock, ssl.SSLSocket):
            sock = TakingTurns(sock)  # type: ignore[assignment]
        super().__init__(sock, *args, **kwargs)


__all__ = ["TakingTurns", "TurnTakingConnection"]
