"""The pure parts of edged: pod spec validation, CRI configs, env references, status, outbox."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecore.cri import api_pb2 as pb
from edgecore.edged import configs
from edgecore.edged.configs import ConfigRefError, resolve_env
from edgecore.edged.podspec import container_hash, parse_pod, parse_quantity
from edgecore.edged.status import ContainerView, Terminated, phase, pod_status
from edgecore.edged.statusbox import StatusBox
from wire.errors import InvalidObject

pytestmark = pytest.mark.timeout(30)


def pod(**spec: Any) -> dict[str, Any]:
    container = {"name": "app", "image": "busybox", **spec.pop("container", {})}
    return {
        "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"nodeName": "n1", "containers": [container], **spec},
    }


def test_invalid_specs_name_the_field() -> None:
    """A pod edged cannot run is refused with the field that is wrong."""
    with pytest.raises(InvalidObject, match="containers"):
        parse_pod(pod(containers=[]))
    with pytest.raises(InvalidObject, match="restartPolicy"):
        parse_pod(pod(restartPolicy="Sometimes"))
    with pytest.raises(InvalidObject, match="volumeMount data has no volume"):
        parse_pod(pod(container={"volumeMounts": [{"name": "data", "mountPath": "/d"}]}))


@pytest.mark.parametrize(
    ("image", "policy", "expected"),
    [("busybox", None, "Always"), ("busybox:latest", None, "Always"),
     ("busybox:1.36", None, "IfNotPresent"), ("reg:5000/x@sha256:ab", None, "IfNotPresent"),
     ("busybox", "Never", "Never")],
)  # fmt: skip
def test_pull_policy_defaults_as_kubernetes(image: str, policy: str | None, expected: str) -> None:
    """imagePullPolicy defaults to Always for :latest or no tag, else IfNotPresent."""
    c: dict[str, Any] = {"image": image}
    if policy:
        c["imagePullPolicy"] = policy
    assert parse_pod(pod(container=c)).spec.containers[0].pull_policy == expected


def test_container_hash_ignores_status_and_other_containers() -> None:
    """Only a container's own spec (and the pod's volumes) changes its hash."""
    a = parse_pod(pod())
    b = parse_pod(pod() | {"status": {"phase": "Running"}})
    c = parse_pod(pod(container={"command": ["sleep", "1"]}))
    assert container_hash(a, a.spec.containers[0]) == container_hash(b, b.spec.containers[0])
    assert container_hash(a, a.spec.containers[0]) != container_hash(c, c.spec.containers[0])


def test_resources_as_kubelet_computes_them() -> None:
    """limits.cpu is a CFS quota on a 100 ms period; memory in bytes; shares from the request."""
    p = parse_pod(pod(container={"resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}))
    r = configs.resources(p.spec.containers[0])
    assert (r.cpu_period, r.cpu_quota, r.cpu_shares) == (100_000, 50_000, 512)
    assert r.memory_limit_in_bytes == 64 * 2**20
    assert parse_quantity("1G") == 1e9 and parse_quantity("2") == 2


def test_env_references_resolve_or_fail_with_the_kubelet_message() -> None:
    """valueFrom configMapKeyRef/secretKeyRef and envFrom; a missing key names itself."""
    objects = {
        "default/configmap/cfg": {"data": {"LEVEL": "3"}},
        "default/secret/sec": {"data": {"pw": base64.b64encode(b"hunter2").decode()}},
    }

    def lookup(kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return objects.get(f"{ns}/{kind}/{name}")

    env = [
        {"name": "A", "value": "x"},
        {"name": "L", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "LEVEL"}}},
        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
        {
            "name": "O",
            "valueFrom": {"configMapKeyRef": {"name": "no", "key": "k", "optional": True}},
        },
    ]
    p = parse_pod(
        pod(container={"env": env, "envFrom": [{"prefix": "C_", "configMapRef": {"name": "cfg"}}]})
    )
    assert resolve_env(p.spec.containers[0], "default", lookup) == [
        ("C_LEVEL", "3"), ("A", "x"), ("L", "3"), ("P", "hunter2"),
    ]  # fmt: skip
    bad = parse_pod(
        pod(
            container={
                "env": [
                    {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}
                ]
            }
        )
    )
    with pytest.raises(ConfigRefError, match="couldn't find key NOPE in configmap default/cfg"):
        resolve_env(bad.spec.containers[0], "default", lookup)


def test_host_network_sandbox_uses_the_node_namespace(tmp_path: Path) -> None:
    """hostNetwork pods share the node's network namespace and get no hostname of their own."""
    p = parse_pod(pod(hostNetwork=True))
    cfg = configs.sandbox_config(p, node_name="n1", pod_log_dir=tmp_path, attempt=0)
    assert cfg.linux.security_context.namespace_options.network == pb.NODE
    assert cfg.log_directory == str(tmp_path / "default_web_u1")
    assert cfg.labels["edgebridge.io/node"] == "n1"


def _view(state: str, code: int = 0, will: bool = False) -> ContainerView:
    term = (
        Terminated(code, "Completed" if code == 0 else "Error") if state == "terminated" else None
    )
    return ContainerView(
        "app", "busybox", state=state, terminated=term, will_restart=will, ready=True
    )


@pytest.mark.parametrize(
    ("policy", "views", "expected"),
    [("Always", [_view("waiting")], "Pending"), ("Always", [_view("running")], "Running"),
     ("Never", [_view("terminated", 0)], "Succeeded"),
     ("Never", [_view("terminated", 1)], "Failed"),
     ("OnFailure", [_view("terminated", 0)], "Succeeded"),
     ("Always", [_view("terminated", 1, will=True)], "Running")],
)  # fmt: skip
def test_phase_as_kubelet(policy: str, views: list[ContainerView], expected: str) -> None:
    """Pending until started; Succeeded/Failed when all ended for good; else Running."""
    assert phase(parse_pod(pod(restartPolicy=policy)), views) == expected


def test_status_keeps_transition_times_while_unchanged() -> None:
    """A condition's lastTransitionTime moves only when its status changes."""
    p = parse_pod(pod())
    running = {"app": _view("running")}
    first = pod_status(p, running, pod_ip="10.0.0.2", host_ip="h", start_time=1, now=100)
    again = pod_status(
        p, running, pod_ip="10.0.0.2", host_ip="h", start_time=1, now=200, previous=first
    )
    assert again == first
    ready = {c["type"]: c for c in first["conditions"]}["Ready"]
    assert ready["status"] == "True"
    assert first["containerStatuses"][0]["ready"] is True


@given(st.lists(st.tuples(st.sampled_from(["a/x", "a/y", "b/z"]), st.integers(0, 9)), max_size=20))
async def test_outbox_keeps_the_latest_status_per_pod(
    tmp_path_factory: pytest.TempPathFactory, writes: list[tuple[str, int]]
) -> None:
    """Latest wins per pod; an answer for an older row does not delete a newer one."""
    box = await StatusBox.open(tmp_path_factory.mktemp("box") / "edgecore.db")
    try:
        latest: dict[str, int] = {}
        rows = []
        for key, n in writes:
            (row,) = await box.put([(key, "u", {"n": n})])
            rows.append(row)
            latest[key] = n
        pending = await box.pending()
        assert {r.key: r.status["n"] for r in pending} == latest
        for row in rows:  # the cloud answers every message, oldest first
            await box.delivered(row.key, row.seq)
        assert await box.pending() == []
    finally:
        await box.close()
