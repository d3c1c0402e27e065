"""The cloud's end of a node's link on its own (:mod:`cloudhub.hub.linksession`): no socket, no
loop, no clock; frames and ``now`` in, actions out."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from cloudhub import routes
from cloudhub.hub.linksession import CHEAP_FRAME_COST, KEEPALIVE_TIMEOUT, LinkSession
from wire.codec import decode, encode
from wire.messages import Group, Message, Operation

pytestmark = pytest.mark.timeout(10)

NODE = "edge-1"
HEARTBEAT = 10.0
ACK_TIMEOUT = 5.0
POD = "default/pod/p"


def make(*, stock: bool = False, window: int = 8) -> LinkSession:
    counter = itertools.count()
    return LinkSession(
        node=NODE,
        stock=stock,
        heartbeat=HEARTBEAT,
        now=0.0,
        ack_timeout=ACK_TIMEOUT,
        window=window,
        max_frame=1 << 20,
        ids=lambda: f"c{next(counter)}",
    )


def pod(rv: str) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p", "namespace": "default", "resourceVersion": rv}}


def edge_msg(operation: str, resource: str, content: Any = None, **kw: str) -> Message:
    return Message.new(
        source=kw.get("source", "edgehub"),
        group=kw.get("group", Group.RESOURCE),
        operation=operation,
        resource=resource,
        content=content,
    )


def started(session: LinkSession, desired: dict[str, tuple[str, Any]] | None = None) -> None:
    """Run the start handshake with an empty inventory and ``desired`` bound to the node."""
    query = session.frame(encode(edge_msg(Operation.INVENTORY, f"null/node/{NODE}", {})), 0.0)
    assert query.start is not None
    answer = query.start.reply(desired or {}, source=routes.EDGECONTROLLER)
    assert session.started(answer) == "diff"


def ack_for(frame: str) -> str:
    return encode(decode(frame).reply("OK", source="metamanager"))


@pytest.mark.parametrize(
    ("operation", "resource", "dest", "answered"),
    [
        (Operation.QUERY, "default/configmap/c", routes.EDGECONTROLLER, True),
        (Operation.UPDATE, "default/pod/p/status", routes.EDGECONTROLLER, True),
        (Operation.UPDATE, "default/device/d/twin/edge_updated", routes.DEVICECONTROLLER, True),
        (Operation.INSERT, f"null/certificatesigningrequest/{NODE}", routes.CERTCONTROLLER, True),
        (Operation.UPLOAD, "default/device/d/state/update", routes.DEVICECONTROLLER, True),
        (Operation.PATCH, "default/pod/p/status", routes.EDGECONTROLLER, True),
        ("get", routes.MEMBERSHIP_DETAIL, routes.DEVICECONTROLLER, True),
    ],
)
def test_requests_are_forwarded_by_operation_under_the_certificates_node(
    operation: str, resource: str, dest: str, answered: bool
) -> None:
    """A query goes to edgecontroller, a write to the controller owning the resource; the
    forward is renamed node/{node}/... from the session's node and remembers the request."""
    session = make()
    msg = edge_msg(operation, resource, {"x": 1})
    actions = session.frame(encode(msg), 1.0)
    assert not actions.frames and actions.start is None and not actions.deliver
    [forward] = actions.forwards
    assert forward.dest == dest
    assert forward.message.resource == f"node/{NODE}/{resource}"
    assert forward.message.operation == operation and forward.message.content == {"x": 1}
    assert forward.message.route.source == routes.HUB
    assert (forward.original is not None) == answered
    assert forward.original is None or forward.original.id == msg.id


def test_a_stream_message_goes_to_cloudstream_or_gets_an_error_reply() -> None:
    """Group stream goes to cloudstream named by the node; where there is none, the edge gets
    an error reply instead."""
    session = make()
    msg = edge_msg(Operation.UPDATE, "stream/s1/data", "chunk", group=Group.STREAM)
    [forward] = session.frame(encode(msg), 0.0).forwards
    assert forward.dest == routes.CLOUDSTREAM
    assert forward.message.resource == f"node/{NODE}/stream/s1/data"
    reply = forward.unrouted_reply()
    assert reply is not None
    answer = decode(reply)
    assert answer.operation == Operation.ERROR and answer.parent_id == msg.id
    assert "relays no streams" in answer.content


