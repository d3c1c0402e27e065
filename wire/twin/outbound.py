"""KubeEdge's MQTT twin payloads the edge sends, as models: the reference for every shape.

Outgoing payloads omit absent fields, as Go's ``omitempty`` does (:func:`dump`). The same
models describe the upstream ``twin/edge_updated`` content sent to the cloud. The hot path
builds these payloads as plain dicts (:mod:`wire.twin.builders`); the tests validate those
dicts against the models here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from wire.twin.inbound import TypeMetadata
from wire.twin.merge import Twin, TwinValue


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


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
    reason: str | None = None


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
