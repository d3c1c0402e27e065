"""Kubernetes ``core/v1`` Events: the shape every side reads, and the aggregation rule.

The cloud records what happened to the fleet (a node went offline, a pod failed, a twin report
was refused) as Kubernetes Events; ``edgectl get events``/``describe`` and the fleet page read
them back through the admin API, and on a cluster they are real ``Event`` objects ``kubectl``
shows.

**One event per (object, reason, type, message, source), counted.** Kubernetes' recorder folds
repeats of the same event into one object whose ``count`` grows and whose ``lastTimestamp``
moves; a flapping node therefore costs one row, not one per flap. The folding key is the
event's name (:func:`event_name`): a hash of those fields, so every replica and every restart
names the same happening the same way, and storing is an upsert on ``(namespace, name)``.

:class:`EventLog` is the pure, bounded in-memory version of that rule (retention window and a
count cap), used where the events live in memory and by tests as the reference behaviour.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventType = Literal["Normal", "Warning"]
#: ``source.component`` of every event the cloud records
CLOUD_COMPONENT = "edgebridge-cloudhub"
#: Where cluster-scoped objects' (nodes') events live, as Kubernetes does.
DEFAULT_NAMESPACE = "default"

#: Reasons, in Kubernetes' words where Kubernetes has one.
NODE_ONLINE = "NodeReady"
NODE_OFFLINE = "NodeNotReady"
POD_STARTED = "Started"
POD_FAILED = "Failed"
POD_BACKOFF = "BackOff"
DEVICE_ONLINE = "DeviceOnline"
DEVICE_OFFLINE = "DeviceOffline"
TWIN_REFUSED = "TwinRefused"

#: Events kept by default: an hour (Kubernetes' own event TTL) ...
DEFAULT_RETENTION_SECONDS = 3600.0
#: ... and at most this many distinct events (repeats only raise a count).
DEFAULT_MAX_EVENTS = 20_000


class ObjectReference(BaseModel):
    """``involvedObject``: what the event is about."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", defer_build=True)

    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None
    api_version: str | None = Field(default=None, alias="apiVersion")
    field_path: str | None = Field(default=None, alias="fieldPath")


