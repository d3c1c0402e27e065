"""edgecore settings: ``DATA_DIR/edgecore.yaml``, written by ``edgecore join``.

Every field documents its unit, default and reason. Settings are passed explicitly to the
modules that need them; there is no global config object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from hive.files import write_atomic
from hive.flags import NonNegative, Port, Positive, Seconds
from wire.errors import ConfigError
from wire.liveness import DEFAULT_HEARTBEAT

CONFIG_FILE = "edgecore.yaml"
DB_FILE = "edgecore.db"
CA_FILE = "ca.crt"
CERT_FILE = "node.crt"
KEY_FILE = "node.key"
#: KubeEdge's default project id, sent as the ``project_id`` header and in the URL path.
DEFAULT_PROJECT = "e632aba927ea4ac2b575ec1603d56f10"


#: a path made absolute where it is read: containerd mounts and opens what edged names from
#: its own working directory, so a relative ``--data-dir`` must not reach it as such
AbsolutePath = Annotated[Path, AfterValidator(lambda p: p.absolute())]


class HubSettings(BaseModel):
    """The cloud link (edgehub)."""

    #: cloudhub host name or address, as given to ``edgecore join --cloud``
    cloud_host: str = "127.0.0.1"
    #: cloudhub websocket port (wss)
    ws_port: Port = 10000
    #: cloudhub HTTPS port (certificates)
    cert_port: Port = 10002
    project_id: str = DEFAULT_PROJECT
    #: seconds between keepalives; the link is declared dead after 2x this with no frame
    heartbeat: Seconds = DEFAULT_HEARTBEAT
    #: first reconnect delay upper bound, seconds (jittered, doubles each try)
    reconnect_initial: Seconds = 0.5
    #: reconnect delay cap, seconds
    reconnect_cap: Seconds = 30.0


class MetaSettings(BaseModel):
    """The SQLite cache (metamanager) and the local API (metaserver)."""

    #: ``ADDR:PORT`` of the read-only local API (KubeEdge's MetaServer port is 10550)
    local_api: str = "127.0.0.1:10550"
    #: max milliseconds a cloud message waits for its batch to commit before it is ACKed
    batch_window_ms: NonNegative = 2.0
    #: max messages committed in one transaction
    batch_max: Positive = 512


class CertSettings(BaseModel):
    """Renewal of the node certificate (certmanager)."""

    #: renew once this fraction of the certificate's lifetime has passed (lower bound); the
    #: actual point is drawn uniformly between the bounds, per certificate, so a fleet joined
    #: at the same moment does not renew at the same moment (KubeEdge renews at 70-90 %)
    renew_min_fraction: float = Field(default=0.7, gt=0, lt=1)
    #: upper bound of the renewal point, fraction of the lifetime
    renew_max_fraction: float = Field(default=0.8, gt=0, lt=1)
    #: seconds to wait for the cloud's answer to a renewal request
    request_timeout: Seconds = 30.0
    #: first delay before retrying a failed renewal, seconds (jittered, doubles each try)
    retry_initial: Seconds = 5.0
    #: retry delay cap, seconds (also bounded by a tenth of what is left of the lifetime)
    retry_cap: Seconds = 600.0
    #: seconds between looks at node.crt, to notice a re-join by ``edgecore join``
    check_interval: Seconds = 5.0


#: the internal broker's default port: not MQTT's 1883, which a distribution's own mosquitto
#: (Debian's ``mosquitto.service``, running wherever ``apt install mosquitto`` was done) holds
INTERNAL_MQTT_PORT = 11883


class MqttSettings(BaseModel):
    """The MQTT event bus (used by devices)."""

    #: ``internal``: edgecore starts and supervises its own mosquitto on 127.0.0.1:``port``;
    #: ``external``: it connects to ``url`` (e.g. the box's own broker, mqtt://127.0.0.1:1883)
    mode: Literal["internal", "external"] = "internal"
    #: port of the internal broker (``--mqtt-port``)
    port: Port = INTERNAL_MQTT_PORT
    #: the external broker, ``mqtt://[user:pass@]HOST:PORT`` (``--mqtt-url``)
    url: str | None = None


#: containerd's default CRI socket; ``--runtime`` defaults to ``cri`` when it exists
DEFAULT_CRI_ENDPOINT = "unix:///run/containerd/containerd.sock"


class RuntimeSettings(BaseModel):
    """The pods bound to this node (edged): run them through a CRI runtime, or not at all."""

    #: ``cri``: run pods through the CRI runtime at ``endpoint``; ``none``: pods are metadata
    #: only (a box without a container runtime); ``auto`` (default): ``cri`` when the
    #: endpoint's socket exists at start-up, else ``none``
    kind: Literal["auto", "cri", "none"] = "auto"
    #: the runtime's CRI endpoint (containerd's socket)
    endpoint: str = Field(default=DEFAULT_CRI_ENDPOINT, min_length=1)
    #: where container logs go, in kubelet's layout ``<dir>/<ns>_<pod>_<uid>/<c>/<n>.log``
    pod_log_dir: AbsolutePath = Path("/var/log/pods")
    #: where pod volumes (configMap, secret, emptyDir) live; default ``DATA_DIR/pods``
    pod_dir: AbsolutePath | None = None
    #: seconds between full syncs when nothing happened (a container that exits is noticed
    #: at the latest after this long; cache changes and back-off ends sync at once)
    sync_interval: float = Field(default=2.0, gt=0, le=300)
    #: first restart back-off of a crashed container, seconds (kubelet: 10, doubling)
    restart_backoff: float = Field(default=10.0, gt=0, le=3600)
    #: restart back-off cap, seconds (kubelet: 300)
    restart_backoff_cap: float = Field(default=300.0, gt=0, le=86400)
    #: first back-off after a failed image pull, seconds (kubelet: 10, doubling)
    image_backoff: float = Field(default=10.0, gt=0, le=3600)
    #: image pull back-off cap, seconds (kubelet: 300)
    image_backoff_cap: float = Field(default=300.0, gt=0, le=86400)
    #: deadline of one CRI call, seconds
    call_timeout: float = Field(default=30.0, gt=0, le=600)
    #: deadline of one image pull, seconds
    pull_timeout: float = Field(default=300.0, gt=0, le=3600)
    #: pods whose containers are being changed at once, at most
    parallel_pods: int = Field(default=64, ge=1, le=1024)
    #: seconds between sync rounds at least while pods are being changed (their completions
    #: come in bursts; fewer rounds leave the CPU to the runtime)
    busy_round_gap: float = Field(default=0.1, ge=0, le=10)


#: KubeEdge's default DMI socket (edgecore's ``DeviceTwin.DMISockPath``)
DEFAULT_DMI_SOCKET = Path("/etc/kubeedge/dmi.sock")


class DmiSettings(BaseModel):
    """Where DMI is served, and each mapper's report budget."""

    #: the unix socket mappers call; ``None`` serves no DMI
    socket: Path | None = DEFAULT_DMI_SOCKET
    #: reports per second one mapper may make, sustained
    rate: float = Field(default=100.0, gt=0, le=100_000)
    #: reports one mapper may make at once
    burst: float = Field(default=200.0, ge=1, le=1_000_000)
    #: seconds a call to a mapper may take
    call_timeout: float = Field(default=5.0, gt=0, le=300)


