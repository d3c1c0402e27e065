"""The ``certcontroller`` module: renews node certificates and revokes those of deleted nodes.

Renewal. An edge renews its certificate before it expires by sending, over its current
authenticated link, an ``insert``/``update`` of ``null/certificatesigningrequest/{node}`` whose
content is a CSR (PEM, or base64 of DER). The hub forwards it here as
``node/{node}/null/certificatesigningrequest/{name}``, the ``node/{node}/`` prefix taken from the
link's certificate. The answer is a ``response`` whose content is the new certificate (PEM), or
an ``error`` naming the reason. A node may renew only its own certificate, only while its Node
object exists, and not more often than a tenth of the validity
(:meth:`cloudhub.auth.issuer.CertIssuer.renew`): a compromised node cannot fill the ledger.

Why over the link and not ``/edge.crt``: the link is already mutually authenticated, so renewal
needs no token and works for stock edgecores' path as well as ours; an edge that is online
before expiry never has to be touched by an operator.

Revocation. A node whose Node object is deleted loses every certificate cloudhub issued it
(:meth:`cloudhub.auth.revocation.Revocations.revoke_node`, which also closes its live link).
``edgectl delete node`` revokes synchronously through the admin API; this module catches
every other way a Node disappears (``kubectl delete node`` on the Kubernetes backend, or a
deletion while cloudhub was down: at start, nodes holding live certificates but no Node object
are revoked). It also re-reads the revocation list and prunes the ledger periodically.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloudhub import routes
from cloudhub.auth.issuer import CertIssuer
from cloudhub.store.base import ObjectStore
from hive.backoff import backoff
from hive.bus import Bus
from wire.errors import AuthError, Gone, NotFound, StoreError, WireError
from wire.messages import Message, Operation
from wire.resources import split_node_prefix

log = logging.getLogger(__name__)

CSR_TYPE = "certificatesigningrequest"
_RENEW_OPS = frozenset({Operation.INSERT, Operation.UPDATE})


def parse_csr(content: Any) -> bytes:
    """A CSR sent as PEM text or base64 DER -> DER.

    Raises:
        AuthError: anything else.
    """
    if not isinstance(content, str) or not content.strip():
        raise AuthError("content must be a CSR: PEM text or base64 of DER")
    text = content.strip()
    if text.startswith("-----BEGIN"):
        try:
            csr = x509.load_pem_x509_csr(text.encode())
        except ValueError as exc:
            raise AuthError("content is not a PEM certificate request") from exc
        return csr.public_bytes(serialization.Encoding.DER)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthError("content is neither PEM nor base64") from exc


class CertController:
    """Answers renewal requests; revokes certificates of deleted nodes."""

    name = routes.CERTCONTROLLER
    group: str = "certificate"
    enabled = True

    def __init__(
        self,
        *,
        bus: Bus,
        store: ObjectStore,
        issuer: CertIssuer,
        refresh_interval: float = 30.0,
    ) -> None:
        self._bus = bus
        self._store = store
        self._issuer = issuer
        self._refresh_interval = refresh_interval
        #: renewals answered with a certificate (for tests and metrics)
        self.renewed = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._serve_inbox(), name="certcontroller:inbox")
            tg.create_task(self._watch_nodes(), name="certcontroller:nodes")
            tg.create_task(self._maintain(), name="certcontroller:refresh")

    # -- renewal -------------------------------------------------------------------------------

    async def _serve_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            try:
                reply = await self.renew(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("certcontroller failed on %s %s", msg.operation, msg.resource)
                reply = msg.error_reply("internal error renewing the certificate", source=self.name)
            await self._bus.send(routes.HUB, reply)

    async def renew(self, msg: Message) -> Message:
        """The answer to one renewal request: ``response`` with the PEM, or ``error``."""
        try:
            node, rest = split_node_prefix(msg.resource)
        except WireError as exc:
            return msg.error_reply(str(exc), source=self.name)
        parts = rest.split("/")
        if msg.operation not in _RENEW_OPS or len(parts) != 3 or parts[1] != CSR_TYPE:
            return msg.error_reply(
                f"certcontroller handles insert/update of null/{CSR_TYPE}/{{node}}, "
                f"not {msg.operation} {rest}",
                source=self.name,
            )
        if parts[2] != node:
            log.warning("node %s asked for a certificate for %r; refused", node, parts[2])
            return msg.error_reply(
                f"node {node} may renew only its own certificate, not {parts[2]!r}",
                source=self.name,
            )
        try:
            await self._store.get("node", None, node)
        except NotFound:
            log.warning("node %s asked to renew its certificate but was deleted", node)
            return msg.error_reply(f"node {node} was deleted", source=self.name)
        except StoreError as exc:
            return msg.error_reply(f"cannot check node {node}: {exc}", source=self.name)
        try:
            cert = await self._issuer.renew(parse_csr(msg.content), node)
        except AuthError as exc:
            log.warning("node %s: renewal refused: %s", node, exc)
            return msg.error_reply(str(exc), source=self.name)
        except StoreError as exc:
            log.warning("node %s: cannot record its renewed certificate: %s", node, exc)
            return msg.error_reply(f"cannot record the certificate: {exc}", source=self.name)
        self.renewed += 1
        log.info("renewed the certificate of node %s over its link", node)
        return msg.reply(cert.pem, source=self.name)

    # -- revocation of deleted nodes -----------------------------------------------------------

    async def _watch_nodes(self) -> None:
        delays = backoff(cap=10.0)
        while True:
            try:
                # Ledger first, store second: a join in between creates its Node before it
                # records its certificate, so it is never mistaken for a deleted node.
                live = await self._issuer.ledger.live_nodes(time.time())
                nodes, rv = await self._store.list("node")
                await self._revoke_missing(live - {_name(n) for n in nodes})
                delays = backoff(cap=10.0)
                async for event in self._store.watch("node", rv):
                    if event.type == "DELETED":
                        await self._issuer.revoke_node(_name(event.object))
            except Gone:
                continue
            except asyncio.CancelledError:
                raise
            except (StoreError, OSError) as exc:
                delay = next(delays)
                log.warning("certcontroller: watching nodes failed: %s; retry in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _revoke_missing(self, missing: set[str]) -> None:
        """Revoke certificates of nodes deleted while nobody was watching."""
        for node in sorted(missing):
            log.warning("node %s holds certificates but has no Node object; revoking", node)
            await self._issuer.revoke_node(node)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_interval)
            try:
                await self._issuer.revocations.refresh()
                pruned = await self._issuer.ledger.prune(time.time())
                if pruned:
                    log.info("forgot %d expired token/certificate record(s)", pruned)
            except (StoreError, OSError) as exc:
                log.warning("certcontroller: refreshing the revocation list failed: %s", exc)


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")
