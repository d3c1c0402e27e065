"""Builders shared by the edge link session tests: a session with small numbers, cloud frames."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

from hive.backoff import backoff
from wire.codec import encode
from wire.messages import Message
from wire.session import EdgeSession

HEARTBEAT = 1.0
INITIAL = 0.5
CAP = 30.0
GROUPS = ("twin", "certmanager")


def make_session(*, seed: int = 0, heartbeat: float = HEARTBEAT, **kw: Any) -> EdgeSession:
    """An edge session with the real backoff (seeded), a 1 s heartbeat and a 30 s cap."""
    rng = random.Random(seed)

    def delays() -> Iterator[float]:
        return backoff(initial=INITIAL, cap=CAP, rng=rng)

    args: dict[str, Any] = {
        "name": "edgehub",
        "heartbeat": heartbeat,
        "retry_cap": CAP,
        "delays": delays,
        "store": "metamanager",
        "stream": "edgestream",
        "notify_groups": GROUPS,
        "node": "edge-1",
        "peer": "cloud.example:10000",
    }
    args.update(kw)
    return EdgeSession(**args)


def link_up(session: EdgeSession, now: float, inventory: dict[str, str] | None = None) -> None:
    """One attempt that gets a link: connecting, handshake, inventory stated."""
    session.connecting()
    session.handshake_accepted()
    session.opened(inventory or {})
    session.stated(now)


def cloud(op: str, *, group: str = "resource", resource: str = "x", parent: str = "") -> str:
    """A frame as the cloud sends it."""
    return encode(
        Message.new(
            source="cloudhub", group=group, operation=op, resource=resource, parent_id=parent
        )
    )


def upstream(source: str = "twin", op: str = "update", group: str = "twin") -> Message:
    """A message a local module hands to edgehub for the cloud."""
    return Message.new(source=source, group=group, operation=op, resource="node/edge-1/twin")


def retry_delays(session: EdgeSession, n: int, now: float = 0.0) -> Iterator[float]:
    """``n`` attempts that never get a link; the delay decided after each."""
    for _ in itertools.repeat(None, n):
        session.connecting()
        session.failed("connection refused")
        session.closed(now)
        yield session.next_retry().delay
