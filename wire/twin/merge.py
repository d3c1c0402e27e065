"""The twin's versions and merge rules, pure: how two versions of one property value combine.

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
upstream messages (``edgecore.devicetwin.uplink``, via :func:`wire.twin.upstream.json_side`) and
the cloud's ``Device.status`` (``cloudhub.devicecontroller.twins``, via
:class:`wire.twin.upstream.EdgeUpdatedIn`) all keep the greater value by this one order;
``tests/wire/test_twin_convergence.py`` holds them equal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
