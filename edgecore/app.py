"""edgecore's composition: the one place its modules are created and wired together.

::

    cloud ──wss──> edgehub ──bus──> metamanager ──> SQLite (edgecore.db, WAL)
         <──ACK─── edgehub <──bus── metamanager          │
                                                         └──> metaserver (local API :10550)
    certmanager ──bus──> edgehub: renews node.crt at 70-80 % of its life, over the live link
    SQLite cache ──> edged ──CRI──> containerd: runs the pods bound here (--runtime cri)
                     edged ──bus──> edgehub: pod status, from its durable outbox
    edgestream <──bus──> edgehub: the cloud's logs/exec streams, answered through the runtime

Modules never import each other; they share only the bus (and the store handle, for the
local API which reads the cache). Everything started here is owned by one
:class:`hive.module.Runner` and stopped by it.

What only some edges use is imported only by them: edged and edgestream's CRI runtime with
``--runtime cri``, DMI when its socket is served, and DMI's gRPC only when a mapper connects
(:mod:`edgecore.dmi.door`). gRPC is ~15 MB of the process's resident memory
(``bench/edge_footprint.py``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from edgecore.certmanager.module import CertManager
from edgecore.config import EdgeSettings
from edgecore.cri.endpoint import normalize_endpoint
from edgecore.devicetwin.module import TwinModule
from edgecore.edgehub.module import EdgeHub, client_ssl_context
from edgecore.edgestream.module import EdgeStream
from edgecore.edgestream.runtime import StreamRuntime
from edgecore.eventbus.module import EventBus
from edgecore.figures import EdgeFigures
from edgecore.metamanager.module import MetaManager
from edgecore.metaserver.server import LocalApiServer, bound_port, make_app, parse_address, serve
from edgecore.metastore import MetaStore
from edgecore.modules import REGISTRY
from edgecore.nodestatus.facts import local_address
from edgecore.nodestatus.module import NodeStatusReporter
from hive.bus import Bus
from hive.datadir import DataDirLock, lock_data_dir
from hive.module import Runner
from wire.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class EdgeApp:
    """A running edgecore."""

    settings: EdgeSettings
    store: MetaStore
    bus: Bus
    hub: EdgeHub
    runner: Runner
    local_api: LocalApiServer
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    #: this process's ownership of the data dir, released last
    lock: DataDirLock | None = None

    @property
    def local_api_port(self) -> int:
        return bound_port(self.local_api)

    async def stop(self) -> None:
        await self.runner.stop()
        await self.local_api.cleanup()
        await self.store.close()
        if self.lock is not None:
            self.lock.release()
        self.stopped.set()


def runtime_kind(settings: EdgeSettings) -> str:
    """``cri`` or ``none``: ``auto`` is ``cri`` when the runtime's socket exists.

    Raises:
        ConfigError: ``cri`` asked for explicitly and the socket is not there.
    """
    rt = settings.runtime
    endpoint = normalize_endpoint(rt.endpoint)
    socket_path = Path(endpoint.removeprefix("unix://")) if endpoint.startswith("unix://") else None
    present = socket_path is None or socket_path.exists()
    if rt.kind == "auto":
        return "cri" if socket_path is not None and present else "none"
    if rt.kind == "cri" and not present:
        raise ConfigError(
            f"--runtime cri: no container runtime socket at {socket_path} "
            "(start containerd, or use --runtime-endpoint / --runtime none)"
        )
    return rt.kind


async def start(settings: EdgeSettings, *, stream_runtime: StreamRuntime | None = None) -> EdgeApp:
    """Own the data dir, open the cache, start the local API and the MQTT broker, then the
    cloud link.

    ``stream_runtime``: the container runtime pods' logs and exec are served from (None:
    streams are answered with an error saying the node runs none).

    The local API comes up before the cloud link is tried, so an edge whose cloud is away
    serves its cache at once.

    Raises:
        DataDirInUse: another edgecore runs on this data dir (the message names its pid).
        ConfigError: missing certificates, bad addresses, a port in use (local API, MQTT).
    """
    # Before anything in the data dir is touched: a second edgecore would otherwise kill this
    # one's mosquitto as "left over" and take the cloud link from it.
    lock = lock_data_dir(settings.data_dir, owner="edgecore run")
    try:
        app = await _start(settings, stream_runtime)
    except BaseException:
        lock.release()
        raise
    app.lock = lock
    return app


async def _start(settings: EdgeSettings, stream_runtime: StreamRuntime | None) -> EdgeApp:
    for path in (settings.ca_path, settings.cert_path, settings.key_path):
        if not path.exists():
            raise ConfigError(f"{path} is missing: run 'edgecore join' first")
    try:
        # Only to fail fast on unusable files; edgehub builds a fresh context per attempt so
        # that renewed and re-joined certificates are picked up without a restart.
        client_ssl_context(settings)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load the node certificate: {exc}") from exc
    runtime = runtime_kind(settings)
    bus = Bus()
    for name, group in REGISTRY:
        bus.register(name, group)
    # Built before anything is opened so a missing mosquitto fails start-up with one line.
    eventbus = EventBus(
        bus=bus, settings=settings.mqtt, node_name=settings.node_name, data_dir=settings.data_dir
    )
    store = await MetaStore.open(settings.db_path)
    hub = EdgeHub(bus=bus, settings=settings, inventory=store.inventory)
    meta = MetaManager(bus=bus, store=store, settings=settings.meta)
    certs = CertManager(bus=bus, settings=settings)
    twin = TwinModule(bus=bus, meta=store, db_path=settings.db_path, node_name=settings.node_name)
    figures = EdgeFigures(
        hub=hub, meta=meta, store=store, twin=twin, eventbus=eventbus, certs=certs
    )
    try:
        host, port = parse_address(settings.meta.local_api)
        local_api = await serve(
            make_app(store=store, node_name=settings.node_name, figures=figures), host, port
        )
    except BaseException:
        await store.close()
        raise
    if eventbus.broker is not None:
        # Here, not in the module: a port in use is one line and an exit (systemd restarts
        # the unit), not a module restarting forever.
        try:
            await eventbus.broker.start()
        except BaseException:
            await local_api.cleanup()
            await store.close()
            raise
    cached = await store.count()
    log.info(
        "edge %s: %d objects in the local cache; local API on http://%s",
        settings.node_name,
        cached,
        settings.meta.local_api,
    )
    runner = Runner()
    runner.start_module(meta)
    runner.start_module(certs)
    runner.start_module(eventbus)
    runner.start_module(twin)
    if settings.dmi.socket is not None:
        from edgecore.dmi.mappers import DMI_MAPPERS_FILE
        from edgecore.dmi.module import DmiModule  # protobuf; gRPC when a mapper connects

        runner.start_module(
            DmiModule(
                bus=bus,
                meta=store,
                settings=settings.dmi,
                state_file=settings.data_dir / DMI_MAPPERS_FILE,
            )
        )
    runner.start_module(
        NodeStatusReporter(
            bus=bus, node_name=settings.node_name, cloud_host=settings.hub.cloud_host
        )
    )
    if runtime == "cri":
        from edgecore.edged.module import Edged  # gRPC: see the module docstring

        cloud_host = settings.hub.cloud_host
        runner.start_module(
            Edged(
                bus=bus,
                store=store,
                settings=settings.runtime,
                node_name=settings.node_name,
                db_path=settings.db_path,
                pod_dir=settings.runtime.pod_dir or settings.data_dir / "pods",
                host_ip=lambda: local_address(cloud_host),
            )
        )
    else:
        log.info("edged: --runtime none: pods bound here are kept as metadata only")
    if runtime == "cri" and stream_runtime is None:
        from edgecore.cri.client import CriClient
        from edgecore.edgestream.cri import CriRuntime

        stream_runtime = CriRuntime(
            CriClient(settings.runtime.endpoint, timeout=settings.runtime.call_timeout),
            node_name=settings.node_name,
        )
    runner.start_module(
        EdgeStream(
            bus=bus,
            runtime=stream_runtime,
            node_name=settings.node_name,
            no_runtime=f"node {settings.node_name} runs pods as metadata only (--runtime none)",
        )
    )
    runner.start_module(hub)
    return EdgeApp(settings, store, bus, hub, runner, local_api)
