"""Text <-> :class:`~wire.messages.Message`, pure and bounded.

The size check happens before parsing so an oversized frame costs nothing but its length.
Every failure is a :class:`~wire.errors.WireError` with a reason fit for a log line or an
``error`` reply; the original parser error is chained as ``__cause__``.

Slow path and fast paths
    :func:`encode` and :func:`decode` (pydantic models, full validation) define the format.
    The frames a process handles by the thousand also have fast paths, kept here beside the
    slow path they must equal (``tests/wire/test_codec_fast_paths.py`` holds each to it):

    - :func:`ack_or_keepalive` (:data:`ACK_OR_KEEPALIVE`; :func:`ack_parent` for ACKs alone,
      which tries the usual layouts first: :data:`ACK_COMMON`) recognises an ACK or keepalive in
      the layout :func:`encode` writes or the one a stock KubeEdge edgecore writes (Go's
      ``encoding/json``: the same field order, empty fields left out, a newline after the
      frame), every string in it free of escapes, so whatever it matches decodes to the same
      message with the same values (anything else takes :func:`decode`);
    - :func:`response_frame` and :func:`object_frame` splice a reply or an object message
      from a template: the text :func:`encode` writes for the same message, for a few string
      joins instead of three model constructions and two dumps;
    - :func:`bus_message` assembles a :class:`Message` with every field given as
      ``model_construct`` would, without walking the fields (values already typed; validation
      stays where data enters the process).
"""

from __future__ import annotations

import json
import re
import sys
from collections import OrderedDict
from typing import Any, NamedTuple, TypeVar

import pydantic_core
from pydantic import BaseModel, TypeAdapter, ValidationError

from wire.errors import DecodeError, MessageTooLarge
from wire.messages import Group, Header, Message, Route

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


# -- fast paths (see the module notes) ----------------------------------------------------------

#: frames longer than this never take the fast path (ACKs and keepalives are ~300 characters)
FAST_FRAME_MAX = 1024
#: an ACK or keepalive in the field order :func:`encode` writes, each field present (ours) or
#: left out when empty (stock edgecores: Go's ``omitempty``), optionally followed by the
#: newline Go's JSON encoder ends a frame with (use ``fullmatch``; groups ``id``, ``parent``,
#: ``group``, ``op``, ``resource``, ``None`` where left out: see :func:`ack_or_keepalive`).
#: ``@`` stands for a JSON string's contents without escapes (no quote, backslash or control
#: character). ``msg_id`` and ``timestamp`` Go always writes; ``operation`` is what matters.
ACK_OR_KEEPALIVE = re.compile(
    (
        r'\{"header":\{"msg_id":"(?P<id>@)"(?:,"parent_msg_id":"(?P<parent>@)")?,'
        r'"timestamp":(?:0|[1-9][0-9]{0,17})(?:,"resourceversion":"@")?'
        r'(?:,"sync":(?:true|false))?(?:,"type":"@")?\},'
        r'"route":\{(?:"source":"@",)?(?:"destination":"@",)?(?:"group":"(?P<group>@)",)?'
        r'"operation":"(?P<op>response|keepalive)"(?:,"resource":"(?P<resource>@)")?\},'
        r'"content":(?:"@"|null)\}\n?'
    ).replace("@", r'[^"\\\x00-\x1f]*')
)


class Cheap(NamedTuple):
    """The fields of an ACK or keepalive the fast path read (what :func:`decode` would give)."""

    id: str
    parent: str
    group: str
    op: str
    resource: str


def ack_or_keepalive(frame: str) -> Cheap | None:
    """The fields of ``frame`` if :data:`ACK_OR_KEEPALIVE` matches it (a field left out is
    ``""``, its default in :class:`Header` and :class:`Route`), else ``None``."""
    match = ACK_OR_KEEPALIVE.fullmatch(frame)
    if match is None:
        return None
    ident, parent, group, op, resource = match.group("id", "parent", "group", "op", "resource")
    return Cheap(ident, parent or "", group or "", op, resource or "")


#: the two layouts nearly every ACK comes in, each a special case of :data:`ACK_OR_KEEPALIVE`
#: (same fields, same ``@``, no optional field): a stock edgecore's (``msg_id``,
#: ``parent_msg_id``, ``timestamp``; ``source``, ``group``, ``operation``, ``resource``; a
#: string content; the newline) and :func:`encode`'s of ``Message.reply`` (every field, ``sync``
#: false). Without a field that may or may not be there the engine never goes back, and ``@``
#: is possessive here: a third less time than :data:`ACK_OR_KEEPALIVE` on a stock ACK.
ACK_COMMON = re.compile(
    (
        r'\{"header":\{"msg_id":"@","parent_msg_id":"(?P<parent>@)",'
        r'"timestamp":(?:0|[1-9][0-9]{0,17})(?:'
        r'\},"route":\{"source":"@","group":"@","operation":"response","resource":"@"\},'
        r'"content":"@"'
        r'|,"resourceversion":"@","sync":false,"type":"@"\},"route":\{"source":"@",'
        r'"destination":"@","group":"@","operation":"response","resource":"@"\},'
        r'"content":(?:"@"|null))\}\n?'
    ).replace("@", r'[^"\\\x00-\x1f]*+')
)


