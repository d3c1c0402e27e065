"""Process-unique message ids (bus_message itself: tests/wire/test_codec_fast_paths.py)."""

from __future__ import annotations

from hive.local_messages import MessageIds


def test_message_ids_are_unique_and_uuid_shaped() -> None:
    """Internal message ids never repeat within a process and look like UUIDs."""
    a, b = MessageIds(), MessageIds()
    got = [a() for _ in range(1000)] + [b() for _ in range(1000)]
    assert len(set(got)) == len(got)
    assert all(len(i) == 36 and i.count("-") == 4 for i in got)
