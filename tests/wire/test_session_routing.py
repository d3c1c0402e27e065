"""The edge session's traffic: routing by operation, the inventory, keepalives, half-open links."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.wire.session_support import (
    HEARTBEAT,
    cloud,
    link_up,
    make_session,
    upstream,
)
from wire.codec import decode
from wire.messages import Message


def test_inventory_is_the_first_frame_and_names_the_node() -> None:
    """The inventory frame carries key -> resourceVersion as content, for null/node/<node>."""
    session = make_session()
    session.connecting()
    msg = decode(session.opened({"default/configmap/a": "7"}, wall_ms=1234))
    assert msg.operation == "inventory"
    assert msg.resource == "null/node/edge-1"
    assert msg.content == {"default/configmap/a": "7"}
    assert msg.header.timestamp == 1234
    assert not session.connected, "up only once the inventory is written"
    session.stated(0.0)
    assert session.connected and session.connections == 1


@pytest.mark.parametrize("op", ["insert", "update", "patch", "delete"])
def test_object_changes_go_to_the_store(op: str) -> None:
    """insert/update/patch/delete from the cloud are routed to metamanager."""
    session = make_session()
    link_up(session, 0.0)
    (route,) = session.receive(cloud(op), 0.1).routes
    assert route.module == "metamanager" and route.message.operation == op


def test_resource_queries_go_to_the_store_and_streams_to_edgestream() -> None:
    """A resource ``query`` is the store's; anything in group ``stream`` is edgestream's."""
    session = make_session()
    link_up(session, 0.0)
    assert session.receive(cloud("query"), 0.1).routes[0].module == "metamanager"
    for op in ("open", "data", "query"):
        assert session.receive(cloud(op, group="stream"), 0.1).routes[0].module == "edgestream"


def test_an_answer_goes_back_to_the_module_that_asked_once() -> None:
    """The cloud's response to an upstream message reaches its sender; a duplicate does not."""
    session = make_session()
    link_up(session, 0.0)
    sent = upstream(source="twin")
    assert session.send(sent) is not None
    assert session.awaiting_answers == 1
    (route,) = session.receive(cloud("response", parent=sent.id), 0.1).routes
    assert route.module == "twin"
    (again,) = session.receive(cloud("response", parent=sent.id), 0.2).routes
    assert again.module == "" and again.group == "" and not again.warn_unclaimed


def test_an_unclaimed_error_is_worth_a_warning() -> None:
    """An ``error`` nobody asked for goes to send_sync waiters, flagged for a warning."""
    session = make_session()
    link_up(session, 0.0)
    (route,) = session.receive(cloud("error", parent="nobody"), 0.1).routes
    assert route.warn_unclaimed and route.module == ""


def test_answers_acks_and_stream_output_are_not_awaited() -> None:
    """Only messages expecting an answer are remembered: not ACKs, errors or stream output."""
    session = make_session()
    link_up(session, 0.0)
    ack = Message.new(source="metamanager", group="resource", operation="insert", resource="x")
    session.send(ack.reply(source="metamanager"))
    session.send(upstream(source="edgestream", op="data", group="stream"))
    session.send(upstream(source="", op="update"))
    assert session.awaiting_answers == 0


def test_unknown_operations_are_answered_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """An operation the edge does not speak gets an ``error`` reply naming it, and a warning."""
    session = make_session()
    link_up(session, 0.0)
    frame = cloud("explode", resource="node/x")
    with caplog.at_level(logging.WARNING):
        actions = session.receive(frame, 0.1)
    assert actions.routes == []
    (reply,) = [decode(f) for f in actions.frames]
    assert reply.operation == "error" and reply.parent_id == decode(frame).id
    assert reply.content == "unknown operation 'explode'"
    assert "cloud sent unknown operation 'explode' for node/x" in caplog.text


