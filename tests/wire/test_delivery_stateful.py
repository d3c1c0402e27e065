"""Model-based test of Downstream: whatever happens on the link, the edge converges.

The model plays a real edge behind an in-order link: messages may be applied, or lost before
the edge persisted them; ACKs may arrive or be lost; time advances; the node reconnects with
the edge's true inventory (or none, as a stock edgecore). After everything in transit is
delivered and every poll drained, the cloud's view of the edge, and the edge itself, equal
the final desired state.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from wire.delivery import Downstream, Outgoing

ACK_TIMEOUT = 5.0
WINDOW = 3
KEYS = st.sampled_from([f"default/configmap/k{i}" for i in range(3)])
#: few versions, so updates back to what the edge already has happen often
VERSIONS = st.sampled_from(["1", "2", "3"])


def _obj(key: str, rv: str) -> dict[str, Any]:
    return {"key": key, "rv": rv}


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        counter = itertools.count()
        self.ds = Downstream(
            ack_timeout=ACK_TIMEOUT, window=WINDOW, new_id=lambda: f"m{next(counter)}"
        )
        self.ds.start({}, {})
        self.now = 0.0
        self.desired: dict[str, str] = {}
        #: what the edge has really persisted
        self.real: dict[str, str] = {}
        self.wire: deque[Outgoing] = deque()
        self.acks: deque[str] = deque()
        #: a stock edgecore reconnected without inventory: it may keep keys the cloud dropped
        self.stock_edge = False

    # -- the cloud's side ---------------------------------------------------------------------

    @rule(key=KEYS, rv=VERSIONS, poll=st.booleans())
    def update(self, key: str, rv: str, poll: bool) -> None:
        self.desired[key] = rv
        self.ds.update(key, rv, _obj(key, rv))
        if poll:
            self.poll()

    @rule(key=KEYS, poll=st.booleans())
    def remove(self, key: str, poll: bool) -> None:
        self.desired.pop(key, None)
        self.ds.remove(key, {"stub": key})
        if poll:
            self.poll()

    @rule()
    def poll(self) -> None:
        out = self.ds.poll(self.now)
        assert len({o.key for o in out}) == len(out), "a key sent twice in one poll"
        self.wire.extend(out)

    @rule(dt=st.floats(min_value=0.0, max_value=2 * ACK_TIMEOUT))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(stock=st.booleans())
    def reconnect(self, stock: bool) -> None:
        """The link drops: everything in transit is lost; a new session starts."""
        self.wire.clear()
        self.acks.clear()
        self.stock_edge = self.stock_edge or stock
        desired = {k: (rv, _obj(k, rv)) for k, rv in self.desired.items()}
        self.ds.start(None if stock else dict(self.real), desired, stub=lambda k: {"stub": k})

    # -- the link and the edge ----------------------------------------------------------------

    # These rules do nothing on an empty queue rather than using preconditions, so Hypothesis
    # never has to discard a generated step.

    @rule(ack_now=st.booleans())
    def deliver(self, ack_now: bool) -> None:
        if self.wire:
            self._apply(self.wire.popleft())
            if ack_now:
                self.deliver_ack()

    @rule()
    def edge_fails_to_persist(self) -> None:
        if self.wire:
            self.wire.popleft()

    @rule()
    def deliver_ack(self) -> None:
        if self.acks:
            self.ds.ack(self.acks.popleft())

    @rule()
    def lose_ack(self) -> None:
        if self.acks:
            self.acks.popleft()

    @rule()
    def settle(self) -> None:
        """Deliver everything, let retries run; then both views equal the desired state."""
        for _ in range(1000):
            while self.wire:
                self._apply(self.wire.popleft())
            while self.acks:
                self.ds.ack(self.acks.popleft())
            out = self.ds.poll(self.now)
            if out:
                self.wire.extend(out)
                continue
            if self.ds.backlog == 0:
                break
            deadline = self.ds.next_deadline()
            assert deadline is not None, "backlog left but nothing in flight and nothing sent"
            self.now = max(self.now, deadline)
        assert self.ds.backlog == 0
        assert not self.ds.ready
        assert self.ds.edge == self.desired
        if not self.stock_edge:
            assert self.real == self.desired

    def _apply(self, o: Outgoing) -> None:
        if o.resource_version is None:
            assert o.content == {"stub": o.key}
            self.real.pop(o.key, None)
        else:
            assert o.content == _obj(o.key, o.resource_version), "content and rv out of step"
            self.real[o.key] = o.resource_version
        self.acks.append(o.msg_id)

    # -- always ---------------------------------------------------------------------------------

    @invariant()
    def window_respected(self) -> None:
        assert self.ds.in_flight <= WINDOW

    @invariant()
    def backlog_covers_flights(self) -> None:
        assert self.ds.backlog >= self.ds.in_flight

    @invariant()
    def queue_is_what_is_wanted_and_not_in_flight(self) -> None:
        ds = self.ds
        assert ds._queue.keys() == ds.wanted.keys() - ds._flights.keys()

    @invariant()
    def deadline_only_with_flights(self) -> None:
        assert (self.ds.next_deadline() is None) == (self.ds.in_flight == 0)

    def teardown(self) -> None:
        self.settle()


TestDelivery = DeliveryMachine.TestCase
# The interesting interleavings (an ACKed key updated in flight and back again; a stale ACK
# after a lost message) need more runs than the default 100 to show up reliably.
_profile = settings.get_profile(settings.get_current_profile_name())
TestDelivery.settings = settings(_profile, max_examples=max(200, _profile.max_examples))
TestDelivery.__doc__ = "Random update/remove/ack/poll/timeout/reconnect sequences converge."
