"""The codec refuses bad frames with a WireError and a reason fit for a log line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.codec import DEFAULT_MAX_SIZE, decode, encode
from wire.errors import DecodeError, MessageTooLarge, WireError
from wire.messages import Message

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)


def _frame(**fields: Any) -> str:
    return json.dumps(fields)


@given(st.text())
def test_arbitrary_text_raises_only_wire_errors(data: str) -> None:
    """Any text either decodes or raises a WireError, never anything else."""
    try:
        decode(data)
    except WireError:
        pass


@given(st.binary())
def test_arbitrary_bytes_raise_only_wire_errors(data: bytes) -> None:
    """Any bytes either decode or raise a WireError (invalid UTF-8 included)."""
    try:
        decode(data)
    except WireError:
        pass


@given(json_values)
def test_any_json_value_decodes_or_raises_decode_error(value: Any) -> None:
    """Any JSON document, of whatever shape, yields a Message or a DecodeError."""
    try:
        decode(json.dumps(value))
    except DecodeError as exc:
        assert str(exc)


@given(st.dictionaries(st.text(max_size=10), json_values, max_size=4), json_values)
def test_objects_with_some_route_decode_or_raise_decode_error(
    header: dict[str, Any], route_extra: Any
) -> None:
    """Envelopes with junk header fields and routes give a Message or a DecodeError."""
    frame = _frame(header=header, route={"operation": "insert", "resource": route_extra})
    try:
        decode(frame)
    except DecodeError as exc:
        assert "invalid envelope" in str(exc)


def test_oversized_frame_is_refused_before_parsing() -> None:
    """A frame over the limit raises MessageTooLarge even if it is not JSON at all."""
    with pytest.raises(MessageTooLarge) as info:
        decode("x" * 101, max_size=100)
    assert info.value.size == 101
    assert info.value.limit == 100
    assert "101" in str(info.value) and "100" in str(info.value)


def test_size_limit_counts_utf8_bytes_not_characters() -> None:
    """The limit is in bytes: 60 two-byte characters exceed a 100-byte limit."""
    with pytest.raises(MessageTooLarge) as info:
        decode("é" * 60, max_size=100)
    assert info.value.size == 120


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    """A frame of exactly max_size bytes is parsed."""
    frame = encode(Message.new(source="s", group="g", operation="keepalive", resource=""))
    assert decode(frame, max_size=len(frame.encode())).operation == "keepalive"
    with pytest.raises(MessageTooLarge):
        decode(frame, max_size=len(frame.encode()) - 1)


def test_default_limit_is_four_mebibytes() -> None:
    """The default limit is 4 MiB and applies without an explicit max_size."""
    assert DEFAULT_MAX_SIZE == 4 * 1024 * 1024
    with pytest.raises(MessageTooLarge):
        decode(b" " * (DEFAULT_MAX_SIZE + 1))


def test_message_too_large_is_a_wire_error() -> None:
    """MessageTooLarge belongs to the WireError tree so one except clause catches all."""
    assert issubclass(MessageTooLarge, WireError)
    assert issubclass(DecodeError, WireError)


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ("[]", "list"),
        ('"ping"', "str"),
        ("42", "int"),
        ("null", "NoneType"),
        ("true", "bool"),
    ],
)
def test_non_object_json_is_a_decode_error_naming_the_type(frame: str, kind: str) -> None:
    """A JSON value that is not an object is refused with its type in the reason."""
    with pytest.raises(DecodeError, match=f"JSON {kind}, expected an object"):
        decode(frame)


@pytest.mark.parametrize("frame", ["", "{", "not json", '{"route": }', b"\xff\xfe\x00"])
def test_invalid_json_is_a_decode_error_with_cause(frame: str | bytes) -> None:
    """Unparseable text is a DecodeError that chains the parser's error."""
    with pytest.raises(DecodeError, match="not valid JSON") as info:
        decode(frame)
    assert isinstance(info.value.__cause__, ValueError)


def test_invalid_utf8_bytes_are_a_decode_error() -> None:
    """Bytes that are not UTF-8 are refused as a DecodeError."""
    with pytest.raises(DecodeError):
        decode(b'{"route": {"operation": "\xff"}}')


def test_missing_route_is_a_decode_error_naming_it() -> None:
    """An object without route says which field is missing."""
    with pytest.raises(DecodeError, match=r"invalid envelope at route: Field required"):
        decode(_frame(header={}, content=None))


def test_missing_operation_is_a_decode_error_naming_it() -> None:
    """A route without operation says route.operation is missing."""
    with pytest.raises(DecodeError, match=r"invalid envelope at route\.operation: Field required"):
        decode(_frame(route={"source": "edgecontroller", "resource": "default/pod/a"}))


def test_wrong_field_type_is_a_decode_error_naming_the_field() -> None:
    """A header field of the wrong type is refused with its dotted path."""
    with pytest.raises(DecodeError, match=r"header\.timestamp") as info:
        decode(_frame(header={"timestamp": "soon"}, route={"operation": "insert"}))
    assert info.value.__cause__ is not None


def test_unknown_operation_still_decodes() -> None:
    """An operation edgebridge does not know decodes so it can be answered with an error."""
    m = decode(_frame(route={"operation": "teleport"}))
    assert m.operation == "teleport"


def test_unknown_fields_are_ignored() -> None:
    """Fields a newer KubeEdge adds do not break decoding."""
    m = decode(
        _frame(
            header={"msg_id": "a", "future": 1},
            route={"operation": "insert", "shard": 3},
            extra=True,
        )
    )
    assert m.id == "a"


def test_missing_header_gets_defaults() -> None:
    """A frame without header decodes with a generated msg_id and zero timestamp."""
    m = decode(_frame(route={"operation": "keepalive"}))
    assert m.id
    assert m.header.timestamp == 0
    assert m.parent_id == ""
    assert m.content is None


# -- inputs that would break a naive json.loads-based codec -------------------------------------


def test_deeply_nested_frame_is_a_decode_error() -> None:
    """A frame nested deeper than the parser allows is a DecodeError, not a RecursionError."""
    with pytest.raises(DecodeError):
        decode("[" * 100_000)


def test_text_with_lone_surrogate_is_a_decode_error() -> None:
    """A str holding a lone surrogate (not encodable as UTF-8) is a DecodeError."""
    with pytest.raises(DecodeError):
        decode('{"route": {"operation": "\ud800"}}')


@pytest.mark.parametrize(
    "content",
    ['"\\ud800"', "[" * 300 + "]" * 300, "[" * 150 + "]" * 150, '"\\ud83d\\ude00"'],
    ids=["escaped-surrogate", "nested-300", "nested-150", "escaped-pair"],
)
def test_every_frame_decode_accepts_encodes_again(content: str) -> None:
    """decode() either refuses a frame or returns a message that encode() can write back."""
    try:
        m = decode('{"route": {"operation": "update"}, "content": ' + content + "}")
    except DecodeError:
        return
    encode(m)
