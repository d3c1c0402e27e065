"""Text <-> :class:`~wire.messages.Message`, pure and bounded.

The size check happens before parsing so an oversized frame costs nothing but its length.
Every failure is a :class:`~wire.errors.WireError` with a reason fit for a log line or an
``error`` reply; the original parser error is chained as ``__cause__``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from pydantic import TypeAdapter, ValidationError

from wire.errors import DecodeError, MessageTooLarge
from wire.messages import Header, Message, Route

_CONTENT: TypeAdapter[Any] = TypeAdapter(Any)

#: Default frame limit. Kubernetes caps an object near 1.5 MiB (etcd); an inventory of
#: 10,000 cached objects is about 0.7 MiB. 4 MiB leaves room for both and no more.
DEFAULT_MAX_SIZE = 4 * 1024 * 1024


def encode(message: Message) -> str:
    """Serialise one message as the JSON text of one websocket frame."""
    return message.model_dump_json()


def decode(data: str | bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> Message:
    """Parse one frame.

    Raises:
        MessageTooLarge: the frame is longer than ``max_size`` bytes.
        DecodeError: not UTF-8 JSON, not an object, or missing ``route.operation``.
    """
    try:
        size = len(data.encode() if isinstance(data, str) else data)
    except UnicodeEncodeError as exc:
        raise DecodeError("frame is not valid UTF-8 text") from exc
    if size > max_size:
        raise MessageTooLarge(size, max_size)
    try:
        # pydantic's Rust parser: faster than json.loads, and it refuses what could not be
        # encoded again (lone surrogates, nesting past its recursion limit) instead of
        # accepting a frame we could never forward.
        return Message.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] in ("json_invalid", "string_unicode"):
            raise DecodeError(f"frame is not valid JSON: {first['msg']}") from exc
        if not where and first["type"] == "model_type":
            kind = type(first.get("input")).__name__
            raise DecodeError(f"frame is a JSON {kind}, expected an object") from exc
        raise DecodeError(f"invalid envelope at {where or 'message'}: {first['msg']}") from exc


def encode_content(content: Any) -> str:
    """JSON of a message's content alone (for :func:`encode_with_content`)."""
    return _CONTENT.dump_json(content).decode()


def encode_with_content(header: Header, route: Route, content_json: str) -> str:
    """One frame from a header, a route and content already encoded as JSON.

    The same object sent to many nodes differs only in header and route; encoding its
    content once and splicing it in is the hub's largest saving on a fan-out.
    """
    return (
        f'{{"header":{header.model_dump_json()},"route":{route.model_dump_json()},'
        f'"content":{content_json}}}'
    )


class ContentCache:
    """A small LRU of encoded contents keyed by (resource key, resourceVersion)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._data: OrderedDict[tuple[str, str], str] = OrderedDict()

    def get(self, key: tuple[str, str]) -> str | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: tuple[str, str], value: str) -> None:
        self._data[key] = value
        if len(self._data) > self._size:
            self._data.popitem(last=False)
