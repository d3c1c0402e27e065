"""A supervised local mosquitto: edgecore's internal MQTT broker.

Why a real mosquitto and not a Python broker: mappers and applications speak MQTT to the edge
at thousands of messages per second; on a 2-core box mosquitto moved the same Python clients'
traffic 2-8x faster than amqtt (and ~200k msg/s with C clients), with persistence we do not
have to write.

Why these settings (see :meth:`Mosquitto.config_text`):

- ``listener PORT 127.0.0.1`` and ``allow_anonymous true``: devices on this machine need no
  credentials, so the broker must not be reachable from anywhere else. Non-loopback binds are
  refused; a network broker is what external mode is for.
- ``persistence`` with ``autosave_interval 1``: queued QoS 1 messages and persistent sessions
  (edgecore's own, and mappers') survive a broker restart; a ``kill -9`` loses at most the last
  second.
- ``max_queued_messages 100000``: a subscriber that is away (edgecore restarting, a mapper
  reconnecting) gets its backlog instead of mosquitto's default of 1000 then silent drops.
- ``user root`` when we are root: mosquitto 2 otherwise switches to the ``mosquitto`` user and
  can no longer open its files in our 0700 directory (it then runs without a log, or not at all).

The process is a child of edgecore with a parent-death signal, so a ``kill -9`` of edgecore
does not leave a mosquitto holding the port; a pid file catches the rare leftover anyway.
:meth:`Mosquitto.supervise` restarts it with jittered backoff whenever it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edgecore.eventbus.mqtt import DEFAULT_MAX_PACKET
from hive.backoff import backoff
from wire.errors import ConfigError

log = logging.getLogger(__name__)

#: where Debian's package installs the broker when /usr/sbin is not on PATH
DEBIAN_BINARY = "/usr/sbin/mosquitto"
SUBDIR = "mosquitto"
CONFIG_FILE = "mosquitto.conf"
LOG_FILE = "mosquitto.log"
#: mosquitto's stdout/stderr: errors it prints before its log file is open
OUT_FILE = "mosquitto.out"
PID_FILE = "mosquitto.pid"
DB_FILE = "mosquitto.db"
#: the log is rotated (once, to ``.1``) at start when larger than this, bytes
LOG_ROTATE_BYTES = 8 * 1024 * 1024
#: largest MQTT packet the broker accepts, bytes; it protects the broker and edgecore alike
MAX_PACKET = DEFAULT_MAX_PACKET
#: mosquitto prints this once its listeners are open
_READY_MARK = " running"
#: a run longer than this, seconds, counts as healthy: the restart backoff starts over
_HEALTHY_RUN = 30.0


def find_binary(fallback: str = DEBIAN_BINARY) -> str:
    """The mosquitto executable: on PATH, else ``fallback`` (Debian's location).

    Raises:
        ConfigError: mosquitto is not installed.
    """
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(fallback, os.X_OK):
        return fallback
    raise ConfigError("mosquitto is not installed (apt-get install mosquitto)")


def _check_loopback(bind: str) -> None:
    if bind == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError as exc:
        raise ConfigError(f"mosquitto bind address {bind!r} is not an IP address") from exc
    if not loopback:
        raise ConfigError(
            f"the internal mosquitto allows anonymous clients, so it binds loopback only, "
            f"not {bind}; use external MQTT mode for a network broker"
        )


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --``: Linux SIGTERMs mosquitto when edgecore dies.

    setpriv (util-linux, on every Debian) sets it and execs mosquitto in the same process, so
    no Python runs between fork and exec (a ``preexec_fn`` is unsafe with threads around).
    Without setpriv the pid file catches a leftover broker at the next start instead.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, also when the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def _port_taken(host: str, port: int) -> bool:
    """Whether another process listens on ``host:port`` (bind test, as mosquitto binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class Mosquitto:
    """One mosquitto process, configured, started, stopped and restarted by us.

    Use ``await start()`` once, run ``supervise()`` as a named task for the life of the
    process, and ``await stop()`` at shutdown (after cancelling ``supervise``, or not: it
    returns by itself once stopped).
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        port: int,
        bind: str = "127.0.0.1",
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        restart_initial: float = 0.2,
        restart_cap: float = 30.0,
        binary: str | None = None,
    ) -> None:
        """
        Args:
            data_dir: edgecore's data directory; mosquitto's files go to ``data_dir/mosquitto``.
            port: TCP port of the only listener (1..65535).
            bind: loopback address to listen on (default ``127.0.0.1``).
            start_timeout: seconds to wait for the listener before :meth:`start` fails.
            stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.
            restart_initial: first restart delay upper bound, seconds (jittered, doubling).
            restart_cap: longest restart delay, seconds.
            binary: the executable (default: found on PATH or at ``/usr/sbin/mosquitto``).

        Raises:
            ConfigError: mosquitto is missing, a bad port, or a non-loopback bind.
        """
        if not 0 < port < 65536:
            raise ConfigError(f"MQTT port {port} is out of range 1..65535")
        _check_loopback(bind)
        self.binary = binary or find_binary()
        self.dir = data_dir / SUBDIR
        self.port = port
        self.bind = bind
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._restart_initial = restart_initial
        self._restart_cap = restart_cap
        self._proc: asyncio.subprocess.Process | None = None
        self._started_at = 0.0
        self._stopping = False
        #: times the supervisor restarted a dead mosquitto (metrics and tests)
        self.restarts = 0

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG_FILE

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def pid(self) -> int | None:
        """Pid of the running mosquitto, ``None`` when none runs."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return None
        return proc.pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    def config_text(self) -> str:
        """The whole configuration file, regenerated at every start."""
        if "\n" in str(self.dir):
            raise ConfigError(f"data directory {str(self.dir)!r} contains a newline")
        lines = [
            "# Written by edgecore at every start; edits are lost.",
            f"listener {self.port} {self.bind}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            f"persistence_file {DB_FILE}",
            # seconds between saves of queued messages and sessions: a kill -9 loses at most this
            "autosave_interval 1",
            # per client: an offline subscriber's backlog (default 1000, then silent drops)
            "max_queued_messages 100000",
            # unacknowledged QoS 1 messages to one client (default 20): enough for throughput,
            # and the most edgecore holds for a twin that is behind (it acks once handed over)
            "max_inflight_messages 200",
            # small twin messages: do not wait for Nagle
            "set_tcp_nodelay true",
            # bytes; a client sending more is disconnected before anything reaches edgecore
            f"max_packet_size {MAX_PACKET}",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if os.geteuid() == 0:
            # otherwise mosquitto 2 drops to user "mosquitto", who cannot open our 0700 dir
            lines.append("user root")
        return "\n".join(lines) + "\n"

    async def start(self) -> None:
        """Write the config, start mosquitto, return once it accepts connections.

        Raises:
            ConfigError: it exited or did not listen within ``start_timeout`` (the reason
                from its log is in the message: port in use, bad config...).
        """
        if self.running:
            return
        self._stopping = False
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        self._kill_leftover()
        if _port_taken(self.bind, self.port):
            raise ConfigError(
                f"MQTT port {self.bind}:{self.port} is in use by another process (a system "
                f"mosquitto holds 1883): choose another --mqtt-port, or --mqtt-mode external "
                f"--mqtt-url mqtt://HOST:PORT to use that broker"
            )
        _write_private(self.config_path, self.config_text())
        self._rotate_log()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        out_fd = os.open(self.dir / OUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                *_pdeathsig_prefix(),
                self.binary,
                "-c",
                str(self.config_path),
                stdin=subprocess.DEVNULL,
                stdout=out_fd,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise ConfigError(f"cannot run {self.binary}: {exc}") from exc
        finally:
            os.close(out_fd)
        self._proc = proc
        self._started_at = time.monotonic()
        _write_private(self.dir / PID_FILE, f"{proc.pid}\n")
        try:
            await self._wait_ready(proc, offset)
        except BaseException:
            await self._terminate(proc)
            raise
        log.info("mosquitto (pid %d) listening on %s:%d", proc.pid, self.bind, self.port)

    async def _wait_ready(self, proc: asyncio.subprocess.Process, offset: int) -> None:
        deadline = time.monotonic() + self._start_timeout
        while True:
            new = self._log_since(offset)
            if proc.returncode is not None or " Error: " in new:
                # let it finish writing and exit, so the reason is complete
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 1.0)
                raise ConfigError(
                    f"mosquitto could not start on {self.bind}:{self.port}: "
                    f"{self._failure_reason(offset)}"
                )
            # the log line comes after bind(); checking the port as well means ours is up,
            # not somebody else's listener on the same port
            if _READY_MARK in new and _port_open(self.bind, self.port):
                return
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"mosquitto did not listen on {self.bind}:{self.port} within "
                    f"{self._start_timeout:.0f}s: {self._failure_reason(offset)}"
                )
            await asyncio.sleep(0.01)

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _failure_reason(self, offset: int) -> str:
        """The error lines of this run's log and output, or its last lines."""
        text = self._log_since(offset)
        with contextlib.suppress(OSError):
            text += (self.dir / OUT_FILE).read_text(errors="replace")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "Error" in ln]
        reason = "; ".join(errors or lines[-3:]) or "no output"
        if "Address already in use" in reason:
            reason += f" (port {self.port} is in use)"
        return f"{reason} (log: {self.log_path})"

    def _rotate_log(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.log_path.stat().st_size > LOG_ROTATE_BYTES:
                self.log_path.replace(self.log_path.with_suffix(".log.1"))

    def _kill_leftover(self) -> None:
        """Kill a mosquitto of ours that outlived a previous edgecore (same config path).

        Only safe because the caller owns the data dir (:mod:`hive.datadir`, taken by
        edgecore before anything starts): a mosquitto of this dir is then nobody's but a
        dead edgecore's, never that of another edgecore running on the same dir.
        """
        pid_path = self.dir / PID_FILE
        try:
            pid = int(pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.config_path).encode() not in cmdline:
            return  # the pid was reused by something else
        log.warning("killing mosquitto pid %d left over from a previous run", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # a SIGKILLed process is gone within milliseconds

    async def stop(self) -> None:
        """SIGTERM (mosquitto saves its database), SIGKILL after ``stop_timeout``."""
        self._stopping = True
        proc = self._proc
        if proc is not None:
            await self._terminate(proc)
            log.info("mosquitto (pid %d) stopped", proc.pid)
        with contextlib.suppress(FileNotFoundError):
            (self.dir / PID_FILE).unlink()

    async def kill(self) -> None:
        """SIGKILL, no database save: a crash, as far as mosquitto can tell (tests use it).

        Unlike :meth:`stop` this does not end :meth:`supervise`, which restarts it.
        """
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), self._stop_timeout)
            except TimeoutError:
                log.warning("mosquitto (pid %d) ignored SIGTERM; killing it", proc.pid)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    async def supervise(self) -> None:
        """Restart mosquitto whenever it dies, until :meth:`stop`. Run it as a named task.

        Each restart waits a jittered, doubling delay (from ``restart_initial`` up to
        ``restart_cap``); a run that lasted 30 s resets it, so a crash loop backs off while
        a rare crash is repaired at once.
        """
        delays = backoff(initial=self._restart_initial, cap=self._restart_cap)
        while not self._stopping:
            proc = self._proc
            if proc is not None:
                code = await proc.wait()
                if self._stopping:
                    return
                if self._proc is not proc:
                    continue  # somebody else restarted it meanwhile
                ran = time.monotonic() - self._started_at
                if ran > _HEALTHY_RUN:
                    delays = backoff(initial=self._restart_initial, cap=self._restart_cap)
                delay = next(delays)
                log.warning(
                    "mosquitto (pid %d) exited with code %s after %.1fs; restarting in %.2fs"
                    " (log: %s)",
                    proc.pid,
                    code,
                    ran,
                    delay,
                    self.log_path,
                )
            else:
                delay = next(delays)
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self.start()
            except ConfigError as exc:
                self._proc = None
                log.error("%s", exc)
                continue
            self.restarts += 1
