"""Bus messages modules make by the thousand, built cheaply.

Per MQTT report, eventbus hands the twin a message; per accepted report the twin puts a result
in eventbus's inbox and an upstream message in edgehub's. ``Message.new`` validates three
pydantic models and draws a random UUID for each message, which showed as several percent of
edgecore's CPU under load. :func:`bus_message` assembles the same objects directly; validation
stays where data enters the process (the codec, the MQTT payload parsers).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel

from wire.messages import Header, Message, Route

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
    have no private attributes; a test compares the result with ``Message.new``).
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


class MessageIds:
    """Ids for bus-internal messages: UUID-shaped, unique in the process, cheap.

    Messages between eventbus and the twin never reach the wire (only their topic and content
    do), so they need no random UUID each (a ``urandom`` call): one random prefix and a counter
    suffice.
    """

    def __init__(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._count = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"
