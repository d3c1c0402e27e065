"""Doing what the plan decided, through the CRI: sandboxes, images, containers, volumes.

:class:`PodActions` executes one :mod:`edgecore.edged.sync` action at a time (the module runs
each pod's list in order, pods in parallel). What it learns on the way is kept for the plan
and the status: why a container could not be started (:class:`Failure`: an image pull, a
missing configmap key) and until when it is held back.

Images follow ``imagePullPolicy``: ``IfNotPresent`` and ``Never`` use the local store;
``Always`` pulls, and when the pull cannot happen uses the image already in the store (an
offline gateway could otherwise never restart its pods) and logs that it did. A pull that
fails holds the container back with kubelet's back-off (``image_backoff`` doubling to
``image_backoff_cap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecore.config import RuntimeSettings
from edgecore.cri import api_pb2 as pb
from edgecore.cri.client import CriClient
from edgecore.edged import configs, volumes
from edgecore.edged.observe import Observed, Observer
from edgecore.edged.podspec import Container, Pod
from edgecore.edged.sync import (
    Action,
    CreateSandbox,
    KillContainer,
    KillSandbox,
    RemoveContainer,
    StartContainer,
)
from wire.errors import BridgeError, ContainerRuntimeError, RuntimeNotFound

log = logging.getLogger(__name__)

#: cache key -> the cached object, as ``MetaStore.get`` answers it
Fetch = Callable[[str], Awaitable[dict[str, Any] | None]]


class ImageError(BridgeError):
    """An image that cannot be had; ``reason`` is kubelet's (``ErrImagePull``, …)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Failure:
    """Why a container could not be started, and when to try again."""

    reason: str
    message: str
    at: float
    count: int
    until: float


def references(pod: Pod) -> set[str]:
    """Cache keys of the configmaps and secrets a pod uses (env, envFrom and volumes)."""
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