@pytest.mark.parametrize("frame", ["", "{", "[]", '{"route": {}}', "\udcff", b"\xff\xfe"])
def test_bad_frames_are_logged_and_change_nothing(
    frame: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame that does not decode is one warning line; nothing is routed or sent."""
    session = make_session()
    link_up(session, 0.0)
    session.send(upstream())
    with caplog.at_level(logging.WARNING):
        actions = session.receive(frame, 0.1)
    assert actions.frames == [] and actions.routes == []
    assert session.awaiting_answers == 1 and session.connected
    assert caplog.text.count("cloud sent a bad frame") == 1


def test_oversized_frames_are_refused() -> None:
    """A frame beyond ``max_frame`` is refused before it is parsed."""
    session = make_session(max_frame=64)
    link_up(session, 0.0)
    assert session.receive(cloud("insert", resource="y" * 100), 0.1).routes == []


def test_nothing_is_sent_while_offline() -> None:
    """Upstream messages are dropped (None) without a link, and not remembered."""
    session = make_session()
    assert session.send(upstream()) is None
    link_up(session, 0.0)
    session.closed(1.0)
    assert session.send(upstream()) is None
    assert session.awaiting_answers == 0


def test_answers_awaited_on_a_lost_link_are_forgotten() -> None:
    """A response on the next link to a message of the last one goes to waiters, not its module."""
    session = make_session()
    link_up(session, 0.0)
    sent = upstream()
    session.send(sent)
    session.closed(0.5)
    link_up(session, 1.0)
    (route,) = session.receive(cloud("response", parent=sent.id), 1.1).routes
    assert route.module == ""


def test_keepalives_every_heartbeat() -> None:
    """A keepalive ("ping", resource node) is due one heartbeat after the last one."""
    session = make_session()
    link_up(session, 10.0)
    assert session.next_deadline() == 10.0 + HEARTBEAT
    assert session.poll(10.0 + HEARTBEAT / 2) == []
    (ping,) = session.poll(10.0 + HEARTBEAT, wall_ms=99)
    msg = decode(ping)
    assert (msg.operation, msg.resource, msg.content) == ("keepalive", "node", "ping")
    assert msg.header.timestamp == 99
    assert session.poll(10.0 + HEARTBEAT) == []
    assert session.next_deadline() == 10.0 + 2 * HEARTBEAT


def test_silence_for_two_heartbeats_drops_the_link(caplog: pytest.LogCaptureFixture) -> None:
    """No frame for more than two heartbeats: close_reason is set and logged once."""
    session = make_session()
    link_up(session, 0.0)
    session.receive(cloud("keepalive"), 1.5)
    session.poll(1.5 + 2 * HEARTBEAT)
    assert session.close_reason == ""
    with caplog.at_level(logging.WARNING):
        assert session.poll(1.6 + 2 * HEARTBEAT) == []
        session.poll(5.0)
    assert session.close_reason.startswith("nothing heard from the cloud for 2.1s")
    assert caplog.text.count("dropping the link") == 1
    session.closed(5.0)
    link_up(session, 6.0)
    assert session.close_reason == ""


def test_no_deadline_while_offline() -> None:
    """Without a link there is nothing to poll for."""
    session = make_session()
    assert session.next_deadline() is None
    assert session.poll(100.0) == []


def test_the_heartbeat_must_be_positive() -> None:
    """A heartbeat of zero is a programming error."""
    with pytest.raises(ValueError, match="positive"):
        make_session(heartbeat=0.0)


@settings(max_examples=300)
@given(frame=st.text(max_size=200) | st.binary(max_size=200))
def test_any_frame_is_survived(frame: str | bytes) -> None:
    """Whatever bytes arrive, receive() never raises and the link stays up."""
    session = make_session()
    link_up(session, 0.0)
    actions = session.receive(frame, 0.1)
    assert len(actions.frames) + len(actions.routes) <= 1
    assert session.connected


@given(
    op=st.sampled_from(["insert", "update", "patch", "delete", "query", "response", "error"])
    | st.text(max_size=12),
    group=st.sampled_from(["resource", "twin", "stream", "hub", ""]),
)
def test_every_envelope_is_routed_or_answered_exactly_once(op: str, group: str) -> None:
    """A well-formed envelope yields exactly one bus route or one error reply, never both."""
    session = make_session()
    link_up(session, 0.0)
    actions = session.receive(cloud(op, group=group), 0.1)
    assert len(actions.frames) + len(actions.routes) == 1
    if actions.frames:
        assert decode(actions.frames[0]).operation == "error"
        assert group != "stream"
