"""edgectl as a kubectl user drives it, against a real admin API and embedded store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.edgectl.conftest import Cloud, Links
from wire.errors import NotFound

pytestmark = pytest.mark.timeout(60)


def _ago(seconds: float) -> str:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(name: str, *, ns: str = "default", containers: int = 1, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "nodeName": "edge-1",
            "containers": [{"name": f"c{i}", "image": "busybox"} for i in range(containers)],
        },
    }


def running() -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": "10.0.0.7",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "c0",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": _ago(600)}},
                "containerID": "containerd://abc",
            },
            {
                "name": "c1",
                "ready": True,
                "restartCount": 2,
                "state": {"running": {"startedAt": _ago(300)}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": _ago(300)}},
            },
        ],
    }


def crashing() -> dict[str, Any]:
    return {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "c0",
                "ready": False,
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                "lastState": {"terminated": {"exitCode": 2, "finishedAt": _ago(30)}},
            }
        ],
    }


def pull_failed() -> dict[str, Any]:
    return {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": "c0",
                "ready": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
            }
        ],
    }


async def _pods(cloud: Cloud) -> None:
    await cloud.store.apply(
        [
            _pod("web", containers=2, app="web", tier="front"),
            _pod("crashy", app="worker"),
            _pod("pull", app="worker"),
            _pod("bare"),
            _pod("other", ns="plant-1", app="web"),
        ]
    )
    for name, status in (("web", running()), ("crashy", crashing()), ("pull", pull_failed())):
        await cloud.store.update_status("pod", "default", name, status)


async def test_pod_table_columns_from_container_statuses(cloud: Cloud) -> None:
    """get pods -n: NAME READY STATUS RESTARTS AGE NODE computed as kubectl computes them."""
    await _pods(cloud)
    result = await cloud.run("get", "pods", "-n", "default")
    assert result.code == 0, result.err
    rows = [line.split() for line in result.out.splitlines()]
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE"]
    by_name = {r[0]: r for r in rows[1:]}
    assert by_name["web"][1:4] == ["2/2", "Running", "2"]
    assert by_name["web"][4].startswith("(5m")  # (5m ago): the last restart
    assert by_name["crashy"][1:4] == ["0/1", "CrashLoopBackOff", "5"]
    assert by_name["crashy"][4].startswith("(3") and by_name["crashy"][5] == "ago)"
    assert by_name["pull"][1:4] == ["0/1", "ErrImagePull", "0"]
    assert by_name["bare"][1:4] == ["0/1", "Pending", "0"]
    assert all(r[-1] == "edge-1" for r in rows[1:])
    assert "other" not in by_name


async def test_wide_adds_ip_and_lists_span_namespaces(cloud: Cloud) -> None:
    """-o wide adds IP before NODE; without -n (or with -A) a NAMESPACE column leads."""
    await _pods(cloud)
    wide = await cloud.run("get", "pods", "-o", "wide", "-n", "default")
    header, *rows = [line.split() for line in wide.out.splitlines()]
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert next(r for r in rows if r[0] == "web")[-2:] == ["10.0.0.7", "edge-1"]
    assert next(r for r in rows if r[0] == "bare")[-2:] == ["<none>", "edge-1"]
    for argv in (("get", "pods"), ("get", "pods", "-A")):
        every = await cloud.run(*argv)
        lines = every.out.splitlines()
        assert lines[0].split()[:2] == ["NAMESPACE", "NAME"]
        assert ["plant-1", "other"] in [line.split()[:2] for line in lines]


async def test_name_and_flags_in_any_order(cloud: Cloud, tmp_path: Path) -> None:
    """`get devices -n default thermostat-1` works, and global options come anywhere."""
    device = {
        "apiVersion": "devices.kubeedge.io/v1beta1",
        "kind": "Device",
        "metadata": {"name": "thermostat-1", "namespace": "default"},
        "spec": {
            "nodeName": "edge-1",
            "deviceModelRef": {"name": "thermo"},
            "properties": [{"name": "t"}],
        },
    }
    await cloud.store.apply([device])
    for argv in (
        ("get", "devices", "-n", "default", "thermostat-1", "-o", "name"),
        ("get", "-o", "name", "-n", "default", "devices", "thermostat-1"),
        ("get", "device/thermostat-1", "-o", "name"),
        ("-n", "default", "get", "devices", "thermostat-1", "-o", "name"),
    ):
        result = await cloud.run(*argv)
        assert (result.code, result.out) == (0, "device/thermostat-1\n"), (argv, result.err)
    result = await cloud.run(
        "get", "dev", "thermostat-1", "-o", "name", *cloud.globals, globals_=()
    )
    assert (result.code, result.out) == (0, "device/thermostat-1\n"), result.err


async def test_label_selector_is_applied_by_the_server(cloud: Cloud) -> None:
    """-l filters with Kubernetes' grammar (=, !=, in, notin, exists); a bad one is one line."""
    await _pods(cloud)
    cases = {
        "app=web": ["default/web", "plant-1/other"],
        "app=web,tier": ["default/web"],
        "app in (worker),!tier": ["default/crashy", "default/pull"],
        "app notin (web,worker)": ["default/bare"],
        "app!=web": ["default/bare", "default/crashy", "default/pull"],
    }
    for selector, expected in cases.items():
        result = await cloud.run("get", "pods", "-l", selector, "-o", "json")
        got = [
            f"{p['metadata']['namespace']}/{p['metadata']['name']}"
            for p in json.loads(result.out)["items"]
        ]
        assert got == expected, selector
    bad = await cloud.run("get", "pods", "-l", "app==")
    assert bad.code == 0  # an empty value is valid (matches app="")
    bad = await cloud.run("get", "pods", "-l", "app in web")
    assert bad.code == 1 and bad.err.startswith("edgectl: invalid label selector 'app in web'")
    assert bad.err.count("\n") == 1


