"""The fleet page's handlers, mounted at ``/ui/`` on the HTTPS port.

Pages: ``/ui/`` (fleet summary and the nodes table), ``/ui/nodes/{name}`` (its pods, devices
and recent events), ``/ui/pods`` (every pod with kubectl's READY/STATUS/RESTARTS),
``/ui/devices`` (every property: desired, reported, when, in sync, and a sparkline of recent
reports), ``/ui/pods/{ns}/{name}`` (status, containers, events, log tail), ``/ui/events``;
``/ui/login`` and ``/ui/logout``; ``/ui/static/...``.

- **Nothing readable without the admin token** (see :mod:`cloudhub.ui.session`); only the login
  form and the static files (style and script, no data) are served without it.
- **Fast with 10,000 nodes.** Everything comes from memory: the fleet module's view, the hub's
  presence, the event store's log; tables are paged with a cursor (the last name shown), so a
  page costs its rows, never the fleet. Counts are the view's running totals.
- **Updates by itself.** ``static/fleet.js`` asks for the same URL every few seconds with
  ``X-Fleet-Partial: 1`` and swaps in the live part the server renders for it (no build step,
  no framework; works without JavaScript too, as plain pages).
- **A pod's last log lines** come from a :class:`PodLogs` when cloudhub has one (log relaying
  from the edge plugs in here); without it the page says where to get them.
"""

from __future__ import annotations

import bisect
import importlib.resources
import logging
import mimetypes
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from cloudhub.fleet.module import FleetModule
from cloudhub.pki import Authority
from cloudhub.ui.rows import device_row, event_rows, node_row, pod_row
from cloudhub.ui.session import end_session, has_session, start_session
from wire.presentation import property_states

if TYPE_CHECKING:
    from cloudhub.routes import NodePresence

log = logging.getLogger(__name__)

#: rows per page of the nodes and devices tables
PAGE_SIZE = 50
#: how often the page refreshes itself, seconds (the browser's poll)
REFRESH_SECONDS = 2
PARTIAL_HEADER = "X-Fleet-Partial"
_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_STATUSES = ("all", "online", "offline")


class FleetPresence(Protocol):
    """What the page needs from the hub."""

    def presence(self, node: str) -> NodePresence: ...

    def online_nodes(self) -> Collection[str]: ...


