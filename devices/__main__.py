"""``python -m devices``: run one mapper for one device against the edge broker.

Exit codes: 0 on a clean stop (SIGINT/SIGTERM), 1 with one line on stderr for bad settings
(unknown driver, unparsable broker URL), 2 with one line for bad usage (a flag the settings
model's constraints refuse, such as a non-positive interval). A broker that is down is
*not* an error: the mapper waits for it, as it must when started before edgecore.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from pydantic import ValidationError

from devices import drivers
from devices.mapper import Mapper, MapperSettings
from hive.flags import Parser, setting
from hive.process import setup_logging
from wire.errors import BridgeError

log = logging.getLogger("devices")


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m devices",
        description="A device mapper: reports a device's properties to the edge's device twin "
        "over KubeEdge's MQTT twin protocol and applies the desired values it receives.",
        epilog="example: python -m devices --broker mqtt://127.0.0.1:11883 "
        "--device thermostat-1 --driver virtual --seed 1",
    )
    p.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:11883",
        metavar="URL",
        help="edge broker, mqtt://[user:password@]host[:port] (default mqtt://127.0.0.1:11883, "
        "edgecore's internal broker)",
    )
    p.add_argument("--device", required=True, help="the Device's name (metadata.name)")
    p.add_argument("--namespace", default="default", help="the Device's namespace (default)")
    p.add_argument(
        "--driver",
        default="virtual",
        choices=drivers.NAMES,
        help="device driver (default virtual: a simulated thermostat)",
    )
    p.add_argument(
        "--report-interval",
        type=setting(MapperSettings, "report_interval"),
        default=1.0,
        metavar="SECONDS",
        help="seconds between reports (default 1.0)",
    )
    p.add_argument("--seed", type=int, help="seed a simulated driver for a repeatable run")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


async def _run(mapper: Mapper) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, mapper.stop)
    await mapper.run()


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run until stopped; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already said in one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    setup_logging(verbose=args.verbose)
    if not args.verbose:
        # paho/aiomqtt chatter is for debugging the library, not for watching a device.
        logging.getLogger("mqtt").setLevel(logging.WARNING)
    try:
        settings = MapperSettings(
            device=args.device,
            namespace=args.namespace,
            broker=args.broker,
            report_interval=args.report_interval,
        )
        mapper = Mapper(drivers.create(args.driver, seed=args.seed), settings)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        print(
            f"devices: --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}", file=sys.stderr
        )
        return 2
    except BridgeError as exc:
        print(f"devices: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_run(mapper))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
