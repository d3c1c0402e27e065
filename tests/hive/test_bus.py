"""Modules exchange messages through bounded inboxes; sync requests get their reply by parent id."""

from __future__ import annotations

import asyncio

import pytest

from hive.bus import DEFAULT_INBOX, Bus, UnknownModule
from wire.errors import BridgeError
from wire.messages import Message


def _msg(operation: str = "insert", resource: str = "default/pod/a") -> Message:
    return Message.new(source="test", group="resource", operation=operation, resource=resource)


def _bus(inbox_size: int = DEFAULT_INBOX) -> Bus:
    bus = Bus(inbox_size=inbox_size)
    bus.register("metaManager", "meta")
    bus.register("edged", "edged")
    bus.register("twin", "twin")
    bus.register("twin2", "twin")
    return bus


async def test_send_then_receive_in_order() -> None:
    """Messages reach the named module's inbox in the order they were sent."""
    bus = _bus()
    sent = [_msg(resource=f"default/pod/p{i}") for i in range(5)]
    for m in sent:
        await bus.send("metaManager", m)
    assert [await bus.receive("metaManager") for _ in sent] == sent
    assert bus.receive_nowait("metaManager") is None
    assert bus.receive_nowait("edged") is None


async def test_receive_waits_for_a_message() -> None:
    """receive() blocks until something is sent."""
    bus = _bus()
    waiting = asyncio.create_task(bus.receive("edged"))
    await asyncio.sleep(0)
    assert not waiting.done()
    m = _msg()
    assert bus.send_nowait("edged", m)
    assert await asyncio.wait_for(waiting, 1.0) is m


def test_register_twice_is_refused() -> None:
    """A module name can be registered only once."""
    bus = Bus()
    bus.register("a", "g")
    with pytest.raises(ValueError, match="twice"):
        bus.register("a", "g")


def test_modules_lists_a_group() -> None:
    """modules(group) names every member of the group and nothing else."""
    bus = _bus()
    assert bus.modules("twin") == ["twin", "twin2"]
    assert bus.modules("nobody") == []


async def test_send_to_group_reaches_every_member() -> None:
    """send_to_group delivers the message to each module of the group."""
    bus = _bus()
    m = _msg()
    await bus.send_to_group("twin", m)
    assert bus.receive_nowait("twin") is m
    assert bus.receive_nowait("twin2") is m
    assert bus.receive_nowait("metaManager") is None


async def test_unknown_destinations_raise() -> None:
    """Sending to a module or group that is not registered raises UnknownModule."""
    bus = _bus()
    assert issubclass(UnknownModule, BridgeError)
    assert issubclass(UnknownModule, LookupError)
    with pytest.raises(UnknownModule, match="ghost"):
        await bus.send("ghost", _msg())
    with pytest.raises(UnknownModule, match="ghost"):
        bus.send_nowait("ghost", _msg())
    with pytest.raises(UnknownModule, match="ghosts"):
        await bus.send_to_group("ghosts", _msg())


async def test_send_sync_to_unknown_module_raises_and_leaves_no_waiter() -> None:
    """send_sync to an unknown module raises, and a later reply finds nobody waiting."""
    bus = _bus()
    m = _msg()
    with pytest.raises(UnknownModule):
        await bus.send_sync("ghost", m, timeout=1.0)
    assert not bus.respond(m.reply())


async def test_receive_from_unknown_module_raises_lookup_error() -> None:
    """receive() on a name that is not registered is a LookupError."""
    bus = _bus()
    with pytest.raises(LookupError):
        await bus.receive("ghost")
    with pytest.raises(LookupError):
        bus.receive_nowait("ghost")


async def test_full_inbox_refuses_send_nowait() -> None:
    """send_nowait returns False instead of dropping anything when the inbox is full."""
    bus = _bus(inbox_size=2)
    first, second = _msg(), _msg()
    assert bus.send_nowait("edged", first)
    assert bus.send_nowait("edged", second)
    assert not bus.send_nowait("edged", _msg())
    assert bus.receive_nowait("edged") is first
    assert bus.receive_nowait("edged") is second
    assert bus.receive_nowait("edged") is None


async def test_full_inbox_makes_send_wait() -> None:
    """send() applies back-pressure: it waits until the receiver makes room."""
    bus = _bus(inbox_size=1)
    await bus.send("edged", _msg())
    late = _msg()
    pending = asyncio.create_task(bus.send("edged", late))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not pending.done()
    await bus.receive("edged")
    await asyncio.wait_for(pending, 1.0)
    assert bus.receive_nowait("edged") is late


async def test_send_sync_returns_the_reply_matched_on_parent_id() -> None:
    """send_sync marks the request sync and returns the reply whose parent is its id."""
    bus = _bus()

    async def meta_manager() -> None:
        request = await bus.receive("metaManager")
        assert request.header.sync
        assert not bus.respond(_msg(operation="response")), "unrelated reply is not matched"
        assert bus.respond(request.reply({"found": True}))

    server = asyncio.create_task(meta_manager())
    request = _msg(operation="query")
    reply = await bus.send_sync("metaManager", request, timeout=2.0)
    await server
    assert reply.parent_id == request.id
    assert reply.content == {"found": True}
    assert not bus.respond(request.reply()), "the waiter is gone once answered"


async def test_concurrent_send_syncs_get_their_own_replies() -> None:
    """Replies answered out of order still reach the caller that sent each request."""
    bus = _bus()
    requests = [_msg(resource=f"default/pod/p{i}") for i in range(3)]
    calls = [asyncio.create_task(bus.send_sync("edged", r, timeout=2.0)) for r in requests]
    received = [await bus.receive("edged") for _ in requests]
    for r in reversed(received):
        assert bus.respond(r.reply(r.resource))
    replies = await asyncio.gather(*calls)
    assert [rep.content for rep in replies] == [r.resource for r in requests]


async def test_send_sync_times_out_and_forgets_the_waiter() -> None:
    """Without a reply send_sync raises TimeoutError; a late reply then returns False."""
    bus = _bus()
    request = _msg(operation="query")
    with pytest.raises(TimeoutError):
        await bus.send_sync("metaManager", request, timeout=0.05)
    assert not bus.respond(request.reply())


def test_respond_without_waiter_returns_false() -> None:
    """A reply nobody waits for is reported, not silently lost."""
    assert not _bus().respond(_msg().reply())


async def test_send_sync_times_out_even_when_the_inbox_is_full() -> None:
    """No reply within timeout raises TimeoutError, also when the request cannot be queued."""
    bus = _bus(inbox_size=1)
    assert bus.send_nowait("metaManager", _msg())
    call = asyncio.create_task(bus.send_sync("metaManager", _msg(), timeout=0.05))
    done, _ = await asyncio.wait({call}, timeout=0.5)
    if not done:
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    assert call in done
    assert isinstance(call.exception(), TimeoutError)
