"""The join endpoints, as KubeEdge's edgecore calls them.

- ``GET /ca.crt`` answers the CA certificate as DER. It is public on purpose: the edge fetches
  it over an unverified connection and pins it against the hash in its token.
- ``GET /edge.crt`` (a GET with a body, as KubeEdge's edgecore sends it) takes
  ``Authorization: Bearer JWT``, a ``NodeName`` header and a DER CSR, and answers the signed
  client certificate as DER. The JWT may also be sent as the full ``{hash}.{jwt}`` token.
- The same request *without* a token but over TLS with the node's current client certificate
  is a renewal, as a stock KubeEdge edgecore rotates its certificate at 70-90 % of its life:
  the certificate must be ours, unexpired, unrevoked and name the ``NodeName``, and the Node
  must still exist. Renewals are limited to one per tenth of the validity.

Errors are one line of plain text, because that is what a stock edgecore prints: 401 for a bad
token (expired, forged, used up, bound to another node), 400 for a bad NodeName or CSR. The
token's signature is checked before anything else so an unauthenticated caller learns nothing
about what else would have been refused; a counted token's use is spent only once everything
else was found acceptable, so a typo in the node name does not burn a single-use token.

On a successful join the Node object is created in the store if it does not exist yet, with the
labels KubeEdge puts on edge nodes, so ``edgectl get nodes`` shows it at once. The Node exists
*before* the certificate is recorded: certcontroller revokes certificates of nodes that have
none, and must never see a fresh join as a deleted node.

The token is never logged, in whole or in part.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import web

from cloudhub.auth.issuer import CertIssuer
from cloudhub.k8s.labels import EDGE_ROLE_LABEL
from cloudhub.pki import Authority, check_node_cert_time, is_valid_node_name, read_node_cert
from cloudhub.store.base import ObjectStore
from wire.errors import AuthError, NotFound, StoreError, TokenError

logger = logging.getLogger(__name__)

NODE_NAME_HEADER = "NodeName"
DER_CONTENT_TYPE = "application/octet-stream"
#: with EDGE_ROLE_LABEL, what KubeEdge's keadm puts on an edge node
HOSTNAME_LABEL = "kubernetes.io/hostname"


def node_manifest(name: str) -> dict[str, Any]:
    """The Node object created for a newly joined edge."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {EDGE_ROLE_LABEL: "", HOSTNAME_LABEL: name},
        },
    }


def bearer_token(request: web.Request) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class JoinApi:
    """``/ca.crt`` and ``/edge.crt`` handlers, bound to an authority and a store."""

    def __init__(self, *, authority: Authority, store: ObjectStore, issuer: CertIssuer) -> None:
        self._authority = authority
        self._store = store
        self._issuer = issuer

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/ca.crt", self.ca_crt, allow_head=False)
        router.add_get("/edge.crt", self.edge_crt, allow_head=False)

    async def ca_crt(self, request: web.Request) -> web.Response:
        return web.Response(body=self._authority.ca_der, content_type=DER_CONTENT_TYPE)

    async def edge_crt(self, request: web.Request) -> web.Response:
        token = bearer_token(request)
        if token is None:
            peer = _peer_cert(request)
            if peer is not None:
                return await self._renew(request, peer)
            return _text(401, "missing Authorization: Bearer token")
        try:
            claims = self._authority.verify_join_token(token)
        except TokenError as exc:
            logger.warning("join refused from %s: %s", request.remote, exc)
            return _text(401, str(exc))
        node = request.headers.get(NODE_NAME_HEADER, "")
        if not is_valid_node_name(node):
            return _text(400, f"invalid NodeName {node!r}: must be a DNS-1123 subdomain")
        csr = await request.read()
        if not csr:
            return _text(400, "missing CSR: send a DER certificate request as the body")
        try:
            self._authority.check_csr(csr)
        except AuthError as exc:
            return _text(400, str(exc))
        try:
            await self._issuer.admit_token(claims, node)
        except TokenError as exc:
            logger.warning("join of node %s refused from %s: %s", node, request.remote, exc)
            return _text(401, str(exc))
        except StoreError as exc:
            logger.error("join of node %s: cannot count the token use: %s", node, exc)
            return _text(503, f"cannot record the join: {exc}")
        try:
            created = await self._ensure_node(node)
        except StoreError as exc:
            logger.error("node %s: cannot create its Node object: %s", node, exc)
            return _text(503, f"cannot record node {node}: {exc}")
        try:
            cert = (await self._issuer.issue(csr, node)).der
        except AuthError as exc:
            await self._undo_node(node, created)
            return _text(400, str(exc))
        except StoreError as exc:
            logger.error("node %s: cannot record its certificate: %s", node, exc)
            await self._undo_node(node, created)
            return _text(503, f"cannot record the certificate of {node}: {exc}")
        logger.info("node %s joined from %s", node, request.remote)
        return web.Response(body=cert, content_type=DER_CONTENT_TYPE)

    async def _renew(self, request: web.Request, peer_der: bytes) -> web.Response:
        """A renewal authenticated by the node's current certificate (KubeEdge's rotation)."""
        peer = read_node_cert(peer_der)
        if peer is None:
            return _text(403, "client certificate does not name a node (CN=system:node:NAME)")
        try:
            check_node_cert_time(peer, time.time())
        except AuthError as exc:
            logger.warning("renewal refused from %s: %s", request.remote, exc)
            return _text(403, str(exc))
        if self._issuer.revocations.is_revoked(peer.serial):
            logger.warning("renewal refused from %s: %s is revoked", request.remote, peer.node)
            return _text(403, f"node certificate of {peer.node} was revoked")
        node = request.headers.get(NODE_NAME_HEADER, "")
        if node != peer.node:
            logger.warning("node %s asked to renew as %r; refused", peer.node, node)
            return _text(403, f"NodeName {node!r} disagrees with certificate {peer.node!r}")
        csr = await request.read()
        try:
            self._authority.check_csr(csr)
        except AuthError as exc:
            return _text(400, str(exc))
        try:
            await self._store.get("node", None, node)
        except NotFound:
            return _text(403, f"node {node} was deleted")
        except StoreError as exc:
            return _text(503, f"cannot check node {node}: {exc}")
        try:
            cert = await self._issuer.renew(csr, node)
        except AuthError as exc:
            return _text(429, str(exc))
        except StoreError as exc:
            return _text(503, f"cannot record the certificate of {node}: {exc}")
        logger.info("renewed the certificate of node %s over HTTPS", node)
        return web.Response(body=cert.der, content_type=DER_CONTENT_TYPE)

    async def _ensure_node(self, node: str) -> bool:
        """Create the node's Node unless it exists; whether it was created now."""
        try:
            await self._store.get("node", None, node)
        except NotFound:
            await self._store.apply([node_manifest(node)])
            return True
        return False

    async def _undo_node(self, node: str, created: bool) -> None:
        """A join that failed after creating the Node removes it again: no Node is left
        behind that no edge can ever serve (Unknown for good, without a Lease)."""
        if not created:
            return
        try:
            await self._store.delete("node", None, node)
        except NotFound:
            pass
        except StoreError as exc:
            logger.error(
                "node %s: the join failed and its Node could not be removed: %s", node, exc
            )
            return
        logger.info("node %s: removed the Node created by the failed join", node)


def _peer_cert(request: web.Request) -> bytes | None:
    """The verified client certificate of this connection (DER), if one was presented."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der if isinstance(der, bytes) and der else None


def _text(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason.replace("\n", " ") + "\n")