def test_keepalive_gets_a_pong_and_counts_as_cheap() -> None:
    """Our edge's keepalive is answered with pong (fast path and slow path alike)."""
    session = make()
    ping = edge_msg(Operation.KEEPALIVE, "node", "ping")
    actions = session.frame(encode(ping), 1.0)
    [pong] = actions.frames
    answer = decode(pong)
    assert answer.operation == Operation.RESPONSE and answer.parent_id == ping.id
    assert answer.content == "pong" and actions.cost == CHEAP_FRAME_COST
    [slow] = session.route(ping, 1.0).frames
    assert decode(slow).content == "pong"


def test_a_bad_frame_gets_one_error_reply_and_changes_nothing() -> None:
    """An undecodable frame gets an error reply naming the problem; nothing else happens."""
    session = make()
    actions = session.frame('{"header":{"msg_id":"x"},"route":{},"content":null}', 1.0)
    [reply] = actions.frames
    error = decode(reply)
    assert error.operation == Operation.ERROR and error.content.startswith("bad frame")
    assert not actions.forwards and actions.start is None and not session.is_started
    assert session.liveness.last_received == 1.0  # still a sign of life


def test_unknown_operation_and_edge_errors() -> None:
    """An unknown operation gets an error reply naming it; an edge's error is only logged."""
    session = make()
    [reply] = session.frame(encode(edge_msg("frobnicate", "x")), 0.0).frames
    assert "unknown operation 'frobnicate'" in decode(reply).content
    actions = session.frame(encode(edge_msg(Operation.ERROR, "default/pod/p", "disk")), 0.0)
    assert not actions.frames and not actions.forwards


def test_start_handshake_asks_once_and_diffs_the_inventory() -> None:
    """The inventory asks edgecontroller once; its answer starts delivery with only what the
    edge lacks; an answer to another query starts nothing."""
    session = make()
    inventory = {POD: "3", "default/configmap/gone": "1"}
    first = session.frame(encode(edge_msg(Operation.INVENTORY, "null/node/x", inventory)), 0.0)
    assert first.start is not None
    assert first.start.resource == routes.desired_resource(NODE)
    assert session.start_query(None) is None  # asked already (the inventory timer firing)
    assert session.poll(0.0, wall_ms=0) == [] and not session.change(POD, "4", pod("4"))
    other = Message.new(source="x", group="resource", operation="response", resource="")
    assert session.started(other) is None and not session.is_started
    answer = first.start.reply({POD: ("3", pod("3"))}, source=routes.EDGECONTROLLER)
    assert session.started(answer) == "diff"
    assert session.started(answer) is None  # once
    [frame] = session.poll(0.0, wall_ms=1)
    gone = decode(frame)
    assert gone.operation == Operation.DELETE and gone.resource == "default/configmap/gone"
    assert session.start_query({}) is None  # started


def test_a_bad_inventory_gets_an_error_and_a_full_resync() -> None:
    """An inventory that is not key -> version is refused and delivery starts without one."""
    session = make()
    actions = session.frame(encode(edge_msg(Operation.INVENTORY, "x", ["no"])), 0.0)
    assert decode(actions.frames[0]).operation == Operation.ERROR
    assert actions.start is not None
    answer = actions.start.reply({POD: ("3", pod("3"))})
    assert session.started(answer) == "full"
    [frame] = session.poll(0.0, wall_ms=0)
    assert decode(frame).operation == Operation.INSERT


def test_an_error_answer_to_the_start_lets_it_be_asked_again() -> None:
    """edgecontroller failing the query starts nothing; the next ask goes out."""
    session = make()
    query = session.start_query(None)
    assert query is not None
    assert session.started(query.error_reply("busy")) is None
    assert session.start_query(None) is not None


