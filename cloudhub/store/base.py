"""The seam between cloudhub and its source of truth.

Two implementations sit behind it: :mod:`cloudhub.store.embedded` (SQLite ``store.db``, the
default) and a Kubernetes backend. The rest of cloudhub sees only this interface.

Objects are Kubernetes-shaped dicts (``apiVersion``, ``kind``, ``metadata``, ``spec``,
``status``...). Types are KubeEdge's lower-case resource types: ``node``, ``pod``,
``configmap``, ``secret``, ``device``, ``devicemodel`` (see :data:`wire.resources.KIND_TO_TYPE`).
``resourceVersion`` is an opaque string to callers: compare for equality only.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from wire.codec import parse_json

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
#: What an apply did to one object, as ``kubectl apply`` words it.
Action = Literal["created", "configured", "unchanged"]


@dataclass(frozen=True, slots=True)
class Applied:
    """One object as :meth:`ObjectStore.apply` left it."""

    #: new, changed, or identical to what was stored (then nothing was written)
    action: Action
    #: the stored object as JSON text: the admin API splices it into its answer as it is
    body: str

    @property
    def object(self) -> dict[str, Any]:
        """The stored object, decoded from :attr:`body`: a private copy on every access.

        Decoded on demand because the busiest caller, the admin API, only needs the text.
        """
        obj: dict[str, Any] = parse_json(self.body)
        return obj


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change, as a Kubernetes watch reports it."""

    type: EventType
    #: the object after the change (for DELETED: the last state, with the deletion's RV)
    object: dict[str, Any]
    #: ``object`` as JSON text exactly as the store holds it, when the store has it: the hub
    #: sends it to edges as it is instead of encoding the object again
    body: str | None = None
    #: another event is ready now (a hint: a consumer may batch what it does until the last)
    more: bool = False


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """Merge ``status`` (top-level keys replace) into one object's status."""

    type: str
    namespace: str | None
    name: str
    status: dict[str, Any]


class ObjectStore(Protocol):
    """What cloudhub needs from a source of truth."""

    async def start(self) -> None:
        """Open connections/files. Called once before anything else."""

    async def close(self) -> None:
        """Release everything. Safe to call twice."""

    async def list(self, type: str) -> tuple[builtins.list[dict[str, Any]], str]:
        """All objects of ``type`` in every namespace, and the list's resourceVersion."""

    def watch(self, type: str, since: str) -> AsyncIterator[WatchEvent]:
        """Changes of ``type`` after resourceVersion ``since``, forever.

        Raises:
            wire.errors.Gone: ``since`` is older than the history kept; re-list.
        """

    async def get(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        """One object.

        Raises:
            wire.errors.NotFound: no such object.
        """

    async def apply(
        self, objects: builtins.list[dict[str, Any]], *, owned: bool = False
    ) -> builtins.list[Applied]:
        """Validate every object, then create or replace each one, all or nothing.

        Validation happens here and only here (:func:`wire.manifests.validate`, then the
        desired values of Devices against their DeviceModel, see
        :func:`cloudhub.store.admission.check_desired`): callers hand objects as they got them.
        The store assigns ``metadata.uid`` (kept across updates), ``resourceVersion`` and
        ``creationTimestamp``. An update that carries no ``status`` keeps the stored one, and
        an object equal to the stored one is left as it is (``unchanged``).

        Args:
            objects: Kubernetes-shaped dicts, in the order to apply them.
            owned: the caller hands ``objects`` over: they were just decoded from JSON (so
                they hold nothing but JSON types) and nothing else holds them. The store then
                normalises them in place instead of copying them, and encodes them with
                :func:`wire.codec.dump_plain_json`. Otherwise the caller's dicts are left
                untouched.

        Returns:
            What was done to each object, and the object as stored, in the given order.

        Raises:
            wire.errors.InvalidObject: an object is not valid; nothing was written.
        """

    async def delete(self, type: str, namespace: str | None, name: str) -> dict[str, Any]:
        """Delete one object and return its last state.

        Raises:
            wire.errors.NotFound: no such object.
        """

    async def update_status(
        self, type: str, namespace: str | None, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge ``status`` into the object's status (top-level keys replace) and bump its RV.

        A merge that changes nothing writes nothing.

        Raises:
            wire.errors.NotFound: no such object.
        """

    async def update_statuses(
        self, updates: Sequence[StatusUpdate]
    ) -> builtins.list[dict[str, Any] | None]:
        """Many status merges at once (one transaction where the backend has them).

        Returns the objects after the merge, ``None`` for objects that do not exist.
        """


#: ``compute(index, object or None) -> status to merge or None``, see :class:`StatusMerger`
StatusCompute = Callable[[int, dict[str, Any] | None], dict[str, Any] | None]


@runtime_checkable
class StatusMerger(Protocol):
    """A store that reads, merges and writes many statuses in one transaction (the embedded
    one): a batch costs one commit, with no read per object before it."""

    async def merge_statuses(
        self, type: str, keys: Sequence[tuple[str | None, str]], compute: StatusCompute
    ) -> builtins.list[dict[str, Any] | None]: ...


#: ``(type, namespace, name)`` of an object, as :meth:`ObjectStore.get` takes them
ObjectRef = tuple[str, str | None, str]


@runtime_checkable
class BulkReader(Protocol):
    """A store that tells which of many objects exist in one read (the embedded one), so a
    check over a whole apply batch costs one round trip, not one per object."""

    async def existing(self, refs: Sequence[ObjectRef]) -> set[ObjectRef]: ...
