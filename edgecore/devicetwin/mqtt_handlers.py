"""Where a mapper's MQTT request enters the twin: topic -> validated request -> staged change.

KubeEdge's device topics (``$hw/events/device/{id}/twin/update``, ``.../twin/get``,
``.../state/update``) and ``$hw/events/node/{node}/membership/get``. Each request is checked
against the committed twin and the DeviceModel, then either refused at once (``code``
400/404 in its ``.../result``, nothing staged) or staged in the :class:`~.state.Batch`: twin
and device rows, one outbox row for the cloud, and a render that publishes the result once
the batch committed (or a 500 if it did not).

Replies go to the topic form the mapper used (``{name}`` or ``{ns}/{name}``), which is also
remembered as the device's form for messages the edge starts on its own (deltas, documents).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from edgecore.devicetwin.state import (
    DEFAULT_NAMESPACE,
    Batch,
    Device,
    Publish,
    TwinState,
)
from edgecore.devicetwin.store import DeviceRecord, TwinRecord
from wire import topics
from wire import twin as m
from wire.devicemodel import check_desired, check_value
from wire.twin import (
    BaseIn,
    StateUpdateIn,
    TwinUpdateIn,
    base_result,
    error_result,
    first_error,
    membership_result,
    state_out,
    twin_result,
)

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

Kind = Literal["update", "get", "state", "membership"]

#: the twin's request kinds, by the shared topic contract's names
_KINDS: dict[str, Kind] = {
    "twin_update": "update",
    "twin_get": "get",
    "state_update": "state",
    "membership_get": "membership",
}
_REQUEST_SUFFIX: tuple[tuple[str, Kind], ...] = (
    ("/twin/update", "update"),
    ("/twin/get", "get"),
    ("/state/update", "state"),
)
#: result suffixes; built by hand, not with the checked builders of :mod:`wire.topics`,
#: because a malformed id must still get its 404 on the topic the mapper used
_RESULT_SUFFIX: dict[Kind, str] = {
    "update": "/twin/update/result",
    "get": "/twin/get/result",
    "state": "/state/update/result",
    "membership": "/membership/get/result",
}


def parse_topic(topic: str) -> tuple[Kind, str] | None:
    """``(kind, id)`` of a request topic: the device id as written, or the node name.

    ``None`` for anything else, including the edge's own ``.../result`` and ``.../delta``
    topics should the broker echo them.
    """
    match = topics.parse(topic)
    kind = _KINDS.get(match.kind)
    if kind is None:
        return _malformed_request(topic)
    topic_id = match.node if kind == "membership" else match.device_id
    return (kind, topic_id) if topic_id else None


def _malformed_request(topic: str) -> tuple[Kind, str] | None:
    """A device request whose id is not ``name`` or ``ns/name``: answered 404, not dropped."""
    if topic.startswith(topics.DEVICE_PREFIX):
        rest = topic[len(topics.DEVICE_PREFIX) :]
        for suffix, kind in _REQUEST_SUFFIX:
            if rest.endswith(suffix) and rest[: -len(suffix)]:
                return kind, rest[: -len(suffix)]
    return None


def device_id_of(topic_id: str) -> str | None:
    """``{ns}/{name}`` for a topic's device id (``{name}`` alone means namespace default)."""
    parts = topic_id.split("/")
    if len(parts) == 1 and parts[0]:
        return f"{DEFAULT_NAMESPACE}/{parts[0]}"
    if len(parts) == 2 and all(parts):
        return topic_id
    return None


def reply_topic(kind: Kind, topic_id: str) -> str:
    base = topics.NODE_PREFIX if kind == "membership" else topics.DEVICE_PREFIX
    return f"{base}{topic_id}{_RESULT_SUFFIX[kind]}"


