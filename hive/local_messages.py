"""Bus messages modules make by the thousand, built cheaply.

Per MQTT report, eventbus hands the twin a message; per accepted report the twin puts a result
in eventbus's inbox and an upstream message in edgehub's. ``Message.new`` validates three
pydantic models and draws a random UUID for each message, which showed as several percent of
edgecore's CPU under load. :func:`bus_message` assembles the same objects directly; validation
stays where data enters the process (the codec, the MQTT payload parsers).
"""

from __future__ import annotations

import itertools
import os
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
    """Ids for messages a process makes by the thousand: UUIDv4-shaped, unique per instance.

    uuid4 reads the OS's random source for every id; a random prefix chosen once and a counter
    cost a fifth of that and cannot collide within the process. That they are predictable gives
    nobody anything: they name bus-internal messages (eventbus <-> twin, never on the wire) and
    the hub's own replies, forwarded requests and object messages, which an edge can only ACK
    (by id) on its own link. Call an instance for the next id.
    """

    def __init__(self) -> None:
        r = os.urandom(10).hex()
        variant = "89ab"[int(r[15], 16) & 3]
        self._prefix = f"{r[:8]}-{r[8:12]}-4{r[12:15]}-{variant}{r[16:19]}-"
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFFFFFFFFFF:012x}"
