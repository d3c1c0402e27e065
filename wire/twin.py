"""KubeEdge's device twin, once for every side: versions, the merge, and the MQTT payloads.

The mapper (:mod:`devices`), the edge (:mod:`edgecore.devicetwin`) and the cloud
(:mod:`cloudhub.devicecontroller`) all import this module, so the order that decides which of
two values wins and the shape of every twin message exist exactly once.

Versions and the merge
----------------------
The twin's merge rules, pure: how two versions of one property value combine.

Why a total order instead of KubeEdge's ``dealVersion``: KubeEdge rejects a cloud sync when the
edge counter is ahead and drops edge→cloud syncs while offline, so which value survives depends
on the order in which messages happened to arrive. Here every value carries a version
``(cloud, edge)`` plus a timestamp, and merging keeps the greater value by the total order
``(cloud, edge, timestamp, deleted, value)``. Taking the maximum of a total order is
commutative, associative and idempotent, so the same set of updates, delivered in any order and
any number of times (resends after a reconnect, a replayed outbox), ends in the same state on
the edge and in the cloud.

Who writes which counter:

- desired (``expected``) is cloud-owned. The Device's ``metadata.generation`` G (bumped by the
  cloud on every spec change) gives the candidate ``(G, 0)``. A desired value set locally over
  MQTT gets ``(G_local, last_edge + 1)``: it beats the cloud's value of the same generation,
  and any newer generation beats it.
- reported (``actual``) is edge-owned: ``(0, hlc)`` where ``hlc = max(last + 1, now_ms)``, a
  hybrid logical clock that never goes backwards in one run and, being at least the wall
  clock, keeps moving forward even after the database was wiped.

Deletes are values too (tombstones, ``deleted=True``), so a delete and a concurrent update also
converge instead of depending on arrival order. The edge's twin (:func:`merge`), its merged
upstream messages (``edgecore.devicetwin.uplink``, via :func:`json_side`) and the cloud's
``Device.status`` (``cloudhub.devicecontroller.twins``, via :class:`EdgeUpdatedIn`) all keep the
greater value by this one order; ``tests/wire/test_twin_convergence.py`` holds them equal.

Payloads
--------
KubeEdge's MQTT twin payloads, typed: what mappers send and what the edge answers.

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)


@dataclass(frozen=True, slots=True)
class TwinValue:
    """One version of one side (expected or actual) of a property."""

    #: the value as KubeEdge carries it: always a string (``None`` for a tombstone)
    value: str | None
    #: the cloud counter: the Device generation the value belongs to (0 for reported values)
    cloud: int
    #: the edge counter: local edits of desired, or the hybrid logical clock of reports
    edge: int
    #: milliseconds since the epoch when the value was made
    timestamp: int
    #: a tombstone: the value was removed
    deleted: bool = False

    @property
    def version(self) -> tuple[int, int]:
        return (self.cloud, self.edge)

    def order(self) -> tuple[int, int, int, bool, bool, str]:
        """The total order merge keeps the maximum of. Distinct values never compare equal."""
        return (
            self.cloud,
            self.edge,
            self.timestamp,
            self.deleted,
            self.value is not None,
            self.value or "",
        )

    def same_as(self, other: TwinValue | None) -> bool:
        """Same value, version and deletion: only the timestamp may differ.

        The module uses this to tell news from a re-delivery: the cloud re-sends an unchanged
        Device (a status write, a resync) with the same generation, which makes a candidate
        that differs only in its timestamp and must not count as a change.
        """
        return (
            other is not None
            and self.value == other.value
            and self.version == other.version
            and self.deleted == other.deleted
        )


@dataclass(frozen=True, slots=True)
class Twin:
    """Both sides of one property. Either may be absent (never set)."""

    expected: TwinValue | None = None
    actual: TwinValue | None = None


def merge(a: TwinValue | None, b: TwinValue | None) -> TwinValue | None:
    """The greater of two values (absent counts as least)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b.order() > a.order() else a


