"""Message routes between cloudhub's modules (in-process, over :class:`hive.bus.Bus`).

Module names are KubeEdge's. The content of in-process messages may hold Python objects (they
never touch the wire); everything that crosses the websocket is built by ``cloudhub.hub``.

edgecontroller -> cloudhub
    ``update`` with content :class:`Fanouts`: object changes in the order they happened, each
    to deliver (or remove) on some nodes. One entry per object change, whatever the number of
    nodes, so a burst is coalesced by the hub's per-node delivery state, not queued per node;
    the changes a watch had ready at once share one message.
    ``response`` to a ``desired`` query: content ``dict[key, (rv, object)]``.
    ``response``/``error`` to a node's ``query``: resource ``node/{node}/...``.

cloudhub -> devicecontroller
    an edge's ``update`` of ``node/{node}/{ns}/device/{name}/twin/edge_updated`` or
    ``.../state/update``, answered with ``response`` (applied) or ``error`` (refused); a stock
    edge's ``node/{node}/device/{name}/...`` (no namespace: resolved among the node's
    devices) and its ``get`` of ``node/{node}/membership/detail``, answered with
    :class:`MembershipDevices`.

cloudhub <-> cloudstream
    messages of group ``stream`` (:mod:`wire.streams`): to an edge with resource
    ``node/{node}/{ns}/pod/{name}`` (the hub strips the prefix and writes it on the node's
    link), from an edge with the prefix the hub adds from the certificate's identity.

devicecontroller -> cloudhub
    content :class:`Replies`: answer many of the node requests the hub forwarded at once.

devicecontroller -> fleet
    content :class:`TwinRefused`: a device report the cloud refused (fleet records it as an
    Event). The hub also tells fleet, as a member of :data:`LIFECYCLE_GROUP`, which nodes
    connect and disconnect.

cloudhub -> edgecontroller
    ``query`` of ``node/{node}/desired``: what is bound to the node now (answered in order with
    the fan-out messages, which is why it is not a ``send_sync``).
    ``query`` of ``node/{node}/{ns}/{type}/{name}``: an edge asked for an object.
    ``update`` of ``node/{node}/null/nodestatus/{node}`` with :class:`NodeStatusReport`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel

HUB = "cloudhub"
EDGECONTROLLER = "edgecontroller"
DEVICECONTROLLER = "devicecontroller"
CERTCONTROLLER = "certcontroller"
#: Kubernetes mode only: renews kube-node-lease heartbeats of connected nodes
NODELIFECYCLE = "nodelifecycle"
#: Kubernetes mode only: removes a deleted edge Node's leases and pods (not on the bus)
NODEREAPER = "nodereaper"
#: modules told about node presence besides edgecontroller
LIFECYCLE_GROUP = "lifecycle"
HTTPSERVER = "httpserver"
#: relays logs and exec streams over the nodes' links (in the lifecycle group: it must hear
#: of disconnects)
CLOUDSTREAM = "cloudstream"
#: follows nodes, pods and devices for the fleet page and metrics; records Events
FLEET = "fleet"

DESIRED = "desired"
#: a stock edge's get of its devices (answered with :class:`MembershipDevices`)
MEMBERSHIP_DETAIL = "membership/detail"
NODESTATUS = "nodestatus"


class Fanout(NamedTuple):
    """Deliver ``object`` (edge key ``key``) at ``resource_version`` on ``nodes``, or remove
    it from them when ``resource_version`` is ``None``.

    Named tuples (this and :class:`Fanouts`), not frozen dataclasses: one of each is built per
    watch event, and a frozen dataclass's ``__init__`` took two and a half times as long.
    """

    key: str
    resource_version: str | None
    nodes: tuple[str, ...]
    object: dict[str, Any]
    #: ``object`` as JSON, when the store handed it over (not for removals): sent as it is
    body: str | None = None


class Fanouts(NamedTuple):
    """Object changes for the hub, in the order they happened."""

    changes: tuple[Fanout, ...]


@dataclass(frozen=True, slots=True)
class NodeStatusReport:
    """The hub saw a node connect or disconnect."""

    online: bool
    #: wall-clock seconds of the event
    at: float


@dataclass(frozen=True, slots=True)
class MembershipDevices:
    """devicecontroller's answer to a stock edge's ``membership/detail`` get: the Devices
    bound to the node (the hub writes them as
    :func:`cloudhub.hub.stock.membership_detail_frame`)."""

    devices: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Replies:
    """Inbox content: answer many forwarded requests at once.

    Each ``parent_ids`` entry is the id of a request the hub forwarded; the edge that sent it
    gets a ``response`` carrying ``content``. One bus message per batch instead of one per
    request (the devicecontroller ACKs whole batches of twin reports).
    """

    parent_ids: tuple[str, ...]
    content: Any = "OK"


@dataclass(frozen=True, slots=True)
class TwinRefused:
    """Content of a message to :data:`FLEET`: devicecontroller refused a report of the device
    ``namespace/name`` for ``reason`` at ``at`` (wall-clock seconds)."""

    namespace: str
    name: str
    reason: str
    at: float


class NodePresence(BaseModel):
    """Whether a node has a live link to this cloudhub, and when it was last heard from."""

    online: bool
    #: unix seconds of the last frame received from the node; None if never seen
    last_seen: float | None = None
    #: unix seconds the live link was opened; None while offline
    connected_at: float | None = None


class Presence(Protocol):
    """Who is connected: the hub answers, the admin API and the fleet pages ask."""

    def presence(self, node: str) -> NodePresence: ...


def desired_resource(node: str) -> str:
    return f"node/{node}/{DESIRED}"


def nodestatus_resource(node: str) -> str:
    return f"node/{node}/null/{NODESTATUS}/{node}"


_BARE_REPORT = re.compile(r"device/(?P<name>[^/]+)/(?P<suffix>twin/edge_updated|state/update)")


def bare_resource(resource: str) -> tuple[str, str] | None:
    """A stock edge's device report (see :mod:`cloudhub.hub.stock`): ``(device name,
    suffix)`` of ``device/{name}/twin/edge_updated`` or ``device/{name}/state/update`` (no
    namespace), else ``None``."""
    match = _BARE_REPORT.fullmatch(resource)
    return (match["name"], match["suffix"]) if match else None


def upstream_destination(resource: str) -> str:
    """Which controller owns an edge's write to ``resource`` (edge-side resource string).

    Device twin and state reports (``{ns}/device/{name}/...``) go to devicecontroller,
    certificate renewals (``null/certificatesigningrequest/{node}``) to certcontroller,
    everything else (node status, leases, pod status) to edgecontroller.
    """
    parts = resource.split("/")
    if len(parts) >= 3 and parts[1] == "device":
        return DEVICECONTROLLER
    if len(parts) >= 3 and parts[1] == "certificatesigningrequest":
        return CERTCONTROLLER
    return EDGECONTROLLER
