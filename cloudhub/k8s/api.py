"""Dict-in, dict-out async access to the Kubernetes API; the one module importing ``kubernetes``.

Why a layer of our own over the official client:

- **Objects stay the JSON the API server sent.** The client's typed methods turn bodies into
  generated models that refuse (or drop) fields they do not know, and edgebridge must round-trip
  objects from newer API versions and CRDs untouched. So requests go through the client's
  request machinery (configuration, TLS, token refresh from the kubeconfig, connection pool)
  with plain dicts, using the generator's ``param_serialize``/``call_api`` pair that every
  typed method uses underneath.
- **The client is synchronous.** Short calls run on a small pool of named threads owned by
  :class:`KubeApi` (not the loop's default executor, which has only ``cpu + 4`` workers on a
  2-core box and is shared with everything else). Each watch stream is read by its own named
  thread and handed to the event loop through a bounded queue, so a slow consumer slows the
  stream (TCP back-pressure) instead of growing memory.
- **Errors become edgebridge's.** HTTP 404 → :class:`~wire.errors.NotFound`, 409 →
  :class:`~wire.errors.Conflict`, 410 → :class:`~wire.errors.Gone`, 400/422 →
  :class:`~wire.errors.InvalidObject`, anything else (and network failures) →
  :class:`~wire.errors.StoreError`, each chained to the client's exception.

Nothing here knows about edgebridge's resource types or policies (selectors, retries,
ownership): :mod:`cloudhub.store.kubernetes` and :mod:`cloudhub.k8s.leases` decide those.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from hive.metrics import Buckets
from wire.errors import ConfigError, Conflict, Gone, InvalidObject, NotFound, StoreError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
_T = TypeVar("_T")

#: threads for short calls; a status burst from many edges queues behind these
DEFAULT_WORKERS = 8
#: (connect, read) seconds for short calls
DEFAULT_TIMEOUT = (10.0, 30.0)
#: bytes read from a watch stream at a time (a chunk is handed over as soon as it arrives)
_CHUNK = 64 * 1024
#: decoded events buffered between a watch thread and its consumer
_WATCH_QUEUE = 256
#: seconds between a watch thread's checks of its stop flag while the consumer is not reading
_STOP_POLL = 0.2
_MERGE_PATCH = "application/merge-patch+json"


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


def load_configuration(
    kubeconfig: Path | None = None, *, environ: Mapping[str, str] | None = None
) -> k8s_client.Configuration:
    """Client settings from ``kubeconfig``, else ``$KUBECONFIG``, else the in-cluster account.

    Raises:
        ConfigError: one line saying which source failed and why.
    """
    env = os.environ if environ is None else environ
    configuration = k8s_client.Configuration()
    if kubeconfig is not None:
        source: str | None = str(kubeconfig)
    else:
        source = env.get("KUBECONFIG") or None
    try:
        if source is not None:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=source, client_configuration=configuration, persist_config=False
            )
        else:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
    except (ConfigException, OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if source is None:
            raise ConfigError(
                "no kubeconfig given, KUBECONFIG unset, and no in-cluster service account: "
                f"{reason}"
            ) from exc
        raise ConfigError(f"cannot use kubeconfig {source}: {reason}") from exc
    return configuration


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


def map_api_error(exc: ApiException, what: str) -> StoreError:
    """The edgebridge error for a failed API call on ``what`` (chain it: ``raise ... from exc``)."""
    status = int(exc.status or 0)
    detail = _message(exc.body) or str(exc.reason or "")
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
    if status == 0:
        return StoreError(f"{what}: cannot reach the Kubernetes API: {detail}")
    return StoreError(f"{what}: HTTP {status}: {detail}")


class KubeApi:
    """A connection to one cluster. Create with :meth:`from_config`, end with :meth:`close`."""

    def __init__(
        self, configuration: k8s_client.Configuration, *, workers: int = DEFAULT_WORKERS
    ) -> None:
        """Args:
        configuration: client settings (see :func:`load_configuration`).
        workers: threads for short calls (default 8); each open watch has its own thread.
        """
        # Room for every worker and a dozen watches without waiting for a pooled connection.
        configuration.connection_pool_maxsize = max(
            configuration.connection_pool_maxsize, workers + 12
        )
        self._client = k8s_client.ApiClient(configuration)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="k8s-api"
        )
        self._watches: set[_WatchThread] = set()
        self._serial = itertools.count(1)
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
        """Connect (lazily) with :func:`load_configuration`'s settings.

        Raises:
            ConfigError: the configuration cannot be loaded.
        """
        return cls(load_configuration(kubeconfig, environ=environ), workers=workers)

    @property
    def host(self) -> str:
        return str(self._client.configuration.host)

    async def close(self) -> None:
        """Stop every watch thread and the call pool; release connections. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        watches = list(self._watches)
        for watch in watches:
            watch.stop()
            watch.wake()
        await asyncio.to_thread(_join_all, watches)
        self._executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self._client.close)

    # ------------------------------------------------------------------ short calls

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Obj | None = None,
        content_type: str = "application/json",
        what: str = "",
    ) -> Obj:
        """One call; the decoded JSON answer.

        Raises:
            NotFound, Conflict, Gone, InvalidObject, StoreError: as the module docstring maps them.
        """
        if self._closed:
            raise StoreError("the Kubernetes connection is closed")
        call = functools.partial(self._request_sync, method, path, query, body, content_type)
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self.requests[method] += 1
        try:
            return await loop.run_in_executor(self._executor, call)
        except ApiException as exc:
            raise map_api_error(exc, what or f"{method} {path}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreError(f"{what or path}: cannot reach the Kubernetes API: {exc}") from exc
        except RuntimeError as exc:  # the pool was shut down under us
            raise StoreError("the Kubernetes connection is closed") from exc
        finally:
            self.request_seconds.observe(time.perf_counter() - started)

    def _open(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int] | None,
        body: Obj | None,
        content_type: str,
        timeout: tuple[float, float],
    ) -> urllib3.BaseHTTPResponse:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = [(k, str(v)) for k, v in (query or {}).items()]
        verb, url, headers, payload, post = self._client.param_serialize(
            method=method,
            resource_path=path,
            query_params=params,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(
            verb, url, headers, payload, post, _request_timeout=timeout
        )
        if not 200 <= response.status <= 299:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiException(http_resp=response)
        raw: urllib3.BaseHTTPResponse = response.response
        return raw

    def _request_sync(
        self,
        method: str,
        path: str,
        query: Mapping[str, str | int] | None,
        body: Obj | None,
        content_type: str,
    ) -> Obj:
        raw = self._open(method, path, query, body, content_type, DEFAULT_TIMEOUT)
        try:
            data = raw.data
        finally:
            raw.release_conn()
        decoded = json.loads(data) if data else {}
        if not isinstance(decoded, dict):
            raise StoreError(
                f"{method} {path}: the API answered {type(decoded).__name__}, not an object"
            )
        return decoded

    async def list(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> Obj:
        """The ``...List`` object (``items``, ``metadata.resourceVersion``)."""
        query: dict[str, str | int] = {}
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
    ) -> AsyncGenerator[Obj, None]:
        """The raw events (``{"type": ..., "object": ...}``) of ONE watch request.

        Ends when the server ends the stream (``timeout_seconds`` asks it to) or when nothing
        (no event, no bookmark) arrived for ``inactivity_timeout`` seconds; reconnecting is the
        caller's business, since only it knows the newest resourceVersion it has seen.

        Raises:
            Gone: the server answered 410 when the watch was opened.
            StoreError: the connection failed (or another mapped HTTP error).
        """
        if self._closed:
            raise StoreError("the Kubernetes connection is closed")
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
        # The socket read timeout backs up the inactivity timer should the loop side be starved.
        timeout = (DEFAULT_TIMEOUT[0], inactivity_timeout + 5.0)
        opener = functools.partial(self._open, "GET", res.path(), query, None, "", timeout)
        thread = _WatchThread(
            opener, asyncio.get_running_loop(), name=f"k8s-watch-{res.plural}-{next(self._serial)}"
        )
        self._watches.add(thread)
        thread.start()
        try:
            while True:
                try:
                    kind, payload = await asyncio.wait_for(thread.queue.get(), inactivity_timeout)
                except TimeoutError:
                    log.warning("%s: nothing for %.0fs; reconnecting", what, inactivity_timeout)
                    return
                if kind == "event":
                    yield payload
                elif kind in ("end", "closed"):
                    return
                elif isinstance(payload, ApiException):
                    raise map_api_error(payload, what) from payload
                elif self._closed:
                    return
                else:
                    raise StoreError(f"{what}: stream failed: {payload}") from payload
        finally:
            thread.stop()
            self._watches.discard(thread)


class _WatchThread(threading.Thread):
    """Reads one watch response line by line and posts ``(kind, payload)`` to the loop.

    kinds: ``event`` (a decoded line), ``end`` (the server closed the stream cleanly),
    ``error`` (an exception), ``closed`` (posted by :meth:`wake`: the connection is closing).
    :meth:`stop` unblocks a read in progress by shutting the socket down.
    """

    def __init__(
        self,
        opener: Callable[[], urllib3.BaseHTTPResponse],
        loop: asyncio.AbstractEventLoop,
        *,
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(_WATCH_QUEUE)
        self._opener = opener
        self._loop = loop
        self._stopping = threading.Event()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._lock = threading.Lock()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            response = self._response
        if response is not None:
            shutdown = getattr(response, "shutdown", None)
            with contextlib.suppress(Exception):
                if shutdown is not None:
                    shutdown()

    def wake(self) -> None:
        """Tell the consumer the stream is closed (call on the loop's thread)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(("closed", None))

    def run(self) -> None:
        response = None
        try:
            response = self._opener()
            with self._lock:
                self._response = response
            if self._stopping.is_set():
                return
            for line in _lines(response):
                if not self._post("event", json.loads(line)):
                    return
            self._post("end", None)
        except BaseException as exc:
            if not self._stopping.is_set():
                self._post("error", exc)
        finally:
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
                with contextlib.suppress(Exception):
                    response.release_conn()

    def _post(self, kind: str, payload: Any) -> bool:
        """Hand one item to the loop, waiting while the queue is full; False once stopped."""
        try:
            future = asyncio.run_coroutine_threadsafe(self.queue.put((kind, payload)), self._loop)
        except RuntimeError:  # the loop is closed
            return False
        while True:
            try:
                future.result(_STOP_POLL)
                return True
            except concurrent.futures.TimeoutError:
                if self._stopping.is_set():
                    future.cancel()
                    return False
            except (concurrent.futures.CancelledError, RuntimeError):
                return False


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """Non-empty lines of a streamed body, each as soon as its newline arrives."""
    pending = b""
    for chunk in response.stream(_CHUNK, decode_content=True):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _join_all(threads: list[_WatchThread]) -> None:
    for thread in threads:
        thread.join(timeout=2.0)
        if thread.is_alive():
            log.warning("watch thread %s did not stop within 2s", thread.name)


def _what(res: Resource, namespace: str | None, name: str) -> str:
    if res.namespaced:
        return f"{res.kind} {namespace or 'default'}/{name}"
    return f"{res.kind} {name}"