async def test_outputs_name_json_yaml_jsonpath(cloud: Cloud) -> None:
    """-o name prints kind/name, jsonpath fills kubectl templates; json/yaml as the API has."""
    await _pods(cloud)
    names = await cloud.run("get", "pods", "-n", "default", "-o", "name")
    assert names.out.splitlines() == ["pod/bare", "pod/crashy", "pod/pull", "pod/web"]
    path = await cloud.run(
        "get", "pods", "-n", "default", "-o", "jsonpath={.items[*].metadata.name}"
    )
    assert path.out == "bare crashy pull web\n"
    ranged = await cloud.run(
        "get",
        "pod",
        "web",
        "-o",
        'jsonpath={range .status.containerStatuses[*]}{.name}={.restartCount}{"\\n"}{end}',
    )
    assert ranged.out == "c0=0\nc1=2\n\n"
    ready = await cloud.run(
        "get", "pod", "web", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}'
    )
    assert ready.out == "True\n"
    as_yaml = yaml.safe_load((await cloud.run("get", "pod", "web", "-o", "yaml")).out)
    assert as_yaml["status"]["podIP"] == "10.0.0.7"
    bad = await cloud.run("get", "pods", "-o", "jsonpath={.items[")
    assert bad.code == 1 and bad.err.startswith("edgectl: -o jsonpath:")
    bad = await cloud.run("get", "pods", "-o", "fancy")
    assert bad.code == 1 and "unknown output format 'fancy'" in bad.err


async def test_several_kinds_in_one_get(cloud: Cloud) -> None:
    """get nodes,pods prints one table per kind with kind/name names."""
    await cloud.store.apply([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}}])
    await _pods(cloud)
    result = await cloud.run("get", "nodes,pods", "-n", "default")
    assert result.code == 0, result.err
    nodes, pods = result.out.split("\n\n")
    assert nodes.splitlines()[1].split()[0] == "node/edge-1"
    assert pods.splitlines()[0].split()[0] == "NAME"
    assert {line.split()[0] for line in pods.splitlines()[1:]} == {
        "pod/web",
        "pod/crashy",
        "pod/pull",
        "pod/bare",
    }
    listed = json.loads((await cloud.run("get", "no,po", "-n", "default", "-o", "json")).out)
    assert [i["kind"] for i in listed["items"]] == ["Node"] + ["Pod"] * 4


async def test_describe_node_lists_its_pods_and_devices(cloud: Cloud) -> None:
    """describe node shows its state, conditions, and the pods and devices bound to it."""
    await cloud.store.apply(
        [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}},
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": "thermostat-1", "namespace": "default"},
                "spec": {
                    "nodeName": "edge-1",
                    "deviceModelRef": {"name": "thermo"},
                    "properties": [{"name": "target", "desired": {"value": "20"}}],
                },
            },
        ]
    )
    await _pods(cloud)
    result = await cloud.run("describe", "node", "edge-1")
    assert result.code == 0, result.err
    text = result.out
    assert "Name:         edge-1" in text
    assert "Status:       offline (last seen never)" in text
    assert "Pods:          (5 bound)" in text
    assert any(
        line.split()[:4] == ["default", "crashy", "0/1", "CrashLoopBackOff"]
        for line in text.splitlines()
    )
    assert "Devices:       (1 bound)" in text and "thermostat-1" in text
    assert text.rstrip().endswith("Events:        <none>")


