"""Dict-in, dict-out async access to the Kubernetes API, on aiohttp.

Why a layer of our own rather than a generated client (``kubernetes_asyncio`` is measured
against it by ``bench/k8s_clients.py`` on the mirror's calls against a real kube-apiserver:
its CPU per operation is 2x ours with ``_preload_content=False`` and 4.4-4.7x with its models,
its process 50% larger (import: 50 MiB against 25); numbers in ``bench/README.md``):

- **Objects stay the JSON the API server sent.** Generated models refuse (or drop) fields they
  do not know, and edgebridge must round-trip objects from newer API versions and CRDs
  untouched; so requests are plain HTTP with dict bodies.
- **A watch costs one coroutine, not a thread.** Events are read on the event loop from the
  streamed response (no thread, queue or cross-thread hand-off per event), each line decoded
  once, and the object's own bytes kept (:mod:`cloudhub.k8s.watchlines`) so cloudhub can
  send them to edges without encoding the object again. A watch silent for its inactivity timeout is
  ended (by one timer per stream, re-armed only when it fires, not one per chunk). A slow
  consumer slows the stream (TCP back-pressure) instead of growing memory.
- **No generated client in memory.** :mod:`cloudhub.k8s.kubeconfig` reads the credentials;
  the official ``kubernetes`` package is imported only for the kubeconfigs it alone can read.
- **Errors become edgebridge's.** HTTP 404 → :class:`~wire.errors.NotFound`, 409 →
  :class:`~wire.errors.Conflict`, 410 → :class:`~wire.errors.Gone`, 400/422 →
  :class:`~wire.errors.InvalidObject`, anything else (and network failures) →
  :class:`~wire.errors.StoreError`.

Nothing here knows about edgebridge's resource types or policies (selectors, retries,
ownership): :mod:`cloudhub.store.kube_kinds` (and the store around it) and
:mod:`cloudhub.k8s.leases` decide those.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pydantic_core
from yarl import URL

from cloudhub.k8s.kubeconfig import Credentials, load_credentials
from cloudhub.k8s.watchlines import RawEvent, Silence, parse_event
from hive.metrics import Buckets
from wire.codec import dump_plain_json
from wire.errors import Conflict, Gone, InvalidObject, NotFound, StoreError

log = logging.getLogger(__name__)

Obj = dict[str, Any]

#: short calls in flight at once (connections); a status burst from many edges queues here
DEFAULT_WORKERS = 8
#: (connect, read) seconds for short calls
DEFAULT_TIMEOUT = (10.0, 30.0)
#: made once: building a ClientTimeout (an attrs class) was a fifth of a lease renewal's work
_TIMEOUT = aiohttp.ClientTimeout(connect=DEFAULT_TIMEOUT[0], sock_read=DEFAULT_TIMEOUT[1])
#: seconds an idle pooled connection stays open
KEEPALIVE = 90.0
_MERGE_PATCH = "application/merge-patch+json"
_USER_AGENT = "edgebridge-cloudhub"


@dataclass(frozen=True, slots=True)
class Resource:
    """Where a kind of object lives in the API."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, *, status: bool = False
    ) -> str:
        """The URL path of the collection (all namespaces when ``namespace`` is None) or item."""
        out = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            out += f"/namespaces/{quote(namespace, safe='')}"
        out += f"/{self.plural}"
        if name is not None:
            out += f"/{quote(name, safe='')}"
            if status:
                out += "/status"
        return out


NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True)
DEVICES = Resource("devices.kubeedge.io", "v1beta1", "devices", "Device", namespaced=True)
DEVICEMODELS = Resource(
    "devices.kubeedge.io", "v1beta1", "devicemodels", "DeviceModel", namespaced=True
)


def _message(body: bytes | str | None) -> str:
    """The ``message`` of a ``kind: Status`` body, else the body's first line."""
    if not body:
        return ""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body
    try:
        status = json.loads(text)
    except ValueError:
        return text.strip().splitlines()[0][:200] if text.strip() else ""
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return text[:200]


