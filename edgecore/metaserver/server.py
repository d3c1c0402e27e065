"""The edge local API: a read-only slice of the Kubernetes API, served from the SQLite cache.

Why from the cache only: workloads on the gateway need their pods, configmaps, secrets and
devices whether or not the cloud is reachable. KubeEdge's MetaServer first asks the cloud and
used to stall every request by 10 s while offline (fixed in v1.13); this one never leaves the
box, so it answers the same way online and offline, in microseconds. It serves what the cloud
bound to this node, nothing more, and writes nothing.

Shapes are Kubernetes': objects as stored, lists as ``{Kind}List`` with ``items``, failures as
``Status`` objects, and ``?watch=true`` as a chunked stream of newline-delimited
``{"type", "object"}`` events. A watch subscribes before it lists, so no change can fall
between the two; it remembers what it sent so the overlap is not sent twice.

Routing is one handler and a pure path parser (:func:`route`), so unknown paths and wrong
methods answer with a ``Status`` like the real API server. HTTP itself is
:mod:`edgecore.metaserver.http` (h11 over asyncio streams; its docstring says why not aiohttp).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from edgecore.metaserver.http import TEXT, HttpServer, Request, Response
from edgecore.metastore import Items, MetaStore, StoreEvent, Subscription
from wire.errors import ConfigError
from wire.kinds import CORE_API_VERSION, DEVICES_API_VERSION, KINDS
from wire.resources import ResourceKey

if TYPE_CHECKING:
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

CORE_API = CORE_API_VERSION
DEVICES_API = DEVICES_API_VERSION

#: Seconds the server waits for open requests when stopping; watches are closed before that.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind the local API serves."""

    plural: str
    #: KubeEdge's resource type, the middle part of the cache key
    type: str
    kind: str
    api_version: str
    namespaced: bool


#: every kind that travels to edges (:data:`wire.kinds.KINDS`)
RESOURCES: tuple[Resource, ...] = tuple(
    Resource(k.plural, k.type, k.kind, k.api_version, namespaced=k.namespaced)
    for k in KINDS
    if k.mirrored
)

#: URL prefix (as path segments) -> plural -> resource
_GROUPS: dict[tuple[str, ...], dict[str, Resource]] = {
    ("api", CORE_API): {r.plural: r for r in RESOURCES if r.api_version == CORE_API},
    ("apis", *DEVICES_API.split("/")): {
        r.plural: r for r in RESOURCES if r.api_version == DEVICES_API
    },
}


@dataclass(frozen=True, slots=True)
class Target:
    """What a path asks for: one object (``name``) or a collection (``name`` is ``None``)."""

    resource: Resource
    #: ``None``: all namespaces, or a cluster-scoped resource
    namespace: str | None
    name: str | None

    @property
    def key(self) -> str:
        assert self.name is not None
        return str(ResourceKey(self.namespace, self.resource.type, self.name))


def route(path: str) -> Target | None:
    """Parse a request path; ``None`` when the local API does not serve it."""
    parts = [p for p in path.split("/") if p]
    for prefix, resources in _GROUPS.items():
        if tuple(parts[: len(prefix)]) != prefix:
            continue
        rest = parts[len(prefix) :]
        if len(rest) in (1, 2) and rest[0] in resources:
            res = resources[rest[0]]
            if len(rest) == 1:
                return Target(res, None, None)
            return None if res.namespaced else Target(res, None, rest[1])
        if len(rest) in (3, 4) and rest[0] == "namespaces" and rest[2] in resources:
            res = resources[rest[2]]
            if not res.namespaced:
                return None
            return Target(res, rest[1], rest[3] if len(rest) == 4 else None)
    return None


def json_response(body: Any, status: int = 200) -> Response:
    """``body`` as a JSON response."""
    return Response(status, json.dumps(body, separators=(",", ":")).encode())


