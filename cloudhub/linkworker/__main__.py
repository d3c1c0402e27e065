"""``python -m cloudhub.linkworker CONFIG_JSON``: a link worker; cloudhub starts it, not you."""

from __future__ import annotations

import asyncio
import signal
import sys

from cloudhub.linkworker.worker import WorkerConfig, run_worker
from hive.process import setup_logging


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cloudhub.linkworker CONFIG_JSON (started by cloudhub serve)",
              file=sys.stderr)  # fmt: skip
        return 2
    config = WorkerConfig.model_validate_json(args[0])
    setup_logging(verbose=config.verbose, fmt=config.log_format)
    # cloudhub's Ctrl-C reaches the whole process group: let cloudhub end us by closing the
    # channel, so no connection is dropped before cloudhub has let go of it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    asyncio.run(run_worker(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
