"""``edgecore``: join a cloud, then run.

Exit codes: 0 on a clean stop, 1 with one line on stderr for anything the user must fix
(bad token, unreachable cloud, missing or unwritable files, a data dir another edgecore runs
on, the MQTT port in use), 2 with one line for bad usage (a flag outside its range: see
:mod:`hive.flags`), before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgecore import app as edge_app
from edgecore import config, heap
from edgecore.eventbus.module import parse_url
from edgecore.metaserver.server import parse_address
from hive import logs
from hive.flags import Parser, Port, checked, setting
from hive.process import (
    one_line,
    os_error_line,
    parse_flags,
    run_until_signalled,
    setup_service_logging,
)
from wire.errors import BridgeError, ConfigError

log = logging.getLogger("edgecore")

_PORT = checked(Port)


def _local_api(value: str) -> str:
    """``--local-api ADDR:PORT`` with a port an operator can name (1-65535)."""
    try:
        _, port = parse_address(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    _PORT(str(port))
    return value


def _mqtt_url(value: str) -> str:
    try:
        parse_url(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


#: ``edgecore run`` flags that override ``edgecore.yaml``: flag dest -> (settings section,
#: field). A flag that is given replaces the file's value; each is checked by that field's
#: own constraints (its argparse ``type``), then the whole settings are validated again.
RUN_OVERRIDES: dict[str, tuple[str, str]] = {
    "local_api": ("meta", "local_api"),
    "heartbeat": ("hub", "heartbeat"),
    "mqtt_mode": ("mqtt", "mode"),
    "mqtt_url": ("mqtt", "url"),
    "mqtt_port": ("mqtt", "port"),
    "runtime": ("runtime", "kind"),
    "runtime_endpoint": ("runtime", "endpoint"),
    "pod_log_dir": ("runtime", "pod_log_dir"),
}


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="edgecore",
        description="The edge side of edgebridge: mirrors what the cloud binds to this node "
        "into a local SQLite cache and serves it, online or offline.",
        epilog="First 'edgecore join' with a token from 'edgectl token create', "
        "then 'edgecore run'.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    j = sub.add_parser(
        "join",
        help="obtain a node certificate from cloudhub",
        description="Pin the cloud CA against the token's hash, check that the websocket "
        "port answers with that CA, send a CSR, store the signed certificate and write "
        "DATA_DIR/edgecore.yaml.",
        epilog="example: edgecore join --cloud 127.0.0.1 --token $(edgectl token create) "
        "--node-name edge-1 --data-dir ./data/edge",
    )
    j.add_argument(
        "--cloud",
        required=True,
        metavar="HOST[:WS_PORT]",
        help="cloudhub address and its websocket port (default port 10000)",
    )
    j.add_argument("--token", required=True, help="join token: {ca-hash}.{jwt}")
    j.add_argument("--node-name", required=True, help="this node's name (DNS-1123)")
    j.add_argument("--cert-port", type=_PORT, default=10002, help="cloudhub HTTPS port (10002)")
    j.add_argument("--data-dir", type=Path, default=Path("data/edge"), help="default ./data/edge")

    r = sub.add_parser(
        "run",
        help="run the edge core",
        description="Connect to the cloud over mutual TLS, cache what is bound to this node "
        "in DATA_DIR/edgecore.db and serve it on the local API. Keeps serving offline. One "
        "edgecore per data dir: a second one exits at once, naming the first.",
    )
    r.add_argument("--data-dir", type=Path, default=Path("data/edge"), help="default ./data/edge")
    r.add_argument("--config", type=Path, help="config file (default DATA_DIR/edgecore.yaml)")
    r.add_argument(
        "--local-api",
        type=_local_api,
        metavar="ADDR:PORT",
        help="local API (default 127.0.0.1:10550)",
    )
    r.add_argument(
        "--mqtt-mode",
        choices=("internal", "external"),
        help="internal (default): start and supervise a mosquitto on 127.0.0.1:--mqtt-port; "
        "external: connect to --mqtt-url, e.g. the box's own mosquitto on mqtt://127.0.0.1:1883",
    )
    r.add_argument(
        "--mqtt-url",
        type=_mqtt_url,
        metavar="URL",
        help="external broker, mqtt://[user:pass@]HOST:PORT",
    )
    r.add_argument(
        "--mqtt-port",
        type=setting(config.MqttSettings, "port"),
        help=f"internal broker port (default {config.INTERNAL_MQTT_PORT}; not 1883, which a "
        "system mosquitto may hold)",
    )
    r.add_argument(
        "--heartbeat",
        type=setting(config.HubSettings, "heartbeat"),
        help="keepalive interval in seconds (default 10)",
    )
    r.add_argument(
        "--runtime",
        choices=("cri", "none"),
        help="cri: run the pods bound to this node through a CRI container runtime "
        "(containerd); none: keep pods as metadata only. Default: cri when the runtime "
        "endpoint's socket exists, else none",
    )
    r.add_argument(
        "--runtime-endpoint",
        type=setting(config.RuntimeSettings, "endpoint"),
        metavar="URL",
        help="the CRI endpoint (default unix:///run/containerd/containerd.sock)",
    )
    r.add_argument(
        "--pod-log-dir",
        type=setting(config.RuntimeSettings, "pod_log_dir"),
        metavar="DIR",
        help="container logs, kubelet's layout DIR/NS_POD_UID/C/N.log (default /var/log/pods)",
    )
    r.add_argument(
        "--dmi-socket",
        metavar="PATH",
        help="unix socket where KubeEdge DMI mappers (mapper-framework >= 1.15) register and "
        "report (default /etc/kubeedge/dmi.sock; 'off' serves no DMI)",
    )
    logs.add_options(r)
    return p


def _load(args: argparse.Namespace) -> config.EdgeSettings:
    """``edgecore.yaml`` with the flags given on top.

    Raises:
        ConfigError: missing or invalid file, or flags that do not fit together.
    """
    path = args.config or args.data_dir / config.CONFIG_FILE
    settings = config.load(path)
    raw: dict[str, Any] = settings.model_dump()
    if args.config is None:
        raw["data_dir"] = args.data_dir
    for dest, (section, field) in RUN_OVERRIDES.items():
        value = getattr(args, dest, None)
        if value is not None:
            raw[section][field] = value
    if args.dmi_socket:
        raw["dmi"]["socket"] = None if args.dmi_socket == "off" else Path(args.dmi_socket)
    try:
        settings = config.EdgeSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from exc
    if settings.mqtt.mode == "external" and not settings.mqtt.url:
        raise ConfigError("--mqtt-mode external needs --mqtt-url mqtt://HOST:PORT")
    return settings


async def _run(settings: config.EdgeSettings) -> None:
    heap.limit_arenas()  # before start: the cache's threads begin there
    app = await edge_app.start(settings)
    app.runner.spawn(
        "heap-trim", lambda: heap.trim_after_sync(app.hub.connected, lambda: app.store.commits)
    )
    await run_until_signalled(app.stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_flags(_parser(), argv)
    if isinstance(args, int):
        return args
    setup_service_logging(args)
    try:
        if args.command == "join":
            # here: it needs cryptography, which a running edge loads only to renew
            from edgecore.join import join

            settings = asyncio.run(
                join(
                    cloud=args.cloud,
                    token=args.token,
                    node_name=args.node_name,
                    cert_port=args.cert_port,
                    data_dir=args.data_dir,
                )
            )
            print(
                f"joined as node {settings.node_name}; run: edgecore run --data-dir {args.data_dir}"
            )
            return 0
        asyncio.run(_run(_load(args)))
        return 0
    except BridgeError as exc:
        print(f"edgecore: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # the machine's doing (disk full, permissions): still one line
        print(f"edgecore: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
