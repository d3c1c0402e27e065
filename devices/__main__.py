"""``python -m devices``: the mapper for every device bound to this edge.

Exit codes: 0 on a clean stop (SIGINT/SIGTERM), 2 with one line on stderr for bad flags. A
broker or a local API that is down is *not* an error: the mapper waits for them, as it must
when started before edgecore.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from pydantic import ValidationError

from devices.driver import Registry
from devices.link import parse_broker
from devices.mapper import Mapper, MapperSettings
from devices.source import LocalApiSource
from hive.process import setup_logging
from wire.errors import BridgeError

log = logging.getLogger("devices")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devices",
        description="The device mapper: serves every KubeEdge Device bound to this edge whose "
        "protocol it has a driver for (modbus, opcua, virtual, and installed plugins), reading "
        "them from the edge local API and speaking KubeEdge's MQTT twin protocol with the edge.",
        epilog="example: python -m devices --broker mqtt://127.0.0.1:11883 "
        "--local-api 127.0.0.1:10550",
    )
    p.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:11883",
        metavar="URL",
        help="the edge broker, mqtt://[user:password@]host[:port] "
        "(default mqtt://127.0.0.1:11883, edgecore's internal mosquitto)",
    )
    p.add_argument(
        "--local-api",
        default="127.0.0.1:10550",
        metavar="ADDR:PORT",
        help="the edge local API the Devices are read from (default 127.0.0.1:10550)",
    )
    p.add_argument("--device", metavar="NAME", help="serve only this Device (default: all)")
    p.add_argument(
        "-n", "--namespace", default="default", help="namespace of --device (default: default)"
    )
    p.add_argument(
        "--list-drivers", action="store_true", help="print the protocols served and exit"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _local_api_url(addr: str) -> str:
    if "://" in addr:
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--local-api {addr!r}: expected ADDR:PORT, e.g. 127.0.0.1:10550")
    return f"http://{addr}"


async def _serve(mapper: Mapper) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, mapper.stop)
    await mapper.run()
    log.info("mapper stopped")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run until stopped; returns the exit code."""
    args = _parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    if not args.verbose:
        # paho/aiomqtt/asyncua chatter is for debugging the libraries, not for watching devices
        for name in ("mqtt", "asyncua", "pymodbus"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.list_drivers:
        print("\n".join(Registry().names))
        return 0
    try:
        settings = MapperSettings(broker=args.broker, device=args.device, namespace=args.namespace)
        parse_broker(settings.broker)
        api = _local_api_url(args.local_api)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        flag = str(first["loc"][0]).replace("_", "-")
        print(f"devices: --{flag}: {first['msg']}", file=sys.stderr)
        return 2
    except (BridgeError, ValueError) as exc:
        print(f"devices: {exc}", file=sys.stderr)
        return 2
    registry = Registry()
    log.info(
        "mapper: broker %s, local API %s, drivers %s%s",
        settings.broker,
        api,
        ", ".join(registry.names),
        f", only {settings.namespace}/{settings.device}" if settings.device else "",
    )
    mapper = Mapper(settings, LocalApiSource(api), registry=registry)
    asyncio.run(_serve(mapper))
    return 0


if __name__ == "__main__":
    sys.exit(main())
