"""Text <-> :class:`~wire.messages.Message`, pure and bounded.

The size check happens before parsing so an oversized frame costs nothing but its length.
Every failure is a :class:`~wire.errors.WireError` with a reason fit for a log line or an
``error`` reply; the original parser error is chained as ``__cause__``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import OrderedDict
from typing import Any

import pydantic_core
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


#: The standard library's compact encoder, which decides what JSON text may be stored: NaN and
#: infinities refused (``allow_nan=False``), no check for cycles (a cycle ends in RecursionError).
STDLIB_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)

#: What pydantic's encoder writes for a float the standard library's refuses, and a string that
#: merely contains it: either way :func:`dump_plain_json` lets the standard library decide.
_NON_FINITE = (b"NaN", b"Infinity")


def parse_json(text: str | bytes) -> Any:
    """``json.loads(text)``, in about 60% of the time: the same texts accepted and refused, and
    equal values (``tests/wire/test_json_engines.py`` holds the two to that).

    pydantic's Rust parser goes first. It accepts nothing ``json.loads`` refuses, but refuses
    some texts ``json.loads`` accepts (escaped lone surrogates, nesting past 200 levels, number
    literals over 4300 digits long, bytes in UTF-16 or with a byte-order mark), so its refusal
    only means asking ``json.loads``, whose answer (a value or an error) then stands.
    ``cache_strings="keys"``: keys repeat across objects; values mostly do not, and caching
    them costs more than it saves.
    """
    try:
        return pydantic_core.from_json(text, cache_strings="keys")
    except (ValueError, TypeError):  # TypeError: a str holding a lone surrogate
        return json.loads(text)


def dump_plain_json(value: Any) -> str:
    """``STDLIB_ENCODER.encode(value)`` for *plain* JSON data, in about a third of the time.

    Plain: built only of ``dict`` (with ``str`` keys), ``list``, ``str``, ``int``, ``float``,
    ``bool`` and ``None``, as any JSON parser returns it. For such a value the two accept and
    refuse the same and write texts that parse to equal values (the text may differ:
    non-ASCII is written as UTF-8 rather than ``\\u`` escapes, ``1e-7`` rather than
    ``1e-07``). Anything else must go to the standard library: pydantic would also write sets,
    datetimes, bytes and more, which the standard library refuses.

    pydantic's encoder goes first. Where it could disagree with the standard library, the
    standard library decides: pydantic fails (lone surrogates, nesting past its depth limit),
    or it wrote ``NaN`` or ``Infinity`` (a non-finite float, refused, or a string holding the
    word), or an integer longer than Python's limit on converting integers to text (refused by
    the standard library), which only a text longer than that limit can hold.

    Raises:
        ValueError, TypeError, RecursionError: as ``STDLIB_ENCODER.encode``.
    """
    try:
        out = pydantic_core.to_json(value)
    except (ValueError, TypeError, RecursionError):
        return STDLIB_ENCODER.encode(value)
    limit = sys.get_int_max_str_digits()
    if (
        _NON_FINITE[0] in out
        or _NON_FINITE[1] in out
        or (limit and len(out) > limit and _long_digit_run(limit).search(out) is not None)
    ):
        return STDLIB_ENCODER.encode(value)
    return out.decode()


def _long_digit_run(limit: int) -> re.Pattern[bytes]:
    """More digits in a row than an integer may have as text (mostly inside strings: then the
    standard library, asked again, agrees)."""
    return re.compile(rb"[0-9]{%d}" % (limit + 1))


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