def merge_twin(a: Twin, b: Twin) -> Twin:
    """Merge each side on its own."""
    return Twin(expected=merge(a.expected, b.expected), actual=merge(a.actual, b.actual))


def merge_all(twins: Iterable[Twin], start: Twin | None = None) -> Twin:
    """Fold :func:`merge_twin` over ``twins``; the result does not depend on their order."""
    out = start or Twin()
    for t in twins:
        out = merge_twin(out, t)
    return out


def next_hlc(last: int, now_ms: int) -> int:
    """The next edge counter for a report: past every earlier one, and at least the clock."""
    return max(last + 1, now_ms)


def cloud_desired(value: str, *, generation: int, timestamp: int) -> TwinValue:
    """The candidate a Device spec's ``desired.value`` yields at ``generation``."""
    return TwinValue(value, generation, 0, timestamp)


def cloud_removed(*, generation: int, timestamp: int) -> TwinValue:
    """The tombstone for a desired value the spec at ``generation`` no longer has."""
    return TwinValue(None, generation, 0, timestamp, deleted=True)


def local_desired(
    value: str, *, current: TwinValue | None, generation: int, timestamp: int
) -> TwinValue:
    """A desired value set over MQTT: ahead of ``current`` within the newest known generation.

    Args:
        current: the expected value now held (``None`` if never set).
        generation: the newest Device generation the edge knows.
    """
    cloud = max(generation, current.cloud if current else 0)
    edge = (current.edge if current else 0) + 1
    return TwinValue(value, cloud, edge, timestamp)


def reported(value: str, *, hlc: int, timestamp: int) -> TwinValue:
    """A reported (actual) value with the edge's clock ``hlc``."""
    return TwinValue(value, 0, hlc, timestamp)


# == payloads ===================================================================================


