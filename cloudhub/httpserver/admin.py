"""The admin API under ``/admin/v1/``: what ``edgectl`` talks to.

Endpoints (all JSON, all behind ``Authorization: Bearer <admin.token>``)::

    POST   /admin/v1/tokens                    {"ttl_seconds": 86400, "uses": 1, "node": "gw-1"}
                                               -> {"token": ..., "expires_at": ...}
    POST   /admin/v1/apply                     {"objects": [...]}    -> {"objects": [...], ...}
    GET    /admin/v1/version                   -> {"version", "python", "platform", "store"}
    GET    /admin/v1/{type}[?namespace=NS][&labelSelector=SEL]
                                               -> {"kind": "List", "items": [...]}
    GET    /admin/v1/{type}?watch=true[&namespace=][&labelSelector=][&resourceVersion=]
                                               -> JSON lines {"type", "object"} (see .watch)
    GET    /admin/v1/{type}/{namespace}/{name} -> the object ("_" = cluster-scoped)
    DELETE /admin/v1/{type}/{namespace}/{name} -> the deleted object

``type`` is a plural resource name (:data:`wire.kinds.KINDS`): nodes, pods, configmaps, secrets,
devices, devicemodels, and ``events`` (recorded by cloudhub, read-only: ``GET /admin/v1/events
[?namespace=NS][&fieldSelector=involvedObject.kind=Node,involvedObject.name=N]``).

Design notes:

- **It is the same API in embedded and Kubernetes mode**: handlers only use
  :class:`~cloudhub.store.base.ObjectStore`, so edgectl cannot tell the difference.
- **Apply is all or nothing, and validated in one place.** The handler hands the objects it
  parsed to the store's ``apply`` (:meth:`~cloudhub.store.base.ObjectStore.apply`), which
  validates them, writes all or none, says per object what it did
  (created/configured/unchanged) and hands back each stored object's JSON text, which the
  response splices in instead of encoding every object again.
- **Node state is an overlay, not stored data.** Whether a node is connected is known only to
  the websocket hub, changes every few seconds, and would churn the store if written there.
  Reads of nodes through this API replace the ``Ready`` condition with what the hub's
  :class:`~cloudhub.routes.Presence` says right now.
- **Errors are ``{"error": "one line"}``** with a meaningful status code, mapped in one place
  (:func:`admin_middleware`) from the :mod:`wire.errors` tree.
- The admin credential is compared in constant time; it is never logged. Nor are join tokens.
- **Deleting a node revokes it.** ``DELETE /admin/v1/nodes/_/NAME`` first revokes every
  certificate the node was issued (which closes its live link), then deletes the Node: if the
  second step fails the node is locked out, never left with a working certificate and no Node.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pydantic_core
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloudhub.auth.issuer import Revoker
from cloudhub.fleet.eventstore import EventStore
from cloudhub.httpserver.join import bearer_token
from cloudhub.httpserver.references import dangling_references, refuse_used_model
from cloudhub.httpserver.watch import WatchStreams, WatchView
from cloudhub.pki import Authority, is_valid_node_name
from cloudhub.store.base import Action, Applied, ObjectStore
from cloudhub.store.embedded import EmbeddedStore
from wire.admin import VersionInfo
from wire.errors import (
    AuthError,
    BridgeError,
    Conflict,
    Gone,
    InvalidObject,
    InvalidResource,
    InvalidSelector,
    NotFound,
    StoreError,
)
from wire.kinds import BY_PLURAL, PLURALS, ApiKind
from wire.references import Reference
from wire.resources import CLUSTER_SCOPED_TYPES
from wire.selectors import parse_selector

if TYPE_CHECKING:
    from cloudhub.routes import NodePresence, Presence

logger = logging.getLogger(__name__)

ADMIN_PREFIX = "/admin/v1/"
#: Path segment standing for "no namespace" (cluster-scoped objects such as nodes).
CLUSTER_NAMESPACE = "_"
#: Default join token lifetime, seconds (KubeEdge's tokens live 24 h).
DEFAULT_TOKEN_TTL = 24 * 3600.0
READY = "Ready"

M = TypeVar("M", bound=BaseModel)


# -- request/response models -----------------------------------------------------------------


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: lifetime of the join token, seconds
    ttl_seconds: float = Field(default=DEFAULT_TOKEN_TTL, gt=0, allow_inf_nan=False)
    #: joins the token admits; None = any number until it expires
    uses: int | None = Field(default=None, ge=1)
    #: the only node name the token admits; None = any
    node: str | None = None


class TokenResponse(BaseModel):
    token: str
    #: RFC 3339 UTC time the token stops working
    expires_at: str
    uses: int | None = None
    node: str | None = None


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objects: list[dict[str, Any]]


class ApplyResponse(BaseModel):
    #: the stored objects, in the order given
    objects: list[dict[str, Any]]
    #: per object: new, changed, or identical to what was stored
    actions: list[Action]
    #: accepted, but worth telling: references to objects that do not exist
    warnings: list[str] = Field(default_factory=list)


class ObjectList(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    api_version: str = Field(default="v1", alias="apiVersion")
    kind: Literal["List"] = "List"
    metadata: dict[str, Any] = Field(default_factory=dict)
    items: list[dict[str, Any]]


class ErrorResponse(BaseModel):
    error: str


# -- helpers ---------------------------------------------------------------------------------


def rfc3339(unix: float) -> str:
    """``2024-05-01T12:00:00Z`` for a unix time (seconds precision, as Kubernetes writes)."""
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def overlay_presence(node: dict[str, Any], presence: NodePresence) -> dict[str, Any]:
    """A copy of ``node`` whose ``Ready`` condition reflects the node's link right now.

    ``status`` is ``"True"`` while the node is connected and ``"Unknown"`` otherwise (what
    Kubernetes' node controller reports for a node that stopped posting status). Other
    conditions are kept.
    """
    condition: dict[str, Any] = {
        "type": READY,
        "status": "True" if presence.online else "Unknown",
        "reason": "EdgeConnected" if presence.online else "EdgeDisconnected",
        "message": (
            "edge node is connected to cloudhub"
            if presence.online
            else "edge node has no link to cloudhub"
        ),
    }
    if presence.last_seen is not None:
        condition["lastHeartbeatTime"] = rfc3339(presence.last_seen)
    out = dict(node)
    status = dict(out.get("status") or {})
    others = [
        c
        for c in status.get("conditions") or []
        if not (isinstance(c, dict) and c.get("type") == READY)
    ]
    status["conditions"] = [condition, *others]
    out["status"] = status
    return out


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(model.model_dump(mode="json", by_alias=True), status=status)


def _error(status: int, message: str) -> web.Response:
    one_line = " ".join(message.split())
    return _json(ErrorResponse(error=one_line), status=status)


async def _parse(request: web.Request, model: type[M]) -> M:
    body = await request.read()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidObject(f"invalid request: {where}: {first['msg']}") from exc


async def _parse_objects(request: web.Request) -> list[dict[str, Any]]:
    """The ``objects`` of an :class:`ApplyRequest` body.

    The well-formed case skips the model: ``from_json`` is the same parser
    ``model_validate_json`` runs (identical results, errors included), minus building a
    validated copy of a list of thousands of dicts; anything not exactly
    ``{"objects": [{...}, ...]}`` goes through the model for its error message.
    """
    body = await request.read()
    try:
        # Keys repeat across objects, values mostly do not: caching only keys is faster.
        doc = pydantic_core.from_json(body or b"{}", cache_strings="keys")
    except ValueError:
        doc = None
    if isinstance(doc, dict) and len(doc) == 1:
        objects = doc.get("objects")
        if isinstance(objects, list) and all(type(o) is dict for o in objects):
            return objects
    try:
        return ApplyRequest.model_validate_json(body or b"{}").objects
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidObject(f"invalid request: {where}: {first['msg']}") from exc


#: wire error class -> HTTP status; the first match wins, so subclasses come first.
_STATUS_OF: list[tuple[type[BridgeError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (InvalidObject, 400),
    (InvalidResource, 400),
    (InvalidSelector, 400),
    (AuthError, 403),
    (StoreError, 503),
]


def admin_middleware(authority: Authority) -> Middleware:
    """Guards ``/admin/`` paths with the admin token and turns failures into JSON errors.

    Other paths (the join endpoints) pass through untouched.
    """

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/admin" and not request.path.startswith("/admin/"):
            return await handler(request)
        presented = bearer_token(request)
        if presented is None or not authority.check_admin_token(presented):
            return _error(401, "missing or wrong admin token")
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            if exc.status in (404, 405) and request.match_info.route.resource is None:
                return _error(exc.status, f"no such endpoint: {request.method} {request.path}")
            text = exc.text or ""
            message = exc.reason if text.startswith(f"{exc.status}:") or not text else text
            return _error(exc.status, message)
        except BridgeError as exc:
            status = next((s for cls, s in _STATUS_OF if isinstance(exc, cls)), 500)
            if status >= 500:
                logger.error("admin %s %s failed: %s", request.method, request.path, exc)
            return _error(status, str(exc))
        except Exception:
            logger.exception("admin %s %s crashed", request.method, request.path)
            return _error(500, "internal error (see cloudhub's log)")

    return guard


# -- handlers --------------------------------------------------------------------------------


class AdminApi:
    """The ``/admin/v1/`` handlers, bound to their dependencies."""

    def __init__(
        self,
        *,
        authority: Authority,
        store: ObjectStore,
        presence: Presence,
        revoker: Revoker,
        events: EventStore | None = None,
    ) -> None:
        self._events = events
        self._authority = authority
        self._store = store
        self._presence = presence
        self._revoker = revoker
        self.streams = WatchStreams()

    def register(self, router: web.UrlDispatcher) -> None:
        p = ADMIN_PREFIX
        router.add_post(p + "tokens", self.create_token)
        router.add_post(p + "apply", self.apply)
        router.add_get(p + "version", self.version, allow_head=False)
        router.add_get(p + "events", self.list_events, allow_head=False)
        router.add_get(p + "events/{namespace}/{name}", self.get_event, allow_head=False)
        router.add_get(p + "{plural}", self.list_objects, allow_head=False)
        router.add_get(p + "{plural}/{namespace}/{name}", self.get_object, allow_head=False)
        router.add_delete(p + "{plural}/{namespace}/{name}", self.delete_object)

    async def create_token(self, request: web.Request) -> web.Response:
        req = await _parse(request, TokenRequest)
        if req.node is not None and not is_valid_node_name(req.node):
            raise InvalidObject(f"invalid node name {req.node!r}: must be a DNS-1123 subdomain")
        now = dt.datetime.now(dt.UTC).timestamp()
        token = self._authority.issue_token(req.ttl_seconds, now=now, uses=req.uses, node=req.node)
        logger.info(
            "issued a join token valid for %.0f s (%s use(s), node %s)",
            req.ttl_seconds,
            "unlimited" if req.uses is None else req.uses,
            req.node or "any",
        )
        return _json(
            TokenResponse(
                token=token,
                expires_at=rfc3339(now + req.ttl_seconds),
                uses=req.uses,
                node=req.node,
            )
        )

    async def apply(self, request: web.Request) -> web.Response:
        objects = await _parse_objects(request)
        if not objects:
            raise InvalidObject("nothing to apply: 'objects' is empty")
        # Just parsed from this request's body: nothing else holds them (owned).
        applied = await self._store.apply(objects, owned=True)
        logger.debug("applied %d object(s)", len(applied))
        return _applied_response(applied, await dangling_references(self._store, objects))

    async def version(self, request: web.Request) -> web.Response:
        store = "embedded" if isinstance(self._store, EmbeddedStore) else "kubernetes"
        return _json(VersionInfo(store=store))

    async def list_objects(self, request: web.Request) -> web.StreamResponse:
        kind = _kind_of(request)
        typ = kind.type
        namespace = (request.query.get("namespace") or None) if kind.namespaced else None
        selector = parse_selector(request.query.get("labelSelector", ""))
        if request.query.get("watch", "").lower() in ("true", "1"):
            present = self._presenter(typ)
            return await self.streams.serve(
                request,
                store=self._store,
                kind=kind,
                view=WatchView(namespace=namespace, selector=selector),
                since=request.query.get("resourceVersion", ""),
                present=present,
                online=self._online if typ == "node" else None,
            )
        items, rv = await self._store.list(typ)
        if namespace is not None:
            items = [o for o in items if (o.get("metadata") or {}).get("namespace") == namespace]
        if selector.requirements:
            items = [o for o in items if selector.matches_object(o)]
        items.sort(key=_sort_key)
        items = [self._present(typ, o) for o in items]
        return _json(ObjectList(items=items, metadata={"resourceVersion": rv}))

    async def list_events(self, request: web.Request) -> web.Response:
        """Recorded Events, least recently seen first; filters: ``namespace``, and the
        involved object's ``kind``/``name`` as query parameters or as kubectl's
        ``fieldSelector=involvedObject.kind=Node,involvedObject.name=edge-1``."""
        filters = _event_filters(request.query)
        events = await self._recorded().list(**filters)
        items = [ev.to_object() for ev in events]
        return _json(ObjectList(kind="List", items=items, metadata={}))

    async def get_event(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        for ev in await self._recorded().list(namespace=namespace):
            if ev.metadata.name == name:
                return web.json_response(ev.to_object())
        raise NotFound(f'events "{name}" not found')

    def _recorded(self) -> EventStore:
        if self._events is None:
            raise StoreError("this cloudhub records no events")
        return self._events

    async def get_object(self, request: web.Request) -> web.Response:
        typ, namespace, name = _object_path(request)
        obj = await self._store.get(typ, namespace, name)
        return web.json_response(self._present(typ, obj))

    async def delete_object(self, request: web.Request) -> web.Response:
        typ, namespace, name = _object_path(request)
        revoked = 0
        if typ == "devicemodel":
            await refuse_used_model(self._store, Reference(typ, namespace, name))
        if typ == "node":
            revoked = await self._revoker.revoke_node(name)
        try:
            obj = await self._store.delete(typ, namespace, name)
        except NotFound:
            if not revoked:
                raise
            # Its certificates were live although its Node was gone: that was the point.
            obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}
        logger.info("deleted %s %s/%s", typ, namespace or CLUSTER_NAMESPACE, name)
        return web.json_response(obj)

    def _presenter(self, typ: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda obj: self._present(typ, obj)

    def _online(self, node: str) -> bool:
        return self._presence.presence(node).online

    def _present(self, typ: str, obj: dict[str, Any]) -> dict[str, Any]:
        if typ != "node":
            return obj
        name = (obj.get("metadata") or {}).get("name", "")
        return overlay_presence(obj, self._presence.presence(name))


def _applied_response(applied: list[Applied], warnings: list[str]) -> web.Response:
    """:class:`ApplyResponse`'s JSON, splicing in the texts the store already encoded."""
    objects = ",".join(a.body for a in applied)
    actions = ",".join(f'"{a.action}"' for a in applied)
    notes = json.dumps(warnings)
    return web.Response(
        text=f'{{"objects":[{objects}],"actions":[{actions}],"warnings":{notes}}}',
        content_type="application/json",
    )


def _event_filters(query: Mapping[str, str]) -> dict[str, str | None]:
    """``namespace``, ``kind`` and ``name`` of an events query (see :meth:`list_events`).

    Raises:
        InvalidResource: a field selector on something else than the involved object.
    """
    fields = {
        "namespace": query.get("namespace") or None,
        "kind": query.get("kind") or query.get("involvedObject.kind") or None,
        "name": query.get("name") or query.get("involvedObject.name") or None,
    }
    for term in filter(None, (query.get("fieldSelector") or "").split(",")):
        field, sep, value = term.partition("=")
        short = {"involvedObject.kind": "kind", "involvedObject.name": "name"}.get(field)
        if field == "involvedObject.namespace" or field == "metadata.namespace":
            short = "namespace"
        if not sep or short is None:
            raise InvalidResource(
                f"unsupported field selector {term!r} (use involvedObject.kind, "
                "involvedObject.name or involvedObject.namespace)"
            )
        fields[short] = value.lstrip("=") or None
    return fields


def _kind_of(request: web.Request) -> ApiKind:
    plural = request.match_info["plural"]
    kind = BY_PLURAL.get(plural)
    if kind is None:
        raise NotFound(f"unknown type {plural!r} (expected one of {', '.join(PLURALS)})")
    if not kind.mirrored:
        raise InvalidResource(f"{plural} are recorded by cloudhub: they can only be listed or read")
    return kind


def _type_of(request: web.Request) -> str:
    return _kind_of(request).type


def _object_path(request: web.Request) -> tuple[str, str | None, str]:
    typ = _type_of(request)
    namespace = request.match_info["namespace"]
    name = request.match_info["name"]
    if typ in CLUSTER_SCOPED_TYPES:
        if namespace != CLUSTER_NAMESPACE:
            raise InvalidResource(
                f"{typ}s are cluster-scoped: use {CLUSTER_NAMESPACE!r} as the namespace"
            )
        return typ, None, name
    if namespace == CLUSTER_NAMESPACE:
        raise InvalidResource(f"{typ}s are namespaced: give a namespace, not {namespace!r}")
    return typ, namespace, name


def _sort_key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