class EdgeSettings(BaseModel):
    """Everything edgecore needs to run."""

    node_name: str
    data_dir: AbsolutePath
    hub: HubSettings = Field(default_factory=HubSettings)
    meta: MetaSettings = Field(default_factory=MetaSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    cert: CertSettings = Field(default_factory=CertSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    dmi: DmiSettings = Field(default_factory=DmiSettings)

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def ca_path(self) -> Path:
        return self.data_dir / CA_FILE

    @property
    def cert_path(self) -> Path:
        return self.data_dir / CERT_FILE

    @property
    def key_path(self) -> Path:
        return self.data_dir / KEY_FILE


def load(path: Path) -> EdgeSettings:
    """Read ``edgecore.yaml``.

    Raises:
        ConfigError: missing, unreadable or invalid file.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} not found: run 'edgecore join' first") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"cannot read {path}: {problem}{where}") from exc
    try:
        return EdgeSettings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid {path}: {exc.errors()[0]['msg']}") from exc


def save(settings: EdgeSettings, path: Path) -> None:
    """Write ``edgecore.yaml`` with owner-only permissions (it names the credentials' files).

    Written beside and renamed over the old file: a crash or a full disk mid-write leaves the
    old settings, never a truncated file edgecore cannot start from.
    """
    text = yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False)
    write_atomic(path, text.encode(), mode=0o600)
