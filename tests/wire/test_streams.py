"""The stream protocol: messages round-trip, bad content is one DecodeError, flow control
keeps at most a window in flight and never stalls, CRI log lines parse and tail."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from wire.codec import decode, encode
from wire.errors import DecodeError, StreamError
from wire.messages import Message
from wire.streams import (
    MAX_CHUNK,
    Cancel,
    Chunk,
    Close,
    Credit,
    ExecRequest,
    Inflow,
    Input,
    LogLine,
    LogsRequest,
    Open,
    Opened,
    Outflow,
    Resize,
    StreamContent,
    TailBuffer,
    chunks,
    format_log_line,
    from_message,
    is_stream,
    log_output,
    parse_log_line,
    pod_resource,
    to_message,
)

pytestmark = pytest.mark.timeout(60)

names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
ids = st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True)
logs = st.builds(
    LogsRequest,
    namespace=names,
    pod=names,
    container=st.none() | names,
    tail=st.none() | st.integers(0, 10_000),
    follow=st.booleans(),
    timestamps=st.booleans(),
)
execs = st.builds(
    ExecRequest,
    namespace=names,
    pod=names,
    container=st.none() | names,
    command=st.lists(st.text(max_size=20), min_size=1, max_size=5),
    tty=st.booleans(),
    stdin=st.booleans(),
)
contents: st.SearchStrategy[StreamContent] = st.one_of(
    st.builds(Open, stream=ids, request=logs | execs, window=st.integers(MAX_CHUNK, 1 << 22)),
    st.builds(Credit, stream=ids, consumed=st.integers(0, 1 << 40)),
    st.builds(Input, stream=ids, data=st.binary(max_size=64), eof=st.booleans()),
    st.builds(Resize, stream=ids, width=st.integers(0, 500), height=st.integers(0, 500)),
    st.builds(Cancel, stream=ids, reason=st.text(max_size=30)),
    st.builds(Opened, stream=ids),
    st.builds(
        Chunk,
        stream=ids,
        seq=st.integers(0, 1 << 32),
        channel=st.sampled_from(["stdout", "stderr"]),
        data=st.binary(max_size=256),
    ),
    st.builds(
        Close,
        stream=ids,
        exit_code=st.none() | st.integers(-1, 255),
        error=st.none() | st.text(max_size=30),
    ),
)


@given(contents, names, names)
def test_every_content_round_trips_through_a_frame(
    content: StreamContent, ns: str, pod: str
) -> None:
    """What one side builds, the other decodes to an equal value, bytes included."""
    msg = to_message(content, source="cloudstream", resource=pod_resource(ns, pod))
    back = decode(encode(msg))
    assert is_stream(back)
    assert back.resource == f"{ns}/pod/{pod}"
    assert from_message(back) == content


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@given(st.text(max_size=10) | st.sampled_from(["open", "data", "close", "credit"]), json_values)
def test_bad_content_is_one_decode_error(operation: str, content: object) -> None:
    """Any operation and content either decode to a typed value or raise DecodeError."""
    msg = Message.new(source="x", group="stream", operation=operation, resource="", content=content)
    try:
        from_message(msg)
    except DecodeError:
        pass


def test_data_that_is_not_base64_is_refused() -> None:
    """A chunk whose data is not base64 is a DecodeError naming the field."""
    msg = Message.new(
        source="edgestream",
        group="stream",
        operation="data",
        resource="default/pod/p",
        content={"stream": "s", "seq": 0, "data": "***"},
    )
    with pytest.raises(DecodeError, match="data"):
        from_message(msg)


def test_exec_needs_a_command() -> None:
    """An exec open without a command is refused."""
    msg = Message.new(
        source="cloudstream",
        group="stream",
        operation="open",
        resource="default/pod/p",
        content={"stream": "s", "request": {"kind": "exec", "namespace": "a", "pod": "b"}},
    )
    with pytest.raises(DecodeError, match="command"):
        from_message(msg)


@given(st.binary(max_size=5 * MAX_CHUNK), st.integers(1, 3 * MAX_CHUNK))
def test_chunks_cover_the_data_in_order(data: bytes, size: int) -> None:
    """Chunks are at most ``size`` bytes and join back to the data."""
    parts = chunks(data, size=size)
    assert b"".join(parts) == data
    assert all(0 < len(p) <= size for p in parts)


class FlowMachine(RuleBasedStateMachine):
    """An edge sending as its Outflow allows, a cloud consuming at random, credits lost,
    repeated and late: the cloud never sees a protocol error and nothing stalls."""

    WINDOW = 4096

    def __init__(self) -> None:
        super().__init__()
        self.out = Outflow(self.WINDOW)
        self.inflow = Inflow(self.WINDOW)
        self.wire: deque[tuple[int, int]] = deque()
        self.credits: list[int] = []

    @rule(size=st.integers(1, 2048))
    def edge_sends(self, size: int) -> None:
        size = min(size, self.out.room())
        if size:
            self.wire.append((self.out.sent(size), size))

    @precondition(lambda self: bool(self.wire))
    @rule()
    def chunk_arrives(self) -> None:
        seq, size = self.wire.popleft()
        self.inflow.received(seq, size)

    @precondition(lambda self: self.inflow.buffered > 0)
    @rule(data=st.data())
    def client_consumes(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, self.inflow.buffered))
        credit = self.inflow.consumed(n)
        if credit is not None:
            self.credits.append(credit)

    @precondition(lambda self: bool(self.credits))
    @rule(data=st.data(), keep=st.booleans())
    def credit_arrives(self, data: st.DataObject, keep: bool) -> None:
        index = data.draw(st.integers(0, len(self.credits) - 1))
        credit = self.credits[index] if keep else self.credits.pop(index)
        self.out.credit(credit)

    @invariant()
    def at_most_a_window_in_flight(self) -> None:
        assert 0 <= self.out.in_flight <= self.WINDOW

    @invariant()
    def draining_everything_makes_room(self) -> None:
        """If the client consumed all and the last credit arrived, the edge may send."""
        if not self.wire and self.inflow.buffered == 0 and self.out.consumed == self.inflow.granted:
            pending = self.inflow.total_consumed - self.inflow.granted
            assert self.out.room() > 0 or pending > 0


FlowMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestFlow = FlowMachine.TestCase


def test_a_chunk_past_the_window_is_a_stream_error() -> None:
    """An edge that ignores its window is caught by the cloud."""
    inflow = Inflow(MAX_CHUNK)
    inflow.received(0, MAX_CHUNK)
    with pytest.raises(StreamError, match="window"):
        inflow.received(1, 1)


def test_a_gap_in_sequence_is_a_stream_error() -> None:
    """A lost or repeated chunk is a protocol error, not silently wrong output."""
    inflow = Inflow()
    inflow.received(0, 1)
    with pytest.raises(StreamError, match="expected"):
        inflow.received(2, 1)


def test_outflow_refuses_a_credit_for_bytes_never_sent() -> None:
    """A credit beyond what was sent is a StreamError; a stale one changes nothing."""
    out = Outflow(MAX_CHUNK)
    out.sent(10)
    with pytest.raises(StreamError):
        out.credit(11)
    assert out.credit(10)
    assert not out.credit(5)
    assert out.room() == MAX_CHUNK


stamps = st.from_regex(r"20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-9:.]{8,18}Z", fullmatch=True)
entries = st.builds(
    LogLine,
    time=stamps,
    channel=st.sampled_from(["stdout", "stderr"]),
    partial=st.booleans(),
    message=st.binary(max_size=80).filter(lambda b: b"\n" not in b),
)


@given(entries)
def test_log_lines_round_trip(entry: LogLine) -> None:
    """A line the runtime writes parses back to the same entry."""
    assert parse_log_line(format_log_line(entry)) == entry


@given(st.binary(max_size=100))
def test_any_bytes_parse_or_raise_decode_error(line: bytes) -> None:
    """A corrupt log line is a DecodeError, never anything else."""
    try:
        parse_log_line(line)
    except DecodeError:
        pass


def test_kubelet_style_output() -> None:
    """Full lines end with a newline, partial pieces do not; timestamps prefix the line."""
    full = parse_log_line(b"2024-01-01T00:00:00.1Z stdout F hello")
    part = parse_log_line(b"2024-01-01T00:00:00.1Z stderr P hel")
    assert log_output(full) == b"hello\n"
    assert log_output(part) == b"hel"
    assert log_output(full, timestamps=True) == b"2024-01-01T00:00:00.1Z hello\n"


@given(st.lists(entries, max_size=40), st.none() | st.integers(0, 10))
def test_tail_keeps_the_last_complete_lines(items: list[LogLine], n: int | None) -> None:
    """--tail N prints the last N lines (partial pieces joined), then an unfinished piece."""
    tail = TailBuffer(n)
    for item in items:
        tail.add(item)
    text = b"".join(log_output(i) for i in items)
    lines = text.split(b"\n")
    complete, rest = [line + b"\n" for line in lines[:-1]], lines[-1]
    if n == 0:
        assert tail.output() == b""
    else:
        kept = complete if n is None else complete[-n:]
        assert tail.output() == b"".join(kept) + rest
