"""The local API's HTTP/1.1 layer (h11 over asyncio streams), byte for byte: keep-alive and
pipelining, HEAD, HTTP/1.0 clients, malformed requests, oversized bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecore.metaserver.http import HttpServer, Request, Response, parse_target
from edgecore.metaserver.server import LocalApiServer, make_app, serve
from edgecore.metastore import Change, MetaStore

pytestmark = pytest.mark.timeout(20)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalApiServer]:
    store = await MetaStore.open(tmp_path / "edgecore.db")
    await store.apply([Change("default/pod/a", "1", {"metadata": {"name": "a"}})])
    srv = await serve(make_app(store=store, node_name="edge-1"), "127.0.0.1", 0)
    yield srv
    await srv.cleanup()
    await store.close()


async def exchange(server: LocalApiServer, data: bytes) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_on_one_connection(
    server: LocalApiServer,
) -> None:
    """Two requests sent at once get two responses, in order, then the close asked for."""
    out = await exchange(
        server,
        b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    first, _, second = out.partition(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b'"kind":"PodList"' in first
    assert second.endswith(b"\r\n\r\nok")


async def test_head_answers_the_head_only(server: LocalApiServer) -> None:
    """HEAD is refused like any other method but GET (405, Allow: GET), without a body."""
    out = await exchange(server, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"Allow: GET\r\n" in out and out.endswith(b"\r\n\r\n")


async def test_http10_watch_is_close_delimited(server: LocalApiServer) -> None:
    """An HTTP/1.0 client gets a watch as a body ended by the close (no chunking)."""
    out = await exchange(server, b"GET /api/v1/pods?watch=1&timeoutSeconds=0.1 HTTP/1.0\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"chunked" not in head and b"Connection: close" in head
    assert body.startswith(b'{"type":"ADDED"') and body.endswith(b"\n")


async def test_malformed_request_is_400_and_the_server_goes_on(server: LocalApiServer) -> None:
    """A request that is not HTTP gets 400 and a close; the next client is served."""
    assert (await exchange(server, b"NOT HTTP\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    out = await exchange(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.endswith(b"ok")


async def test_oversized_body_is_413(server: LocalApiServer) -> None:
    """A request body over 1 MiB is refused with 413 rather than read."""
    size = (1 << 20) + 1
    head = f"POST /api/v1/pods HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    out = await exchange(server, head + b"x" * size)
    assert out.startswith(b"HTTP/1.1 413 ")


async def test_idle_connection_is_closed_after_the_request_timeout() -> None:
    """A connection that sends no request within ``request_timeout`` is closed."""

    async def handler(request: Request) -> Response:
        return Response(200, b"ok")

    http = HttpServer(handler, shutdown_timeout=1, request_timeout=0.1)
    await http.listen("127.0.0.1", 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", http.port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""
        writer.close()
    finally:
        await http.close()


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=60))
def test_parse_target_never_raises(text: str) -> None:
    """Any printable request target parses to a path and a query dict, without raising."""
    path, query = parse_target(text.encode())
    assert isinstance(path, str) and isinstance(query, dict)


def test_parse_target_decodes_the_path_and_keeps_the_first_query_value() -> None:
    """Percent-escapes in the path are decoded; a repeated query name keeps its first value."""
    assert parse_target(b"/api/v1/namespaces/a%2Db/pods?watch=0&watch=1") == (
        "/api/v1/namespaces/a-b/pods",
        {"watch": "0"},
    )
