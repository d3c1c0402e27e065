"""cloudhub's garbage-collector freeze: links frozen after a burst are collected once they
close, so a fleet that drops and reconnects does not grow cloudhub's memory for good."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import ClientConnection

from cloudhub import app as cloud_app
from cloudhub.tuning import FreezePolicy, refreeze
from tests.support.procs import wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Whatever a test freezes is unfrozen afterwards (the collector is process-wide)."""
    try:
        yield
    finally:
        gc.unfreeze()


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_policy_freezes_after_a_burst_of_new_links() -> None:
    """No decision before a burst's worth of new links; a freeze once there are that many."""
    policy = FreezePolicy(freeze_after=500)
    assert policy.decide(connections=499, closed=0, live=499) is None
    assert policy.decide(connections=500, closed=0, live=500) == "freeze"
    assert policy.decide(connections=999, closed=0, live=999) is None
    assert policy.decide(connections=1000, closed=0, live=1000) == "freeze"


def test_policy_refreezes_after_enough_links_closed() -> None:
    """Closed links since the last freeze trigger a refreeze at the larger of the count and
    the share of live links; the counters start again from there."""
    policy = FreezePolicy(freeze_after=500, refreeze_after=100, refreeze_share=0.25)
    assert policy.decide(connections=2000, closed=0, live=2000) == "freeze"
    # ~1,600 live: a quarter of them (~400) is the bar, not 100
    assert policy.decide(connections=2000, closed=399, live=1601) is None
    assert policy.decide(connections=2000, closed=401, live=1599) == "refreeze"
    assert policy.decide(connections=2000, closed=401, live=1599) is None
    # few links left: the count is the bar
    assert policy.decide(connections=2000, closed=1900, live=100) == "refreeze"
    assert policy.decide(connections=2000, closed=1999, live=1) is None
    assert policy.decide(connections=2000, closed=2000, live=0) == "refreeze"


def test_policy_prefers_refreeze_when_both_are_due() -> None:
    """A reconnect wave (links closed and as many new): one refreeze covers both."""
    policy = FreezePolicy(freeze_after=500, refreeze_after=500)
    assert policy.decide(connections=1000, closed=500, live=500) == "refreeze"
    assert policy.decide(connections=1400, closed=500, live=900) is None


def test_refreeze_collects_frozen_garbage(unfrozen: None) -> None:
    """Frozen cycles that became garbage survive a collection, and not a refreeze."""
    obj = _Cycle()
    ref = weakref.ref(obj)
    gc.collect()
    gc.freeze()
    del obj
    gc.collect()
    assert ref() is not None  # why the refreeze exists
    collected, seconds = refreeze()
    assert ref() is None
    assert collected >= 1 and seconds >= 0
    assert gc.get_freeze_count() > 0


async def test_a_closed_link_frozen_while_open_is_collected(
    linked: tuple[cloud_app.CloudApp, ClientConnection], unfrozen: None
) -> None:
    """A node session frozen while its link was open is counted when the link closes and is
    gone after the refreeze."""
    cloud, ws = linked
    session = weakref.ref(cloud.hub.sessions["edge-1"])
    assert cloud.hub.connections_total == 1
    gc.collect()
    gc.freeze()
    await ws.close()
    await wait_until(lambda: "edge-1" not in cloud.hub.sessions, timeout=5)
    await wait_until(lambda: cloud.hub.closed_total == 1, timeout=5)
    refreeze()
    assert session() is None
