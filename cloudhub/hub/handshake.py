"""Who is connecting. A node's identity is its client certificate, nothing else.

TLS already refused peers without a certificate chaining to our CA (``CERT_REQUIRED``). Here,
during the websocket upgrade, we read the node name from the certificate's CN
(``system:node:NAME``) and refuse the upgrade, with a 403 whose body says why, when:

- the certificate is outside its validity period (the TLS context leaves dates to us, see
  :meth:`cloudhub.pki.Authority.mtls_ssl_context`, so that an expired edge is *told* to
  re-join instead of getting a bare TLS alert);
- its serial was revoked (``edgectl delete node``);
- the ``node_id`` header or the URL path (``/{project}/{node}/events``) claims someone else:
  KubeEdge trusts the header by default, which lets any node impersonate any other.

Every refusal is logged with the peer's address and the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from cloudhub.pki import REJOIN_HINT, check_node_cert_time, read_node_cert
from wire.errors import AuthError, IdentityMismatch

log = logging.getLogger(__name__)

#: header in which our edgecore announces its heartbeat (seconds); stock edgecores don't.
HEARTBEAT_HEADER = "edgebridge-heartbeat"


@dataclass(frozen=True, slots=True)
class Peer:
    node: str
    project: str
    #: the heartbeat the edge announced, or ``None`` (then the hub's default applies)
    heartbeat: float | None
    #: serial number of the client certificate (0 when unknown, in tests)
    serial: int = 0
    #: unix seconds the client certificate expires
    not_after: float = 0.0
    #: a stock KubeEdge edgecore: it names itself in ``node_id`` but announces no heartbeat
    #: (ours always does); see :mod:`cloudhub.hub.stock`
    stock: bool = False


def identify(
    connection: ServerConnection,
    request: Request,
    *,
    is_revoked: Callable[[int], bool] = lambda serial: False,
    now: float | None = None,
) -> Peer:
    """Check the handshake against the client certificate.

    Raises:
        IdentityMismatch: no usable certificate, or a header/path naming another node.
        AuthError: the certificate is expired, not yet valid, or revoked.
    """
    ssl_object = connection.transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return identify_parts(der, request.headers, request.path, is_revoked=is_revoked, now=now)


def identify_parts(
    der: bytes | None,
    headers: Headers,
    path: str,
    *,
    is_revoked: Callable[[int], bool] = lambda serial: False,
    now: float | None = None,
) -> Peer:
    """:func:`identify` from the handshake's parts: the client certificate (DER), the
    request's headers and path. A link worker hands these over for the peers it terminates.

    Raises:
        IdentityMismatch: no usable certificate, or a header/path naming another node.
        AuthError: the certificate is expired, not yet valid, or revoked.
    """
    cert = read_node_cert(der) if der else None
    if cert is None:
        raise IdentityMismatch("client certificate does not name a node (CN=system:node:NAME)")
    node = cert.node
    check_node_cert_time(cert, time.time() if now is None else now)
    if is_revoked(cert.serial):
        raise AuthError(f"node certificate of {node} was revoked: {REJOIN_HINT}")
    claimed = headers.get("node_id")
    if claimed and claimed != node:
        raise IdentityMismatch(f"node_id header {claimed!r} disagrees with certificate {node!r}")
    parts = [p for p in path.split("?")[0].split("/") if p]
    project = headers.get("project_id", "")
    if len(parts) >= 3 and parts[-1] == "events":
        project = project or parts[-3]
        if parts[-2] != node:
            raise IdentityMismatch(f"path names node {parts[-2]!r}, certificate says {node!r}")
    heartbeat: float | None = None
    raw = headers.get(HEARTBEAT_HEADER)
    if raw:
        try:
            heartbeat = min(300.0, max(0.05, float(raw)))
        except ValueError:
            heartbeat = None
    return Peer(
        node=node,
        project=project,
        heartbeat=heartbeat,
        serial=cert.serial,
        not_after=cert.not_after,
        stock=raw is None and bool(claimed),
    )


def refuse(connection: ServerConnection, exc: Exception) -> Response:
    """A 403 with the reason as body; the reason is logged with the peer address."""
    log.warning("refused websocket from %s: %s", connection.remote_address, exc)
    return connection.respond(HTTPStatus.FORBIDDEN, f"{exc}\n")
