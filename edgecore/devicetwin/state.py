"""The twin's in-memory picture of its devices, and the batch one transaction stages.

Why a picture in memory: every MQTT request is checked against the committed twin and
answered from it, thousands a second; a SQLite read per request would cost more than the
request. The picture holds committed state only. Handlers (:mod:`.mqtt_handlers`,
:mod:`.desired`) stage their changes in a :class:`Batch`; :class:`~.module.TwinModule` commits
the batch's writes in one transaction and only then calls :meth:`TwinState.install`, so a
failed commit leaves memory exactly as it was.

Why the document is per device per batch: a mapper reporting many times within one group commit
needs the twin's state after the batch, not one ``.../update/document`` per report (each a publish
through the broker). :meth:`Batch.changed` keeps, per property, the state before the batch and the
newest state; :meth:`TwinState.documents` renders one document per device from them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgecore.devicetwin.store import DeviceRecord, NewOutboxRow, TwinRecord, WriteSet
from wire import topics
from wire.devicemodel import PropertySpec
from wire.devicemodel import same_value as _same_value
from wire.twin import (
    membership_device,
    membership_updated,
    twin_delta,
    twin_document,
    twin_json,
    twin_result,
)

DEFAULT_NAMESPACE = "default"

#: after the commit: what to publish, given whether the commit succeeded
Render = Callable[[bool], "tuple[str, dict[str, Any]] | None"]
#: one MQTT publish: topic and JSON object
Publish = tuple[str, dict[str, Any]]


def default_topic_id(namespace: str, name: str) -> str:
    """The topic form of a device whose mapper has not spoken yet."""
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


@dataclass
class Device:
    """A member device, as the loop keeps it in memory (committed state only)."""

    record: DeviceRecord
    #: ``{ns}/{model name}``, "" when the Device names none (or before the Device was seen)
    model: str = ""
    generation: int = 0
    #: spec desired values, by property
    desired: dict[str, str] = field(default_factory=dict)
    twins: dict[str, TwinRecord] = field(default_factory=dict)
    #: the topic form its mapper used last
    topic_id: str = ""

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class DocChanges:
    """One device's properties changed within a batch.

    ``props``: ``{name: (before the batch, newest, the newest as twin JSON)}``.
    """

    event_id: str
    timestamp: int
    props: dict[str, tuple[TwinRecord | None, TwinRecord, dict[str, Any]]] = field(
        default_factory=dict
    )


@dataclass
class Batch:
    """One transaction's staged writes and what to publish once it is committed."""

    writes: WriteSet = field(default_factory=WriteSet)
    #: in-memory changes to make once committed (membership), before the staged rows install
    installs: list[Callable[[], None]] = field(default_factory=list)
    outputs: list[Render] = field(default_factory=list)
    #: devices whose twin changed: one ``.../update/document`` each after the commit
    docs: dict[str, DocChanges] = field(default_factory=dict)
    #: devices to check for a delta after the commit (ordered set)
    deltas: dict[str, None] = field(default_factory=dict)
    #: the one ``twin/edge_updated`` outbox row per device in this batch, by device id
    twin_rows: dict[str, NewOutboxRow] = field(default_factory=dict)

    def fixed(self, topic: str, payload: dict[str, Any]) -> None:
        self.outputs.append(lambda _ok: (topic, payload))

    def changed(
        self,
        device_id: str,
        name: str,
        before: TwinRecord | None,
        after: TwinRecord,
        after_json: dict[str, Any],
        *,
        event_id: str,
        timestamp: int,
    ) -> None:
        """Note a staged property change for the device's document (the newest event wins).

        ``after_json`` is ``after`` as :meth:`TwinState.twin_json` renders it (the handler has
        rendered it already for its own answer).
        """
        doc = self.docs.get(device_id)
        if doc is None:
            doc = self.docs[device_id] = DocChanges(event_id, timestamp)
        else:
            doc.event_id, doc.timestamp = event_id, timestamp
        prev = doc.props.get(name)
        doc.props[name] = (prev[0] if prev is not None else before, after, after_json)
        self.deltas[device_id] = None

    def forget(self, device_id: str) -> None:
        """Drop what was staged for a device that leaves within this batch."""
        self.writes.devices.pop(device_id, None)
        for key in [k for k in self.writes.twins if k[0] == device_id]:
            del self.writes.twins[key]
        self.docs.pop(device_id, None)


