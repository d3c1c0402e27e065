"""A frame built from pre-encoded content decodes to the same message as a plain encode."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wire.codec import ContentCache, decode, encode, encode_content, encode_with_content
from wire.messages import Message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values, st.text(max_size=30), st.text(max_size=10))
def test_spliced_frame_equals_plain_encoding(content: Any, resource: str, rv: str) -> None:
    """encode_with_content(header, route, encode_content(c)) decodes like encode(message)."""
    msg = Message.new(
        source="edgecontroller",
        group="resource",
        operation="update",
        resource=resource,
        content=content,
        resource_version=rv,
    )
    spliced = encode_with_content(msg.header, msg.route, encode_content(content))
    assert decode(spliced) == decode(encode(msg)) == msg


def test_content_cache_evicts_least_recently_used() -> None:
    """The cache keeps at most its size, dropping the entry used longest ago."""
    cache = ContentCache(size=2)
    cache.put(("a", "1"), "A")
    cache.put(("b", "1"), "B")
    assert cache.get(("a", "1")) == "A"
    cache.put(("c", "1"), "C")
    assert cache.get(("b", "1")) is None
    assert cache.get(("a", "1")) == "A" and cache.get(("c", "1")) == "C"
