"""The ``edged`` module: runs the pods bound to this node through a CRI runtime. A pump.

Each round (on a cache change, when a back-off or probe is due, else every
``sync_interval``):

1. read the desired pods from the SQLite cache (what metamanager committed; works offline
   and right after a reboot, before the cloud is back);
2. observe the runtime: sandboxes and containers carrying this node's labels
   (:mod:`edgecore.edged.labels`), so a restarted edgecore finds and keeps what it started
   before (re-adoption needs no local state: the labels and annotations are the state);
3. :func:`edgecore.edged.sync.plan` decides; each pod's actions run as one task (pods in
   parallel, at most ``parallel_pods`` at once; a pod with a task under way is left alone);
4. probes that are due run; a liveness failure kills the container (the plan restarts it);
5. each pod's kubelet-shaped status (:mod:`edgecore.edged.status`) that changed goes into the
   durable outbox (:mod:`edgecore.edged.statusbox`) and, while connected, to the cloud as
   ``update {ns}/podstatus/{name}``; the cloud's answer deletes the row.

Image pulls follow ``imagePullPolicy``; a pull that fails holds the container back with
kubelet's back-off and shows ``ErrImagePull`` then ``ImagePullBackOff`` with the runtime's
reason. ``Always`` with no registry reachable uses the image already in the local store (an
offline gateway could otherwise never restart its pods) and logs that it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from edgecore.config import RuntimeSettings
from edgecore.edged import configs, volumes
from edgecore.edged import labels as L
from edgecore.edged.cri import api_pb2 as pb
from edgecore.edged.cri.client import CriClient
from edgecore.edged.podspec import Container, Pod, container_hash, parse_pod
from edgecore.edged.probes import ProbeState
from edgecore.edged.status import (
    ContainerView,
    Terminated,
    invalid_status,
    pod_status,
    terminated_reason,
)
from edgecore.edged.statusbox import StatusBox, StatusRow
from edgecore.edged.sync import (
    Action,
    Backoff,
    CreateSandbox,
    DesiredContainer,
    DesiredPod,
    KillContainer,
    KillSandbox,
    ObservedContainer,
    ObservedSandbox,
    RemoveContainer,
    StartContainer,
    plan,
    should_restart,
)
from edgecore.metamanager.store import MetaStore
from hive.bus import Bus
from wire.errors import BridgeError, ContainerRuntimeError, InvalidObject, RuntimeNotFound
from wire.messages import Message, Operation

log = logging.getLogger(__name__)

NAME = "edged"
GROUP = "edged"
HUB = "edgehub"
#: how long a failed pull shows ``ErrImagePull`` before ``ImagePullBackOff``, seconds
ERR_IMAGE_PULL_SHOWN = 2.0
_STATES = {
    pb.CONTAINER_CREATED: "created",
    pb.CONTAINER_RUNNING: "running",
    pb.CONTAINER_EXITED: "exited",
    pb.CONTAINER_UNKNOWN: "unknown",
}


class ImageError(BridgeError):
    """An image that cannot be had; ``reason`` is kubelet's (``ErrImagePull``, …)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class _Failure:
    """Why a container could not be started, and when to try again."""

    reason: str
    message: str
    at: float
    count: int
    until: float


@dataclass(slots=True)
class _Details:
    """ContainerStatus of one container instance (final once it exited)."""

    started_at: float
    finished_at: float
    exit_code: int
    reason: str
    message: str
    image_ref: str
    final: bool


@dataclass(slots=True)
class _Observed:
    sandboxes: list[ObservedSandbox]
    containers: list[ObservedContainer]
    sandbox_ip: dict[str, str] = field(default_factory=dict)


def _seconds(ns: int) -> float:
    return ns / 1e9 if ns else 0.0


