"""BindingIndex against a naive reference: replayed changes always equal a from-scratch answer."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudhub.edgecontroller.binding import STATUS_ONLY_QUIET, BindingIndex, Change
from wire.resources import key_of, resource_version_of

NODES = ["n0", "n1", "n2"]
NAMESPACES = ["default", "other"]
CONFIGMAPS = ["c0", "c1"]
SECRETS = ["s0", "s1"]
MODELS = ["m0", "m1"]

node_names = st.one_of(st.none(), st.sampled_from(NODES))


@st.composite
def pod_spec(draw: st.DrawFn) -> dict[str, Any]:
    """A pod spec referencing a random mix of ConfigMaps and Secrets in random places."""
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}], "volumes": []}
    for name in draw(st.lists(st.sampled_from(CONFIGMAPS), max_size=3)):
        where = draw(st.sampled_from(["volume", "projected", "env", "envFrom", "init"]))
        if where == "volume":
            spec["volumes"].append({"name": "v", "configMap": {"name": name}})
        elif where == "projected":
            spec["volumes"].append(
                {"name": "v", "projected": {"sources": [{"configMap": {"name": name}}]}}
            )
        elif where == "env":
            spec["containers"][0].setdefault("env", []).append(
                {"name": "E", "valueFrom": {"configMapKeyRef": {"name": name, "key": "k"}}}
            )
        elif where == "envFrom":
            spec["containers"][0].setdefault("envFrom", []).append({"configMapRef": {"name": name}})
        else:
            spec.setdefault("initContainers", []).append(
                {"name": "i", "image": "i", "envFrom": [{"configMapRef": {"name": name}}]}
            )
    for name in draw(st.lists(st.sampled_from(SECRETS), max_size=2)):
        where = draw(st.sampled_from(["volume", "pull", "env"]))
        if where == "volume":
            spec["volumes"].append({"name": "v", "secret": {"secretName": name}})
        elif where == "pull":
            spec.setdefault("imagePullSecrets", []).append({"name": name})
        else:
            spec["containers"][0].setdefault("env", []).append(
                {"name": "E", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}
            )
    node = draw(node_names)
    if node is not None:
        spec["nodeName"] = node
    return spec


def _meta(name: str, ns: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if ns is not None:
        meta["namespace"] = ns
    return meta


@st.composite
def any_object(draw: st.DrawFn) -> dict[str, Any]:
    """One object of any mirrored kind from a small universe of names (so they collide)."""
    kind = draw(st.sampled_from(["Node", "Pod", "ConfigMap", "Secret", "Device", "DeviceModel"]))
    # Mostly one namespace, so references usually resolve and collide.
    ns = draw(st.sampled_from(NAMESPACES[:1] * 3 + NAMESPACES[1:]))
    if kind == "Node":
        return {"kind": "Node", "metadata": _meta(draw(st.sampled_from(NODES)), None)}
    if kind == "Pod":
        name = draw(st.sampled_from(["p0", "p1", "p2"]))
        return {"kind": "Pod", "metadata": _meta(name, ns), "spec": draw(pod_spec())}
    if kind == "ConfigMap":
        return {"kind": kind, "metadata": _meta(draw(st.sampled_from(CONFIGMAPS)), ns)}
    if kind == "Secret":
        return {"kind": kind, "metadata": _meta(draw(st.sampled_from(SECRETS)), ns)}
    if kind == "Device":
        spec: dict[str, Any] = {"deviceModelRef": {"name": draw(st.sampled_from(MODELS))}}
        node = draw(node_names)
        if node is not None:
            spec["nodeName"] = node
        name = draw(st.sampled_from(["d0", "d1", "d2"]))
        return {"kind": kind, "metadata": _meta(name, ns), "spec": spec}
    return {"kind": kind, "metadata": _meta(draw(st.sampled_from(MODELS)), ns)}


operations = st.lists(
    st.tuples(st.sampled_from(["upsert", "upsert", "delete", "again"]), any_object()),
    min_size=15,
    max_size=50,
)


def naive_desired(objects: dict[str, dict[str, Any]], node: str) -> dict[str, tuple[str, Any]]:
    """What ``node`` must hold, computed from scratch by scanning every object."""
    out: dict[str, tuple[str, Any]] = {}

    def put(key: str) -> None:
        if key in objects:
            out[key] = (resource_version_of(objects[key]), objects[key])

    put(f"null/node/{node}")
    for key, obj in objects.items():
        kind = obj["kind"]
        if kind not in ("Pod", "Device") or obj["spec"].get("nodeName") != node:
            continue
        ns = key.split("/")[0]
        put(key)
        spec = obj["spec"]
        if kind == "Device":
            put(f"{ns}/devicemodel/{spec['deviceModelRef']['name']}")
            continue
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                put(f"{ns}/configmap/{vol['configMap']['name']}")
            if "secret" in vol:
                put(f"{ns}/secret/{vol['secret']['secretName']}")
            for src in vol.get("projected", {}).get("sources", []):
                put(f"{ns}/configmap/{src['configMap']['name']}")
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                ref = env["valueFrom"]
                if "configMapKeyRef" in ref:
                    put(f"{ns}/configmap/{ref['configMapKeyRef']['name']}")
                else:
                    put(f"{ns}/secret/{ref['secretKeyRef']['name']}")
            for env_from in container.get("envFrom", []):
                put(f"{ns}/configmap/{env_from['configMapRef']['name']}")
        for pull in spec.get("imagePullSecrets", []):
            put(f"{ns}/secret/{pull['name']}")
    return out


def replay(state: dict[str, dict[str, tuple[str, Any]]], changes: list[Change]) -> None:
    """Apply changes as an edge would, failing on removals of absent keys or redundant sends."""
    for ch in changes:
        held = state.setdefault(ch.node, {})
        if ch.resource_version is None:
            assert ch.key in held, f"spurious removal of {ch.key} from {ch.node}"
            del held[ch.key]
        else:
            assert held.get(ch.key) != (ch.resource_version, ch.obj), f"redundant send {ch}"
            held[ch.key] = (ch.resource_version, ch.obj)


def _sans_status(obj: dict[str, Any]) -> dict[str, Any]:
    """What a status write leaves alone: all but the status, version and managedFields."""
    skipped = ("resourceVersion", "managedFields")
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in skipped}
    return {k: v for k, v in obj.items() if k != "status"} | {"metadata": meta}


def _quiet(held: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """Devices are compared without status and version: status-only writes are not echoed."""
    return {
        k: _sans_status(o) if k.split("/")[1] in STATUS_ONLY_QUIET else (rv, o)
        for k, (rv, o) in held.items()
    }


@given(operations)
def test_replayed_changes_match_a_from_scratch_computation(ops: list[tuple[str, Any]]) -> None:
    """After any sequence of upserts and deletes, each node's replayed state equals desired()."""
    idx = BindingIndex()
    objects: dict[str, dict[str, Any]] = {}
    state: dict[str, dict[str, tuple[str, Any]]] = {}
    for counter, (op, obj) in enumerate(ops, start=1):
        key = str(key_of(obj))
        if op == "again":
            if key not in objects:
                continue
            changes = idx.upsert(objects[key])  # the very same object seen twice
        elif op == "upsert":
            obj["metadata"]["resourceVersion"] = str(counter)
            objects[key] = obj
            changes = idx.upsert(obj)
        else:
            objects.pop(key, None)
            changes = idx.delete(obj)
        replay(state, changes)
        expected = {node: naive_desired(objects, node) for node in NODES}
        for node in NODES:
            assert _quiet(state.get(node, {})) == _quiet(expected[node])
            assert idx.desired(node) == expected[node]
        for key in objects:
            assert idx.nodes_for(key) == {n for n in NODES if key in expected[n]}
