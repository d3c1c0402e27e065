"""Streams over the cloud-edge link: ``logs`` and ``exec``, pure and typed.

KubeEdge's cloudstream/edgestream open a second tunnel for these; edgebridge carries them on
the node's existing link, in KubeEdge's envelope, with ``route.group`` ``stream`` and the
pod's key as the resource (``{ns}/pod/{name}``; cloud side ``node/{node}/{ns}/pod/{name}``).
Every content names its stream; the operation says what it is::

    cloud -> edge   open     Open      start a stream: a LogsRequest or an ExecRequest
                    credit   Credit    the cloud's client consumed this many bytes in all
                    input    Input     stdin bytes (exec with stdin), or its end (eof)
                    resize   Resize    the terminal's new size (exec with tty)
                    cancel   Cancel    the client went away: stop, send nothing more
    edge -> cloud   opened   Opened    the edge took the open and serves the stream
                    data     Chunk     output bytes on stdout or stderr, numbered from 0
                    close    Close     the end: an exit code, or an error (one line)

Flow control (:class:`Outflow` on the edge, :class:`Inflow` in the cloud): the edge sends at
most ``window`` bytes the cloud has not reported consumed; the cloud reports consumption
(cumulative, so a lost or repeated credit is harmless) once a quarter of the window was
consumed. A ``-f`` of a chatty container therefore has at most one window in flight however
slow its reader: it cannot fill the link or the cloud's memory, and other streams and the
object traffic keep flowing. Bytes travel base64-encoded (output is not always UTF-8).

Nothing here does I/O or reads a clock; both sides' pumps feed these and send what they say.
"""

from __future__ import annotations

import base64
import binascii
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

from wire.errors import DecodeError, StreamError
from wire.messages import Group, Message
from wire.resources import ResourceKey

#: bytes of output one ``data`` message carries at most (a frame stays far below 4 MiB, and a
#: window holds several, so the edge rarely waits for a credit)
MAX_CHUNK = 64 * 1024
#: bytes in flight per stream unless the opener asks for another window
DEFAULT_WINDOW = 256 * 1024
#: smallest and largest window an opener may ask for
MIN_WINDOW = MAX_CHUNK
MAX_WINDOW = 4 * 1024 * 1024
#: exit code reported when the edge could not tell one (the stream failed)
NO_EXIT_CODE = -1


class StreamOp(StrEnum):
    """``route.operation`` of stream messages."""

    OPEN = "open"
    CREDIT = "credit"
    INPUT = "input"
    RESIZE = "resize"
    CANCEL = "cancel"
    OPENED = "opened"
    DATA = "data"
    CLOSE = "close"


def _b64decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("data is not base64") from exc
    return value


#: bytes, base64 on the wire
B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode(), return_type=str),
]
StreamId = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=253)]


