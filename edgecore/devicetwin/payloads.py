"""KubeEdge's MQTT twin payloads, typed: what mappers send and what the edge answers.

The shapes follow KubeEdge's devicetwin (``dttype``) field for field, so an existing mapper
works unchanged: every value is a string, its type is in ``metadata.type``, versions are
``{"cloud", "edge"}`` counters, and every message starts with ``event_id`` and ``timestamp``
(milliseconds). Outgoing payloads omit absent fields, as Go's ``omitempty`` does.

Incoming payloads are parsed leniently where it costs nothing (unknown fields are ignored, a
JSON number or boolean given as a value is taken as its text, ``event_id`` may be a number)
and strictly where guessing could store something the mapper did not mean (a property with
neither ``actual`` nor ``expected``, a value of ``null``, a ``twin`` that is not an object).
The same models describe the upstream ``twin/edge_updated`` content sent to the cloud.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from edgecore.devicetwin.merge import Twin, TwinValue


def _text(v: Any) -> Any:
    """JSON scalars other than strings become their JSON text (``21.5`` -> ``"21.5"``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    return v


Text = Annotated[str, BeforeValidator(_text)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ValueIn(_In):
    """``{"value": "21.5", "metadata": {"timestamp": ...}}``; the value is required."""

    value: Text
    metadata: dict[str, Any] | None = None


class TypeMetadata(BaseModel):
    """``{"type": "float"}``"""

    model_config = ConfigDict(extra="ignore")

    type: str = ""


class PropertyIn(_In):
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


class BaseIn(_In):
    """What every request carries; also the whole of ``twin/get`` and ``membership/get``."""

    event_id: Text = ""


class TwinUpdateIn(BaseIn):
    """``$hw/events/device/{id}/twin/update``"""

    twin: dict[str, PropertyIn]


class StateUpdateIn(BaseIn):
    """``$hw/events/device/{id}/state/update``: ``{"state": "online"}``"""

    state: str

    @model_validator(mode="after")
    def _state(self) -> StateUpdateIn:
        if not self.state or len(self.state) > 64:
            raise ValueError("state must be a non-empty string of at most 64 characters")
        return self


def first_error(exc: ValidationError) -> str:
    """One readable line for a 400 reason: where in the payload, and what is wrong."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


# -- outgoing -------------------------------------------------------------------------------


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueMetadata(_Out):
    timestamp: int | None = None


class TwinValueOut(_Out):
    """A value; a removed (tombstoned) value has no ``value``, only its metadata."""

    value: str | None = None
    metadata: ValueMetadata | None = None


class TwinVersion(_Out):
    cloud: int
    edge: int


class MsgTwin(_Out):
    """One property as KubeEdge's ``MsgTwin``."""

    expected: TwinValueOut | None = None
    actual: TwinValueOut | None = None
    optional: bool | None = None
    metadata: TypeMetadata | None = None
    expected_version: TwinVersion | None = None
    actual_version: TwinVersion | None = None


class BaseOut(_Out):
    event_id: str
    timestamp: int


class TwinResult(BaseOut):
    """``.../twin/update/result``, ``.../twin/get/result`` and upstream ``twin/edge_updated``."""

    twin: dict[str, MsgTwin]


class TwinDelta(BaseOut):
    """``.../twin/update/delta``: the twin without versions, and ``delta`` = expected values
    that differ from the reported ones."""

    twin: dict[str, MsgTwin]
    delta: dict[str, str]


class TwinDoc(_Out):
    last: MsgTwin | None = None
    current: MsgTwin | None = None


class TwinDocument(BaseOut):
    """``.../twin/update/document``: each changed property before and after."""

    twin: dict[str, TwinDoc]


class ErrorResult(BaseOut):
    """Any ``.../result`` that refuses: ``code`` 400 (bad input), 404 (unknown), 500 (storage)."""

    code: int
    reason: str


class StateOut(BaseOut):
    """Upstream ``state/update`` content."""

    state: str


class MembershipDevice(_Out):
    id: str
    name: str
    namespace: str
    state: str
    last_online: str | None = None
    twin: dict[str, MsgTwin]


class MembershipResult(BaseOut):
    """``$hw/events/node/{node}/membership/get/result``"""

    devices: list[MembershipDevice]


class MembershipUpdated(BaseOut):
    """``$hw/events/node/{node}/membership/updated``"""

    added_devices: list[MembershipDevice]
    removed_devices: list[MembershipDevice]


def dump(model: BaseModel) -> dict[str, Any]:
    """The JSON object of an outgoing model; absent fields are left out (Go's ``omitempty``)."""
    return model.model_dump(mode="json", exclude_none=True)


# -- builders -------------------------------------------------------------------------------
#
# The hot path (several payloads per report, thousands of reports a second, all on one event
# loop) builds outgoing payloads as plain dicts: constructing and dumping the models above costs
# several times more. Each builder returns exactly what ``dump`` of the model named in its
# docstring would; the tests validate every payload the twin publishes against those models.


def _value_json(v: TwinValue) -> dict[str, Any]:
    if v.deleted or v.value is None:
        return {"metadata": {"timestamp": v.timestamp}}
    return {"value": v.value, "metadata": {"timestamp": v.timestamp}}


def twin_json(
    twin: Twin, *, type_: str = "", optional: bool | None = None, versions: bool = True
) -> dict[str, Any]:
    """One property as :class:`MsgTwin` (deltas leave the versions out)."""
    e, a = twin.expected, twin.actual
    out: dict[str, Any] = {}
    if e is not None:
        out["expected"] = _value_json(e)
    if a is not None:
        out["actual"] = _value_json(a)
    if optional is not None:
        out["optional"] = optional
    if type_:
        out["metadata"] = {"type": type_}
    if versions:
        if e is not None:
            out["expected_version"] = {"cloud": e.cloud, "edge": e.edge}
        if a is not None:
            out["actual_version"] = {"cloud": a.cloud, "edge": a.edge}
    return out


def twin_result(event_id: str, timestamp: int, twin: dict[str, Any]) -> dict[str, Any]:
    """:class:`TwinResult`: ``twin`` maps property names to :func:`twin_json` objects."""
    return {"event_id": event_id, "timestamp": timestamp, "twin": twin}


def twin_document(
    event_id: str, timestamp: int, changes: dict[str, tuple[dict[str, Any] | None, dict[str, Any]]]
) -> dict[str, Any]:
    """:class:`TwinDocument` from ``{property: (last, current)}``."""
    docs: dict[str, Any] = {}
    for name, (last, current) in changes.items():
        docs[name] = {"current": current} if last is None else {"last": last, "current": current}
    return {"event_id": event_id, "timestamp": timestamp, "twin": docs}


def twin_delta(
    event_id: str, timestamp: int, twin: dict[str, Any], delta: dict[str, str]
) -> dict[str, Any]:
    """:class:`TwinDelta`."""
    return {"event_id": event_id, "timestamp": timestamp, "twin": twin, "delta": delta}


def error_result(event_id: str, timestamp: int, code: int, reason: str) -> dict[str, Any]:
    """:class:`ErrorResult`."""
    return {"event_id": event_id, "timestamp": timestamp, "code": code, "reason": reason}


def base_result(event_id: str, timestamp: int) -> dict[str, Any]:
    """:class:`BaseOut`: the answer to ``state/update``."""
    return {"event_id": event_id, "timestamp": timestamp}


def state_out(event_id: str, timestamp: int, state: str) -> dict[str, Any]:
    """:class:`StateOut`: upstream ``state/update`` content."""
    return {"event_id": event_id, "timestamp": timestamp, "state": state}


def membership_device(
    *,
    id: str,
    name: str,
    namespace: str,
    state: str,
    last_online: str,
    twin: dict[str, Any],
) -> dict[str, Any]:
    """:class:`MembershipDevice` (``last_online`` left out when empty)."""
    out: dict[str, Any] = {"id": id, "name": name, "namespace": namespace, "state": state}
    if last_online:
        out["last_online"] = last_online
    out["twin"] = twin
    return out


def membership_result(
    event_id: str, timestamp: int, devices: list[dict[str, Any]]
) -> dict[str, Any]:
    """:class:`MembershipResult`."""
    return {"event_id": event_id, "timestamp": timestamp, "devices": devices}


def membership_updated(
    event_id: str, timestamp: int, added: list[dict[str, Any]], removed: list[dict[str, Any]]
) -> dict[str, Any]:
    """:class:`MembershipUpdated`."""
    return {
        "event_id": event_id,
        "timestamp": timestamp,
        "added_devices": added,
        "removed_devices": removed,
    }


def _value_out(v: TwinValue) -> TwinValueOut:
    return TwinValueOut(
        value=None if v.deleted else v.value, metadata=ValueMetadata(timestamp=v.timestamp)
    )


def msg_twin(
    twin: Twin, *, type_: str = "", optional: bool | None = None, versions: bool = True
) -> MsgTwin:
    """A stored twin as the :class:`MsgTwin` model (the reference for :func:`twin_json`)."""
    e, a = twin.expected, twin.actual
    return MsgTwin(
        expected=_value_out(e) if e else None,
        actual=_value_out(a) if a else None,
        optional=optional,
        metadata=TypeMetadata(type=type_) if type_ else None,
        expected_version=TwinVersion(cloud=e.cloud, edge=e.edge) if e and versions else None,
        actual_version=TwinVersion(cloud=a.cloud, edge=a.edge) if a and versions else None,
    )
