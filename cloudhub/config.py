"""cloudhub settings, grouped and typed. Built from command-line flags by ``cloudhub.cli`` and
passed explicitly to the modules; there is no global config object."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from pydantic import BaseModel, Field

from cloudhub.store.settings import StoreSettings
from hive.flags import ListenPort, NonNegative, Positive, Seconds
from wire.codec import DEFAULT_MAX_SIZE
from wire.delivery import DEFAULT_ACK_TIMEOUT, DEFAULT_WINDOW
from wire.liveness import DEFAULT_HEARTBEAT


class HubSettings(BaseModel):
    """The websocket server edges connect to."""

    #: listen address for both servers (``--bind``)
    bind: str = "0.0.0.0"
    #: wss port for edges (``--ws-port``); KubeEdge's is 10000
    ws_port: ListenPort = 10000
    #: largest accepted frame, bytes; bigger frames close the link with 1009
    max_frame: Positive = DEFAULT_MAX_SIZE
    #: heartbeat assumed for an edge that does not announce its own (KubeEdge edgecore: 15 s)
    default_heartbeat: Seconds = 15.0
    #: heartbeat our own edgecore announces by default; cloud declares a link dead after 2x
    heartbeat: Seconds = DEFAULT_HEARTBEAT
    #: seconds an edge has to state its inventory before it gets a full sync
    inventory_timeout: Seconds = 5.0
    #: seconds to wait for an ACK before re-sending the newest version of a key
    ack_timeout: Seconds = DEFAULT_ACK_TIMEOUT
    #: messages in flight per node
    window: Positive = DEFAULT_WINDOW
    #: seconds an object waits after being sent to a node before its next version goes to
    #: that node: a burst of edits then costs each node about burst/coalesce messages instead
    #: of one per edit, while a change after a quiet period still goes out at once
    coalesce: NonNegative = 0.05
    #: seconds a frame write may wait for a peer that stopped reading (a full TCP window)
    #: before its link is dropped; in link workers too
    send_timeout: Seconds = 10.0
    #: seconds a connection may take for TLS, and again for the websocket upgrade, before it
    #: is closed (slow or half-open handshakes)
    handshake_timeout: Seconds = 10.0
    #: connections accepted but not yet authenticated, in total; more are closed at accept
    max_pending_handshakes: Positive = 1024
    #: the same, per source address, so one peer cannot use up the total for everyone
    max_pending_per_ip: Positive = 64
    #: frames per second the hub reads from one node (ACKs and keepalives count 1/20th);
    #: beyond it reading is paced, not dropped, so TCP slows the sender. 0 = unlimited.
    #: High enough for a busy gateway's twin reports (thousands a second), low enough that
    #: one node cannot take the whole process (``--node-rate``)
    node_rate: NonNegative = 10_000.0
    #: frames one node may send in a burst before pacing starts
    node_burst: float = Field(default=20_000.0, gt=0)
    #: bytes per second the hub reads from one node (decoding JSON is the CPU cost). 0 = off
    node_byte_rate: NonNegative = 8 * 1024 * 1024
    #: bytes one node may send in a burst before pacing starts
    node_byte_burst: float = Field(default=16 * 1024 * 1024, gt=0)
    #: processes that terminate the edges' TLS and websocket framing for this one
    #: (``--link-workers``); 0 does it in this process
    link_workers: int = Field(default=0, ge=0, le=64)


class CloudSettings(BaseModel):
    """Everything cloudhub needs to run."""

    data_dir: Path = Path("data/cloud")
    #: HTTPS port for join/certificates and the admin API (``--https-port``)
    https_port: ListenPort = 10002
    #: addresses that go into the server certificate's SANs (``--advertise-address``)
    advertise: list[str] = Field(default_factory=list)
    #: Kubernetes config file; ``None`` means the embedded store
    kubeconfig: Path | None = None
    #: lifetime of issued node certificates (``--node-cert-validity``); edges renew theirs at
    #: 70-80 % of it over their live link
    node_cert_validity: dt.timedelta = Field(default=dt.timedelta(days=30), gt=dt.timedelta(0))
    #: this replica's name in Kubernetes mode (lease holder identity); POD_NAME or the hostname
    replica: str = ""
    #: seconds a node-ownership lease lasts in Kubernetes mode: how long a killed replica's
    #: edges wait before another replica may serve them
    owner_lease_seconds: Positive = 20
    #: namespace of the node-ownership leases in Kubernetes mode
    cluster_namespace: str = "edgebridge"
    #: seconds between re-reads of the revocation list (other replicas' revocations) and
    #: pruning of expired tokens and certificates from the auth ledger
    auth_refresh_interval: Seconds = 30.0
    #: Kubernetes mode: the address the API server reaches this cloudhub's HTTPS port at,
    #: written into each edge's Node as its kubelet's (``kubectl logs``/``exec``);
    #: ``--stream-address``, default ``$POD_IP`` (in a pod: each replica names itself for the
    #: edges it serves), else the first ``--advertise-address``
    stream_address: str | None = None
    #: CA file of the API server's kubelet client certificate (the apiserver's
    #: ``--kubelet-client-certificate``); a client certificate it signed may reach every pod
    #: through the kubelet-shaped endpoints (``--kubelet-client-ca``)
    kubelet_client_ca: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)
    #: the embedded store's history, watcher buffers and batch sizes
    store: StoreSettings = Field(default_factory=StoreSettings)

    @property
    def kubelet_address(self) -> str | None:
        """The address the API server should dial for this cloudhub's kubelet endpoints."""
        if self.stream_address:
            return self.stream_address
        pod_ip = os.environ.get("POD_IP")
        if pod_ip:
            return pod_ip
        return self.advertise[0] if self.advertise else None

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def auth_path(self) -> Path:
        """Token use counts and issued/revoked certificates (mode 0600)."""
        return self.data_dir / "auth.db"
