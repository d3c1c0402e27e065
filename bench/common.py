"""Shared plumbing for the cloud-edge benchmarks in ``bench/``.

Why the benchmarks drive a *real* cloudhub process but *simulated* edges: what we want to know
is what one cloudhub costs (memory per link, messages per second, what a reconnect or a burst
costs on the wire). A real edgecore per node would measure SQLite on the edge and cap the fleet
at a few dozen processes. :class:`SimEdge` speaks exactly the edge's side of the protocol
(mutual TLS, ``inventory`` first, an ACK for every downstream message, keepalives) and nothing
else, so thousands fit in a few client processes.

Everything runs on 127.0.0.1 with free ports in a temporary directory, and every process a
benchmark starts is stopped by it (:class:`CloudHub` is a context manager).

Conventions shared by every script: progress goes to stderr through :mod:`logging`; the final
figures go to stdout as ``name: value unit`` lines (:class:`Figures`), so a run can be diffed
or grepped.

Where things live:

- ``bench/common.py`` (this module): small process utilities (logging set-up, free ports,
  the open-file limit, polling for a condition, starting and stopping a child process, a TLS
  server certificate, the options every run takes and the end of its temp dir).
- ``bench/measure.py``: reading a process's RSS and CPU, percentiles, the :class:`Figures`
  block, the shared ``main`` runner (:func:`run_benchmark`) and py-spy profiling.
- ``bench/cloud.py``: the cloudhub process (:class:`CloudHub`), its admin API client
  (:class:`Admin`) and the objects the benchmarks apply.
- ``bench/simedge.py``: certificate minting (:class:`CertMinter`) and the simulated edge
  (:class:`SimEdge`) with its fleet helpers.
- a script's own child-process and helper side, so the script itself reads as the driver:
  ``bench/hub_workers.py`` (``hub_scale.py``'s ``--worker`` and ``--echo-server`` processes),
  ``bench/twin_workers.py`` (``twin_throughput.py``'s ``--worker`` paho clients),
  ``bench/twin_parts.py`` (its edgecore process, CPU meters and lag poller) and
  ``bench/k8s_parts.py`` (``k8s_mirror.py``'s API emulator, ``--serve-emulator``). The child
  processes are still started as the script with its flag; the script calls into the module.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


# -- small utilities --------------------------------------------------------------------------


def setup_logging(*, verbose: bool = False, prefix: str = "") -> None:
    """Progress lines on stderr, with a wall-clock stamp (stdout is kept for the figures)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=f"%(asctime)s {prefix}%(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # websockets logs every frame at debug level; only our own progress is wanted here.
    for noisy in ("websockets", "asyncio", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the usual small race is acceptable here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to the hard limit; returns the new limit.

    Children inherit it, which is how a cloudhub started by a benchmark gets enough
    descriptors for thousands of links without cloudhub changing its own limits.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def launch(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in the repository root, its output (unbuffered) appended to ``log_path``."""
    with log_path.open("ab") as out:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)


def stop_process(p: subprocess.Popen[bytes] | None, *, grace: float = 5.0, what: str = "") -> None:
    """SIGTERM, then SIGKILL if it has not exited after ``grace`` seconds (logged when ``what``
    names the process). Nothing to do if it never started or has exited."""
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        if what:
            log.info("%s did not stop in %.0fs; killing it", what, grace)
        p.kill()
        p.wait(5)


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` right now."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def wait_for_condition(
    predicate: Callable[[], bool], *, timeout: float, interval: float = 0.05, what: str = ""
) -> bool:
    """Poll ``predicate`` until true or ``timeout``; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            if what:
                log.warning("gave up waiting for %s after %.0fs", what, timeout)
            return False
        await asyncio.sleep(interval)
    return True


def add_run_options(p: argparse.ArgumentParser, *, timeout: float, keeps: str = "logs") -> None:
    """The options a bench run in a temp dir takes last: ``--timeout`` (its hard limit, for
    :func:`bench.measure.run_benchmark`), ``--workdir`` and ``--keep`` (where the temp dir goes
    and whether it stays: :func:`finish_workdir`; ``keeps`` says what it holds), ``-v``."""
    p.add_argument(
        "--timeout", type=float, default=float(timeout), help=f"hard limit, seconds ({timeout:g})"
    )
    p.add_argument("--workdir", type=Path, default=None, help="parent of the temp dir (system)")
    p.add_argument("--keep", action="store_true", help=f"keep the temp dir ({keeps})")
    p.add_argument("-v", "--verbose", action="store_true", help="debug progress")


def finish_workdir(workdir: Path, *, keep: bool) -> None:
    """A run's temp dir at its end: removed, or with ``--keep`` left in place for its logs."""
    if keep:
        log.info("kept %s", workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def tls_server(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A TLS server context for 127.0.0.1 as cloudhub's HTTPS port makes it, and its CA file.

    The certificate is cloudhub's own (:meth:`cloudhub.pki.Authority.load_or_create` in
    ``directory``, created on the first call, loaded after): an ECDSA P-256 server certificate
    for the loopback addresses, signed by a CA whose file a verifying client loads.

    cloudhub is imported here, not at the top of this module: a bench that runs another tree's
    code (``hub_wire.py --against DIR``) imports this module from its own tree first and then
    gets DIR's cloudhub, certificate code included.
    """
    from cloudhub.pki import Authority

    authority = Authority.load_or_create(directory, advertise=[])
    return authority.server_ssl_context(), authority.ca_cert_path


def cluster_is_up(kubeconfig: Path, apiserver_pid_file: Path) -> bool:
    """Whether the real cluster a Kubernetes bench needs is there; if not, says so on stderr."""
    if kubeconfig.exists() and apiserver_pid_file.exists():
        return True
    print(
        f"needs a running cluster: {kubeconfig} / {apiserver_pid_file} missing "
        "(start it with /tmp/hk8s-realk8s/realk8s/up.sh)",
        file=sys.stderr,
    )
    return False
