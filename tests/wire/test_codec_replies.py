"""reply() and error_reply() answer a message the way KubeEdge pairs requests and responses."""

from __future__ import annotations

from wire.codec import decode, encode
from wire.messages import Message, Operation


def _request(**route: str) -> Message:
    m = Message.new(
        source=route.get("source", "edgecontroller"),
        group="resource",
        operation="insert",
        resource="default/pod/nginx",
        content={"kind": "Pod"},
        resource_version="7",
        timestamp_ms=5,
    )
    if "destination" in route:
        m.route.destination = route["destination"]
    return m


def test_reply_is_an_ok_response_to_the_request() -> None:
    """reply() defaults to a response carrying "OK" whose parent is the request."""
    req = _request()
    ack = req.reply()
    assert ack.operation == Operation.RESPONSE
    assert ack.content == "OK"
    assert ack.parent_id == req.id
    assert ack.id and ack.id != req.id


def test_reply_keeps_group_and_resource() -> None:
    """The answer names the same group and resource as the request."""
    req = _request()
    ack = req.reply({"status": "done"})
    assert ack.route.group == req.route.group
    assert ack.resource == req.resource
    assert ack.content == {"status": "done"}


def test_reply_source_prefers_explicit_then_destination_then_source() -> None:
    """The answer's source is the given one, else the request's destination, else its source."""
    assert _request().reply(source="edged").route.source == "edged"
    assert _request(destination="metaManager").reply().route.source == "metaManager"
    assert _request(source="edgecontroller").reply().route.source == "edgecontroller"


def test_reply_has_fresh_header() -> None:
    """The answer does not inherit sync, resourceVersion or timestamp from the request."""
    req = _request()
    req.header.sync = True
    ack = req.reply(timestamp_ms=99)
    assert ack.header.sync is False
    assert ack.header.resourceversion == ""
    assert ack.header.timestamp == 99


def test_error_reply_carries_the_reason() -> None:
    """error_reply() is an error operation with the reason as content and the request as parent."""
    req = _request()
    err = req.error_reply("unknown operation 'teleport'", source="cloudhub", timestamp_ms=3)
    assert err.operation == Operation.ERROR
    assert err.content == "unknown operation 'teleport'"
    assert err.parent_id == req.id
    assert err.route.source == "cloudhub"
    assert err.header.timestamp == 3


def test_replies_round_trip() -> None:
    """Answers survive encode/decode with their parent link intact."""
    req = _request()
    for answer in (req.reply(), req.error_reply("nope")):
        back = decode(encode(answer))
        assert back == answer
        assert back.parent_id == req.id
