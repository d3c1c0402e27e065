"""``python -m devices``: the mapper for every device bound to this edge.

Exit codes: 0 on a clean stop (SIGINT/SIGTERM), 2 with one line on stderr for bad flags (an
unparsable broker URL or local API address, a value the settings model's constraints refuse),
before anything starts. A broker or a local API that is down is *not* an error: the mapper
waits for them, as it must when started before edgecore.
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
from hive.flags import Parser, Port, checked
from hive.process import one_line, parse_flags, setup_logging
from wire.errors import BridgeError

log = logging.getLogger("devices")

_PORT = checked(Port)


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m devices",
        description="The device mapper: serves every KubeEdge Device bound to this edge whose "
        "protocol it has a driver for (modbus, opcua, virtual, and installed plugins), reading "
        "them from the edge local API and speaking KubeEdge's MQTT twin protocol with the edge.",
        epilog="example: python -m devices --broker mqtt://127.0.0.1:11883 "
        "--local-api 127.0.0.1:10550",
    )
    p.add_argument(
        "--broker",
        type=_broker,
        default="mqtt://127.0.0.1:11883",
        metavar="URL",
        help="the edge broker, mqtt://[user:password@]host[:port] "
        "(default mqtt://127.0.0.1:11883, edgecore's internal mosquitto)",
    )
    p.add_argument(
        "--local-api",
        type=_local_api_url,
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


def _broker(url: str) -> str:
    """``--broker``: a URL :func:`devices.link.parse_broker` accepts."""
    try:
        parse_broker(url)
    except BridgeError as exc:
        raise argparse.ArgumentTypeError(one_line(exc)) from None
    return url


def _local_api_url(addr: str) -> str:
    """``--local-api ADDR:PORT`` (or a URL) -> the local API's base URL."""
    if "://" in addr:
        return addr
    host, sep, port = addr.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"{addr!r}: expected ADDR:PORT, e.g. 127.0.0.1:10550")
    try:
        _PORT(port)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{addr!r}: port {exc}") from None
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
    args = parse_flags(_parser(), argv)
    if isinstance(args, int):
        return args
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
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        flag = str(first["loc"][0]).replace("_", "-")
        print(f"devices: --{flag}: {first['msg']}", file=sys.stderr)
        return 2
    api: str = args.local_api
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
