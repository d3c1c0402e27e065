"""KubeApi.watch's stream: a live stream is kept however long it runs, a silent one is ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from cloudhub.k8s.api import PODS, KubeApi
from cloudhub.k8s.kubeconfig import Credentials
from cloudhub.k8s.watchlines import RawEvent, parse_event
from tests.k8s.objects import pod

pytestmark = pytest.mark.timeout(20)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _line(name: str, rv: int) -> bytes:
    obj = pod(name)
    obj["metadata"]["resourceVersion"] = str(rv)
    return json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":")).encode() + b"\n"


@contextlib.asynccontextmanager
async def _serve(handler: Handler) -> AsyncIterator[KubeApi]:
    app = web.Application()
    app.router.add_get("/api/v1/pods", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    api = KubeApi(Credentials(f"http://127.0.0.1:{port}", None, lambda: None))
    try:
        yield api
    finally:
        await api.close()
        await runner.cleanup()


async def _read(api: KubeApi, inactivity: float) -> list[RawEvent]:
    stream = api.watch(
        PODS, resource_version="1", timeout_seconds=60, inactivity_timeout=inactivity
    )
    return [event async for event in stream]


async def test_a_live_stream_outlives_its_inactivity_timeout_and_ends_when_silent() -> None:
    """Events every 0.1 s for 1.2 s, a 0.4 s timeout: all read; 0.4 s of silence then ends it."""
    stop = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for i in range(12):
            await response.write(_line(f"p{i}", 10 + i))
            await asyncio.sleep(0.1)
        await stop.wait()  # silent, connection open: a half-dead stream
        return response

    async with _serve(handler) as api:
        started = time.monotonic()
        events = await _read(api, 0.4)
        ended = time.monotonic() - started
        stop.set()
    assert [e.object["metadata"]["name"] for e in events] == [f"p{i}" for i in range(12)]
    assert 1.5 <= ended < 3.0


async def test_a_silent_answer_after_the_headers_ends_the_watch() -> None:
    """Headers and then nothing: the watch ends after the inactivity timeout, no events."""
    stop = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await stop.wait()
        return response

    async with _serve(handler) as api:
        started = time.monotonic()
        events = await _read(api, 0.3)
        ended = time.monotonic() - started
        stop.set()
    assert events == [] and 0.25 <= ended < 2.0


async def test_lines_split_across_chunks_and_blank_lines_are_read_whole() -> None:
    """A line cut in three writes, blank lines between: each event once, whole."""
    first, second = _line("a", 5), _line("b", 6)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for part in (first[:10], first[10:40], first[40:] + b"\n", b"\n", second):
            await response.write(part)
            await asyncio.sleep(0.02)
        return response

    async with _serve(handler) as api:
        events = await _read(api, 5.0)
    assert [(e.type, e.object["metadata"]["name"], e.more) for e in events] == [
        ("ADDED", "a", False),
        ("ADDED", "b", False),
    ]
    assert all(e.body is not None for e in events)


async def test_a_reader_busy_past_the_timeout_still_gets_what_arrived_meanwhile() -> None:
    """The reader sleeps 0.8 s on its first event (timeout 0.3 s) while a second arrives: both
    are read from the same stream, which then ends on its silence."""
    stop = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(_line("a", 5))
        await asyncio.sleep(0.1)
        await response.write(_line("b", 6))
        await stop.wait()
        return response

    names = []
    async with _serve(handler) as api:
        stream = api.watch(PODS, resource_version="1", timeout_seconds=60, inactivity_timeout=0.3)
        async for event in stream:
            names.append(event.object["metadata"]["name"])
            if len(names) == 1:
                await asyncio.sleep(0.8)
        stop.set()
    assert names == ["a", "b"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@given(
    st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "OTHER", 'q"uote']),
    st.dictionaries(st.text(max_size=6), _json, max_size=5),
    st.booleans(),
)
def test_a_compact_line_gives_its_objects_exact_bytes_any_other_gives_none(
    kind: str, obj: dict[str, object], compact: bool
) -> None:
    """Any object: the body is the object's own text for a compact two-member line, else None;
    the decoded object is the same either way."""
    separators = (",", ":") if compact else (", ", ": ")
    line = json.dumps({"type": kind, "object": obj}, separators=separators).encode()
    event = parse_event(line + b"\r")
    assert event.type == kind and event.object == obj
    if compact and kind != 'q"uote':
        assert event.body == json.dumps(obj, separators=separators)
    else:
        assert event.body is None


async def test_events_read_in_one_chunk_say_more_follow_until_the_last() -> None:
    """Three events written at once: ``more`` on the first two, not on the last."""
    lines = b"".join(_line(f"p{i}", 10 + i) for i in range(3))

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(lines)  # one write: one chunk for the reader
        return response

    async with _serve(handler) as api:
        events = await _read(api, 5.0)
    assert [(e.object["metadata"]["name"], e.more) for e in events] == [
        ("p0", True),
        ("p1", True),
        ("p2", False),
    ]