async def test_describe_pod_and_device(cloud: Cloud) -> None:
    """describe pod shows containers and their states; describe device its properties."""
    await _pods(cloud)
    pod = {
        " ".join(line.split())
        for line in (await cloud.run("describe", "pod", "crashy")).out.splitlines()
    }
    assert {"Status: CrashLoopBackOff", "State: Waiting", "Reason: CrashLoopBackOff"} <= pod
    assert {"Last State: Terminated", "ExitCode: 2", "Restarts: 5"} <= pod
    assert any(line.startswith("Restarts: 5 (") and line.endswith("s ago)") for line in pod)
    await cloud.store.apply(
        [
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": "pump", "namespace": "plant-1"},
                "spec": {
                    "nodeName": "edge-1",
                    "deviceModelRef": {"name": "pump-model"},
                    "properties": [{"name": "speed"}],
                },
            }
        ]
    )
    device = await cloud.run("describe", "devices", "-n", "plant-1", "pump")
    assert device.code == 0, device.err
    assert "Namespace:    plant-1" in device.out and "speed" in device.out


async def test_delete_from_file(cloud: Cloud, tmp_path: Path) -> None:
    """delete -f deletes each object of the manifest; a missing one is NotFound, exit 1."""
    await _pods(cloud)
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump_all([_pod("web"), _pod("crashy"), _pod("ghost")]))
    result = await cloud.run("delete", "-f", str(path))
    assert result.code == 1
    assert result.out.splitlines() == ["pod/web deleted", "pod/crashy deleted"]
    assert result.err == 'Error from server (NotFound): pods "ghost" not found\n'
    for name in ("web", "crashy"):
        with pytest.raises(NotFound):
            await cloud.store.get("pod", "default", name)
    assert (await cloud.store.get("pod", "default", "pull"))["metadata"]["name"] == "pull"


async def test_version_prints_client_and_server(cloud: Cloud) -> None:
    """version prints both versions; --client needs no server; -o json is structured."""
    result = await cloud.run("version")
    assert result.code == 0, result.err
    client, server = result.out.splitlines()
    assert client.startswith("Client Version: v") and server.startswith("Server Version: v")
    assert "(store: embedded)" in server
    offline = await cloud.run(
        "version", "--client", "-o", "json", globals_=("--server", "https://127.0.0.1:1")
    )
    assert offline.code == 0, offline.err
    assert set(json.loads(offline.out)) == {"clientVersion"}


async def test_apply_reports_created_configured_unchanged(cloud: Cloud, tmp_path: Path) -> None:
    """apply prints pod/NAME created, then unchanged, then configured after an edit."""
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(_pod("nginx")))
    assert (await cloud.run("apply", "-f", str(path))).out == "pod/nginx created\n"
    assert (await cloud.run("apply", "-f", str(path))).out == "pod/nginx unchanged\n"
    path.write_text(yaml.safe_dump(_pod("nginx", app="web")))
    assert (await cloud.run("apply", "-f", str(path))).out == "pod/nginx configured\n"


async def test_get_nodes_json_follows_presence(linked_cloud: Cloud, links: Links) -> None:
    """A node the hub reports connected is Ready=True and online; else not."""
    await linked_cloud.store.apply(
        [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}}]
    )
    links.online["edge-1"] = dt.datetime.now(dt.UTC).timestamp()
    table = await linked_cloud.run("get", "nodes")
    assert table.out.splitlines()[1].split()[1] == "online"


async def test_api_resources_lists_every_kind(cloud: Cloud) -> None:
    """api-resources prints each kind with its short names, from the one kinds table."""
    result = await cloud.run("api-resources")
    rows = [line.split() for line in result.out.splitlines()]
    assert rows[0] == ["NAME", "SHORTNAMES", "NAMESPACED", "KIND"]
    assert ["nodes", "no", "false", "Node"] in rows
    assert ["pods", "po", "true", "Pod"] in rows
    assert ["events", "ev", "true", "Event"] in rows