def status(code: int, reason: str, message: str, **details: str) -> Response:
    """A Kubernetes ``Status`` failure response."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return json_response(body, status=code)


def _shaped(obj: dict[str, Any], res: Resource) -> dict[str, Any]:
    """The object with ``kind``/``apiVersion`` filled in if the cached copy lacks them."""
    if "kind" in obj and "apiVersion" in obj:
        return obj
    return {"apiVersion": res.api_version, "kind": res.kind, **obj}


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def event_line(event: StoreEvent, sent: dict[str, str], res: Resource) -> bytes | None:
    """The watch line for ``event``, or ``None`` when the client already knows it.

    ``sent`` maps each key the client was told about to the resourceVersion it was told; it is
    updated. Because a watch subscribes before it lists, an event may repeat what the list
    said, or delete what the list never showed.
    """
    if event.type == "DELETED":
        if sent.pop(event.key, None) is None:
            return None
        return _line("DELETED", _shaped(event.obj, res))
    before = sent.get(event.key)
    if before == event.resource_version:
        return None
    sent[event.key] = event.resource_version
    return _line("ADDED" if before is None else "MODIFIED", _shaped(event.obj, res))


class LocalApi:
    """Request handling, bound to one store; ``GET /metrics`` too with ``figures``."""

    def __init__(self, store: MetaStore, node_name: str, figures: Figures | None) -> None:
        self.store = store
        self.node_name = node_name
        self.figures = figures
        #: built at the first scrape (prometheus_client is imported then, not at start)
        self._registry: Any = None
        #: open watch streams, closed on shutdown so the server stops promptly
        self.watches: set[Subscription] = set()

    async def handle(self, request: Request) -> Response:
        if request.method != "GET":
            refused = status(
                405, "MethodNotAllowed", "the local API is read-only: only GET is allowed"
            )
            return dataclasses.replace(refused, headers=(("Allow", "GET"),))
        path = request.path
        if path == "/metrics" and self.figures is not None:
            return await self._metrics(self.figures)
        if path.rstrip("/") == "/healthz":
            return Response(200, b"ok", TEXT)
        target = route(path)
        if target is None:
            return status(404, "NotFound", "the server could not find the requested resource")
        watch = request.query.get("watch", "").lower() in ("true", "1")
        try:
            if target.name is not None:
                if watch:
                    return status(400, "BadRequest", "watch is served on collections only")
                return await self._get(target)
            if watch:
                return await self._watch(request, target)
            return await self._list(target)
        except Exception:
            log.exception("local API of node %s failed on %s", self.node_name, path)
            return status(500, "InternalError", "the edge cache could not be read")

    async def _metrics(self, figures: Figures) -> Response:
        from hive.metrics import CONTENT_TYPE, exposition, make_registry

        if self._registry is None:
            self._registry = make_registry(figures.collect)
        await figures.refresh()
        return Response(200, exposition(self._registry), CONTENT_TYPE)

    async def _get(self, target: Target) -> Response:
        res = target.resource
        assert target.name is not None
        obj = await self.store.get(target.key)
        if obj is None:
            return status(
                404,
                "NotFound",
                f'{res.plural} "{target.name}" not found',
                name=target.name,
                kind=res.plural,
            )
        return json_response(_shaped(obj, res))

    async def _list(self, target: Target) -> Response:
        res = target.resource
        items = await self.store.list(res.type, target.namespace)
        return json_response(
            {
                "kind": f"{res.kind}List",
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": ""},
                "items": [_shaped(obj, res) for obj in items],
            }
        )

    async def _watch(self, request: Request, target: Target) -> Response:
        res = target.resource
        raw_timeout = request.query.get("timeoutSeconds")
        try:
            timeout = float(raw_timeout) if raw_timeout else None
        except ValueError:
            return status(400, "BadRequest", f"timeoutSeconds {raw_timeout!r} is not a number")
        # subscribe before listing: a change committed in between is then seen at least once
        sub = self.store.subscribe(res.type, namespace=target.namespace)
        self.watches.add(sub)
        try:
            rows = await self.store.items(res.type, target.namespace)
        except BaseException:
            self._unwatch(sub)
            raise
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        return Response(200, stream=self._events(sub, rows, res, deadline))

    async def _events(
        self,
        sub: Subscription,
        rows: Items,
        res: Resource,
        deadline: float | None,
    ) -> AsyncGenerator[bytes, None]:
        """The watch stream: ADDED for ``rows``, then the changes until ``deadline``."""
        try:
            #: key -> resourceVersion the client has been told about
            sent: dict[str, str] = {}
            for key, rv, obj in rows:
                yield _line("ADDED", _shaped(obj, res))
                sent[key] = rv
            while True:
                # the timeout spans only the wait, never a yield (the caller writes then)
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await anext(sub)
                except (TimeoutError, StopAsyncIteration):
                    return
                line = event_line(event, sent, res)
                if line is not None:
                    yield line
        finally:
            self._unwatch(sub)

    def _unwatch(self, sub: Subscription) -> None:
        sub.close()
        self.watches.discard(sub)

    def close_watches(self) -> None:
        for sub in list(self.watches):
            sub.close()


class Figures(Protocol):
    """What ``GET /metrics`` renders (edgecore's modules' counters)."""

    async def refresh(self) -> None:
        """Read figures only a database knows, before :meth:`collect`."""

    def collect(self) -> Iterable[Metric]:
        """The metrics, read from the counters now."""


def make_app(*, store: MetaStore, node_name: str, figures: Figures | None = None) -> LocalApi:
    """The local API of node ``node_name`` (named in its log lines), reading ``store``;
    with ``figures``, ``GET /metrics`` in the Prometheus text format too."""
    return LocalApi(store, node_name, figures)


class LocalApiServer:
    """A listening local API; stop it with :meth:`cleanup`."""

    def __init__(self, api: LocalApi, http: HttpServer) -> None:
        self.api = api
        self.http = http

    @property
    def port(self) -> int:
        return self.http.port

    async def cleanup(self) -> None:
        """Stop: open watches end (their streams complete), then the server closes."""
        self.api.close_watches()
        await self.http.close()


async def serve(
    app: LocalApi,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
) -> LocalApiServer:
    """Start serving ``app`` on ``host:port`` (0 picks a free port; see :func:`bound_port`).

    Stop with ``await server.cleanup()``.

    Raises:
        ConfigError: the address cannot be bound (in use, not local, no permission).
    """
    http = HttpServer(app.handle, shutdown_timeout=shutdown_timeout)
    try:
        await http.listen(host, port)
    except OSError as exc:
        raise ConfigError(f"local API cannot listen on {host}:{port}: {exc.strerror}") from exc
    log.info("local API listening on %s:%d", host, http.port)
    return LocalApiServer(app, http)


def bound_port(server: LocalApiServer) -> int:
    """The TCP port ``server`` actually listens on (useful after asking for port 0)."""
    return server.port


def parse_address(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[v6]:PORT`` for IPv6) -> ``(addr, port)``.

    Raises:
        ConfigError: not ADDR:PORT or the port is not 0-65535.
    """
    host, sep, port_text = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"local API address {value!r} is not ADDR:PORT")
    return host, int(port_text)
