"""Who is connecting. A node's identity is its client certificate, nothing else.

TLS already refused peers without a certificate from our CA (``CERT_REQUIRED``). Here we read
the node name from the certificate's CN (``system:node:NAME``) and refuse the upgrade when the
``node_id`` header or the URL path (``/{project}/{node}/events``) claims someone else:
KubeEdge trusts the header by default, which lets any node impersonate any other.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from cloudhub.pki import node_name_from_cert
from wire.errors import IdentityMismatch

log = logging.getLogger(__name__)

#: header in which our edgecore announces its heartbeat (seconds); stock edgecores don't.
HEARTBEAT_HEADER = "edgebridge-heartbeat"


@dataclass(frozen=True, slots=True)
class Peer:
    node: str
    project: str
    #: the heartbeat the edge announced, or ``None`` (then the hub's default applies)
    heartbeat: float | None


def identify(connection: ServerConnection, request: Request) -> Peer:
    """Check the handshake against the client certificate.

    Raises:
        IdentityMismatch: no usable certificate, or a header/path naming another node.
    """
    ssl_object = connection.transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    node = node_name_from_cert(der) if der else None
    if not node:
        raise IdentityMismatch("client certificate does not name a node (CN=system:node:NAME)")
    claimed = request.headers.get("node_id")
    if claimed and claimed != node:
        raise IdentityMismatch(f"node_id header {claimed!r} disagrees with certificate {node!r}")
    parts = [p for p in request.path.split("?")[0].split("/") if p]
    project = request.headers.get("project_id", "")
    if len(parts) >= 3 and parts[-1] == "events":
        project = project or parts[-3]
        if parts[-2] != node:
            raise IdentityMismatch(f"path names node {parts[-2]!r}, certificate says {node!r}")
    heartbeat: float | None = None
    raw = request.headers.get(HEARTBEAT_HEADER)
    if raw:
        try:
            heartbeat = min(300.0, max(0.05, float(raw)))
        except ValueError:
            heartbeat = None
    return Peer(node=node, project=project, heartbeat=heartbeat)


def refuse(connection: ServerConnection, exc: Exception) -> Response:
    """A 403 with the reason as body; the reason is logged with the peer address."""
    log.warning("refused websocket from %s: %s", connection.remote_address, exc)
    return connection.respond(HTTPStatus.FORBIDDEN, f"{exc}\n")
