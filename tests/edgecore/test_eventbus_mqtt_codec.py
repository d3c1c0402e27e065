"""eventbus MQTT codec: packets survive any split of the stream; bad lengths are refused."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecore.eventbus import mqtt
from wire.errors import MessageTooLarge, WireError

topic_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="+#\x00"),
    min_size=1,
    max_size=40,
)
publishes = st.tuples(
    topic_text,
    st.binary(max_size=300),
    st.sampled_from([0, 1]),
    st.integers(1, 0xFFFF),
)


def feed_in_chunks(data: bytes, cuts: list[int], **kw: int) -> list[tuple[int, int, bytes]]:
    reader = mqtt.PacketReader(**kw)
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    for cut in sorted(set(cuts)):
        out += reader.feed(data[pos:cut])
        pos = cut
    out += reader.feed(data[pos:])
    return out


@given(msgs=st.lists(publishes, min_size=1, max_size=8), cuts=st.lists(st.integers(0, 4000)))
def test_publishes_round_trip_across_any_split(
    msgs: list[tuple[str, bytes, int, int]], cuts: list[int]
) -> None:
    """A stream of PUBLISHes split anywhere decodes to the same messages, in order."""
    stream = b"".join(
        mqtt.encode_publish(t, p, qos=q, packet_id=pid if q else 0) for t, p, q, pid in msgs
    )
    packets = feed_in_chunks(stream, [c for c in cuts if c <= len(stream)])
    assert len(packets) == len(msgs)
    for (ptype, flags, body), (t, p, q, pid) in zip(packets, msgs, strict=True):
        assert ptype == mqtt.PUBLISH
        got = mqtt.decode_publish(flags, body)
        assert (got.topic, got.payload, got.qos) == (t, p, q)
        assert got.packet_id == (pid if q else 0)
        assert not got.retain


@given(size=st.integers(0, 2_100_000))
def test_remaining_length_varint(size: int) -> None:
    """Lengths of 1-4 varint bytes are read back exactly (bodies up to 2 MB here)."""
    packet = mqtt.encode_publish("t", b"x" * max(0, size - 3), qos=0)
    [(ptype, _flags, body)] = mqtt.PacketReader().feed(packet)
    assert ptype == mqtt.PUBLISH
    assert len(body) == max(3, size)


def test_connect_packet_layout() -> None:
    """CONNECT is MQTT 3.1.1: protocol name, level 4, flags, keepalive, id, user, password."""
    packet = mqtt.encode_connect(
        "edgecore-n1", clean_session=False, keepalive=15, username="u", password="p"
    )
    [(ptype, _flags, body)] = mqtt.PacketReader().feed(packet)
    assert ptype == mqtt.CONNECT
    assert body[:6] == b"\x00\x04MQTT"
    level, flags, keepalive = struct.unpack_from("!BBH", body, 6)
    assert (level, flags, keepalive) == (4, 0xC0, 15)  # user + password, no clean session
    assert body[10:] == b"\x00\x0bedgecore-n1\x00\x01u\x00\x01p"
    clean = mqtt.encode_connect("c", clean_session=True, keepalive=0)
    assert clean[9] == 0x02


def test_subscribe_and_puback_layout() -> None:
    """SUBSCRIBE has the reserved flags 0b0010; PUBACK carries the packet id."""
    sub = mqtt.encode_subscribe(7, [("a/+", 1)])
    assert sub == b"\x82\x08\x00\x07\x00\x03a/+\x01"
    assert mqtt.encode_puback(258) == b"\x40\x02\x01\x02"


def test_malformed_length_is_refused() -> None:
    """Five continuation bytes are not a length: the stream is broken."""
    with pytest.raises(WireError):
        mqtt.PacketReader().feed(b"\x30\xff\xff\xff\xff\x01")


def test_oversized_packet_is_refused_before_buffering() -> None:
    """A packet over the limit raises as soon as its length is known."""
    header = b"\x30" + bytes([0x80, 0x80, 0x80, 0x01])  # 2 MiB announced, nothing sent
    with pytest.raises(MessageTooLarge):
        mqtt.PacketReader(max_packet=1024).feed(header)


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x05ab"])
def test_truncated_publish_is_refused(body: bytes) -> None:
    """A PUBLISH whose topic or packet id runs past its end is a protocol error."""
    with pytest.raises(WireError):
        mqtt.decode_publish(0x02, body)


def test_qos3_is_refused() -> None:
    """QoS 3 does not exist."""
    with pytest.raises(WireError):
        mqtt.decode_publish(0x06, b"\x00\x01t\x00\x01")
