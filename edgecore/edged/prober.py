"""Running liveness and readiness probes: ``exec`` through the CRI, ``httpGet`` to the pod.

Each due probe runs as its own task (owned here, cancelled by :meth:`Prober.close`), so a slow
probe holds up neither the sync round nor other probes. Outcomes go into
:class:`edgecore.edged.probes.ProbeState` (kubelet's thresholds); a liveness probe that fails
has its container stopped with the pod's grace period (the plan then restarts it by
``restartPolicy``); any change of verdict asks for a sync round (``on_change``).

``httpGet`` probes use an aiohttp session made at the first one: aiohttp is ~10 MiB of an
edge's memory, which an edge whose pods have no HTTP probe does not pay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from edgecore.cri.client import CriClient
from edgecore.edged.observe import Observed, Observer
from edgecore.edged.podspec import Container, HttpGetAction, Pod
from edgecore.edged.probes import ProbeState
from edgecore.edged.sync import ObservedContainer
from wire.errors import ContainerRuntimeError

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

LIVENESS = "liveness"
READINESS = "readiness"


class Prober:
    """Probes of the running containers of the desired pods."""

    def __init__(
        self,
        *,
        cri: CriClient,
        observer: Observer,
        on_change: Callable[[], None],
    ) -> None:
        self._cri = cri
        #: made at the first HTTP probe
        self._http: aiohttp.ClientSession | None = None
        self._observer = observer
        self._on_change = on_change
        self._probes: dict[tuple[str, str], ProbeState] = {}
        self._probing: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def readiness(self) -> dict[str, ProbeState]:
        """Container id -> its readiness probe's state."""
        return {cid: st for (cid, kind), st in self._probes.items() if kind == READINESS}

    def run_due(self, pods: Mapping[str, Pod], observed: Observed, now: float) -> float | None:
        """Start the probes that are due; when the next one is."""
        sandboxes = {sb.id: sb for sb in observed.sandboxes}
        wake: float | None = None
        live: set[tuple[str, str]] = set()
        for c in observed.containers:
            if c.state != "running":
                continue
            sb = sandboxes.get(c.sandbox_id)
            pod = pods.get(f"{sb.namespace}/{sb.name}") if sb else None
            if pod is None or sb is None or pod.metadata.uid != sb.uid:
                continue
            spec = next((s for s in pod.spec.containers if s.name == c.name), None)
            if spec is None:
                continue
            for kind, probe in ((LIVENESS, spec.livenessProbe), (READINESS, spec.readinessProbe)):
                if probe is None:
                    continue
                pkey = (c.id, kind)
                live.add(pkey)
                state = self._probes.get(pkey)
                if state is None:
                    make = ProbeState.liveness if kind == LIVENESS else ProbeState.readiness
                    state = self._probes[pkey] = make(probe, c.started_at or now)
                due = state.due_at()
                if due <= now and pkey not in self._probing:
                    self._probing.add(pkey)
                    pod_ip = observed.sandbox_ip.get(c.sandbox_id, "")
                    task = asyncio.create_task(
                        self._run(pkey, state, c, pod, spec, pod_ip), name=f"edged:probe:{kind}"
                    )
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                    due = now + probe.periodSeconds
                wake = due if wake is None else min(wake, due)
        for pkey in [k for k in self._probes if k not in live]:
            del self._probes[pkey]
        return wake

    async def _run(
        self,
        pkey: tuple[str, str],
        state: ProbeState,
        c: ObservedContainer,
        pod: Pod,
        spec: Container,
        pod_ip: str,
    ) -> None:
        probe = state.probe
        ok, message = False, ""
        try:
            if probe.exec is not None:
                res = await self._cri.exec_sync(
                    c.id, probe.exec.command, timeout_seconds=max(1, int(probe.timeoutSeconds))
                )
                ok = res.exit_code == 0
                message = (res.stdout + res.stderr).decode(errors="replace").strip()[:200]
            elif probe.httpGet is not None:
                ok, message = await self._http_get(
                    pod, spec, probe.httpGet, pod_ip, probe.timeoutSeconds
                )
            else:
                ok = True
        except (ContainerRuntimeError, OSError, TimeoutError) as exc:
            ok, message = False, str(exc)[:200]
        finally:
            self._probing.discard(pkey)
        changed = state.record(ok, time.time(), message)
        if pkey[1] == LIVENESS and not state.passing:
            log.info(
                "pod %s: container %s failed its liveness probe (%s); killing it",
                pod.key,
                spec.name,
                message,
            )
            self._probes.pop(pkey, None)
            with contextlib.suppress(ContainerRuntimeError):
                await self._cri.stop_container(c.id, pod.spec.terminationGracePeriodSeconds)
            self._observer.details.pop(c.id, None)
            self._on_change()
        elif changed:
            self._on_change()

    async def _http_get(
        self, pod: Pod, spec: Container, action: HttpGetAction, pod_ip: str, timeout: float
    ) -> tuple[bool, str]:
        port = action.port
        if isinstance(port, str):
            port = next((p.containerPort for p in spec.ports if p.name == port), 0)
        host = action.host or (pod_ip if pod_ip and not pod.spec.hostNetwork else "127.0.0.1")
        url = f"{action.scheme.lower()}://{host}:{port}{action.path}"
        import aiohttp

        if self._http is None:
            self._http = aiohttp.ClientSession()
        try:
            async with self._http.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False
            ) as res:
                return 200 <= res.status < 400, f"HTTP probe {url}: {res.status}"
        except aiohttp.ClientError as exc:
            return False, str(exc)[:200]

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
