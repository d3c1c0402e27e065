"""``edgecore``: join a cloud, then run.

Exit codes: 0 on a clean stop, 1 with one line on stderr for anything the user must fix
(bad token, unreachable cloud, missing files), 2 for bad usage (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from edgecore import app as edge_app
from edgecore import config
from edgecore.join import join
from hive import logs
from hive.process import run_until_signalled, setup_logging
from wire.errors import BridgeError, ConfigError

log = logging.getLogger("edgecore")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
        description="Pin the cloud CA against the token's hash, send a CSR, store the signed "
        "certificate and write DATA_DIR/edgecore.yaml.",
        epilog="example: edgecore join --cloud 127.0.0.1 --token $(edgectl token create) "
        "--node-name edge-1 --data-dir ./data/edge",
    )
    j.add_argument("--cloud", required=True, metavar="HOST[:WS_PORT]", help="cloudhub address")
    j.add_argument("--token", required=True, help="join token: {ca-hash}.{jwt}")
    j.add_argument("--node-name", required=True, help="this node's name (DNS-1123)")
    j.add_argument("--cert-port", type=int, default=10002, help="cloudhub HTTPS port (10002)")
    j.add_argument("--data-dir", type=Path, default=Path("data/edge"), help="default ./data/edge")

    r = sub.add_parser(
        "run",
        help="run the edge core",
        description="Connect to the cloud over mutual TLS, cache what is bound to this node "
        "in DATA_DIR/edgecore.db and serve it on the local API. Keeps serving offline.",
    )
    r.add_argument("--data-dir", type=Path, default=Path("data/edge"), help="default ./data/edge")
    r.add_argument("--config", type=Path, help="config file (default DATA_DIR/edgecore.yaml)")
    r.add_argument("--local-api", metavar="ADDR:PORT", help="local API (default 127.0.0.1:10550)")
    r.add_argument(
        "--mqtt-mode",
        choices=("internal", "external"),
        help="internal (default): start and supervise a mosquitto on 127.0.0.1; "
        "external: connect to --mqtt-url",
    )
    r.add_argument(
        "--mqtt-url", metavar="URL", help="external broker, mqtt://[user:pass@]HOST:PORT"
    )
    r.add_argument("--mqtt-port", type=int, help="internal broker port (default 1883)")
    r.add_argument("--heartbeat", type=float, help="keepalive interval in seconds (default 10)")
    r.add_argument(
        "--runtime",
        choices=("cri", "none"),
        help="cri: run the pods bound to this node through a CRI container runtime "
        "(containerd); none: keep pods as metadata only. Default: cri when the runtime "
        "endpoint's socket exists, else none",
    )
    r.add_argument(
        "--runtime-endpoint",
        metavar="URL",
        help="the CRI endpoint (default unix:///run/containerd/containerd.sock)",
    )
    r.add_argument(
        "--pod-log-dir",
        type=Path,
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
    path = args.config or args.data_dir / config.CONFIG_FILE
    settings = config.load(path)
    if args.config is None:
        settings.data_dir = args.data_dir
    if args.local_api:
        settings.meta.local_api = args.local_api
    if args.heartbeat:
        settings.hub.heartbeat = args.heartbeat
    if args.mqtt_mode:
        settings.mqtt.mode = args.mqtt_mode
    if args.mqtt_url:
        settings.mqtt.url = args.mqtt_url
    if args.mqtt_port:
        settings.mqtt.port = args.mqtt_port
    if args.runtime:
        settings.runtime.kind = args.runtime
    if args.runtime_endpoint:
        settings.runtime.endpoint = args.runtime_endpoint
    if args.pod_log_dir:
        settings.runtime.pod_log_dir = args.pod_log_dir
    if args.dmi_socket:
        settings.dmi.socket = None if args.dmi_socket == "off" else Path(args.dmi_socket)
    if settings.mqtt.mode == "external" and not settings.mqtt.url:
        raise ConfigError("--mqtt-mode external needs --mqtt-url mqtt://HOST:PORT")
    return settings


async def _run(settings: config.EdgeSettings) -> None:
    app = await edge_app.start(settings)
    await run_until_signalled(app.stop)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(
        verbose=args.verbose,
        level=logs.level_from(args),
        fmt=getattr(args, "log_format", "text"),
    )
    try:
        if args.command == "join":
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
        print(f"edgecore: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