class PodLogs(Protocol):
    """The last lines a pod's container wrote (provided once logs are relayed from edges)."""

    async def tail(self, namespace: str, name: str, *, lines: int) -> list[str]: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FleetPages:
    """The ``/ui/`` handlers, bound to what they read."""

    def __init__(
        self,
        *,
        authority: Authority,
        fleet: FleetModule,
        presence: FleetPresence,
        logs: PodLogs | None = None,
    ) -> None:
        self._authority = authority
        self._fleet = fleet
        self._presence = presence
        self._logs = logs
        self._env = Environment(
            loader=PackageLoader("cloudhub.ui", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def app(self) -> web.Application:
        """A sub-application to mount at ``/ui``."""
        app = web.Application(middlewares=[self._guard])
        r = app.router
        r.add_get("/", self.overview, allow_head=False)
        r.add_get("/nodes/{name}", self.node, allow_head=False)
        r.add_get("/devices", self.devices, allow_head=False)
        r.add_get("/pods", self.pods, allow_head=False)
        r.add_get("/pods/{namespace}/{name}", self.pod, allow_head=False)
        r.add_get("/events", self.events, allow_head=False)
        r.add_get("/login", self.login_form, allow_head=False)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/static/{file}", self.static, allow_head=False)
        return app

    # -- access --------------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        tail = request.path.removeprefix("/ui")
        if tail.startswith("/static/") or tail == "/login":
            return await handler(request)
        token = request.query.get("token")
        if token is not None:
            if not self._authority.check_admin_token(token):
                return self._page("login.html", status=401, error="wrong admin token", next="/ui/")
            # Drop the token from the address: the cookie carries the session from here on.
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = request.path + (f"?{urlencode(query)}" if query else "")
            response = web.HTTPSeeOther(target)
            start_session(response, self._authority)
            raise response
        if not has_session(request, self._authority):
            if request.headers.get(PARTIAL_HEADER):
                return web.Response(status=401, text="log in again", headers=_HEADERS)
            return self._page("login.html", status=401, error=None, next=request.path_qs)
        return await handler(request)

    async def login_form(self, request: web.Request) -> web.Response:
        return self._page("login.html", error=None, next=_safe_next(request.query.get("next")))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token") or "").strip()
        target = _safe_next(str(form.get("next") or ""))
        if not self._authority.check_admin_token(token):
            log.info("fleet page: a login with a wrong admin token from %s", request.remote)
            return self._page("login.html", status=401, error="wrong admin token", next=target)
        response = web.HTTPSeeOther(target)
        start_session(response, self._authority)
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/ui/login")
        end_session(response)
        raise response

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        res = importlib.resources.files("cloudhub.ui").joinpath("static", name)
        if not res.is_file():
            raise web.HTTPNotFound()
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return web.Response(
            body=res.read_bytes(),
            content_type=kind,
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    # -- pages ---------------------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        view = self._fleet.view
        now = time.time()
        status = request.query.get("status", "all")
        if status not in _STATUSES:
            status = "all"
        search = request.query.get("q", "").strip()
        after = request.query.get("after", "")
        online_set = self._presence.online_nodes()
        names = view.node_names()
        online = sum(1 for n in online_set if n in view.nodes)
        chosen = names
        if search:
            chosen = [n for n in chosen if search in n]
        if status != "all":
            want = status == "online"
            chosen = [n for n in chosen if (n in online_set) == want]
        page = view.page_of(chosen, after=after, limit=PAGE_SIZE + 1)
        more = len(page) > PAGE_SIZE
        page = page[:PAGE_SIZE]
        rows = [
            node_row(
                n,
                view.nodes[n],
                self._presence.presence(n),
                len(view.pods_on.get(n, ())),
                len(view.devices_on.get(n, ())),
                now,
            )
            for n in page
        ]
        first = chosen.index(page[0]) + 1 if page and after else 1
        return self._live(
            request,
            "overview.html",
            title="Fleet",
            summary={
                "nodes": len(view.nodes),
                "online": online,
                "offline": len(view.nodes) - online,
                "pods": sum(view.pod_phases.values()),
                "phases": sorted((p, c) for p, c in view.pod_phases.items() if c),
                "devices": view.device_count,
                "in_sync": view.devices_in_sync,
                "states": sorted((s, c) for s, c in view.device_states.items() if c),
            },
            rows=rows,
            status_filter=status,
            search=search,
            total=len(chosen),
            first=first,
            next_after=page[-1] if more and page else None,
        )

    async def node(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        view = self._fleet.view
        node = view.nodes.get(name)
        if node is None:
            return self._page("missing.html", status=404, what=f'node "{name}"')
        now = time.time()
        pods = view.pods_of(name)
        devices = view.devices_of(name)
        involved = {("Node", "", name)}
        involved |= {("Pod", *_ns_name(p)) for p in pods}
        involved |= {("Device", *_ns_name(d)) for d in devices}
        events = [
            e
            for e in await self._fleet.events.list()
            if (e.involved_object.kind, e.involved_object.namespace or "", e.involved_object.name)
            in involved
        ]
        presence = self._presence.presence(name)
        return self._live(
            request,
            "node.html",
            title=f"Node {name}",
            node=node_row(name, node, presence, len(pods), len(devices), now),
            conditions=(node.get("status") or {}).get("conditions") or [],
            pods=[pod_row(p) for p in pods],
            devices=[self._device_row(d) for d in devices],
            events=event_rows(events, now),
        )

    async def devices(self, request: web.Request) -> web.Response:
        view = self._fleet.view
        page, next_after = _page_after(view.device_keys(), request.query.get("after", ""))
        return self._live(
            request,
            "devices.html",
            title="Devices",
            devices=[self._device_row(d) for d in view.devices(page)],
            total=view.device_count,
            in_sync=view.devices_in_sync,
            next_after=next_after,
        )

    async def pods(self, request: web.Request) -> web.Response:
        view = self._fleet.view
        keys = view.pod_keys()
        page, next_after = _page_after(keys, request.query.get("after", ""))
        return self._live(
            request,
            "pods.html",
            title="Pods",
            pods=[pod_row(view.pods[k]) for k in page],
            total=len(keys),
            phases=sorted((p, c) for p, c in view.pod_phases.items() if c),
            next_after=next_after,
        )

    async def pod(self, request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        pod = self._fleet.view.pods.get(key)
        if pod is None:
            return self._page("missing.html", status=404, what=f'pod "{key[0]}/{key[1]}"')
        now = time.time()
        events = await self._fleet.events.list(namespace=key[0], kind="Pod", name=key[1])
        lines: list[str] | None = None
        if self._logs is not None:
            lines = await self._logs.tail(key[0], key[1], lines=50)
        status = pod.get("status") or {}
        return self._live(
            request,
            "pod.html",
            title=f"Pod {key[0]}/{key[1]}",
            pod=pod_row(pod),
            conditions=status.get("conditions") or [],
            containers=status.get("containerStatuses") or [],
            events=event_rows(events, now),
            log_lines=lines,
        )

    async def events(self, request: web.Request) -> web.Response:
        events = await self._fleet.events.list()
        return self._live(
            request,
            "events.html",
            title="Events",
            events=event_rows(events, time.time(), limit=200),
        )

    # -- rendering -----------------------------------------------------------------------------

    def _device_row(self, device: dict[str, Any]) -> Any:
        key = _ns_name(device)
        states = property_states(device)
        history = {s.name: self._fleet.view.history(key, s.name) for s in states}
        return device_row(device, states, history)

    def _live(self, request: web.Request, template: str, **context: Any) -> web.Response:
        """The whole page, or only its live part for the page's own refresh."""
        if request.headers.get(PARTIAL_HEADER):
            return self._render(f"_{template}", **context)
        return self._page(template, refresh=REFRESH_SECONDS, **context)

    def _page(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        context.setdefault("refresh", 0)
        context.setdefault("title", "edgebridge")
        return self._render(template, status=status, **context)

    def _render(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        body = self._env.get_template(template).render(**context)
        return web.Response(
            text=body, status=status, content_type="text/html", charset="utf-8", headers=_HEADERS
        )


def _page_after(
    keys: list[tuple[str, str]], after: str
) -> tuple[list[tuple[str, str]], str | None]:
    """The page of sorted ``(namespace, name)`` keys that follows ``after`` (``ns/name``, or
    empty for the first page), and the ``after`` of the next page (None on the last)."""
    start = 0
    if after:
        ns, _, name = after.partition("/")
        start = bisect.bisect_right(keys, (ns, name))
    page = keys[start : start + PAGE_SIZE + 1]
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return page, "/".join(page[-1]) if more and page else None


def _ns_name(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))


def _safe_next(target: str | None) -> str:
    """Only somewhere on the fleet page (an open redirect would help phishing)."""
    if target and target.startswith("/ui/") and not target.startswith("//"):
        return target
    return "/ui/"
