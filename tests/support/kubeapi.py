"""A real HTTP emulation of the Kubernetes API, for tests and benches of the Kubernetes backend.

Why not ``kmock``: its emulator has no resourceVersion semantics (a placeholder string), no
``410 Gone`` and no bookmarks, and those are exactly what a watcher must get right. Why not
patch the client: a patched method tests our idea of the API, not the API. This is an aiohttp
server on 127.0.0.1 (port 0) that the official ``kubernetes`` client and ``kubectl`` talk to
over plain HTTP, with the semantics that matter:

- **One global integer resourceVersion** (a string on the wire). Every write takes the next
  one; lists carry the current one in ``metadata.resourceVersion``.
- **Watch** (:mod:`tests.support.kubeapi_watch`:
  ``?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N``) streams
  newline-delimited JSON events after RV from a kept history, then live ones. An RV older than
  the history gets one watch ``ERROR`` event carrying a ``Status`` with code 410, as the API
  server sends; bookmarks (with the current RV) come after ``bookmark_interval`` seconds of
  silence. Without an RV (or with ``0``) the watch starts with ADDED events for what exists.
- **Selectors applied on the server** (:mod:`tests.support.kubeapi_model`): ``fieldSelector``
  (``metadata.name``, ``metadata.namespace``, ``spec.nodeName`` for pods;
  ``=``/``==``/``!=``) and ``labelSelector`` (``key``, ``!key``, ``key=value``,
  ``key!=value``). A filtered watch reports an object that starts matching as ADDED and one
  that stops matching as DELETED.
- **Writes** (rules in :mod:`tests.support.kubeapi_state`): create (409 AlreadyExists),
  replace guarded by ``metadata.resourceVersion`` (409 Conflict), merge and strategic-merge
  patches (both as RFC 7386 merge patches), JSON patches (RFC 6902 ``test``/``add``/
  ``replace``/``remove``; a failed ``test`` is 422 and writes nothing), delete with
  ``preconditions``, ``dryRun=All``, ``/status`` subresources, ``uid``,
  ``creationTimestamp``, ``generation`` bumped on spec change, unchanged writes skipped,
  graceful deletion of pods bound to a node.
- **Discovery** (:mod:`tests.support.kubeapi_routes`, with path parsing: ``/version``,
  ``/api``, ``/apis``, group versions) for the resources in
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

This module is the server itself (:class:`KubeApiEmulator`: lifecycle, direct state access, test
hooks and the request dispatch); the rest lives in the modules named above, and RBAC with
the injected failures in :mod:`tests.support.kubeapi_access`.
``python -m tests.support.kubeapi --kubeconfig PATH`` runs it standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import yaml
from aiohttp import web

from tests.support import kubelet_proxy
from tests.support.kubeapi_access import Injections, Rbac
from tests.support.kubeapi_model import Obj, ResourceType
from tests.support.kubeapi_routes import (
    JSON_PATCH,
    MERGE_TYPES,
    Target,
    discovery,
    json_patch_ops,
    json_response,
    parse_path,
    read_body,
    verb_of,
)
from tests.support.kubeapi_state import ApiError, ObjectState, check_identity
from tests.support.kubeapi_watch import WatchStreams

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the emulator saw it."""

    method: str
    verb: str
    path: str
    query: dict[str, str]


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
        self.state = ObjectState(history=history)
        self._streams = WatchStreams(self.state, bookmark_interval=bookmark_interval)
        self._port = port
        self._injections = Injections()
        self._rbac = Rbac()
        self._runner: web.AppRunner | None = None
        #: requests per (verb, path); verb is get/list/watch/create/update/patch/delete
        self.requests: Counter[tuple[str, str]] = Counter()
        #: every request, in order
        self.log: list[RequestRecord] = []

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
        self._streams.expire()

    def inject(self, status: int, *, method: str, path: str | None = None, times: int = 1) -> None:
        """Fail the next ``times`` requests with ``method`` (on ``path``, if given)."""
        self._injections.add(status, method.upper(), path, times)

    def deny(
        self, verb: str, resource: str, *, group: str = "", namespace: str | None = None
    ) -> None:
        """Take a right away: ``verb`` on ``resource`` (``plural`` or ``plural/sub``) in
        ``group``, in ``namespace`` (None: everywhere) is refused with 403 and reviewed as
        not allowed."""
        self._rbac.deny(verb, group, resource, namespace)

    def allowed(self, verb: str, group: str, resource: str, namespace: str | None) -> bool:
        """What RBAC answers for one request (``namespace`` None or "": cluster scope)."""
        return self._rbac.allowed(verb, group, resource, namespace)

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
        await self._streams.kill(abrupt=abrupt)

    def freeze_watches(self) -> None:
        """Open and new watches send nothing (no events, no bookmarks) until thawed."""
        self._streams.freeze()

    def thaw_watches(self) -> None:
        self._streams.thaw()

    @property
    def open_watches(self) -> int:
        return self._streams.open

    @property
    def bookmarks_sent(self) -> int:
        """BOOKMARK events written so far, over all watches."""
        return self._streams.bookmarks_sent

    @property
    def bookmark_interval(self) -> float:
        return self._streams.bookmark_interval

    def calls(self, verb: str, path: str) -> list[RequestRecord]:
        """The logged requests with this verb on this exact path, in order."""
        return [r for r in self.log if r.verb == verb and r.path == path]

    # ------------------------------------------------------------------ routing

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        query = dict(request.query)
        try:
            target = self._parse(path)
            verb = verb_of(request.method, target, query)
            self.requests[(verb, path)] += 1
            self.log.append(RequestRecord(request.method, verb, path, query))
            self._injections.check(request.method, path)
            if target is not None and self._rbac.authorize(verb, target) == "review":
                return json_response(self._rbac.review(await read_body(request)), 201)
            if target is None:
                return json_response(discovery(path, self.state, self.port))
            res, ns, name, sub = target
            if sub in ("log", "exec") and name is not None:
                return await self._to_kubelet(request, res, ns, name, sub)
            if verb == "watch":
                return await self._streams.serve(request, res, ns, query)
            if verb == "list":
                return json_response(self.state.listing(res, ns, query))
            dry_run = query.get("dryRun") == "All"
            if verb == "patch" and request.content_type == JSON_PATCH and name is not None:
                ops = await json_patch_ops(request)
                key = (res.group, res.plural, ns, name)
                return json_response(self.state.json_patch(res, key, ops, sub=sub, dry_run=dry_run))
            body = await read_body(request) if verb != "get" else {}
            if verb == "create":
                return json_response(self.state.create(res, ns, body, dry_run=dry_run), 201)
            assert name is not None
            key = (res.group, res.plural, ns, name)
            if verb == "get":
                return json_response(copy.deepcopy(self.state.stored(res, key)))
            if verb == "update":
                if sub is None:
                    check_identity(res, body, ns, name)
                return json_response(self.state.update(res, key, body, sub=sub, dry_run=dry_run))
            if verb == "patch":
                if request.content_type not in MERGE_TYPES:
                    message = f"patch type {request.content_type} is not emulated"
                    raise ApiError(415, "UnsupportedMediaType", message)
                return json_response(self.state.patch(res, key, body, sub=sub, dry_run=dry_run))
            return json_response(self.state.delete(res, key, body, query, dry_run=dry_run))
        except ApiError as exc:
            return json_response(exc.body, exc.code)

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

    def _parse(self, path: str) -> Target | None:
        """``(resource, namespace or "", name, subresource)``; None for discovery paths."""
        return parse_path(path, self.state)


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
