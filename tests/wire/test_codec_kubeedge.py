"""Frames as a stock KubeEdge cloudcore/edgecore writes them decode into typed messages."""

from __future__ import annotations

import json

from wire.codec import decode, encode
from wire.messages import Group, Operation

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "nginx", "namespace": "default", "resourceVersion": "1234"},
    "spec": {"nodeName": "edge-1", "containers": [{"name": "nginx", "image": "nginx:1.25"}]},
}

INSERT_FRAME = json.dumps(
    {
        "header": {
            "msg_id": "4f1c3a52-7f0e-4e4c-9a57-3b1f6f0c2e11",
            "parent_msg_id": "",
            "timestamp": 1700000000000,
            "sync": False,
        },
        "route": {
            "source": "edgecontroller",
            "group": "resource",
            "operation": "insert",
            "resource": "default/pod/nginx",
        },
        "content": POD,
    }
)

KEEPALIVE_FRAME = json.dumps(
    {
        "header": {"msg_id": "b2d7", "parent_msg_id": "", "timestamp": 1700000000500},
        "route": {"source": "edgehub", "group": "resource", "operation": "keepalive"},
        "content": "ping",
    }
)


def test_edgecontroller_insert_decodes() -> None:
    """A cloudcore pod insert decodes with route, header and the object as content."""
    m = decode(INSERT_FRAME)
    assert m.id == "4f1c3a52-7f0e-4e4c-9a57-3b1f6f0c2e11"
    assert m.parent_id == ""
    assert m.header.timestamp == 1700000000000
    assert m.header.sync is False
    assert m.route.source == "edgecontroller"
    assert m.route.group == Group.RESOURCE
    assert m.operation == Operation.INSERT
    assert m.resource == "default/pod/nginx"
    assert m.content == POD


def test_missing_kubeedge_fields_default_to_empty() -> None:
    """Fields KubeEdge omits (resourceversion, type, destination) default to empty strings."""
    m = decode(INSERT_FRAME)
    assert m.header.resourceversion == ""
    assert m.header.type == ""
    assert m.route.destination == ""


def test_keepalive_with_ping_content_decodes() -> None:
    """An edgehub keepalive carries the string "ping" as content and has no resource."""
    m = decode(KEEPALIVE_FRAME)
    assert m.operation == Operation.KEEPALIVE
    assert m.content == "ping"
    assert m.resource == ""


def test_sync_query_from_edge_decodes() -> None:
    """A synchronous query from metamanager keeps sync=true and its resource."""
    frame = json.dumps(
        {
            "header": {"msg_id": "q1", "parent_msg_id": "", "timestamp": 1, "sync": True},
            "route": {
                "source": "metaManager",
                "group": "meta",
                "operation": "query",
                "resource": "default/configmap/app",
            },
            "content": None,
        }
    )
    m = decode(frame)
    assert m.header.sync is True
    assert m.route.group == Group.META
    assert m.operation == Operation.QUERY


def test_ack_response_from_edge_decodes() -> None:
    """An edge ACK is a response whose parent_msg_id is the delivered message's id."""
    frame = json.dumps(
        {
            "header": {"msg_id": "r1", "parent_msg_id": "4f1c3a52", "timestamp": 2},
            "route": {
                "source": "edged",
                "group": "resource",
                "operation": "response",
                "resource": "default/pod/nginx",
            },
            "content": "OK",
        }
    )
    m = decode(frame)
    assert m.operation == Operation.RESPONSE
    assert m.parent_id == "4f1c3a52"
    assert m.content == "OK"


def test_json_encoded_string_content_stays_a_string() -> None:
    """Content that KubeEdge sends as a JSON-encoded string is kept verbatim, not parsed."""
    inner = json.dumps({"kind": "Pod"})
    m = decode(json.dumps({"route": {"operation": "update"}, "content": inner}))
    assert m.content == inner


def test_reencoded_kubeedge_frame_keeps_every_original_field() -> None:
    """Decoding then encoding a KubeEdge frame preserves the values it carried."""
    original = json.loads(INSERT_FRAME)
    again = json.loads(encode(decode(INSERT_FRAME)))
    for part in ("header", "route"):
        for field, value in original[part].items():
            assert again[part][field] == value
    assert again["content"] == original["content"]
