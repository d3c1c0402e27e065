"""The fleet as the page and the metrics see it: an in-memory index, kept by the fleet module.

Pure and synchronous: :meth:`FleetView.upsert`/:meth:`FleetView.delete` are fed the store's
list and watch events (with ``now``); reads are plain lookups. Counts the page's summary and
``/metrics`` show (pods by phase, devices by state, devices in sync) are kept as the objects
change, so a scrape or a page view of a 10,000-node fleet costs a dict read, not a walk.

Each reported value of a device property is remembered (the last :data:`SPARK_POINTS` numeric
ones) for the page's sparklines; the store keeps only the newest.
"""

from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from wire.twin import in_sync

#: reported values remembered per device property, for sparklines
SPARK_POINTS = 24

_Key = tuple[str, str]


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _key(obj: dict[str, Any]) -> _Key:
    meta = _meta(obj)
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


def _node_of(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("nodeName") or "")


def pod_phase(pod: dict[str, Any]) -> str:
    """``status.phase``, ``Pending`` for a pod no edge has reported on yet."""
    return str((pod.get("status") or {}).get("phase") or "Pending")


def device_state(device: dict[str, Any]) -> str:
    """``status.state``, ``unknown`` until a mapper reported one."""
    return str((device.get("status") or {}).get("state") or "unknown")


@dataclass
class _Device:
    obj: dict[str, Any]
    synced: bool
    #: property -> recent numeric reported values (oldest first)
    history: dict[str, deque[float]] = field(default_factory=dict)
    #: property -> the report timestamp of the last value remembered (a report seen again,
    #: in another watch event of the device, is not a new point)
    stamps: dict[str, str] = field(default_factory=dict)