def map_api_error(status: int, body: bytes | str | None, reason: str, what: str) -> StoreError:
    """The edgebridge error for an API answer with HTTP ``status`` on ``what``."""
    detail = _message(body) or reason
    text = f"{what}: {detail}" if detail else what
    if status == 404:
        return NotFound(text)
    if status == 409:
        return Conflict(text)
    if status == 410:
        return Gone(text)
    if status in (400, 422):
        return InvalidObject(text)
    if status in (401, 403):
        return StoreError(
            f"{what}: the Kubernetes API refused our credentials (HTTP {status}): {detail}"
        )
    return StoreError(f"{what}: HTTP {status}: {detail}")


class KubeApi:
    """A connection to one cluster. Create with :meth:`from_config`, end with :meth:`close`."""

    def __init__(self, credentials: Credentials, *, workers: int = DEFAULT_WORKERS) -> None:
        """Args:
        credentials: where and how (see :func:`~cloudhub.k8s.kubeconfig.load_credentials`).
        workers: short calls in flight at once (8); each open watch has its own connection.
        """
        self._credentials = credentials
        self._workers = workers
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(workers)
        #: the responses of open watches, closed by :meth:`close` to end their readers
        self._watches: set[aiohttp.ClientResponse] = set()
        self._closed = False
        #: calls made by HTTP method, and how long they took (metrics)
        self.requests: Counter[str] = Counter()
        self.request_seconds = Buckets()

    @classmethod
    def from_config(
        cls,
        kubeconfig: Path | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> KubeApi:
        """Connect (lazily) with :func:`~cloudhub.k8s.kubeconfig.load_credentials`' settings.

        Raises:
            ConfigError: the configuration cannot be loaded.
        """
        return cls(load_credentials(kubeconfig, environ=environ), workers=workers)

    @property
    def host(self) -> str:
        return self._credentials.host

    async def close(self) -> None:
        """End every watch and release connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for response in list(self._watches):
            response.close()
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise StoreError("the Kubernetes connection is closed")
        if self._session is None:
            # Room for every short call and a dozen watches without waiting for a connection.
            connector = aiohttp.TCPConnector(
                limit=self._workers + 12,
                # kept open between lease renewals: a new TLS handshake costs the API server
                # more than the request it carries (aiohttp's default closes them after 15 s)
                keepalive_timeout=KEEPALIVE,
                ssl=self._credentials.ssl if self._credentials.ssl is not None else False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"Accept": "application/json", "User-Agent": _USER_AGENT},
                skip_auto_headers=("Content-Type",),
            )
        return self._session

    def _url(self, path: str, query: Mapping[str, str | int] | None) -> URL:
        url = URL(self._credentials.host + path, encoded=True)
        if query:
            url = url.with_query({k: str(v) for k, v in query.items()})
        return url

    def _options(self) -> dict[str, Any]:
        """Per-request options the credentials ask for (a proxy, a certificate name)."""
        options: dict[str, Any] = {}
        if self._credentials.proxy:
            options["proxy"] = self._credentials.proxy
        if self._credentials.server_name:
            options["server_hostname"] = self._credentials.server_name
        return options

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        token = self._credentials.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    # ------------------------------------------------------------------ short calls

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> Obj:
        """One call; the decoded JSON answer.

        Raises:
            NotFound, Conflict, Gone, InvalidObject, StoreError: as the module docstring maps them.
        """
        what = what or f"{method} {path}"
        data = await self.call(
            method, path, query=query, body=body, content_type=content_type, what=what
        )
        try:
            decoded = pydantic_core.from_json(data) if data else {}
        except ValueError as exc:
            raise StoreError(f"{what}: the API answered something not JSON: {exc}") from exc
        if not isinstance(decoded, dict):
            raise StoreError(f"{what}: the API answered {type(decoded).__name__}, not an object")
        return decoded

    async def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Obj | list[Obj] | None = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> bytes:
        """One call; the answer's bytes, undecoded (its status checked).

        Raises:
            NotFound, Conflict, Gone, InvalidObject, StoreError: as the module docstring maps them.
        """
        what = what or f"{method} {path}"
        session = self._http()
        # Bodies are plain JSON data: pydantic-core writes them in a third of the time (a
        # lease renewal, 4 a second with 20 edges, is most of an idle cloudhub's CPU).
        payload = None if body is None else dump_plain_json(body).encode()
        started = time.perf_counter()
        self.requests[method] += 1
        try:
            async with self._slots:
                async with session.request(
                    method,
                    self._url(path, query),
                    data=payload,
                    headers=self._headers(None if body is None else content_type),
                    timeout=_TIMEOUT,
                    **self._options(),
                ) as resp:
                    data = await resp.read()
                    status, reason = resp.status, resp.reason or ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if self._closed:
                raise StoreError("the Kubernetes connection is closed") from exc
            raise StoreError(f"{what}: cannot reach the Kubernetes API: {_why(exc)}") from exc
        finally:
            self.request_seconds.observe(time.perf_counter() - started)
        if not 200 <= status <= 299:
            raise map_api_error(status, data, reason, what)
        return data

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        resource_version: str = "",
        resource_version_match: str = "",
    ) -> Obj:
        """The ``...List`` object (``items``, ``metadata.resourceVersion``).

        ``resource_version`` with ``resource_version_match="NotOlderThan"``: served from the
        API server's watch cache, at least as new as that version (default: a consistent read).
        """
        query: dict[str, str | int] = {}
        if resource_version:
            query["resourceVersion"] = resource_version
        if resource_version_match:
            query["resourceVersionMatch"] = resource_version_match
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        if limit:
            query["limit"] = limit
        return await self.request(
            "GET", res.path(namespace), query=query, what=f"list {res.plural}"
        )

    async def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        return await self.request(
            "GET", res.path(namespace, name), what=_what(res, namespace, name)
        )

    async def create(
        self, res: Resource, namespace: str | None, body: Obj, *, dry_run: bool = False
    ) -> Obj:
        query = {"dryRun": "All"} if dry_run else None
        name = str((body.get("metadata") or {}).get("name", ""))
        return await self.request(
            "POST",
            res.path(namespace),
            query=query,
            body=body,
            what=f"create {_what(res, namespace, name)}",
        )

    async def replace(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        status: bool = False,
        dry_run: bool = False,
    ) -> Obj:
        """PUT the whole object (guarded by its ``metadata.resourceVersion``, if set)."""
        query = {"dryRun": "All"} if dry_run else None
        return await self.request(
            "PUT",
            res.path(namespace, name, status=status),
            query=query,
            body=body,
            what=f"update {_what(res, namespace, name)}{'/status' if status else ''}",
        )

    async def patch(
        self, res: Resource, namespace: str | None, name: str, patch: Obj, *, status: bool = False
    ) -> Obj:
        """An RFC 7386 JSON merge patch (lists replace; ``None`` deletes a key)."""
        return await self.request(
            "PATCH",
            res.path(namespace, name, status=status),
            body=patch,
            content_type=_MERGE_PATCH,
            what=f"patch {_what(res, namespace, name)}{'/status' if status else ''}",
        )

    async def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        *,
        grace_period_seconds: int | None = None,
        preconditions: Mapping[str, str] | None = None,
    ) -> Obj:
        """DELETE; the answer is the object (or a ``kind: Status``, depending on the server)."""
        options: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        if preconditions:
            options["preconditions"] = dict(preconditions)
        return await self.request(
            "DELETE",
            res.path(namespace, name),
            body=options,
            what=f"delete {_what(res, namespace, name)}",
        )

    # ------------------------------------------------------------------ watch

    async def watch(
        self,
        res: Resource,
        *,
        resource_version: str,
        timeout_seconds: int,
        inactivity_timeout: float,
        label_selector: str | None = None,
        field_selector: str | None = None,
        bookmarks: bool = True,
    ) -> AsyncGenerator[RawEvent, None]:
        """The events of ONE watch request, as :class:`RawEvent`.

        Ends when the server ends the stream (``timeout_seconds`` asks it to) or when nothing
        (no event, no bookmark) arrived for ``inactivity_timeout`` seconds; reconnecting is the
        caller's business, since only it knows the newest resourceVersion it has seen.

        Raises:
            Gone: the server answered 410 when the watch was opened.
            StoreError: the connection failed (or another mapped HTTP error).
        """
        query: dict[str, str | int] = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
        }
        if bookmarks:
            query["allowWatchBookmarks"] = "true"
        if label_selector:
            query["labelSelector"] = label_selector
        if field_selector:
            query["fieldSelector"] = field_selector
        what = f"watch {res.plural}"
        session = self._http()
        self.requests["WATCH"] += 1
        # sock_read covers the wait for the answer's headers; the stream's silence after them
        # is watched by Silence, which re-arms no timer per chunk
        timeout = aiohttp.ClientTimeout(connect=DEFAULT_TIMEOUT[0], sock_read=inactivity_timeout)
        opened: aiohttp.ClientResponse | None = None
        silence: Silence | None = None
        try:
            async with session.get(
                self._url(res.path(), query),
                headers=self._headers(None),
                timeout=timeout,
                **self._options(),
            ) as resp:
                opened = resp
                self._watches.add(resp)
                if resp.status != 200:
                    data = await resp.read()
                    raise map_api_error(resp.status, data, resp.reason or "", what)
                content = resp.content
                protocol = resp.connection.protocol if resp.connection is not None else None
                if protocol is not None:
                    # as aiohttp itself does for a websocket once it is open
                    protocol.read_timeout = None
                silence = Silence(content, inactivity_timeout, what)
                clock = asyncio.get_running_loop().time
                pending = b""
                while chunk := await content.readany():
                    silence.last = clock()
                    silence.taken += len(chunk)
                    lines = (pending + chunk if pending else chunk).split(b"\n")
                    pending = lines.pop()
                    if len(lines) > 1:
                        lines = [line for line in lines if line.strip()]
                    elif not lines or not lines[0].strip():
                        continue
                    last = len(lines) - 1
                    for i, line in enumerate(lines):
                        try:
                            event = parse_event(line, more=i < last)
                        except ValueError as exc:
                            raise StoreError(f"{what}: {exc}") from exc
                        yield event
                if pending.strip():
                    try:
                        yield parse_event(pending)
                    except ValueError as exc:
                        raise StoreError(f"{what}: {exc}") from exc
        except aiohttp.SocketTimeoutError:
            log.warning("%s: nothing for %.0fs; reconnecting", what, inactivity_timeout)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if self._closed:
                return
            raise StoreError(f"{what}: stream failed: {_why(exc)}") from exc
        finally:
            if silence is not None:
                silence.cancel()
            if opened is not None:
                self._watches.discard(opened)


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _what(res: Resource, namespace: str | None, name: str) -> str:
    if res.namespaced:
        return f"{res.kind} {namespace or 'default'}/{name}"
    return f"{res.kind} {name}"


# ------------------------------------------------------------------ JSON patch, answer unread

_JSON_PATCH = "application/json-patch+json"


async def json_patch(
    api: KubeApi, res: Resource, namespace: str | None, name: str, ops: list[Obj]
) -> None:
    """Apply an RFC 6902 JSON patch; the answer's status is checked, its body not decoded.

    For small frequent writes (lease renewals): the patch is applied atomically by the API
    server, so a ``test`` operation makes it conditional without a read or a resourceVersion,
    and the caller needs nothing from the written object.

    Raises:
        InvalidObject: a ``test`` operation failed, or a path is missing (HTTP 422).
        NotFound, Conflict, StoreError: as :func:`map_api_error` maps them.
    """
    await api.call(
        "PATCH",
        res.path(namespace, name),
        body=ops,
        content_type=_JSON_PATCH,
        what=f"patch {_what(res, namespace, name)}",
    )
