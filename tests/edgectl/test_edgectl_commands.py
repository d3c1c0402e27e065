"""edgectl's commands against a real cloudhub HTTPS app and embedded store (in-process CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.edgectl.conftest import Cloud
from tests.support.procs import free_port
from wire.errors import NotFound

MANIFESTS = """\
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata: {name: thermo-model}
spec:
  properties:
  - {name: target, type: FLOAT}
  - {name: temperature, type: FLOAT}
---
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata: {name: thermostat}
spec:
  deviceModelRef: {name: thermo-model}
  nodeName: edge-1
  properties:
  - name: target
    desired: {value: "20"}
  - name: temperature
---
apiVersion: v1
kind: Pod
metadata: {name: nginx, namespace: default}
spec:
  nodeName: edge-1
  containers: [{name: web, image: nginx}]
"""


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


async def test_token_create_prints_one_verifiable_token(cloud: Cloud) -> None:
    """`token create --ttl 15m` prints exactly one line: a token valid for 15 minutes."""
    result = await cloud.run("token", "create", "--ttl", "15m")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 1
    claims = cloud.authority.verify_join_token(lines[0])
    assert claims["exp"] - claims["iat"] == 900


async def test_apply_prints_created_then_configured(cloud: Cloud, tmp_path: Path) -> None:
    """Apply reports each object as created, then configured/unchanged on re-apply."""
    path = _write(tmp_path, "all.yaml", MANIFESTS)
    result = await cloud.run("apply", "-f", path)
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "devicemodel/thermo-model created",
        "device/thermostat created",
        "pod/nginx created",
    ]
    changed = MANIFESTS.replace("image: nginx", "image: nginx:1.27")
    result = await cloud.run("apply", "-f", _write(tmp_path, "changed.yaml", changed))
    assert result.out.splitlines()[-1] == "pod/nginx configured"
    assert result.out.splitlines()[0] == "devicemodel/thermo-model unchanged"


async def test_invalid_manifest_applies_nothing(cloud: Cloud, tmp_path: Path) -> None:
    """A bad document fails the whole apply with one line naming it; nothing is stored."""
    bad = MANIFESTS + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: broken}\nspec: {}\n"
    result = await cloud.run("apply", "-f", _write(tmp_path, "bad.yaml", bad))
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert result.err.startswith("edgectl: ")
    assert "bad.yaml document 4" in result.err and "containers" in result.err
    assert (await cloud.store.list("pod"))[0] == []
    assert (await cloud.store.list("device"))[0] == []


async def test_get_json_prints_object_or_list(cloud: Cloud, tmp_path: Path) -> None:
    """`get -o json` prints one object for NAME, a List otherwise."""
    await cloud.run("apply", "-f", _write(tmp_path, "all.yaml", MANIFESTS))
    result = await cloud.run("get", "pods", "-o", "json")
    assert result.code == 0, result.err
    listed = json.loads(result.out)
    assert listed["kind"] == "List"
    assert [p["metadata"]["name"] for p in listed["items"]] == ["nginx"]
    result = await cloud.run("get", "po", "nginx", "-o", "json")
    single = json.loads(result.out)
    assert single["kind"] == "Pod" and single["spec"]["nodeName"] == "edge-1"
    result = await cloud.run("get", "device", "thermostat", "-o", "yaml")
    assert yaml.safe_load(result.out)["spec"]["deviceModelRef"]["name"] == "thermo-model"


async def test_get_nodes_table_and_json_show_offline_node(cloud: Cloud) -> None:
    """A node with no link is 'offline' in the table and not Ready=True in JSON."""
    await cloud.store.apply([{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}}])
    table = await cloud.run("get", "nodes")
    assert table.code == 0, table.err
    header, row = table.out.splitlines()
    assert header.split() == ["NAME", "STATUS", "LAST-SEEN", "AGE"]
    assert row.split()[:3] == ["edge-1", "offline", "never"]
    as_json = json.loads((await cloud.run("get", "no", "-o", "json")).out)
    ready = [c for c in as_json["items"][0]["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] != "True"


async def test_get_missing_object_answers_as_kubectl(cloud: Cloud) -> None:
    """Getting an object that does not exist is exit 1 with kubectl's NotFound line."""
    result = await cloud.run("get", "pod", "nope")
    assert (result.code, result.out) == (1, "")
    assert result.err == 'Error from server (NotFound): pods "nope" not found\n'
    result = await cloud.run("describe", "no", "nope")
    assert result.err == 'Error from server (NotFound): nodes "nope" not found\n'
    assert result.code == 1


