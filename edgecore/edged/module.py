"""The ``edged`` module: runs the pods bound to this node through a CRI runtime. A pump.

Each round (on a cache change, when a back-off or probe is due, else every
``sync_interval``):

1. read the desired pods from the SQLite cache (what metamanager committed; works offline
   and right after a reboot, before the cloud is back);
2. observe the runtime (:mod:`edgecore.edged.observe`): sandboxes and containers carrying this
   node's labels (:mod:`edgecore.cri.labels`), so a restarted edgecore finds and keeps what
   it started before (re-adoption needs no local state: the labels and annotations are it);
3. :func:`edgecore.edged.sync.plan` decides; each pod's actions run as one task
   (:mod:`edgecore.edged.actions`; pods in parallel, at most ``parallel_pods`` at once; a pod
   with a task under way is left alone until it is done);
4. probes that are due run (:mod:`edgecore.edged.prober`);
5. each pod's kubelet-shaped status (:mod:`edgecore.edged.views`, :mod:`edgecore.edged.status`)
   that changed goes into the durable outbox (:mod:`edgecore.edged.statusbox`) and, while
   connected, to the cloud as ``update {ns}/podstatus/{name}``; the cloud's answer deletes
   the row. On every ``connected`` the rows left are sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecore.config import RuntimeSettings
from edgecore.cri.client import CriClient
from edgecore.edged import configs
from edgecore.edged.actions import PodActions
from edgecore.edged.observe import Observed, Observer
from edgecore.edged.podspec import Pod, container_hash, parse_pod
from edgecore.edged.prober import Prober
from edgecore.edged.status import invalid_status, pod_status
from edgecore.edged.statusbox import StatusBox, StatusRow
from edgecore.edged.sync import Action, Backoff, DesiredContainer, DesiredPod, ObservedSandbox, plan
from edgecore.edged.views import ERR_IMAGE_PULL_SHOWN, container_view
from edgecore.metastore import MetaStore
from edgecore.modules import EDGED, EDGED_GROUP, EDGEHUB
from hive.bus import Bus
from wire.errors import ContainerRuntimeError, InvalidObject
from wire.messages import Message, Operation
from wire.session import CONNECTED, DISCONNECTED

log = logging.getLogger(__name__)

#: seconds a new pod being started may go without a reported status (its first is Running)
PENDING_REPORT = 1.0

_Parsed = tuple[Pod, tuple[DesiredContainer, ...], str]


class _Parts:
    """What edged holds while it runs (made in :meth:`Edged.run`, inside the event loop)."""

    def __init__(
        self,
        *,
        cri: CriClient,
        box: StatusBox,
        actions: Callable[[CriClient], PodActions],
        prober: Callable[[CriClient], Prober],
    ) -> None:
        self.cri = cri
        self.box = box
        self.actions = actions(cri)
        self.prober = prober(cri)

    async def close(self) -> None:
        await self.prober.close()
        await self.cri.close()
        await self.box.close()


class Edged:
    """Runs the pods bound to ``node_name`` through the CRI runtime at ``settings.endpoint``."""

    name = EDGED
    group = EDGED_GROUP

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
        self._observer = Observer(node_name)
        self._parts: _Parts | None = None
        self._dirty = asyncio.Event()
        self._refs_changed = True
        self._connected = False
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.parallel_pods)
        #: pod key -> the status last put in the outbox
        self._sent: dict[str, dict[str, Any]] = {}
        #: pod key -> when a round first saw it (wall clock)
        self._first_seen: dict[str, float] = {}
        #: message id -> (pod key, outbox seq) it carried
        self._in_flight: dict[str, tuple[str, int]] = {}
        #: (cache key, resourceVersion) -> the pod parsed, its container hashes, sandbox hash
        self._parsed: dict[tuple[str, str], _Parsed] = {}
        self._hashes: dict[str, tuple[tuple[DesiredContainer, ...], str]] = {}
        self._last_round = 0.0
        self._runtime_ok = True
        self._announce = False
        #: status messages the cloud answered (tests and benches)
        self.delivered = 0
        #: rounds done (tests and metrics)
        self.rounds = 0

    @property
    def _p(self) -> _Parts:
        assert self._parts is not None, "edged is not running"
        return self._parts

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        cri = CriClient(self._settings.endpoint, timeout=self._settings.call_timeout)
        try:
            box = await StatusBox.open(self._db_path)
        except BaseException:
            await cri.close()
            raise
        self._parts = _Parts(
            cri=cri,
            box=box,
            actions=lambda c: PodActions(
                cri=c,
                fetch=self._store.get,
                settings=self._settings,
                node_name=self._node,
                pod_dir=self._pod_dir,
                observer=self._observer,
            ),
            prober=lambda c: Prober(cri=c, observer=self._observer, on_change=self._dirty.set),
        )
        try:
            version = await cri.version()
            log.info(
                "edged: running pods through %s %s (CRI %s at %s)",
                version.runtime_name,
                version.runtime_version,
                version.runtime_api_version,
                self._settings.endpoint,
            )
        except ContainerRuntimeError as exc:
            log.warning("edged: the runtime at %s does not answer yet: %s", cri.endpoint, exc)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._watch_cache(), name="edged:cache")
                tg.create_task(self._serve_inbox(), name="edged:inbox")
                tg.create_task(self._sync_forever(), name="edged:sync")
        finally:
            for task in self._busy.values():
                task.cancel()
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
            await self._parts.close()
            self._parts = None

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
            # fell behind and was cut off: look at everything again
            self._refs_changed = True
            self._dirty.set()

    async def _serve_inbox(self) -> None:
        while True:
            msg = await self._bus.receive(self.name)
            op = msg.operation
            if op == CONNECTED:
                self._connected = True
                self._in_flight.clear()
                self._announce = True
                for row in await self._p.box.pending():
                    await self._send(row)
            elif op == DISCONNECTED:
                self._connected = False
                self._in_flight.clear()
            elif op in (Operation.RESPONSE, Operation.ERROR):
                sent = self._in_flight.pop(msg.parent_id, None)
                if sent is None:
                    continue
                if op == Operation.ERROR:
                    log.warning("cloud refused the status of pod %s: %s", sent[0], msg.content)
                await self._p.box.delivered(*sent)
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
        p = self._p
        now = time.time()
        pods, invalid = await self._desired()
        observed = await self._observer.observe(p.cri)
        desired = [self._desired_pod(pod, now) for pod in pods.values()]
        result = plan(
            desired, observed.sandboxes, observed.containers, now=now, backoff=self._backoff
        )
        if self.rounds == 0:
            log.info(
                "edged: first sync: %d pods bound here, %d sandboxes and %d running containers "
                "found in the runtime (re-adopted), %d pods to change",
                len(pods),
                len(observed.sandboxes),
                sum(c.state == "running" for c in observed.containers),
                len(result.actions),
            )
        for key, actions in result.actions.items():
            if key not in self._busy:
                self._busy[key] = asyncio.create_task(
                    self._execute(key, pods.get(key), actions), name=f"edged:{key}"
                )
        if self._refs_changed:
            self._refs_changed = False
            await p.actions.refresh_volumes(pods, observed)
        probe_wake = p.prober.run_due(pods, observed, now)
        await self._report(pods, invalid, observed, result.backing_off, now)
        self._forget(pods, observed)
        self.rounds += 1
        wakes = [w for w in (result.wake_at, probe_wake) if w is not None]
        wakes += [
            self._first_seen[k] + PENDING_REPORT
            for k in self._busy
            if k not in self._sent and k in self._first_seen
        ]
        for f in p.actions.failures.values():
            if f.until > now:
                wakes += [f.until, f.at + ERR_IMAGE_PULL_SHOWN]
        return min(wakes) if wakes else None

    async def _desired(self) -> tuple[dict[str, Pod], dict[str, tuple[str, str]]]:
        """Valid pods bound here (by ``ns/name``), and invalid ones: key -> (uid, message)."""
        pods: dict[str, Pod] = {}
        invalid: dict[str, tuple[str, str]] = {}
        parsed: dict[tuple[str, str], _Parsed] = {}
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
                shown = f"{meta.get('namespace') or 'default'}/{meta.get('name')}"
                invalid[shown] = (str(meta.get("uid") or ""), str(exc))
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
        containers, sandbox_hash = self._hashes[pod.key]
        return DesiredPod(
            namespace=pod.metadata.namespace,
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            containers=containers,
            restart_policy=pod.spec.restartPolicy,
            grace_seconds=pod.spec.terminationGracePeriodSeconds,
            sandbox_hash=sandbox_hash,
            hold=self._p.actions.held(pod, now),
        )

    async def _execute(self, key: str, pod: Pod | None, actions: list[Action]) -> None:
        try:
            async with self._slots:
                for action in actions:
                    await self._p.actions.do(pod, action)
        except asyncio.CancelledError:
            raise
        except ContainerRuntimeError as exc:
            log.warning("pod %s: %s", key, exc)
        except Exception:
            log.exception("pod %s: action failed", key)
        finally:
            self._busy.pop(key, None)
            self._dirty.set()

    # --- status ---------------------------------------------------------------------------

    async def _report(
        self,
        pods: dict[str, Pod],
        invalid: dict[str, tuple[str, str]],
        observed: Observed,
        backing_off: dict[tuple[str, str], float],
        now: float,
    ) -> None:
        p = self._p
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for key, (uid, message) in invalid.items():
            status = invalid_status(message, now=now)
            if self._sent.get(key) != status:
                rows.append((key, uid, status))
        sandboxes_by_uid: dict[str, list[ObservedSandbox]] = {}
        for sb in observed.sandboxes:
            sandboxes_by_uid.setdefault(sb.uid, []).append(sb)
        host_ip = self._host_ip() or ""
        readiness = p.prober.readiness
        for key, pod in pods.items():
            first_seen = self._first_seen.setdefault(key, now)
            if key in self._busy and (key in self._sent or now < first_seen + PENDING_REPORT):
                # being changed: its next status comes when the change is done (a new pod's
                # Pending only if starting it takes a while: the cloud then has one write
                # per pod, not two, while the runtime is busiest)
                continue
            uid = pod.metadata.uid
            boxes = [sb for sb in sandboxes_by_uid.get(uid, []) if sb.ready]
            current = max(boxes, key=lambda sb: (sb.attempt, sb.created_at), default=None)
            pod_ip = ""
            if current is not None:
                pod_ip = (
                    host_ip if pod.spec.hostNetwork else observed.sandbox_ip.get(current.id, "")
                )
            views = {
                spec.name: container_view(
                    pod,
                    spec,
                    current,
                    observed,
                    details=self._observer.details,
                    failure=p.actions.failures.get((uid, spec.name)),
                    readiness=readiness,
                    backing_off=backing_off,
                    now=now,
                )
                for spec in pod.spec.containers
            }
            start = p.actions.start_times.setdefault(uid, current.created_at if current else now)
            status = pod_status(
                pod,
                views,
                pod_ip=pod_ip,
                host_ip=host_ip,
                start_time=start,
                now=now,
                previous=self._sent.get(key),
            )
            if self._sent.get(key) != status:
                rows.append((key, uid, status))
        if rows:
            written = await p.box.put(rows)
            for row in written:
                self._sent[row.key] = row.status
            if self._connected:
                for row in written:
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
        await self._bus.send(EDGEHUB, msg)

    def _forget(self, pods: dict[str, Pod], observed: Observed) -> None:
        """Drop what is kept about pods and containers that are gone."""
        self._observer.forget(observed)
        uids = {p.metadata.uid for p in pods.values()} | {sb.uid for sb in observed.sandboxes}
        self._p.actions.forget(uids)
        for key in [k for k in self._sent if k not in pods]:
            del self._sent[key]
        for key in [k for k in self._first_seen if k not in pods]:
            del self._first_seen[key]