def test_an_ack_frees_the_key_and_the_next_version_goes_out() -> None:
    """While a version awaits its ACK a newer one waits; the ACK (fast path) sends it."""
    session = make()
    started(session)
    assert session.change(POD, "1", pod("1"))
    [first] = session.poll(1.0, wall_ms=1)
    assert not session.change(POD, "2", pod("2"))  # held: version 1 is in flight
    assert session.poll(1.0, wall_ms=0) == []
    actions = session.frame(ack_for(first), 1.5)
    assert actions.deliver and actions.cost == CHEAP_FRAME_COST and not actions.frames
    [second] = session.poll(1.5, wall_ms=2)
    out = decode(second)
    assert out.operation == Operation.UPDATE and out.header.resourceversion == "2"
    assert session.downstream.known() == {POD: "1"}


def test_an_unacked_object_is_sent_again_after_the_ack_timeout() -> None:
    """The next deadline is the ACK timeout; past it the same version goes out again."""
    session = make()
    started(session)
    session.change(POD, "1", pod("1"))
    [first] = session.poll(1.0, wall_ms=0)
    assert session.next_deadline() == pytest.approx(1.0 + ACK_TIMEOUT)
    assert session.poll(1.0 + ACK_TIMEOUT / 2, wall_ms=0) == []
    [again] = session.poll(1.0 + ACK_TIMEOUT, wall_ms=0)
    assert decode(again).resource == decode(first).resource


def test_silence_past_two_heartbeats_closes_the_link() -> None:
    """Nothing heard for twice the heartbeat: close; any frame pushes the expiry later."""
    session = make()
    assert session.next_deadline() == 2 * HEARTBEAT
    session.frame(encode(edge_msg(Operation.KEEPALIVE, "node", "ping")), 15.0)
    assert session.expired(2 * HEARTBEAT + 1) is None
    assert session.expired(15.0 + 2 * HEARTBEAT + 0.1) == KEEPALIVE_TIMEOUT


def test_stock_edge_gets_no_pong_and_its_empty_message_nothing() -> None:
    """A stock edge's keepalive and its empty message after connecting get no answer."""
    session = make(stock=True)
    ping = edge_msg(Operation.KEEPALIVE, "node", "ping")
    assert session.frame(encode(ping), 0.0).frames == []
    assert session.route(ping, 0.0).frames == []
    empty = '{"header":{"msg_id":"","timestamp":0},"route":{},"content":null}\n'
    actions = session.frame(empty, 0.0)
    assert actions.frames == [] and actions.cost == CHEAP_FRAME_COST
    # The same frame from our edge is a bad frame.
    assert decode(make().frame(empty, 0.0).frames[0]).operation == Operation.ERROR


def test_only_our_edge_is_waited_for_with_an_inventory() -> None:
    """Our edge states an inventory first (wait for it); a stock edge never does."""
    assert make().inventory_wait(5.0) == 5.0
    assert make(stock=True).inventory_wait(5.0) == 0.0


def test_stock_bare_reports_go_unanswered_to_devicecontroller() -> None:
    """A stock edge's bare twin report goes to devicecontroller, not remembered for an answer."""
    session = make(stock=True)
    report = edge_msg(
        Operation.UPDATE, "device/d/twin/edge_updated", {"twin": {}}, source="twin", group="twin"
    )
    [forward] = session.frame(encode(report), 0.0).forwards
    assert forward.dest == routes.DEVICECONTROLLER and forward.original is None
    assert forward.message.resource == f"node/{NODE}/device/d/twin/edge_updated"