class FleetView:
    """Nodes, pods and devices by name, with their counts (see the module notes)."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.pods: dict[_Key, dict[str, Any]] = {}
        self._devices: dict[_Key, _Device] = {}
        self.pods_on: dict[str, set[_Key]] = {}
        self.devices_on: dict[str, set[_Key]] = {}
        self.pod_phases: Counter[str] = Counter()
        self.device_states: Counter[str] = Counter()
        self.devices_in_sync = 0
        self._sorted_nodes: list[str] | None = None
        self._sorted_pods: list[_Key] | None = None

    # -- feeding -------------------------------------------------------------------------------

    @staticmethod
    def key_of(typ: str, obj: dict[str, Any]) -> _Key:
        """Identity of ``obj`` in the view (``("", name)`` for nodes)."""
        if typ == "node":
            return ("", str(_meta(obj).get("name") or ""))
        return _key(obj)

    def get(self, typ: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The object stored under ``obj``'s name (its previous state), if any."""
        if typ == "node":
            return self.nodes.get(str(_meta(obj).get("name") or ""))
        if typ == "pod":
            return self.pods.get(_key(obj))
        dev = self._devices.get(_key(obj))
        return dev.obj if dev is not None else None

    def replace_pod(self, pod: dict[str, Any]) -> bool:
        """Store a new version of a known pod if its status and node are as before (the usual
        update: labels, annotations): nothing the page counts or an Event tells moves.

        False, storing nothing, for any other pod (:meth:`upsert` and the event rules then).
        """
        meta, spec = pod.get("metadata"), pod.get("spec")
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            return False
        key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
        old = self.pods.get(key)
        # (a pod is in pods_on under the node it was stored with: its spec is not read)
        if old is None or key not in self.pods_on.get(str(spec.get("nodeName") or ""), ()):
            return False
        old_status, new_status = old.get("status"), pod.get("status")
        if old_status is not new_status and old_status != new_status:
            return False
        self.pods[key] = pod
        return True

    def upsert(self, typ: str, obj: dict[str, Any]) -> None:
        if typ == "node":
            name = str(_meta(obj).get("name") or "")
            if name not in self.nodes:
                self._sorted_nodes = None
            self.nodes[name] = obj
            return
        if typ == "pod":
            key = _key(obj)
            old = self.pods.get(key)
            if old is None:
                self._sorted_pods = None
            elif _node_of(old) == _node_of(obj) and pod_phase(old) == pod_phase(obj):
                self.pods[key] = obj  # the usual update: no count or index moves
                return
        self.delete(typ, obj, keep_history=True)
        if typ == "pod":
            key = _key(obj)
            self.pods[key] = obj
            self.pods_on.setdefault(_node_of(obj), set()).add(key)
            self.pod_phases[pod_phase(obj)] += 1
        elif typ == "device":
            key = _key(obj)
            dev = self._devices.get(key) or _Device(obj, False)
            dev.obj = obj
            dev.synced = in_sync(obj)
            self._devices[key] = dev
            _remember(dev, obj)
            self.devices_on.setdefault(_node_of(obj), set()).add(key)
            self.device_states[device_state(obj)] += 1
            self.devices_in_sync += dev.synced

    def delete(self, typ: str, obj: dict[str, Any], *, keep_history: bool = False) -> None:
        if typ == "node":
            name = str(_meta(obj).get("name") or "")
            if self.nodes.pop(name, None) is not None and not keep_history:
                self._sorted_nodes = None
        elif typ == "pod":
            key = _key(obj)
            old = self.pods.pop(key, None)
            if old is not None and not keep_history:
                self._sorted_pods = None
            if old is not None:
                self.pods_on.get(_node_of(old), set()).discard(key)
                self.pod_phases[pod_phase(old)] -= 1
        elif typ == "device":
            key = _key(obj)
            dev = self._devices.get(key)
            if dev is None:
                return
            if not keep_history:
                del self._devices[key]
            self.devices_on.get(_node_of(dev.obj), set()).discard(key)
            self.device_states[device_state(dev.obj)] -= 1
            self.devices_in_sync -= dev.synced

    # -- reading -------------------------------------------------------------------------------

    def node_names(self) -> list[str]:
        """Every node's name, sorted (kept sorted between additions and deletions)."""
        if self._sorted_nodes is None:
            self._sorted_nodes = sorted(self.nodes)
        return self._sorted_nodes

    def page_of(self, names: list[str], *, after: str = "", limit: int) -> list[str]:
        """Up to ``limit`` of the sorted ``names`` after ``after`` (a cursor: the last shown)."""
        start = bisect.bisect_right(names, after) if after else 0
        return names[start : start + limit]

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def devices(self, keys: list[_Key] | None = None) -> list[dict[str, Any]]:
        """Devices (all, sorted by namespace and name, or those of ``keys``)."""
        chosen = sorted(self._devices) if keys is None else sorted(keys)
        return [self._devices[k].obj for k in chosen if k in self._devices]

    def pod_keys(self) -> list[_Key]:
        """Every pod's (namespace, name), sorted (kept sorted between additions and removals)."""
        if self._sorted_pods is None:
            self._sorted_pods = sorted(self.pods)
        return self._sorted_pods

    def device_keys(self) -> list[_Key]:
        return sorted(self._devices)

    def history(self, key: _Key, prop: str) -> list[float]:
        dev = self._devices.get(key)
        if dev is None:
            return []
        return list(dev.history.get(prop, ()))

    def pods_of(self, node: str) -> list[dict[str, Any]]:
        return [self.pods[k] for k in sorted(self.pods_on.get(node, ())) if k in self.pods]

    def devices_of(self, node: str) -> list[dict[str, Any]]:
        return self.devices(list(self.devices_on.get(node, ())))


def _remember(dev: _Device, obj: dict[str, Any]) -> None:
    """Append each property's reported value if it is a new report and a number."""
    for twin in (obj.get("status") or {}).get("twins") or []:
        if not isinstance(twin, dict):
            continue
        reported = twin.get("reported") or {}
        try:
            value = float(str(reported.get("value")))
        except (TypeError, ValueError):
            continue
        stamp = str((reported.get("metadata") or {}).get("timestamp") or "")
        name = str(twin.get("propertyName"))
        if dev.stamps.get(name) == stamp:
            continue
        dev.stamps[name] = stamp
        dev.history.setdefault(name, deque(maxlen=SPARK_POINTS)).append(value)
