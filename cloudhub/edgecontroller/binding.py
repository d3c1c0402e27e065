"""Which objects reach which edge node, maintained incrementally. Pure and synchronous.

An edge node must get exactly what it needs to run offline and nothing else (it is not
trusted with other nodes' secrets): its own Node object, the pods scheduled on it, the
ConfigMaps and Secrets those pods reference, the devices bound to it and the DeviceModels
those devices use. :class:`BindingIndex` is fed every object change from the store and
answers with :class:`Change` records, one per (node, key) whose copy on that node must be
written or removed. The delivery layer turns them into messages; this module knows nothing of
sockets or the store.

Design notes:

- *Holders* (pods, devices) are bound by ``spec.nodeName``; *references* (configmaps,
  secrets, devicemodels) are bound to every node that has a holder referencing them. For each
  reference the index keeps a count per node of holders using it, so a ConfigMap used by two
  pods on one node leaves that node only when both pods are gone.
- A reference may name an object that does not exist yet. The count is kept anyway, so the
  object reaches its nodes the moment it is created.
- Every update touches only the changed object and the references of that one holder: dict
  lookups, no scans. Editing a ConfigMap used on 10,000 nodes does emit 10,000 changes, which
  is the work there is to do.
- Per node, :meth:`BindingIndex.desired` is kept as a set of keys, so a reconnecting edge's
  full state is read without computing anything.

Keys are edge keys (``str(ResourceKey)``): ``default/pod/p1``, ``null/node/edge-1``.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any, NamedTuple

from wire.resources import NULL_NAMESPACE, ResourceKey, key_of, resource_version_of

#: Types bound to a node by their own ``spec.nodeName``.
HOLDER_TYPES = frozenset({"pod", "device"})


class Change(NamedTuple):
    """What one node's copy of one object must become (a named tuple: one is built per
    watch event, in 40 % of a frozen dataclass's time)."""

    node: str
    #: edge key, ``str(wire.resources.ResourceKey)``: ``default/pod/p1``, ``null/node/edge-1``
    key: str
    #: the object's resourceVersion ("" if it has none); ``None`` = remove it from the node
    resource_version: str | None
    #: the current object; for removals the last one known
    obj: dict[str, Any]

    @property
    def removed(self) -> bool:
        return self.resource_version is None


#: Types whose status is written from edge reports: echoing every status write back down to
#: the edge that made it would double the traffic of a busy device (or of edged's pod status)
#: for nothing. The edge catches up on the newest version at its next inventory diff.
STATUS_ONLY_QUIET = frozenset({"device", "pod"})


#: metadata a status write changes by itself: the version, and the writer's managedFields
#: entry (its time), so they do not make a status-only change worth sending
_WRITE_META = frozenset({"resourceVersion", "managedFields"})
_TOP_SKIPPED = frozenset({"status", "metadata"})
_TOP_SKIPPED_SPEC_TOO = frozenset({"status", "metadata", "spec"})


def _differs(a: dict[str, Any], b: dict[str, Any], skipped: frozenset[str]) -> bool:
    """Whether ``a`` and ``b`` differ in a key outside ``skipped`` (no copies made)."""
    for key, value in b.items():
        if key not in skipped and (key not in a or a[key] != value):
            return True
    return any(key not in b and key not in skipped for key in a)