class Refused(Exception):
    """A request that is answered with ``code`` and ``reason`` and changes nothing (internal)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Undecodable:
    reason: str


def decode(payload: Any) -> dict[str, Any] | Undecodable:
    """The payload as a JSON object, or why not. An empty payload counts as ``{}``."""
    if payload is None:
        return Undecodable("payload is not UTF-8 text")
    if isinstance(payload, dict):
        return payload
    if not isinstance(payload, str):
        return Undecodable(f"payload is a {type(payload).__name__}, not JSON text")
    if not payload.strip():
        return {}
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        return Undecodable(f"payload is not JSON: {exc}")
    if not isinstance(obj, dict):
        return Undecodable(f"payload is a JSON {type(obj).__name__}, not an object")
    return obj


def event_id_of(obj: dict[str, Any] | Undecodable) -> str:
    if isinstance(obj, dict):
        e = obj.get("event_id")
        if isinstance(e, str):
            return e
        if isinstance(e, int) and not isinstance(e, bool):
            return str(e)
    return ""


def _update_from_json(payload: Any) -> TwinUpdateIn | None:
    """A ``twin/update`` parsed and validated in one step by pydantic, or ``None``.

    The common case, in about half the time of ``json.loads`` and then the model. ``None``
    when pydantic refuses the text (or it is not text): the two-step path then decides, and
    gives the precise reason, so what is accepted and what each refusal says stay those of
    :func:`decode` and :func:`validate` (a property test holds the two paths together).
    """
    if not isinstance(payload, str):
        return None
    try:
        return TwinUpdateIn.model_validate_json(payload)
    except ValidationError:
        return None


def validate(model: type[_M], obj: dict[str, Any]) -> _M:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise Refused(400, first_error(exc)) from exc


class MqttHandlers:
    """Turns one MQTT request into staged changes and renders of its answer."""

    def __init__(self, state: TwinState) -> None:
        self._s = state

    def handle(self, topic: str, payload: Any, batch: Batch) -> None:
        """Stage one request; anything wrong with it costs one error answer, nothing else."""
        parsed = parse_topic(topic)
        if parsed is None:
            log.debug("twin ignores MQTT topic %s", topic)
            return
        kind, topic_id = parsed
        event_id = ""
        try:
            update = _update_from_json(payload) if kind == "update" else None
            if update is not None:
                obj: dict[str, Any] | Undecodable = {}
                event_id = update.event_id
            else:
                obj = decode(payload)
                event_id = event_id_of(obj)
            if kind == "membership":
                self._on_membership(topic_id, obj, batch)
                return
            device_id = device_id_of(topic_id)
            if device_id is None:
                raise Refused(404, f"device id {topic_id!r} is not NAME or NAMESPACE/NAME")
            dev = self._s.devices.get(device_id)
            if dev is None:
                raise Refused(404, f"device {device_id} is not a member of node {self._s.node}")
            dev.topic_id = topic_id
            if isinstance(obj, Undecodable):
                raise Refused(400, obj.reason)
            if kind == "update":
                req = update if update is not None else validate(TwinUpdateIn, obj)
                self._on_update(dev, topic_id, req, batch)
            elif kind == "get":
                self._on_get(dev, topic_id, obj, batch)
            else:
                self._on_state(dev, topic_id, obj, batch)
        except Refused as exc:
            log.info("refusing %s: %s", topic, exc.reason)
            code, reason = exc.code, exc.reason
        except Exception:
            # a bug must cost one answer, not the loop (and the batch's other messages)
            log.exception("twin failed on %s", topic)
            code, reason = 500, "the edge failed to handle this message"
        else:
            return
        batch.fixed(
            reply_topic(kind, topic_id), error_result(event_id, self._s.clock(), code, reason)
        )

    def _on_update(self, dev: Device, topic_id: str, req: TwinUpdateIn, batch: Batch) -> None:
        s = self._s
        specs = s.models.get(dev.model)
        if specs is None:
            raise Refused(404, f"device model {dev.model or '(none)'} of {dev.id} is not known")
        for name, p in req.twin.items():
            spec = specs.get(name)
            if spec is None:
                raise Refused(404, f"property {name} is not in device model {dev.model}")
            reason = (check_value(spec, p.actual.value) if p.actual else None) or (
                check_desired(spec, p.expected.value) if p.expected else None
            )
            if reason:
                raise Refused(400, reason)
        now = s.clock()
        eid = req.event_id
        result: dict[str, Any] = {}
        for name, p in req.twin.items():
            before = s.current(batch, dev.id, name)
            old = before.twin if before else m.Twin()
            actual, expected = old.actual, old.expected
            if p.actual is not None:
                # per property: a clock shared by all would run ahead of the wall clock under
                # a sustained load above 1000 reports/s
                hlc = m.next_hlc(actual.edge if actual else 0, now)
                actual = m.merge(actual, m.reported(p.actual.value, hlc=hlc, timestamp=now))
            if p.expected is not None:
                cand = m.local_desired(
                    p.expected.value, current=expected, generation=dev.generation, timestamp=now
                )
                expected = m.merge(expected, cand)
            optional = (
                p.optional if p.optional is not None else (before.optional if before else None)
            )
            after = TwinRecord(
                dev.id, name, m.Twin(expected, actual), optional, specs[name].twin_type
            )
            batch.writes.twins[(dev.id, name)] = after
            result[name] = s.twin_json(after)
            batch.changed(dev.id, name, before, after, result[name], event_id=eid, timestamp=now)
        topic = reply_topic("update", topic_id)
        if not result:  # an empty twin: nothing to store or send
            batch.fixed(topic, twin_result(eid, now, {}))
            return
        s.stage_twin_upstream(batch, dev, now, result)
        ok_payload = twin_result(eid, now, result)
        batch.outputs.append(lambda ok: (topic, ok_payload if ok else self.storage_error(eid)))

    def _on_get(self, dev: Device, topic_id: str, obj: dict[str, Any], batch: Batch) -> None:
        req = validate(BaseIn, obj)
        topic = reply_topic("get", topic_id)
        device_id = dev.id
        s = self._s

        def render(_ok: bool) -> Publish:
            now = s.clock()
            current = s.devices.get(device_id)
            if current is None:  # removed by the cloud meanwhile
                reason = f"device {device_id} is not a member of node {s.node}"
                return topic, error_result(req.event_id, now, 404, reason)
            twin = {n: s.twin_json(r) for n, r in sorted(current.twins.items())}
            return topic, twin_result(req.event_id, now, twin)

        batch.outputs.append(render)

    def _on_state(self, dev: Device, topic_id: str, obj: dict[str, Any], batch: Batch) -> None:
        req = validate(StateUpdateIn, obj)
        now = self._s.clock()
        record = batch.writes.devices.get(dev.id, dev.record)
        last_online = (
            datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            if req.state == "online"
            else record.last_online
        )
        batch.writes.devices[dev.id] = DeviceRecord(
            record.id, record.name, record.namespace, record.description, req.state, last_online
        )
        state, reason = req.state, req.reason
        self._s.stage_upstream(
            batch, dev, "state/update", lambda row_id: state_out(row_id, now, state, reason)
        )
        topic = reply_topic("state", topic_id)
        eid = req.event_id
        ok_payload = base_result(eid, now)
        batch.outputs.append(lambda ok: (topic, ok_payload if ok else self.storage_error(eid)))

    def _on_membership(self, node: str, obj: Any, batch: Batch) -> None:
        if isinstance(obj, Undecodable):
            raise Refused(400, obj.reason)
        req = validate(BaseIn, obj)
        s = self._s
        if node != s.node:
            raise Refused(404, f"this edge is node {s.node}, not {node}")
        topic = reply_topic("membership", node)

        def render(_ok: bool) -> Publish:
            devices = [s.membership_entry(d) for _, d in sorted(s.devices.items())]
            return topic, membership_result(req.event_id, s.clock(), devices)

        batch.outputs.append(render)

    def storage_error(self, event_id: str) -> dict[str, Any]:
        reason = "the edge could not store the update; publish it again"
        return error_result(event_id, self._s.clock(), 500, reason)
