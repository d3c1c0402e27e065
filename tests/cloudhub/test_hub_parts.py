"""The hub's parts on their own: sessions (presence, replacement, close labels) and the inbox
(answers to forwarded requests), with a real bus and sessions on fake websockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cloudhub import routes
from cloudhub.hub.inbox import Inbox
from cloudhub.hub.session import NodeSession
from cloudhub.hub.sessions import Sessions, close_kind
from cloudhub.hub.upstream import Requests
from hive.bus import Bus
from hive.local_messages import MessageIds
from tests.cloudhub.test_session_writes import FakeLink, make_session
from tests.support.procs import wait_until
from wire.codec import ContentCache, decode
from wire.messages import Group, Message, Operation

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("keepalive timeout", "keepalive_timeout"),
        ("replaced by a new connection", "replaced"),
        ("certificate revoked", "revoked"),
        ("write failed: TimeoutError", "write_failed"),
        ("cloudhub stopping", "shutdown"),
        ("this replica lost the node's ownership", "ownership_moved"),
        ("connection closed", "peer_closed"),
        ("anything else the edge wrote", "other"),
    ],
)
def test_close_reasons_become_a_bounded_set_of_labels(reason: str, kind: str) -> None:
    """Free-text close reasons map to a fixed set of metric labels."""
    assert close_kind(reason) == kind


@pytest.fixture
def bus() -> Bus:
    bus = Bus()
    bus.register(routes.EDGECONTROLLER, Group.RESOURCE)
    bus.register(routes.HUB, Group.HUB)
    return bus


async def test_presence_follows_a_nodes_links(bus: Bus) -> None:
    """A node is online while its session is live, replaced links count once, and once gone it
    is offline with the time it was last heard from; edgecontroller hears each change."""
    sessions = Sessions(bus=bus)
    assert sessions.presence("edge-1") == routes.NodePresence(online=False)
    first, second = make_session(FakeLink()), make_session(FakeLink())
    assert await sessions.open(first, serial=1, remote="a")
    assert await sessions.open(second, serial=1, remote="b")
    assert first.close_reason.startswith("replaced") and sessions.live == {"edge-1": second}
    assert sessions.presence("edge-1").online
    await sessions.close(first)  # the replaced link ending changes nothing
    assert sessions.presence("edge-1").online
    await sessions.close(second)
    offline = sessions.presence("edge-1")
    assert not offline.online and offline.last_seen == second.last_seen
    assert sessions.closed_by_reason == {"replaced": 1, "peer_closed": 1}
    reports = []
    while (msg := bus.receive_nowait(routes.EDGECONTROLLER)) is not None:
        assert isinstance(msg.content, routes.NodeStatusReport)
        reports.append(msg.content.online)
    assert reports == [True, True, False]


@pytest.fixture
async def inbox(bus: Bus) -> AsyncIterator[tuple[Inbox, Requests, dict[str, NodeSession]]]:
    live: dict[str, NodeSession] = {}
    requests = Requests()
    inbox = Inbox(
        bus=bus, sessions=live, requests=requests, ids=MessageIds(), encoded=ContentCache()
    )
    task = asyncio.create_task(inbox.run())
    yield inbox, requests, live
    task.cancel()
    for session in live.values():
        await session.close("done")


async def test_a_batch_of_replies_answers_each_request_once(
    bus: Bus, inbox: tuple[Inbox, Requests, dict[str, NodeSession]]
) -> None:
    """Replies answers every forwarded request it names on the asking node's link, once;
    ids it does not know, or already answered, change nothing."""
    _, requests, live = inbox
    link = FakeLink()
    live["edge-1"] = session = make_session(link)
    session.run_writer()
    asked = [
        Message.new(source="edgehub", group="twin", operation="update", resource=f"r{i}")
        for i in range(2)
    ]
    requests.forwarded.update({"f0": ("edge-1", asked[0]), "f1": ("edge-1", asked[1])})
    requests.forwarded["gone"] = ("edge-2", asked[0])  # its node is no longer connected
    batch = routes.Replies(("f0", "f1", "f0", "unknown", "gone"))
    await bus.send(
        routes.HUB,
        Message.new(
            source="devicecontroller",
            group="twin",
            operation="response",
            resource="",
            content=batch,
        ),
    )
    await wait_until(lambda: len(link.sent) == 2, timeout=5)
    answers = [decode(frame) for frame in link.sent]
    assert [a.parent_id for a in answers] == [asked[0].id, asked[1].id]
    assert all(a.operation == Operation.RESPONSE and a.content == "OK" for a in answers)
    assert [a.resource for a in answers] == ["r0", "r1"]
    assert not requests.forwarded


async def test_a_batch_of_changes_reaches_each_node_in_one_write(
    bus: Bus, inbox: tuple[Inbox, Requests, dict[str, NodeSession]]
) -> None:
    """The changes of one fan-out batch for a node go out together, as one write, in order;
    a node not started yet gets nothing (its start diff covers them)."""
    _, _, live = inbox
    link, idle = FakeLink(), FakeLink()
    live["edge-1"] = session = make_session(link)
    live["edge-2"] = make_session(idle)
    session.run_writer()
    session.start({}, {})
    await wait_until(lambda: session._parked, timeout=5)
    changes = tuple(
        routes.Fanout(
            key=f"default/configmap/c{i}",
            resource_version="7",
            nodes=("edge-1", "edge-2"),
            object={"kind": "ConfigMap", "metadata": {"name": f"c{i}", "namespace": "default"}},
        )
        for i in range(3)
    )
    await bus.send(
        routes.HUB,
        Message.new(
            source=routes.EDGECONTROLLER,
            group=Group.RESOURCE,
            operation=Operation.UPDATE,
            resource="",
            content=routes.Fanouts(changes),
        ),
    )
    await wait_until(lambda: len(link.sent) == 3, timeout=5)
    assert [decode(f).resource for f in link.sent] == [c.key for c in changes]
    assert len(link.transport.written) == 1
    assert idle.sent == []