def _differs_sans_status(previous: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Whether anything but the status (and what a status write stamps) differs.

    Metadata first: that is where a non-status change (labels, annotations) usually is.
    Equal metadata holds an equal ``generation``, where there is one, which counts the spec's
    changes: then the spec is as it was and is not compared (a device's twin report, a status
    write, would otherwise walk the cold previous spec). Pods in Kubernetes have none.
    """
    old_meta, new_meta = previous.get("metadata") or {}, obj.get("metadata") or {}
    if _differs(old_meta, new_meta, _WRITE_META):
        return True
    if new_meta.get("generation") is not None:
        return _differs(previous, obj, _TOP_SKIPPED_SPEC_TOO)
    return _differs(previous, obj, _TOP_SKIPPED)


def _changed(type: str, previous: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Whether a node holding ``previous`` must be sent ``obj``.

    A new resourceVersion settles it without walking either object (the previous one is
    long out of the CPU's caches); only an equal one, or a status-only type, compares.
    """
    if type in STATUS_ONLY_QUIET:
        return _differs_sans_status(previous, obj)
    if resource_version_of(previous) != resource_version_of(obj):
        return True
    return previous != obj


class BindingIndex:
    """Objects by key, and for each node the keys that must be on it."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[str, Any]] = {}
        self._by_type: dict[str, set[str]] = {}
        #: holder key -> node it is bound to (only holders with a nodeName)
        self._holder_node: dict[str, str] = {}
        #: holder key -> reference keys it uses (only while bound)
        self._holder_refs: dict[str, frozenset[str]] = {}
        #: reference key -> node -> number of holders on that node using it
        self._users: dict[str, dict[str, int]] = {}
        #: node -> keys of existing objects bound to it
        self._by_node: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ queries

    def get(self, key: str) -> dict[str, Any] | None:
        """The last object seen under ``key``, bound or not."""
        return self._objects.get(key)

    def keys(self, type: str) -> set[str]:
        """Keys of every known object of ``type`` (to reconcile after a re-list)."""
        return set(self._by_type.get(type, ()))

    def desired(self, node: str) -> dict[str, tuple[str, dict[str, Any]]]:
        """Everything that must be on ``node``: key -> (resourceVersion, object)."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for key in self._by_node.get(node, ()):
            obj = self._objects[key]
            out[key] = (resource_version_of(obj), obj)
        return out

    def nodes_for(self, key: str) -> set[str]:
        """The nodes ``key`` is bound to now (empty if the object does not exist)."""
        if key not in self._objects:
            return set()
        namespace, type, name = key.split("/", 2)
        if type == "node" and namespace == NULL_NAMESPACE:
            return {name}
        if type in HOLDER_TYPES:
            node = self._holder_node.get(key)
            return {node} if node is not None else set()
        users = self._users.get(key)
        return set(users) if users else set()

    # ------------------------------------------------------------------ updates

    def upsert(
        self, obj: dict[str, Any], *, rkey: ResourceKey | None = None, key: str = ""
    ) -> list[Change]:
        """Record a created or changed object; the changes it causes on nodes.

        ``rkey``: ``key_of(obj)``, and ``key`` its ``str``, when the caller has them already.

        Raises:
            wire.errors.InvalidResource: not a kind edgebridge mirrors, or no name.
        """
        if rkey is None:
            rkey = key_of(obj)
        if not key:
            key = str(rkey)
        previous = self._objects.get(key)
        type = rkey.type
        if previous is not None and type in HOLDER_TYPES:
            bound = self._holder_node.get(key)
            if bound is not None and self._binds_as_before(
                type, rkey.namespace, key, bound, previous, obj
            ):
                # The common update (a pod edited in place): same node, same references, so
                # no binding moves and only the object itself may need sending.
                self._objects[key] = obj
                if not _changed(type, previous, obj):
                    return []
                return [self._add(bound, key, obj)]
        elif previous is not None:
            # A Node, ConfigMap, Secret or DeviceModel is bound by its name or by the holders
            # using it, never by its content: an update moves nothing, it is only sent.
            self._objects[key] = obj
            if not _changed(type, previous, obj):
                return []
            return [self._add(node, key, obj) for node in self.nodes_for(key)]
        node: str | None = None
        refs: frozenset[str] = frozenset()
        if type in HOLDER_TYPES:
            node, refs = _holder_binding(type, rkey.namespace or "default", obj)
        # Only this holder's old and new node can gain or lose one of its references.
        candidates = {n for n in (self._holder_node.get(key), node) if n is not None}
        affected = self._holder_refs.get(key, frozenset()) | refs
        before = self._snapshot(key, affected, candidates)

        self._objects[key] = obj
        self._by_type.setdefault(type, set()).add(key)
        if type in HOLDER_TYPES:
            self._rebind(key, node, refs)
        changed = previous is None or _changed(type, previous, obj)
        return self._diff(key, before, candidates, changed=changed, last=obj)

    def _binds_as_before(
        self,
        type: str,
        namespace: str | None,
        key: str,
        bound: str,
        previous: dict[str, Any],
        obj: dict[str, Any],
    ) -> bool:
        """Whether holder ``key``, bound to ``bound``, stays there with the same references.

        Read from the new object alone: the previous one is long out of the CPU's caches, and
        comparing the specs (Kubernetes gives pods no generation) walked all of it. The node
        is one lookup; the references are recomputed only where the generation (which counts
        spec changes: the embedded store bumps it on every one, Kubernetes for the spec fields
        that may change at all) does not vouch for them.
        """
        spec = obj.get("spec")
        if not isinstance(spec, dict) or spec.get("nodeName") != bound:
            return False
        if _same_generation(previous, obj):
            return True
        refs = self._holder_refs.get(key, frozenset())
        return _holder_references(type, namespace or "default", spec) == refs

    def delete(
        self, obj: dict[str, Any], *, rkey: ResourceKey | None = None, key: str = ""
    ) -> list[Change]:
        """Forget an object; the removals it causes. Unknown objects cause none.

        ``rkey``: ``key_of(obj)``, and ``key`` its ``str``, when the caller has them already.

        Raises:
            wire.errors.InvalidResource: not a kind edgebridge mirrors, or no name.
        """
        if rkey is None:
            rkey = key_of(obj)
        if not key:
            key = str(rkey)
        if key not in self._objects:
            return []
        old_node = self._holder_node.get(key)
        candidates = {old_node} if old_node is not None else set()
        affected = self._holder_refs.get(key, frozenset())
        before = self._snapshot(key, affected, candidates)

        del self._objects[key]
        typed = self._by_type[rkey.type]
        typed.discard(key)
        if not typed:
            del self._by_type[rkey.type]
        if rkey.type in HOLDER_TYPES:
            self._rebind(key, None, frozenset())
        return self._diff(key, before, candidates, changed=True, last=obj)

    # ------------------------------------------------------------------ internals

    def _bound_among(self, ref: str, candidates: set[str]) -> set[str]:
        """Which of ``candidates`` reference ``ref`` has now (without copying all its users)."""
        if ref not in self._objects:
            return set()
        users = self._users.get(ref)
        if not users:
            return set()
        return {node for node in candidates if node in users}

    def _snapshot(
        self, key: str, refs: frozenset[str], candidates: set[str]
    ) -> dict[str, set[str]]:
        before = {key: self.nodes_for(key)}
        for ref in refs:
            before[ref] = self._bound_among(ref, candidates)
        return before

    def _rebind(self, key: str, node: str | None, refs: frozenset[str]) -> None:
        """Move holder ``key``'s reference counts from its old node to ``node``."""
        old_node = self._holder_node.pop(key, None)
        old_refs = self._holder_refs.pop(key, frozenset())
        if old_node is not None:
            for ref in old_refs:
                users = self._users[ref]
                users[old_node] -= 1
                if not users[old_node]:
                    del users[old_node]
                    if not users:
                        del self._users[ref]
        if node is not None:
            self._holder_node[key] = node
            self._holder_refs[key] = refs
            for ref in refs:
                users = self._users.setdefault(ref, {})
                users[node] = users.get(node, 0) + 1

    def _diff(
        self,
        key: str,
        before: dict[str, set[str]],
        candidates: set[str],
        *,
        changed: bool,
        last: dict[str, Any],
    ) -> list[Change]:
        """Changes turning ``before`` into the current bindings, in a helpful order.

        Removals of the object itself come first and its writes last, with its references in
        between, so an edge gets a pod's ConfigMaps before the pod and drops the pod before
        them.
        """
        changes: list[Change] = []
        after_key = self.nodes_for(key)
        for node in before[key] - after_key:
            changes.append(self._remove(node, key, self._objects.get(key, last)))
        for ref, was in before.items():
            if ref == key:
                continue
            now = self._bound_among(ref, candidates)
            ref_obj = self._objects.get(ref)
            for node in was - now:
                # `was` non-empty means the object existed then; it may be gone only if it
                # was `key` itself, which is handled above.
                changes.append(self._remove(node, ref, ref_obj or last))
            if ref_obj is not None:
                for node in now - was:
                    changes.append(self._add(node, ref, ref_obj))
        obj = self._objects.get(key)
        if obj is not None:
            for node in after_key if changed else after_key - before[key]:
                changes.append(self._add(node, key, obj))
        return changes

    def _add(self, node: str, key: str, obj: dict[str, Any]) -> Change:
        keys = self._by_node.get(node)
        if keys is None:
            keys = self._by_node[node] = set()
        keys.add(key)
        return Change(node, key, resource_version_of(obj), obj)

    def _remove(self, node: str, key: str, obj: dict[str, Any]) -> Change:
        keys = self._by_node.get(node)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_node[node]
        return Change(node, key, None, obj)


def _holder_binding(
    type: str, namespace: str, obj: dict[str, Any]
) -> tuple[str | None, frozenset[str]]:
    """A pod's or device's node (``None`` if unscheduled) and the keys it references.

    Objects may come from a Kubernetes cluster without passing our validation, so every
    field is type-checked and anything malformed is simply not a reference.
    """
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return None, frozenset()
    node = spec.get("nodeName")
    if not isinstance(node, str) or not node:
        # An unscheduled holder pulls nothing anywhere, so its references are not counted.
        return None, frozenset()
    return node, _holder_references(type, namespace, spec)


def _holder_references(type: str, namespace: str, spec: dict[str, Any]) -> frozenset[str]:
    """The keys a bound pod's or device's ``spec`` references."""
    if type == "pod":
        return _pod_references(namespace, spec)
    model = _name(spec.get("deviceModelRef"), "name")
    return frozenset({f"{namespace}/devicemodel/{model}"} if model else ())


#: the pod spec's lists of containers (each may take ConfigMaps and Secrets into its env)
_CONTAINER_FIELDS = ("containers", "initContainers", "ephemeralContainers")
_NO_REFERENCES: frozenset[str] = frozenset()


def _pod_references(namespace: str, spec: dict[str, Any]) -> frozenset[str]:
    """The ConfigMaps and Secrets a pod's ``spec`` uses (volumes, env, envFrom, pull secrets).

    Run for every update of a pod without a generation: plain loops (no generator per list),
    and the sets are filled only from what names a reference (most env entries are values).
    """
    configmaps: set[str] = set()
    secrets: set[str] = set()
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for volume in volumes:
            if not isinstance(volume, dict):
                continue
            configmaps.add(_name(volume.get("configMap"), "name"))
            secrets.add(_name(volume.get("secret"), "secretName"))
            projected = volume.get("projected")
            if isinstance(projected, dict):
                for source in _dicts(projected.get("sources")):
                    configmaps.add(_name(source.get("configMap"), "name"))
                    secrets.add(_name(source.get("secret"), "name"))
    for field in _CONTAINER_FIELDS:
        containers = spec.get(field)
        if not isinstance(containers, list):
            continue
        for container in containers:
            if not isinstance(container, dict):
                continue
            envs = container.get("env")
            if isinstance(envs, list) and _any_value_from(envs):
                for env in envs:
                    if isinstance(env, dict) and "valueFrom" in env:  # most hold a value
                        value_from = env["valueFrom"]
                        if isinstance(value_from, dict):
                            configmaps.add(_name(value_from.get("configMapKeyRef"), "name"))
                            secrets.add(_name(value_from.get("secretKeyRef"), "name"))
            env_from = container.get("envFrom")
            if env_from is not None:
                for source in _dicts(env_from):
                    configmaps.add(_name(source.get("configMapRef"), "name"))
                    secrets.add(_name(source.get("secretRef"), "name"))
    pull_secrets = spec.get("imagePullSecrets")
    if pull_secrets is not None:
        for pull_secret in _dicts(pull_secrets):
            secrets.add(_name(pull_secret, "name"))
    if not configmaps and not secrets:
        return _NO_REFERENCES
    return frozenset(
        [f"{namespace}/configmap/{name}" for name in configmaps if name]
        + [f"{namespace}/secret/{name}" for name in secrets if name]
    )


_value_from = operator.methodcaller("get", "valueFrom")


def _any_value_from(envs: list[Any]) -> bool:
    """Whether an env entry may take its value from a reference (``valueFrom``).

    Most entries hold a value: asked in C of every entry, so the walk over them runs only
    for a list that has one. An entry that is not a mapping (no ``get``) sends the list to
    the walk too, which skips it.
    """
    try:
        return any(map(_value_from, envs))
    except AttributeError:
        return True


def _same_generation(previous: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Both versions carry the same ``metadata.generation``, which counts spec changes: the
    embedded store bumps it on every one, and so does Kubernetes for the spec fields that
    may change at all (a pod's node and references may not, once it is bound)."""
    gen = (obj.get("metadata") or {}).get("generation")
    return gen is not None and (previous.get("metadata") or {}).get("generation") == gen


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def _name(ref: Any, field: str) -> str:
    """``ref[field]`` if ``ref`` is a mapping holding a non-empty string there, else ``""``."""
    if isinstance(ref, dict):
        name = ref.get(field)
        if isinstance(name, str):
            return name
    return ""