def test_stock_edge_never_gets_its_node_and_devices_come_with_membership() -> None:
    """A stock edge's start leaves out its Node object, changes to it are ignored, and a new
    Device goes down as a membership update before the object, from devicecontroller."""
    session = make(stock=True)
    node_key = f"null/node/{NODE}"
    device = {"kind": "Device", "metadata": {"name": "d", "namespace": "default"}}
    started(session, {node_key: ("1", {"kind": "Node"}), "default/device/d": ("5", device)})
    frames = [json.loads(f) for f in session.poll(0.0, wall_ms=1)]
    assert [f["route"]["resource"] for f in frames] == ["membership", "default/device/d"]
    assert all(f["route"]["source"] == "devicecontroller" for f in frames)
    assert not session.change(node_key, "2", {"kind": "Node"})
    assert node_key not in session.downstream.known()
    retried = [json.loads(f)["route"]["resource"] for f in session.poll(100.0, wall_ms=2)]
    assert node_key not in retried and "default/device/d" in retried


def test_answers_to_forwarded_requests() -> None:
    """A module's answer becomes a response (or error) to the edge's own request."""
    session = make()
    request = edge_msg(Operation.QUERY, "default/configmap/c")
    ok = decode(
        session.answer(
            Message.new(source="e", group="r", operation="response", resource="", content={"a": 1}),
            request,
            0,
        )
    )
    assert ok.parent_id == request.id and ok.content == {"a": 1}
    assert ok.resource == request.resource and ok.operation == Operation.RESPONSE
    bad = decode(
        session.answer(
            Message.new(source="e", group="r", operation="error", resource="", content="no"),
            request,
            0,
        )
    )
    assert bad.operation == Operation.ERROR and bad.content == "no"


KEYS = st.sampled_from([f"default/configmap/k{i}" for i in range(3)])


class LinkMachine(RuleBasedStateMachine):
    """Changes, frames, ACKs (some lost) and time in any order: once the link is drained, the
    edge holds exactly the desired set, and every frame it got was one the session decided."""

    def __init__(self) -> None:
        super().__init__()
        self.session = make(window=2)
        started(self.session)
        self.now = 0.0
        self.desired: dict[str, str] = {}
        self.edge: dict[str, str] = {}
        self.wire: list[str] = []
        self.acks: list[str] = []

    @rule(key=KEYS, rv=st.sampled_from(["1", "2", "3"]))
    def change(self, key: str, rv: str) -> None:
        self.desired[key] = rv
        self.session.change(key, rv, {"kind": "ConfigMap", "metadata": {"name": key}})

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.desired.pop(key, None)
        self.session.change(key, None, {"kind": "ConfigMap", "metadata": {"name": key}})

    @rule()
    def poll(self) -> None:
        self.wire.extend(self.session.poll(self.now, wall_ms=0))

    @rule()
    def edge_applies(self) -> None:
        if self.wire:
            msg = decode(self.wire.pop(0))
            if msg.operation == Operation.DELETE:
                self.edge.pop(msg.resource, None)
            else:
                self.edge[msg.resource] = msg.header.resourceversion
            self.acks.append(encode(msg.reply("OK", source="metamanager")))

    @rule(lost=st.booleans())
    def ack_arrives(self, lost: bool) -> None:
        if self.acks:
            ack = self.acks.pop(0)
            if not lost:
                actions = self.session.frame(ack, self.now)
                assert not actions.frames and not actions.forwards

    @rule(dt=st.floats(min_value=0.0, max_value=2 * ACK_TIMEOUT))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.session.received(self.now)  # the edge's keepalives

    @invariant()
    def deadline_ahead_while_in_flight(self) -> None:
        if self.session.downstream.in_flight:
            assert self.session.next_deadline() <= self.now + ACK_TIMEOUT

    def teardown(self) -> None:
        for _ in range(50):
            self.now += ACK_TIMEOUT
            self.session.received(self.now)
            self.wire.extend(self.session.poll(self.now, wall_ms=0))
            while self.wire:
                self.edge_applies()
            while self.acks:
                self.ack_arrives(lost=False)
        assert self.edge == self.desired


TestLinkMachine = LinkMachine.TestCase
TestLinkMachine.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
