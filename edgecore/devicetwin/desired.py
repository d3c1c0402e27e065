"""Where the cloud's Devices and DeviceModels enter the twin: membership and expected values.

Devices and DeviceModels come from metamanager's cache (the module lists them, then watches),
so the twin sees only objects that are on disk. A Device whose ``spec.nodeName`` is this node
makes the device a member (``membership/updated`` announces it); its
``spec.properties[].desired.value`` at ``metadata.generation`` G becomes the expected value
``(value, (G, 0))``, merged by :mod:`wire.twin` with what the edge holds (a
mapper's local edit of the same generation wins; a newer generation wins over it). A desired
value the spec no longer has becomes a tombstone. Each change is staged like a report: twin
rows, one outbox row for the cloud, a document, and a delta check after the commit.

A desired value that breaks the DeviceModel is ignored (and logged once per spec change, not
on every re-delivery of an unchanged Device); a Device that arrives before its model gets its
desired values when the model arrives.

A DeviceModel that disappears while member Devices still use it (deleted with ``kubectl``,
past the admin API's refusal) is kept as it last was, with a warning: without it every report
of those devices would be refused and no value range-checked. When it comes back it replaces
the kept one. An unused model is simply dropped. Kept models are written to the twin's
``kept_model`` table, so a restart keeps them too (:meth:`DesiredSync.restore`).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from edgecore.devicetwin.state import (
    DEFAULT_NAMESPACE,
    Batch,
    Device,
    TwinState,
    default_topic_id,
)
from edgecore.devicetwin.store import DeviceRecord, TwinRecord
from edgecore.metastore import StoreEvent
from wire import twin as m
from wire.devicemodel import check_desired, property_specs

log = logging.getLogger(__name__)


def desired_of(spec: dict[str, Any]) -> dict[str, str]:
    """``spec.properties[].desired.value`` by property name (non-string scalars as text)."""
    out: dict[str, str] = {}
    props = spec.get("properties")
    if not isinstance(props, list):
        return out
    for p in props:
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            continue
        desired = p.get("desired")
        value = desired.get("value") if isinstance(desired, dict) else None
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, int | float):
            value = json.dumps(value)
        if isinstance(value, str):
            out[p["name"]] = value
    return out


def generation_of(meta: dict[str, Any]) -> int:
    g = meta.get("generation")
    if isinstance(g, int) and not isinstance(g, bool) and g > 0:
        return g
    if isinstance(g, str) and g.isdigit() and int(g) > 0:
        return int(g)
    return 1


def object_id(obj: dict[str, Any]) -> str | None:
    """``{ns}/{name}`` of a namespaced object."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    ns = meta.get("namespace") or DEFAULT_NAMESPACE
    return f"{ns}/{name}"


