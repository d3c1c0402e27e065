"""KubeEdge's MQTT twin payloads a mapper sends, typed as the edge parses them.

The shapes follow KubeEdge's devicetwin (``dttype``) field for field, so an existing mapper
works unchanged: every value is a string, its type is in ``metadata.type``, versions are
``{"cloud", "edge"}`` counters, and every message starts with ``event_id`` and ``timestamp``
(milliseconds).

Incoming payloads are parsed leniently where it costs nothing (unknown fields are ignored, a
JSON number or boolean given as a value is taken as its text, ``event_id`` may be a number)
and strictly where guessing could store something the mapper did not mean (a property with
neither ``actual`` nor ``expected``, a value of ``null``, a ``twin`` that is not an object).
:class:`LenientIn` and :data:`Text` are the base every lenient twin model builds on (here, in
:mod:`wire.twin.upstream` and in :mod:`wire.twin.mapper`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator


def _text(v: Any) -> Any:
    """JSON scalars other than strings become their JSON text (``21.5`` -> ``"21.5"``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    return v


Text = Annotated[str, BeforeValidator(_text)]


class LenientIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class ValueIn(LenientIn):
    """``{"value": "21.5", "metadata": {"timestamp": ...}}``; the value is required."""

    value: Text
    metadata: dict[str, Any] | None = None


class TypeMetadata(BaseModel):
    """``{"type": "float"}``"""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    type: str = ""


class PropertyIn(LenientIn):
    """One property of a ``twin/update``: a report (``actual``) and/or a desired (``expected``)."""

    actual: ValueIn | None = None
    expected: ValueIn | None = None
    optional: bool | None = None
    metadata: TypeMetadata | None = None

    @model_validator(mode="after")
    def _something(self) -> PropertyIn:
        if self.actual is None and self.expected is None:
            raise ValueError("neither actual nor expected given")
        return self


class BaseIn(LenientIn):
    """What every request carries; also the whole of ``twin/get`` and ``membership/get``."""

    event_id: Text = ""


class TwinUpdateIn(BaseIn):
    """``$hw/events/device/{id}/twin/update``"""

    twin: dict[str, PropertyIn]


#: the longest state reason a mapper may send (one log line's worth)
MAX_REASON = 512


class StateUpdateIn(BaseIn):
    """``$hw/events/device/{id}/state/update``: ``{"state": "online"}``.

    ``reason`` (an edgebridge addition, ignored by KubeEdge) says why a device is ``offline``
    or ``unknown``; it travels to the cloud's ``Device.status.stateReason``.
    """

    state: str
    reason: str | None = None

    @model_validator(mode="after")
    def _state(self) -> StateUpdateIn:
        if not self.state or len(self.state) > 64:
            raise ValueError("state must be a non-empty string of at most 64 characters")
        if self.reason is not None and len(self.reason) > MAX_REASON:
            raise ValueError(f"reason must be at most {MAX_REASON} characters")
        return self


def first_error(exc: ValidationError) -> str:
    """One readable line for a 400 reason: where in the payload, and what is wrong."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg
