"""The revoked serials the websocket handshake refuses, in memory, backed by the ledger.

Checking a connection must not touch a disk: the handshake asks :meth:`Revocations.is_revoked`,
a set lookup. The set is loaded from the :class:`~cloudhub.auth.ledger.AuthLedger` at start,
updated in place by :meth:`Revocations.revoke_node` (after the ledger has it: a revocation
that was reported done is on disk), and re-read by :meth:`Revocations.refresh` so that another
cloudhub replica sharing the ledger learns of revocations it did not make.

Listeners (the hub) are told which serials of which node were just revoked, so a live link
using one of them is closed at once instead of at its next reconnect.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from cloudhub.auth.ledger import AuthLedger

log = logging.getLogger(__name__)

#: called with (node, serials newly revoked); must not block
Listener = Callable[[str, frozenset[int]], None]


class RevocationCheck(Protocol):
    """What the websocket handshake needs: is this certificate serial revoked?"""

    def is_revoked(self, serial: int) -> bool: ...

    def subscribe(self, listener: Listener) -> None: ...


class Revocations:
    """Revoked serials, loaded from and written through to an :class:`AuthLedger`."""

    def __init__(self, ledger: AuthLedger, *, clock: Callable[[], float] = time.time) -> None:
        self._ledger = ledger
        self._clock = clock
        self._revoked: dict[int, str] = {}
        self._listeners: list[Listener] = []

    async def load(self) -> None:
        """Read every revoked, unexpired serial from the ledger."""
        self._revoked = await self._ledger.revoked(self._clock())
        if self._revoked:
            log.info("%d revoked node certificate(s) still unexpired", len(self._revoked))

    def is_revoked(self, serial: int) -> bool:
        return serial in self._revoked

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def revoke_node(self, node: str) -> int:
        """Revoke every certificate issued to ``node``; how many were newly revoked.

        Raises:
            StoreError: the ledger could not record it; nothing was revoked.
        """
        serials = await self._ledger.revoke_node(node, at=self._clock())
        for serial in serials:
            self._revoked[serial] = node
        if serials:
            log.warning("revoked %d certificate(s) of node %s", len(serials), node)
            self._notify(node, serials)
        return len(serials)

    async def refresh(self) -> None:
        """Re-read the ledger: pick up other replicas' revocations, forget expired ones."""
        current = await self._ledger.revoked(self._clock())
        added: dict[str, set[int]] = {}
        for serial, node in current.items():
            if serial not in self._revoked:
                added.setdefault(node, set()).add(serial)
        self._revoked = current
        for node, serials in added.items():
            self._notify(node, frozenset(serials))

    def _notify(self, node: str, serials: frozenset[int]) -> None:
        for listener in self._listeners:
            try:
                listener(node, serials)
            except Exception:
                log.exception("revocation listener failed for node %s", node)