class _Content(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class LogsRequest(_Content):
    """What ``kubectl logs`` asks a kubelet for."""

    kind: Literal["logs"] = "logs"
    namespace: Name
    pod: Name
    #: None: the pod's only container (refused when it has several)
    container: Name | None = None
    #: the last N lines only; None: everything kept
    tail: int | None = Field(default=None, ge=0)
    #: keep streaming what the container writes next, across its restarts
    follow: bool = False
    #: prefix each line with its RFC 3339 time, as ``kubectl logs --timestamps``
    timestamps: bool = False
    #: the log of the container's previous run (``kubectl logs -p``); never followed
    previous: bool = False


class ExecRequest(_Content):
    """What ``kubectl exec`` asks a kubelet for."""

    kind: Literal["exec"] = "exec"
    namespace: Name
    pod: Name
    container: Name | None = None
    command: list[str] = Field(min_length=1, max_length=1024)
    #: a terminal: stdout and stderr are one stream, the output is raw
    tty: bool = False
    #: the client sends input (``Input`` messages)
    stdin: bool = False


StreamRequest = Annotated[LogsRequest | ExecRequest, Field(discriminator="kind")]


class Open(_Content):
    stream: StreamId
    request: StreamRequest
    #: bytes the edge may send before the first credit
    window: int = Field(default=DEFAULT_WINDOW, ge=MIN_WINDOW, le=MAX_WINDOW)


class Credit(_Content):
    stream: StreamId
    #: bytes of ``data`` the cloud's client consumed since the stream opened
    consumed: int = Field(ge=0)


class Input(_Content):
    stream: StreamId
    data: B64Bytes = b""
    #: the client closed its input
    eof: bool = False


class Resize(_Content):
    stream: StreamId
    width: int = Field(ge=0, le=65535)
    height: int = Field(ge=0, le=65535)


class Cancel(_Content):
    stream: StreamId
    reason: str = ""


class Opened(_Content):
    """The edge's first answer to an :class:`Open` it serves: a stream that stays silent
    (``exec -- sleep 60``, ``logs -f`` of a quiet container) is still known to be alive."""

    stream: StreamId


Channel = Literal["stdout", "stderr"]


class Chunk(_Content):
    stream: StreamId
    #: 0, 1, 2, ... per stream: a gap or repeat is a protocol error
    seq: int = Field(ge=0)
    channel: Channel = "stdout"
    data: B64Bytes


class Close(_Content):
    stream: StreamId
    #: the command's exit code (exec), 0 for a log stream that ended; None with an error
    exit_code: int | None = None
    #: why the stream failed, one line (unknown container, runtime error, ...)
    error: str | None = None
    #: a short machine-readable cause with ``error``: ``NotFound``, ``BadRequest``, ``Failed``
    reason: str | None = None


StreamContent = Open | Credit | Input | Resize | Cancel | Opened | Chunk | Close

#: which content each operation carries: the one table both sides decode with
CONTENT_OF: dict[str, type[StreamContent]] = {
    StreamOp.OPEN: Open,
    StreamOp.CREDIT: Credit,
    StreamOp.INPUT: Input,
    StreamOp.RESIZE: Resize,
    StreamOp.CANCEL: Cancel,
    StreamOp.OPENED: Opened,
    StreamOp.DATA: Chunk,
    StreamOp.CLOSE: Close,
}
OP_OF: dict[type[StreamContent], str] = {v: k for k, v in CONTENT_OF.items()}
#: operations only the cloud sends, and only the edge sends
FROM_CLOUD = frozenset(
    {StreamOp.OPEN, StreamOp.CREDIT, StreamOp.INPUT, StreamOp.RESIZE, StreamOp.CANCEL}
)
FROM_EDGE = frozenset({StreamOp.OPENED, StreamOp.DATA, StreamOp.CLOSE})


def pod_resource(namespace: str, pod: str) -> str:
    """The edge-side resource of a stream to ``pod``: ``{ns}/pod/{name}``."""
    return str(ResourceKey(namespace, "pod", pod))


def is_stream(message: Message) -> bool:
    """Whether ``message`` belongs to a stream (``route.group`` is ``stream``)."""
    return message.route.group == Group.STREAM


def to_message(content: StreamContent, *, source: str, resource: str) -> Message:
    """The envelope that carries ``content`` (its operation comes from its type)."""
    return Message.new(
        source=source,
        group=Group.STREAM,
        operation=OP_OF[type(content)],
        resource=resource,
        content=content.model_dump(mode="json"),
    )


def from_message(message: Message) -> StreamContent:
    """The typed content of a stream message.

    Raises:
        DecodeError: an operation streams do not have, or content of the wrong shape.
    """
    model = CONTENT_OF.get(message.operation)
    if model is None:
        raise DecodeError(f"stream message with unknown operation {message.operation!r}")
    try:
        content: StreamContent = model.model_validate(message.content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "content"
        raise DecodeError(f"invalid stream {message.operation}: {where}: {first['msg']}") from exc
    return content


def chunks(data: bytes, *, size: int = MAX_CHUNK) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (none for no data)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


class Outflow:
    """The edge's side of one stream's flow control: what it may send now.

    Call :meth:`room` before reading more output, :meth:`sent` for every chunk sent (it
    returns the chunk's ``seq``), and :meth:`credit` with each ``Credit`` received.
    """

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        #: bytes sent since the stream opened
        self.total_sent = 0
        #: bytes the cloud reported consumed
        self.consumed = 0
        self._seq = 0

    @property
    def in_flight(self) -> int:
        return self.total_sent - self.consumed

    def room(self) -> int:
        """Bytes that may be sent now (0: wait for a credit)."""
        return max(0, self.window - self.in_flight)

    def sent(self, size: int) -> int:
        """Count a chunk of ``size`` bytes as sent; its sequence number.

        Raises:
            StreamError: the chunk does not fit in the window.
        """
        if size < 0 or size > self.room():
            raise StreamError(f"chunk of {size} bytes does not fit in {self.room()} bytes of room")
        self.total_sent += size
        seq = self._seq
        self._seq += 1
        return seq

    def credit(self, consumed: int) -> bool:
        """Apply a credit; whether it made room. Old or repeated credits change nothing.

        Raises:
            StreamError: the cloud claims more consumed than was ever sent.
        """
        if consumed > self.total_sent:
            raise StreamError(f"credit for {consumed} bytes but only {self.total_sent} were sent")
        if consumed <= self.consumed:
            return False
        self.consumed = consumed
        return True


class Inflow:
    """The cloud's side of one stream's flow control: checks what arrives, says when to
    grant more.

    Call :meth:`received` for every chunk (in arrival order) and :meth:`consumed` when the
    client took bytes; it returns the ``Credit.consumed`` to send, when one is due.
    """

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self.total_received = 0
        self.total_consumed = 0
        #: the consumption last reported to the edge
        self.granted = 0
        self._next_seq = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return self.total_received - self.total_consumed

    def received(self, seq: int, size: int) -> None:
        """Check one arriving chunk.

        Raises:
            StreamError: a gap or repeat in ``seq``, or more bytes than the window allows.
        """
        if seq != self._next_seq:
            raise StreamError(f"chunk {seq} arrived where {self._next_seq} was expected")
        if self.total_received + size - self.granted > self.window:
            raise StreamError(
                f"the edge sent {self.total_received + size - self.granted} bytes past the "
                f"last credit, over the window of {self.window}"
            )
        self._next_seq += 1
        self.total_received += size

    def consumed(self, size: int) -> int | None:
        """Count ``size`` bytes as taken by the client; the credit to send, if one is due.

        A credit goes out once a quarter of the window was consumed since the last one:
        often enough that the edge never waits on a reader that keeps up, rarely enough
        to cost a small fraction of the data's own messages.
        """
        if size < 0 or self.total_consumed + size > self.total_received:
            raise ValueError("cannot consume bytes that were not received")
        self.total_consumed += size
        if self.total_consumed - self.granted >= max(1, self.window // 4):
            self.granted = self.total_consumed
            return self.granted
        return None


# -- CRI log lines ----------------------------------------------------------------------------

#: the tags of the CRI log format: a partial line (``P``) or the full end of one (``F``)
PARTIAL = "P"
FULL = "F"


class LogLine(NamedTuple):
    """One line of a CRI container log file:
    ``<RFC3339Nano time> <stdout|stderr> <P|F> <message>``.

    A named tuple, not a model: a log is read a few hundred thousand lines at a time, and
    building a pydantic model per line was most of the cost of reading one.
    """

    time: str
    channel: Channel
    partial: bool
    message: bytes


def parse_log_line(line: bytes) -> LogLine:
    """Parse one line of a CRI log file (without its trailing newline).

    Raises:
        DecodeError: not in the CRI log format.
    """
    parts = line.split(b" ", 3)
    if len(parts) < 3:
        raise DecodeError("CRI log line has fewer than three fields")
    stamp, channel, tag = parts[0], parts[1], parts[2]
    message = parts[3] if len(parts) == 4 else b""
    if channel not in (b"stdout", b"stderr"):
        raise DecodeError(f"CRI log line names stream {channel[:16]!r}")
    if tag not in (b"P", b"F"):
        raise DecodeError(f"CRI log line has tag {tag[:16]!r}, not P or F")
    try:
        time = stamp.decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecodeError("CRI log line time is not ASCII") from exc
    return LogLine(
        time=time,
        channel="stdout" if channel == b"stdout" else "stderr",
        partial=tag == b"P",
        message=message,
    )


def format_log_line(entry: LogLine) -> bytes:
    """The file's line for ``entry`` (what a runtime writes), newline excluded."""
    tag = PARTIAL if entry.partial else FULL
    return b"%s %s %s %s" % (
        entry.time.encode(),
        entry.channel.encode(),
        tag.encode(),
        entry.message,
    )


def log_output(entry: LogLine, *, timestamps: bool = False) -> bytes:
    """What ``kubectl logs`` prints for ``entry``: the message, plus the newline a full line
    ended with (and the time first, with ``timestamps``)."""
    out = entry.message if entry.partial else entry.message + b"\n"
    return entry.time.encode() + b" " + out if timestamps else out


class TailBuffer:
    """Keeps the last ``n`` complete log lines (partial pieces joined) seen so far, pure.

    Feed it entries in file order with :meth:`add`; :meth:`output` is what ``--tail n``
    prints. A line counts once its ``F`` piece is seen, as the kubelet counts.
    """

    def __init__(self, n: int | None, *, timestamps: bool = False) -> None:
        self._n = n
        self._timestamps = timestamps
        self._lines: list[bytes] = []
        self._pending = b""

    def add(self, entry: LogLine) -> None:
        piece = log_output(entry, timestamps=self._timestamps and not self._pending)
        self._pending += piece
        if entry.partial:
            return
        self._lines.append(self._pending)
        self._pending = b""
        if self._n is not None and len(self._lines) > 2 * self._n + 64:
            del self._lines[: len(self._lines) - self._n]

    def output(self) -> bytes:
        if self._n == 0:
            return b""
        lines = self._lines if self._n is None else self._lines[-self._n :]
        return b"".join(lines) + self._pending
