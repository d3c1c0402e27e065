"""wire.manifests: parsing YAML/JSON manifests and validating the six mirrored kinds."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from wire.errors import InvalidObject
from wire.manifests import copy_json, load, parse_documents, validate, validate_all


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec},
    }


# A v1beta1 pair written the way KubeEdge documents them (properties with type/accessMode,
# protocol config, visitors, status twins): all of it must pass.
DEVICE_MODEL_YAML = """
apiVersion: devices.kubeedge.io/v1beta1
kind: DeviceModel
metadata:
  name: thermo-model
  namespace: default
spec:
  protocol: modbus
  properties:
    - name: temperature
      description: degrees
      type: FLOAT
      accessMode: ReadOnly
      minimum: "-20"
      maximum: "80"
      unit: celsius
    - name: enabled
      type: BOOLEAN
      accessMode: ReadWrite
"""

DEVICE_YAML = """
apiVersion: devices.kubeedge.io/v1beta1
kind: Device
metadata:
  name: thermo-1
  labels:
    model: thermo
spec:
  deviceModelRef:
    name: thermo-model
  nodeName: edge-1
  protocol:
    protocolName: modbus
    configData:
      ip: 127.0.0.1
      port: 502
  properties:
    - name: enabled
      collectCycle: 10000
      reportCycle: 10000
      reportToCloud: true
      desired:
        value: "true"
      visitors:
        protocolName: modbus
        configData:
          register: CoilRegister
          offset: 2
status:
  twins:
    - propertyName: enabled
      reported:
        value: "false"
        metadata:
          timestamp: "1700000000000"
          type: boolean
"""


# --------------------------------------------------------------------------- parsing


def test_several_yaml_documents_and_empty_ones_are_skipped() -> None:
    """Documents separated by --- are returned in order; empty and comment-only ones vanish."""
    text = "---\nkind: Pod\n---\n# nothing here\n---\n\n---\nkind: Secret\n"
    assert [d["kind"] for d in parse_documents(text)] == ["Pod", "Secret"]


def test_json_is_accepted() -> None:
    """A JSON object is one document."""
    assert parse_documents(json.dumps(pod())) == [pod()]


def test_list_kinds_contribute_their_items() -> None:
    """kind: List (and PodList...) unwraps into its items."""
    text = json.dumps({"kind": "List", "items": [pod(), {"kind": "ConfigMap"}]})
    assert [d["kind"] for d in parse_documents(text)] == ["Pod", "ConfigMap"]
    assert parse_documents("kind: PodList\nitems: []\n") == []


def test_yaml_syntax_error_names_the_document() -> None:
    """A YAML error reports the file, the document number and the line."""
    text = "kind: Pod\n---\nkind: ConfigMap\n---\nkind: [oops\n"
    with pytest.raises(InvalidObject, match=r"^pod\.yaml document 3: invalid YAML at line \d+"):
        parse_documents(text, source="pod.yaml")


def test_broken_json_reports_json_position() -> None:
    """Text that looks like JSON but is not reports the JSON parser's position."""
    with pytest.raises(InvalidObject, match=r"^stdin: invalid JSON at line 1 column"):
        parse_documents('{"kind": "Pod",, }')


def test_non_mapping_document_is_refused() -> None:
    """A document that is a list or a scalar is an error naming its number."""
    with pytest.raises(InvalidObject, match=r"^x document 2: expected a mapping, got list$"):
        parse_documents("kind: Pod\n---\n- a\n", source="x")


def test_document_without_kind_is_refused() -> None:
    """A mapping without kind is an error naming its number (and the list item)."""
    with pytest.raises(InvalidObject, match=r"^stdin document 1: kind is missing$"):
        parse_documents("metadata: {name: x}\n")
    with pytest.raises(InvalidObject, match=r"^stdin document 1 item 2: kind is missing$"):
        parse_documents(json.dumps({"kind": "List", "items": [pod(), {}]}))


@pytest.mark.parametrize("text", ["[" * 100_000, "a: " + "[" * 100_000, "{" + '"a":{' * 5000])
def test_pathological_input_is_an_invalid_object(text: str) -> None:
    """Absurdly nested or truncated input is refused as InvalidObject, never a RecursionError."""
    with pytest.raises(InvalidObject):
        parse_documents(text)


