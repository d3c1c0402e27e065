"""A real HTTP emulation of the Kubernetes API, for tests and benches of the Kubernetes backend.

Why not ``kmock``: its emulator has no resourceVersion semantics (a placeholder string), no
``410 Gone`` and no bookmarks, and those are exactly what a watcher must get right. Why not
patch the client: a patched method tests our idea of the API, not the API. This is an aiohttp
server on 127.0.0.1 (port 0) that the official ``kubernetes`` client and ``kubectl`` talk to
over plain HTTP, with the semantics that matter:

- **One global integer resourceVersion** (a string on the wire). Every write takes the next
  one; lists carry the current one in ``metadata.resourceVersion``.
- **Watch** (``?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N``) streams
  newline-delimited JSON events after RV from a kept history, then live ones. An RV older than
  the history gets one watch ``ERROR`` event carrying a ``Status`` with code 410, as the API
  server sends; bookmarks (with the current RV) come after ``bookmark_interval`` seconds of
  silence. Without an RV (or with ``0``) the watch starts with ADDED events for what exists.
- **Selectors applied on the server**: ``fieldSelector`` (``metadata.name``,
  ``metadata.namespace``, ``spec.nodeName`` for pods; ``=``/``==``/``!=``) and
  ``labelSelector`` (``key``, ``!key``, ``key=value``, ``key!=value``). A filtered watch
  reports an object that starts matching as ADDED and one that stops matching as DELETED.
- **Writes** (rules in :mod:`tests.support.kubeapi_state`): create (409 AlreadyExists),
  replace guarded by ``metadata.resourceVersion`` (409 Conflict), merge and strategic-merge
  patches (both as RFC 7386 merge patches), JSON patches (RFC 6902 ``test``/``add``/
  ``replace``/``remove``; a failed ``test`` is 422 and writes nothing), delete with
  ``preconditions``, ``dryRun=All``, ``/status`` subresources, ``uid``,
  ``creationTimestamp``, ``generation`` bumped on spec change, unchanged writes skipped,
  graceful deletion of pods bound to a node.
- **Discovery** (``/version``, ``/api``, ``/apis``, group versions) for the resources in
  :data:`tests.support.kubeapi_model.RESOURCES`: enough for ``kubectl apply``. A custom
  resource is served only once its CustomResourceDefinition exists.
- **Namespaces** as the API server's admission has them: ``default``, ``kube-system``,
  ``kube-public`` and ``kube-node-lease`` exist; creating an object in any other namespace
  is refused (404 ``namespaces "X" not found``) until its Namespace object is created.
- **Authorization**: everything is allowed unless a test calls ``deny()``; a denied request
  gets 403 Forbidden, and ``SelfSubjectAccessReview`` answers what ``deny()`` left allowed.

Test hooks: ``requests`` counts ``(verb, path)`` and ``log`` keeps every request with its
query; ``compact()`` drops the history (old RVs get 410); ``expire_watches()`` also ends open
watches with a 410; ``inject()`` fails the next matching requests (e.g. a 409 Conflict);
``kill_watches()`` ends every open stream; ``freeze_watches()`` makes them silent;
``deny()`` takes a right away (RBAC).
``python -m tests.support.kubeapi --kubeconfig PATH`` runs it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml
from aiohttp import web

from tests.support import kubelet_proxy
from tests.support.kubeapi_model import RESOURCES, Obj, Predicate, ResourceType, translate
from tests.support.kubeapi_state import ApiError, Event, ObjectState, check_identity

REPO = Path(__file__).resolve().parents[2]
_MERGE_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_JSON_PATCH = "application/json-patch+json"
_Target = tuple[ResourceType, str, str | None, str | None]  # resource, namespace, name, sub


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the emulator saw it."""

    method: str
    verb: str
    path: str
    query: dict[str, str]


@dataclass(slots=True)
class _Injection:
    status: int
    method: str
    path: str | None
    times: int


@dataclass(frozen=True, slots=True)
class _Denial:
    verb: str
    group: str
    #: ``plural`` or ``plural/subresource``
    resource: str
    #: None: in every namespace
    namespace: str | None


