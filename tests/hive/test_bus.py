"""Modules exchange messages through bounded inboxes; sync requests get their reply by parent id."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from hive.bus import DEFAULT_INBOX, Bus, UnknownModule
from tests.support.procs import wait_until
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


async def _served(bus: Bus, name: str, handler: Callable[[Message], None]) -> asyncio.Task[None]:
    """Start serving ``name`` with ``handler`` and wait until the bus knows it."""
    task = asyncio.create_task(bus.serve(name, handler))
    await asyncio.sleep(0)  # one step: serve() sets the handler before its first await
    return task


async def test_served_module_handles_a_message_at_once_when_its_inbox_is_empty() -> None:
    """A message sent to a served module with an empty inbox is handled inside the send call,
    in the sender's task, by send_nowait and send alike."""
    bus = _bus()
    seen: list[tuple[Message, asyncio.Task[object] | None]] = []
    task = await _served(bus, "edged", lambda m: seen.append((m, asyncio.current_task())))
    first, second = _msg(), _msg()
    assert bus.send_nowait("edged", first)
    assert seen == [(first, asyncio.current_task())]
    await bus.send("edged", second)
    assert seen[-1] == (second, asyncio.current_task())
    assert bus.receive_nowait("edged") is None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    third = _msg()
    assert bus.send_nowait("edged", third), "once no longer served, messages queue again"
    assert len(seen) == 2 and bus.receive_nowait("edged") is third


async def test_a_queued_message_is_handled_before_a_later_one() -> None:
    """With a message queued (here one the handler sent itself), a later send queues behind
    it: the handler sees them in the order they were sent, the queued one first."""
    bus = _bus()
    first, ahead, later = (_msg(resource=f"default/pod/{n}") for n in ("first", "ahead", "later"))
    seen: list[str] = []

    def handler(m: Message) -> None:
        seen.append(m.resource)
        if m is first:
            assert bus.send_nowait("edged", ahead)

    task = await _served(bus, "edged", handler)
    assert bus.send_nowait("edged", first)
    assert seen == ["default/pod/first"], "handled inline; what it sent is queued"
    assert bus.send_nowait("edged", later)
    assert seen == ["default/pod/first"], "not handled ahead of the queued message"
    await wait_until(lambda: len(seen) == 3, timeout=5)
    assert seen == ["default/pod/first", "default/pod/ahead", "default/pod/later"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_message_sent_while_handling_waits_its_turn() -> None:
    """A message the handler itself sends to its module is queued, not handled nested."""
    bus = _bus()
    order: list[str] = []
    echo = _msg(resource="default/pod/echo")

    def handler(m: Message) -> None:
        order.append(f"start {m.resource}")
        if m is not echo:
            assert bus.send_nowait("edged", echo)
        order.append(f"end {m.resource}")

    task = await _served(bus, "edged", handler)
    assert bus.send_nowait("edged", _msg(resource="default/pod/a"))
    await wait_until(lambda: len(order) == 4, timeout=5)
    assert order == [
        "start default/pod/a",
        "end default/pod/a",
        "start default/pod/echo",
        "end default/pod/echo",
    ]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_handler_error_stays_with_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    """A handler that raises is logged; the sender's call succeeds and the module goes on
    handling the next message, inline or queued."""
    bus = _bus()
    seen: list[Message] = []
    bad = _msg(operation="delete")

    def handler(m: Message) -> None:
        if m is bad:
            raise RuntimeError("boom")
        seen.append(m)

    task = await _served(bus, "edged", handler)
    with caplog.at_level(logging.ERROR, logger="hive.bus"):
        assert bus.send_nowait("edged", bad)
        await bus.send("edged", bad)
    assert caplog.text.count("edged failed to handle delete") == 2
    good = _msg()
    assert bus.send_nowait("edged", good)
    assert seen == [good]
    assert not task.done()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_module_is_served_once() -> None:
    """A second serve() of the same module is refused."""
    bus = _bus()
    task = await _served(bus, "edged", lambda m: None)
    with pytest.raises(ValueError, match="twice"):
        await bus.serve("edged", lambda m: None)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
