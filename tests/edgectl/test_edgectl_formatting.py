"""edgectl's pure helpers: durations, kinds, tables, twin edits."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgectl.commands import UsageError, parse_assignments, set_desired
from edgectl.render import format_table, table_rows
from wire.durations import InvalidDuration, parse_duration
from wire.errors import InvalidResource
from wire.kinds import BY_PLURAL, KINDS, resolve
from wire.presentation import human_duration

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("24h", 86400), ("1h30m", 5400), ("2d", 172800), ("45", 45)],
)
def test_duration_examples(text: str, seconds: float) -> None:
    """The documented TTL spellings parse to seconds."""
    assert parse_duration(text) == seconds


@given(
    st.lists(
        st.tuples(st.integers(0, 1000), st.sampled_from("dhms")), min_size=1, max_size=4
    ).filter(lambda parts: any(n for n, _ in parts))
)
def test_duration_is_sum_of_parts(parts: list[tuple[int, str]]) -> None:
    """Any concatenation of NUMBER+UNIT parses to the sum of its parts."""
    unit = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == sum(n * unit[u] for n, u in parts)


@pytest.mark.parametrize("text", ["", "0", "0s", "-5m", "5x", "h", "1h 30m", "inf", "nan"])
def test_bad_durations_are_refused(text: str) -> None:
    """Zero, negative, unknown units and garbage are refused with the input quoted."""
    with pytest.raises(InvalidDuration, match="invalid duration"):
        parse_duration(text)


def test_every_spelling_resolves_to_its_kind() -> None:
    """Plural, singular, Kind and short names resolve to one kind; case does not matter."""
    for kind in KINDS:
        for name in (kind.plural, kind.type, kind.kind, *kind.aliases):
            assert resolve(name) is kind
            assert resolve(name.upper()) is kind
    assert resolve("no") is resolve("Nodes") is BY_PLURAL["nodes"]
    assert resolve("cm").plural == "configmaps"
    with pytest.raises(InvalidResource, match="unknown kind 'deploy'"):
        resolve("deploy")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (3, "3s"),
        (119, "119s"),
        (300, "5m"),
        (330, "5m30s"),
        (7300, "121m"),
        (4 * 3600 + 60, "4h1m"),
        (30 * 3600, "30h"),
        (3e5, "3d11h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 5 * 86400, "3y5d"),
        (-5, "<invalid>"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    """Ages print as kubectl's HumanDuration prints them."""
    assert human_duration(seconds) == text


def _node(name: str, status: str | None, heartbeat: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "kind": "Node",
        "metadata": {"name": name, "creationTimestamp": "2024-05-01T11:00:00Z"},
    }
    if status is not None:
        cond: dict[str, Any] = {"type": "Ready", "status": status}
        if heartbeat:
            cond["lastHeartbeatTime"] = heartbeat
        node["status"] = {"conditions": [cond]}
    return node


def test_node_table_shows_online_offline_and_last_seen() -> None:
    """Ready=True is online with 'Ns ago'; anything else is offline."""
    items = [
        _node("edge-1", "True", "2024-05-01T11:59:57Z"),
        _node("edge-2", "Unknown", "2024-05-01T11:50:00Z"),
        _node("edge-3", None, None),
    ]
    rows = table_rows("nodes", items, NOW)
    assert rows == [
        ["NAME", "STATUS", "LAST-SEEN", "AGE"],
        ["edge-1", "online", "3s ago", "60m"],
        ["edge-2", "offline", "10m ago", "60m"],
        ["edge-3", "offline", "never", "60m"],
    ]


def test_pod_table_and_alignment() -> None:
    """A pod without status is Pending 0/N; columns are aligned, no trailing spaces."""
    pod = {
        "kind": "Pod",
        "metadata": {"name": "nginx", "namespace": "default"},
        "spec": {"nodeName": "edge-1", "containers": [{"name": "web", "image": "nginx"}]},
    }
    text = format_table(table_rows("pods", [pod], NOW))
    header, row = text.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE"]
    assert header.index("NODE") == row.index("edge-1")
    assert row.split() == ["default", "nginx", "0/1", "Pending", "0", "<unknown>", "edge-1"]
    assert not any(line.endswith(" ") for line in text.splitlines())


def test_set_desired_copies_and_creates_desired() -> None:
    """Desired values are set as strings on a copy, creating `desired` when absent."""
    device: dict[str, Any] = {
        "kind": "Device",
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"properties": [{"name": "a", "desired": {"value": "1"}}, {"name": "b"}]},
    }
    out = set_desired(device, {"a": "2", "b": "x=y"})
    assert out["spec"]["properties"] == [
        {"name": "a", "desired": {"value": "2"}},
        {"name": "b", "desired": {"value": "x=y"}},
    ]
    assert device["spec"]["properties"][0]["desired"] == {"value": "1"}
    with pytest.raises(UsageError, match=r"default/d has no property 'c' \(properties: a, b\)"):
        set_desired(device, {"c": "1"})


def test_assignments_split_on_first_equals() -> None:
    """`PROP=VALUE` splits at the first '='; values may be empty or contain '='."""
    assert parse_assignments(["a=1", "b=", "c=x=y"]) == {"a": "1", "b": "", "c": "x=y"}
    for bad in ("a", "=1"):
        with pytest.raises(UsageError, match="expected PROP=VALUE"):
            parse_assignments([bad])