class TwinState:
    """Committed devices, twins and models, and what every handler derives from them."""

    def __init__(self, *, node: str, clock: Callable[[], int]) -> None:
        self.node = node
        self.clock = clock
        self.devices: dict[str, Device] = {}
        self.models: dict[str, dict[str, PropertySpec]] = {}

    def clear(self) -> None:
        self.devices.clear()
        self.models.clear()

    # -- reading (staged first, then committed) ----------------------------------------------

    def current(self, batch: Batch, device_id: str, name: str) -> TwinRecord | None:
        staged = batch.writes.twins.get((device_id, name))
        if staged is not None:
            return staged
        dev = self.devices.get(device_id)
        return dev.twins.get(name) if dev else None

    def type_of(self, rec: TwinRecord) -> str:
        dev = self.devices.get(rec.device_id)
        spec = self.models.get(dev.model, {}).get(rec.name) if dev else None
        return spec.twin_type if spec else rec.attr_type

    def twin_json(self, rec: TwinRecord, *, versions: bool = True) -> dict[str, Any]:
        return twin_json(
            rec.twin, type_=self.type_of(rec), optional=rec.optional, versions=versions
        )

    def membership_entry(self, dev: Device) -> dict[str, Any]:
        r = dev.record
        return membership_device(
            id=r.id,
            name=r.name,
            namespace=r.namespace,
            state=r.state,
            last_online=r.last_online,
            twin={n: self.twin_json(t) for n, t in sorted(dev.twins.items())},
        )

    def membership_update(
        self, *, added: list[Device] | None = None, removed: list[Device] | None = None
    ) -> Publish:
        payload = membership_updated(
            str(uuid.uuid4()),
            self.clock(),
            [self.membership_entry(d) for d in added or []],
            [self.membership_entry(d) for d in removed or []],
        )
        return f"{topics.NODE_PREFIX}{self.node}/membership/updated", payload

    # -- staging ------------------------------------------------------------------------------

    def stage_upstream(
        self,
        batch: Batch,
        dev: Device,
        what: str,
        content: Callable[[str], dict[str, Any]],
    ) -> None:
        """Queue an outbox row; ``content`` gets the row's id, used as its ``event_id`` too."""
        rec = dev.record
        row_id = str(uuid.uuid4())
        batch.writes.outbox.append(
            NewOutboxRow(
                msg_id=row_id,
                resource=f"{rec.namespace}/device/{rec.name}/{what}",
                content=content(row_id),
                created=self.clock(),
            )
        )

    def stage_twin_upstream(
        self, batch: Batch, dev: Device, timestamp: int, twin: dict[str, dict[str, Any]]
    ) -> None:
        """Queue changed twin properties (``{name: twin JSON}``) for the cloud.

        One ``twin/edge_updated`` row per device per batch: a later change of a property in
        the same batch replaces the earlier one in it. That loses nothing: each entry is the
        property's whole twin after the change (both sides, with versions), staged in order,
        so the later one is the newer on both sides, and the cloud keeps only the newest
        anyway. Under load a mapper reports many times per commit; a row (and its JSON) per
        report cost more than the rest of the commit.
        """
        row = batch.twin_rows.get(dev.id)
        if row is not None:
            row.content["twin"].update(twin)
            row.content["timestamp"] = timestamp
            return
        rec = dev.record
        row_id = str(uuid.uuid4())
        row = NewOutboxRow(
            msg_id=row_id,
            resource=f"{rec.namespace}/device/{rec.name}/twin/edge_updated",
            content=twin_result(row_id, timestamp, dict(twin)),
            created=self.clock(),
        )
        batch.writes.outbox.append(row)
        batch.twin_rows[dev.id] = row

    # -- after the commit -----------------------------------------------------------------------

    def install(self, batch: Batch) -> None:
        """Make the committed batch the current state."""
        for install in batch.installs:
            install()
        devices = self.devices
        for rec in batch.writes.twins.values():
            dev = devices.get(rec.device_id)
            if dev is not None:
                dev.twins[rec.name] = rec
        for drec in batch.writes.devices.values():
            dev = devices.get(drec.id)
            if dev is not None:
                dev.record = drec

    def documents(self, batch: Batch) -> list[Publish]:
        """``.../twin/update/document`` per changed device: each property before and after."""
        out: list[Publish] = []
        for device_id, doc in batch.docs.items():
            dev = self.devices.get(device_id)
            if dev is None:  # left meanwhile
                continue
            changes = {
                name: (self.twin_json(before) if before else None, after_json)
                for name, (before, _, after_json) in doc.props.items()
            }
            payload = twin_document(doc.event_id, doc.timestamp, changes)
            out.append((topics.twin_document(dev.topic_id), payload))
        return out

    def delta(self, device_id: str) -> Publish | None:
        """``.../twin/update/delta`` if some expected value differs from its actual value."""
        dev = self.devices.get(device_id)
        if dev is None:
            return None
        delta: dict[str, str] = {}
        for name, rec in sorted(dev.twins.items()):
            e, a = rec.twin.expected, rec.twin.actual
            if e is None or e.deleted or e.value is None:
                continue
            if a is not None and not a.deleted and _same_value(self.type_of(rec), e.value, a.value):
                continue
            delta[name] = e.value
        if not delta:
            return None
        twin = {n: self.twin_json(r, versions=False) for n, r in sorted(dev.twins.items())}
        payload = twin_delta(str(uuid.uuid4()), self.clock(), twin, delta)
        return topics.twin_delta(dev.topic_id), payload
