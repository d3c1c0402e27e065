"""The records cloudhub and its link workers exchange: whatever is written is read back whole,
in order, however the stream is cut; a corrupt stream is refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.linkworker.records import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    Kind,
    Record,
    RecordReader,
    encode_record,
    record_header,
)
from wire.errors import WireError

pytestmark = pytest.mark.timeout(30)

records = st.lists(
    st.builds(
        Record,
        st.sampled_from(list(Kind)),
        st.integers(min_value=0, max_value=2**32 - 1),
        st.binary(max_size=300),
    ),
    max_size=20,
)


@given(records, st.lists(st.integers(min_value=1, max_value=64), min_size=1))
def test_records_survive_any_split_of_the_stream(sent: list[Record], cuts: list[int]) -> None:
    """Records fed in arbitrary pieces come out identical and in order."""
    stream = b"".join(encode_record(r.kind, r.conn, r.payload) for r in sent)
    reader = RecordReader()
    got: list[Record] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += reader.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == sent
    assert reader.buffered == 0


@given(st.binary(max_size=100))
def test_a_header_written_apart_from_its_payload_reads_the_same(payload: bytes) -> None:
    """``record_header`` + payload is exactly ``encode_record``."""
    assert record_header(Kind.SEND, 7, len(payload)) + payload == encode_record(
        Kind.SEND, 7, payload
    )


def test_an_unknown_kind_is_refused() -> None:
    """A kind neither side defines means a corrupt stream: the reader raises."""
    with pytest.raises(WireError, match="unknown relay record kind 99"):
        RecordReader().feed(struct.pack("!IBI", 0, 99, 1))


def test_an_impossible_length_is_refused_before_buffering_it() -> None:
    """A header claiming more than MAX_PAYLOAD fails at once instead of waiting for it."""
    with pytest.raises(WireError, match="claims"):
        RecordReader().feed(struct.pack("!IBI", MAX_PAYLOAD + 1, Kind.TEXT, 1))


def test_an_incomplete_record_waits_for_the_rest() -> None:
    """Nothing is returned until the whole payload arrived."""
    reader = RecordReader()
    data = encode_record(Kind.TEXT, 3, b"hello")
    assert reader.feed(data[: HEADER_SIZE + 2]) == []
    assert reader.feed(data[HEADER_SIZE + 2 :]) == [Record(Kind.TEXT, 3, b"hello")]