def _text(v: Any) -> Any:
    """JSON scalars other than strings become their JSON text (``21.5`` -> ``"21.5"``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return json.dumps(v)
    return v


Text = Annotated[str, BeforeValidator(_text)]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)


class ValueIn(_In):
    """``{"value": "21.5", "metadata": {"timestamp": ...}}``; the value is required."""

    value: Text
    metadata: dict[str, Any] | None = None


class TypeMetadata(BaseModel):
    """``{"type": "float"}``"""

    model_config = ConfigDict(extra="ignore", defer_build=True)

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


# -- outgoing -------------------------------------------------------------------------------


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


def state_out(
    event_id: str, timestamp: int, state: str, reason: str | None = None
) -> dict[str, Any]:
    """:class:`StateOut`: upstream ``state/update`` content (also what a mapper publishes)."""
    out: dict[str, Any] = {"event_id": event_id, "timestamp": timestamp, "state": state}
    if reason:
        out["reason"] = reason
    return out


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


# -- upstream: the edge's report as the cloud reads it -------------------------------------
#
# ``twin/edge_updated`` content is :class:`TwinResult` (each property a :class:`MsgTwin` with
# versions). The cloud parses it leniently and orders each side with :meth:`TwinValue.order`,
# the same total order the edge merges with, so both ends keep the same winner.


class VersionIn(_In):
    cloud: int = 0
    edge: int = 0


class SideIn(_In):
    """One side as sent: a removed desired value has no ``value``."""

    value: Text | None = None
    metadata: dict[str, Any] | None = None


class PropertyReportIn(_In):
    """One property of an upstream report (:class:`MsgTwin`, parsed leniently)."""

    expected: SideIn | None = None
    actual: SideIn | None = None
    metadata: TypeMetadata | None = None
    expected_version: VersionIn = Field(default_factory=VersionIn)
    actual_version: VersionIn = Field(default_factory=VersionIn)

    def side(self, name: str, default_ts: int = 0) -> TwinValue | None:
        """``expected`` or ``actual`` as a :class:`TwinValue` (``None`` when absent)."""
        value = self.expected if name == "expected" else self.actual
        version = self.expected_version if name == "expected" else self.actual_version
        if value is None:
            return None
        ts = (value.metadata or {}).get("timestamp")
        return TwinValue(
            value.value,
            version.cloud,
            version.edge,
            ts if isinstance(ts, int) and not isinstance(ts, bool) else default_ts,
            deleted=value.value is None,
        )


class EdgeUpdatedIn(_In):
    """``twin/edge_updated`` content as the cloud reads it."""

    event_id: Text = ""
    timestamp: int = 0
    twin: dict[str, PropertyReportIn]


class StateIn(_In):
    """Upstream ``state/update`` content (:class:`StateOut`) as the cloud reads it."""

    event_id: Text = ""
    timestamp: int = 0
    state: str
    reason: str | None = None


def json_side(entry: Mapping[str, Any], side: str) -> TwinValue | None:
    """One side of a :func:`twin_json` object (with versions) as a :class:`TwinValue`."""
    value = entry.get(side)
    version = entry.get(f"{side}_version")
    if not isinstance(value, dict) or not isinstance(version, dict):
        return None
    meta = value.get("metadata")
    ts = meta.get("timestamp") if isinstance(meta, dict) else None
    raw = value.get("value")
    return TwinValue(
        raw if isinstance(raw, str) else None,
        int(version.get("cloud", 0)),
        int(version.get("edge", 0)),
        ts if isinstance(ts, int) else 0,
        deleted=raw is None,
    )


# -- the mapper's side ----------------------------------------------------------------------
#
# A mapper sends what the edge parses above (TwinUpdateIn, StateUpdateIn, BaseIn for twin/get)
# and parses what the edge sends (TwinResult, TwinDelta, ErrorResult): leniently, as the edge
# parses the mapper, so a newer edge's extra fields or a sloppier edge's JSON numbers pass.


def actual_report(
    event_id: str, timestamp: int, values: Mapping[str, tuple[str, str]]
) -> dict[str, Any]:
    """``.../twin/update`` with reported (``actual``) values only: ``{name: (value, type)}``.

    ``type`` is the twin's lower-case spelling (``float``); desired values stay the cloud's.
    """
    return {
        "event_id": event_id,
        "timestamp": timestamp,
        "twin": {
            name: {
                "actual": {"value": value, "metadata": {"timestamp": timestamp}},
                "metadata": {"type": type_},
            }
            for name, (value, type_) in values.items()
        },
    }


class MaybeValueIn(_In):
    """A value as the edge sends it: a removed desired value has metadata but no ``value``."""

    value: Text | None = None


class MsgTwinIn(_In):
    """One property of a result or delta, as a mapper reads it (versions unused)."""

    expected: MaybeValueIn | None = None
    actual: MaybeValueIn | None = None


class ResultIn(_In):
    """``.../twin/get/result``, ``.../twin/update/result`` or ``.../twin/update/delta``.

    A refusal (:class:`ErrorResult`) has ``code`` and ``reason``; a delta has ``delta``.
    """

    event_id: Text = ""
    timestamp: int | None = None
    code: int | None = None
    reason: str | None = None
    twin: dict[str, MsgTwinIn | None] = Field(default_factory=dict)
    delta: dict[str, Text] = Field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """An error result: a ``code`` outside 2xx."""
        return self.code is not None and not 200 <= self.code < 300

    def expected(self) -> dict[str, str]:
        """Each property's desired value, where one is set (removed ones left out)."""
        out: dict[str, str] = {}
        for name, prop in self.twin.items():
            if prop is not None and prop.expected is not None and prop.expected.value is not None:
                out[name] = prop.expected.value
        return out


def in_sync(device: dict[str, Any]) -> bool:
    """Every desired value has been observed by the edge and reported back."""
    desired = {
        p.get("name"): ((p.get("desired") or {}).get("value"))
        for p in (device.get("spec") or {}).get("properties") or []
        if (p.get("desired") or {}).get("value") is not None
    }
    twins = {t.get("propertyName"): t for t in (device.get("status") or {}).get("twins") or []}
    for name, want in desired.items():
        t = twins.get(name) or {}
        if (t.get("observedDesired") or {}).get("value") != want:
            return False
        if (t.get("reported") or {}).get("value") != want:
            return False
    return True