class PodActions:
    """Executes plan actions against the runtime."""

    def __init__(
        self,
        *,
        cri: CriClient,
        fetch: Fetch,
        settings: RuntimeSettings,
        node_name: str,
        pod_dir: Path,
        observer: Observer,
    ) -> None:
        self._cri = cri
        self._fetch = fetch
        self._settings = settings
        self._node = node_name
        self._pod_dir = pod_dir
        self._observer = observer
        #: (pod uid, container) -> why it could not start, and until when it is held back
        self.failures: dict[tuple[str, str], Failure] = {}
        #: pod uid -> when its first sandbox was made (status.startTime)
        self.start_times: dict[str, float] = {}
        #: containers started / killed by this process (tests and benches)
        self.started = 0
        self.killed = 0

    def held(self, pod: Pod, now: float) -> dict[str, float]:
        """Container name -> until when its start is held back (for :class:`DesiredPod`)."""
        out = {}
        for c in pod.spec.containers:
            f = self.failures.get((pod.metadata.uid, c.name))
            if f is not None and f.until > now:
                out[c.name] = f.until
        return out

    async def do(self, pod: Pod | None, action: Action) -> None:
        cri = self._cri
        if isinstance(action, CreateSandbox):
            assert pod is not None
            config = self.sandbox_config(pod, action.attempt, action.restart_base)
            sandbox_id = await cri.run_pod_sandbox(config)
            self.start_times.setdefault(pod.metadata.uid, time.time())
            log.info(
                "pod %s: sandbox %s ready (attempt %d)", action.key, sandbox_id[:12], action.attempt
            )
            # its containers at once, as kubelet's SyncPod does (not one sync round later)
            held = self.held(pod, time.time())
            for c in pod.spec.containers:
                if c.name not in held:
                    attempt = action.restart_base.get(c.name, 0)
                    await self.start_container(
                        pod, StartContainer(action.key, action.uid, sandbox_id, c.name, attempt)
                    )
        elif isinstance(action, StartContainer):
            assert pod is not None
            await self.start_container(pod, action)
        elif isinstance(action, KillContainer):
            await self.kill_container(action.container_id, action.grace_seconds)
            log.info(
                "pod %s: container %s killed (%s)",
                action.key,
                action.container_id[:12],
                action.reason,
            )
        elif isinstance(action, RemoveContainer):
            with contextlib.suppress(RuntimeNotFound):
                await cri.remove_container(action.container_id)
            self._observer.details.pop(action.container_id, None)
        elif isinstance(action, KillSandbox):
            await asyncio.gather(
                *(self.kill_container(c, action.grace_seconds) for c in action.container_ids)
            )
            with contextlib.suppress(RuntimeNotFound):
                await cri.stop_pod_sandbox(action.sandbox_id)
            with contextlib.suppress(RuntimeNotFound):
                await cri.remove_pod_sandbox(action.sandbox_id)
            self._observer.sandbox_ip.pop(action.sandbox_id, None)
            log.info(
                "pod %s: sandbox %s removed (%s)", action.key, action.sandbox_id[:12], action.reason
            )

    async def kill_container(self, container_id: str, grace: int) -> None:
        """Stop (SIGTERM, SIGKILL after ``grace`` seconds) and remove."""
        with contextlib.suppress(RuntimeNotFound):
            await self._cri.stop_container(container_id, grace)
        with contextlib.suppress(RuntimeNotFound):
            await self._cri.remove_container(container_id)
        self._observer.details.pop(container_id, None)
        self.killed += 1

    def sandbox_config(
        self, pod: Pod, attempt: int, restart_base: Mapping[str, int] | None = None
    ) -> pb.PodSandboxConfig:
        return configs.sandbox_config(
            pod,
            node_name=self._node,
            pod_log_dir=self._settings.pod_log_dir,
            attempt=attempt,
            restart_base=restart_base,
        )

    async def _lookup(self, pods: list[Pod]) -> configs.Lookup:
        """A lookup of the cached configmaps/secrets ``pods`` refer to."""
        cache: dict[str, dict[str, Any] | None] = {}
        for pod in pods:
            for key in references(pod):
                if key not in cache:
                    cache[key] = await self._fetch(key)

        def lookup(kind: str, ns: str, name: str) -> dict[str, Any] | None:
            return cache.get(f"{ns}/{kind}/{name}")

        return lookup

    async def start_container(self, pod: Pod, action: StartContainer) -> None:
        container = next(c for c in pod.spec.containers if c.name == action.name)
        fkey = (pod.metadata.uid, container.name)
        now = time.time()
        lookup = await self._lookup([pod])
        try:
            image_ref = await self.ensure_image(container)
        except ImageError as exc:
            previous = self.failures.get(fkey)
            count = previous.count + 1 if previous and previous.reason == exc.reason else 1
            delay = min(
                self._settings.image_backoff_cap,
                self._settings.image_backoff * 2 ** (count - 1),
            )
            self.failures[fkey] = Failure(exc.reason, str(exc), now, count, now + delay)
            log.warning(
                "pod %s: container %s: %s (attempt %d, next in %.0fs): %s",
                action.key,
                container.name,
                exc.reason,
                count,
                delay,
                exc,
            )
            return
        try:
            env = configs.resolve_env(container, pod.metadata.namespace, lookup)
            paths = await asyncio.to_thread(volumes.prepare_volumes, self._pod_dir, pod, lookup)
        except configs.ConfigRefError as exc:
            previous = self.failures.get(fkey)
            self.failures[fkey] = Failure(
                "CreateContainerConfigError", str(exc), now, 1, now + self._settings.sync_interval
            )
            if previous is None or previous.message != str(exc):  # once, not every retry
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
        try:
            cid = await self._cri.create_container(
                action.sandbox_id, config, self.sandbox_config(pod, 0)
            )
        except ContainerRuntimeError as exc:
            self.failures[fkey] = Failure("CreateContainerError", exc.reason, now, 1, now + 1.0)
            raise
        try:
            await self._cri.start_container(cid)
        except ContainerRuntimeError as exc:
            # it exists, exited; its status shows why (StartError) and the policy restarts it
            log.warning(
                "pod %s: container %s did not start: %s", action.key, container.name, exc.reason
            )
            self.failures[fkey] = Failure("RunContainerError", exc.reason, now, 1, now)
            return
        self.failures.pop(fkey, None)
        self.started += 1
        log.info(
            "pod %s: container %s started (%s, restart %d)",
            action.key,
            container.name,
            cid[:12],
            action.attempt,
        )

    async def ensure_image(self, container: Container) -> str:
        """The image reference to create ``container`` from, pulled if the policy says so.

        Raises:
            ImageError: ``ErrImageNeverPull`` or ``ErrImagePull`` (with the runtime's reason).
        """
        image = container.image
        present = await self._cri.image_status(image)
        policy = container.pull_policy
        if present is not None and policy != "Always":
            return present.id
        if present is None and policy == "Never":
            raise ImageError(
                "ErrImageNeverPull",
                f'Container image "{image}" is not present with pull policy of Never',
            )
        try:
            return await self._cri.pull_image(image, timeout=self._settings.pull_timeout)
        except ContainerRuntimeError as exc:
            if present is not None:
                log.info("image %s: pull failed (%s); using the local copy", image, exc.reason)
                return present.id
            raise ImageError("ErrImagePull", exc.reason) from exc

    async def refresh_volumes(self, pods: Mapping[str, Pod], observed: Observed) -> None:
        """Rewrite configMap/secret volume files of running pods whose sources changed."""
        live = {sb.uid for sb in observed.sandboxes if sb.ready}
        running = [p for p in pods.values() if p.metadata.uid in live and p.spec.volumes]
        lookup = await self._lookup(running)
        for pod in running:
            with contextlib.suppress(configs.ConfigRefError, OSError):
                await asyncio.to_thread(volumes.prepare_volumes, self._pod_dir, pod, lookup)

    def forget(self, uids: set[str]) -> None:
        """Drop what is kept about pods (by uid) that are neither desired nor in the runtime."""
        for fkey in [k for k in self.failures if k[0] not in uids]:
            del self.failures[fkey]
        for uid in [u for u in self.start_times if u not in uids]:
            del self.start_times[uid]
            with contextlib.suppress(OSError):
                volumes.remove_pod_dir(self._pod_dir, uid)
