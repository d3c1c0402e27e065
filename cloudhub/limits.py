"""Limits that keep one noisy or hostile peer from starving the others.

Two mechanisms, both cheap enough to sit on every connection:

- :class:`hive.ratelimit.TokenBucket` paces what one node may make the cloud do. The hub
  *reads* a node's frames no faster than its bucket allows instead of dropping them: TCP
  flow control then slows the sender, nothing is lost, and a node that floods only delays
  itself. Pure and synchronous (the caller sleeps for the returned delay).
- :class:`ConnectionGate` caps connections that have not authenticated yet, in total and per
  source address, *at the TCP level*: a connection over the cap is closed the moment it is
  accepted, before TLS costs a single CPU cycle. Without it, a peer that opens thousands of
  sockets and never finishes a TLS handshake would hold the process's file descriptors (1024
  by default) until the handshake timeout, and no edge could connect meanwhile. The per-address
  cap is what keeps one peer from using up the total for everyone.

How the gate sees accepts: asyncio's ``create_server(sock=...)`` calls ``accept()`` on the
socket object it was given, and its transports call ``close()`` on the socket objects
``accept()`` returned. The gate hands asyncio a listening socket whose ``accept()`` counts and
refuses, and returns connection sockets whose ``close()`` releases their slot. The websocket
handshake marks a connection authenticated (:meth:`ConnectionGate.authenticated`) once the
client certificate was accepted; it then no longer counts against the cap.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class _LogBudget:
    """At most ``per_second`` log lines in any one-second window; counts what it held back."""

    def __init__(self, per_second: int = 5) -> None:
        self._per_second = per_second
        self._window = 0.0
        self._count = 0
        self.suppressed = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._count = now, 0
        if self._count < self._per_second:
            self._count += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class ConnectionGate:
    """Caps unauthenticated connections on one listening socket, in total and per address.

    Args:
        name: what the log calls this port (``wss``, ``https``).
        max_pending: connections accepted but not yet authenticated, in total.
        max_pending_per_ip: the same, per source address.
        log_unfinished: log connections that close while still pending (on the wss port that
            means a failed TLS handshake; on a port where nothing marks connections
            authenticated, every close would be logged, so it is off there).
    """

    def __init__(
        self,
        *,
        name: str,
        max_pending: int,
        max_pending_per_ip: int,
        log_unfinished: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._log_unfinished = log_unfinished
        self.max_pending = max_pending
        self.max_pending_per_ip = max_pending_per_ip
        self._clock = clock
        self._pending: dict[int, _GatedConn] = {}
        self._per_ip: dict[str, int] = {}
        self._logs = _LogBudget()
        #: connections refused because a cap was reached (for tests and metrics)
        self.refused = 0

    # -- public --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Connections accepted and not yet authenticated or closed."""
        return len(self._pending)

    def pending_from(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def listen(self, host: str, port: int, *, backlog: int = 1024) -> socket.socket:
        """A bound, listening socket whose accepts go through this gate.

        Pass it to ``loop.create_server(sock=...)`` (or websockets' ``serve(sock=...)``).

        Raises:
            OSError: the address cannot be resolved or bound.
        """
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, type_, proto, _, addr = infos[0]
        sock = _GatedListener(family, type_, proto)
        sock.gate = self
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
        except OSError:
            sock.close()
            raise
        return sock

    def adopt(self, fd: int) -> socket.socket:
        """A listening socket inherited as descriptor ``fd`` (bound and listening already, by
        the process that started this one), whose accepts go through this gate from now on.
        """
        probe = socket.socket(fileno=fd)
        family, type_, proto = probe.family, probe.type, probe.proto
        probe.detach()
        sock = _GatedListener(family, type_, proto, fileno=fd)
        sock.gate = self
        return sock

    def authenticated(self, sock: Any) -> None:
        """The peer on ``sock`` proved who it is: it no longer counts as pending.

        ``sock`` is anything with ``fileno()``: the transport's ``get_extra_info("socket")``.
        Unknown sockets are ignored (a server not using this gate).
        """
        try:
            fd = sock.fileno()
        except (AttributeError, OSError):
            return
        conn = self._pending.get(fd)
        if conn is not None:
            self._release(conn)

    # -- called by the sockets ---------------------------------------------------------

    def _admit(self, ip: str) -> str | None:
        """None if a connection from ``ip`` may be accepted, else why not."""
        if len(self._pending) >= self.max_pending:
            return f"{len(self._pending)} handshakes pending in total"
        if self._per_ip.get(ip, 0) >= self.max_pending_per_ip:
            return f"{self._per_ip[ip]} handshakes pending from that address"
        return None

    def _track(self, conn: _GatedConn) -> None:
        self._pending[conn.fileno()] = conn
        self._per_ip[conn.peer_ip] = self._per_ip.get(conn.peer_ip, 0) + 1

    def _release(self, conn: _GatedConn) -> None:
        if not conn.pending:
            return
        conn.pending = False
        fd = conn.fileno()
        if self._pending.get(fd) is conn:
            del self._pending[fd]
        left = self._per_ip.get(conn.peer_ip, 0) - 1
        if left > 0:
            self._per_ip[conn.peer_ip] = left
        else:
            self._per_ip.pop(conn.peer_ip, None)

    def _closed_pending(self, conn: _GatedConn) -> None:
        age = self._clock() - conn.accepted_at
        self._release(conn)
        if self._log_unfinished and self._logs.allow():
            log.warning(
                "%s: connection from %s closed %.2fs after accept, before completing the "
                "handshake (no trusted client certificate, not TLS, or too slow)%s",
                self.name,
                conn.peer_ip,
                age,
                self._suppressed_note(),
            )

    def _refused(self, ip: str, why: str) -> None:
        self.refused += 1
        if self._logs.allow():
            log.warning(
                "%s: refused a connection from %s: %s%s",
                self.name,
                ip,
                why,
                self._suppressed_note(),
            )

    def _suppressed_note(self) -> str:
        n = self._logs.take_suppressed()
        return f" ({n} similar lines suppressed)" if n else ""


class _GatedListener(socket.socket):
    """A listening socket whose ``accept()`` goes through a :class:`ConnectionGate`."""

    gate: ConnectionGate

    def accept(self) -> tuple[socket.socket, Any]:
        fd, addr = self._accept()  # type: ignore[attr-defined]
        ip = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        why = self.gate._admit(ip)
        if why is not None:
            os.close(fd)
            self.gate._refused(ip, why)
            # asyncio's accept loop treats this as "nothing more to accept now".
            raise ConnectionAbortedError(why)
        conn = _GatedConn(self.family, self.type, self.proto, fileno=fd)
        conn.gate = self.gate
        conn.peer_ip = ip
        conn.accepted_at = self.gate._clock()
        conn.pending = True
        if socket.getdefaulttimeout() is None and self.gettimeout():
            conn.setblocking(True)
        self.gate._track(conn)
        return conn, addr


class _GatedConn(socket.socket):
    """An accepted connection that releases its gate slot when closed."""

    gate: ConnectionGate
    peer_ip: str
    accepted_at: float
    pending: bool = False

    def close(self) -> None:
        if self.pending and self.fileno() >= 0:
            self.gate._closed_pending(self)
        super().close()
