"""The emulator's HTTP surface (:mod:`tests.support.kubeapi`): paths, verbs, bodies, discovery.

Plain functions: which resource, namespace, name and subresource a path names
(:func:`parse_path`), which Kubernetes verb a request is (:func:`verb_of`), reading JSON and
JSON-patch bodies, and the discovery documents (``/version``, ``/api``, ``/apis``, group
versions) for the resources in :data:`tests.support.kubeapi_model.RESOURCES` that are served
(a custom resource once its CustomResourceDefinition exists): enough for ``kubectl apply``.
"""

from __future__ import annotations

from aiohttp import web

from tests.support.kubeapi_model import RESOURCES, Obj, ResourceType
from tests.support.kubeapi_state import ApiError, ObjectState

MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
JSON_PATCH = "application/json-patch+json"
#: resource, namespace (or ""), name, subresource
Target = tuple[ResourceType, str, str | None, str | None]
_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}


def parse_path(path: str, state: ObjectState) -> Target | None:
    """``(resource, namespace or "", name, subresource)``; None for discovery paths."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) > 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) > 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = _BY_PATH.get((group, version, rest[2]))
        if inner is not None and inner.namespaced:
            ns, rest = rest[1], rest[2:]
    res = _BY_PATH.get((group, version, rest[0]))
    if res is None or len(rest) > 3 or not state.served(res):
        raise ApiError(404, "NotFound", f"the server could not find the resource {path}")
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    pod_stream = res.plural == "pods" and sub in ("log", "exec")
    if sub is not None and not pod_stream and (sub != "status" or not res.status):
        raise ApiError(404, "NotFound", f"no subresource {sub} on {res.plural}")
    return res, ns, name, sub


def discovery(path: str, state: ObjectState, port: int) -> Obj:
    """What ``/version``, ``/api``, ``/apis`` and the group-version paths answer."""
    groups: dict[str, list[ResourceType]] = {}
    for res in filter(state.served, RESOURCES):
        groups.setdefault(res.group_version, []).append(res)
    named = [gv for gv in groups if "/" in gv]
    if path == "/version":
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-emulator"}
    if path == "/api":
        where = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [where],
        }
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group(g) for g in named],
        }
    gv = path.removeprefix("/api/").removeprefix("/apis/")
    if gv in groups:
        return _resource_list(gv, groups[gv])
    for group_version in named:
        if group_version.split("/")[0] == gv:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(group_version)}
    raise ApiError(404, "NotFound", f"the server could not find the requested resource {path}")


def verb_of(method: str, target: Target | None, query: dict[str, str]) -> str:
    if method == "GET":
        if target is not None and target[2] is None:
            return "watch" if query.get("watch") in ("1", "true") else "list"
        return "get"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if method not in verbs:
        raise ApiError(405, "MethodNotAllowed", f"method {method} is not allowed")
    return verbs[method]


def json_response(body: Obj, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def _decoded(request: web.Request) -> object:
    """The request's JSON body; a 400 as the API server answers when it is not JSON."""
    try:
        return await request.json()
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"body is not JSON: {exc}") from exc


async def read_body(request: web.Request) -> Obj:
    if not request.can_read_body:
        return {}
    body = await _decoded(request)
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "body must be a JSON object")
    return body


async def json_patch_ops(request: web.Request) -> list[object]:
    ops = await _decoded(request)
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    return ops


def _group(group_version: str) -> Obj:
    name, version = group_version.split("/")
    entry = {"groupVersion": group_version, "version": version}
    return {"name": name, "versions": [entry], "preferredVersion": entry}


def _resource_list(group_version: str, resources: list[ResourceType]) -> Obj:
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    out: list[Obj] = []
    for res in resources:
        base = {"singularName": "", "kind": res.kind, "namespaced": res.namespaced}
        out.append(base | {"name": res.plural, "singularName": res.kind.lower(), "verbs": verbs})
        if res.status:
            out.append(base | {"name": f"{res.plural}/status", "verbs": ["get", "patch", "update"]})
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": out,
    }