def test_timestamps_stay_strings() -> None:
    """YAML timestamps are kept as the strings Kubernetes uses, not datetimes."""
    (doc,) = parse_documents("kind: Pod\nmetadata:\n  creationTimestamp: 2024-01-02T03:04:05Z\n")
    assert doc["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"


def test_load_prefixes_validation_errors_with_the_document() -> None:
    """load() validates every document and names the document of the first bad one."""
    text = yaml.safe_dump_all([pod(), {**pod(), "spec": {"containers": []}}])
    with pytest.raises(
        InvalidObject,
        match=r"^app\.yaml document 2: Pod default/web: spec\.containers: must list at least",
    ):
        load(text, source="app.yaml")


def test_kubeedge_device_examples_load() -> None:
    """KubeEdge-style v1beta1 Device and DeviceModel manifests pass unchanged but for defaults."""
    model, device = load(DEVICE_MODEL_YAML + "---" + DEVICE_YAML)
    assert model["spec"]["properties"][0]["minimum"] == "-20"
    assert device["metadata"]["namespace"] == "default"
    assert device["status"]["twins"][0]["reported"]["value"] == "false"
    assert device["spec"]["protocol"]["configData"]["port"] == 502


# --------------------------------------------------------------------------- validation


def test_valid_objects_of_every_kind_pass() -> None:
    """One minimal valid object of each of the six kinds validates."""
    objs = [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "edge-1"}},
        pod(),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="}},
        *parse_documents(DEVICE_YAML + "---" + DEVICE_MODEL_YAML),
    ]
    assert [o["kind"] for o in validate_all(objs)] == [o["kind"] for o in objs]


def test_namespace_defaults_and_node_namespace_is_dropped() -> None:
    """Namespaced kinds get namespace default; a Node's namespace is removed."""
    assert validate(pod())["metadata"]["namespace"] == "default"
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}}
    assert "namespace" not in validate(node)["metadata"]


def test_unknown_fields_are_kept_and_input_is_not_mutated() -> None:
    """Fields the schema does not know survive; the caller's dict is left untouched."""
    obj = pod(hostNetwork=True, tolerations=[{"key": "k"}])
    obj["metadata"]["annotations"] = {"a": "b"}
    obj["x-extra"] = {"deep": [1, 2]}
    before = copy.deepcopy(obj)
    out = validate(obj)
    assert obj == before
    assert out["x-extra"] == {"deep": [1, 2]}
    assert out["spec"]["tolerations"] == [{"key": "k"}]


def test_owned_input_is_normalised_in_place() -> None:
    """A caller that hands its dict over gets that same dict back, normalised."""
    obj = pod()
    out = validate(obj, owned=True)
    assert out is obj and obj["metadata"]["namespace"] == "default"


def test_a_spec_known_valid_is_not_checked_again_but_the_rest_is() -> None:
    """spec_valid=True skips the spec's checks (the store passes it for an unchanged spec);
    metadata is still checked, and a pod without a spec is still refused."""
    bad_spec = pod(containers=[])
    with pytest.raises(InvalidObject, match="at least one container"):
        validate(copy.deepcopy(bad_spec))
    assert validate(bad_spec, spec_valid=True)["spec"] == {"containers": []}
    bad_name = pod()
    bad_name["metadata"]["name"] = "Not_Valid"
    with pytest.raises(InvalidObject, match="not a valid name"):
        validate(bad_name, spec_valid=True)
    no_spec = pod()
    del no_spec["spec"]
    with pytest.raises(InvalidObject, match="spec is required"):
        validate(no_spec, spec_valid=True)


def test_copy_json_is_a_deep_copy() -> None:
    """Nothing mutable is shared with the original; non-JSON values are deep-copied too."""
    obj: dict[str, Any] = {"a": [{"b": "c"}, 1, 2.5, True, None], "s": {1, 2}}
    out = copy_json(obj)
    assert out == obj
    assert out["a"] is not obj["a"] and out["a"][0] is not obj["a"][0]
    assert out["s"] is not obj["s"]


