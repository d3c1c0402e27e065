"""Local API path parsing (pure) and listen-address parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgecore.metaserver.server import RESOURCES, event_line, parse_address, route
from edgecore.metastore import StoreEvent
from wire.errors import ConfigError


def test_namespaced_object_route() -> None:
    """/api/v1/namespaces/NS/pods/NAME names the edge key NS/pod/NAME."""
    target = route("/api/v1/namespaces/prod/pods/db")
    assert target is not None
    assert (target.resource.type, target.namespace, target.name) == ("pod", "prod", "db")
    assert target.key == "prod/pod/db"


def test_cluster_scoped_route_uses_null_namespace() -> None:
    """/api/v1/nodes/NAME names the edge key null/node/NAME."""
    target = route("/api/v1/nodes/edge-1")
    assert target is not None and target.key == "null/node/edge-1"


def test_trailing_slash_is_tolerated() -> None:
    """A trailing slash addresses the same collection."""
    assert route("/api/v1/pods/") == route("/api/v1/pods")


@given(st.text())
def test_route_never_raises(path: str) -> None:
    """Any path string parses to a target or None, never an exception."""
    route(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:10550", ("127.0.0.1", 10550)), ("[::1]:0", ("::1", 0))],
)
def test_parse_address(value: str, expected: tuple[str, int]) -> None:
    """ADDR:PORT and [v6]:PORT parse to (host, port)."""
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["10550", ":10550", "host:", "host:x", "host:70000"])
def test_parse_address_rejects_garbage(value: str) -> None:
    """A malformed listen address raises ConfigError."""
    with pytest.raises(ConfigError):
        parse_address(value)


PODS = next(r for r in RESOURCES if r.type == "pod")


def test_event_already_listed_is_not_repeated() -> None:
    """An event carrying the version the initial list sent produces no line."""
    sent = {"default/pod/a": "1"}
    assert event_line(StoreEvent("MODIFIED", "default/pod/a", {}, "1"), sent, PODS) is None
    line = event_line(StoreEvent("MODIFIED", "default/pod/a", {"kind": "Pod"}, "2"), sent, PODS)
    assert line is not None and json.loads(line)["type"] == "MODIFIED"
    assert sent == {"default/pod/a": "2"}


def test_event_for_unlisted_key_is_added_and_unseen_delete_dropped() -> None:
    """A change to a key the client never saw is ADDED; deleting such a key sends nothing."""
    sent: dict[str, str] = {}
    assert event_line(StoreEvent("DELETED", "default/pod/x", {}, "1"), sent, PODS) is None
    line = event_line(StoreEvent("MODIFIED", "default/pod/y", {}, "3"), sent, PODS)
    assert line is not None
    assert json.loads(line) == {"type": "ADDED", "object": {"apiVersion": "v1", "kind": "Pod"}}