class Edged:
    """Runs the pods bound to ``node_name`` through the CRI runtime at ``settings.endpoint``."""

    name = NAME
    group = GROUP

    def __init__(
        self,
        *,
        bus: Bus,
        store: MetaStore,
        settings: RuntimeSettings,
        node_name: str,
        db_path: Path,
        pod_dir: Path,
        host_ip: Callable[[], str | None] = lambda: None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self._bus = bus
        self._store = store
        self._settings = settings
        self._node = node_name
        self._db_path = db_path
        self._pod_dir = pod_dir
        self._host_ip = host_ip
        self._backoff = Backoff(initial=settings.restart_backoff, cap=settings.restart_backoff_cap)
        self._cri: CriClient | None = None
        self._box: StatusBox | None = None
        self._dirty = asyncio.Event()
        self._refs_changed = True
        self._connected = False
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.parallel_pods)
        self._failures: dict[tuple[str, str], _Failure] = {}
        self._details: dict[str, _Details] = {}
        self._sandbox_ip: dict[str, str] = {}
        self._probes: dict[tuple[str, str], ProbeState] = {}
        self._probing: set[tuple[str, str]] = set()
        self._probe_tasks: set[asyncio.Task[None]] = set()
        self._sent: dict[str, dict[str, Any]] = {}
        self._in_flight: dict[str, tuple[str, int]] = {}
        self._start_times: dict[str, float] = {}
        self._http: aiohttp.ClientSession | None = None
        #: (cache key, resourceVersion) -> the pod parsed, its container hashes, sandbox hash
        self._parsed: dict[tuple[str, str], tuple[Pod, tuple[DesiredContainer, ...], str]] = {}
        self._hashes: dict[str, tuple[tuple[DesiredContainer, ...], str]] = {}
        self._last_round = 0.0
        self._runtime_ok = True
        self._announce = False
        #: status messages the cloud answered (tests and benches)
        self.delivered = 0
        #: rounds done (tests and metrics)
        self.rounds = 0
        #: containers started / killed by this process (tests and benches)
        self.started = 0
        self.killed = 0
        self.synced = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        self._cri = CriClient(self._settings.endpoint, timeout=self._settings.call_timeout)
        self._box = await StatusBox.open(self._db_path)
        self._http = aiohttp.ClientSession()
        try:
            version = await self._cri.version()
            log.info(
                "edged: running pods through %s %s (CRI %s at %s)",
                version.runtime_name,
                version.runtime_version,
                version.runtime_api_version,
                self._settings.endpoint,
            )
        except ContainerRuntimeError as exc:
            log.warning("edged: the runtime at %s does not answer yet: %s", self._cri.endpoint, exc)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_cache(), name="edged:cache")
                tg.create_task(self._serve_inbox(), name="edged:inbox")
                tg.create_task(self._sync_forever(), name="edged:sync")
        finally:
            for task in [*self._busy.values(), *self._probe_tasks]:
                task.cancel()
            await self._http.close()
            await self._cri.close()
            await self._box.close()

    async def _watch_cache(self) -> None:
        while True:
            async with self._store.subscribe() as sub:
                async for event in sub:
                    kind = event.key.split("/", 2)[1] if event.key.count("/") >= 2 else ""
                    if kind in ("configmap", "secret"):
                        self._refs_changed = True
                        self._dirty.set()
                    elif kind == "pod":
                        self._dirty.set()
            self._refs_changed = True
            self._dirty.set()

    async def _serve_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            op = msg.operation
            if op == "connected":
                self._connected = True
                self._in_flight.clear()
                self._announce = True
                await self._send_pending()
            elif op == "disconnected":
                self._connected = False
                self._in_flight.clear()
            elif op in (Operation.RESPONSE, Operation.ERROR):
                sent = self._in_flight.pop(msg.parent_id, None)
                if sent is None:
                    continue
                if op == Operation.ERROR:
                    log.warning("cloud refused the status of pod %s: %s", sent[0], msg.content)
                assert self._box is not None
                await self._box.delivered(*sent)
                self.delivered += 1
                if self._announce and not self._in_flight:
                    self._announce = False  # once per connection: the catch-up is over
                    log.info("edged: the cloud has the status of every pod (%d)", self.delivered)

    # --- the sync loop ---------------------------------------------------------------------

    async def _sync_forever(self) -> None:
        wake_at: float | None = None
        while True:
            timeout = self._settings.sync_interval
            if wake_at is not None:
                timeout = max(0.0, min(timeout, wake_at - time.time()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._dirty.wait()
            if self._busy:
                # pods are being changed: their completions come in bursts; one round per
                # ``busy_round_gap`` serves them all and leaves the CPU to the runtime
                gap = self._last_round + self._settings.busy_round_gap - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
            self._dirty.clear()
            self._last_round = time.monotonic()
            try:
                wake_at = await self.sync_once()
                if not self._runtime_ok:
                    log.info("edged: the runtime answers again")
                    self._runtime_ok = True
            except ContainerRuntimeError as exc:
                if self._runtime_ok:  # once per outage, not every second
                    log.warning("edged: runtime call failed (retrying every second): %s", exc)
                    self._runtime_ok = False
                wake_at = time.time() + 1.0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("edged: sync round failed")
                wake_at = time.time() + 1.0

    async def sync_once(self) -> float | None:
        """One round; returns when it wants the next one at the latest."""
        now = time.time()
        pods, invalid = await self._desired()
        observed = await self._observe()
        desired = [self._desired_pod(p, now) for p in pods.values()]
        result = plan(
            desired, observed.sandboxes, observed.containers, now=now, backoff=self._backoff
        )
        if self.rounds == 0:
            kept = sum(c.state == "running" for c in observed.containers)
            log.info(
                "edged: first sync: %d pods bound here, %d sandboxes and %d running containers "
                "found in the runtime (re-adopted), %d pods to change",
                len(pods),
                len(observed.sandboxes),
                kept,
                len(result.actions),
            )
        for key, actions in result.actions.items():
            if key in self._busy:
                continue
            pod = pods.get(key)
            self._busy[key] = asyncio.create_task(
                self._execute(key, pod, actions), name=f"edged:{key}"
            )
        if self._refs_changed:
            self._refs_changed = False
            await self._refresh_volumes(pods, observed)
        probe_wake = await self._probe(pods, observed, now)
        await self._report(pods, invalid, observed, result.backing_off, now)
        self._forget(pods, observed)
        self.rounds += 1
        self.synced.set()
        wakes = [w for w in (result.wake_at, probe_wake) if w is not None]
        for f in self._failures.values():
            if f.until > now:
                wakes.append(f.until)
                wakes.append(f.at + ERR_IMAGE_PULL_SHOWN)
        return min(wakes) if wakes else None

    async def _desired(self) -> tuple[dict[str, Pod], dict[str, tuple[str, str]]]:
        """Valid pods bound here (by ``ns/name``), and invalid ones: key -> (uid, message)."""
        pods: dict[str, Pod] = {}
        invalid: dict[str, tuple[str, str]] = {}
        parsed: dict[tuple[str, str], tuple[Pod, tuple[DesiredContainer, ...], str]] = {}
        for key, rv, obj in await self._store.items("pod"):
            cached = self._parsed.get((key, rv))
            if cached is not None:  # unchanged since the last round: no validation again
                parsed[(key, rv)] = cached
                pods[cached[0].key] = cached[0]
                continue
            spec = obj.get("spec") or {}
            meta = obj.get("metadata") or {}
            if not isinstance(spec, dict) or spec.get("nodeName") != self._node:
                continue
            if meta.get("deletionTimestamp"):
                continue  # terminating: its sandbox is not desired any more
            try:
                pod = parse_pod(obj)
            except InvalidObject as exc:
                key = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
                invalid[key] = (str(meta.get("uid") or ""), str(exc))
                continue
            pods[pod.key] = pod
            hashes = tuple(
                DesiredContainer(c.name, container_hash(pod, c)) for c in pod.spec.containers
            )
            parsed[(key, rv)] = (pod, hashes, configs.sandbox_hash(pod))
        self._parsed = parsed
        self._hashes = {v[0].key: (v[1], v[2]) for v in parsed.values()}
        return pods, invalid

    def _desired_pod(self, pod: Pod, now: float) -> DesiredPod:
        hold = {
            c.name: f.until
            for c in pod.spec.containers
            if (f := self._failures.get((pod.metadata.uid, c.name))) is not None and f.until > now
        }
        return DesiredPod(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            containers=self._hashes[pod.key][0],
            restart_policy=pod.spec.restartPolicy,
            grace_seconds=pod.spec.terminationGracePeriodSeconds,
            sandbox_hash=self._hashes[pod.key][1],
            hold=hold,
        )

    async def _observe(self) -> _Observed:
        cri = self._runtime
        selector = L.managed_selector(self._node)
        boxes, items = await asyncio.gather(
            cri.list_pod_sandbox(labels=selector), cri.list_containers(labels=selector)
        )
        sandboxes = []
        for sb in boxes:
            ann = sb.annotations
            try:
                base = {
                    str(k): int(v)
                    for k, v in json.loads(ann.get(configs.RESTART_BASE, "{}")).items()
                }
            except (ValueError, AttributeError):
                base = {}
            sandboxes.append(
                ObservedSandbox(
                    id=sb.id,
                    namespace=sb.metadata.namespace,
                    name=sb.metadata.name,
                    uid=sb.metadata.uid,
                    ready=sb.state == pb.SANDBOX_READY,
                    attempt=sb.metadata.attempt,
                    created_at=_seconds(sb.created_at),
                    sandbox_hash=ann.get(configs.SANDBOX_HASH, ""),
                    grace_seconds=int(ann.get(L.TERMINATION_GRACE, "30") or 30),
                    restart_base=base,
                )
            )
        ready = [
            sb.id for sb in boxes if sb.state == pb.SANDBOX_READY and sb.id not in self._sandbox_ip
        ]
        if ready:
            statuses = await asyncio.gather(
                *(cri.pod_sandbox_status(i) for i in ready), return_exceptions=True
            )
            for sid, st in zip(ready, statuses, strict=True):
                if isinstance(st, pb.PodSandboxStatusResponse):
                    self._sandbox_ip[sid] = st.status.network.ip
        need = [
            c.id
            for c in items
            if c.id not in self._details
            or (not self._details[c.id].final and c.state != pb.CONTAINER_RUNNING)
        ]
        if need:
            details = await asyncio.gather(
                *(cri.container_status(i) for i in need), return_exceptions=True
            )
            for cid, cs in zip(need, details, strict=True):
                if isinstance(cs, pb.ContainerStatus):
                    self._details[cid] = _Details(
                        started_at=_seconds(cs.started_at),
                        finished_at=_seconds(cs.finished_at),
                        exit_code=cs.exit_code,
                        reason=cs.reason,
                        message=cs.message,
                        image_ref=cs.image_ref,
                        final=cs.state == pb.CONTAINER_EXITED,
                    )
        containers = []
        for c in items:
            d = self._details.get(c.id)
            containers.append(
                ObservedContainer(
                    id=c.id,
                    sandbox_id=c.pod_sandbox_id,
                    name=c.metadata.name,
                    state=_STATES.get(c.state, "unknown"),  # type: ignore[arg-type]
                    attempt=c.metadata.attempt,
                    spec_hash=c.annotations.get(L.SPEC_HASH, ""),
                    exit_code=d.exit_code if d else 0,
                    started_at=d.started_at if d else 0.0,
                    finished_at=d.finished_at if d else 0.0,
                )
            )
        return _Observed(
            sandboxes, containers, {s.id: self._sandbox_ip.get(s.id, "") for s in sandboxes}
        )

    @property
    def _runtime(self) -> CriClient:
        assert self._cri is not None, "edged is not running"
        return self._cri

    # --- executing actions ----------------------------------------------------------------

    async def _execute(self, key: str, pod: Pod | None, actions: list[Action]) -> None:
        try:
            async with self._slots:
                for action in actions:
                    await self._do(pod, action)
        except asyncio.CancelledError:
            raise
        except ContainerRuntimeError as exc:
            log.warning("pod %s: %s", key, exc)
        except Exception:
            log.exception("pod %s: action failed", key)
        finally:
            self._busy.pop(key, None)
            self._dirty.set()

    async def _do(self, pod: Pod | None, action: Action) -> None:
        cri = self._runtime
        if isinstance(action, CreateSandbox):
            assert pod is not None
            config = self._sandbox_config(pod, action.attempt, action.restart_base)
            sandbox_id = await cri.run_pod_sandbox(config)
            self._start_times.setdefault(pod.metadata.uid, time.time())
            log.info(
                "pod %s: sandbox %s ready (attempt %d)", action.key, sandbox_id[:12], action.attempt
            )
            # its containers at once, as kubelet's SyncPod does (not one sync round later)
            now = time.time()
            for c in pod.spec.containers:
                held = self._failures.get((pod.metadata.uid, c.name))
                if held is not None and held.until > now:
                    continue
                attempt = action.restart_base.get(c.name, 0)
                await self._start_container(
                    pod, StartContainer(action.key, action.uid, sandbox_id, c.name, attempt)
                )
        elif isinstance(action, StartContainer):
            assert pod is not None
            await self._start_container(pod, action)
        elif isinstance(action, KillContainer):
            await self._kill_container(action.container_id, action.grace_seconds)
            log.info(
                "pod %s: container %s killed (%s)",
                action.key,
                action.container_id[:12],
                action.reason,
            )
        elif isinstance(action, RemoveContainer):
            with contextlib.suppress(RuntimeNotFound):
                await cri.remove_container(action.container_id)
            self._details.pop(action.container_id, None)
        elif isinstance(action, KillSandbox):
            await asyncio.gather(
                *(self._kill_container(c, action.grace_seconds) for c in action.container_ids)
            )
            with contextlib.suppress(RuntimeNotFound):
                await cri.stop_pod_sandbox(action.sandbox_id)
            with contextlib.suppress(RuntimeNotFound):
                await cri.remove_pod_sandbox(action.sandbox_id)
            self._sandbox_ip.pop(action.sandbox_id, None)
            log.info(
                "pod %s: sandbox %s removed (%s)", action.key, action.sandbox_id[:12], action.reason
            )

    async def _kill_container(self, container_id: str, grace: int) -> None:
        cri = self._runtime
        with contextlib.suppress(RuntimeNotFound):
            await cri.stop_container(container_id, grace)
        with contextlib.suppress(RuntimeNotFound):
            await cri.remove_container(container_id)
        self._details.pop(container_id, None)
        self.killed += 1

    def _sandbox_config(
        self, pod: Pod, attempt: int, restart_base: dict[str, int] | Any = None
    ) -> pb.PodSandboxConfig:
        return configs.sandbox_config(
            pod,
            node_name=self._node,
            pod_log_dir=self._settings.pod_log_dir,
            attempt=attempt,
            restart_base=restart_base,
        )

    def _lookup(self) -> tuple[configs.Lookup, Callable[[Pod], Awaitable[None]]]:
        """A lookup of cached configmaps/secrets, and the coroutine that fills it for a pod."""
        cache: dict[str, dict[str, Any] | None] = {}

        def lookup(kind: str, ns: str, name: str) -> dict[str, Any] | None:
            return cache.get(f"{ns}/{kind}/{name}")

        async def fill(pod: Pod) -> None:
            for key in _references(pod):
                if key not in cache:
                    cache[key] = await self._store.get(key)

        return lookup, fill

    async def _start_container(self, pod: Pod, action: StartContainer) -> None:
        container = next(c for c in pod.spec.containers if c.name == action.name)
        fkey = (pod.metadata.uid, container.name)
        now = time.time()
        lookup, fill = self._lookup()
        await fill(pod)
        try:
            image_ref = await self._ensure_image(container)
        except ImageError as exc:
            previous = self._failures.get(fkey)
            count = previous.count + 1 if previous and previous.reason == exc.reason else 1
            delay = min(
                self._settings.image_backoff_cap,
                self._settings.image_backoff * 2 ** (count - 1),
            )
            self._failures[fkey] = _Failure(exc.reason, str(exc), now, count, now + delay)
            log.warning("pod %s: container %s: %s: %s", action.key, container.name, exc.reason, exc)
            return
        try:
            env = configs.resolve_env(container, pod.metadata.namespace, lookup)
            paths = await asyncio.to_thread(volumes.prepare_volumes, self._pod_dir, pod, lookup)
        except configs.ConfigRefError as exc:
            self._failures[fkey] = _Failure(
                "CreateContainerConfigError", str(exc), now, 1, now + self._settings.sync_interval
            )
            log.warning("pod %s: container %s: %s", action.key, container.name, exc)
            return
        config = configs.container_config(
            pod,
            container,
            node_name=self._node,
            attempt=action.attempt,
            image_ref=image_ref,
            env=env,
            mounts=volumes.mounts(container, paths),
        )
        sandbox_config = self._sandbox_config(pod, 0)
        cri = self._runtime
        try:
            cid = await cri.create_container(action.sandbox_id, config, sandbox_config)
        except ContainerRuntimeError as exc:
            self._failures[fkey] = _Failure("CreateContainerError", exc.reason, now, 1, now + 1.0)
            raise
        try:
            await cri.start_container(cid)
        except ContainerRuntimeError as exc:
            # it exists, exited; its status shows why (StartError) and the policy restarts it
            log.warning(
                "pod %s: container %s did not start: %s", action.key, container.name, exc.reason
            )
            self._failures[fkey] = _Failure("RunContainerError", exc.reason, now, 1, now)
            return
        self._failures.pop(fkey, None)
        self.started += 1
        log.info(
            "pod %s: container %s started (%s, restart %d)",
            action.key,
            container.name,
            cid[:12],
            action.attempt,
        )

    async def _ensure_image(self, container: Container) -> str:
        cri = self._runtime
        image = container.image
        present = await cri.image_status(image)
        policy = container.pull_policy
        if present is not None and policy != "Always":
            return present.id
        if present is None and policy == "Never":
            raise ImageError(
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
        try:
            return await cri.pull_image(image, timeout=self._settings.pull_timeout)
        except ContainerRuntimeError as exc:
            if present is not None:
                log.info("image %s: pull failed (%s); using the local copy", image, exc.reason)
                return present.id
            raise ImageError("ErrImagePull", exc.reason) from exc

    async def _refresh_volumes(self, pods: dict[str, Pod], observed: _Observed) -> None:
        """Rewrite configMap/secret volume files of running pods whose sources changed."""
        live = {sb.uid for sb in observed.sandboxes if sb.ready}
        lookup, fill = self._lookup()
        for pod in pods.values():
            if pod.metadata.uid not in live or not pod.spec.volumes:
                continue
            await fill(pod)
            with contextlib.suppress(configs.ConfigRefError, OSError):
                await asyncio.to_thread(volumes.prepare_volumes, self._pod_dir, pod, lookup)

    # --- probes -----------------------------------------------------------------------------

    async def _probe(self, pods: dict[str, Pod], observed: _Observed, now: float) -> float | None:
        running = {}
        for c in observed.containers:
            if c.state == "running":
                running[c.id] = c
        by_uid = {sb.id: sb for sb in observed.sandboxes}
        wake: float | None = None
        jobs = []
        live_keys = set()
        for c in running.values():
            sb = by_uid.get(c.sandbox_id)
            pod = pods.get(f"{sb.namespace}/{sb.name}") if sb else None
            if pod is None or sb is None or pod.metadata.uid != sb.uid:
                continue
            spec = next((s for s in pod.spec.containers if s.name == c.name), None)
            if spec is None:
                continue
            started = c.started_at or now
            for kind, probe in (
                ("liveness", spec.livenessProbe),
                ("readiness", spec.readinessProbe),
            ):
                if probe is None:
                    continue
                pkey = (c.id, kind)
                live_keys.add(pkey)
                state = self._probes.get(pkey)
                if state is None:
                    make = ProbeState.liveness if kind == "liveness" else ProbeState.readiness
                    state = self._probes[pkey] = make(probe, started)
                due = state.due_at()
                if due <= now and pkey not in self._probing:
                    self._probing.add(pkey)
                    jobs.append(self._run_probe(pkey, state, c, pod, spec, kind, observed))
                    due = now + probe.periodSeconds
                wake = due if wake is None else min(wake, due)
        for pkey in list(self._probes):
            if pkey not in live_keys:
                del self._probes[pkey]
        for job in jobs:
            task = asyncio.create_task(job, name="edged:probe")
            self._probe_tasks.add(task)
            task.add_done_callback(self._probe_tasks.discard)
        return wake

    async def _run_probe(
        self,
        pkey: tuple[str, str],
        state: ProbeState,
        c: ObservedContainer,
        pod: Pod,
        spec: Container,
        kind: str,
        observed: _Observed,
    ) -> None:
        probe = state.probe
        ok, message = False, ""
        try:
            if probe.exec is not None:
                res = await self._runtime.exec_sync(
                    c.id, probe.exec.command, timeout_seconds=max(1, int(probe.timeoutSeconds))
                )
                ok = res.exit_code == 0
                message = (res.stdout + res.stderr).decode(errors="replace").strip()[:200]
            elif probe.httpGet is not None:
                ok, message = await self._http_probe(
                    pod,
                    spec,
                    probe.httpGet,
                    observed.sandbox_ip.get(c.sandbox_id, ""),
                    probe.timeoutSeconds,
                )
            else:
                ok = True
        except (ContainerRuntimeError, OSError, TimeoutError, aiohttp.ClientError) as exc:
            ok, message = False, str(exc)[:200]
        finally:
            self._probing.discard(pkey)
        changed = state.record(ok, time.time(), message)
        if kind == "liveness" and not state.passing:
            log.info(
                "pod %s: container %s failed its liveness probe (%s); killing it",
                pod.key,
                spec.name,
                message,
            )
            self._probes.pop(pkey, None)
            with contextlib.suppress(ContainerRuntimeError):
                await self._runtime.stop_container(c.id, pod.spec.terminationGracePeriodSeconds)
            self._details.pop(c.id, None)
            self._dirty.set()
        elif changed:
            self._dirty.set()

    async def _http_probe(
        self, pod: Pod, spec: Container, action: Any, pod_ip: str, timeout: float
    ) -> tuple[bool, str]:
        port = action.port
        if isinstance(port, str):
            port = next((p.containerPort for p in spec.ports if p.name == port), 0)
        host = action.host or (pod_ip if pod_ip and not pod.spec.hostNetwork else "127.0.0.1")
        url = f"{action.scheme.lower()}://{host}:{port}{action.path}"
        assert self._http is not None
        async with self._http.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False
        ) as res:
            return 200 <= res.status < 400, f"HTTP probe {url}: {res.status}"

    # --- status ---------------------------------------------------------------------------

    async def _report(
        self,
        pods: dict[str, Pod],
        invalid: dict[str, tuple[str, str]],
        observed: _Observed,
        backing_off: dict[tuple[str, str], float],
        now: float,
    ) -> None:
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for key, (uid, message) in invalid.items():
            status = invalid_status(message, now=now)
            if self._changed(key, status):
                rows.append((key, uid, status))
        sandboxes_by_uid: dict[str, list[ObservedSandbox]] = {}
        for sb in observed.sandboxes:
            sandboxes_by_uid.setdefault(sb.uid, []).append(sb)
        host_ip = self._host_ip() or ""
        for key, pod in pods.items():
            if key in self._busy and key in self._sent:
                continue  # being changed: its next status comes when the change is done
            uid = pod.metadata.uid
            boxes = [sb for sb in sandboxes_by_uid.get(uid, []) if sb.ready]
            current = max(boxes, key=lambda sb: (sb.attempt, sb.created_at), default=None)
            pod_ip = ""
            if current is not None:
                pod_ip = (
                    host_ip if pod.spec.hostNetwork else observed.sandbox_ip.get(current.id, "")
                )
            views = {}
            for spec in pod.spec.containers:
                views[spec.name] = self._view(pod, spec, current, observed, backing_off, now)
            start = self._start_times.setdefault(uid, current.created_at if current else now)
            status = pod_status(
                pod,
                views,
                pod_ip=pod_ip,
                host_ip=host_ip,
                start_time=start,
                now=now,
                previous=self._sent.get(key),
            )
            if self._changed(key, status):
                rows.append((key, uid, status))
        if rows:
            assert self._box is not None
            written = await self._box.put(rows)
            for row in written:
                self._sent[row.key] = row.status
            if self._connected:
                for row in written:
                    await self._send(row)

    def _changed(self, key: str, status: dict[str, Any]) -> bool:
        return self._sent.get(key) != status

    def _view(
        self,
        pod: Pod,
        spec: Container,
        sandbox: ObservedSandbox | None,
        observed: _Observed,
        backing_off: dict[tuple[str, str], float],
        now: float,
    ) -> ContainerView:
        failure = self._failures.get((pod.metadata.uid, spec.name))
        mine = sorted(
            (
                c
                for c in observed.containers
                if sandbox is not None and c.sandbox_id == sandbox.id and c.name == spec.name
            ),
            key=lambda c: (c.attempt, c.started_at),
        )
        latest = mine[-1] if mine else None
        previous = mine[-2] if len(mine) > 1 else None
        base = sandbox.restart_base.get(spec.name, 0) if sandbox else 0
        waiting_reason, waiting_message = "ContainerCreating", ""
        if failure is not None and (latest is None or latest.state != "running"):
            waiting_reason, waiting_message = failure.reason, failure.message
            if failure.reason == "ErrImagePull" and now >= failure.at + ERR_IMAGE_PULL_SHOWN:
                waiting_reason = "ImagePullBackOff"
                waiting_message = f'Back-off pulling image "{spec.image}": {failure.message}'
        if latest is None:
            return ContainerView(
                spec.name,
                spec.image,
                waiting_reason=waiting_reason,
                waiting_message=waiting_message,
                restart_count=base,
            )
        d = self._details.get(latest.id)
        image_id = d.image_ref if d else ""
        last = self._terminated(previous) if previous and previous.state == "exited" else None
        restarts = max(latest.attempt, base)
        if latest.state == "running":
            ready = True
            probe = self._probes.get((latest.id, "readiness"))
            if spec.readinessProbe is not None:
                ready = probe is not None and probe.passing
            return ContainerView(
                spec.name,
                spec.image,
                container_id=latest.id,
                image_id=image_id,
                state="running",
                started_at=latest.started_at,
                restart_count=restarts,
                ready=ready,
                last=last,
            )
        if latest.state in ("exited", "unknown"):
            term = self._terminated(latest)
            will = should_restart(pod.spec.restartPolicy, latest.exit_code)
            due = backing_off.get((pod.key, spec.name))
            if due is not None:
                return ContainerView(
                    spec.name,
                    spec.image,
                    container_id=latest.id,
                    image_id=image_id,
                    state="waiting",
                    waiting_reason="CrashLoopBackOff",
                    waiting_message=(
                        f"back-off {max(0, round(due - latest.finished_at))}s restarting failed "
                        f"container={spec.name} pod={pod.metadata.name}_{pod.metadata.namespace}"
                        f"({pod.metadata.uid})"
                    ),
                    restart_count=restarts,
                    last=term,
                    will_restart=True,
                )
            return ContainerView(
                spec.name,
                spec.image,
                container_id=latest.id,
                image_id=image_id,
                state="terminated",
                terminated=term,
                restart_count=restarts,
                last=last,
                will_restart=will,
            )
        return ContainerView(
            spec.name,
            spec.image,
            container_id=latest.id,
            image_id=image_id,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            restart_count=restarts,
            last=last,
        )

    def _terminated(self, c: ObservedContainer) -> Terminated:
        d = self._details.get(c.id)
        code = d.exit_code if d else c.exit_code
        return Terminated(
            exit_code=code,
            reason=terminated_reason(code, d.reason if d else ""),
            message=(d.message if d else "")[:1000],
            started_at=c.started_at,
            finished_at=c.finished_at,
            container_id=c.id,
        )

    async def _send_pending(self) -> None:
        assert self._box is not None
        for row in await self._box.pending():
            await self._send(row)

    async def _send(self, row: StatusRow) -> None:
        ns, name = row.key.split("/", 1)
        msg = Message.new(
            source=self.name,
            group="resource",
            operation=Operation.UPDATE,
            resource=f"{ns}/podstatus/{name}",
            content={"uid": row.uid, "status": row.status},
            timestamp_ms=int(time.time() * 1000),
        )
        self._in_flight[msg.id] = (row.key, row.seq)
        await self._bus.send(HUB, msg)

    def _forget(self, pods: dict[str, Pod], observed: _Observed) -> None:
        """Drop what is kept about pods and containers that are gone."""
        uids = {p.metadata.uid for p in pods.values()} | {sb.uid for sb in observed.sandboxes}
        ids = {c.id for c in observed.containers}
        for cid in [c for c in self._details if c not in ids]:
            del self._details[cid]
        for fkey in [k for k in self._failures if k[0] not in uids]:
            del self._failures[fkey]
        live_sandboxes = {sb.id for sb in observed.sandboxes}
        for sid in [s for s in self._sandbox_ip if s not in live_sandboxes]:
            del self._sandbox_ip[sid]
        gone = [uid for uid in self._start_times if uid not in uids]
        for uid in gone:
            del self._start_times[uid]
            with contextlib.suppress(OSError):
                volumes.remove_pod_dir(self._pod_dir, uid)
        keys = set(pods)
        for key in [k for k in self._sent if k not in keys]:
            del self._sent[key]


def _references(pod: Pod) -> set[str]:
    """Cache keys of the configmaps and secrets a pod uses (env and volumes)."""
    ns = pod.metadata.namespace
    out = set()
    for c in pod.spec.containers:
        for source in c.envFrom:
            if source.configMapRef:
                out.add(f"{ns}/configmap/{source.configMapRef.name}")
            if source.secretRef:
                out.add(f"{ns}/secret/{source.secretRef.name}")
        for var in c.env:
            if var.valueFrom and var.valueFrom.configMapKeyRef:
                out.add(f"{ns}/configmap/{var.valueFrom.configMapKeyRef.name}")
            if var.valueFrom and var.valueFrom.secretKeyRef:
                out.add(f"{ns}/secret/{var.valueFrom.secretKeyRef.name}")
    for v in pod.spec.volumes:
        if v.configMap:
            out.add(f"{ns}/configmap/{v.configMap.name}")
        if v.secret:
            out.add(f"{ns}/secret/{v.secret.secretName}")
    return out
