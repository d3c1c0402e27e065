"""cloudhub settings, grouped and typed. Built from command-line flags by ``cloudhub.cli`` and
passed explicitly to the modules; there is no global config object."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from wire.codec import DEFAULT_MAX_SIZE
from wire.delivery import DEFAULT_ACK_TIMEOUT, DEFAULT_WINDOW
from wire.liveness import DEFAULT_HEARTBEAT


class HubSettings(BaseModel):
    """The websocket server edges connect to."""

    #: listen address for both servers (``--bind``)
    bind: str = "0.0.0.0"
    #: wss port for edges (``--ws-port``); KubeEdge's is 10000
    ws_port: int = 10000
    #: largest accepted frame, bytes; bigger frames close the link with 1009
    max_frame: int = DEFAULT_MAX_SIZE
    #: heartbeat assumed for an edge that does not announce its own (KubeEdge edgecore: 15 s)
    default_heartbeat: float = 15.0
    #: heartbeat our own edgecore announces by default; cloud declares a link dead after 2x
    heartbeat: float = DEFAULT_HEARTBEAT
    #: seconds an edge has to state its inventory before it gets a full sync
    inventory_timeout: float = 5.0
    #: seconds to wait for an ACK before re-sending the newest version of a key
    ack_timeout: float = DEFAULT_ACK_TIMEOUT
    #: messages in flight per node
    window: int = DEFAULT_WINDOW


class CloudSettings(BaseModel):
    """Everything cloudhub needs to run."""

    data_dir: Path = Path("data/cloud")
    #: HTTPS port for join/certificates and the admin API (``--https-port``)
    https_port: int = 10002
    #: addresses that go into the server certificate's SANs (``--advertise-address``)
    advertise: list[str] = Field(default_factory=list)
    #: Kubernetes config file; ``None`` means the embedded store
    kubeconfig: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"
