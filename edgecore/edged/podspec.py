"""The part of a Kubernetes Pod that edged runs, as typed models (the boundary's validation).

A pod comes from the cache as the API has it (a dict). :func:`parse_pod` validates the fields
edged honours (``image``, ``command``, ``args``, ``env`` with ``valueFrom``, ``volumeMounts``,
volumes ``configMap``/``secret``/``emptyDir``/``hostPath``, ``restartPolicy``,
``resources.limits``, ``hostNetwork``, probes, ``terminationGracePeriodSeconds``) and ignores
the rest, as a kubelet ignores what it does not implement. A pod that does not validate is not
run; its status says why (``InvalidPodSpec``) and nothing else on the node is touched.

:func:`container_hash` is the identity of a container's spec: a running container whose hash
differs from its spec's is replaced (kubelet does the same with its container hash).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wire.errors import InvalidObject

_LENIENT = ConfigDict(extra="ignore", populate_by_name=True)


class KeyRef(BaseModel):
    model_config = _LENIENT
    name: str = ""
    key: str
    optional: bool = False


class EnvSource(BaseModel):
    model_config = _LENIENT
    configMapKeyRef: KeyRef | None = None
    secretKeyRef: KeyRef | None = None


class EnvVar(BaseModel):
    model_config = _LENIENT
    name: str = Field(min_length=1)
    value: str | None = None
    valueFrom: EnvSource | None = None


class NameRef(BaseModel):
    model_config = _LENIENT
    name: str = ""
    optional: bool = False


class EnvFromSource(BaseModel):
    model_config = _LENIENT
    prefix: str = ""
    configMapRef: NameRef | None = None
    secretRef: NameRef | None = None


class VolumeMount(BaseModel):
    model_config = _LENIENT
    name: str
    mountPath: str = Field(min_length=1)
    readOnly: bool = False
    subPath: str = ""


class ExecAction(BaseModel):
    model_config = _LENIENT
    command: list[str] = Field(min_length=1)


class HttpGetAction(BaseModel):
    model_config = _LENIENT
    path: str = "/"
    port: int | str
    host: str = ""
    scheme: Literal["HTTP", "HTTPS"] = "HTTP"


class Probe(BaseModel):
    model_config = _LENIENT
    exec: ExecAction | None = None
    httpGet: HttpGetAction | None = None
    initialDelaySeconds: float = Field(default=0, ge=0)
    periodSeconds: float = Field(default=10, gt=0)
    timeoutSeconds: float = Field(default=1, gt=0)
    failureThreshold: int = Field(default=3, ge=1)
    successThreshold: int = Field(default=1, ge=1)


class Resources(BaseModel):
    model_config = _LENIENT
    limits: dict[str, str | int | float] = Field(default_factory=dict)
    requests: dict[str, str | int | float] = Field(default_factory=dict)


class ContainerPort(BaseModel):
    model_config = _LENIENT
    name: str = ""
    containerPort: int


class Container(BaseModel):
    model_config = _LENIENT
    name: str = Field(min_length=1)
    image: str = Field(min_length=1)
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    workingDir: str = ""
    env: list[EnvVar] = Field(default_factory=list)
    envFrom: list[EnvFromSource] = Field(default_factory=list)
    volumeMounts: list[VolumeMount] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = None
    livenessProbe: Probe | None = None
    readinessProbe: Probe | None = None
    ports: list[ContainerPort] = Field(default_factory=list)
    tty: bool = False
    stdin: bool = False

    @property
    def pull_policy(self) -> str:
        """Kubernetes' default: ``Always`` for ``:latest`` or no tag, else ``IfNotPresent``."""
        if self.imagePullPolicy:
            return self.imagePullPolicy
        last = self.image.rsplit("/", 1)[-1]
        if "@" in last:
            return "IfNotPresent"
        tag = last.split(":", 1)[1] if ":" in last else "latest"
        return "Always" if tag == "latest" else "IfNotPresent"


class ConfigMapVolume(BaseModel):
    model_config = _LENIENT
    name: str = ""
    optional: bool = False


class SecretVolume(BaseModel):
    model_config = _LENIENT
    secretName: str = ""
    optional: bool = False


class HostPathVolume(BaseModel):
    model_config = _LENIENT
    path: str = Field(min_length=1)
    type: str = ""


class Volume(BaseModel):
    model_config = _LENIENT
    name: str = Field(min_length=1)
    configMap: ConfigMapVolume | None = None
    secret: SecretVolume | None = None
    emptyDir: dict[str, Any] | None = None
    hostPath: HostPathVolume | None = None


class PodSpec(BaseModel):
    model_config = _LENIENT
    nodeName: str = ""
    containers: list[Container] = Field(min_length=1)
    volumes: list[Volume] = Field(default_factory=list)
    restartPolicy: Literal["Always", "OnFailure", "Never"] = "Always"
    hostNetwork: bool = False
    terminationGracePeriodSeconds: int = Field(default=30, ge=0)
    hostname: str = ""


class PodMeta(BaseModel):
    model_config = _LENIENT
    name: str = Field(min_length=1)
    namespace: str = "default"
    uid: str = ""
    deletionTimestamp: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    creationTimestamp: str | None = None


class Pod(BaseModel):
    model_config = _LENIENT
    metadata: PodMeta
    spec: PodSpec

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


def pod_uid(obj: dict[str, Any]) -> str:
    """The pod's uid; a stable stand-in (hash of namespace/name/creation) when it has none."""
    meta = obj.get("metadata") or {}
    uid = meta.get("uid")
    if isinstance(uid, str) and uid:
        return uid
    seed = f"{meta.get('namespace', 'default')}/{meta.get('name')}/{meta.get('creationTimestamp')}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def parse_pod(obj: dict[str, Any]) -> Pod:
    """Validate the parts of a pod edged honours.

    Raises:
        InvalidObject: names the first field that is wrong.
    """
    try:
        pod = Pod.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidObject(f"{where}: {first['msg']}") from exc
    if not pod.metadata.uid:
        pod.metadata.uid = pod_uid(obj)
    names = [c.name for c in pod.spec.containers]
    if len(set(names)) != len(names):
        raise InvalidObject("spec.containers: two containers have the same name")
    volumes = {v.name for v in pod.spec.volumes}
    for c in pod.spec.containers:
        for m in c.volumeMounts:
            if m.name not in volumes:
                raise InvalidObject(f"container {c.name}: volumeMount {m.name} has no volume")
    return pod


def container_hash(pod: Pod, container: Container) -> str:
    """Hash of what a running container was made from (its spec and the pod's volumes).

    A change of it means the container must be replaced; status-only writes, labels or other
    containers do not change it.
    """
    doc = {
        "c": container.model_dump(mode="json"),
        "v": [v.model_dump(mode="json") for v in pod.spec.volumes],
        "h": pod.spec.hostNetwork,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def parse_quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (``128Mi``, ``0.5``, ``500m``, ``1G``) as a number.

    Raises:
        InvalidObject: not a quantity.
    """
    if isinstance(value, int | float):
        return float(value)
    m = _QUANTITY.match(value.strip())
    if m is None:
        raise InvalidObject(f"{value!r} is not a quantity")
    number, suffix = float(m.group(1)), m.group(2)
    if suffix == "m":
        return number / 1000
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    raise InvalidObject(f"{value!r} is not a quantity")
