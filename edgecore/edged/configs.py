"""From a pod spec to CRI configs, and the pod's references resolved. Pure.

- :func:`sandbox_config`: metadata, hostname, kubelet's log directory, edged's labels,
  annotations that re-adoption needs (sandbox hash, grace period, restart counts reached),
  ``hostNetwork`` as the NODE network namespace.
- :func:`container_config`: image, command, args, env, mounts, resources, log path, labels and
  the spec hash.
- :func:`resolve_env`: ``env`` with ``valueFrom.configMapKeyRef``/``secretKeyRef`` resolved
  against the cached ConfigMaps and Secrets; a missing object or key is a
  :class:`ConfigRefError` (kubelet's ``CreateContainerConfigError``), unless ``optional``.
- :func:`resources`: ``limits.cpu`` as a CFS quota (period 100 ms), ``memory`` in bytes, CPU
  shares from the request (or the limit), as kubelet computes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from edgecore.cri import api_pb2 as pb
from edgecore.cri import labels as L
from edgecore.edged.podspec import Container, Pod, container_hash, parse_quantity
from wire.errors import BridgeError

#: kubelet's CFS period (100 ms) and its minimum quota
CPU_PERIOD = 100_000
MIN_QUOTA = 1_000
MIN_SHARES = 2
RESTART_BASE = "edgebridge.io/restart-base"
SANDBOX_HASH = "edgebridge.io/sandbox-hash"

#: (kind, namespace, name) -> the cached object, or None
Lookup = Callable[[str, str, str], dict[str, Any] | None]


class ConfigRefError(BridgeError):
    """A configmap/secret (or a key of one) the pod refers to is missing."""


def sandbox_hash(pod: Pod) -> str:
    doc = {"h": pod.spec.hostNetwork, "n": pod.spec.hostname}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def sandbox_config(
    pod: Pod,
    *,
    node_name: str,
    pod_log_dir: Path,
    attempt: int,
    restart_base: Mapping[str, int] | None = None,
) -> pb.PodSandboxConfig:
    m = pod.metadata
    ns_opts = pb.NamespaceOption(
        network=pb.NODE if pod.spec.hostNetwork else pb.POD, pid=pb.CONTAINER, ipc=pb.POD
    )
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(
            name=m.name, uid=m.uid, namespace=m.namespace, attempt=attempt
        ),
        hostname="" if pod.spec.hostNetwork else (pod.spec.hostname or m.name)[:63],
        log_directory=str(L.pod_log_directory(pod_log_dir, m.namespace, m.name, m.uid)),
        labels=L.sandbox_labels(node_name, m.namespace, m.name, m.uid),
        annotations={
            SANDBOX_HASH: sandbox_hash(pod),
            L.TERMINATION_GRACE: str(pod.spec.terminationGracePeriodSeconds),
            RESTART_BASE: json.dumps(dict(restart_base or {}), sort_keys=True),
        },
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns_opts)
        ),
    )


def resources(container: Container) -> pb.LinuxContainerResources:
    limits, requests = container.resources.limits, container.resources.requests
    out = pb.LinuxContainerResources()
    cpu_limit = parse_quantity(limits["cpu"]) if "cpu" in limits else None
    cpu_request = parse_quantity(requests["cpu"]) if "cpu" in requests else cpu_limit
    if cpu_limit:
        out.cpu_period = CPU_PERIOD
        out.cpu_quota = max(MIN_QUOTA, int(cpu_limit * CPU_PERIOD))
    out.cpu_shares = max(MIN_SHARES, int((cpu_request or 0) * 1024))
    if "memory" in limits:
        out.memory_limit_in_bytes = int(parse_quantity(limits["memory"]))
    return out


def _secret_value(obj: dict[str, Any], key: str) -> str | None:
    data = obj.get("data") or {}
    if key in data:
        try:
            return base64.b64decode(str(data[key]), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return None
    string_data = obj.get("stringData") or {}
    return str(string_data[key]) if key in string_data else None


def _configmap_value(obj: dict[str, Any], key: str) -> str | None:
    data = obj.get("data") or {}
    return str(data[key]) if key in data else None


def resolve_env(container: Container, namespace: str, lookup: Lookup) -> list[tuple[str, str]]:
    """``env`` as (name, value) pairs, references resolved.

    Raises:
        ConfigRefError: a referenced configmap/secret or key is missing (and not optional).
    """
    out: list[tuple[str, str]] = []
    for source in container.envFrom:
        whole = source.configMapRef or source.secretRef
        if whole is None:
            continue
        kind = "configmap" if source.configMapRef else "secret"
        obj = lookup(kind, namespace, whole.name)
        if obj is None:
            if whole.optional:
                continue
            raise ConfigRefError(f'{kind} "{whole.name}" not found')
        keys = list((obj.get("data") or {}).keys())
        if kind == "secret":
            keys += [k for k in (obj.get("stringData") or {}) if k not in keys]
        for k in keys:
            value = _configmap_value(obj, k) if kind == "configmap" else _secret_value(obj, k)
            if value is not None:
                out.append((source.prefix + k, value))
    for var in container.env:
        if var.valueFrom is None:
            out.append((var.name, var.value or ""))
            continue
        ref = var.valueFrom.configMapKeyRef or var.valueFrom.secretKeyRef
        if ref is None:
            continue  # fieldRef / resourceFieldRef: not honoured, as documented
        kind = "configmap" if var.valueFrom.configMapKeyRef else "secret"
        shown = "configmap" if kind == "configmap" else "secret"
        obj = lookup(kind, namespace, ref.name)
        if obj is None:
            if ref.optional:
                continue
            raise ConfigRefError(f'{shown} "{ref.name}" not found')
        value = (
            _configmap_value(obj, ref.key) if kind == "configmap" else _secret_value(obj, ref.key)
        )
        if value is None:
            if ref.optional:
                continue
            raise ConfigRefError(f"couldn't find key {ref.key} in {shown} {namespace}/{ref.name}")
        out.append((var.name, value))
    return out


def container_config(
    pod: Pod,
    container: Container,
    *,
    node_name: str,
    attempt: int,
    image_ref: str,
    env: Sequence[tuple[str, str]],
    mounts: Sequence[pb.Mount],
) -> pb.ContainerConfig:
    m = pod.metadata
    ns_opts = pb.NamespaceOption(
        network=pb.NODE if pod.spec.hostNetwork else pb.POD, pid=pb.CONTAINER, ipc=pb.POD
    )
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=container.name, attempt=attempt),
        image=pb.ImageSpec(image=image_ref, user_specified_image=container.image),
        command=container.command,
        args=container.args,
        working_dir=container.workingDir,
        envs=[pb.KeyValue(key=k, value=v) for k, v in env],
        mounts=list(mounts),
        labels=L.container_labels(node_name, m.namespace, m.name, m.uid, container.name),
        annotations={
            L.SPEC_HASH: container_hash(pod, container),
            L.RESTART_COUNT: str(attempt),
            L.TERMINATION_GRACE: str(pod.spec.terminationGracePeriodSeconds),
        },
        log_path=L.container_log_path(container.name, attempt),
        tty=container.tty,
        stdin=container.stdin,
        linux=pb.LinuxContainerConfig(
            resources=resources(container),
            security_context=pb.LinuxContainerSecurityContext(namespace_options=ns_opts),
        ),
    )