def ack_parent(frame: str) -> str | None:
    """The ``parent_msg_id`` of ``frame`` if :data:`ACK_OR_KEEPALIVE` matches it as an ACK
    (``response``), else ``None``: :func:`ack_or_keepalive`'s answer for the one field an ACK
    is applied by, without building the rest (the hub takes one per object it sends).

    The layouts of :data:`ACK_COMMON` are tried first; whatever it matches,
    :data:`ACK_OR_KEEPALIVE` matches with the same ``parent``, and it answers the rest."""
    match = ACK_COMMON.fullmatch(frame)
    if match is not None:
        return match["parent"]
    match = ACK_OR_KEEPALIVE.fullmatch(frame)
    if match is None or match["op"] != "response":
        return None
    return match["parent"] or ""


#: JSON string contents that need no escaping (no quote, backslash or control character)
_PLAIN = re.compile(r'[^"\\\x00-\x1f]*')


def json_string(text: str) -> str:
    """``text`` as a JSON string literal, as pydantic writes it (non-ASCII unescaped)."""
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    # Rare (keys and ids are plain): the escapes pydantic writes, so the frame is the same text.
    try:
        return _CONTENT.dump_json(text).decode()
    except ValueError:  # a lone surrogate, which pydantic refuses: ASCII escapes are valid JSON
        return json.dumps(text)


def response_frame(
    *, msg_id: str, parent_id: str, source: str, group: str, resource: str, content_json: str
) -> str:
    """The frame of ``Message.reply``: a ``response`` to ``parent_id``, ``content`` as JSON."""
    return (
        f'{{"header":{{"msg_id":{json_string(msg_id)},"parent_msg_id":{json_string(parent_id)},'
        f'"timestamp":0,"resourceversion":"","sync":false,"type":""}},'
        f'"route":{{"source":{json_string(source)},"destination":"","group":{json_string(group)},'
        f'"operation":"response","resource":{json_string(resource)}}},"content":{content_json}}}'
    )


def object_frame(
    *,
    msg_id: str,
    timestamp: int,
    resource_version: str,
    operation: str,
    key: str,
    content_json: str,
    source: str = "edgecontroller",
) -> str:
    """The frame that carries one object (or its deletion) to an edge: what
    :func:`encode_with_content` writes for the same header and route."""
    if _PLAIN.fullmatch(f"{msg_id}{resource_version}{source}{key}") is not None:
        # Ids, versions, sources and keys are plain: one check for the four, no escaping.
        return (
            f'{{"header":{{"msg_id":"{msg_id}","parent_msg_id":"","timestamp":{timestamp},'
            f'"resourceversion":"{resource_version}","sync":false,"type":""}},'
            f'"route":{{"source":"{source}","destination":"","group":"{Group.RESOURCE}",'
            f'"operation":"{operation}","resource":"{key}"}},"content":{content_json}}}'
        )
    return (
        f'{{"header":{{"msg_id":{json_string(msg_id)},"parent_msg_id":"","timestamp":{timestamp},'
        f'"resourceversion":{json_string(resource_version)},"sync":false,"type":""}},'
        f'"route":{{"source":{json_string(source)},"destination":"","group":"{Group.RESOURCE}",'
        f'"operation":"{operation}","resource":{json_string(key)}}},"content":{content_json}}}'
    )


_Model = TypeVar("_Model", bound=BaseModel)

_new = object.__new__
_setattr = object.__setattr__
_HEADER_FIELDS = frozenset(Header.model_fields)
_ROUTE_FIELDS = frozenset(Route.model_fields)
_MESSAGE_FIELDS = frozenset(Message.model_fields)


def _built(cls: type[_Model], values: dict[str, Any], fields: frozenset[str]) -> _Model:
    """What ``cls.model_construct(**values)`` returns, when ``values`` has every field."""
    obj = _new(cls)
    _setattr(obj, "__dict__", values)
    _setattr(obj, "__pydantic_fields_set__", set(fields))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


def bus_message(
    *,
    source: str,
    group: str,
    operation: str,
    resource: str,
    content: Any,
    msg_id: str,
    timestamp: int = 0,
) -> Message:
    """A :class:`Message` with every field given, built without pydantic's validation.

    A module makes a few bus messages per report. ``Message.new`` validates three models and
    draws a UUID for each; pydantic's own ``model_construct`` is no cheaper, as it still
    walks the fields in Python. The values here are typed already, so the objects are
    assembled as ``model_construct`` would assemble them (the models allow no extra fields and
    have no private attributes).
    """
    header = _built(
        Header,
        {
            "msg_id": msg_id,
            "parent_msg_id": "",
            "timestamp": timestamp,
            "resourceversion": "",
            "sync": False,
            "type": "",
        },
        _HEADER_FIELDS,
    )
    route = _built(
        Route,
        {
            "source": source,
            "destination": "",
            "group": group,
            "operation": operation,
            "resource": resource,
        },
        _ROUTE_FIELDS,
    )
    return _built(Message, {"header": header, "route": route, "content": content}, _MESSAGE_FIELDS)


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