async def test_delete_removes_and_reports(cloud: Cloud, tmp_path: Path) -> None:
    """`delete pod NAME` deletes it and prints pod/NAME deleted; again is NotFound, exit 1."""
    await cloud.run("apply", "-f", _write(tmp_path, "all.yaml", MANIFESTS))
    result = await cloud.run("delete", "pod", "nginx")
    assert (result.code, result.out) == (0, "pod/nginx deleted\n")
    with pytest.raises(NotFound):
        await cloud.store.get("pod", "default", "nginx")
    again = await cloud.run("delete", "pod", "nginx")
    assert (again.code, again.err) == (1, 'Error from server (NotFound): pods "nginx" not found\n')


async def test_unknown_kind_exits_1_naming_kinds(cloud: Cloud) -> None:
    """An unknown kind is exit 1 and one line listing the valid kinds."""
    result = await cloud.run("get", "foo")
    assert result.code == 1
    assert result.err == (
        "edgectl: unknown kind 'foo' (expected one of nodes, pods, configmaps, secrets, "
        "devices, devicemodels, events)\n"
    )


async def test_twin_set_sets_desired_and_keeps_status(cloud: Cloud, tmp_path: Path) -> None:
    """`twin set` writes desired values as strings and leaves the reported status alone."""
    await cloud.run("apply", "-f", _write(tmp_path, "all.yaml", MANIFESTS))
    twins = {"twins": [{"propertyName": "temperature", "reported": {"value": "19.5"}}]}
    await cloud.store.update_status("device", "default", "thermostat", twins)
    result = await cloud.run("twin", "set", "thermostat", "target=21.5", "temperature=3")
    assert result.code == 0, result.err
    assert result.out.startswith("device/thermostat configured")
    device = await cloud.store.get("device", "default", "thermostat")
    props: list[dict[str, Any]] = device["spec"]["properties"]
    assert props[0]["desired"]["value"] == "21.5"
    assert props[1]["desired"]["value"] == "3"
    assert device["status"] == twins


async def test_twin_set_unknown_property_changes_nothing(cloud: Cloud, tmp_path: Path) -> None:
    """An unknown property is exit 1 naming it; no value is written."""
    await cloud.run("apply", "-f", _write(tmp_path, "all.yaml", MANIFESTS))
    before = await cloud.store.get("device", "default", "thermostat")
    result = await cloud.run("twin", "set", "thermostat", "target=1", "humidity=5")
    assert result.code == 1
    assert "no property 'humidity'" in result.err and "target, temperature" in result.err
    assert await cloud.store.get("device", "default", "thermostat") == before


async def test_twin_set_bad_assignment_and_missing_device(cloud: Cloud) -> None:
    """`PROP` without `=` and an unknown device are exit 1 with a clear line."""
    result = await cloud.run("twin", "set", "thermostat", "target")
    assert (result.code, result.err) == (1, "edgectl: expected PROP=VALUE, got 'target'\n")
    result = await cloud.run("twin", "set", "nope", "a=1", "-n", "plant-1")
    assert (result.code, result.err) == (
        1,
        'Error from server (NotFound): devices "nope" not found\n',
    )


async def test_default_data_dir_is_used_from_cwd(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ./data/cloud present, no credential flags are needed."""
    monkeypatch.chdir(cloud.data_dir.parent.parent)
    result = await cloud.run("get", "pods", globals_=("--server", cloud.server))
    assert result.code == 0, result.err
    assert "No resources found" in result.err


async def test_wrong_token_and_missing_ca_are_explained(
    cloud: Cloud, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong token is exit 1 'refused the admin token'; no CA suggests --data-dir."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./data/cloud here
    ca = str(cloud.data_dir / "ca.crt")
    result = await cloud.run(
        "get", "pods", globals_=("--server", cloud.server, "--token", "nope", "--ca-file", ca)
    )
    assert result.code == 1 and "refused the admin token" in result.err
    monkeypatch.setenv("EDGECTL_TOKEN", cloud.authority.admin_token)
    result = await cloud.run("get", "pods", globals_=("--server", cloud.server))
    assert result.code == 1 and "--data-dir" in result.err and "ca.crt" in result.err
    result = await cloud.run("get", "pods", globals_=("--server", cloud.server, "--ca-file", ca))
    assert result.code == 0, result.err


async def test_unreachable_server_is_exit_1(cloud: Cloud) -> None:
    """No cloudhub at the URL: exit 1 saying it cannot be reached."""
    globals_ = ("--server", f"https://127.0.0.1:{free_port()}", "--data-dir", str(cloud.data_dir))
    result = await cloud.run("get", "nodes", globals_=globals_)
    assert result.code == 1 and "cannot reach cloudhub" in result.err