def test_cyclic_object_is_invalid() -> None:
    """A hand-built object that contains itself is refused, not copied forever."""
    obj = pod()
    obj["spec"]["loop"] = obj
    with pytest.raises(InvalidObject, match="nested too deeply"):
        validate(obj)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected an object (a mapping), got list"),
        ({"apiVersion": "v1"}, "kind is missing"),
        (
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
            "kind 'Deployment' is not supported",
        ),
        ({**pod(), "apiVersion": "v2"}, "Pod default/web: apiVersion must be 'v1', got 'v2'"),
        ({**pod(), "metadata": {}}, "Pod default/<unnamed>: metadata.name is required"),
        ({**pod(), "metadata": {"name": "Web_1"}}, "Pod default/Web_1: metadata.name: 'Web_1'"),
        ({**pod(), "metadata": {"name": "a" * 254}}, "is not a valid name"),
        (
            {**pod(), "metadata": {"name": "w", "namespace": "a.b"}},
            "Pod a.b/w: metadata.namespace: 'a.b' is not a valid namespace",
        ),
        (
            {**pod(), "metadata": {"name": "w", "labels": {"on": True}}},
            "Pod default/w: metadata.labels.on: Input should be a valid string",
        ),
        ({**pod(), "spec": {}}, "Pod default/web: spec.containers is required"),
        (
            {**pod(), "spec": {"containers": []}},
            "Pod default/web: spec.containers: must list at least one container",
        ),
        (
            {**pod(), "spec": {"containers": [{"name": "c"}]}},
            "Pod default/web: spec.containers[0].image is required",
        ),
        (
            {**pod(), "spec": {"containers": [{"name": "c", "image": " "}]}},
            "Pod default/web: spec.containers[0].image: must not be empty",
        ),
        (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": 1}},
            "ConfigMap default/c: data.a: Input should be a valid string",
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "c"},
                "data": {"a/b": ""},
            },
            "ConfigMap default/c: data: key 'a/b' must consist of",
        ),
        (
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "%%"}},
            "Secret default/s: data: value of 'a' is not valid base64",
        ),
        (
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": "d"},
            },
            "Device default/d: spec is required",
        ),
        (
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "Device",
                "metadata": {"name": "d"},
                "spec": {"nodeName": "edge-1"},
            },
            "Device default/d: spec.deviceModelRef is required",
        ),
        (
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "DeviceModel",
                "metadata": {"name": "m"},
                "spec": {"properties": [{"name": "t", "type": "int"}]},
            },
            "DeviceModel default/m: spec.properties[0].type: Input should be 'INT'",
        ),
        (
            {
                "apiVersion": "devices.kubeedge.io/v1beta1",
                "kind": "DeviceModel",
                "metadata": {"name": "m"},
                "spec": {"properties": [{"type": "INT"}]},
            },
            "DeviceModel default/m: spec.properties[0].name is required",
        ),
        (
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n", "namespace": "x"}}
            | {"apiVersion": "devices.kubeedge.io/v1beta1"},
            "Node n: apiVersion must be 'v1'",
        ),
    ],
)
def test_invalid_objects_are_refused_with_one_line(obj: Any, message: str) -> None:
    """Each broken manifest raises InvalidObject with a single line naming object and field."""
    with pytest.raises(InvalidObject) as info:
        validate(obj)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_secret_string_data_becomes_base64_data() -> None:
    """stringData is folded into data as base64, winning over the same key in data."""
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"a": base64.b64encode(b"old").decode(), "b": "eA=="},
        "stringData": {"a": "päss"},
    }
    out = validate(secret)
    assert "stringData" not in out
    assert base64.b64decode(out["data"]["a"]).decode() == "päss"
    assert out["data"]["b"] == "eA=="


def test_validate_all_refuses_the_whole_batch() -> None:
    """validate_all raises on a bad object even when the others are fine."""
    with pytest.raises(InvalidObject, match=r"spec\.containers"):
        validate_all([pod(), {**pod(), "spec": {}}, pod()])


# --------------------------------------------------------------------------- properties

dns_labels = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?", fullmatch=True)
data_keys = st.from_regex(r"[-._a-zA-Z0-9]{1,12}", fullmatch=True)


@given(
    name=st.lists(dns_labels, min_size=1, max_size=3).map(".".join),
    namespace=dns_labels,
    data=st.dictionaries(data_keys, st.text(max_size=20), max_size=5),
)
def test_valid_configmaps_survive_a_yaml_round_trip(
    name: str, namespace: str, data: dict[str, str]
) -> None:
    """Any valid ConfigMap dumped to YAML loads back validated and equal."""
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }
    assert load(yaml.safe_dump(obj)) == [obj]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    kind=st.sampled_from(["Node", "Pod", "ConfigMap", "Secret", "Device", "DeviceModel", "X"]),
    api=st.sampled_from(["v1", "devices.kubeedge.io/v1beta1"]),
    body=st.dictionaries(
        st.sampled_from(["metadata", "spec", "data", "stringData", "status"]), json_values
    ),
)
def test_arbitrary_input_only_ever_raises_invalid_object(
    kind: str, api: str, body: dict[str, Any]
) -> None:
    """Garbage never escapes as anything but InvalidObject."""
    try:
        validate({"apiVersion": api, "kind": kind, **body})
    except InvalidObject as exc:
        assert "\n" not in str(exc)