class EventSource(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    component: str = CLOUD_COMPONENT
    host: str | None = None


class EventMeta(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", defer_build=True)

    name: str
    namespace: str = DEFAULT_NAMESPACE
    uid: str | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")


class Event(BaseModel):
    """A ``core/v1`` Event (the fields edgebridge writes; others are kept when read)."""

    model_config = ConfigDict(populate_by_name=True, extra="allow", defer_build=True)

    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    kind: Literal["Event"] = "Event"
    metadata: EventMeta
    involved_object: ObjectReference = Field(alias="involvedObject")
    reason: str = ""
    message: str = ""
    type: EventType = "Normal"
    count: int = Field(default=1, ge=1)
    #: RFC 3339 UTC; empty when another recorder wrote only ``eventTime``
    first_timestamp: str = Field(default="", alias="firstTimestamp")
    last_timestamp: str = Field(default="", alias="lastTimestamp")
    source: EventSource = Field(default_factory=EventSource)

    def to_object(self) -> dict[str, Any]:
        """The Kubernetes-shaped dict (camelCase, no ``None`` fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def rfc3339(unix: float) -> str:
    """``2024-05-01T12:00:00Z`` (seconds precision, as Kubernetes writes event times)."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp; 0.0 for anything unreadable."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (TypeError, ValueError):
        return 0.0


def event_name(ref: ObjectReference, reason: str, type: str, message: str, component: str) -> str:
    """The folding key: ``{object name}.{16 hex}``, the same for every repeat of a happening."""
    digest = hashlib.sha256(
        "\x00".join(
            (
                ref.kind,
                ref.namespace or "",
                ref.name,
                ref.uid or "",
                reason,
                type,
                message,
                component,
            )
        ).encode()
    ).hexdigest()[:16]
    return f"{ref.name}.{digest}"


def new_event(
    ref: ObjectReference,
    *,
    reason: str,
    message: str,
    type: EventType = "Normal",
    at: float,
    component: str = CLOUD_COMPONENT,
) -> Event:
    """One occurrence (``count`` 1) of a happening to ``ref`` at unix time ``at``."""
    stamp = rfc3339(at)
    return Event(
        metadata=EventMeta(
            name=event_name(ref, reason, type, message, component),
            namespace=ref.namespace or DEFAULT_NAMESPACE,
        ),
        involved_object=ref,
        reason=reason,
        message=message,
        type=type,
        first_timestamp=stamp,
        last_timestamp=stamp,
        source=EventSource(component=component),
    )


def fold(stored: Event | None, occurrence: Event) -> Event:
    """``stored`` with one more ``occurrence`` of it (or the occurrence if it is new).

    Counts add up (an occurrence may carry a count of its own when a batch folded repeats
    already); the first timestamp is the older one, the last the newer one.
    """
    if stored is None:
        return occurrence
    first = min(stored.first_timestamp, occurrence.first_timestamp)
    last = max(stored.last_timestamp, occurrence.last_timestamp)
    return stored.model_copy(
        update={
            "count": stored.count + occurrence.count,
            "first_timestamp": first,
            "last_timestamp": last,
        }
    )


def fold_all(occurrences: Iterable[Event]) -> list[Event]:
    """Repeats within one batch folded into one event each, in first-seen order."""
    out: dict[tuple[str, str], Event] = {}
    for ev in occurrences:
        key = (ev.metadata.namespace, ev.metadata.name)
        out[key] = fold(out.get(key), ev)
    return list(out.values())


def matches(
    ev: Event,
    *,
    namespace: str | None = None,
    kind: str | None = None,
    name: str | None = None,
) -> bool:
    """Whether ``ev`` passes a list filter (``None`` = any). Kinds compare case-insensitively,
    so ``node``, ``Node`` and ``nodes`` all name nodes."""
    if namespace is not None and ev.metadata.namespace != namespace:
        return False
    if kind is not None:
        want = kind.lower().removesuffix("s")
        if ev.involved_object.kind.lower() != want:
            return False
    return name is None or ev.involved_object.name == name


def keep(events: list[Event], *, now: float, retention: float, max_events: int) -> list[Event]:
    """What bounded retention keeps of ``events``: those last seen within ``retention``
    seconds, at most ``max_events`` of them (the most recently seen), oldest first."""
    cutoff = rfc3339(now - retention)
    live = [ev for ev in events if ev.last_timestamp >= cutoff]
    live.sort(key=lambda ev: ev.last_timestamp)
    return live[-max_events:] if max_events > 0 else []


class EventLog:
    """Events folded and bounded in memory (see the module notes). Pure: time is passed in."""

    def __init__(
        self,
        *,
        retention: float = DEFAULT_RETENTION_SECONDS,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        if retention <= 0 or max_events < 1:
            raise ValueError("retention must be positive and max_events at least 1")
        self.retention = retention
        self.max_events = max_events
        self._events: dict[tuple[str, str], Event] = {}

    def record(self, occurrence: Event, *, now: float) -> Event:
        """Fold ``occurrence`` in; returns the stored event (with its grown count)."""
        key = (occurrence.metadata.namespace, occurrence.metadata.name)
        stored = fold(self._events.pop(key, None), occurrence)
        self._events[key] = stored  # re-inserted: the dict's order is last-seen order
        if len(self._events) > self.max_events:
            del self._events[next(iter(self._events))]
        return stored

    def prune(self, *, now: float) -> None:
        cutoff = rfc3339(now - self.retention)
        for key in [k for k, ev in self._events.items() if ev.last_timestamp < cutoff]:
            del self._events[key]

    def list(self, **filters: str | None) -> list[Event]:
        """Matching events, oldest last-seen first (as ``kubectl get events`` sorts)."""
        return sorted(
            (ev for ev in self._events.values() if matches(ev, **filters)),
            key=lambda ev: ev.last_timestamp,
        )
