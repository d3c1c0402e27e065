"""``edgectl logs`` and ``edgectl exec``: a pod's output and commands, through cloudhub.

Both open a websocket to cloudhub's admin API in Kubernetes' channel protocol
(:mod:`wire.channels`); cloudhub relays it over the node's link to the container. stdout and
stderr arrive on their own channels and are written to edgectl's own stdout and stderr; the
last message is a Status whose exit code becomes edgectl's (``exec``), or whose message is
the one line edgectl prints when the stream failed. Ctrl-C closes the websocket, which
cancels the stream on the edge (a ``logs -f`` stops reading the file there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import termios
import threading
import tty
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from wire import channels
from wire.errors import BridgeError, DecodeError

if TYPE_CHECKING:
    from edgectl.client import AdminClient


class Context(Protocol):
    """What these commands use of edgectl's command context."""

    args: argparse.Namespace
    out: Any

    @property
    def client(self) -> AdminClient: ...


#: exit code of a stream that ended with no status (the link to cloudhub broke)
BROKEN = 1


def cmd_logs(ctx: Context) -> int:
    args = ctx.args
    query = [("follow", "true" if args.follow else "false")]
    if args.container:
        query.append(("container", args.container))
    if args.tail is not None and args.tail >= 0:
        query.append(("tailLines", str(args.tail)))
    if args.timestamps:
        query.append(("timestamps", "true"))
    if args.previous:
        query.append(("previous", "true"))
    return _relay(ctx, "log", query)


def cmd_exec(ctx: Context) -> int:
    args = ctx.args
    command = list(args.command)
    if "--" in command:
        # Options between POD and "--" (kubectl's order: exec web -c app -- cmd) arrive here,
        # since the command swallows all that follows POD: parse them now.
        cut = command.index("--")
        _exec_options(_Parser(prog="edgectl exec")).parse_args(command[:cut], namespace=args)
        command = command[cut + 1 :]
    if not command:
        raise BridgeError("exec needs a command after '--' (e.g. edgectl exec web -- ls /)")
    query = [("command", part) for part in command]
    if args.container:
        query.append(("container", args.container))
    if args.stdin:
        query.append(("stdin", "true"))
    if args.tty:
        query.append(("tty", "true"))
    return _relay(ctx, "exec", query)


def _relay(ctx: Context, what: str, query: list[tuple[str, str]]) -> int:
    args = ctx.args
    namespace = args.namespace or "default"
    path = f"/pods/{_quote(namespace)}/{_quote(args.pod)}/{what}"
    ws = ctx.client.open_channels(path, query)
    out = _binary(ctx.out)
    err = sys.stderr.buffer
    interactive = what == "exec" and (args.stdin or args.tty)
    try:
        with _terminal(ws, raw=args.tty) if interactive else contextlib.nullcontext():
            if interactive and args.stdin:
                v5 = ws.subprotocol == channels.V5
                threading.Thread(
                    target=_send_input, args=(ws, sys.stdin.fileno(), v5), daemon=True
                ).start()
            return _read(ws, out, err)
    finally:
        ws.close()  # also on Ctrl-C: cloudhub then cancels the stream on the edge


def _read(ws: ClientConnection, out: BinaryIO, err: BinaryIO) -> int:
    """Copy the channels to ``out``/``err`` until the status; its exit code."""
    try:
        for message in ws:
            if isinstance(message, str):
                continue
            try:
                channel, data = channels.parse_frame(message)
            except DecodeError:
                continue
            if channel == channels.STDOUT:
                out.write(data)
                out.flush()
            elif channel == channels.STDERR:
                err.write(data)
                err.flush()
            elif channel == channels.ERROR:
                code, error = channels.read_status(data)
                if error:
                    raise BridgeError(error)
                return code
    except ConnectionClosed:
        pass
    raise BridgeError("the stream broke off before its end (cloudhub or the node went away)")


