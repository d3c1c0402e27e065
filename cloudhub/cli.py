"""``cloudhub serve``: run the cloud side.

Exit codes: 0 on a clean stop, 1 with one line on stderr for what the user must fix (port in
use, data dir in use by another cloudhub or unwritable, unreadable kubeconfig), 2 with one line
for bad usage (a flag outside its range: see :mod:`hive.flags`), before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import math
import os
import sys
from pathlib import Path

from cloudhub import app as cloud_app
from cloudhub.config import CloudSettings, HubSettings
from cloudhub.k8s import cluster_requested
from hive import logs
from hive.flags import Parser, Port, checked, setting
from hive.process import (
    one_line,
    os_error_line,
    parse_flags,
    run_until_signalled,
    setup_service_logging,
)
from wire.durations import InvalidDuration, parse_duration
from wire.errors import BridgeError

log = logging.getLogger("cloudhub")


def duration_arg(text: str) -> dt.timedelta:
    """An argparse ``type``: :func:`wire.durations.parse_duration` as a timedelta."""
    try:
        return dt.timedelta(seconds=parse_duration(text))
    except InvalidDuration as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="cloudhub",
        description="The cloud side of edgebridge: holds edge links (wss, mutual TLS), "
        "mirrors what is bound to each node, issues node certificates, serves the admin API.",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser(
        "serve",
        help="run cloudhub",
        description="Run cloudhub. On first start it creates its CA, server certificate and "
        "admin token in --data-dir. Without --kubeconfig it keeps objects in DATA_DIR/store.db.",
        epilog="example: cloudhub serve --data-dir ./data/cloud --advertise-address 10.0.0.5",
    )
    s.add_argument("--data-dir", type=Path, default=Path("data/cloud"), help="default ./data/cloud")
    s.add_argument("--kubeconfig", type=Path, help="use this Kubernetes cluster as the store")
    s.add_argument("--bind", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    s.add_argument(
        "--ws-port", type=checked(Port), default=10000, help="edge websocket port (10000)"
    )
    s.add_argument(
        "--https-port", type=checked(Port), default=10002, help="join + admin API port (10002)"
    )
    s.add_argument(
        "--advertise-address",
        action="append",
        default=[],
        metavar="ADDR",
        help="address edges dial; goes into the server certificate (repeatable)",
    )
    s.add_argument(
        "--heartbeat",
        type=setting(HubSettings, "default_heartbeat"),
        help="heartbeat assumed for edges that do not announce one, seconds (default 15)",
    )
    s.add_argument(
        "--node-cert-validity",
        type=duration_arg,
        default=dt.timedelta(days=30),
        metavar="DURATION",
        help="lifetime of issued node certificates, e.g. 30d, 12h (default 30d); edges renew "
        "theirs at 70-80%% of it over their link",
    )
    s.add_argument(
        "--node-rate",
        type=setting(HubSettings, "node_rate"),
        metavar="FRAMES",
        help="frames per second read from one edge before its reading is paced "
        "(default 10000; 0 = no limit)",
    )
    s.add_argument(
        "--max-pending-per-ip",
        type=setting(HubSettings, "max_pending_per_ip"),
        metavar="N",
        help="edge connections from one address that may be mid-handshake at once; more are "
        "closed at accept (default 64; raise it when edges come through one NAT/LB address)",
    )
    k = s.add_argument_group("Kubernetes mode (with --kubeconfig, KUBECONFIG or in a pod)")
    k.add_argument(
        "--replica-name",
        metavar="NAME",
        help="this replica's identity in node-ownership leases (default: $POD_NAME or hostname)",
    )
    k.add_argument(
        "--owner-lease-seconds",
        type=setting(CloudSettings, "owner_lease_seconds"),
        default=20,
        metavar="S",
        help="node-ownership lease duration: how long a killed replica's edges wait before "
        "another replica serves them (default 20)",
    )
    k.add_argument(
        "--stream-address",
        metavar="ADDR",
        help="address the API server reaches this cloudhub's HTTPS port at: each edge Node "
        "names it as its kubelet, so kubectl logs/exec reach edge pods (default: $POD_IP, "
        "else the first --advertise-address)",
    )
    k.add_argument(
        "--kubelet-client-ca",
        type=Path,
        metavar="FILE",
        help="CA of the API server's kubelet client certificate; a certificate it signed may "
        "read logs and exec in every edge pod",
    )
    s.add_argument(
        "--link-workers",
        type=_link_workers,
        default="auto",
        metavar="N",
        help="processes that terminate the edges' TLS and websocket framing, so that a busy "
        "hub uses more than one core; 0 does it all in this process (default auto: one per "
        "core beyond the first, at most 4; none in Kubernetes mode)",
    )
    s.add_argument(
        "--auth-refresh-interval",
        type=setting(CloudSettings, "auth_refresh_interval"),
        default=30.0,
        metavar="SECONDS",
        help="how often the revocation list is re-read (revocations made by other replicas "
        "reach this one within it) and expired tokens/certificates are pruned (default 30)",
    )
    s.add_argument(
        "--coalesce",
        type=setting(HubSettings, "coalesce"),
        metavar="SECONDS",
        help="pause before re-sending an object that changed again to the same node, so "
        "bursts of edits coalesce (default 0.05)",
    )
    logs.add_options(s)
    return p


_WORKER_COUNT = setting(HubSettings, "link_workers")


def _link_workers(value: str) -> int | None:
    """``--link-workers``: a count, or ``auto`` (None: :func:`auto_link_workers` decides)."""
    if value.strip() == "auto":
        return None
    try:
        count: int = _WORKER_COUNT(value)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or 'auto'") from None
    return count


def auto_link_workers(*, kubernetes: bool) -> int:
    """``--link-workers auto``: one per core beyond the first, at most 4; none in Kubernetes
    mode, where the API server's CPU per update (4-5x cloudhub's) bounds throughput long
    before TLS does, and the worker process would cost ~49 MB and an extra hop per update
    (``bench/k8s_watch.py``)."""
    if kubernetes:
        return 0
    return max(0, min(4, available_cpus() - 1))


def available_cpus(cgroup: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a
    container's CPU limit, which ``os.cpu_count()`` does not see)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = cgroup.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 limit readable: the affinity is the limit
    return max(1, cpus)


async def _serve(settings: CloudSettings) -> None:
    app = await cloud_app.start(settings)
    log.info(
        "serving: edges on wss port %d, join/admin on https port %d", app.ws_port, app.https_port
    )
    await run_until_signalled(app.stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_flags(_parser(), argv)
    if isinstance(args, int):
        return args
    setup_service_logging(args)
    hub = HubSettings(
        bind=args.bind,
        ws_port=args.ws_port,
        link_workers=(
            args.link_workers
            if args.link_workers is not None
            else auto_link_workers(kubernetes=cluster_requested(args.kubeconfig))
        ),
        **_given(
            default_heartbeat=args.heartbeat,
            node_rate=args.node_rate,
            coalesce=args.coalesce,
            max_pending_per_ip=args.max_pending_per_ip,
        ),
    )
    settings = CloudSettings(
        data_dir=args.data_dir,
        https_port=args.https_port,
        advertise=args.advertise_address,
        kubeconfig=args.kubeconfig,
        hub=hub,
        node_cert_validity=args.node_cert_validity,
        replica=args.replica_name or "",
        owner_lease_seconds=args.owner_lease_seconds,
        auth_refresh_interval=args.auth_refresh_interval,
        stream_address=args.stream_address,
        kubelet_client_ca=args.kubelet_client_ca,
    )
    try:
        asyncio.run(_serve(settings))
    except BridgeError as exc:
        print(f"cloudhub: {one_line(exc)}", file=sys.stderr)
        return 1
    except OSError as exc:  # the machine's doing (disk full, permissions): still one line
        print(f"cloudhub: {os_error_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def _given(**flags: object) -> dict[str, object]:
    """The optional flags the user gave; the others keep the settings' defaults."""
    return {name: value for name, value in flags.items() if value is not None}


if __name__ == "__main__":
    sys.exit(main())