@dataclass(eq=False)
class _Watch:
    res: ResourceType
    match: Predicate
    #: events, or the commands "close", "abort", "gone" from the test hooks
    queue: asyncio.Queue[Event | str] = field(default_factory=asyncio.Queue)
    killed: asyncio.Event = field(default_factory=asyncio.Event)


class KubeApiEmulator:
    """The API server: ``async with KubeApiEmulator() as api: ... api.url ...``."""

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        history: int = 10_000,
        port: int = 0,
        kubelet_client: tuple[Path, Path] | None = None,
    ) -> None:
        """Args:
        bookmark_interval: seconds of silence after which a watch that asked for bookmarks
            gets one (1 s; the API server's is about a minute, tests want it fast).
        history: events kept for watch resumption (10,000).
        port: TCP port on 127.0.0.1 (0: any free one).
        kubelet_client: (certificate, key) the API server presents to kubelets; with it,
            ``pods/{name}/log`` and ``pods/{name}/exec`` reach the pod's node's kubelet
            (:mod:`tests.support.kubelet_proxy`).
        """
        self._kubelet = kubelet_proxy.client_context(*kubelet_client) if kubelet_client else None
        self.bookmark_interval = bookmark_interval
        self.state = ObjectState(history=history)
        self._port = port
        self._watches: set[_Watch] = set()
        self._injections: list[_Injection] = []
        self._denials: set[_Denial] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._runner: web.AppRunner | None = None
        self._by_path = {(r.group, r.version, r.plural): r for r in RESOURCES}
        #: requests per (verb, path); verb is get/list/watch/create/update/patch/delete
        self.requests: Counter[tuple[str, str]] = Counter()
        #: every request, in order
        self.log: list[RequestRecord] = []
        #: BOOKMARK events written so far, over all watches
        self.bookmarks_sent = 0
        self.state.listeners.add(self._fan_out)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self._port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

    async def close(self) -> None:
        await self.kill_watches()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig pointing at this server (plain HTTP, a dummy token)."""
        context = {"cluster": "emulator", "user": "emulator", "namespace": namespace}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": context}],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # ------------------------------------------------------------------ direct state access

    def install_edgebridge(self, namespace: str = "edgebridge") -> None:
        """What ``kubectl apply -f deploy/namespace.yaml -f deploy/crds/`` creates: the
        namespace and the Device CRDs (from the project's own files)."""
        self.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        for crd in sorted((REPO / "deploy" / "crds").glob("*.yaml")):
            self.seed(yaml.safe_load(crd.read_text()))

    @property
    def resource_version(self) -> str:
        return str(self.state.rv)

    def seed(self, obj: Obj) -> Obj:
        """Create or wholly replace ``obj`` without HTTP (setup code); watchers see it."""
        return self.state.seed(obj)

    def get(self, plural: str, namespace: str | None, name: str, *, group: str = "") -> Obj | None:
        """A copy of the stored object, or None."""
        return copy.deepcopy(self.state.objects.get((group, plural, namespace or "", name)))

    def objects(self, plural: str, *, group: str = "") -> list[Obj]:
        return [
            copy.deepcopy(o)
            for k, o in sorted(self.state.objects.items())
            if k[:2] == (group, plural)
        ]

    # ------------------------------------------------------------------ test hooks

    def count(self, verb: str | None = None, path: str | None = None) -> int:
        """Requests seen with this verb and/or on this exact path."""
        return sum(
            n
            for (v, p), n in self.requests.items()
            if (verb is None or v == verb) and (path is None or p == path)
        )

    def reset_counts(self) -> None:
        self.requests.clear()
        self.log.clear()

    def compact(self) -> None:
        """Forget every event so far: a watch from any older resourceVersion gets 410."""
        self.state.compact()

    def expire_watches(self) -> None:
        """:meth:`compact`, and end every open watch with an ERROR 410 event."""
        self.compact()
        for watch in self._watches:
            watch.queue.put_nowait("gone")

    def inject(self, status: int, *, method: str, path: str | None = None, times: int = 1) -> None:
        """Fail the next ``times`` requests with ``method`` (on ``path``, if given)."""
        self._injections.append(_Injection(status, method.upper(), path, times))

    def deny(
        self, verb: str, resource: str, *, group: str = "", namespace: str | None = None
    ) -> None:
        """Take a right away: ``verb`` on ``resource`` (``plural`` or ``plural/sub``) in
        ``group``, in ``namespace`` (None: everywhere) is refused with 403 and reviewed as
        not allowed."""
        self._denials.add(_Denial(verb, group, resource, namespace))

    def allowed(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        """What RBAC answers for one request (``namespace`` None or "": cluster scope)."""
        return not any(
            d.verb in (verb, "*")
            and d.group == group
            and d.resource == resource
            and d.namespace in (None, namespace or None)
            for d in self._denials
        )

    def clear_injections(self) -> None:
        """Forget every pending :meth:`inject`."""
        self._injections.clear()

    def inject_conflict(
        self, *, method: str = "PUT", path: str | None = None, times: int = 1
    ) -> None:
        """The next matching write gets 409 Conflict, as if someone else wrote first."""
        self.inject(409, method=method, path=path, times=times)

    async def kill_watches(self, *, abrupt: bool = False) -> None:
        """End every open watch stream (``abrupt``: reset the connection instead).

        Returns once those streams are gone (watches opened meanwhile are left alone).
        """
        killed = list(self._watches)
        for watch in killed:
            watch.queue.put_nowait("abort" if abrupt else "close")
            watch.killed.set()
        for _ in range(400):
            if not any(watch in self._watches for watch in killed):
                return
            await asyncio.sleep(0.005)

    def freeze_watches(self) -> None:
        """Open and new watches send nothing (no events, no bookmarks) until thawed."""
        self._thawed.clear()

    def thaw_watches(self) -> None:
        self._thawed.set()

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def calls(self, verb: str, path: str) -> list[RequestRecord]:
        """The logged requests with this verb on this exact path, in order."""
        return [r for r in self.log if r.verb == verb and r.path == path]

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        query = dict(request.query)
        try:
            target = self._parse(path)
            verb = _verb(request.method, target, query)
            self.requests[(verb, path)] += 1
            self.log.append(RequestRecord(request.method, verb, path, query))
            self._injected(request.method, path)
            if target is not None and self._authorized(verb, target) == "review":
                return _json(self._review(await _body(request)), 201)
            if target is None:
                return _json(self._discovery(path))
            res, ns, name, sub = target
            if sub in ("log", "exec") and name is not None:
                return await self._to_kubelet(request, res, ns, name, sub)
            if verb == "watch":
                return await self._watch(request, res, ns, query)
            if verb == "list":
                return _json(self.state.listing(res, ns, query))
            dry_run = query.get("dryRun") == "All"
            if verb == "patch" and request.content_type == _JSON_PATCH and name is not None:
                ops = await _json_patch_ops(request)
                key = (res.group, res.plural, ns, name)
                return _json(self.state.json_patch(res, key, ops, sub=sub, dry_run=dry_run))
            body = await _body(request) if verb != "get" else {}
            if verb == "create":
                return _json(self.state.create(res, ns, body, dry_run=dry_run), 201)
            assert name is not None
            key = (res.group, res.plural, ns, name)
            if verb == "get":
                return _json(copy.deepcopy(self.state.stored(res, key)))
            if verb == "update":
                if sub is None:
                    check_identity(res, body, ns, name)
                return _json(self.state.update(res, key, body, sub=sub, dry_run=dry_run))
            if verb == "patch":
                if request.content_type not in _MERGE_TYPES:
                    message = f"patch type {request.content_type} is not emulated"
                    raise ApiError(415, "UnsupportedMediaType", message)
                return _json(self.state.patch(res, key, body, sub=sub, dry_run=dry_run))
            return _json(self.state.delete(res, key, body, query, dry_run=dry_run))
        except ApiError as exc:
            return _json(exc.body, exc.code)

    async def _to_kubelet(
        self, request: web.Request, res: ResourceType, ns: str, name: str, sub: str
    ) -> web.StreamResponse:
        if self._kubelet is None:
            raise ApiError(404, "NotFound", "this emulator reaches no kubelet")
        pod = self.state.stored(res, (res.group, res.plural, ns, name))
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.get("nodes", None, node_name) if node_name else None
        if node is None:
            raise ApiError(400, "BadRequest", f"pod {name} is not running on a node")
        try:
            return await kubelet_proxy.proxy(
                request, pod=pod, node=node, sub=sub, ctx=self._kubelet
            )
        except kubelet_proxy.KubeletUnreachable as exc:
            raise ApiError(502, "InternalError", str(exc)) from exc

    def _injected(self, method: str, path: str) -> None:
        for inj in self._injections:
            if inj.method == method and inj.path in (None, path) and inj.times > 0:
                inj.times -= 1
                if inj.status == 409:
                    raise ApiError(409, "Conflict", "the object has been modified (injected)")
                raise ApiError(inj.status, "InternalError", f"injected failure {inj.status}")

    def _parse(self, path: str) -> _Target | None:
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
            inner = self._by_path.get((group, version, rest[2]))
            if inner is not None and inner.namespaced:
                ns, rest = rest[1], rest[2:]
        res = self._by_path.get((group, version, rest[0]))
        if res is None or len(rest) > 3 or not self.state.served(res):
            raise ApiError(404, "NotFound", f"the server could not find the resource {path}")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        pod_stream = res.plural == "pods" and sub in ("log", "exec")
        if sub is not None and not pod_stream and (sub != "status" or not res.status):
            raise ApiError(404, "NotFound", f"no subresource {sub} on {res.plural}")
        return res, ns, name, sub

    def _authorized(self, verb: str, target: _Target) -> str:
        """RBAC: raise 403 for a denied request; ``"review"`` for a SelfSubjectAccessReview
        (answered from the same rules), else ``"ok"``."""
        res, ns, _, sub = target
        resource = f"{res.plural}/{sub}" if sub else res.plural
        if not self.allowed(verb, res.group, resource, ns):
            raise ApiError(
                403,
                "Forbidden",
                f'{res.plural} is forbidden: User "emulator" cannot {verb} resource '
                f'"{resource}" in API group "{res.group}"'
                + (f' in the namespace "{ns}"' if ns else " at the cluster scope"),
            )
        if res.plural == "selfsubjectaccessreviews" and verb == "create":
            return "review"
        return "ok"

    def _review(self, body: Obj) -> Obj:
        """A SelfSubjectAccessReview answered from the :meth:`deny` list."""
        attrs = (body.get("spec") or {}).get("resourceAttributes") or {}
        resource = str(attrs.get("resource") or "")
        if attrs.get("subresource"):
            resource += f"/{attrs['subresource']}"
        allowed = self.allowed(
            str(attrs.get("verb") or ""),
            str(attrs.get("group") or ""),
            resource,
            attrs.get("namespace") or None,
        )
        status: Obj = {"allowed": allowed}
        if not allowed:
            status["reason"] = "denied by the emulator's deny()"
        return {
            "kind": "SelfSubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": body.get("spec") or {},
            "status": status,
        }

    def _discovery(self, path: str) -> Obj:
        groups: dict[str, list[ResourceType]] = {}
        for res in filter(self.state.served, RESOURCES):
            groups.setdefault(res.group_version, []).append(res)
        named = [gv for gv in groups if "/" in gv]
        if path == "/version":
            return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-emulator"}
        if path == "/api":
            where = {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
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

    # ------------------------------------------------------------------ watch

    def _fan_out(self, event: Event) -> None:
        for watch in self._watches:
            if watch.res == event.res:
                watch.queue.put_nowait(event)

    async def _watch(
        self, request: web.Request, res: ResourceType, ns: str, query: dict[str, str]
    ) -> web.StreamResponse:
        match = self.state.matcher(res, ns, query)
        since = query.get("resourceVersion", "")
        bookmarks = query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        if since not in ("", "0") and not since.isdigit():
            raise ApiError(400, "BadRequest", f"invalid resource version {since!r}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        # Replayed and registered with no await in between: no event is missed or doubled.
        watch = _Watch(res, match)
        try:
            if since in ("", "0"):
                initial = [{"type": "ADDED", "object": o} for o in self.state.current(res, match)]
            else:
                initial = self.state.replay(res, int(since), match)
        except ApiError as exc:
            with contextlib.suppress(ConnectionError):
                await response.write(_line({"type": "ERROR", "object": exc.body}))
                await response.write_eof()
            return response
        self._watches.add(watch)
        try:
            for item in initial:
                await response.write(_line(item))
            await self._stream(request, response, watch, bookmarks, timeout)
            await response.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watches.discard(watch)
        return response

    async def _stream(
        self,
        request: web.Request,
        response: web.StreamResponse,
        watch: _Watch,
        bookmarks: bool,
        timeout: float | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = self.bookmark_interval if bookmarks else 3600.0
            if deadline is not None:
                wait = min(wait, deadline - loop.time())
                if wait <= 0:
                    return
            try:
                item = await asyncio.wait_for(watch.queue.get(), wait)
            except TimeoutError:
                if bookmarks and self._thawed.is_set():
                    # Every event up to the current RV was queued synchronously and the queue
                    # is empty, so this watch has sent all of them: the bookmark is honest.
                    meta = {"resourceVersion": str(self.state.rv)}
                    mark = {"kind": watch.res.kind, "apiVersion": watch.res.api_version}
                    await response.write(
                        _line({"type": "BOOKMARK", "object": mark | {"metadata": meta}})
                    )
                    self.bookmarks_sent += 1
                continue
            if not self._thawed.is_set() and not watch.killed.is_set():
                waiters = {
                    asyncio.ensure_future(self._thawed.wait()),
                    asyncio.ensure_future(watch.killed.wait()),
                }
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
            if item == "close":
                return
            if item == "abort":
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("aborted by the test")
            if item == "gone":
                gone = ApiError(410, "Expired", "too old resource version (history compacted)")
                await response.write(_line({"type": "ERROR", "object": gone.body}))
                return
            assert isinstance(item, Event)
            found = translate(item.type, item.obj, item.old, watch.match)
            if found is not None:
                await response.write(_line({"type": found[0], "object": found[1]}))


# --------------------------------------------------------------------------- helpers


def _verb(method: str, target: _Target | None, query: dict[str, str]) -> str:
    if method == "GET":
        if target is not None and target[2] is None:
            return "watch" if query.get("watch") in ("1", "true") else "list"
        return "get"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    if method not in verbs:
        raise ApiError(405, "MethodNotAllowed", f"method {method} is not allowed")
    return verbs[method]


def _json(body: Obj, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def _line(event: Obj) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


async def _body(request: web.Request) -> Obj:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "body must be a JSON object")
    return body


async def _json_patch_ops(request: web.Request) -> list[object]:
    try:
        ops = await request.json()
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"body is not JSON: {exc}") from exc
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


async def _serve(port: int, kubeconfig: Path | None, kubelet: tuple[Path, Path] | None) -> None:
    async with KubeApiEmulator(port=port, kubelet_client=kubelet) as api:
        if kubeconfig is not None:
            api.write_kubeconfig(kubeconfig)
        print(api.url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kubernetes API emulator for tests")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for it here")
    parser.add_argument("--kubelet-client-cert", type=Path, help="certificate shown to kubelets")
    parser.add_argument("--kubelet-client-key", type=Path, help="its key")
    args = parser.parse_args(argv)
    kubelet = None
    if args.kubelet_client_cert and args.kubelet_client_key:
        kubelet = (args.kubelet_client_cert, args.kubelet_client_key)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.kubeconfig, kubelet))


if __name__ == "__main__":
    main()