def _send_input(ws: ClientConnection, fd: int, v5: bool) -> None:
    """Copy stdin to the stdin channel until it ends (then say so, where v5 can)."""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return
        try:
            if not data:
                if v5:
                    ws.send(channels.frame(channels.CLOSE, bytes((channels.STDIN,))))
                return
            ws.send(channels.frame(channels.STDIN, data))
        except ConnectionClosed:
            return


@contextlib.contextmanager
def _terminal(ws: ClientConnection, *, raw: bool) -> Iterator[None]:
    """With ``-t`` on a terminal: raw mode (keys go to the remote shell, Ctrl-C included),
    its size sent now and on every change; restored on the way out."""
    fd = sys.stdin.fileno()
    if not raw or not os.isatty(fd):
        yield
        return

    def send_size(*_: object) -> None:
        try:
            size = os.get_terminal_size(fd)
            ws.send(channels.resize_frame(size.columns, size.lines))
        except (OSError, ConnectionClosed):
            pass

    saved = termios.tcgetattr(fd)
    previous = signal.signal(signal.SIGWINCH, send_size)
    tty.setraw(fd)
    send_size()
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)


def _binary(stream: object) -> BinaryIO:
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return _TextAdapter(stream)  # type: ignore[return-value]


class _TextAdapter:
    """Bytes written to a text stream (tests hand edgectl a StringIO)."""

    def __init__(self, stream: object) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        self._stream.write(data.decode(errors="replace"))  # type: ignore[attr-defined]
        return len(data)

    def flush(self) -> None:
        self._stream.flush()  # type: ignore[attr-defined]


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


class _Parser(argparse.ArgumentParser):
    """Options after POD: errors are edgectl's one line (a BridgeError), not an exit."""

    def error(self, message: str) -> Any:
        raise BridgeError(f"exec: {message}")


def _exec_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-c", "--container", help="container name (default: the only one)")
    parser.add_argument("-n", "--namespace", help="namespace (default 'default')")
    parser.add_argument("-i", "--stdin", action="store_true", help="pass stdin to the command")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    return parser


def register(commands: argparse._SubParsersAction[Any]) -> None:
    """Add ``logs`` and ``exec`` to edgectl's commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    logs = commands.add_parser(
        "logs",
        help="print a pod's container log",
        description=(
            "Print the log of a pod's container, read on its edge node through the cloud "
            "link. Without -c, the pod's only container. With -f, keep printing what it "
            "writes (across restarts) until Ctrl-C."
        ),
        epilog=(
            "examples:\n  edgectl logs web\n  edgectl logs web -c sidecar --tail 20\n"
            "  edgectl logs web -f -n plant-1\n  edgectl logs web -p   # before its last restart"
        ),
        formatter_class=fmt,
    )
    logs.add_argument("pod", metavar="POD")
    logs.add_argument("-c", "--container", help="container name (default: the only one)")
    logs.add_argument("-n", "--namespace", help="namespace (default 'default')")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines (-1: all)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new output")
    logs.add_argument("--timestamps", action="store_true", help="prefix each line with its time")
    logs.add_argument(
        "-p", "--previous", action="store_true", help="the log of the container's previous run"
    )
    logs.set_defaults(func=cmd_logs)

    exe = commands.add_parser(
        "exec",
        help="run a command in a pod's container",
        description=(
            "Run COMMAND in a pod's container on its edge node, through the cloud link. "
            "stdout and stderr stay apart; edgectl exits with the command's exit code. No "
            "terminal and no input unless -t / -i (-it: an interactive shell)."
        ),
        epilog=(
            "examples:\n  edgectl exec web -- cat /etc/hostname\n  edgectl exec -it web -- sh\n"
            "  edgectl exec web -c app -n plant-1 -- sh -c 'ls /data; exit 3'"
        ),
        formatter_class=fmt,
    )
    exe.add_argument("pod", metavar="POD")
    _exec_options(exe)
    exe.add_argument("command", metavar="-- COMMAND [ARG...]", nargs=argparse.REMAINDER)
    exe.set_defaults(func=cmd_exec)