class DesiredSync:
    """Stages membership and expected-value changes from Device / DeviceModel objects."""

    def __init__(self, state: TwinState) -> None:
        self._s = state
        #: models deleted in the cloud that member devices still use: kept as they last were
        self.kept: set[str] = set()
        #: the last object of each model, to persist one when it is kept
        self._objects: dict[str, dict[str, Any]] = {}

    def on_event(self, type_: str, event: StoreEvent, batch: Batch) -> None:
        """One committed change of a ``device`` or ``devicemodel`` in metamanager's cache."""
        if type_ == "devicemodel":
            self.on_model(event.obj, deleted=event.type == "DELETED", batch=batch)
        elif event.type == "DELETED":
            device_id = object_id(event.obj)
            if device_id in self._s.devices:
                self.stage_removal(device_id, batch)
        else:
            self.on_device(event.obj, batch)

    def relist(self, type_: str, objs: list[dict[str, Any]], batch: Batch) -> None:
        """Bring memory in line with every object of ``type_`` in the cache."""
        if type_ == "devicemodel":
            before, self._s.models = self._s.models, {}
            for obj in objs:
                self.on_model(obj, deleted=False, batch=batch)
            for key in set(before) - set(self._s.models):
                if self._keep(key, batch):
                    self._s.models[key] = before[key]
            return
        seen = set()
        for obj in objs:
            device_id = self.on_device(obj, batch)
            if device_id is not None:
                seen.add(device_id)
        for device_id in list(self._s.devices):
            if device_id not in seen:
                self.stage_removal(device_id, batch)

    def on_model(self, obj: dict[str, Any], *, deleted: bool, batch: Batch) -> None:
        key = object_id(obj)
        if key is None:
            return
        if deleted:
            if key not in self._s.models or not self._keep(key, batch):
                self._s.models.pop(key, None)
                self._objects.pop(key, None)
            return
        if key in self.kept:
            self.kept.discard(key)
            batch.writes.kept_models[key] = None
            log.warning("device model %s is back; its devices use it again", key)
        self._s.models[key] = property_specs(obj)
        self._objects[key] = obj
        # Devices that arrived before their model get their desired values now.
        for dev in self._s.devices.values():
            if dev.model == key:
                self.stage_desired(dev, batch, loud=True)

    def restore(self, kept: dict[str, dict[str, Any]], batch: Batch) -> None:
        """After a restart (Devices and models listed): take back the models kept before it
        that are still missing and used; forget the others."""
        for key, obj in kept.items():
            if key in self._s.models or not self._users(key):
                batch.writes.kept_models[key] = None
                continue
            self._s.models[key] = property_specs(obj)
            self._objects[key] = obj
            self._keep(key, batch)
            for dev in self._s.devices.values():
                if dev.model == key:
                    self.stage_desired(dev, batch, loud=False)

    def _users(self, key: str) -> list[str]:
        return sorted(d for d, dev in self._s.devices.items() if dev.model == key)

    def _keep(self, key: str, batch: Batch) -> bool:
        """Whether a model that vanished from the cache is kept (member devices use it)."""
        users = self._users(key)
        if not users:
            if key in self.kept:
                self.kept.discard(key)
                batch.writes.kept_models[key] = None
            return False
        if key not in self.kept:
            self.kept.add(key)
            if key in self._objects:
                batch.writes.kept_models[key] = self._objects[key]
            log.warning(
                "device model %s was deleted in the cloud but %s still use it: keeping the "
                "last one this edge had until it returns",
                key,
                ", ".join(users),
            )
        return True

    def on_device(self, obj: dict[str, Any], batch: Batch) -> str | None:
        """Stage a Device's membership and desired values; its id if it is a member."""
        s = self._s
        device_id = object_id(obj)
        meta = obj.get("metadata")
        spec = obj.get("spec")
        if device_id is None or not isinstance(meta, dict) or not isinstance(spec, dict):
            log.warning("ignoring a Device without metadata or spec")
            return None
        if spec.get("nodeName") != s.node:
            if device_id in s.devices:
                self.stage_removal(device_id, batch)
            return None
        namespace, name = device_id.split("/", 1)
        ref = spec.get("deviceModelRef")
        model_name = ref.get("name") if isinstance(ref, dict) else None
        dev = s.devices.get(device_id)
        if dev is None:
            dev = Device(
                record=DeviceRecord(device_id, name, namespace),
                topic_id=default_topic_id(namespace, name),
            )
            batch.writes.devices[device_id] = dev.record
            new = dev

            def add() -> None:
                s.devices[device_id] = new

            batch.installs.append(add)
            batch.fixed(*s.membership_update(added=[new]))
            log.info("device %s joined node %s", device_id, s.node)
        # model, generation and desired are the cloud's, not stored by the twin: set them now
        model = f"{namespace}/{model_name}" if isinstance(model_name, str) else ""
        generation = generation_of(meta)
        desired = desired_of(spec)
        # Every status write in the cloud re-delivers the Device; complain about its desired
        # values only when the spec changed, not on each re-delivery.
        loud = (model, generation, desired) != (dev.model, dev.generation, dev.desired)
        dev.model, dev.generation, dev.desired = model, generation, desired
        self.stage_desired(dev, batch, loud=loud)
        return device_id

    def stage_desired(self, dev: Device, batch: Batch, *, loud: bool) -> None:
        """Merge the spec's desired values (and removals) into expected."""
        s = self._s
        specs = s.models.get(dev.model)
        if specs is None:
            return  # checked once the model arrives
        now = s.clock()
        level = logging.WARNING if loud else logging.DEBUG
        changed: dict[str, tuple[TwinRecord | None, TwinRecord]] = {}
        names = (
            set(dev.desired) | set(dev.twins) | {n for (d, n) in batch.writes.twins if d == dev.id}
        )
        for name in sorted(names):
            before = s.current(batch, dev.id, name)
            old = before.twin if before else m.Twin()
            value = dev.desired.get(name)
            spec = specs.get(name)
            if value is not None:
                if spec is None:
                    log.log(level, "%s: desired %s is not in model %s", dev.id, name, dev.model)
                    continue
                reason = check_desired(spec, value)
                if reason:
                    log.log(level, "%s: ignoring the cloud's desired value: %s", dev.id, reason)
                    continue
                cand = m.cloud_desired(value, generation=dev.generation, timestamp=now)
            elif old.expected is not None and not old.expected.deleted:
                cand = m.cloud_removed(generation=dev.generation, timestamp=now)
            else:
                continue
            merged = m.merge(old.expected, cand)
            if merged is None or merged.same_as(old.expected):
                continue
            attr_type = spec.twin_type if spec else (before.attr_type if before else "")
            after = TwinRecord(
                dev.id,
                name,
                m.Twin(merged, old.actual),
                before.optional if before else None,
                attr_type,
            )
            batch.writes.twins[(dev.id, name)] = after
            e = old.expected
            if e is None or e.value != merged.value or e.deleted != merged.deleted:
                changed[name] = (before, after)
        if not changed:
            return
        twin = {n: s.twin_json(after) for n, (_, after) in changed.items()}
        s.stage_twin_upstream(batch, dev, now, twin)
        event_id = str(uuid.uuid4())
        for name, (before, after) in changed.items():
            batch.changed(dev.id, name, before, after, twin[name], event_id=event_id, timestamp=now)

    def stage_removal(self, device_id: str, batch: Batch) -> None:
        s = self._s
        dev = s.devices[device_id]
        batch.writes.removed_devices.add(device_id)
        batch.forget(device_id)

        def drop() -> None:
            s.devices.pop(device_id, None)

        batch.installs.append(drop)
        batch.fixed(*s.membership_update(removed=[dev]))
        log.info("device %s left node %s", device_id, s.node)
